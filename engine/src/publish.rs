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

/// Applies small-cell suppression to a whole (aggregated, hence small) table: empties the
/// measures of suppressed cells and marks them in the status column.
pub fn protect(
    batches: &[RecordBatch],
    schema: SchemaRef,
    dimensions: &[String],
    disclosure: Option<&crate::plan::Disclosure>,
) -> Result<(RecordBatch, usize), String> {
    use arrow::array::{Array, AsArray, BooleanArray, StringArray};
    use arrow::datatypes::DataType;
    let own = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| schema.clone());
    let table = arrow::compute::concat_batches(&own, batches).map_err(|e| e.to_string())?;
    let table = RecordBatch::try_new(schema.clone(), table.columns().to_vec())
        .map_err(|e| e.to_string())?;
    let Some(d) = disclosure else {
        return Ok((table, 0));
    };
    let n = table.num_rows();
    let text = |name: &str| -> Result<arrow::array::ArrayRef, String> {
        let a = table
            .column_by_name(name)
            .ok_or_else(|| format!("no column {name}"))?;
        arrow::compute::cast(a, &DataType::Utf8).map_err(|e| e.to_string())
    };
    let dim_text: Vec<arrow::array::ArrayRef> = dimensions
        .iter()
        .map(|c| text(c))
        .collect::<Result<_, _>>()?;
    let keys: Vec<Vec<String>> = (0..n)
        .map(|i| {
            dim_text
                .iter()
                .map(|a| {
                    let a = a.as_string::<i32>();
                    if a.is_valid(i) {
                        a.value(i).to_string()
                    } else {
                        String::new()
                    }
                })
                .collect()
        })
        .collect();
    let counts_arr = table
        .column_by_name(&d.count)
        .ok_or_else(|| format!("no column {}", d.count))?;
    let counts_arr =
        arrow::compute::cast(counts_arr, &DataType::Float64).map_err(|e| e.to_string())?;
    let counts_arr = counts_arr.as_primitive::<arrow::datatypes::Float64Type>();
    let counts: Vec<Option<i64>> = (0..n)
        .map(|i| {
            counts_arr
                .is_valid(i)
                .then(|| counts_arr.value(i).round() as i64)
        })
        .collect();
    let (hidden, _) = crate::disclosure::suppress(&keys, &counts, d.min_count);
    let suppressed = hidden.iter().filter(|h| **h).count();
    let mask = BooleanArray::from(hidden.clone());
    let mut columns = Vec::with_capacity(table.num_columns());
    for (f, a) in schema.fields().iter().zip(table.columns()) {
        if f.name() == crate::plan::STATUS_COLUMN {
            columns.push(std::sync::Arc::new(StringArray::from(
                hidden
                    .iter()
                    .map(|h| h.then_some("suppressed"))
                    .collect::<Vec<_>>(),
            )) as arrow::array::ArrayRef);
        } else if d.measures.contains(f.name()) {
            columns.push(arrow::compute::nullif(a, &mask).map_err(|e| e.to_string())?);
        } else {
            columns.push(a.clone());
        }
    }
    let out = RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())?;
    Ok((out, suppressed))
}
