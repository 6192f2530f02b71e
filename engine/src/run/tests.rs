//! A crash at any write leaves the previous release intact.
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use super::*;

/// A store that fails its `fail_at`-th write (counting from 0), like a crash or a full
/// disk at that moment; later writes fail too, as after a crash nothing more is written.
#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn ObjectStore>,
    writes: AtomicUsize,
    fail_at: usize,
}

impl std::fmt::Display for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

impl Faulty {
    fn write(&self, location: &Path) -> object_store::Result<()> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        if n >= self.fail_at {
            return Err(object_store::Error::Generic {
                store: "faulty",
                source: format!("injected failure at write {n} ({location})").into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.write(location)?;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.write(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.write(to)?;
        self.inner.copy_opts(from, to, options).await
    }
}

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn options(store: Arc<dyn ObjectStore>) -> RunOptions {
    RunOptions {
        store: Store {
            url: "test".into(),
            inner: store,
            root: None,
        },
        params: vec![("period".into(), "2025-01".into())],
        sources: BTreeMap::new(),
        key: Some(b"failure-injection-key".to_vec()),
        batch_size: 4,
        progress: false,
        capture: Default::default(),
        engine: None,
        lineage_url: None,
        deadline: None,
        recorder: crate::artefacts::recorder(),
        memory_limit: None,
        release: Default::default(),
    }
}

/// The release `latest.json` points at, checked object by object; None without one.
async fn current_release(store: &Arc<dyn ObjectStore>) -> Option<String> {
    use sha2::Digest;
    let pointer = store
        .get(&Path::from("releases/mini/2025-01/latest.json"))
        .await
        .ok()?
        .bytes()
        .await
        .ok()?;
    let pointer: serde_json::Value =
        serde_json::from_slice(&pointer).expect("the pointer is whole JSON");
    let manifest_path = pointer["manifest"]
        .as_str()
        .expect("the pointer names a manifest");
    let manifest = store
        .get(&Path::from(manifest_path))
        .await
        .expect("the manifest exists")
        .bytes()
        .await
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest).expect("the manifest is whole JSON");
    for o in manifest["objects"].as_array().unwrap() {
        let bytes = store
            .get(&Path::from(o["path"].as_str().unwrap()))
            .await
            .expect("a listed object exists")
            .bytes()
            .await
            .unwrap();
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            o["sha256"].as_str().unwrap(),
            "{o}"
        );
    }
    Some(pointer["run_id"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_any_write_leaves_the_previous_release_valid() {
    let dir = tempfile::tempdir().unwrap();
    let data = root().join("tests/data/mini/2025-01/a.csv");
    std::fs::create_dir_all(dir.path().join("mini/2025-01")).unwrap();
    std::fs::copy(&data, dir.path().join("mini/2025-01/a.csv")).unwrap();
    let base: Arc<dyn ObjectStore> = crate::store::open(dir.path().to_str().unwrap())
        .unwrap()
        .inner;
    let line = root().join("tests/lines/mini.yaml");
    let first = run(&line, options(base.clone()))
        .await
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    assert_eq!(
        current_release(&base).await.as_deref(),
        Some(first.run_id.as_str())
    );

    // Count the writes of a whole run.
    let counting = Arc::new(Faulty {
        inner: base.clone(),
        writes: AtomicUsize::new(0),
        fail_at: usize::MAX,
    });
    let second = run(&line, options(counting.clone()))
        .await
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    let total = counting.writes.load(Ordering::SeqCst);
    assert!(total >= 7, "only {total} writes");
    let mut current = second.run_id.clone();

    for fail_at in 0..total {
        // Runs within one millisecond would share a run id; keep them apart.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let faulty = Arc::new(Faulty {
            inner: base.clone(),
            writes: AtomicUsize::new(0),
            fail_at,
        });
        let result = run(&line, options(faulty)).await;
        let now = current_release(&base)
            .await
            .expect("a release stays readable");
        match result {
            // Failed before the pointer: the previous release is still current.
            Err(_) if now == current => {}
            // Failed after the pointer (writing the run report): the new release is whole.
            Err(_) => current = now,
            Ok(r) => panic!(
                "write {fail_at} of {total} failed, yet the run {} succeeded",
                r.run_id
            ),
        }
    }
    assert!(current_release(&base).await.is_some());
}
