//! Running a line: the scheduler.
//!
//! Every step runs as its own tokio task, started in topological order; a step's plan reads
//! its inputs as streams, so independent branches run at the same time and record batches
//! flow through the line without whole tables in memory. An output read by one step goes
//! through a bounded channel; an output read by several steps is computed once and spilled
//! to a local Arrow IPC file that each reader streams when it is complete.
//!
//! Every step counts rows in, rows out and rows quarantined; at the end the run checks that
//! each row-preserving step accounts for every row it received, and that every consumer
//! received what its producer sent. A run that cannot account for a row fails and publishes
//! nothing.
//!
//! # How this folder is organised
//!
//! In the order a run goes through them:
//!
//! - `mod.rs`: [`RunOptions`] and [`run`], the entry point: load and check the line, plan
//!   every step, take the run's lease, set up the session, the [`Counters`] and the state
//!   the tasks share, then schedule, account and finish; also [`needs_key`],
//!   [`blocking_threads`] and the writing of lineage events.
//! - `engine.rs`: where a step's plan runs, here or on a Ballista cluster (`cluster.rs`, with
//!   the `ballista` feature); [`engine_problem`].
//! - `schedule.rs`: gives each step its output (channel, spill file, release, nothing) and
//!   runs every source's reader and every step as a task.
//! - `streams.rs`: the tables through which batches travel between steps, over channels and
//!   spill files (`spill.rs` reads the files).
//! - `source.rs`: reading a source's objects through its format's parser plugin.
//! - `step.rs`: running one step: its plan over its streaming inputs, every batch through its
//!   rules (`quarantine.rs`: rejected rows and the dataset checks), its output written.
//! - `accounting.rs`: what the run counts ([`Counters`], `StepQuality`) and the check that
//!   every row is accounted for.
//! - `finish.rs`: what the run writes after its steps: the quarantine sorted, captured rows,
//!   the release (its manifest and pointer are written by `publish/manifest.rs`), the
//!   quality report.
//! - `report.rs`: the run report ([`RunReport`]) and the failure codes ([`RunCode`]).
//! - `progress.rs`: the progress line and the memory log.
//! - `record.rs`: the [`record::Recorder`] that writes lineage events and the quality report;
//!   `gc.rs`: the run's lease and scratch folder, and collecting what killed runs leave.

pub mod accounting;
#[cfg(feature = "ballista")]
pub mod cluster;
mod engine;
mod finish;
pub mod gc;
mod progress;
pub mod quarantine;
pub mod record;
mod report;
mod schedule;
mod source;
pub mod spill;
mod step;
mod streams;

pub use accounting::Counters;
pub use engine::engine_problem;
pub use report::{DatasetReport, RunCode, RunError, RunFailure, RunReport, RunStatus, StepReport};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::RecordBatch;
use datafusion::datasource::MemTable;
use tracing::{info, warn};

use accounting::account;
use engine::{Cluster, connect};
use finish::{release, write_captures, write_quality, write_quarantine};
use progress::{spawn_memory_log, spawn_progress};
use report::{fail, step_reports};
use schedule::schedule;

use crate::line::load::Line;
use crate::plan::StepPlan;
use crate::plan::check::Checked;
use crate::run::quarantine::Quarantine;
use crate::store::Store;

/// How a run is asked for.
pub struct RunOptions {
    pub store: Store,
    /// `--param name=value`.
    pub params: Vec<(String, String)>,
    /// `--source NAME=URL`.
    pub sources: BTreeMap<String, String>,
    /// The pseudonymisation key.
    pub key: Option<Vec<u8>>,
    pub batch_size: usize,
    /// Show a progress line on the terminal.
    pub progress: bool,
    /// An OpenLineage HTTP endpoint that also receives the run's events.
    pub lineage_url: Option<String>,
    /// Steps whose output rows are also kept, in `captures/<line>/<run-id>/<step>.parquet`
    /// (for line tests; the rows are held in memory).
    pub capture: std::collections::BTreeSet<String>,
    /// Where the steps' plans run: `None` or `local` here, `ballista://HOST:PORT` on a
    /// Ballista cluster (with the `ballista` feature).
    pub engine: Option<String>,
    /// The longest the run may take; `None`: the line's `limits.run_minutes`.
    pub deadline: Option<std::time::Duration>,
    /// Builds the run's lineage events and quality report
    /// ([`crate::artefacts::recorder`]).
    pub recorder: Arc<dyn record::Recorder>,
    /// The memory the query engine may use before it spills to disk (bytes); `None`: no
    /// limit. The command line and the daemon read it from `VALTAVA_MEMORY_LIMIT`.
    pub memory_limit: Option<usize>,
}

/// What the run's tasks share: the checked line and its plans, the session, the counters,
/// the quarantine and the store.
struct Shared {
    line: Line,
    state: datafusion::execution::SessionState,
    params: BTreeMap<String, datafusion::scalar::ScalarValue>,
    codesets: BTreeMap<String, Arc<MemTable>>,
    counters: BTreeMap<String, Arc<Counters>>,
    quarantine: Quarantine,
    store: Store,
    release_prefix: String,
    batch_size: usize,
    sources: BTreeMap<String, String>,
    fill: BTreeMap<String, String>,
    datasets: Mutex<Vec<DatasetReport>>,
    check_plans: BTreeMap<String, StepPlan>,
    timings: Mutex<BTreeMap<String, f64>>,
    capture: std::collections::BTreeSet<String>,
    captured: Mutex<BTreeMap<String, Vec<RecordBatch>>>,
    /// [`RunOptions::memory_limit`].
    memory_limit: Option<usize>,
    /// The cluster the plans run on, if not here.
    cluster: Option<Cluster>,
}

/// The run id: UTC time of the start (sortable), the line's hash and a random part, so
/// that two runs of a line started in the same millisecond (two periods, two processes)
/// never share a scratch folder, report, lineage or release prefix.
fn run_id(line_hash: &str) -> String {
    let now = chrono::Utc::now();
    let random = getrandom::u32().unwrap_or_else(|_| {
        // No entropy source: the process and the clock's nanoseconds still differ.
        std::process::id() ^ now.timestamp_subsec_nanos()
    });
    format!(
        "{}-{}-{random:08x}",
        now.format("%Y%m%dT%H%M%S%3fZ"),
        &line_hash[..8]
    )
}

/// Whether the line needs a pseudonymisation key.
pub fn needs_key(line: &Line) -> bool {
    line.spec.steps.values().any(|s| {
        s.harmonise
            .as_ref()
            .is_some_and(|h| !h.pseudonymise.is_empty())
            || s.source
                .as_ref()
                .is_some_and(|src| src.columns.values().any(|c| c.personal))
    })
}

/// Runs a line file.
pub async fn run(path: &std::path::Path, opts: RunOptions) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (line, warnings) = crate::line::load::load(path).map_err(RunError::Invalid)?;
    for w in &warnings {
        warn!(code = ?w.code, "{}", w.message);
    }
    let values = crate::plan::check::bind_params(&line, Some(&opts.params))
        .map_err(|e| RunError::Failed(fail(RunCode::Param, e), None))?;
    check_options(&line, &opts)?;
    let key = opts.key.clone().unwrap_or_default();
    let expr_values = crate::line::params::expression_values(&values);
    let Checked {
        line,
        codesets,
        plans,
        ..
    } = crate::plan::check::plan_all(line, vec![], &expr_values, &key)
        .map_err(RunError::Invalid)?;
    let run_id = run_id(&line.hash);
    let period = values
        .get("period")
        .map(|v| v.text())
        .unwrap_or_else(|| "all".into());
    let line_name = line.spec.line.value.clone();
    let release_prefix = crate::store::layout::release(&line_name, &period, &run_id);
    let params_text: BTreeMap<String, String> =
        values.iter().map(|(k, v)| (k.clone(), v.text())).collect();
    info!(run_id = %run_id, line = %line_name, period = %period, "run started");

    crate::run::gc::collect(&opts.store).await;
    let lease = crate::run::gc::Lease::take(
        &opts.store,
        &line_name,
        &run_id,
        vec![
            release_prefix.clone(),
            crate::store::layout::quarantine(&line_name, &period, &run_id),
            crate::store::layout::captures(&line_name, &run_id),
        ],
    )
    .await
    .map_err(|e| RunError::Failed(fail(RunCode::Write, e), None))?;
    let scratch = crate::run::gc::make_scratch(&run_id)
        .map_err(|e| RunError::Failed(fail(RunCode::Write, e), None))?;
    let state = crate::plan::limited_session(Some(&key), 2, opts.memory_limit)
        .map_err(|e| RunError::Failed(fail(RunCode::Engine, e.to_string()), None))?
        .state();
    let cluster = connect(opts.engine.as_deref(), &state, &opts.store, &run_id)
        .await
        .map_err(|f| RunError::Failed(f, None))?;
    #[cfg(feature = "ballista")]
    let work_lease = cluster.as_ref().map(|c| c.lease(&opts.store.inner));
    let counters: BTreeMap<String, Arc<Counters>> = line
        .dag
        .order
        .iter()
        .map(|s| (s.clone(), Arc::new(Counters::default())))
        .collect();
    let shared = Arc::new(Shared {
        state,
        cluster,
        params: expr_values,
        codesets: codesets
            .iter()
            .map(|(k, v)| (k.clone(), v.table.clone()))
            .collect(),
        counters,
        quarantine: Quarantine::new(scratch.to_path_buf(), run_id.clone(), opts.key.clone()),
        store: opts.store.clone(),
        release_prefix: release_prefix.clone(),
        batch_size: opts.batch_size,
        sources: opts.sources.clone(),
        fill: params_text.clone(),
        datasets: Mutex::new(Vec::new()),
        check_plans: plans,
        memory_limit: opts.memory_limit,
        timings: Mutex::new(BTreeMap::new()),
        capture: opts.capture.clone(),
        captured: Mutex::new(BTreeMap::new()),
        line,
    });

    let lineage_info = record::RunInfo {
        line: &shared.line,
        plans: &shared.check_plans,
        store_url: &shared.store.url,
        run_id: &run_id,
        sources: shared.sources.clone(),
        params: &params_text,
    };
    let lineage_dir = crate::store::layout::lineage(&line_name, &run_id);
    let start_event = opts.recorder.start_event(&lineage_info, &started_at);
    emit_lineage(
        &shared.store,
        &format!("{lineage_dir}/1-start.json"),
        opts.lineage_url.as_deref(),
        &start_event,
        opts.recorder.as_ref(),
    )
    .await;
    let result = scheduled(&shared, &opts, &scratch).await;

    let mut failure = result.err();
    if failure.is_none() {
        failure = account(&shared).err();
    }
    let quarantine_paths =
        write_quarantine(&shared, &line_name, &period, &run_id, &mut failure).await;
    drop(scratch);
    #[cfg(feature = "ballista")]
    if let Some(c) = &shared.cluster {
        drop(work_lease);
        c.clean(&shared.store.inner).await;
    }
    write_captures(&shared, &line_name, &run_id, &mut failure).await;

    let mut report = RunReport {
        run_id: run_id.clone(),
        line: line_name.clone(),
        line_file: shared.line.file.clone(),
        line_hash: shared.line.hash.clone(),
        engine_version: env!("CARGO_PKG_VERSION").to_string(),
        params: params_text.clone(),
        status: RunStatus::Succeeded,
        error: None,
        started: started_at,
        seconds: 0.0,
        steps: step_reports(&shared),
        step_order: shared.line.dag.order.clone(),
        codesets: codesets
            .iter()
            .map(|(k, v)| (k.clone(), v.usage()))
            .collect(),
        datasets: shared
            .datasets
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default(),
        release: None,
        quarantine: quarantine_paths,
        quality: Vec::new(),
    };
    report.datasets.sort_by(|a, b| a.dataset.cmp(&b.dataset));

    if failure.is_none() && !report.datasets.is_empty() {
        match release(&shared, &report, &period).await {
            Ok(()) => report.release = Some(release_prefix.clone()),
            Err(e) => failure = Some(fail(RunCode::Write, e)),
        }
    }
    if let Some(f) = &failure {
        crate::publish::remove_prefix(&shared.store.inner, &release_prefix).await;
        report.status = RunStatus::Failed;
        report.error = Some(f.clone());
    }
    report.seconds = started.elapsed().as_secs_f64();
    write_quality(
        &shared,
        opts.recorder.as_ref(),
        &mut report,
        &line_name,
        &run_id,
        &mut failure,
    )
    .await;
    let finished_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let end_event = opts
        .recorder
        .end_event(&lineage_info, &finished_at, &report);
    let end_name = if report.status == RunStatus::Succeeded {
        "2-complete.json"
    } else {
        "2-fail.json"
    };
    emit_lineage(
        &shared.store,
        &format!("{lineage_dir}/{end_name}"),
        opts.lineage_url.as_deref(),
        &end_event,
        opts.recorder.as_ref(),
    )
    .await;
    let report_path = crate::store::layout::run_report(&line_name, &run_id);
    if let Err(e) = crate::publish::put_text_json(&shared.store.inner, &report_path, &report).await
    {
        failure.get_or_insert(fail(RunCode::Write, e));
    }
    lease.end().await;
    match failure {
        Some(f) => {
            warn!(run_id = %run_id, code = f.code.as_str(), "run failed: {}", f.message);
            Err(RunError::Failed(f, Some(Box::new(report))))
        }
        None => {
            info!(run_id = %run_id, seconds = report.seconds, "run succeeded");
            Ok(report)
        }
    }
}

/// Refuses what a line cannot be run with: a `--source` for a step that is not a source
/// (R001), and no pseudonymisation key for a line that needs one (R002).
fn check_options(line: &Line, opts: &RunOptions) -> Result<(), RunError> {
    for name in opts.sources.keys() {
        if line
            .spec
            .steps
            .get(name.as_str())
            .is_none_or(|s| s.source.is_none())
        {
            return Err(RunError::Failed(
                fail(
                    RunCode::Param,
                    format!("--source {name}=…: the line has no source step `{name}`"),
                ),
                None,
            ));
        }
    }
    if needs_key(line) && opts.key.is_none() {
        return Err(RunError::Failed(
            fail(
                RunCode::Key,
                "the line handles personal identity codes and needs a pseudonymisation key: give --pseudonym-key-file FILE or set VALTAVA_PSEUDONYM_KEY",
            ),
            None,
        ));
    }
    Ok(())
}

/// Runs the steps ([`schedule`]) under the run's deadline (R011), with the progress line and
/// the memory log while they run.
async fn scheduled(
    shared: &Arc<Shared>,
    opts: &RunOptions,
    scratch: &std::path::Path,
) -> Result<(), RunFailure> {
    let progress = opts.progress.then(|| spawn_progress(shared.clone()));
    let memory_log = spawn_memory_log(&shared.state);
    let deadline = opts
        .deadline
        .unwrap_or_else(|| shared.line.spec.limits.run_time());
    let result = match tokio::time::timeout(deadline, schedule(shared.clone(), scratch)).await {
        Ok(r) => r,
        // Dropping the schedule stops every step task (and the plans they run).
        Err(_) => Err(fail(
            RunCode::Deadline,
            format!(
                "the run took longer than its deadline of {} s (limits.run_minutes, --deadline-seconds); nothing is published",
                deadline.as_secs()
            ),
        )),
    };
    if let Some((bar, handle)) = progress {
        handle.abort();
        bar.finish_and_clear();
    }
    if let Some(handle) = memory_log {
        handle.abort();
    }
    result
}

/// Writes a lineage event to the store and, when configured, sends it; a failure is
/// warned about and does not fail the run.
async fn emit_lineage(
    store: &Store,
    path: &str,
    url: Option<&str>,
    event: &serde_json::Value,
    recorder: &dyn record::Recorder,
) {
    let kind = event["eventType"].as_str().unwrap_or("?");
    if let Err(e) = crate::publish::put_text_json(&store.inner, path, event).await {
        warn!("cannot write the lineage {kind} event: {e}");
    }
    if let Some(url) = url
        && let Err(e) = recorder.send(url, event).await
    {
        warn!("cannot send the lineage {kind} event: {e}");
    }
}

/// The most threads the runtime starts for blocking work (parsing pieces of CSV, file reads):
/// twice the cores, at least four. Without a bound a run started a dozen or more, each with
/// its own allocator heap holding freed pages; with it a 50 M row run under a 256 MiB limit
/// peaked at 385 MiB instead of 643 MiB (10 M rows: 329 instead of 404 MiB) in the same
/// time (non-LTO build; examples/benchmark/PROFILE.md, sixth round). Blocking tasks here are short and never wait for each
/// other, so a bound only queues them.
pub fn blocking_threads() -> usize {
    std::thread::available_parallelism().map_or(4, |n| (2 * n.get()).max(4))
}

#[cfg(test)]
mod tests {
    //! A crash at any write leaves the previous release intact.
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use futures::stream::BoxStream;
    use object_store::path::Path;
    use object_store::{
        GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
        ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
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
        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
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
}
