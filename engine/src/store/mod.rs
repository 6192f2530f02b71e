//! Object storage: where a line reads its submissions and writes its releases.
//!
//! A store is a URL (`file:///data/valtava`, `s3://bucket/prefix`, `memory://`) or a local
//! folder path (the default `./valtava-data`). Locations in line files are paths relative to the store, or
//! URLs of their own. Sources read every object that matches a glob, in path order.

mod error;
pub mod layout;

pub use error::StoreError;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use globset::{GlobBuilder, GlobMatcher};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};

/// An opened store.
#[derive(Clone)]
pub struct Store {
    /// How the store was named.
    pub url: String,
    pub inner: Arc<dyn ObjectStore>,
    /// The folder of a local store (for [`sync`]); `None` for other stores.
    pub root: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

/// Opens a store from a URL or a local folder (created when missing).
pub fn open(url_or_path: &str) -> Result<Store, StoreError> {
    if let Some((scheme, rest)) = url_or_path.split_once("://") {
        return match scheme {
            "file" => open_dir(rest, url_or_path),
            "memory" => Ok(Store {
                url: url_or_path.into(),
                inner: Arc::new(InMemory::new()),
                root: None,
            }),
            "s3" | "s3a" => open_s3(rest, url_or_path),
            other => Err(StoreError::UnsupportedScheme {
                scheme: other.to_string(),
                url: url_or_path.to_string(),
            }),
        };
    }
    open_dir(url_or_path, url_or_path)
}

/// An S3 (or S3-compatible) store: `s3://bucket/prefix`. Credentials, region and endpoint
/// come from the environment as for AWS tools (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`, web identity or container
/// credentials); `AWS_ENDPOINT_URL` names an S3-compatible server (plain `http://` is
/// allowed for it), which is then addressed path-style.
fn open_s3(rest: &str, url: &str) -> Result<Store, StoreError> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(StoreError::NoBucket {
            url: url.to_string(),
        });
    }
    let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
    let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .or_else(|_| std::env::var("AWS_ENDPOINT"))
        .ok()
        .filter(|e| !e.is_empty());
    if let Some(e) = &endpoint {
        b = b
            .with_endpoint(e.clone())
            .with_allow_http(e.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    if std::env::var("AWS_REGION").is_ok_and(|r| !r.is_empty())
        && std::env::var("AWS_DEFAULT_REGION").is_err()
    {
        b = b.with_region(std::env::var("AWS_REGION").unwrap_or_default());
    }
    let s3 = b.build().map_err(|source| StoreError::OpenS3 {
        url: url.to_string(),
        source,
    })?;
    let inner: Arc<dyn ObjectStore> = match prefix.trim_matches('/') {
        "" => Arc::new(s3),
        p => Arc::new(object_store::prefix::PrefixStore::new(s3, p)),
    };
    Ok(Store {
        url: url.to_string(),
        inner,
        root: None,
    })
}

fn open_dir(dir: &str, url: &str) -> Result<Store, StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateFolder {
        dir: dir.to_string(),
        source,
    })?;
    open_existing_dir(dir, url)
}

/// A local folder that must exist (a source's folder is read, never made).
fn open_existing_dir(dir: &str, url: &str) -> Result<Store, StoreError> {
    let fs = LocalFileSystem::new_with_prefix(dir)
        .map_err(|source| StoreError::OpenFolder {
            dir: dir.to_string(),
            source,
        })?
        .with_automatic_cleanup(true);
    Ok(Store {
        url: url.to_string(),
        inner: Arc::new(fs),
        root: Some(std::path::PathBuf::from(dir)),
    })
}

/// Makes what was written at `path` (an object, or every object under a prefix) durable on
/// a local store: each file, then the folders that name them, are flushed to disk. The
/// local store writes a temporary file and renames it, but never flushes: after a power
/// loss a release pointer could name data that never reached the disk. So a run syncs its
/// release's objects before the manifest, and the manifest before the pointer. Other
/// stores are durable when a write returns.
pub fn sync(store: &Store, path: &str) -> Result<(), StoreError> {
    let Some(root) = &store.root else {
        return Ok(());
    };
    let target = root.join(path);
    let flush = |p: &std::path::Path| {
        std::fs::File::open(p)
            .and_then(|f| f.sync_all())
            .map_err(|source| StoreError::Flush {
                path: path.to_string(),
                source,
            })
    };
    if target.is_dir() {
        let mut folders = vec![target.clone()];
        while let Some(dir) = folders.pop() {
            for entry in std::fs::read_dir(&dir)
                .map_err(|source| StoreError::ReadFolder { source })?
                .flatten()
            {
                let p = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    folders.push(p);
                } else {
                    flush(&p)?;
                }
            }
            flush(&dir)?;
        }
    } else {
        flush(&target)?;
    }
    // The folders up to the store's root: a new folder's entry is in its parent.
    let mut dir = target.parent();
    while let Some(d) = dir.filter(|d| d.starts_with(root)) {
        flush(d)?;
        dir = d.parent();
    }
    Ok(())
}

/// A local location (a `file://` URL or an absolute path): the folder before the first
/// wildcard is the store and the rest the pattern; a path without wildcards names one file,
/// whose folder is the store.
fn local_location(path: &str, url: &str) -> Result<(Store, String), StoreError> {
    let (dir, pattern) = split_fixed(path);
    if !pattern.is_empty() {
        let dir = if dir.is_empty() { "/" } else { &dir };
        return Ok((open_existing_dir(dir, &format!("file://{dir}"))?, pattern));
    }
    let file = std::path::Path::new(path);
    let (Some(dir), Some(name)) = (file.parent(), file.file_name().and_then(|n| n.to_str())) else {
        return Err(StoreError::NoFile {
            url: url.to_string(),
        });
    };
    let dir = dir.to_str().filter(|d| !d.is_empty()).unwrap_or("/");
    Ok((
        open_existing_dir(dir, &format!("file://{dir}"))?,
        name.to_string(),
    ))
}

/// Where a source's objects are: a store and a glob inside it.
pub struct Location {
    pub store: Store,
    /// The fixed part of the path, listed.
    pub prefix: Path,
    /// The whole pattern, matched against listed paths.
    pub glob: Option<GlobMatcher>,
    pub pattern: String,
}

/// Resolves a location (after parameters are filled in) against the run's store.
pub fn locate(store: &Store, location: &str) -> Result<Location, StoreError> {
    let (store, path) = match location.split_once("://") {
        // A file URL or an absolute path names its own folder.
        Some(("file", rest)) => local_location(rest, location)?,
        None if location.starts_with('/') => local_location(location, location)?,
        Some((scheme @ ("s3" | "s3a"), rest)) => {
            // An object URL of its own: the bucket and fixed part open a store.
            let (dir, pattern) = split_fixed(rest);
            (open(&format!("{scheme}://{dir}"))?, pattern)
        }
        Some((scheme, _)) => {
            return Err(StoreError::UnsupportedLocation {
                scheme: scheme.to_string(),
            });
        }
        None => (store.clone(), location.trim_start_matches("./").to_string()),
    };
    let (fixed, _) = split_fixed(&path);
    let has_glob = path.contains(['*', '?', '[']);
    let glob = if has_glob {
        Some(
            GlobBuilder::new(&path)
                .literal_separator(true)
                .build()
                .map_err(|source| StoreError::BadPattern {
                    pattern: path.clone(),
                    source,
                })?
                .compile_matcher(),
        )
    } else {
        None
    };
    Ok(Location {
        store,
        prefix: Path::from(fixed.as_str()),
        glob,
        pattern: path,
    })
}

/// Splits a path at the last `/` before the first wildcard.
fn split_fixed(path: &str) -> (String, String) {
    let first_wild = path.find(['*', '?', '[']).unwrap_or(path.len());
    match path[..first_wild].rfind('/') {
        Some(i) if first_wild < path.len() => (path[..i].to_string(), path[i + 1..].to_string()),
        _ if first_wild < path.len() => (String::new(), path.to_string()),
        _ => (path.to_string(), String::new()),
    }
}

impl Location {
    /// The objects, sorted by path.
    pub async fn list(&self) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut out: Vec<ObjectMeta> = match &self.glob {
            Some(g) => self
                .store
                .inner
                .list(Some(&self.prefix))
                .try_filter(|m| futures::future::ready(g.is_match(m.location.as_ref())))
                .try_collect()
                .await
                .map_err(|source| StoreError::List {
                    pattern: self.pattern.clone(),
                    source,
                })?,
            None => {
                match object_store::ObjectStoreExt::head(self.store.inner.as_ref(), &self.prefix)
                    .await
                {
                    Ok(m) => vec![m],
                    Err(object_store::Error::NotFound { .. }) => vec![],
                    Err(source) => {
                        return Err(StoreError::Read {
                            pattern: self.pattern.clone(),
                            source,
                        });
                    }
                }
            }
        };
        out.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(out)
    }
}

/// Fills `{name}` placeholders.
pub fn fill(template: &str, values: &std::collections::BTreeMap<String, String>) -> String {
    let mut out = template.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// The locations a location stands for when it names list placeholders (`{period.months}`
/// → the text of each month of the run's period): one for each value, in the list's order;
/// every place that names one placeholder takes the same value. A location without them is
/// itself.
pub fn expand(location: &str, lists: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut out = vec![location.to_string()];
    for (name, values) in lists {
        let placeholder = format!("{{{name}}}");
        if !location.contains(&placeholder) {
            continue;
        }
        out = out
            .iter()
            .flat_map(|l| values.iter().map(|v| l.replace(&placeholder, v)))
            .collect();
    }
    out
}

/// A location with its list placeholders written as a glob's alternatives
/// (`inbox/x/{2025-01,2025-02}/*.csv`), for people and lineage: what [`expand`] reads.
pub fn shown(location: &str, lists: &BTreeMap<String, Vec<String>>) -> String {
    let mut out = location.to_string();
    for (name, values) in lists {
        out = out.replace(&format!("{{{name}}}"), &format!("{{{}}}", values.join(",")));
    }
    out
}

/// The objects of the locations one source reads (a location expanded by [`expand`]).
pub struct Listing {
    /// Each location as written, and where it is.
    pub locations: Vec<(String, Location)>,
    /// Every object with the index of its location: the locations in order, each one's
    /// objects by path; an object that two locations match is listed once, under the first.
    pub objects: Vec<(usize, ObjectMeta)>,
    /// How many objects each location gave (none is no error here).
    pub counts: Vec<usize>,
}

/// Lists every location of a source against the run's store ([`locate`], [`Location::list`]).
pub async fn list_all(store: &Store, locations: &[String]) -> Result<Listing, StoreError> {
    let mut listing = Listing {
        locations: Vec::new(),
        objects: Vec::new(),
        counts: Vec::new(),
    };
    let mut seen = std::collections::BTreeSet::new();
    for (i, text) in locations.iter().enumerate() {
        let loc = locate(store, text)?;
        let found = loc.list().await?;
        listing.counts.push(found.len());
        for meta in found {
            if seen.insert((loc.store.url.clone(), meta.location.to_string())) {
                listing.objects.push((i, meta));
            }
        }
        listing.locations.push((text.clone(), loc));
    }
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{ObjectStoreExt, PutPayload};

    #[tokio::test]
    async fn globs_list_sorted_matches_only() {
        let s = open("memory://").unwrap();
        for p in [
            "inbox/l/2025-03/b.csv",
            "inbox/l/2025-03/a.csv",
            "inbox/l/2025-03/x.txt",
            "inbox/l/2025-04/c.csv",
            "inbox/l/2025-03/sub/d.csv",
        ] {
            s.inner
                .put(&Path::from(p), PutPayload::from_static(b"x"))
                .await
                .unwrap();
        }
        let l = locate(&s, "inbox/l/2025-03/*.csv").unwrap();
        let got: Vec<String> = l
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.location.to_string())
            .collect();
        assert_eq!(got, vec!["inbox/l/2025-03/a.csv", "inbox/l/2025-03/b.csv"]);
        let l = locate(&s, "inbox/l/**/*.csv").unwrap();
        assert_eq!(l.list().await.unwrap().len(), 4);
        let l = locate(&s, "inbox/l/2025-04/c.csv").unwrap();
        assert_eq!(l.list().await.unwrap().len(), 1);
        let l = locate(&s, "inbox/l/2025-05/c.csv").unwrap();
        assert!(l.list().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn list_placeholders_read_each_location_in_order() {
        let s = open("memory://").unwrap();
        for p in [
            "inbox/l/2025-02/b.csv",
            "inbox/l/2025-01/z.csv",
            "inbox/l/2025-01/a.csv",
            "inbox/l/2025-07/c.csv",
        ] {
            s.inner
                .put(&Path::from(p), PutPayload::from_static(b"x"))
                .await
                .unwrap();
        }
        let lists = BTreeMap::from([(
            "period.months".to_string(),
            vec!["2025-01".to_string(), "2025-02".into(), "2025-03".into()],
        )]);
        let template = "inbox/l/{period.months}/*.csv";
        let locations = expand(template, &lists);
        assert_eq!(
            locations,
            [
                "inbox/l/2025-01/*.csv",
                "inbox/l/2025-02/*.csv",
                "inbox/l/2025-03/*.csv"
            ]
        );
        assert_eq!(
            shown(template, &lists),
            "inbox/l/{2025-01,2025-02,2025-03}/*.csv"
        );
        let listing = list_all(&s, &locations).await.unwrap();
        let got: Vec<(usize, String)> = (listing.objects.iter())
            .map(|(i, m)| (*i, m.location.to_string()))
            .collect();
        // Month by month, by path within each; July is not in the period; March is empty.
        assert_eq!(
            got,
            [
                (0, "inbox/l/2025-01/a.csv".to_string()),
                (0, "inbox/l/2025-01/z.csv".to_string()),
                (1, "inbox/l/2025-02/b.csv".to_string()),
            ]
        );
        assert_eq!(listing.counts, [2, 1, 0]);
        // An object two locations match is read once; a location without lists is itself.
        let twice = vec![
            "inbox/l/2025-01/*.csv".to_string(),
            "inbox/l/*/a.csv".into(),
        ];
        assert_eq!(list_all(&s, &twice).await.unwrap().objects.len(), 2);
        assert_eq!(
            expand("inbox/{period}/*.csv", &lists),
            ["inbox/{period}/*.csv"]
        );
    }

    #[test]
    fn split_keeps_the_fixed_folder() {
        assert_eq!(split_fixed("a/b/*.csv"), ("a/b".into(), "*.csv".into()));
        assert_eq!(split_fixed("*.csv"), ("".into(), "*.csv".into()));
        assert_eq!(split_fixed("a/b.csv"), ("a/b.csv".into(), "".into()));
        assert!(open("ftp://x").is_err());
    }
}
