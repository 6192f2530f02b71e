//! Runs through the API: triggering one, listing them, one run's report and its quality
//! report.
//!
//! Triggering needs a `run` token for the line; reading runs a `read` token, and a token
//! limited to some lines sees their runs only (another line's run is "not found").

use std::collections::BTreeMap;
use std::path::Path as FsPath;
use std::sync::atomic::Ordering;

use axum::extract::State;

use crate::serve::extract::{P, Q};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::serve::auth::{authorize, read_body, refuse};
use crate::serve::error::{ApiError, Problem};
use crate::serve::jobs::{Job, JobStatus};
use crate::serve::{App, AppState, scrubbed};

/// A request to run a line: its parameters (`{"params": {"period": "2025-03"}}`). The body
/// may be empty: a run without parameters.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::serve) struct RunRequest {
    /// The parameters by name; those the line gives a default may be left out.
    #[serde(default)]
    params: BTreeMap<String, String>,
    /// The status of the release: `preliminary` or `final`; absent: the line's
    /// `release_status` (`final` when the line does not say).
    #[serde(default)]
    status: Option<crate::publish::revision::ReleaseStatus>,
    /// A revision note the release carries (at most 500 characters, one paragraph, no
    /// personal data).
    #[serde(default)]
    note: Option<String>,
    /// With a range of periods (`"period": "2025-01..2025-06"`): run the next period even
    /// if one fails.
    #[serde(default)]
    keep_going: bool,
}

/// The jobs of a range of periods, in order.
#[derive(Serialize, utoipa::ToSchema)]
pub(in crate::serve) struct RangeJobs {
    /// One job per period; each starts after the one before has ended, and a period whose
    /// inputs are unchanged since its current release is not run again.
    jobs: Vec<Job>,
}

/// Runs, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub(in crate::serve) struct RunList<'a> {
    runs: Vec<&'a Job>,
}

/// A run and, once it has ended, its report.
#[derive(Serialize, utoipa::ToSchema)]
pub(in crate::serve) struct RunAnswer {
    run: Job,
    /// The run's report (as `valtava run` writes it, the line file named by its file name);
    /// null until the run has ended.
    report: Option<Value>,
}

#[utoipa::path(
    post,
    path = "/api/lines/{line}/runs",
    tag = "runs",
    summary = "Queue a run of the line",
    description = "Needs a token with the `run` role for the line. A request for the parameters of a job already queued answers that job.",
    security(("bearer" = [])),
    params(("line" = String, Path, description = "The line's name")),
    request_body(
        content = ref("#/components/schemas/RunRequest"),
        content_type = "application/json",
        description = "The run's parameters; an empty body runs the line without any",
    ),
    responses(
        (status = 202, description = "Queued (or the identical queued job); for a range of periods, `RangeJobs`: one job per period", body = Job,
            headers(("Location" = String, description = "The run: `/api/runs/{id}`"))),
        (status = 400, response = Problem),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 408, description = "The body paused too long", body = Problem),
        (status = 413, description = "Larger than a run request may be", body = Problem),
        (status = 503, response = Problem),
    ),
)]
pub(in crate::serve) async fn post_run(
    State(app): AppState,
    P(line): P<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    if let Err(refusal) = authorize(&app, &headers, "run", Some(&line)) {
        return Err(refuse(&headers, body, refusal).await);
    }
    /// A run request is a few parameters.
    const MAX_RUN_REQUEST: usize = 64 << 10;
    let body = read_body(body, MAX_RUN_REQUEST).await?;
    let Some(e) = app.lines.get(&line) else {
        return Err(ApiError::NoLine(line));
    };
    if app.stopping.load(Ordering::SeqCst) {
        return Err(ApiError::Stopping);
    }
    let req: RunRequest = if body.is_empty() {
        RunRequest {
            params: BTreeMap::new(),
            status: None,
            note: None,
            keep_going: false,
        }
    } else {
        serde_json::from_slice(&body).map_err(ApiError::BadRequest)?
    };
    let label = crate::publish::revision::ReleaseRequest::new(req.status, req.note)
        .map_err(|e| ApiError::BadLabel(e.to_string()))?;
    if let Some(range) = period_range(&req.params)? {
        let mut runs = Vec::new();
        for period in range {
            let mut params = req.params.clone();
            params.insert("period".into(), period);
            check_params(&e.line, &params)?;
            runs.push(params);
        }
        let jobs = app.enqueue_range(&line, runs, label, req.keep_going).await;
        return Ok((StatusCode::ACCEPTED, scrubbed(json!(RangeJobs { jobs }))).into_response());
    }
    check_params(&e.line, &req.params)?;
    let job = app.enqueue(&line, req.params, "api", label).await;
    let mut r = (StatusCode::ACCEPTED, scrubbed(json!(job))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/runs/{}", job.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// The periods of a `period` parameter that is a range `FIRST..LAST`, if it is one.
fn period_range(params: &BTreeMap<String, String>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(value) = params.get("period") else {
        return Ok(None);
    };
    crate::line::params::range(crate::line::spec::ParamKind::Period, value)
        .transpose()
        .map_err(|e| ApiError::BadParams(e.to_string()))
}

/// The parameters bind to the line's.
fn check_params(
    line: &crate::line::load::Line,
    params: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let given: Vec<(String, String)> = params.clone().into_iter().collect();
    crate::plan::check::bind_params(line, Some(&given))
        .map(|_| ())
        .map_err(|err| ApiError::BadParams(err.to_string()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(in crate::serve) struct RunsQuery {
    /// Runs of this line only.
    line: Option<String>,
    /// Runs in this state only.
    #[param(inline, value_type = Option<JobStatus>)]
    status: Option<String>,
    /// At most this many runs (100 unless given; 1000 at most).
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/api/runs",
    tag = "runs",
    summary = "Runs, newest first",
    description = "Needs a token with the `read` role; a token limited to some lines sees their runs only.",
    security(("bearer" = [])),
    params(RunsQuery),
    responses(
        (status = 200, description = "Runs", body = inline(RunList)),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
    ),
)]
pub(in crate::serve) async fn get_runs(
    State(app): AppState,
    headers: HeaderMap,
    Q(q): Q<RunsQuery>,
) -> Result<Response, ApiError> {
    let caller = authorize(&app, &headers, "read", None)?;
    let jobs = app.jobs.lock().expect("jobs lock");
    let list: Vec<&Job> = jobs
        .values()
        .rev()
        .filter(|j| caller.may(&j.line))
        .filter(|j| q.line.as_ref().is_none_or(|l| *l == j.line))
        .filter(|j| {
            q.status
                .as_ref()
                .is_none_or(|s| *s == format!("{:?}", j.status).to_lowercase())
        })
        .take(q.limit.unwrap_or(100).min(1000))
        .collect();
    let answer = RunList { runs: list };
    Ok(scrubbed(json!(answer)).into_response())
}

/// The job `id` if the caller (a `read` token) may see it; otherwise the refusal.
fn readable_job(app: &App, headers: &HeaderMap, id: &str) -> Result<Job, ApiError> {
    let caller = authorize(app, headers, "read", None)?;
    let job = app.jobs.lock().expect("jobs lock").get(id).cloned();
    job.filter(|j| caller.may(&j.line))
        .ok_or_else(|| ApiError::NoRun(id.to_string()))
}

#[utoipa::path(
    get,
    path = "/api/runs/{id}",
    tag = "runs",
    summary = "A run and, when it has ended, its report",
    description = "Needs a token with the `read` role; another line's run, for a token limited to some lines, is not found.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The run", body = inline(RunAnswer)),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ),
)]
pub(in crate::serve) async fn get_run(
    State(app): AppState,
    headers: HeaderMap,
    P(id): P<String>,
) -> Result<Response, ApiError> {
    let job = readable_job(&app, &headers, &id)?;
    let mut report = match &job.run_id {
        Some(r) => app
            .get_bytes(&crate::store::layout::run_report(&job.line, r))
            .await
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok()),
        None => None,
    };
    // The line file by its name: where the daemon's files are is not for callers.
    if let Some(file) = report.as_mut().and_then(|r| r.get_mut("line_file")) {
        let name = file
            .as_str()
            .and_then(|f| FsPath::new(f).file_name())
            .map(|n| n.to_string_lossy().into_owned());
        *file = json!(name);
    }
    let answer = RunAnswer { run: job, report };
    Ok(scrubbed(json!(answer)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/runs/{id}/quality",
    tag = "runs",
    summary = "The run's quality report",
    description = "Needs a token with the `read` role. Not found until the run has written its quality report.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "Quality report", body = Object, content_type = "application/json"),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 500, response = Problem),
    ),
)]
pub(in crate::serve) async fn get_quality(
    State(app): AppState,
    headers: HeaderMap,
    P(id): P<String>,
) -> Result<Response, ApiError> {
    let job = readable_job(&app, &headers, &id)?;
    let Some(run_id) = &job.run_id else {
        return Err(ApiError::QualityNotYet(id));
    };
    match app
        .get_bytes(&crate::store::layout::quality_json(&job.line, run_id))
        .await
    {
        Some(b) => match serde_json::from_slice::<Value>(&b) {
            Ok(v) => Ok(scrubbed(v).into_response()),
            Err(_) => Err(ApiError::ReadQuality),
        },
        None => Err(ApiError::NoQuality(id)),
    }
}
