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

/// Where `dataset` is published: the first line (by name) whose current releases hold it
/// and are served (not withdrawn), with those releases by period → run id; else the first
/// whose current releases hold it, all withdrawn (no period); `None` when no line's current
/// release holds it. What a release source reads.
///
/// Only the periods' pointers and the manifests (and status changes) they name are read
/// ([`current_holding`]): a run's cost does not grow with the runs every line ever released.
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
    // A line whose current releases of the dataset are all withdrawn is its publisher only
    // when no other line serves it (then reading it is R004, no current release).
    let mut withdrawn = None;
    for line in lines {
        let holding = current_holding(store, &line, dataset).await?;
        if holding.is_empty() {
            continue;
        }
        let served: BTreeMap<String, String> = (holding.into_iter())
            .filter(|(_, _, status)| *status != crate::publish::revision::ReleaseStatus::Withdrawn)
            .map(|(period, run, _)| (period, run))
            .collect();
        if served.is_empty() {
            withdrawn.get_or_insert((line, served));
            continue;
        }
        return Ok(Some((line, served)));
    }
    Ok(withdrawn)
}

/// How many periods' pointers [`current_holding`] reads at once.
const POINTERS_AT_ONCE: usize = 16;

/// The current release of each period of `line` whose manifest holds `dataset`: period,
/// run id and status (as an operator last set it).
async fn current_holding(
    store: &Store,
    line: &str,
    dataset: &str,
) -> Result<Vec<(String, String, crate::publish::revision::ReleaseStatus)>, PublishError> {
    use futures::StreamExt as _;
    let prefix = Path::from(crate::store::layout::releases_of(line));
    let listed = (store.inner.list_with_delimiter(Some(&prefix)).await).map_err(|source| {
        PublishError::ListReleases {
            line: line.to_string(),
            source,
        }
    })?;
    let periods: Vec<String> = (listed.common_prefixes.iter())
        .filter_map(|p| p.filename().map(String::from))
        .collect();
    let reads: Vec<_> = (periods.into_iter())
        .map(|period| async move {
            let found = current_release(store, line, &period).await?;
            Ok::<_, PublishError>(found.and_then(|c| {
                let holds = manifest_datasets(&c.manifest)
                    .datasets
                    .iter()
                    .any(|(d, _)| d == dataset);
                holds.then_some((period, c.run_id, c.status))
            }))
        })
        .collect();
    let found: Vec<_> = futures::stream::iter(reads)
        .buffered(POINTERS_AT_ONCE)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

/// A period's current release as its pointer names it.
pub struct CurrentRelease {
    pub run_id: String,
    /// Its manifest.
    pub manifest: Value,
    /// Its status, as an operator last set it or else as its run gave it.
    pub status: crate::publish::revision::ReleaseStatus,
}

/// The current release of `period` of `line`, read from its pointer, the manifest that
/// names and the status change, if any: `None` without a pointer. A pointer or manifest
/// that is not JSON is passed over (and logged), as [`list_cached`] does.
pub async fn current_release(
    store: &Store,
    line: &str,
    period: &str,
) -> Result<Option<CurrentRelease>, PublishError> {
    let pointer = crate::store::layout::release_pointer(line, period);
    let Some(doc) = read_doc(&store.inner, &pointer).await? else {
        return Ok(None);
    };
    let Some(run_id) = doc["run_id"].as_str().map(String::from) else {
        tracing::warn!(
            line,
            period,
            "a pointer that names no run; its period is not read"
        );
        return Ok(None);
    };
    let folder = crate::store::layout::release(line, period, &run_id);
    let Some(manifest) = read_doc(&store.inner, &crate::store::layout::manifest(&folder)).await?
    else {
        tracing::warn!(line, period, run = %run_id, "a current release without a manifest that is JSON; it is not read");
        return Ok(None);
    };
    let changed = read_doc(&store.inner, &crate::store::layout::release_status(&folder)).await?;
    let changed = changed.and_then(|d| serde_json::from_value::<StatusFile>(d).ok());
    let status = changed.map_or_else(
        || manifest_datasets(&manifest).label.status,
        |f| f.last.label.status,
    );
    Ok(Some(CurrentRelease {
        run_id,
        manifest,
        status,
    }))
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn put(store: &Store, path: &str, doc: Value) {
        let bytes = serde_json::to_vec(&doc).unwrap();
        store
            .inner
            .put(&Path::from(path), bytes.into())
            .await
            .unwrap();
    }

    /// A release of `line` holding `datasets`; made current when `current`.
    async fn release(
        store: &Store,
        line: &str,
        period: &str,
        run: &str,
        datasets: &[&str],
        current: bool,
    ) {
        let folder = crate::store::layout::release(line, period, run);
        let entries: Vec<Value> = (datasets.iter())
            .map(|d| serde_json::json!({ "dataset": d, "rows": 1 }))
            .collect();
        put(
            store,
            &crate::store::layout::manifest(&folder),
            serde_json::json!({ "datasets": entries }),
        )
        .await;
        if current {
            let pointer = crate::store::layout::release_pointer(line, period);
            put(store, &pointer, serde_json::json!({ "run_id": run })).await;
        }
    }

    /// A dataset is read from the line whose current releases hold it: a line that held it
    /// only in releases replaced since (a renamed dataset) is not the publisher, and its
    /// old runs are not read. Withdrawn current releases are left out. Before, the first
    /// line with any release of the dataset was taken, and every manifest it ever wrote read.
    #[tokio::test]
    async fn a_dataset_comes_from_the_line_whose_current_releases_hold_it() {
        let store = crate::store::open("memory://releases").unwrap();
        release(&store, "aa", "2024", "r1", &["jonot"], false).await;
        release(&store, "aa", "2024", "r2", &["jonot_v2"], true).await;
        // Not JSON: were it read, it would be passed over with a warning, not fail.
        store
            .inner
            .put(
                &Path::from("releases/aa/2023/r0/_manifest.json"),
                b"{".to_vec().into(),
            )
            .await
            .unwrap();
        release(&store, "bb", "2025-01", "r3", &["jonot"], false).await;
        release(&store, "bb", "2025-01", "r4", &["jonot"], true).await;
        release(&store, "bb", "2025-02", "r5", &["jonot"], true).await;
        release(&store, "bb", "2025-03", "r6", &["jonot"], true).await;
        let status = crate::store::layout::release_status(&crate::store::layout::release(
            "bb", "2025-03", "r6",
        ));
        put(
            &store,
            &status,
            serde_json::json!({ "status": "withdrawn", "changed": "2025-04-01T00:00:00Z" }),
        )
        .await;

        // A line whose current release of it is withdrawn does not publish it while
        // another serves it; alone, it is the publisher of no period.
        release(&store, "ab", "2024", "r7", &["jonot", "vain"], true).await;
        let folder = crate::store::layout::release("ab", "2024", "r7");
        let withdrawn =
            serde_json::json!({ "status": "withdrawn", "changed": "2025-04-01T00:00:00Z" });
        put(
            &store,
            &crate::store::layout::release_status(&folder),
            withdrawn,
        )
        .await;
        let only = current_of_dataset(&store, "vain").await.unwrap();
        assert_eq!(only, Some(("ab".to_string(), BTreeMap::new())));
        let (line, current) = current_of_dataset(&store, "jonot").await.unwrap().unwrap();
        assert_eq!(line, "bb");
        let want: BTreeMap<String, String> = [("2025-01", "r4"), ("2025-02", "r5")]
            .map(|(p, r)| (p.into(), r.into()))
            .into();
        assert_eq!(current, want);
        let (line, current) = current_of_dataset(&store, "jonot_v2")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((line.as_str(), current.len()), ("aa", 1));
        assert_eq!(current_of_dataset(&store, "muu").await.unwrap(), None);
    }
}
