//! Reading releases back: `valtava releases LINE` and `valtava show DATASET`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;

use crate::publish::PublishError;
use crate::publish::revision::{ReleaseLabel, StatusFile};
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
    /// When it was released (RFC 3339, UTC); for a release made before manifests recorded
    /// it, when its manifest was written.
    #[schema(format = DateTime)]
    pub released: Option<String>,
    /// `preliminary` or `final`: as its run gave it, or as an operator last set it.
    pub status: crate::publish::revision::ReleaseStatus,
    /// The revision note, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
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

/// What manifests already read say, by path: a manifest never changes once written (a
/// release is immutable), so the daemon reads each once instead of every manifest ever
/// written at every request. Pointers (`latest.json`) and operators' status changes
/// (`_status.json`) do change: they are kept by path and version (entity tag and time) and
/// read again when the listing shows another version.
#[derive(Debug, Default)]
pub struct ManifestCache {
    manifests: std::sync::Mutex<BTreeMap<String, Named>>,
    changes: std::sync::Mutex<BTreeMap<String, (String, Option<ReleaseLabel>)>>,
    pointers: std::sync::Mutex<BTreeMap<String, (String, Option<String>)>>,
}

/// The version of an object as a listing shows it.
fn version(meta: &object_store::ObjectMeta) -> String {
    format!(
        "{:?}/{}/{}",
        meta.e_tag,
        meta.last_modified.timestamp_micros(),
        meta.size
    )
}

/// A JSON document of the store: `None` when there is no such object or it is not JSON
/// (a reader skips it), an error when the store cannot be read.
async fn read_doc(store: &Arc<dyn ObjectStore>, path: &str) -> Result<Option<Value>, PublishError> {
    let got = match store.get(&Path::from(path)).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(PublishError::ReadObject(e)),
    };
    let bytes = got.bytes().await.map_err(PublishError::ReadObject)?;
    Ok(serde_json::from_slice(&bytes).ok())
}

/// A document that changes (a pointer, a status change), through `cache` while the listing
/// shows the same version of it.
async fn versioned<T: Clone>(
    store: &Store,
    meta: &object_store::ObjectMeta,
    cache: &std::sync::Mutex<BTreeMap<String, (String, T)>>,
    read: impl FnOnce(Option<Value>) -> T,
) -> Result<T, PublishError> {
    let path = meta.location.to_string();
    let v = version(meta);
    if let Some((known, value)) = cache.lock().ok().and_then(|c| c.get(&path).cloned())
        && known == v
    {
        return Ok(value);
    }
    let value = read(read_doc(&store.inner, &path).await?);
    if let Ok(mut c) = cache.lock() {
        c.insert(path, (v, value.clone()));
    }
    Ok(value)
}

/// What a manifest says of its release: each dataset with its rows, the area dimension of
/// those that have one, when it was released and with what label.
#[derive(Debug, Clone, Default)]
struct Named {
    datasets: Vec<(String, u64)>,
    areas: BTreeMap<String, String>,
    released: Option<String>,
    label: ReleaseLabel,
}

/// What a manifest says (areas, release time and label are absent in manifests written
/// before they were recorded: none, and `final`).
fn manifest_datasets(manifest: &Value) -> Named {
    let entries = manifest["datasets"].as_array().into_iter().flatten();
    let mut named = Named {
        released: manifest["released"].as_str().map(String::from),
        label: serde_json::from_value(manifest.clone()).unwrap_or_default(),
        ..Named::default()
    };
    for d in entries {
        let name = d["dataset"].as_str().unwrap_or_default().to_string();
        if let Some(a) = d["area"].as_str() {
            named.areas.insert(name.clone(), a.to_string());
        }
        named.datasets.push((name, d["rows"].as_u64().unwrap_or(0)));
    }
    named
}

/// Every release of a line, by period and run.
pub async fn list(store: &Store, line: &str) -> Result<Vec<Release>, PublishError> {
    list_cached(store, line, &ManifestCache::default()).await
}

/// The objects of a line's releases that say what a release is: its manifest, an
/// operator's change of its status, by (period, run); and each period's pointer.
#[derive(Default)]
struct Listed {
    manifests: BTreeMap<(String, String), object_store::ObjectMeta>,
    changes: BTreeMap<(String, String), object_store::ObjectMeta>,
    pointers: BTreeMap<String, object_store::ObjectMeta>,
}

async fn list_objects(store: &Store, line: &str) -> Result<Listed, PublishError> {
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
    let mut listed = Listed::default();
    for m in metas {
        let parts: Vec<&str> = m.location.as_ref().split('/').collect();
        match parts.as_slice() {
            [_, _, period, run, "_manifest.json"] => {
                listed
                    .manifests
                    .insert((period.to_string(), run.to_string()), m);
            }
            [_, _, period, run, "_status.json"] => {
                listed
                    .changes
                    .insert((period.to_string(), run.to_string()), m);
            }
            [_, _, period, "latest.json"] => {
                listed.pointers.insert(period.to_string(), m);
            }
            _ => {}
        }
    }
    Ok(listed)
}

/// What a manifest says, from the cache or read once; `None` for one that is not JSON.
async fn manifest_of(
    store: &Store,
    meta: &object_store::ObjectMeta,
    cache: &ManifestCache,
) -> Result<Option<Named>, PublishError> {
    let path = meta.location.to_string();
    if let Some(known) = cache
        .manifests
        .lock()
        .ok()
        .and_then(|c| c.get(&path).cloned())
    {
        return Ok(Some(known));
    }
    let Some(manifest) = read_doc(&store.inner, &path).await? else {
        return Ok(None);
    };
    let mut named = manifest_datasets(&manifest);
    named.released.get_or_insert_with(|| {
        meta.last_modified
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    });
    if let Ok(mut c) = cache.manifests.lock() {
        c.insert(path, named.clone());
    }
    Ok(Some(named))
}

/// [`list`], reading only the manifests `cache` does not hold yet, and pointers and status
/// changes only when they changed. A store that cannot be read is an error, never a
/// shorter list; a manifest that is not JSON is left out (and logged).
pub async fn list_cached(
    store: &Store,
    line: &str,
    cache: &ManifestCache,
) -> Result<Vec<Release>, PublishError> {
    let listed = list_objects(store, line).await?;
    let mut current: BTreeMap<&str, Option<String>> = BTreeMap::new();
    for (period, meta) in &listed.pointers {
        let run = versioned(store, meta, &cache.pointers, |doc| {
            doc.and_then(|p| p["run_id"].as_str().map(String::from))
        })
        .await?;
        current.insert(period.as_str(), run);
    }
    let mut out = Vec::new();
    for ((period, run), meta) in &listed.manifests {
        let Some(named) = manifest_of(store, meta, cache).await? else {
            tracing::warn!(line, period = %period, run = %run, "a manifest that is not JSON; its release is not listed");
            continue;
        };
        let change = match listed.changes.get(&(period.clone(), run.clone())) {
            Some(meta) => {
                versioned(store, meta, &cache.changes, |doc| {
                    doc.and_then(|d| serde_json::from_value::<StatusFile>(d).ok())
                        .map(|f| f.last.label)
                })
                .await?
            }
            None => None,
        };
        let label = change.unwrap_or(named.label);
        out.push(Release {
            line: line.to_string(),
            current: current.get(period.as_str()).cloned().flatten().as_deref() == Some(run),
            period: period.clone(),
            run_id: run.clone(),
            datasets: named.datasets,
            areas: named.areas,
            released: named.released,
            status: label.status,
            // Shown on pages and in terminals: a note that does not pass the check now
            // (written by hand into the store) is not shown.
            note: crate::publish::revision::check_note(label.note)
                .ok()
                .flatten(),
        });
    }
    Ok(out)
}

/// A table of releases for the terminal: each with its release time, status and note.
pub fn render(releases: &[Release]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<32} {:<7} {:<24} {:<11} datasets",
        "period", "run", "current", "released", "status"
    );
    for r in releases {
        let ds: Vec<String> = r
            .datasets
            .iter()
            .map(|(d, n)| format!("{d} ({n} rows)"))
            .collect();
        let _ = writeln!(
            out,
            "{:<10} {:<32} {:<7} {:<24} {:<11} {}",
            r.period,
            r.run_id,
            if r.current { "*" } else { "" },
            r.released.as_deref().unwrap_or("-"),
            r.status,
            ds.join(", ")
        );
        if let Some(note) = &r.note {
            let _ = writeln!(out, "{:<10} note: {note}", "");
        }
    }
    out
}

/// Where `dataset` is published: the line that publishes it, and its current releases
/// that are served (not withdrawn) and hold the dataset, by period → run id. `None` when no
/// line of the store has released it. What a release source reads.
pub async fn current_of_dataset(
    store: &Store,
    dataset: &str,
) -> Result<Option<(String, BTreeMap<String, String>)>, PublishError> {
    let prefix = Path::from(crate::store::layout::RELEASES);
    let listed = match store.inner.list_with_delimiter(Some(&prefix)).await {
        Ok(l) => l,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(source) => return Err(PublishError::ListAllReleases { source }),
    };
    let mut lines: Vec<String> = (listed.common_prefixes.iter())
        .filter_map(|p| p.filename().map(String::from))
        .collect();
    lines.sort();
    for line in lines {
        let releases = list(store, &line).await?;
        if !(releases.iter()).any(|r| r.datasets.iter().any(|(d, _)| d == dataset)) {
            continue;
        }
        let current = releases
            .into_iter()
            .filter(|r| r.current && r.status != crate::publish::revision::ReleaseStatus::Withdrawn)
            .filter(|r| r.datasets.iter().any(|(d, _)| d == dataset))
            .map(|r| (r.period, r.run_id))
            .collect();
        return Ok(Some((line, current)));
    }
    Ok(None)
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
