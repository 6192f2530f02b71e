//! The lines the daemon serves, their releases, and the datasets they publish.
//!
//! None of these asks for a token: they describe the lines (title, owner, schedule,
//! parameters, inboxes, datasets) and name their releases, and carry no rows.

use std::collections::BTreeMap;

use axum::extract::{Path as UrlPath, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::error;

use crate::line::load::Line;
use crate::serve::error::{ApiError, ServeError};
use crate::serve::{App, AppState, LineEntry};

fn text_of(t: &crate::line::spec::Text) -> Value {
    match t {
        crate::line::spec::Text::Plain(s) => json!({ "fi": s }),
        crate::line::spec::Text::Languages(l) => json!({ "fi": l.fi, "sv": l.sv, "en": l.en }),
    }
}

pub(super) fn publish_steps(line: &Line) -> Vec<(&str, &crate::line::spec::PublishSpec)> {
    line.spec
        .steps
        .iter()
        .filter_map(|(n, s)| s.publish.as_ref().map(|p| (n.value.as_str(), p)))
        .collect()
}

fn line_json(name: &str, e: &LineEntry) -> Value {
    let s = &e.line.spec;
    let next = e
        .schedule
        .as_ref()
        .and_then(|sc| sc.next_utc(chrono::Utc::now()))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let params: BTreeMap<&str, Value> = s
        .params
        .iter()
        .map(|(k, p)| {
            (
                k.value.as_str(),
                json!({ "kind": format!("{:?}", p.kind).to_lowercase() }),
            )
        })
        .collect();
    json!({
        "line": name,
        "title": text_of(&s.title.value),
        "description": s.description.as_ref().map(text_of),
        "owner": s.owner,
        "schedule": s.schedule.as_ref().map(|x| x.value.clone()),
        "next_scheduled_run": next,
        "params": params,
        "inboxes": e.inboxes.iter().map(|i| i.template.clone()).collect::<Vec<_>>(),
        "datasets": publish_steps(&e.line).iter().map(|(_, p)| p.dataset.value.clone()).collect::<Vec<_>>(),
    })
}

pub(in crate::serve) async fn get_lines(State(app): AppState) -> Response {
    let lines: Vec<Value> = app.lines.iter().map(|(n, e)| line_json(n, e)).collect();
    axum::Json(json!({ "lines": lines })).into_response()
}

pub(in crate::serve) async fn get_line(
    State(app): AppState,
    UrlPath(line): UrlPath<String>,
) -> Result<Response, ApiError> {
    match app.lines.get(&line) {
        Some(e) => Ok(axum::Json(line_json(&line, e)).into_response()),
        None => Err(ApiError::NoLine(line)),
    }
}

pub(in crate::serve) async fn get_releases(
    State(app): AppState,
    UrlPath(line): UrlPath<String>,
) -> Result<Response, ApiError> {
    if !app.lines.contains_key(&line) {
        return Err(ApiError::NoLine(line));
    }
    match crate::publish::releases::list_cached(&app.store, &line, &app.manifests).await {
        Ok(r) => Ok(axum::Json(json!({ "releases": r })).into_response()),
        Err(e) => {
            error!("{e}");
            Err(ApiError::ReadReleases)
        }
    }
}

/// The current release of each period of a line: (period, run id).
pub(super) async fn current_releases(
    app: &App,
    line: &str,
) -> Result<Vec<(String, String)>, ServeError> {
    Ok(
        crate::publish::releases::list_cached(&app.store, line, &app.manifests)
            .await
            .map_err(ServeError::Releases)?
            .into_iter()
            .filter(|r| r.current)
            .map(|r| (r.period, r.run_id))
            .collect(),
    )
}

pub(in crate::serve) async fn get_datasets(State(app): AppState) -> Response {
    let mut out = Vec::new();
    for (name, e) in &app.lines {
        let periods = current_releases(&app, name).await.unwrap_or_default();
        for (_, p) in publish_steps(&e.line) {
            out.push(json!({
                "dataset": p.dataset.value,
                "line": name,
                "title": text_of(&e.line.spec.title.value),
                "periods": periods.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
                "href": format!("/api/v1/datasets/{}", p.dataset.value),
            }));
        }
    }
    axum::Json(json!({ "datasets": out })).into_response()
}
