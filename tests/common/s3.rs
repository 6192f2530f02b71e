//! A real S3-compatible server for the tests: moto's server (from PyPI, installed by
//! tests/run-all.sh) on 127.0.0.1, started by the test and stopped when dropped.
#![allow(dead_code)] // each test file uses its part

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use super::root;

pub const BUCKET: &str = "valtava-test";

pub struct S3 {
    child: Child,
    pub endpoint: String,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_s3() -> S3 {
    let port = super::free_port();
    let mut child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m moto.server (pip install -r tests/requirements.txt)");
    let endpoint = format!("http://127.0.0.1:{port}");
    super::wait_for(port, "S3 server (moto)", &mut child);
    S3 { child, endpoint }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

impl S3 {
    /// The bucket as an object store with the test's credentials (signed requests).
    pub fn bucket(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("eu-north-1")
            .with_access_key_id("valtava-test")
            .with_secret_access_key("valtava-test-secret")
            .build()
            .unwrap()
    }
    pub fn put(&self, key: &str, body: &[u8]) {
        use object_store::ObjectStoreExt;
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(self.bucket().put(
            &object_store::path::Path::from(key),
            object_store::PutPayload::from(body.to_vec()),
        ))
        .unwrap();
    }
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        use object_store::ObjectStoreExt;
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let r = self
                .bucket()
                .get(&object_store::path::Path::from(key))
                .await
                .ok()?;
            r.bytes().await.ok().map(|b| b.to_vec())
        })
    }
    /// The keys under `prefix`.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            self.bucket()
                .list(Some(&object_store::path::Path::from(prefix)))
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .unwrap()
        })
    }
    pub fn create_bucket(&self) {
        let r = agent()
            .put(&format!("{}/{BUCKET}", self.endpoint))
            .send_empty()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    /// Uploads a local folder under `prefix`.
    pub fn upload(&self, dir: &Path, prefix: &str) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().to_string();
            if e.file_type().unwrap().is_dir() {
                self.upload(&e.path(), &format!("{prefix}{name}/"));
            } else {
                self.put(
                    &format!("{prefix}{name}"),
                    &std::fs::read(e.path()).unwrap(),
                );
            }
        }
    }
    /// The environment a process needs to reach the bucket.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "valtava-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "valtava-test-secret".into()),
            ("AWS_DEFAULT_REGION", "eu-north-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
        ]
    }
    /// Runs the binary with that environment.
    pub fn valtava(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_valtava"))
            .current_dir(root())
            .args(args)
            .env_remove("VALTAVA_STORE")
            .envs(self.env())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }
}
