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
use crate::serve::jobs::Job;
use crate::serve::{App, AppState, problem, scrubbed};

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
) -> Response {
    if let Err(r) = authorize(&app, &headers, "run", Some(&line)) {
        return refuse(&headers, body, *r).await;
    }
    /// A run request is a few parameters.
    const MAX_RUN_REQUEST: usize = 64 << 10;
    let body = match read_body(body, MAX_RUN_REQUEST).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(e) = app.lines.get(&line) else {
        return problem(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no line `{line}`"),
        );
    };
    if app.stopping.load(Ordering::SeqCst) {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the daemon is stopping",
        );
    }
    let req: RunRequest = if body.is_empty() {
        RunRequest {
            params: BTreeMap::new(),
        }
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(err) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "bad-request",
                    format!("expected {{\"params\": {{\"name\": \"value\"}}}}: {err}"),
                );
            }
        }
    };
    let given: Vec<(String, String)> = req.params.clone().into_iter().collect();
    if let Err(err) = crate::plan::check::bind_params(&e.line, Some(&given)) {
        return problem(StatusCode::BAD_REQUEST, "bad-params", err);
    }
    let job = app.enqueue(&line, req.params, "api").await;
    let mut r = (StatusCode::ACCEPTED, scrubbed(json!(job))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/runs/{}", job.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
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
) -> Response {
    let caller = match authorize(&app, &headers, "read", None) {
        Ok(c) => c,
        Err(r) => return *r,
    };
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
    scrubbed(json!({ "runs": list })).into_response()
}

/// The job `id` if the caller (a `read` token) may see it; otherwise the answer.
fn readable_job(app: &App, headers: &HeaderMap, id: &str) -> Result<Job, Box<Response>> {
    let caller = authorize(app, headers, "read", None)?;
    let job = app.jobs.lock().expect("jobs lock").get(id).cloned();
    job.filter(|j| caller.may(&j.line)).ok_or_else(|| {
        Box::new(problem(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no run `{id}`"),
        ))
    })
}

pub(in crate::serve) async fn get_run(
    State(app): AppState,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let job = match readable_job(&app, &headers, &id) {
        Ok(j) => j,
        Err(r) => return *r,
    };
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
    scrubbed(json!({ "run": job, "report": report })).into_response()
}

pub(in crate::serve) async fn get_quality(
    State(app): AppState,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let job = match readable_job(&app, &headers, &id) {
        Ok(j) => j,
        Err(r) => return *r,
    };
    let Some(run_id) = &job.run_id else {
        return problem(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("run `{id}` has no quality report yet"),
        );
    };
    match app
        .get_bytes(&crate::store::layout::quality_json(&job.line, run_id))
        .await
    {
        Some(b) => match serde_json::from_slice::<Value>(&b) {
            Ok(v) => scrubbed(v).into_response(),
            Err(_) => problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store",
                "the quality report cannot be read",
            ),
        },
        None => problem(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("run `{id}` wrote no quality report"),
        ),
    }
}
