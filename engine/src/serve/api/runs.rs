//! Runs through the API: triggering one, listing them, one run's report and its quality
//! report.
//!
//! Triggering needs a `run` token for the line; reading runs a `read` token, and a token
//! limited to some lines sees their runs only (another line's run is "not found").

use std::collections::BTreeMap;
use std::path::Path as FsPath;
use std::sync::atomic::Ordering;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::serve::auth::{authorize, read_body, refuse};
use crate::serve::error::ApiError;
use crate::serve::jobs::Job;
use crate::serve::{App, AppState, scrubbed};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunRequest {
    #[serde(default)]
    params: BTreeMap<String, String>,
}

pub(in crate::serve) async fn post_run(
    State(app): AppState,
    UrlPath(line): UrlPath<String>,
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
        }
    } else {
        serde_json::from_slice(&body).map_err(ApiError::BadRequest)?
    };
    let given: Vec<(String, String)> = req.params.clone().into_iter().collect();
    if let Err(err) = crate::plan::check::bind_params(&e.line, Some(&given)) {
        return Err(ApiError::BadParams(err.to_string()));
    }
    let job = app.enqueue(&line, req.params, "api").await;
    let mut r = (StatusCode::ACCEPTED, scrubbed(json!(job))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/runs/{}", job.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

#[derive(Deserialize)]
pub(in crate::serve) struct RunsQuery {
    line: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
}

pub(in crate::serve) async fn get_runs(
    State(app): AppState,
    headers: HeaderMap,
    Query(q): Query<RunsQuery>,
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
    Ok(scrubbed(json!({ "runs": list })).into_response())
}

/// The job `id` if the caller (a `read` token) may see it; otherwise the refusal.
fn readable_job(app: &App, headers: &HeaderMap, id: &str) -> Result<Job, ApiError> {
    let caller = authorize(app, headers, "read", None)?;
    let job = app.jobs.lock().expect("jobs lock").get(id).cloned();
    job.filter(|j| caller.may(&j.line))
        .ok_or_else(|| ApiError::NoRun(id.to_string()))
}

pub(in crate::serve) async fn get_run(
    State(app): AppState,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
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
    Ok(scrubbed(json!({ "run": job, "report": report })).into_response())
}

pub(in crate::serve) async fn get_quality(
    State(app): AppState,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
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
