//! Publishing: datasets written under a run-specific prefix, then a manifest, then the
//! release pointer — so a reader following `latest.json` never sees a half-written release.
//!
//! ```text
//! releases/<line>/<period>/<run-id>/<dataset>.{parquet,csv}
//! releases/<line>/<period>/<run-id>/_manifest.json
//! releases/<line>/<period>/latest.json
//! ```

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::spec::PublishFormat;

/// One written object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectEntry {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Parquet settings shared by every writer: zstd, and a fixed `created_by` so the bytes
/// depend only on the data.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_created_by(format!("valtava {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Streams batches into the requested formats at `<prefix>/<name>.<ext>`; returns the
/// number of rows.
pub async fn write_stream(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    name: &str,
    formats: &[PublishFormat],
    schema: SchemaRef,
    mut stream: SendableRecordBatchStream,
    mut on_batch: impl FnMut(&RecordBatch) -> Result<(), String>,
) -> Result<u64, String> {
    let mut parquet = None;
    let mut csv = None;
    for f in formats {
        match f {
            PublishFormat::Parquet => {
                let w = BufWriter::new(
                    store.clone(),
                    Path::from(format!("{prefix}/{name}.parquet")),
                );
                parquet = Some(
                    AsyncArrowWriter::try_new(w, schema.clone(), Some(writer_properties()))
                        .map_err(|e| e.to_string())?,
                );
            }
            PublishFormat::Csv => {
                csv = Some((
                    BufWriter::new(store.clone(), Path::from(format!("{prefix}/{name}.csv"))),
                    true,
                ));
            }
        }
    }
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| e.to_string())?;
        on_batch(&batch)?;
        rows += batch.num_rows() as u64;
        if let Some(w) = parquet.as_mut() {
            w.write(&batch).await.map_err(|e| e.to_string())?;
        }
        if let Some((w, first)) = csv.as_mut() {
            let mut buf = Vec::new();
            {
                let mut cw = arrow::csv::WriterBuilder::new()
                    .with_header(*first)
                    .build(&mut buf);
                cw.write(&batch).map_err(|e| e.to_string())?;
            }
            *first = false;
            w.write_all(&buf).await.map_err(|e| e.to_string())?;
        }
    }
    if let Some(w) = parquet {
        w.close().await.map_err(|e| e.to_string())?;
    }
    if let Some((mut w, first)) = csv {
        if first {
            // No rows: still a valid CSV with its header.
            let mut buf = Vec::new();
            {
                let mut cw = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                cw.write(&RecordBatch::new_empty(schema.clone()))
                    .map_err(|e| e.to_string())?;
            }
            w.write_all(&buf).await.map_err(|e| e.to_string())?;
        }
        w.shutdown().await.map_err(|e| e.to_string())?;
    }
    Ok(rows)
}

/// Lists the objects under a prefix with their sizes and checksums, sorted by path.
pub async fn describe(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
) -> Result<Vec<ObjectEntry>, String> {
    use futures::TryStreamExt;
    let metas: Vec<_> = store
        .list(Some(&Path::from(prefix)))
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for m in metas {
        let mut hasher = Sha256::new();
        let mut s = store
            .get(&m.location)
            .await
            .map_err(|e| e.to_string())?
            .into_stream();
        while let Some(chunk) = s.next().await {
            hasher.update(chunk.map_err(|e| e.to_string())?);
        }
        out.push(ObjectEntry {
            path: m.location.to_string(),
            bytes: m.size,
            sha256: hex::encode(hasher.finalize()),
        });
    }
    out.sort();
    Ok(out)
}

/// Writes a JSON document.
pub async fn put_json<T: Serialize>(
    store: &Arc<dyn ObjectStore>,
    path: &str,
    value: &T,
) -> Result<(), String> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    store
        .put(&Path::from(path), PutPayload::from(bytes))
        .await
        .map_err(|e| format!("cannot write {path}: {e}"))?;
    Ok(())
}

/// Removes every object under a prefix (a failed run's partial outputs).
pub async fn remove_prefix(store: &Arc<dyn ObjectStore>, prefix: &str) {
    use futures::TryStreamExt;
    if let Ok(metas) = store
        .list(Some(&Path::from(prefix)))
        .try_collect::<Vec<_>>()
        .await
    {
        for m in metas {
            let _ = store.delete(&m.location).await;
        }
    }
}
