//! Lines against a real S3-compatible server: moto's server (from PyPI, installed by
//! tests/run-all.sh) on 127.0.0.1, started by the test.

mod common;
use common::{copy_dir, root};

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

const KEY_FILE: &str = "examples/demo-pseudonym.key";
const BUCKET: &str = "valtava-test";

struct S3 {
    child: Child,
    endpoint: String,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_s3() -> S3 {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
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
    let until = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "moto did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
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
    fn bucket(&self) -> object_store::aws::AmazonS3 {
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
    fn put(&self, key: &str, body: &[u8]) {
        use object_store::ObjectStoreExt;
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(self.bucket().put(
            &object_store::path::Path::from(key),
            object_store::PutPayload::from(body.to_vec()),
        ))
        .unwrap();
    }
    fn get(&self, key: &str) -> Option<Vec<u8>> {
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
    fn create_bucket(&self) {
        let r = agent()
            .put(&format!("{}/{BUCKET}", self.endpoint))
            .send_empty()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    /// Uploads a local folder under `prefix`.
    fn upload(&self, dir: &Path, prefix: &str) {
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
    fn valtava(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_valtava"))
            .current_dir(root())
            .args(args)
            .env_remove("VALTAVA_STORE")
            .env("AWS_ACCESS_KEY_ID", "valtava-test")
            .env("AWS_SECRET_ACCESS_KEY", "valtava-test-secret")
            .env("AWS_DEFAULT_REGION", "eu-north-1")
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap()
}

/// The release `latest.json` names, checked object by object against its manifest.
fn current_release(s3: &S3, prefix: &str, period: &str) -> Option<(String, Value)> {
    let pointer = json(&s3.get(&format!("{prefix}releases/ensihoito/{period}/latest.json"))?);
    let manifest = json(
        &s3.get(&format!(
            "{prefix}{}",
            pointer["manifest"].as_str().unwrap()
        ))
        .unwrap(),
    );
    for o in manifest["objects"].as_array().unwrap() {
        let bytes = s3
            .get(&format!("{prefix}{}", o["path"].as_str().unwrap()))
            .unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            o["sha256"].as_str().unwrap()
        );
    }
    Some((pointer["run_id"].as_str().unwrap().to_string(), manifest))
}

#[test]
fn a_whole_line_runs_against_s3_with_atomic_releases() {
    let s3 = start_s3();
    s3.create_bucket();
    let store_url = format!("s3://{BUCKET}/tuotanto");
    let prefix = "tuotanto/";
    for sub in ["inbox", "reference"] {
        s3.upload(
            &root().join("examples/store").join(sub),
            &format!("{prefix}{sub}/"),
        );
    }
    let run = |period: &str| {
        s3.valtava(&[
            "run",
            "lines/ensihoito.yaml",
            "--param",
            &format!("period={period}"),
            "--store",
            &store_url,
            "--pseudonym-key-file",
            KEY_FILE,
            "--json",
        ])
    };

    // `plan` lists the objects in the bucket.
    let plan = ok(&s3.valtava(&[
        "plan",
        "lines/ensihoito.yaml",
        "--param",
        "period=2025-03",
        "--store",
        &store_url,
    ]));
    assert!(plan.contains("2 object"), "{plan}");

    let first: Value = serde_json::from_str(&ok(&run("2025-03"))).unwrap();
    let (run1, manifest) = current_release(&s3, prefix, "2025-03").unwrap();
    assert_eq!(first["run_id"], run1.as_str());
    // The same line run on a local folder publishes the same bytes.
    let local = tempfile::tempdir().unwrap();
    for sub in ["inbox", "reference"] {
        copy_dir(
            &root().join("examples/store").join(sub),
            &local.path().join(sub),
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_valtava"))
        .current_dir(root())
        .args([
            "run",
            "lines/ensihoito.yaml",
            "--param",
            "period=2025-03",
            "--store",
        ])
        .arg(local.path())
        .args(["--pseudonym-key-file", KEY_FILE, "--json"])
        .output()
        .unwrap();
    let local_report: Value = serde_json::from_str(&ok(&out)).unwrap();
    let local_run = local_report["run_id"].as_str().unwrap();
    let mut compared = 0;
    for o in manifest["objects"].as_array().unwrap() {
        let path = o["path"].as_str().unwrap();
        let name = path.rsplit('/').next().unwrap();
        let local_file = local
            .path()
            .join(format!("releases/ensihoito/2025-03/{local_run}/{name}"));
        assert_eq!(
            std::fs::read(&local_file).unwrap(),
            s3.get(&format!("{prefix}{path}")).unwrap(),
            "{name}"
        );
        compared += 1;
    }
    assert!(compared >= 3);
    // Quarantine, run report and lineage went to the bucket too.
    for q in first["quarantine"].as_array().unwrap() {
        assert!(
            s3.get(&format!("{prefix}{}", q.as_str().unwrap()))
                .is_some(),
            "{q}"
        );
    }
    assert!(
        s3.get(&format!("{prefix}runs/ensihoito/{run1}.json"))
            .is_some()
    );

    // A second run moves the pointer; a failed run of another period publishes nothing.
    std::thread::sleep(Duration::from_millis(5));
    let second: Value = serde_json::from_str(&ok(&run("2025-03"))).unwrap();
    let (run2, _) = current_release(&s3, prefix, "2025-03").unwrap();
    assert_eq!(second["run_id"], run2.as_str());
    assert_ne!(run1, run2);
    let failed = run("2025-04");
    assert!(!failed.status.success());
    assert!(current_release(&s3, prefix, "2025-04").is_none());
    assert_eq!(current_release(&s3, prefix, "2025-03").unwrap().0, run2);

    // Reading back: releases and show.
    let releases = ok(&s3.valtava(&["releases", "ensihoito", "--store", &store_url]));
    assert_eq!(
        releases
            .lines()
            .filter(|l| l.starts_with("2025-03"))
            .count(),
        2,
        "{releases}"
    );
    let current: Vec<&str> = releases.lines().filter(|l| l.contains(" * ")).collect();
    assert!(
        current.len() == 1 && current[0].contains(&run2),
        "{releases}"
    );
    let shown = ok(&s3.valtava(&[
        "show",
        "ensihoito_kuukausi",
        "--store",
        &store_url,
        "--limit",
        "1000",
    ]));
    assert!(shown.contains("SSS"), "{shown}");
}

#[test]
fn a_missing_bucket_is_a_clear_error() {
    let s3 = start_s3();
    let out = s3.valtava(&[
        "run",
        "lines/ensihoito.yaml",
        "--param",
        "period=2025-03",
        "--store",
        "s3://no-such-bucket/x",
        "--pseudonym-key-file",
        KEY_FILE,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot list") && err.contains("no-such-bucket"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let out = s3.valtava(&["releases", "ensihoito", "--store", "s3:///x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("names no bucket"), "{err}");
}
