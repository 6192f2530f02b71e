//! The queue of runs: jobs, the workers that start them, and one run to its end.
//!
//! Every way a run is asked for (the API, a schedule, an arrival) ends in
//! [`App::enqueue`]; [`dispatch`] starts queued jobs while workers are free, one per line
//! and period at a time, and [`execute`] runs one through the same `run::run` as the
//! command line. Jobs are written to the store at every change, so [`App::resume`] finds at
//! start what a stopped daemon left (and gives up a job that stopped it too often). Kept
//! apart from the triggers and the HTTP API, which only queue and read jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path as ObjPath;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{error, info, warn};

use crate::serve::error::ServeError;
use crate::serve::{App, now_text};

/// A job: one run of a line for one set of parameters.
///
/// Also the schema `Job` of the OpenAPI document (`serve::openapi`): the fields the store
/// and the API keep are the fields it documents.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Job {
    /// The job's id (also the run's URL, `/api/runs/{id}`).
    pub id: String,
    /// The line run.
    pub line: String,
    /// The run's parameters by name.
    pub params: BTreeMap<String, String>,
    /// `api`, `schedule`, `arrival`, `upload`, `release`.
    #[schema(schema_with = trigger_schema)]
    pub trigger: String,
    #[schema(inline)]
    pub status: JobStatus,
    /// When the job was queued.
    #[schema(format = DateTime)]
    pub created: String,
    /// When its run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = DateTime)]
    pub started: Option<String>,
    /// When its run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, format = DateTime)]
    pub finished: Option<String>,
    /// The run's id (its report and releases are under it), once it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub run_id: Option<String>,
    /// Why the run failed: `code` (a run code such as `R008`, or `V000`) and `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub error: Option<Value>,
    /// Starts, counting those a stopped daemon did not finish.
    #[serde(default)]
    #[schema(required = true)]
    pub attempts: u32,
    /// The status its release carries, as asked for; absent: the line's `release_status`
    /// (`final` when the line does not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub release_status: Option<crate::publish::revision::ReleaseStatus>,
    /// The revision note its release carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub note: Option<String>,
    /// In a range of periods, the job of the period before (this one starts after it
    /// ends; if it failed, this one is skipped unless the range keeps going).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub after: Option<String>,
    /// In a range of periods: run even if the period before failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_going: bool,
    /// Part of a range of periods: not run again when its period's inputs are unchanged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub range: bool,
    /// In a range: the period's current release was made from the same line, parameters
    /// and inputs, so it was not run again (`run_id` names that release's run).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
    /// The run's wall time, once it has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = f64)]
    pub seconds: Option<f64>,
}

/// The schema of [`Job::trigger`]: how the run was asked for.
fn trigger_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["api", "schedule", "arrival", "upload", "release"]))
        .description(Some(
            "How the run was asked for: through the API, on the line's schedule, by an arrival in an inbox, by an upload, or by a new release of a dataset the line reads.",
        ))
        .build()
}

/// Where a job is: queued, running, or ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl Job {
    /// A job queued now.
    fn queued(
        id: String,
        line: &str,
        params: BTreeMap<String, String>,
        trigger: &str,
        label: crate::publish::revision::ReleaseRequest,
    ) -> Job {
        Job {
            id,
            line: line.to_string(),
            params,
            trigger: trigger.to_string(),
            status: JobStatus::Queued,
            created: now_text(),
            started: None,
            finished: None,
            run_id: None,
            error: None,
            attempts: 0,
            release_status: label.status,
            note: label.note,
            after: None,
            keep_going: false,
            range: false,
            unchanged: false,
            seconds: None,
        }
    }

    fn key(&self) -> (String, String) {
        (
            self.line.clone(),
            self.params.get("period").cloned().unwrap_or_default(),
        )
    }
}

impl App {
    /// Jobs queued and running.
    pub(super) fn queue_counts(&self) -> (usize, usize) {
        let jobs = self.jobs.lock().expect("jobs lock");
        let count = |s: JobStatus| jobs.values().filter(|j| j.status == s).count();
        (count(JobStatus::Queued), count(JobStatus::Running))
    }

    async fn save(&self, job: &Job) {
        self.put_json(&crate::store::layout::job(&job.id), job)
            .await;
    }

    pub(super) fn new_id(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        format!("{}-{n:04}", chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ"))
    }

    /// Queues a run, or returns the queued job of the same line and parameters.
    pub(super) async fn enqueue(
        &self,
        line: &str,
        params: BTreeMap<String, String>,
        trigger: &str,
        label: crate::publish::revision::ReleaseRequest,
    ) -> Job {
        let job = {
            let mut jobs = self.jobs.lock().expect("jobs lock");
            if let Some(j) = jobs.values().find(|j| {
                j.status == JobStatus::Queued
                    && j.line == line
                    && j.params == params
                    && j.release_status == label.status
                    && j.note == label.note
            }) {
                return j.clone();
            }
            let job = Job::queued(self.new_id(), line, params, trigger, label);
            jobs.insert(job.id.clone(), job.clone());
            job
        };
        info!(job = %job.id, line, trigger, params = ?job.params, "run queued");
        self.save(&job).await;
        self.wake.notify_one();
        job
    }

    /// Queues one job per period of a range, each after the one before.
    pub(super) async fn enqueue_range(
        &self,
        line: &str,
        runs: Vec<BTreeMap<String, String>>,
        label: crate::publish::revision::ReleaseRequest,
        keep_going: bool,
    ) -> Vec<Job> {
        let mut out: Vec<Job> = Vec::new();
        {
            let mut jobs = self.jobs.lock().expect("jobs lock");
            for params in runs {
                let job = Job {
                    after: out.last().map(|j| j.id.clone()),
                    keep_going,
                    range: true,
                    ..Job::queued(self.new_id(), line, params, "api", label.clone())
                };
                jobs.insert(job.id.clone(), job.clone());
                out.push(job);
            }
        }
        for job in &out {
            info!(job = %job.id, line, params = ?job.params, "run queued (range)");
            self.save(job).await;
        }
        self.wake.notify_one();
        out
    }

    /// Reads the jobs a previous daemon left; unfinished ones are queued again.
    pub(super) async fn resume(&self) -> Result<usize, ServeError> {
        let metas: Vec<_> = self
            .store
            .inner
            .list(Some(&ObjPath::from(crate::store::layout::JOBS)))
            .try_collect()
            .await
            .map_err(ServeError::ListJobs)?;
        let mut resumed = Vec::new();
        for m in metas {
            let Some(bytes) = self.get_bytes(m.location.as_ref()).await else {
                continue;
            };
            let Ok(mut job) = serde_json::from_slice::<Job>(&bytes) else {
                warn!(object = %m.location, "not a job; ignored");
                continue;
            };
            if !self.lines.contains_key(&job.line) {
                continue;
            }
            if job.status == JobStatus::Running && job.attempts >= self.max_attempts.max(1) {
                // Started this many times and never finished: it may be what stops the
                // daemon (a hostile object); resuming it again would stop it again.
                warn!(job = %job.id, line = %job.line, attempts = job.attempts, "run interrupted too many times; marked failed");
                job.status = JobStatus::Failed;
                job.finished = Some(now_text());
                job.error = Some(json!({
                    "code": crate::run::RunCode::Engine,
                    "message": format!("the run was interrupted {} times (the daemon stopped or crashed during it); not resumed", job.attempts),
                }));
                resumed.push(job.clone());
            } else if matches!(job.status, JobStatus::Queued | JobStatus::Running) {
                if job.status == JobStatus::Running {
                    info!(job = %job.id, line = %job.line, "run interrupted by a stop; queued again");
                }
                job.status = JobStatus::Queued;
                job.started = None;
                resumed.push(job.clone());
            }
            self.jobs
                .lock()
                .expect("jobs lock")
                .insert(job.id.clone(), job);
        }
        for j in &resumed {
            self.save(j).await;
        }
        Ok(resumed
            .iter()
            .filter(|j| j.status == JobStatus::Queued)
            .count())
    }
}

/// Runs one job to its end and records it.
async fn execute(app: Arc<App>, mut job: Job) {
    let Some(entry) = app.lines.get(&job.line) else {
        return;
    };
    info!(job = %job.id, line = %job.line, params = ?job.params, "run started");
    let opts = crate::run::RunOptions {
        store: app.store.clone(),
        params: job
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        sources: Default::default(),
        key: app.key.clone(),
        batch_size: 8192,
        progress: false,
        lineage_url: None,
        capture: Default::default(),
        engine: app.engine.clone(),
        deadline: app.deadline,
        recorder: crate::artefacts::recorder(),
        memory_limit: app.memory_limit,
        release: crate::publish::revision::ReleaseRequest {
            status: job.release_status,
            note: job.note.clone(),
        },
    };
    let t = Instant::now();
    if job.range
        && let Ok(Some(run_id)) = crate::run::inputs::unchanged(&entry.path, &opts).await
    {
        info!(job = %job.id, line = %job.line, run = %run_id, "inputs unchanged; not run again");
        job.status = JobStatus::Succeeded;
        job.unchanged = true;
        job.run_id = Some(run_id);
        job.seconds = Some(t.elapsed().as_secs_f64());
        job.finished = Some(now_text());
        return finish(&app, job, None).await;
    }
    // On a task of its own: a run that panics fails its job instead of leaving it running
    // and its worker taken.
    let path = entry.path.clone();
    let result = match tokio::spawn(async move { crate::run::run(&path, opts).await }).await {
        Ok(r) => r,
        Err(e) => {
            error!(job = %job.id, line = %job.line, "the run ended abnormally: {e}");
            Err(crate::run::RunError::Failed(
                crate::run::RunFailure {
                    code: crate::run::RunCode::Engine,
                    message: "the run ended abnormally (a panic); see the daemon's log".into(),
                },
                None,
            ))
        }
    };
    job.seconds = Some(t.elapsed().as_secs_f64());
    job.finished = Some(now_text());
    let report = match result {
        Ok(report) => {
            job.status = JobStatus::Succeeded;
            job.run_id = Some(report.run_id.clone());
            Some(report)
        }
        Err(crate::run::RunError::Failed(f, report)) => {
            job.status = JobStatus::Failed;
            job.error = Some(json!({ "code": f.code, "message": f.message }));
            job.run_id = report.as_ref().map(|r| r.run_id.clone());
            report.map(|r| *r)
        }
        Err(crate::run::RunError::Invalid(d)) => {
            job.status = JobStatus::Failed;
            let first = d.first().map(|d| d.message.clone()).unwrap_or_default();
            job.error = Some(json!({ "code": "V000", "message": first }));
            None
        }
    };
    info!(job = %job.id, line = %job.line, status = ?job.status, seconds = job.seconds, "run finished");
    finish(&app, job, report).await;
}

/// Queues the lines that read a dataset `job`'s line just released, for the period of
/// theirs containing the released one: a line reading another line's published indicators
/// runs after they publish.
async fn queue_readers(app: &App, job: &Job) {
    let Some(published) = app.lines.get(&job.line) else {
        return;
    };
    let period = job.params.get("period");
    let start = period.and_then(|p| {
        match crate::line::params::parse_value(crate::line::spec::ParamKind::Period, p) {
            Ok(crate::line::params::ParamValue::Period { start, .. }) => Some(start),
            _ => None,
        }
    });
    for (name, reader) in &app.lines {
        if *name == job.line
            || !reader
                .reads
                .iter()
                .any(|d| published.datasets.contains_key(d))
        {
            continue;
        }
        let mut params = BTreeMap::new();
        if let Some(kind) = reader.period {
            let Some(p) = start.and_then(|s| crate::line::params::period_containing(kind, s))
            else {
                continue;
            };
            params.insert("period".to_string(), p);
        }
        info!(line = %name, after = %job.line, params = ?params, "a dataset it reads was released");
        app.enqueue(name, params, "release", Default::default())
            .await;
    }
}

/// Records an ended job and frees its worker.
async fn finish(app: &App, job: Job, report: Option<crate::run::RunReport>) {
    if job.status == JobStatus::Succeeded && !job.unchanged {
        queue_readers(app, &job).await;
    }
    app.record(&job, report.as_ref());
    app.save(&job).await;
    app.jobs
        .lock()
        .expect("jobs lock")
        .insert(job.id.clone(), job);
    app.running.fetch_sub(1, Ordering::SeqCst);
    app.wake.notify_one();
}

/// Whether a job waits for the job before it in a range, may start, or is skipped because
/// that one failed.
enum Turn {
    Wait,
    Start,
    Skip,
}

fn turn(j: &Job, ended: &BTreeMap<String, JobStatus>) -> Turn {
    match j.after.as_ref().map(|a| ended.get(a)) {
        None => Turn::Start,
        Some(None) => Turn::Wait,
        Some(Some(JobStatus::Failed)) if !j.keep_going => Turn::Skip,
        Some(Some(_)) => Turn::Start,
    }
}

/// The queued jobs that start now (marked running; at most the free workers, one per line
/// and period), and those of a range skipped because the period before failed.
fn pick(app: &App) -> (Vec<Job>, Vec<Job>) {
    let mut jobs = app.jobs.lock().expect("jobs lock");
    let mut busy: BTreeSet<(String, String)> = jobs
        .values()
        .filter(|j| j.status == JobStatus::Running)
        .map(Job::key)
        .collect();
    // A job left by an older daemon names a job this one may not hold: it was ended.
    let ended: BTreeMap<String, JobStatus> = jobs
        .values()
        .filter(|j| matches!(j.status, JobStatus::Succeeded | JobStatus::Failed))
        .map(|j| (j.id.clone(), j.status))
        .collect();
    let mut free = app
        .workers
        .saturating_sub(app.running.load(Ordering::SeqCst) as usize);
    let (mut start, mut skipped) = (Vec::new(), Vec::new());
    for j in jobs.values_mut() {
        if j.status != JobStatus::Queued || busy.contains(&j.key()) {
            continue;
        }
        match turn(j, &ended) {
            Turn::Wait => continue,
            Turn::Skip => {
                j.status = JobStatus::Failed;
                j.finished = Some(now_text());
                j.error = Some(json!({
                    "code": "skipped",
                    "message": "not run: the period before it in the range failed",
                }));
                skipped.push(j.clone());
                continue;
            }
            Turn::Start if free == 0 => continue,
            Turn::Start => {}
        }
        busy.insert(j.key());
        j.status = JobStatus::Running;
        j.started = Some(now_text());
        j.attempts += 1;
        free -= 1;
        start.push(j.clone());
    }
    (start, skipped)
}

/// Starts queued jobs while workers are free, one per line and period.
pub(super) async fn dispatch(app: Arc<App>) {
    loop {
        if app.stopping.load(Ordering::SeqCst) {
            return;
        }
        let (startable, skipped) = pick(&app);
        for job in skipped {
            app.save(&job).await;
        }
        for job in startable {
            app.running.fetch_add(1, Ordering::SeqCst);
            app.save(&job).await;
            tokio::spawn(execute(app.clone(), job));
        }
        tokio::select! {
            _ = app.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
