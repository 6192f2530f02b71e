//! Reading releases back: `valtava releases LINE` and `valtava show DATASET`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;

use crate::publish::PublishError;
use crate::store::Store;

/// One release of a line: a run whose manifest was written. (Also the schema `Release` of
/// the daemon's OpenAPI document.)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Release {
    /// The line.
    pub line: String,
    /// The period released.
    pub period: String,
    /// The run that made it.
    pub run_id: String,
    /// Whether `latest.json` points at it.
    pub current: bool,
    /// Each dataset released, with its rows: `[name, rows]`.
    pub datasets: Vec<(String, u64)>,
    /// The area dimension of each dataset that has one (its aggregate's declared `area`,
    /// recorded in the manifest).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub areas: BTreeMap<String, String>,
}

async fn read_json(store: &Arc<dyn ObjectStore>, path: &str) -> Option<Value> {
    let bytes = store
        .get(&Path::from(path))
        .await
        .ok()?
        .bytes()
        .await
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The datasets of manifests already read, by path: a manifest never changes once written
/// (a release is immutable), so the daemon reads each once instead of every manifest ever
/// written at every request.
#[derive(Debug, Default)]
pub struct ManifestCache(std::sync::Mutex<BTreeMap<String, Named>>);

/// What a manifest says of its datasets: each with its rows, and the area dimension of
/// those that have one.
type Named = (Vec<(String, u64)>, BTreeMap<String, String>);

/// The datasets and their rows a manifest names, and their areas (absent in manifests
/// written before datasets recorded them).
fn manifest_datasets(manifest: &Value) -> Named {
    let entries = manifest["datasets"].as_array().into_iter().flatten();
    let mut datasets = Vec::new();
    let mut areas = BTreeMap::new();
    for d in entries {
        let name = d["dataset"].as_str().unwrap_or_default().to_string();
        if let Some(a) = d["area"].as_str() {
            areas.insert(name.clone(), a.to_string());
        }
        datasets.push((name, d["rows"].as_u64().unwrap_or(0)));
    }
    (datasets, areas)
}

/// Every release of a line, by period and run.
pub async fn list(store: &Store, line: &str) -> Result<Vec<Release>, PublishError> {
    list_cached(store, line, &ManifestCache::default()).await
}

/// [`list`], reading only the manifests `cache` does not hold yet.
pub async fn list_cached(
    store: &Store,
    line: &str,
    cache: &ManifestCache,
) -> Result<Vec<Release>, PublishError> {
    let prefix = Path::from(crate::store::layout::releases_of(line));
    let metas: Vec<_> = store
        .inner
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|source| PublishError::ListReleases {
            line: line.to_string(),
            source,
        })?;
    let mut manifests: BTreeMap<(String, String), String> = BTreeMap::new();
    for m in &metas {
        let parts: Vec<&str> = m.location.as_ref().split('/').collect();
        if let [_, _, period, run, "_manifest.json"] = parts.as_slice() {
            manifests.insert(
                (period.to_string(), run.to_string()),
                m.location.to_string(),
            );
        }
    }
    let mut out = Vec::new();
    let mut latest: BTreeMap<String, Option<String>> = BTreeMap::new();
    for ((period, run), path) in manifests {
        // Each period's pointer is read once, not once per release of it.
        let current = match latest.get(&period) {
            Some(known) => known.clone(),
            None => {
                let pointer = read_json(
                    &store.inner,
                    &crate::store::layout::release_pointer(line, &period),
                )
                .await
                .and_then(|p| p["run_id"].as_str().map(String::from));
                latest.insert(period.clone(), pointer.clone());
                pointer
            }
        };
        let known = cache.0.lock().ok().and_then(|c| c.get(&path).cloned());
        let (datasets, areas) = match known {
            Some(d) => d,
            None => {
                let manifest = read_json(&store.inner, &path).await;
                let named = manifest.as_ref().map(manifest_datasets).unwrap_or_default();
                if manifest.is_some()
                    && let Ok(mut c) = cache.0.lock()
                {
                    c.insert(path.clone(), named.clone());
                }
                named
            }
        };
        out.push(Release {
            line: line.to_string(),
            current: current.as_deref() == Some(run.as_str()),
            period,
            run_id: run,
            datasets,
            areas,
        });
    }
    Ok(out)
}

/// A table of releases for the terminal.
pub fn render(releases: &[Release]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<32} {:<7} datasets",
        "period", "run", "current"
    );
    for r in releases {
        let ds: Vec<String> = r
            .datasets
            .iter()
            .map(|(d, n)| format!("{d} ({n} rows)"))
            .collect();
        let _ = writeln!(
            out,
            "{:<10} {:<32} {:<7} {}",
            r.period,
            r.run_id,
            if r.current { "*" } else { "" },
            ds.join(", ")
        );
    }
    out
}

/// Finds the current release of a dataset (optionally of one line and period) and returns
/// the path of its Parquet (or CSV) object.
pub async fn locate_dataset(
    store: &Store,
    dataset: &str,
    line: Option<&str>,
    period: Option<&str>,
) -> Result<(String, String), PublishError> {
    let metas: Vec<_> = store
        .inner
        .list(Some(&Path::from("releases")))
        .try_collect()
        .await
        .map_err(|source| PublishError::ListAllReleases { source })?;
    let mut found: Vec<(String, String, String)> = Vec::new();
    for m in metas
        .iter()
        .filter(|m| m.location.as_ref().ends_with("/latest.json"))
    {
        let parts: Vec<&str> = m.location.as_ref().split('/').collect();
        let [_, l, p, _] = parts.as_slice() else {
            continue;
        };
        if line.is_some_and(|x| x != *l) || period.is_some_and(|x| x != *p) {
            continue;
        }
        let Some(pointer) = read_json(&store.inner, m.location.as_ref()).await else {
            continue;
        };
        let Some(manifest_path) = pointer["manifest"].as_str() else {
            continue;
        };
        let Some(manifest) = read_json(&store.inner, manifest_path).await else {
            continue;
        };
        for o in manifest["objects"].as_array().into_iter().flatten() {
            let path = o["path"].as_str().unwrap_or_default();
            let name = path.rsplit('/').next().unwrap_or_default();
            if name == format!("{dataset}.parquet") || name == format!("{dataset}.csv") {
                found.push((p.to_string(), l.to_string(), path.to_string()));
            }
        }
    }
    // Prefer Parquet, then the newest period.
    found.sort_by(|a, b| {
        (a.0.as_str(), a.2.ends_with(".parquet")).cmp(&(b.0.as_str(), b.2.ends_with(".parquet")))
    });
    match found.pop() {
        Some((p, _, path)) => Ok((p, path)),
        None => Err(PublishError::NoDataset {
            dataset: dataset.to_string(),
            store: store.url.clone(),
        }),
    }
}

/// Reads a published dataset and formats it as a table.
pub async fn show(
    store: &Store,
    dataset: &str,
    line: Option<&str>,
    period: Option<&str>,
    limit: usize,
) -> Result<String, PublishError> {
    let (period, path) = locate_dataset(store, dataset, line, period).await?;
    let bytes = store
        .inner
        .get(&Path::from(path.as_str()))
        .await
        .map_err(PublishError::ReadObject)?
        .bytes()
        .await
        .map_err(PublishError::ReadObject)?;
    let batches: Vec<arrow::record_batch::RecordBatch> = if path.ends_with(".parquet") {
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(PublishError::ReadParquet)?
            .build()
            .map_err(PublishError::ReadParquet)?
            .collect::<Result<_, _>>()
            .map_err(PublishError::ReadTable)?
    } else {
        let (schema, _) = arrow::csv::reader::Format::default()
            .with_header(true)
            .infer_schema(std::io::Cursor::new(&bytes), Some(1000))
            .map_err(PublishError::ReadTable)?;
        arrow::csv::ReaderBuilder::new(Arc::new(schema))
            .with_header(true)
            .build(std::io::Cursor::new(bytes))
            .map_err(PublishError::ReadTable)?
            .collect::<Result<_, _>>()
            .map_err(PublishError::ReadTable)?
    };
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let shown: Vec<_> = {
        let mut left = limit;
        batches
            .iter()
            .filter_map(|b| {
                if left == 0 {
                    return None;
                }
                let n = left.min(b.num_rows());
                left -= n;
                Some(b.slice(0, n))
            })
            .collect()
    };
    let table =
        arrow::util::pretty::pretty_format_batches(&shown).map_err(PublishError::ReadTable)?;
    let mut out = format!("{dataset} · period {period} · {rows} rows · {path}\n{table}\n");
    if rows > limit {
        let _ = writeln!(out, "… {} more rows (--limit)", rows - limit);
    }
    Ok(out)
}
