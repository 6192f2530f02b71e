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

pub mod accounting;
#[cfg(feature = "ballista")]
pub mod cluster;
pub mod gc;
pub mod quarantine;
pub mod record;
pub mod spill;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::DataFusionError;
use datafusion::datasource::MemTable;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{SendableRecordBatchStream, execute_stream};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use valtava_plugin::{ParseRequest, SourceObject};

use crate::line::load::Line;
use crate::line::spec::StepKind;
use crate::plan::check::Checked;
use crate::plan::{InputInfo, OBJECT_COLUMN, Planner, ROW_COLUMN, StepPlan};
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

/// Counts of one step.
#[derive(Debug, Default)]
pub struct Counters {
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    pub quarantined: AtomicU64,
    pub filtered: AtomicU64,
    pub objects: AtomicU64,
    /// Bytes of a source's objects that were read, and of those that failed whole (a
    /// parser's row-0 reject: the object could not be read at all).
    pub bytes_read: AtomicU64,
    pub bytes_failed: AtomicU64,
    pub quality: Mutex<crate::run::accounting::StepQuality>,
}

/// A step in the run report.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub kind: StepKind,
    pub inputs: Vec<String>,
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_quarantined: u64,
    /// Rows outside the step's declared filter.
    pub rows_filtered: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects: Option<u64>,
    /// Rows that broke each rule (all severities).
    pub violations: BTreeMap<String, u64>,
    /// Counts by value, e.g. rows per mapping equivalence.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub mappings: BTreeMap<String, BTreeMap<String, u64>>,
    pub seconds: f64,
}

/// A published dataset in the run report.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetReport {
    pub dataset: String,
    pub step: String,
    pub rows: u64,
}

/// The run report, written to `runs/<line>/<run-id>.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub line: String,
    pub line_file: String,
    pub line_hash: String,
    pub engine_version: String,
    pub params: BTreeMap<String, String>,
    pub status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunFailure>,
    pub started: String,
    pub seconds: f64,
    pub steps: BTreeMap<String, StepReport>,
    /// The steps in the order the line runs them.
    pub step_order: Vec<String>,
    pub codesets: BTreeMap<String, crate::line::codeset::CodesetUse>,
    pub datasets: Vec<DatasetReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    pub quarantine: Vec<String>,
    /// The quality report, as JSON and as HTML.
    pub quality: Vec<String>,
}

/// Why a run failed: a stable code and a message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RunFailure {
    pub code: RunCode,
    pub message: String,
}

impl std::fmt::Display for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.code, self.message)
    }
}

/// Run failure codes: stable, documented in the README, matched by line tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunCode {
    /// `R001`: a parameter is unknown, missing or of the wrong form.
    Param,
    /// `R002`: the line pseudonymises or holds personal columns and no key was given.
    Key,
    /// `R003`: a source object could not be read as declared.
    Source,
    /// `R004`: no object matches a source's location.
    NoInput,
    /// `R005`: a rule of severity `fail` was broken.
    RuleFail,
    /// `R006`: a step rejected more than its `max_reject_share`.
    RejectShare,
    /// `R007`: rows are unaccounted for.
    Accounting,
    /// `R008`: writing to the store failed.
    Write,
    /// `R009`: the query engine failed.
    Engine,
    /// `R010`: an object reached a reader limit (`limits:`); it is quarantined whole and
    /// the run goes on. Used in quarantine reasons, not as a run failure.
    Limit,
    /// `R011`: the run took longer than its deadline (`limits.run_minutes`).
    Deadline,
}

impl RunCode {
    /// The code as written in reports, logs and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            RunCode::Param => "R001",
            RunCode::Key => "R002",
            RunCode::Source => "R003",
            RunCode::NoInput => "R004",
            RunCode::RuleFail => "R005",
            RunCode::RejectShare => "R006",
            RunCode::Accounting => "R007",
            RunCode::Write => "R008",
            RunCode::Engine => "R009",
            RunCode::Limit => "R010",
            RunCode::Deadline => "R011",
        }
    }
}

impl std::fmt::Display for RunCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RunCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Succeeded,
    Failed,
}

impl RunStatus {
    /// The status as written in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run failure; its message goes into the run report, the log, the lineage event and the
/// daemon's job, so it passes the scrubber here, where every failure is made.
fn fail(code: RunCode, message: impl Into<String>) -> RunFailure {
    let message = message.into();
    // The query engine quotes the values it fails on.
    let message = if code == RunCode::Engine {
        crate::redact::unquoted(&message)
    } else {
        message
    };
    RunFailure {
        code,
        message: crate::redact::scrubbed(message),
    }
}

/// What a run ends with.
#[derive(Debug)]
pub enum RunError {
    /// The line file is invalid.
    Invalid(Vec<crate::diag::Diagnostic>),
    /// The run failed; the report (when the run got that far) is in the store.
    Failed(RunFailure, Option<Box<RunReport>>),
}

/// Reads the batches another step sends through a channel (one consumer).
#[derive(Debug)]
struct ChannelPartition {
    schema: SchemaRef,
    rx: Mutex<Option<mpsc::Receiver<Result<RecordBatch, DataFusionError>>>>,
    /// The reading step's counters, when this is one of its main inputs.
    counter: Option<Arc<Counters>>,
}

impl PartitionStream for ChannelPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }
    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let rx = self.rx.lock().ok().and_then(|mut r| r.take());
        if rx.is_none() {
            // A channel can be read once; a plan that scans an input twice gets a spill file.
            let err = DataFusionError::Internal("a streamed input was read twice".into());
            return Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                futures::stream::once(async move { Err(err) }),
            ));
        }
        let counter = self.counter.clone();
        let stream = futures::stream::unfold(rx, |rx| async move {
            let mut rx = rx?;
            let item = rx.recv().await?;
            Some((item, Some(rx)))
        })
        .inspect(move |b| {
            if let (Ok(b), Some(c)) = (b, &counter) {
                c.rows_in.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// Reads one partition of a spilled output once it is complete (several consumers). A
/// consumer reads the file in as many partitions as the session runs, each partition
/// reading its batches when polled: a single stream would be spread over the partitions
/// by a repartition that pulls the whole file at once, and where a join waits for its
/// build side first, holds or spills all of it (at 50 M rows 5.8 GB spilled, PROFILE.md
/// tenth round).
#[derive(Debug)]
struct SpillPartition {
    schema: SchemaRef,
    path: PathBuf,
    ready: watch::Receiver<crate::run::spill::Ready>,
    /// Which partition of how many.
    part: usize,
    parts: usize,
    /// The reading step's counters, when this is one of its main inputs.
    counter: Option<Arc<Counters>>,
    /// A query may scan an input more than once; its rows are counted once, by the first
    /// scan that reads the partition to its end (a join whose build side is empty drops
    /// its probe side unread).
    counted: Arc<std::sync::atomic::AtomicBool>,
}

impl PartitionStream for SpillPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }
    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let rows = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = rows.clone();
        let (counter, counted) = (self.counter.clone(), self.counted.clone());
        let stream = crate::run::spill::read_when_ready(
            self.schema.clone(),
            self.path.clone(),
            self.ready.clone(),
            self.part,
            self.parts,
        )
        .inspect(move |b| {
            if let Ok(b) = b {
                seen.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
            }
        })
        .chain(futures::stream::poll_fn(move |_| {
            if let Some(c) = &counter
                && !counted.swap(true, Ordering::Relaxed)
            {
                c.rows_in
                    .fetch_add(rows.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            std::task::Poll::Ready(None)
        }));
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// Where a step's output goes.
enum Output {
    Channel(mpsc::Sender<Result<RecordBatch, DataFusionError>>),
    /// A file, with the columns (of the step's output) its readers read, if not all.
    Spill(
        PathBuf,
        watch::Sender<crate::run::spill::Ready>,
        Option<Vec<String>>,
    ),
    Publish,
    Drain,
}

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

#[cfg(feature = "ballista")]
type Cluster = crate::run::cluster::Cluster;
/// Without the `ballista` feature there is no cluster to run on.
#[cfg(not(feature = "ballista"))]
type Cluster = std::convert::Infallible;

/// Why `--engine ENGINE` cannot be used, if it cannot.
pub fn engine_problem(engine: &str) -> Option<String> {
    if engine == "local" {
        return None;
    }
    #[cfg(feature = "ballista")]
    {
        crate::run::cluster::scheduler_address(engine).err()
    }
    #[cfg(not(feature = "ballista"))]
    Some(if engine.starts_with("ballista://") {
        format!(
            "--engine {engine}: this valtava was built without Ballista; build it with `cargo build --release --features ballista`"
        )
    } else {
        format!("unknown engine `{engine}`; use `local` or `ballista://HOST:PORT`")
    })
}

/// Connects to the engine named by `--engine`, if it is not this process.
async fn connect(
    engine: Option<&str>,
    state: &datafusion::execution::SessionState,
    store: &Store,
    run_id: &str,
) -> Result<Option<Cluster>, RunFailure> {
    let engine = match engine {
        None | Some("local") => return Ok(None),
        Some(e) => e,
    };
    if let Some(problem) = engine_problem(engine) {
        return Err(fail(RunCode::Param, problem));
    }
    #[cfg(feature = "ballista")]
    {
        let c = crate::run::cluster::Cluster::connect(engine, state, store, run_id)
            .map_err(|e| fail(RunCode::Param, e))?;
        c.check()
            .await
            .map_err(|e| fail(RunCode::Engine, format!("engine `{engine}`: {e}")))?;
        Ok(Some(c))
    }
    #[cfg(not(feature = "ballista"))]
    {
        // `engine_problem` refuses every other engine in this build.
        let _ = (state, store, run_id);
        Err(fail(RunCode::Param, format!("unknown engine `{engine}`")))
    }
}

/// Whether a step must run in this process even when a cluster is used: a source (its rows
/// come from a parser here), a step any of whose inputs holds a clear personal value, and a
/// step that pseudonymises. The cluster sees pseudonyms at most, and never needs the key.
fn runs_here(inputs: &crate::plan::Inputs, is_source: bool) -> bool {
    is_source
        || inputs
            .values()
            .any(|(_, i)| i.lineage.values().any(|t| !t.pseudonym))
}

/// Whether a plan calls `pseudonym` anywhere (its expressions and subqueries).
fn pseudonymises(plan: &datafusion::logical_expr::LogicalPlan) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut found = false;
    let _ = plan.apply_with_subqueries(|p| {
        for e in p.expressions() {
            let _ = e.apply(|x| {
                if matches!(x, datafusion::logical_expr::Expr::ScalarFunction(f) if f.name() == "pseudonym")
                {
                    found = true;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// The plan of a step and the session that executes it: here, or on the cluster with its
/// inputs copied where the cluster reads them.
async fn placed(
    shared: &Shared,
    step: &str,
    plan: datafusion::logical_expr::LogicalPlan,
    here: bool,
) -> Result<
    (
        datafusion::logical_expr::LogicalPlan,
        datafusion::execution::SessionState,
    ),
    RunFailure,
> {
    match &shared.cluster {
        None => Ok((plan, shared.state.clone())),
        Some(_) if here => Ok((plan, shared.state.clone())),
        #[cfg(feature = "ballista")]
        Some(c) => {
            let plan = c
                .prepare(step, plan, &shared.state, &shared.store.inner)
                .await
                .map_err(|e| fail(RunCode::Engine, format!("step `{step}`: {e}")))?;
            Ok((plan, c.state.clone()))
        }
        #[cfg(not(feature = "ballista"))]
        Some(never) => {
            let _ = step;
            match *never {}
        }
    }
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
    if needs_key(&line) && opts.key.is_none() {
        return Err(RunError::Failed(
            fail(
                RunCode::Key,
                "the line handles personal identity codes and needs a pseudonymisation key: give --pseudonym-key-file FILE or set VALTAVA_PSEUDONYM_KEY",
            ),
            None,
        ));
    }
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
    let progress = opts.progress.then(|| spawn_progress(shared.clone()));
    let memory_log = spawn_memory_log(&shared.state);
    let deadline = opts
        .deadline
        .unwrap_or_else(|| shared.line.spec.limits.run_time());
    let result = match tokio::time::timeout(deadline, schedule(shared.clone(), &scratch)).await {
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

    let mut failure = result.err();
    if failure.is_none() {
        failure = account(&shared).err();
    }
    let quarantine_files = match shared.quarantine.close() {
        Ok(f) => f,
        Err(e) => {
            failure.get_or_insert(fail(RunCode::Write, e));
            vec![]
        }
    };
    let mut quarantine_paths = Vec::new();
    for (step, file, rows) in &quarantine_files {
        let target = format!(
            "{}/{step}",
            crate::store::layout::quarantine(&line_name, &period, &run_id)
        );
        match write_sorted(&shared, file, &target).await {
            Ok(()) => {
                debug!(step = %step, rows, "quarantine written");
                quarantine_paths.push(format!("{target}.parquet"));
            }
            Err(e) => {
                failure.get_or_insert(fail(RunCode::Write, e));
            }
        }
    }
    drop(scratch);
    #[cfg(feature = "ballista")]
    if let Some(c) = &shared.cluster {
        drop(work_lease);
        c.clean(&shared.store.inner).await;
    }
    let captured = shared
        .captured
        .lock()
        .map(|mut c| std::mem::take(&mut *c))
        .unwrap_or_default();
    for step in &shared.capture {
        let schema = shared.check_plans.get(step).map(|p| p.output.clone());
        let (Some(schema), batches) = (schema, captured.get(step).cloned().unwrap_or_default())
        else {
            continue;
        };
        let stream = Box::pin(RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::iter(batches.into_iter().map(Ok)),
        ));
        let prefix = crate::store::layout::captures(&line_name, &run_id);
        if let Err(e) = crate::publish::write_stream(
            &shared.store.inner,
            &prefix,
            step,
            &[crate::line::spec::PublishFormat::Parquet],
            schema,
            stream,
            |_| Ok(()),
        )
        .await
        {
            failure.get_or_insert(fail(RunCode::Write, e));
        }
    }

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
    let qualities: BTreeMap<String, crate::run::accounting::StepQuality> = shared
        .counters
        .iter()
        .map(|(k, c)| {
            (
                k.clone(),
                c.quality.lock().map(|q| q.clone()).unwrap_or_default(),
            )
        })
        .collect();
    let (quality, page) = opts.recorder.quality(&shared.line, &report, &qualities);
    let quality_json = crate::store::layout::quality_json(&line_name, &run_id);
    let quality_html = crate::store::layout::quality_html(&line_name, &run_id);
    match crate::publish::put_text_json(&shared.store.inner, &quality_json, &quality).await {
        Ok(()) => report.quality.push(quality_json),
        Err(e) => {
            failure.get_or_insert(fail(RunCode::Write, e));
        }
    }
    let page = crate::redact::scrubbed(page);
    match object_store::ObjectStoreExt::put(
        shared.store.inner.as_ref(),
        &object_store::path::Path::from(quality_html.as_str()),
        page.into_bytes().into(),
    )
    .await
    {
        Ok(_) => report.quality.push(quality_html),
        Err(e) => {
            failure.get_or_insert(fail(RunCode::Write, e.to_string()));
        }
    }
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

fn step_reports(shared: &Shared) -> BTreeMap<String, StepReport> {
    let timings = shared.timings.lock().map(|t| t.clone()).unwrap_or_default();
    shared
        .line
        .dag
        .order
        .iter()
        .map(|s| {
            let c = &shared.counters[s];
            let spec = crate::line::load::step(&shared.line.spec, s);
            let kind = spec.kinds()[0];
            (
                s.clone(),
                StepReport {
                    kind,
                    inputs: spec.inputs().iter().map(|i| i.value.clone()).collect(),
                    rows_in: c.rows_in.load(Ordering::Relaxed),
                    rows_out: c.rows_out.load(Ordering::Relaxed),
                    rows_quarantined: c.quarantined.load(Ordering::Relaxed),
                    rows_filtered: c.filtered.load(Ordering::Relaxed),
                    objects: (kind == StepKind::Source).then(|| c.objects.load(Ordering::Relaxed)),
                    violations: c
                        .quality
                        .lock()
                        .map(|q| q.violations.clone())
                        .unwrap_or_default(),
                    mappings: c
                        .quality
                        .lock()
                        .map(|q| q.metrics.clone())
                        .unwrap_or_default(),
                    seconds: timings.get(s).copied().unwrap_or_default(),
                },
            )
        })
        .collect()
}

/// Checks that every row is accounted for, and the reject thresholds.
fn account(shared: &Shared) -> Result<(), RunFailure> {
    let spec = &shared.line.spec;
    for s in &shared.line.dag.order {
        let c = &shared.counters[s];
        let (rin, rout, rq) = (
            c.rows_in.load(Ordering::Relaxed),
            c.rows_out.load(Ordering::Relaxed),
            c.quarantined.load(Ordering::Relaxed),
        );
        let step = crate::line::load::step(spec, s);
        let kind = step.kinds()[0];
        let rf = c.filtered.load(Ordering::Relaxed);
        if matches!(
            kind,
            StepKind::Source | StepKind::Validate | StepKind::Harmonise
        ) && rin != rout + rq + rf
        {
            return Err(fail(
                RunCode::Accounting,
                format!(
                    "step `{s}` received {rin} rows but passed {rout} and quarantined {rq}: {} rows unaccounted for",
                    rin as i128 - (rout + rq) as i128
                ),
            ));
        }
        for input in step.main_inputs() {
            let sent = shared.counters[input.value.as_str()]
                .rows_out
                .load(Ordering::Relaxed);
            if step.sql.is_none() && sent != rin {
                return Err(fail(
                    RunCode::Accounting,
                    format!("step `{input}` sent {sent} rows but `{s}` received {rin}"),
                ));
            }
        }
        if let Some(v) = &step.validate
            && let Some(max) = &v.max_reject_share
        {
            // An object that could not be read at all (a county's whole file) counts with
            // all its rows: as many as its bytes hold at the rate of the objects read.
            let lost = source_of(shared, s).map_or(0, |src| lost_rows(&shared.counters[&src]));
            let (rq, rin) = (rq + lost, rin + lost);
            let share = if rin > 0 { rq as f64 / rin as f64 } else { 0.0 };
            if share > max.value {
                return Err(fail(
                    RunCode::RejectShare,
                    format!(
                        "step `{s}` rejected {rq} of {rin} rows ({:.1} %{}), more than max_reject_share {:.1} %; nothing is published — see the quarantine",
                        share * 100.0,
                        if lost > 0 {
                            format!(", counting ≈ {lost} rows of objects that could not be read")
                        } else {
                            String::new()
                        },
                        max.value * 100.0
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The source a step's rows come from, following the first main input.
fn source_of(shared: &Shared, step: &str) -> Option<String> {
    let mut s = step.to_string();
    for _ in 0..shared.line.dag.order.len() {
        let spec = crate::line::load::step(&shared.line.spec, &s);
        if spec.source.is_some() {
            return Some(s);
        }
        s = spec.main_inputs().first()?.value.clone();
    }
    None
}

/// Rows a source lost with objects that failed whole, estimated from their size at the
/// bytes per row of the objects it read; all of a source's rows when nothing was read.
fn lost_rows(c: &Counters) -> u64 {
    let failed = c.bytes_failed.load(Ordering::Relaxed);
    if failed == 0 {
        return 0;
    }
    let read = c.bytes_read.load(Ordering::Relaxed).saturating_sub(failed);
    let rows = c.rows_out.load(Ordering::Relaxed);
    if read == 0 || rows == 0 {
        // Nothing readable to compare with: the failed objects are the whole input.
        return 1;
    }
    ((failed as f64) * rows as f64 / read as f64).ceil() as u64
}

/// The counters of `consumer` when `producer` is one of its main inputs.
fn main_input(shared: &Shared, consumer: &str, producer: &str) -> Option<Arc<Counters>> {
    let spec = crate::line::load::step(&shared.line.spec, consumer);
    spec.main_inputs()
        .iter()
        .any(|i| i.value == producer)
        .then(|| shared.counters[consumer].clone())
}

/// A table whose one partition is the given stream.
fn stream_table(
    part: impl PartitionStream + 'static,
) -> Result<Arc<dyn datafusion::datasource::TableProvider>, RunFailure> {
    partitioned_table([part])
}

/// A table of the given partitions (at least one; all of one schema).
fn partitioned_table<P: PartitionStream + 'static>(
    parts: impl IntoIterator<Item = P>,
) -> Result<Arc<dyn datafusion::datasource::TableProvider>, RunFailure> {
    let parts: Vec<Arc<dyn PartitionStream>> = parts
        .into_iter()
        .map(|p| Arc::new(p) as Arc<dyn PartitionStream>)
        .collect();
    let schema = parts
        .first()
        .ok_or_else(|| fail(RunCode::Engine, "a table of no partitions"))?
        .schema()
        .clone();
    let table =
        StreamingTable::try_new(schema, parts).map_err(|e| fail(RunCode::Engine, e.to_string()))?;
    Ok(Arc::new(table))
}

/// `schema` with only the columns `read` (all when `None`), and their positions in it.
fn narrowed(
    schema: &Schema,
    read: Option<&[String]>,
) -> Result<(Schema, Option<Vec<usize>>), RunFailure> {
    let Some(read) = read else {
        return Ok((schema.clone(), None));
    };
    let cols = read
        .iter()
        .map(|n| schema.index_of(n))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(RunCode::Engine, e.to_string()))?;
    let projected = schema
        .project(&cols)
        .map_err(|e| fail(RunCode::Engine, e.to_string()))?;
    Ok((projected, Some(cols)))
}

/// The columns of step `table`'s output that the plans of `consumers` read, in output
/// order, when not all: the projections of their scans of it after optimisation. `None`
/// when a plan reads every column or cannot be optimised (then every column is kept).
fn columns_read(shared: &Shared, table: &str, consumers: &[String]) -> Option<Vec<String>> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let output = &shared.check_plans.get(table)?.output;
    let mut names = std::collections::BTreeSet::new();
    for c in consumers {
        let step = shared.check_plans.get(c)?;
        let plan = shared.state.optimize(&step.plan).ok()?;
        let mut all = false;
        let _ = plan.apply_with_subqueries(|p| {
            if let datafusion::logical_expr::LogicalPlan::TableScan(t) = p
                && t.table_name.table() == table
            {
                let schema = t.source.schema();
                match &t.projection {
                    Some(cols) => {
                        names.extend(cols.iter().map(|&i| schema.field(i).name().clone()))
                    }
                    None => all = true,
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        if all {
            return None;
        }
    }
    let cols: Vec<String> = output
        .fields()
        .iter()
        .filter(|f| names.contains(f.name()))
        .map(|f| f.name().clone())
        .collect();
    (!cols.is_empty() && cols.len() < output.fields().len() && cols.len() == names.len())
        .then_some(cols)
}

/// How many times `plan` scans the table `table` (a step that finds duplicates reads its
/// input twice).
fn scans(plan: &datafusion::logical_expr::LogicalPlan, table: &str) -> usize {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut n = 0;
    let _ = plan.apply_with_subqueries(|p| {
        if let datafusion::logical_expr::LogicalPlan::TableScan(t) = p
            && t.table_name.table() == table
        {
            n += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    });
    n
}

async fn schedule(shared: Arc<Shared>, scratch: &std::path::Path) -> Result<(), RunFailure> {
    let order = shared.line.dag.order.clone();
    // Inputs each step will read, as providers, created before any task starts.
    let mut providers: BTreeMap<String, crate::plan::Inputs> = BTreeMap::new();
    let mut outputs: BTreeMap<String, Output> = BTreeMap::new();
    for s in &order {
        let consumers = shared.line.dag.consumers(s);
        let plan = &shared.check_plans[s];
        let info = plan.info();
        // An SQL query, or a rate's population, may be scanned more than once: such inputs
        // are spilled, not streamed.
        let read_by_sql = consumers.iter().any(|c| {
            let spec = crate::line::load::step(&shared.line.spec, c);
            spec.sql.is_some()
                || spec
                    .aggregate
                    .as_ref()
                    .is_some_and(|a| a.rates.values().any(|r| r.population.value == *s))
                || scans(&shared.check_plans[c].plan, s) > 1
        });
        let output = match consumers.len() {
            0 if plan.kind == StepKind::Publish => Output::Publish,
            0 => Output::Drain,
            1 if !read_by_sql => {
                let (tx, rx) = mpsc::channel(4);
                let c = &consumers[0];
                let part = ChannelPartition {
                    schema: plan.output.clone(),
                    rx: Mutex::new(Some(rx)),
                    counter: main_input(&shared, c, s),
                };
                providers
                    .entry(c.clone())
                    .or_default()
                    .insert(s.clone(), (stream_table(part)?, info));
                Output::Channel(tx)
            }
            _ => {
                let path = scratch.join(format!("{s}.arrow"));
                let (tx, rx) = watch::channel(None);
                // Only the columns the consumers read are written and read back.
                let read = columns_read(&shared, s, &consumers);
                let schema = Arc::new(narrowed(&plan.output, read.as_deref())?.0);
                let parts = shared.state.config().target_partitions().max(1);
                for c in &consumers {
                    let partitions = (0..parts).map(|part| SpillPartition {
                        schema: schema.clone(),
                        path: path.clone(),
                        ready: rx.clone(),
                        part,
                        parts,
                        counter: main_input(&shared, c, s),
                        counted: Default::default(),
                    });
                    providers
                        .entry(c.clone())
                        .or_default()
                        .insert(s.clone(), (partitioned_table(partitions)?, info.clone()));
                }
                Output::Spill(path, tx, read)
            }
        };
        outputs.insert(s.clone(), output);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for s in &order {
        let shared = shared.clone();
        let mut inputs = providers.remove(s).unwrap_or_default();
        let output = outputs.remove(s).unwrap_or(Output::Drain);
        let name = s.clone();
        let spec = crate::line::load::step(&shared.line.spec, s);
        if let Some(src) = &spec.source {
            let (tx, rx) = mpsc::channel(4);
            let schema = crate::plan::raw_source_schema(src);
            let part = ChannelPartition {
                schema: schema.clone(),
                rx: Mutex::new(Some(rx)),
                counter: None,
            };
            inputs.insert(name.clone(), (stream_table(part)?, InputInfo::raw(schema)));
            let reader_shared = shared.clone();
            let reader_name = name.clone();
            tasks.spawn(async move { read_source(reader_shared, reader_name, tx).await });
        }
        tasks.spawn(async move {
            let t = Instant::now();
            let r = run_step(shared.clone(), name.clone(), inputs, output).await;
            if let Ok(mut timings) = shared.timings.lock() {
                timings.insert(name, t.elapsed().as_secs_f64());
            }
            r
        });
    }
    let mut first: Option<RunFailure> = None;
    while let Some(res) = tasks.join_next().await {
        let r = match res {
            Ok(r) => r,
            Err(e) => Err(fail(
                RunCode::Engine,
                format!("a step task ended abnormally: {e}"),
            )),
        };
        if let Err(f) = r {
            // Keep the root cause: later errors are mostly consumers of the failed step.
            if first.is_none() {
                first = Some(f);
                tasks.abort_all();
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// Lists a source's objects and streams their parsed rows into the source step.
async fn read_source(
    shared: Arc<Shared>,
    step: String,
    tx: mpsc::Sender<Result<RecordBatch, DataFusionError>>,
) -> Result<(), RunFailure> {
    let spec = crate::line::load::step(&shared.line.spec, &step)
        .source
        .as_ref()
        .ok_or_else(|| fail(RunCode::Engine, "not a source"))?;
    let counters = shared.counters[&step].clone();
    let template = shared
        .sources
        .get(&step)
        .cloned()
        .unwrap_or_else(|| spec.location.value.clone());
    let location = crate::store::fill(&template, &shared.fill);
    let loc = crate::store::locate(&shared.store, &location)
        .map_err(|e| fail(RunCode::Source, format!("source `{step}`: {e}")))?;
    let objects = loc
        .list()
        .await
        .map_err(|e| fail(RunCode::Source, format!("source `{step}`: {e}")))?;
    if objects.is_empty() {
        let e = fail(
            RunCode::NoInput,
            format!(
                "source `{step}`: no object matches `{location}` in store {}",
                loc.store.url
            ),
        );
        let _ = tx
            .send(Err(DataFusionError::Execution(e.message.clone())))
            .await;
        return Err(e);
    }
    let parser = crate::steps::source::parsers::get(&spec.format).ok_or_else(|| {
        fail(
            RunCode::Source,
            format!("unknown format `{}`", spec.format.value),
        )
    })?;
    let columns: Vec<String> = spec.columns.keys().map(|k| k.value.clone()).collect();
    let types: Vec<arrow::datatypes::DataType> = spec
        .columns
        .values()
        .map(|c| crate::plan::arrow_type(c.r#type.value))
        .collect();
    let raw_schema = crate::plan::raw_source_schema(spec);
    let typed_schema = shared.check_plans[&step].output.clone();
    let options = spec
        .options
        .as_ref()
        .map(|o| o.value.clone())
        .unwrap_or(serde_json::Value::Null);
    for meta in objects {
        let name = if location.contains("://") || location.starts_with('/') {
            format!("{}/{}", loc.store.url.trim_end_matches('/'), meta.location)
        } else {
            meta.location.to_string()
        };
        counters.objects.fetch_add(1, Ordering::Relaxed);
        counters.bytes_read.fetch_add(meta.size, Ordering::Relaxed);
        debug!(object = %name, bytes = meta.size, "reading");
        let object = SourceObject {
            store: loc.store.inner.clone(),
            path: meta.location.clone(),
            size: meta.size,
            name: name.clone(),
        };
        let request = ParseRequest {
            columns: columns.clone(),
            types: types.clone(),
            options: options.clone(),
            batch_size: shared.batch_size,
            base_dir: Some(shared.line.dir.clone()),
            limits: shared.line.spec.limits.parser_limits(),
        };
        let mut stream = valtava_plugin::guarded(parser.parse(object, request), name.clone());
        while let Some(parsed) = stream.next().await {
            let parsed = match parsed {
                Ok(p) => p,
                Err(e @ valtava_plugin::ParseError::Limit { .. }) => {
                    // The object is quarantined whole; the rows it gave before the bound
                    // stay counted as read.
                    warn!(object = %name, "{}", crate::redact::scrubbed(e.to_string()));
                    limit_reached(&shared, &step, &typed_schema, &name, meta.size, &e)?;
                    break;
                }
                Err(e) => {
                    let f = fail(RunCode::Source, format!("source `{step}`: {e}"));
                    let _ = tx
                        .send(Err(DataFusionError::Execution(f.message.clone())))
                        .await;
                    return Err(f);
                }
            };
            let n = parsed.batch.num_rows();
            counters
                .rows_in
                .fetch_add((n + parsed.rejects.len()) as u64, Ordering::Relaxed);
            if parsed.rejects.iter().any(|r| r.row == 0) {
                counters
                    .bytes_failed
                    .fetch_add(meta.size, Ordering::Relaxed);
            }
            if !parsed.rejects.is_empty() {
                counters
                    .quarantined
                    .fetch_add(parsed.rejects.len() as u64, Ordering::Relaxed);
                if let Ok(mut q) = counters.quality.lock() {
                    *q.violations.entry("parse".into()).or_default() += parsed.rejects.len() as u64;
                }
                shared
                    .quarantine
                    .write_unparsed(&step, &typed_schema, &name, &parsed.rejects)
                    .map_err(|e| fail(RunCode::Write, e))?;
            }
            if n == 0 {
                continue;
            }
            let mut cols: Vec<ArrayRef> = parsed.batch.columns().to_vec();
            cols.push(Arc::new(StringArray::from(vec![name.as_str(); n])));
            let batch = RecordBatch::try_new(raw_schema.clone(), coerce(cols, &raw_schema)?)
                .map_err(|e| fail(RunCode::Source, format!("{name}: {e}")))?;
            if tx.send(Ok(batch)).await.is_err() {
                return Ok(()); // the step stopped; its own error is reported
            }
        }
    }
    Ok(())
}

/// Quarantines an object that reached a reader limit: one row-0 reject (the whole object)
/// with the code and the bound, its bytes counted as failed for `max_reject_share`.
fn limit_reached(
    shared: &Shared,
    step: &str,
    schema: &SchemaRef,
    name: &str,
    size: u64,
    error: &valtava_plugin::ParseError,
) -> Result<(), RunFailure> {
    let counters = &shared.counters[step];
    let reject = valtava_plugin::RowReject {
        row: 0,
        reason: format!("[{}] {error}", RunCode::Limit),
    };
    counters.rows_in.fetch_add(1, Ordering::Relaxed);
    counters.quarantined.fetch_add(1, Ordering::Relaxed);
    counters.bytes_failed.fetch_add(size, Ordering::Relaxed);
    if let Ok(mut q) = counters.quality.lock() {
        *q.violations.entry("limit".into()).or_default() += 1;
    }
    shared
        .quarantine
        .write_unparsed(step, schema, name, &[reject])
        .map_err(|e| fail(RunCode::Write, e))
}

/// Casts a parser's native columns to text where the raw schema expects text.
fn coerce(cols: Vec<ArrayRef>, schema: &Schema) -> Result<Vec<ArrayRef>, RunFailure> {
    cols.into_iter()
        .zip(schema.fields())
        .map(|(a, f)| {
            if a.data_type() == f.data_type() {
                Ok(a)
            } else {
                arrow::compute::cast(&a, f.data_type())
                    .map_err(|e| fail(RunCode::Source, format!("column `{}`: {e}", f.name())))
            }
        })
        .collect()
}

async fn run_step(
    shared: Arc<Shared>,
    name: String,
    inputs: crate::plan::Inputs,
    output: Output,
) -> Result<(), RunFailure> {
    let is_source = crate::line::load::step(&shared.line.spec, &name)
        .source
        .is_some();
    let here = shared.cluster.is_none() || runs_here(&inputs, is_source);
    let planner = Planner {
        line: &shared.line,
        state: shared.state.clone(),
        params: shared.params.clone(),
        codesets: &shared.codesets,
        unique_filter: here
            .then(|| crate::steps::validate::seen::filter_bytes(shared.memory_limit)),
    };
    let plan = planner.plan_step(&name, &inputs).map_err(|d| {
        fail(
            RunCode::Engine,
            d.iter()
                .map(|d| d.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let here = here || pseudonymises(&plan.plan);
    if shared.cluster.is_some() {
        debug!(step = %name, engine = if here { "local" } else { "cluster" }, "step placed");
    }
    let (logical, state) = placed(&shared, &name, plan.plan.clone(), here).await?;
    let ctx = SessionContext::new_with_state(state);
    let physical = ctx
        .state()
        .create_physical_plan(&logical)
        .await
        .map_err(|e| fail(RunCode::Engine, format!("step `{name}`: {e}")))?;
    debug!(
        step = %name,
        "physical plan:\n{}",
        datafusion::physical_plan::displayable(physical.as_ref()).indent(false)
    );
    let executed = physical.clone();
    let stream = execute_stream(physical, ctx.task_ctx())
        .map_err(|e| fail(RunCode::Engine, format!("step `{name}`: {e}")))?;
    let counters = shared.counters[&name].clone();
    let step = crate::line::load::step(&shared.line.spec, &name);
    let mut stream = stream;
    let engine_err = |e: DataFusionError| {
        let msg = e.to_string();
        let code = if msg.contains("R003") || msg.contains("source `") {
            RunCode::Source
        } else {
            RunCode::Engine
        };
        fail(
            code,
            format!(
                "step `{name}`: {}",
                msg.trim_start_matches("Execution error: ")
            ),
        )
    };
    let result = async {
        match output {
            Output::Publish => {
                let p = step
                    .publish
                    .as_ref()
                    .ok_or_else(|| fail(RunCode::Engine, "not a publish step"))?;
                let formats: Vec<_> = p.formats.iter().map(|f| f.value).collect();
                let schema = plan.output.clone();
                // Disclosure control needs the whole table; a published table is aggregated,
                // so it is small.
                let mut batches = Vec::new();
                while let Some(batch) = stream.next().await {
                    batches.push(batch.map_err(&engine_err)?);
                }
                let (table, suppressed) = crate::publish::protect(
                    &batches,
                    schema.clone(),
                    &plan.dimensions,
                    plan.disclosure.as_ref(),
                )
                .map_err(|e| fail(RunCode::Engine, format!("step `{name}`: {e}")))?;
                debug!(step = %name, suppressed, "disclosure control applied");
                counters
                    .rows_out
                    .fetch_add(table.num_rows() as u64, Ordering::Relaxed);
                let rows = table.num_rows() as u64;
                // Column descriptions and units travel in the Parquet file's Arrow schema.
                let described = Arc::new(crate::publish::describe_columns(&schema, p));
                let table = RecordBatch::try_new(described.clone(), table.columns().to_vec())
                    .map_err(|e| fail(RunCode::Engine, e.to_string()))?;
                if formats.contains(&crate::line::spec::PublishFormat::Jsonstat) {
                    let meta = crate::publish::jsonstat_meta(
                        &shared.line,
                        p,
                        &plan.dimensions,
                        &shared.codesets,
                    )
                    .map_err(|e| fail(RunCode::Engine, format!("step `{name}`: {e}")))?;
                    let doc = crate::publish::jsonstat::dataset(&table, &meta)
                        .map_err(|e| fail(RunCode::Engine, format!("step `{name}`: {e}")))?;
                    let errors: Vec<String> = crate::publish::jsonstat::validate(&doc)
                        .into_iter()
                        .filter(|i| i.error)
                        .map(|i| format!("{}: {}", i.code, i.message))
                        .collect();
                    if !errors.is_empty() {
                        return Err(fail(
                            RunCode::Engine,
                            format!(
                                "step `{name}`: the JSON-stat dataset is invalid: {}",
                                errors.join("; ")
                            ),
                        ));
                    }
                    let path = format!(
                        "{}/{}.jsonstat.json",
                        shared.release_prefix, p.dataset.value
                    );
                    crate::publish::put_json(&shared.store.inner, &path, &doc)
                        .await
                        .map_err(|e| fail(RunCode::Write, e))?;
                }
                let one = Box::pin(RecordBatchStreamAdapter::new(
                    described.clone(),
                    futures::stream::iter(vec![Ok(table)]),
                ));
                crate::publish::write_stream_styled(
                    &shared.store.inner,
                    &shared.release_prefix,
                    &p.dataset,
                    &formats,
                    p.csv,
                    described,
                    one,
                    |_| Ok(()),
                )
                .await
                .map_err(|e| fail(RunCode::Write, format!("step `{name}`: {e}")))?;
                if let Ok(mut d) = shared.datasets.lock() {
                    d.push(DatasetReport {
                        dataset: p.dataset.value.clone(),
                        step: name.clone(),
                        rows,
                    });
                }
                Ok(())
            }
            Output::Channel(tx) => {
                while let Some(batch) = stream.next().await {
                    let batch = batch.map_err(&engine_err)?;
                    let passed = tapped(&shared, &name, &plan, &counters, &batch)?;
                    if passed.num_rows() > 0 && tx.send(Ok(passed)).await.is_err() {
                        return Ok(());
                    }
                }
                finish_step(&name, &plan, &counters)
            }
            Output::Spill(path, ready, read) => {
                let result = async {
                    let file = std::fs::File::create(&path)
                        .map_err(|e| fail(RunCode::Write, format!("{}: {e}", path.display())))?;
                    let (schema, cols) = narrowed(&plan.output, read.as_deref())?;
                    let mut w = arrow::ipc::writer::FileWriter::try_new(
                        std::io::BufWriter::with_capacity(1 << 20, file),
                        &schema,
                    )
                    .map_err(|e| fail(RunCode::Write, e.to_string()))?;
                    while let Some(batch) = stream.next().await {
                        let batch = batch.map_err(&engine_err)?;
                        let passed = tapped(&shared, &name, &plan, &counters, &batch)?;
                        let passed = match &cols {
                            Some(cols) => passed
                                .project(cols)
                                .map_err(|e| fail(RunCode::Engine, e.to_string()))?,
                            None => passed,
                        };
                        w.write(&passed)
                            .map_err(|e| fail(RunCode::Write, e.to_string()))?;
                    }
                    finish_step(&name, &plan, &counters)?;
                    w.finish().map_err(|e| fail(RunCode::Write, e.to_string()))
                }
                .await;
                ready.send_replace(Some(
                    result
                        .as_ref()
                        .map(|_| ())
                        .map_err(|_| "the producing step failed".to_string()),
                ));
                result
            }
            Output::Drain => {
                while let Some(batch) = stream.next().await {
                    let batch = batch.map_err(&engine_err)?;
                    tapped(&shared, &name, &plan, &counters, &batch)?;
                }
                finish_step(&name, &plan, &counters)
            }
        }
    }
    .await;
    // What each operator did (rows, time, spills): where a slow step spends its time.
    debug!(
        step = %name,
        "executed plan:\n{}",
        datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(executed.as_ref())
            .indent(false)
    );
    result
}

fn tapped(
    shared: &Shared,
    name: &str,
    plan: &StepPlan,
    counters: &Counters,
    batch: &RecordBatch,
) -> Result<RecordBatch, RunFailure> {
    let mut quality = counters
        .quality
        .lock()
        .map_err(|_| fail(RunCode::Engine, "quality lock poisoned"))?;
    let outcome = crate::run::quarantine::tap(batch, plan, &mut quality, &shared.quarantine, name)
        .map_err(|e| fail(RunCode::Write, e))?;
    drop(quality);
    counters
        .quarantined
        .fetch_add(outcome.rejected as u64, Ordering::Relaxed);
    counters
        .filtered
        .fetch_add(outcome.filtered as u64, Ordering::Relaxed);
    counters
        .rows_out
        .fetch_add(outcome.passed.num_rows() as u64, Ordering::Relaxed);
    if shared.capture.contains(name)
        && let Ok(mut c) = shared.captured.lock()
    {
        c.entry(name.to_string())
            .or_default()
            .push(outcome.passed.clone());
    }
    if let Some((rule, reason)) = outcome.failure {
        return Err(fail(
            RunCode::RuleFail,
            format!("step `{name}`: rule `{rule}` (severity fail) is broken: {reason}"),
        ));
    }
    Ok(outcome.passed)
}

/// Evaluates a step's dataset checks after its last row.
fn finish_step(name: &str, plan: &StepPlan, counters: &Counters) -> Result<(), RunFailure> {
    if plan.dataset_checks.is_empty() {
        return Ok(());
    }
    let rows = counters.rows_in.load(Ordering::Relaxed) - counters.filtered.load(Ordering::Relaxed);
    let mut quality = counters
        .quality
        .lock()
        .map_err(|_| fail(RunCode::Engine, "quality lock poisoned"))?;
    match crate::run::quarantine::finish_dataset_checks(plan, rows, &mut quality) {
        Some((rule, what)) => Err(fail(
            RunCode::RuleFail,
            format!("step `{name}`: dataset check `{rule}` (severity fail) is broken: {what}"),
        )),
        None => Ok(()),
    }
}

/// The memory the sort of one quarantine file may hold before it spills (or the memory
/// limit, when that is smaller). The rejected rows grow with the data (1 % of 50 M rows is
/// half a million wide rows); with the run's steps done, the shared pool would let this
/// one sort hold them all. At 50 M rows a 64 MiB sort made the end of the run its
/// resident peak (≈ 330 MiB against ≈ 270 MiB with 24 MiB, PROFILE.md ninth round).
const QUARANTINE_SORT_MEMORY: usize = 24 << 20;

/// Rows of a batch in the quarantine's sort: small enough that a batch of wide rows (a few
/// KB each, as a FHIR resource's text) still fits the sort's memory.
const QUARANTINE_SORT_BATCH_ROWS: usize = 2048;

/// A session like `state` whose one partition's sort holds at most `bytes` and spills the
/// rest (a quarter of it kept for merging the spilled runs), in batches of
/// `QUARANTINE_SORT_BATCH_ROWS`.
fn bounded_state(
    state: &datafusion::execution::SessionState,
    bytes: usize,
) -> Result<datafusion::execution::SessionState, String> {
    let mut config = state
        .config()
        .clone()
        .with_target_partitions(1)
        .with_batch_size(QUARANTINE_SORT_BATCH_ROWS);
    config.options_mut().execution.sort_spill_reservation_bytes = bytes / 4;
    let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(
            datafusion::execution::memory_pool::FairSpillPool::new(bytes),
        ))
        .build_arc()
        .map_err(|e| e.to_string())?;
    Ok(
        datafusion::execution::SessionStateBuilder::new_from_existing(state.clone())
            .with_config(config)
            .with_runtime_env(runtime)
            .build(),
    )
}

/// The rows of a local quarantine file sorted by object and row, by a sort that holds at
/// most `memory` bytes; also the plan, whose metrics tell whether it spilled.
async fn sorted_quarantine(
    state: &datafusion::execution::SessionState,
    file: &std::path::Path,
    memory: usize,
) -> Result<
    (
        SchemaRef,
        Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        SendableRecordBatchStream,
    ),
    String,
> {
    let ctx = SessionContext::new_with_state(bounded_state(state, memory)?);
    let df = ctx
        .read_parquet(file.to_string_lossy().as_ref(), Default::default())
        .await
        .map_err(|e| e.to_string())?;
    // Sort by provenance where the step kept it, otherwise by every column, so the file's
    // bytes do not depend on the order in which parallel partitions finished.
    let names: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let keys: Vec<String> =
        if names.iter().any(|n| n == OBJECT_COLUMN) && names.iter().any(|n| n == ROW_COLUMN) {
            vec![OBJECT_COLUMN.into(), ROW_COLUMN.into()]
        } else {
            names
        };
    let df = df
        .sort(
            keys.iter()
                .map(|k| {
                    datafusion::prelude::col(datafusion::common::Column::from_name(k.as_str()))
                        .sort(true, true)
                })
                .collect(),
        )
        .map_err(|e| e.to_string())?;
    let schema: SchemaRef = Arc::new(Schema::new(
        df.schema()
            .fields()
            .iter()
            .map(|f| Field::clone(f))
            .collect::<Vec<_>>(),
    ));
    let plan = df.create_physical_plan().await.map_err(|e| e.to_string())?;
    let stream = execute_stream(plan.clone(), ctx.task_ctx()).map_err(|e| e.to_string())?;
    Ok((schema, plan, stream))
}

/// Sorts a local quarantine file by object and row and writes it to the store.
async fn write_sorted(shared: &Shared, file: &std::path::Path, target: &str) -> Result<(), String> {
    let memory = shared
        .memory_limit
        .unwrap_or(usize::MAX)
        .min(QUARANTINE_SORT_MEMORY);
    let (schema, _, stream) = sorted_quarantine(&shared.state, file, memory).await?;
    let (dir, name) = target.rsplit_once('/').unwrap_or(("", target));
    crate::publish::write_stream(
        &shared.store.inner,
        dir,
        name,
        &[crate::line::spec::PublishFormat::Parquet],
        schema,
        stream,
        |_| Ok(()),
    )
    .await?;
    Ok(())
}

/// The manifest of a release.
#[derive(Debug, Serialize)]
struct Manifest<'a> {
    line: &'a str,
    period: &'a str,
    run_id: &'a str,
    line_hash: &'a str,
    engine_version: &'a str,
    params: &'a BTreeMap<String, String>,
    codesets: &'a BTreeMap<String, crate::line::codeset::CodesetUse>,
    datasets: &'a [DatasetReport],
    objects: Vec<crate::publish::ObjectEntry>,
}

async fn release(shared: &Shared, report: &RunReport, period: &str) -> Result<(), String> {
    let store = &shared.store.inner;
    // Durable in order: the data, then the manifest naming it, then the pointer naming that.
    crate::store::sync(&shared.store, &shared.release_prefix)?;
    let objects = crate::publish::describe(store, &shared.release_prefix).await?;
    let manifest = Manifest {
        line: &report.line,
        period,
        run_id: &report.run_id,
        line_hash: &report.line_hash,
        engine_version: &report.engine_version,
        params: &report.params,
        codesets: &report.codesets,
        datasets: &report.datasets,
        objects,
    };
    let manifest_path = crate::store::layout::manifest(&shared.release_prefix);
    crate::publish::put_json(store, &manifest_path, &manifest).await?;
    crate::store::sync(&shared.store, &manifest_path)?;
    let pointer = serde_json::json!({
        "run_id": report.run_id,
        "manifest": crate::store::layout::manifest(&shared.release_prefix),
    });
    let pointer_path = crate::store::layout::release_pointer(&report.line, period);
    crate::publish::put_json(store, &pointer_path, &pointer).await?;
    crate::store::sync(&shared.store, &pointer_path)
}

fn spawn_progress(shared: Arc<Shared>) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let b = bar.clone();
    let handle = tokio::spawn(async move {
        loop {
            let parts: Vec<String> = shared
                .line
                .dag
                .order
                .iter()
                .map(|s| {
                    let c = &shared.counters[s];
                    format!("{s} {}", c.rows_out.load(Ordering::Relaxed))
                })
                .collect();
            b.set_message(parts.join(" · "));
            b.tick();
            tokio::time::sleep(std::time::Duration::from_millis(120)).await;
        }
    });
    (bar, handle)
}

/// With `RUST_LOG=valtava::memory=debug`, logs every second what the query engine's memory
/// pool holds beside the process's resident memory, and its largest consumers (tracked when
/// `VALTAVA_MEMORY_LIMIT` is set): where a run's memory goes, for an operator choosing it.
fn spawn_memory_log(
    state: &datafusion::execution::SessionState,
) -> Option<tokio::task::JoinHandle<()>> {
    use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
    if !tracing::enabled!(target: "valtava::memory", tracing::Level::DEBUG) {
        return None;
    }
    let pool = state.runtime_env().memory_pool.clone();
    Some(tokio::spawn(async move {
        loop {
            let top = pool
                .downcast_ref::<TrackConsumersPool<FairSpillPool>>()
                .map(|p| p.report_top(5).replace('\n', "; "))
                .unwrap_or_default();
            debug!(
                target: "valtava::memory",
                rss_mib = resident_bytes().unwrap_or(0) >> 20,
                pool_mib = pool.reserved() >> 20,
                top = %top,
                "memory"
            );
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }))
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

/// The process's resident memory (Linux), for the memory log.
fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(
        pages
            * usize::try_from(page)
                .ok()
                .filter(|p| *p > 0)
                .unwrap_or(4096),
    )
}

#[cfg(test)]
mod tests {
    //! A crash at any write leaves the previous release intact.
    use std::sync::atomic::AtomicUsize;

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

#[cfg(test)]
mod scratch_tests {
    use super::*;

    /// The quarantine's sort keeps within its memory: far more rejected rows than it may
    /// hold are spilled and merged, and every row comes out, by object and row.
    #[tokio::test]
    async fn quarantine_sort_spills_beyond_its_memory_and_keeps_every_row() {
        use datafusion::arrow::array::{AsArray, UInt64Array};
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::new(dir.path().to_path_buf(), "run".into(), None);
        let schema = Schema::new(vec![
            Field::new(OBJECT_COLUMN, arrow::datatypes::DataType::Utf8, true),
            Field::new(ROW_COLUMN, arrow::datatypes::DataType::UInt64, true),
        ]);
        // Objects and rows out of order: rows descending within objects given c, a, b.
        for object in ["inbox/c.csv", "inbox/a.csv", "inbox/b.csv"] {
            for chunk in (0..10u64).rev() {
                let rejects: Vec<valtava_plugin::RowReject> = (chunk * 10_000
                    ..(chunk + 1) * 10_000)
                    .rev()
                    .map(|row| valtava_plugin::RowReject {
                        row,
                        reason: format!("row {row} of {object}: too few fields"),
                    })
                    .collect();
                q.write_unparsed("lahde", &schema, object, &rejects)
                    .unwrap();
            }
        }
        let [(_, path, rows)] = q.close().unwrap().try_into().unwrap();
        assert_eq!(rows, 300_000);
        let state = crate::plan::session(Some(b"k"), 2).state();
        let (_, plan, mut stream) = sorted_quarantine(&state, &path, 8 << 20).await.unwrap();
        let mut seen = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.unwrap();
            assert!(batch.num_rows() <= QUARANTINE_SORT_BATCH_ROWS);
            let objects = arrow::compute::cast(
                batch.column_by_name(OBJECT_COLUMN).unwrap(),
                &arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            let objects = objects.as_string::<i32>();
            let rows = batch
                .column_by_name(ROW_COLUMN)
                .unwrap()
                .as_any()
                .downcast_ref::<UInt64Array>()
                .unwrap();
            seen.extend(
                objects
                    .iter()
                    .map(|o| o.unwrap().to_string())
                    .zip(rows.values().iter().copied()),
            );
        }
        let mut want = Vec::new();
        for object in ["inbox/a.csv", "inbox/b.csv", "inbox/c.csv"] {
            want.extend((0..100_000u64).map(|r| (object.to_string(), r)));
        }
        assert_eq!(seen.len(), want.len());
        assert!(seen == want, "not sorted by object and row");
        // It spilled: the rows did not fit in 8 MiB.
        fn spills(plan: &dyn datafusion::physical_plan::ExecutionPlan) -> usize {
            plan.metrics().and_then(|m| m.spill_count()).unwrap_or(0)
                + plan
                    .children()
                    .iter()
                    .map(|c| spills(c.as_ref()))
                    .sum::<usize>()
        }
        assert!(
            spills(plan.as_ref()) > 0,
            "the sort held every row in memory"
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn resident_memory_grows_with_touched_pages() {
        let before = resident_bytes().unwrap();
        // Far more than other tests running at the same time could free meanwhile.
        let block = vec![1u8; 256 << 20];
        let after = resident_bytes().unwrap();
        assert!(block.iter().all(|b| *b == 1));
        assert!(after >= before + (192 << 20), "{before} -> {after}");
    }
}

#[cfg(test)]
mod spill_partition_tests {
    use arrow::array::{AsArray, UInt64Array};
    use arrow::datatypes::{DataType, UInt64Type};
    use futures::TryStreamExt;

    use super::*;

    /// A spill file read in two partitions: each reads every other batch, together every
    /// row once; the consumer's rows are counted once, by the first scan of a partition
    /// that reads it to its end (not by a scan dropped early, as a join with an empty build
    /// side drops its probe side).
    #[tokio::test]
    async fn partitions_of_a_spill_file_read_each_batch_once_and_count_rows_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vaihe.arrow");
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::UInt64, false)]));
        let mut writer =
            arrow::ipc::writer::FileWriter::try_new(std::fs::File::create(&path).unwrap(), &schema)
                .unwrap();
        for b in 0..5u64 {
            let values = UInt64Array::from_iter_values(b * 10..(b + 1) * 10);
            writer
                .write(&RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).unwrap())
                .unwrap();
        }
        writer.finish().unwrap();
        let (_tx, ready) = watch::channel(Some(Ok(())));
        let counters = Arc::new(Counters::default());
        let parts: Vec<SpillPartition> = (0..2)
            .map(|part| SpillPartition {
                schema: schema.clone(),
                path: path.clone(),
                ready: ready.clone(),
                part,
                parts: 2,
                counter: Some(counters.clone()),
                counted: Default::default(),
            })
            .collect();
        let ctx = SessionContext::new().task_ctx();
        let mut dropped = parts[1].execute(ctx.clone());
        assert!(dropped.next().await.unwrap().is_ok());
        drop(dropped);
        assert_eq!(counters.rows_in.load(Ordering::Relaxed), 0);
        for _scan in 0..2 {
            let mut all: Vec<u64> = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                let batches: Vec<RecordBatch> = p.execute(ctx.clone()).try_collect().await.unwrap();
                let firsts: Vec<u64> = batches
                    .iter()
                    .map(|b| b.column(0).as_primitive::<UInt64Type>().value(0))
                    .collect();
                assert_eq!(
                    firsts,
                    if i == 0 {
                        vec![0, 20, 40]
                    } else {
                        vec![10, 30]
                    }
                );
                for b in &batches {
                    all.extend(b.column(0).as_primitive::<UInt64Type>().values().iter());
                }
            }
            all.sort_unstable();
            assert_eq!(all, (0..50).collect::<Vec<u64>>());
        }
        assert_eq!(counters.rows_in.load(Ordering::Relaxed), 50);
    }
}
