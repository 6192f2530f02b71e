//! Collecting what killed runs leave behind.
//!
//! A run stopped by `kill -9`, a lost machine or a power cut leaves its scratch folder
//! (spilled step outputs, gigabytes), the objects of a release it was publishing (a prefix
//! under `releases/` that never got a manifest: readers never see it, but it fills the
//! store), its partial quarantine, and a cluster run's work files. So every run announces
//! itself with a lease (`running/<line>/<run id>.json`: the host, the process and the
//! prefixes it writes), renewed every minute and removed when the run ends. A lease whose
//! process is gone (on this host) or that was not renewed for ten minutes (another host)
//! marks a killed run: its prefixes without a manifest are removed. This happens at the
//! next start of a run and of the daemon, and by `valtava gc`, which reports what it
//! removed. Failures are ignored: the next collection tries again.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use crate::run::report::fail;
use crate::run::{RunCode, RunFailure};
use crate::store::Store;

/// Where the leases of running runs are.
use crate::store::layout::RUNNING;

/// A run's lease is renewed this often.
const RENEW: std::time::Duration = std::time::Duration::from_secs(60);

/// A run lease not renewed for this long belongs to a run that was killed (another host's:
/// on this host a gone process says it at once).
pub const RUN_LEASE_STALE: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// The object that marks a cluster run's work folder as in use (renewed every minute).
pub const WORK_LEASE: &str = "_lease";

/// A work folder whose lease was last renewed this long ago belongs to a run that ended
/// without cleaning up (killed, or its machine lost).
pub const WORK_LEASE_STALE: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// A work folder without a lease (killed before it wrote one) is left this long.
pub const WORK_UNLEASED_STALE: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// What a run's lease says.
#[derive(Debug, Serialize, Deserialize)]
struct LeaseInfo {
    host: String,
    pid: u32,
    run_id: String,
    /// The run report a finished run writes: with it, the run ended and its outputs stay.
    report: String,
    /// The prefixes the run writes; those without a `_manifest.json` are removed when the
    /// run is found killed.
    prefixes: Vec<String>,
    /// The boot and start time of the process (Linux): a process number used again by
    /// another program after a reboot or a wrap-around is not taken for the run's.
    #[serde(default)]
    process: Option<String>,
}

/// A running run's lease: renewed while it is held, removed by [`Lease::end`] (or, when
/// dropped on an early return, by a task of its own).
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    path: Path,
    renew: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Takes the lease of run `run_id` of `line`, which writes under `prefixes`; a failure
    /// is a `Write` failure.
    pub async fn take(
        store: &Store,
        line: &str,
        run_id: &str,
        prefixes: Vec<String>,
    ) -> Result<Lease, RunFailure> {
        let path = Path::from(crate::store::layout::lease(line, run_id));
        let info = LeaseInfo {
            host: host(),
            pid: std::process::id(),
            run_id: run_id.to_string(),
            report: crate::store::layout::run_report(line, run_id),
            prefixes,
            process: process_key(std::process::id()),
        };
        let bytes =
            bytes::Bytes::from(serde_json::to_vec(&info).map_err(|e| fail(RunCode::Write, e))?);
        store
            .inner
            .put(&path, bytes.clone().into())
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => fail(
                    RunCode::Write,
                    format!(
                        "cannot write to store {}: its bucket or folder does not exist",
                        store.url
                    ),
                ),
                e => fail(
                    RunCode::Write,
                    format!("cannot write the run's lease to store {}: {e}", store.url),
                ),
            })?;
        let (inner, at) = (store.inner.clone(), path.clone());
        let renew = tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW).await;
                let _ = inner.put(&at, bytes.clone().into()).await;
            }
        });
        Ok(Lease {
            store: store.inner.clone(),
            path,
            renew,
        })
    }

    /// The run ended (however): its lease goes.
    pub async fn end(mut self) {
        self.renew.abort();
        // Once the renewal has stopped, dropping the lease does nothing more.
        let _ = (&mut self.renew).await;
        let _ = self.store.delete(&self.path).await;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.renew.is_finished() {
            return; // ended
        }
        self.renew.abort();
        // Dropped without `end`: the run returned early or its task panicked. What it left
        // unpublished is collected now, as for a killed run, not left for a process that
        // looks alive for as long as the daemon runs.
        let (store, path) = (self.store.clone(), self.path.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let mut collected = Collected::default();
                if let Ok(meta) = store.head(&path).await {
                    reclaim(&store, &meta, &mut collected).await;
                }
            });
        }
    }
}

/// What a collection removed.
#[derive(Debug, Default, Serialize)]
pub struct Collected {
    /// Scratch folders of runs whose process is gone.
    pub scratch: Vec<String>,
    /// Runs found killed, whose unfinished prefixes were removed.
    pub runs: Vec<String>,
    /// Prefixes removed (releases without a manifest, quarantines, captures).
    pub prefixes: Vec<String>,
    /// Cluster work folders of runs that did not end.
    pub work: Vec<String>,
}

impl Collected {
    /// Whether nothing was removed.
    pub fn is_empty(&self) -> bool {
        self.scratch.is_empty() && self.runs.is_empty() && self.work.is_empty()
    }
}

/// Collects the leftovers of killed runs in `store` and in this machine's temporary folder.
pub async fn collect(store: &Store) -> Collected {
    let now = chrono::Utc::now();
    let mut collected = Collected {
        scratch: remove_stale_scratch(&std::env::temp_dir()),
        ..Default::default()
    };
    collect_runs(&store.inner, now, &mut collected).await;
    collected.work = sweep_work(&store.inner, now).await;
    if !collected.is_empty() {
        info!(
            scratch = collected.scratch.len(),
            runs = collected.runs.len(),
            work = collected.work.len(),
            "removed what killed runs left behind"
        );
    }
    collected
}

/// This machine's name, to tell its own runs' leases from other machines'.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Whether process `pid` of this machine is running; `None` where that cannot be told.
fn running(pid: u32) -> Option<bool> {
    cfg!(target_os = "linux").then(|| std::path::Path::new("/proc").join(pid.to_string()).exists())
}

/// Who process `pid` is, beyond its number: this boot's id and the process's start time
/// (Linux `/proc`). `None` where that cannot be told.
fn process_key(pid: u32) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from its end.
    let after = &stat[stat.rfind(')')? + 1..];
    let start = after.split_whitespace().nth(19)?;
    Some(format!("{}:{start}", boot.trim()))
}

/// Whether the run a lease of this host names is still running.
fn lease_alive(info: &LeaseInfo) -> Option<bool> {
    let number_running = running(info.pid)?;
    Some(match &info.process {
        Some(key) => number_running && process_key(info.pid).as_ref() == Some(key),
        None => number_running,
    })
}

/// Removes the unfinished prefixes of runs whose lease shows them killed.
async fn collect_runs(
    store: &Arc<dyn ObjectStore>,
    now: chrono::DateTime<chrono::Utc>,
    collected: &mut Collected,
) {
    let here = host();
    let leases: Vec<_> = store
        .list(Some(&Path::from(RUNNING)))
        .filter_map(|m| async move { m.ok() })
        .collect()
        .await;
    for meta in leases {
        let Ok(got) = store.get(&meta.location).await else {
            continue;
        };
        let Ok(bytes) = got.bytes().await else {
            continue;
        };
        let info: Option<LeaseInfo> = serde_json::from_slice(&bytes).ok();
        let killed = match &info {
            Some(i) if i.host == here && !here.is_empty() => {
                lease_alive(i).map_or(now - meta.last_modified > RUN_LEASE_STALE, |alive| !alive)
            }
            _ => now - meta.last_modified > RUN_LEASE_STALE,
        };
        if killed {
            reclaim(store, &meta, collected).await;
        }
    }
}

/// Removes what the run of a lease left unpublished (unless its run report says it
/// ended), then the lease.
async fn reclaim(
    store: &Arc<dyn ObjectStore>,
    meta: &object_store::ObjectMeta,
    collected: &mut Collected,
) {
    let info: Option<LeaseInfo> = match store.get(&meta.location).await {
        Ok(got) => got
            .bytes()
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok()),
        Err(_) => return,
    };
    let finished = match &info {
        Some(i) => store.head(&Path::from(i.report.as_str())).await.is_ok(),
        None => false,
    };
    for prefix in info.iter().filter(|_| !finished).flat_map(|i| &i.prefixes) {
        let manifest = Path::from(crate::store::layout::manifest(prefix));
        if store.head(&manifest).await.is_ok() {
            continue;
        }
        crate::publish::remove_prefix(store, prefix).await;
        collected.prefixes.push(prefix.clone());
    }
    let run = info.map_or_else(|| meta.location.to_string(), |i| i.run_id);
    info!(run = %run, "removed the unfinished outputs of a run that did not end");
    collected.runs.push(run);
    let _ = store.delete(&meta.location).await;
}

/// Removes the work folders (`work/<run id>/`, the copies of a cluster run's step inputs)
/// of runs that were killed: their lease is stale, or they have none and nothing in them is
/// recent. A run still going on another machine keeps renewing its lease and is left alone.
/// Times are the store's.
pub(crate) async fn sweep_work(
    store: &Arc<dyn ObjectStore>,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    let prefix = Path::from("work");
    let mut folders: BTreeMap<String, Vec<object_store::ObjectMeta>> = BTreeMap::new();
    let mut list = store.list(Some(&prefix));
    while let Some(Ok(meta)) = list.next().await {
        if let Some(run) = meta.location.parts().nth(1) {
            folders
                .entry(run.as_ref().to_string())
                .or_default()
                .push(meta);
        }
    }
    let mut removed = Vec::new();
    for (run, objects) in folders {
        let lease = objects
            .iter()
            .find(|m| m.location.filename() == Some(WORK_LEASE))
            .map(|m| m.last_modified);
        let newest = objects.iter().map(|m| m.last_modified).max();
        let stale = match (lease, newest) {
            (Some(l), _) => now - l > WORK_LEASE_STALE,
            (None, Some(n)) => now - n > WORK_UNLEASED_STALE,
            (None, None) => false,
        };
        if stale {
            info!(run = %run, objects = objects.len(), "removing the work files of a run that did not end");
            for m in objects {
                let _ = store.delete(&m.location).await;
            }
            removed.push(run);
        }
    }
    removed
}

/// The scratch folder of a run: `valtava-<run id>-<pid>` in the temporary folder, made
/// fresh and readable by this user only. An existing one (or a link planted under its
/// name) is refused, never followed: the folder holds spilled rows.
/// The folder holds a lock file the run keeps locked: a process in another container
/// that shares the temporary folder has process numbers this one cannot see, and its lock
/// is what tells that its folder is in use. The folder goes when the run ends, however it
/// ends (the value is dropped). A failure is a `Write` failure.
pub fn make_scratch(run_id: &str) -> Result<Scratch, RunFailure> {
    let dir = std::env::temp_dir().join(format!("valtava-{run_id}-{}", std::process::id()));
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&dir).map_err(|e| {
        fail(
            RunCode::Write,
            format!("scratch folder `{}`: {e}", dir.display()),
        )
    })?;
    let lock = std::fs::File::create_new(dir.join(SCRATCH_LOCK))
        .and_then(|f| f.try_lock().map(|()| f).map_err(std::io::Error::other))
        .map_err(|e| {
            fail(
                RunCode::Write,
                format!("scratch folder `{}`: {e}", dir.display()),
            )
        });
    match lock {
        Ok(lock) => Ok(Scratch { dir, _lock: lock }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

/// The lock file in a scratch folder.
const SCRATCH_LOCK: &str = ".lock";

/// A run's scratch folder, locked while the value lives and removed when it is dropped.
pub struct Scratch {
    dir: std::path::PathBuf,
    _lock: std::fs::File,
}

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether a scratch folder's lock is held (by a running run, perhaps in another
/// container). A folder without a lock file is judged by its process number alone.
fn scratch_in_use(dir: &std::path::Path) -> bool {
    match std::fs::File::open(dir.join(SCRATCH_LOCK)) {
        Ok(f) => f.try_lock().is_err(),
        Err(_) => false,
    }
}

/// The process number in a scratch folder's name (`valtava-<run id>-<pid>`), where the name
/// is one.
fn scratch_pid(name: &str) -> Option<u32> {
    let (run, pid) = name.strip_prefix("valtava-")?.rsplit_once('-')?;
    let stamp = run.split('-').next()?;
    let looks_like_run = stamp.len() == 19
        && stamp.ends_with('Z')
        && stamp.as_bytes().get(8) == Some(&b'T')
        && run
            .split('-')
            .skip(1)
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()));
    looks_like_run.then(|| pid.parse().ok()).flatten()
}

/// Removes the scratch folders in `dir` that runs killed by a signal left behind: those
/// of this user whose process is no longer running (on Linux). Returns their names.
fn remove_stale_scratch(dir: &std::path::Path) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(scratch_pid) else {
            continue;
        };
        if pid == std::process::id() || running(pid) != Some(false) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        // Only this user's folders: another user's are not ours to judge.
        #[cfg(target_os = "linux")]
        // SAFETY: geteuid has no preconditions and cannot fail.
        let ours = std::os::unix::fs::MetadataExt::uid(&meta) == unsafe { libc::geteuid() };
        #[cfg(not(target_os = "linux"))]
        let ours = false;
        if meta.is_dir() && ours && !scratch_in_use(&entry.path()) {
            debug!(path = %entry.path().display(), "removing a stale scratch folder");
            if std::fs::remove_dir_all(entry.path()).is_ok() {
                removed.push(name.to_string_lossy().into_owned());
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn scratch_folders_of_gone_processes_are_removed_at_once() {
        let dir = std::env::temp_dir().join(format!("valtava-scratch-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // No process has this number (above the kernel's largest).
        let gone = "valtava-20261126T093727190Z-9d8f266e-0a1b2c3d-999999999";
        let old_style = "valtava-20261126T093727190Z-9d8f266e-999999999";
        let alive = format!(
            "valtava-20261126T093727190Z-9d8f266e-0a1b2c3d-{}",
            std::process::id()
        );
        let other = "valtava-bench";
        for name in [gone, old_style, alive.as_str(), other] {
            std::fs::create_dir_all(dir.join(name)).unwrap();
            std::fs::write(dir.join(name).join("step.arrow"), b"x").unwrap();
        }
        // A folder whose lock is held is in use, whatever its process number says (a run
        // in another container sharing the folder).
        let elsewhere = "valtava-20261126T093727190Z-9d8f266e-0a1b2c3e-999999998";
        std::fs::create_dir_all(dir.join(elsewhere)).unwrap();
        let lock = std::fs::File::create(dir.join(elsewhere).join(SCRATCH_LOCK)).unwrap();
        lock.lock().unwrap();
        let mut removed = remove_stale_scratch(&dir);
        removed.sort();
        assert_eq!(removed, vec![gone.to_string(), old_style.to_string()]);
        assert!(dir.join(elsewhere).exists());
        drop(lock);
        assert_eq!(remove_stale_scratch(&dir), vec![elsewhere.to_string()]);
        assert!(!dir.join(gone).exists() && !dir.join(old_style).exists());
        assert!(dir.join(&alive).exists());
        assert!(dir.join(other).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A scratch folder is made fresh for this user only; one already there (or a link
    /// planted under its name) is refused.
    #[test]
    #[cfg(unix)]
    fn scratch_folders_are_private_and_never_reused() {
        use std::os::unix::fs::PermissionsExt;
        let run = format!("20261205T000000000Z-abcdef01-{:08x}", std::process::id());
        let scratch = make_scratch(&run).unwrap();
        let dir = scratch.to_path_buf();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        assert!(make_scratch(&run).is_err());
        // Dropped, it is gone.
        drop(scratch);
        assert!(!dir.exists());
        let target = std::env::temp_dir().join(format!("valtava-planted-{}", std::process::id()));
        std::fs::create_dir_all(&target).unwrap();
        std::os::unix::fs::symlink(&target, &dir).unwrap();
        assert!(make_scratch(&run).is_err());
        std::fs::remove_file(&dir).unwrap();
        std::fs::remove_dir(&target).unwrap();
    }

    /// A lease of a process that is gone marks a killed run: its release prefix without a
    /// manifest and its quarantine go; a finished release (with a manifest) and a running
    /// run's outputs stay.
    #[tokio::test]
    async fn killed_runs_lose_their_unfinished_prefixes() {
        let store = crate::store::open("memory://").unwrap();
        let put = |p: &str| {
            let store = store.inner.clone();
            let p = Path::from(p);
            async move { store.put(&p, "x".into()).await.unwrap() }
        };
        let lease = |run: &str, pid: u32, prefixes: &[&str]| {
            let process = if run == "reused" {
                Some("another-boot:1".to_string()) // this number, another process
            } else {
                process_key(pid)
            };
            let info = LeaseInfo {
                host: host(),
                pid,
                run_id: run.into(),
                report: format!("runs/l/{run}.json"),
                prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
                process,
            };
            (
                format!("{RUNNING}/l/{run}.json"),
                serde_json::to_string(&info).unwrap(),
            )
        };
        for p in [
            "releases/l/2025-01/dead/ensihoito.parquet",
            "quarantine/l/2025-01/dead/src.parquet",
            "releases/l/2025-02/done/_manifest.json",
            "releases/l/2025-03/live/x.parquet",
            "releases/l/2025-04/reused/x.parquet",
        ] {
            put(p).await;
        }
        for (path, text) in [
            lease(
                "dead",
                999_999_999,
                &["releases/l/2025-01/dead", "quarantine/l/2025-01/dead"],
            ),
            lease("done", 999_999_999, &["releases/l/2025-02/done"]),
            lease("live", std::process::id(), &["releases/l/2025-03/live"]),
            lease("reused", std::process::id(), &["releases/l/2025-04/reused"]),
        ] {
            store
                .inner
                .put(&Path::from(path), text.into())
                .await
                .unwrap();
        }
        let mut c = Collected::default();
        collect_runs(&store.inner, chrono::Utc::now(), &mut c).await;
        c.runs.sort();
        let mut expected = vec!["dead".to_string(), "done".to_string()];
        if cfg!(target_os = "linux") {
            expected.push("reused".to_string());
        }
        assert_eq!(c.runs, expected);
        let left: Vec<String> = store
            .inner
            .list(None)
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await;
        let mut left = left;
        left.sort();
        assert_eq!(
            left,
            vec![
                "releases/l/2025-02/done/_manifest.json".to_string(),
                "releases/l/2025-03/live/x.parquet".to_string(),
                format!("{RUNNING}/l/live.json"),
            ]
        );
    }

    /// A lease dropped without `end` (the run returned early or panicked inside the
    /// daemon, whose process stays alive) has its unpublished prefix collected at once.
    #[tokio::test]
    async fn a_lease_dropped_without_end_collects_its_prefixes() {
        let store = crate::store::open("memory://").unwrap();
        let part = Path::from("releases/l/2025-05/r/x.parquet");
        store.inner.put(&part, "x".into()).await.unwrap();
        let lease = Lease::take(&store, "l", "r", vec!["releases/l/2025-05/r".into()])
            .await
            .unwrap();
        drop(lease);
        for _ in 0..100 {
            if store.inner.head(&part).await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(store.inner.head(&part).await.is_err());
        let left: Vec<_> = store.inner.list(None).collect().await;
        assert!(left.is_empty(), "{left:?}");
    }
}
