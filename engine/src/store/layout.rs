//! Where everything lives in the store: the one place that spells the object layout.
//!
//! ```text
//! inbox/<line>/<period>/…                 submissions (a line's sources say where)
//! releases/<line>/<period>/<run>/         a release: datasets and _manifest.json
//! releases/<line>/<period>/latest.json    the pointer to a period's current release
//! quarantine/<line>/<period>/<run>/<step>.parquet   rejected rows with reasons
//! captures/<line>/<run>/<step>.parquet    rows kept for line tests
//! runs/<line>/<run>.json                  the run report (.quality.json, .quality.html)
//! lineage/<line>/<run>/<n>-<event>.json   OpenLineage events
//! running/<line>/<run>.json               the lease of a run in progress
//! work/<run>/                             a cluster run's intermediate files
//! daemon/jobs/<id>.json, daemon/receipts/<id>.json, daemon/inbox-seen.json
//! ```
//!
//! The run, the daemon, the release reader, lineage and the cluster all build paths here,
//! so a change of layout is one change, and readers and writers cannot disagree.

/// The folder of a release.
pub fn release(line: &str, period: &str, run: &str) -> String {
    format!("releases/{line}/{period}/{run}")
}

/// A published dataset's file in a release (`ext` without the dot: `parquet`, `csv`…).
pub fn release_file(line: &str, period: &str, run: &str, dataset: &str, ext: &str) -> String {
    format!("{}/{dataset}.{ext}", release(line, period, run))
}

/// The manifest of the release in `release_folder`.
pub fn manifest(release_folder: &str) -> String {
    format!("{release_folder}/_manifest.json")
}

/// The status of the release in `release_folder` as an operator last set it.
pub fn release_status(release_folder: &str) -> String {
    format!("{release_folder}/_status.json")
}

/// The pointer to a period's current release.
pub fn release_pointer(line: &str, period: &str) -> String {
    format!("releases/{line}/{period}/latest.json")
}

/// The folder of every line's releases.
pub const RELEASES: &str = "releases";

/// Every release of a line, of all periods.
pub fn releases_of(line: &str) -> String {
    format!("{RELEASES}/{line}")
}

/// The folder of a run's quarantined rows.
pub fn quarantine(line: &str, period: &str, run: &str) -> String {
    format!("quarantine/{line}/{period}/{run}")
}

/// The folder of the rows a run kept for line tests.
pub fn captures(line: &str, run: &str) -> String {
    format!("captures/{line}/{run}")
}

/// The folder of a run's lineage events.
pub fn lineage(line: &str, run: &str) -> String {
    format!("lineage/{line}/{run}")
}

/// The run report.
pub fn run_report(line: &str, run: &str) -> String {
    format!("runs/{line}/{run}.json")
}

/// The quality report, as JSON.
pub fn quality_json(line: &str, run: &str) -> String {
    format!("runs/{line}/{run}.quality.json")
}

/// The quality report's page.
pub fn quality_html(line: &str, run: &str) -> String {
    format!("runs/{line}/{run}.quality.html")
}

/// The folder of run leases.
pub const RUNNING: &str = "running";

/// The lease of a run in progress.
pub fn lease(line: &str, run: &str) -> String {
    format!("{RUNNING}/{line}/{run}.json")
}

/// A cluster run's intermediate files.
#[cfg(feature = "ballista")]
pub fn work(run: &str) -> String {
    format!("work/{run}")
}

/// The daemon's jobs.
pub const JOBS: &str = "daemon/jobs";

/// A daemon job.
pub fn job(id: &str) -> String {
    format!("{JOBS}/{id}.json")
}

/// The receipt of an upload.
pub fn receipt(id: &str) -> String {
    format!("daemon/receipts/{id}.json")
}

/// What the daemon has seen in the inboxes.
pub const INBOX_SEEN: &str = "daemon/inbox-seen.json";
