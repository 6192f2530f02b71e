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
//! - `history.rs`: what the line's earlier periods counted by submitter, read from their
//!   current releases' quality reports before the steps start, for the dataset checks
//!   (`change`) and the quality report's trend.
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
//! - `error.rs`: [`RunIoError`], what the cluster, a spill file or the recorder fails with,
//!   with the code it fails a run with.
//! - `progress.rs`: the progress line and the memory log.
//! - `record.rs`: the [`record::Recorder`] that writes lineage events and the quality report;
//!   `gc.rs`: the run's lease and scratch folder, and collecting what killed runs leave.

pub mod accounting;
#[cfg(feature = "ballista")]
pub mod cluster;
mod engine;
mod error;
mod finish;
pub mod gc;
mod history;
pub mod inputs;
mod progress;
pub mod quarantine;
pub mod record;
pub(crate) mod release;
mod report;
mod schedule;
mod source;
pub mod spill;
mod step;
mod streams;

pub use accounting::Counters;
pub use engine::engine_problem;
pub use error::RunIoError;
pub use report::{CheckLevel, DatasetReport, RunCode, RunError, RunFailure, RunReport, RunStatus};

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
    /// The status and revision note its release carries.
    pub release: crate::publish::revision::ReleaseRequest,
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
    /// The status and note of the release.
    label: crate::publish::revision::ReleaseLabel,
    batch_size: usize,
    sources: BTreeMap<String, String>,
    fill: BTreeMap<String, String>,
    /// The list placeholders of locations (`period.months` → each month of the period).
    parts: BTreeMap<String, Vec<String>>,
    datasets: Mutex<Vec<DatasetReport>>,
    /// The objects each source listed and read.
    inputs: Mutex<inputs::Inputs>,
    /// The bytes of the objects each source step listed (`u64::MAX` where they do not bound
    /// its rows): what a unique rule's filter is sized from ([`crate::plan::FilterSize`]).
    source_bytes: BTreeMap<String, Arc<std::sync::atomic::AtomicU64>>,
    check_plans: BTreeMap<String, StepPlan>,
    timings: Mutex<BTreeMap<String, f64>>,
    capture: std::collections::BTreeSet<String>,
    captured: Mutex<BTreeMap<String, Vec<RecordBatch>>>,
    /// [`RunOptions::memory_limit`].
    memory_limit: Option<usize>,
    /// The cluster the plans run on, if not here.
    cluster: Option<Cluster>,
    /// What the line's earlier periods counted, for the dataset checks and the quality
    /// report.
    history: crate::plan::history::History,
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

/// What names a run and what it was given, fixed before anything is written.
pub(crate) struct RunIdentity {
    run_id: String,
    pub(crate) line_name: String,
    pub(crate) period: String,
    release_prefix: String,
    pub(crate) params_text: BTreeMap<String, String>,
    /// The list placeholders of locations ([`crate::line::params::location_parts`]).
    pub(crate) parts: BTreeMap<String, Vec<String>>,
    /// When the run started: for its length, and as RFC 3339 text.
    started: Instant,
    started_at: String,
}

/// The line checked and planned with the run's parameters, and the run's name.
pub(crate) struct Prepared {
    pub(crate) checked: Checked,
    /// The parameter values as expressions see them.
    params: BTreeMap<String, datafusion::scalar::ScalarValue>,
    key: Vec<u8>,
    pub(crate) id: RunIdentity,
    /// The `period` parameter's value, if the line has one.
    period: Option<crate::line::params::ParamValue>,
}

/// Runs a line file.
pub async fn run(path: &std::path::Path, opts: RunOptions) -> Result<RunReport, RunError> {
    let Prepared {
        checked,
        params,
        key,
        id,
        period,
    } = prepare(path, &opts)?;
    info!(run_id = %id.run_id, line = %id.line_name, period = %id.period, "run started");
    let history = history::load(&opts.store, &checked.line, period.as_ref()).await;
    let codeset_uses: BTreeMap<String, crate::line::codeset::CodesetUse> = checked
        .codesets
        .iter()
        .map(|(k, v)| (k.clone(), v.usage()))
        .collect();

    crate::run::gc::collect(&opts.store).await;
    let lease = take_lease(&opts.store, &id).await?;
    let scratch =
        crate::run::gc::make_scratch(&id.run_id).map_err(|f| RunError::Failed(f, None))?;
    let state = crate::plan::limited_session(Some(&key), 2, opts.memory_limit)
        .map_err(|e| RunError::Failed(fail(RunCode::Engine, e.to_string()), None))?
        .state();
    let cluster = connect(opts.engine.as_deref(), &state, &opts.store, &id.run_id)
        .await
        .map_err(|f| RunError::Failed(f, None))?;
    #[cfg(feature = "ballista")]
    let work_lease = cluster.as_ref().map(|c| c.lease(&opts.store.inner));
    let shared = Arc::new(new_shared(
        checked,
        params,
        (state, cluster),
        &scratch,
        &opts,
        &id,
        history,
    ));

    let releases = release::read_names(&shared.store, &id.params_text, &shared.line).await;
    let lineage_info = lineage_info(&shared, &id, releases);
    let start_event = opts.recorder.start_event(&lineage_info, &id.started_at);
    emit_event(&shared, &opts, &id, "1-start.json", &start_event).await;
    let result = scheduled(&shared, &opts, &scratch).await;

    let mut failure = result.err();
    if failure.is_none() {
        failure = account(&shared).err();
    }
    let quarantine_paths =
        write_quarantine(&shared, &id.line_name, &id.period, &id.run_id, &mut failure).await;
    drop(scratch);
    #[cfg(feature = "ballista")]
    if let Some(c) = &shared.cluster {
        drop(work_lease);
        c.clean(&shared.store.inner).await;
    }
    write_captures(&shared, &id.line_name, &id.run_id, &mut failure).await;

    let mut report = new_report(&shared, &id, codeset_uses, quarantine_paths);
    settle(&shared, &id, &mut report, &mut failure).await;
    report.seconds = id.started.elapsed().as_secs_f64();
    record_outcome(
        &shared,
        &opts,
        &id,
        &lineage_info,
        &mut report,
        &mut failure,
    )
    .await;
    conclude(&shared, &id, report, failure, lease).await
}

/// Loads, checks and plans the line with the run's parameters, and names the run.
pub(crate) fn prepare(path: &std::path::Path, opts: &RunOptions) -> Result<Prepared, RunError> {
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (line, warnings) = crate::line::load::load(path).map_err(RunError::Invalid)?;
    for w in &warnings {
        warn!(code = ?w.code, "{}", w.message);
    }
    let values = crate::plan::check::bind_params(&line, Some(&opts.params))
        .map_err(|e| RunError::Failed(fail(e.code(), e), None))?;
    check_options(&line, opts)?;
    let parts = crate::line::params::location_parts(&values);
    check_parts(&line, opts, &parts)?;
    let key = opts.key.clone().unwrap_or_default();
    let expr_values = crate::line::params::expression_values(&values);
    let checked = crate::plan::check::plan_all(line, vec![], &expr_values, &key)
        .map_err(RunError::Invalid)?;
    let run_id = run_id(&checked.line.hash);
    let period_value = values.get("period").cloned();
    let period = period_value
        .as_ref()
        .map(|v| v.text())
        .unwrap_or_else(|| "all".into());
    let line_name = checked.line.spec.line.value.clone();
    let release_prefix = crate::store::layout::release(&line_name, &period, &run_id);
    let params_text: BTreeMap<String, String> =
        values.iter().map(|(k, v)| (k.clone(), v.text())).collect();
    Ok(Prepared {
        checked,
        params: expr_values,
        key,
        id: RunIdentity {
            run_id,
            line_name,
            period,
            release_prefix,
            params_text,
            parts,
            started,
            started_at,
        },
        period: period_value,
    })
}

/// Takes the run's lease over what it writes: its release, quarantine and captures.
async fn take_lease(store: &Store, id: &RunIdentity) -> Result<crate::run::gc::Lease, RunError> {
    crate::run::gc::Lease::take(
        store,
        &id.line_name,
        &id.run_id,
        vec![
            id.release_prefix.clone(),
            crate::store::layout::quarantine(&id.line_name, &id.period, &id.run_id),
            crate::store::layout::captures(&id.line_name, &id.run_id),
        ],
    )
    .await
    .map_err(|f| RunError::Failed(f, None))
}

/// What the run's tasks share, from the planned line, the session and the scratch folder.
fn new_shared(
    checked: Checked,
    params: BTreeMap<String, datafusion::scalar::ScalarValue>,
    (state, cluster): (datafusion::execution::SessionState, Option<Cluster>),
    scratch: &std::path::Path,
    opts: &RunOptions,
    id: &RunIdentity,
    history: crate::plan::history::History,
) -> Shared {
    let counters: BTreeMap<String, Arc<Counters>> = checked
        .line
        .dag
        .order
        .iter()
        .map(|s| (s.clone(), Arc::new(Counters::default())))
        .collect();
    Shared {
        state,
        cluster,
        params,
        codesets: checked
            .codesets
            .iter()
            .map(|(k, v)| (k.clone(), v.table.clone()))
            .collect(),
        counters,
        quarantine: Quarantine::new(scratch.to_path_buf(), id.run_id.clone(), opts.key.clone()),
        store: opts.store.clone(),
        release_prefix: id.release_prefix.clone(),
        label: opts
            .release
            .resolve(checked.line.spec.release_status.as_ref().map(|s| s.value)),
        batch_size: opts.batch_size,
        sources: opts.sources.clone(),
        fill: id.params_text.clone(),
        parts: id.parts.clone(),
        datasets: Mutex::new(Vec::new()),
        inputs: Mutex::new(inputs::Inputs::new()),
        source_bytes: (checked.line.dag.order.iter())
            .filter(|s| {
                crate::line::load::step(&checked.line.spec, s)
                    .source
                    .is_some()
            })
            .map(|s| (s.clone(), Default::default()))
            .collect(),
        check_plans: checked.plans,
        memory_limit: opts.memory_limit,
        timings: Mutex::new(BTreeMap::new()),
        capture: opts.capture.clone(),
        captured: Mutex::new(BTreeMap::new()),
        line: checked.line,
        history,
    }
}

/// What the lineage events say of the run.
fn lineage_info<'a>(
    shared: &'a Shared,
    id: &'a RunIdentity,
    releases: BTreeMap<String, Vec<String>>,
) -> record::RunInfo<'a> {
    record::RunInfo {
        releases,
        line: &shared.line,
        plans: &shared.check_plans,
        store_url: &shared.store.url,
        run_id: &id.run_id,
        sources: shared.sources.clone(),
        params: &id.params_text,
        parts: &id.parts,
    }
}

/// Writes (and, when configured, sends) the lineage event `name` of the run.
async fn emit_event(
    shared: &Shared,
    opts: &RunOptions,
    id: &RunIdentity,
    name: &str,
    event: &serde_json::Value,
) {
    let lineage_dir = crate::store::layout::lineage(&id.line_name, &id.run_id);
    emit_lineage(
        &shared.store,
        &format!("{lineage_dir}/{name}"),
        opts.lineage_url.as_deref(),
        event,
        opts.recorder.as_ref(),
    )
    .await;
}

/// The run report as the steps left it, before the release and the quality report.
fn new_report(
    shared: &Shared,
    id: &RunIdentity,
    codesets: BTreeMap<String, crate::line::codeset::CodesetUse>,
    quarantine: Vec<String>,
) -> RunReport {
    let mut report = RunReport {
        run_id: id.run_id.clone(),
        line: id.line_name.clone(),
        line_file: shared.line.file.clone(),
        line_hash: shared.line.hash.clone(),
        engine_version: env!("CARGO_PKG_VERSION").to_string(),
        params: id.params_text.clone(),
        status: RunStatus::Succeeded,
        error: None,
        started: id.started_at.clone(),
        seconds: 0.0,
        steps: step_reports(shared),
        step_order: shared.line.dag.order.clone(),
        codesets,
        datasets: shared
            .datasets
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default(),
        release: None,
        quarantine,
        quality: Vec::new(),
    };
    report.datasets.sort_by(|a, b| a.dataset.cmp(&b.dataset));
    report
}

/// Publishes the release of a sound run; on a failure, removes it and records why.
async fn settle(
    shared: &Shared,
    id: &RunIdentity,
    report: &mut RunReport,
    failure: &mut Option<RunFailure>,
) {
    if failure.is_none() && !report.datasets.is_empty() {
        match release(shared, report, &id.period).await {
            Ok(()) => report.release = Some(id.release_prefix.clone()),
            Err(e) => *failure = Some(e),
        }
    }
    if let Some(f) = failure.as_ref() {
        crate::publish::remove_prefix(&shared.store.inner, &id.release_prefix).await;
        report.status = RunStatus::Failed;
        report.error = Some(f.clone());
    }
}

/// Writes the quality report and the lineage event of the run's end.
async fn record_outcome(
    shared: &Shared,
    opts: &RunOptions,
    id: &RunIdentity,
    lineage_info: &record::RunInfo<'_>,
    report: &mut RunReport,
    failure: &mut Option<RunFailure>,
) {
    write_quality(
        shared,
        opts.recorder.as_ref(),
        report,
        &id.line_name,
        &id.run_id,
        failure,
    )
    .await;
    let finished_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let end_event = opts.recorder.end_event(lineage_info, &finished_at, report);
    let end_name = if report.status == RunStatus::Succeeded {
        "2-complete.json"
    } else {
        "2-fail.json"
    };
    emit_event(shared, opts, id, end_name, &end_event).await;
}

/// Writes the run report, ends the lease and gives the run's outcome.
async fn conclude(
    shared: &Shared,
    id: &RunIdentity,
    report: RunReport,
    mut failure: Option<RunFailure>,
    lease: crate::run::gc::Lease,
) -> Result<RunReport, RunError> {
    let run_id = &id.run_id;
    let report_path = crate::store::layout::run_report(&id.line_name, run_id);
    if let Err(e) = crate::publish::put_text_json(&shared.store.inner, &report_path, &report).await
    {
        failure.get_or_insert(fail(e.code(), e));
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

/// Every source's location can be filled with the run's values: a `{period.quarters}` of a
/// month (a line whose `period` may be any period) fails the run (R001) before it starts.
fn check_parts(
    line: &Line,
    opts: &RunOptions,
    parts: &BTreeMap<String, Vec<String>>,
) -> Result<(), RunError> {
    for (name, step) in &line.spec.steps {
        let Some(src) = &step.source else { continue };
        let location = opts
            .sources
            .get(name.value.as_str())
            .unwrap_or(&src.location.value);
        if let Some(p) = crate::line::params::unfilled_part(location, parts) {
            return Err(RunError::Failed(
                fail(
                    RunCode::Param,
                    format!(
                        "source `{}`: the run's period has no {p} for location `{location}`",
                        name.value
                    ),
                ),
                None,
            ));
        }
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
mod tests;
