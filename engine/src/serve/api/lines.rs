//! The lines the daemon serves, their releases, and the datasets they publish.
//!
//! None of these asks for a token: they describe the lines (title, owner, schedule,
//! parameters, inboxes, datasets) and name their releases, and carry no rows.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::error;
use utoipa::ToSchema;

use crate::line::load::Line;
use crate::publish::releases::Release;
use crate::serve::error::{ApiError, Problem, ServeError};
use crate::serve::extract::P;
use crate::serve::{App, AppState, LineEntry};

/// A text of a line (its title or description) in Finnish, or in Finnish, Swedish and
/// English: `sv` and `en` are absent when the line gives Finnish only, and null when it
/// gives languages but not that one.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Text)]
pub(in crate::serve) struct LineText {
    /// Suomeksi.
    fi: String,
    /// På svenska.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    sv: Option<Option<String>>,
    /// In English.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    en: Option<Option<String>>,
}

/// A line's text as the API answers it.
pub(super) fn text_of(t: &crate::line::spec::Text) -> LineText {
    match t {
        crate::line::spec::Text::Plain(s) => LineText {
            fi: s.clone(),
            sv: None,
            en: None,
        },
        crate::line::spec::Text::Languages(l) => LineText {
            fi: l.fi.clone(),
            sv: Some(l.sv.clone()),
            en: Some(l.en.clone()),
        },
    }
}

/// A line the daemon serves: what it is, when it runs, what it takes and what it publishes.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Line)]
pub(in crate::serve) struct LineInfo {
    /// The line's name.
    line: String,
    /// Its title.
    title: LineText,
    /// What it produces and for whom.
    description: Option<LineText>,
    /// The organisation that owns it.
    owner: Option<String>,
    /// When the daemon runs it: a five-field cron expression, Finnish time.
    schedule: Option<String>,
    /// The next run its schedule starts.
    #[schema(format = DateTime)]
    next_scheduled_run: Option<String>,
    /// Its parameters by name.
    params: BTreeMap<String, LineParam>,
    /// Where its sources read files, `{period}` standing for the period (e.g.
    /// `inbox/ensihoito/{period}/*.csv`).
    inboxes: Vec<String>,
    /// The datasets it publishes.
    datasets: Vec<String>,
    /// The published datasets its release sources read.
    reads: Vec<String>,
    /// The lines that publish them: the daemon runs this line after each of them releases
    /// a period.
    after: Vec<String>,
}

/// A parameter of a line.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct LineParam {
    /// The kind of value, from the line's `params` (`kind:`).
    kind: String,
}

/// The lines the daemon serves.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct LineList {
    lines: Vec<LineInfo>,
}

/// A line's releases.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct ReleaseList {
    /// Every release of the line, by period and run.
    releases: Vec<Release>,
}

/// A dataset a line publishes, with the periods it has a current release of.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Dataset)]
pub(in crate::serve) struct DatasetEntry {
    /// The dataset's name (its id in the indicator API).
    dataset: String,
    /// The line that publishes it.
    line: String,
    /// The line's title.
    title: LineText,
    /// The periods with a current release.
    periods: Vec<String>,
    /// Its dimensions besides the period, as its planned publish step gives them.
    dimensions: Vec<String>,
    /// The dimension that is an area, if any.
    area: Option<String>,
    /// Its measures.
    measures: Vec<String>,
    /// Its data in the indicator API.
    href: String,
}

/// The published datasets.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct DatasetList {
    datasets: Vec<DatasetEntry>,
}

pub(super) fn publish_steps(line: &Line) -> Vec<(&str, &crate::line::spec::PublishSpec)> {
    line.spec
        .steps
        .iter()
        .filter_map(|(n, s)| s.publish.as_ref().map(|p| (n.value.as_str(), p)))
        .collect()
}

fn line_info(all: &BTreeMap<String, LineEntry>, name: &str, e: &LineEntry) -> LineInfo {
    let s = &e.line.spec;
    let after = (all.iter())
        .filter(|(n, other)| *n != name && other.datasets.keys().any(|d| e.reads.contains(d)))
        .map(|(n, _)| n.clone())
        .collect();
    let next = e
        .schedule
        .as_ref()
        .and_then(|sc| sc.next_utc(chrono::Utc::now()))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let params: BTreeMap<String, LineParam> = s
        .params
        .iter()
        .map(|(k, p)| {
            (
                k.value.clone(),
                LineParam {
                    // As the line file writes it (`month`), not the placed value's debug form.
                    kind: serde_json::to_value(p.kind.value)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                },
            )
        })
        .collect();
    LineInfo {
        line: name.to_string(),
        title: text_of(&s.title.value),
        description: s.description.as_ref().map(text_of),
        owner: s.owner.clone(),
        schedule: s.schedule.as_ref().map(|x| x.value.clone()),
        next_scheduled_run: next,
        params,
        inboxes: e.inboxes.iter().map(|i| i.template.clone()).collect(),
        datasets: publish_steps(&e.line)
            .iter()
            .map(|(_, p)| p.dataset.value.clone())
            .collect(),
        reads: e.reads.iter().cloned().collect(),
        after,
    }
}

#[utoipa::path(
    get,
    path = "/api/lines",
    tag = "lines",
    summary = "The lines the daemon runs",
    responses(
        (status = 200, description = "Lines", body = inline(LineList)),
    ),
)]
pub(in crate::serve) async fn get_lines(State(app): AppState) -> Response {
    let lines: Vec<LineInfo> = app
        .lines
        .iter()
        .map(|(n, e)| line_info(&app.lines, n, e))
        .collect();
    axum::Json(LineList { lines }).into_response()
}

#[utoipa::path(
    get,
    path = "/api/lines/{line}",
    tag = "lines",
    summary = "One line",
    params(("line" = String, Path, description = "The line's name")),
    responses(
        (status = 200, description = "The line", body = LineInfo),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
    ),
)]
pub(in crate::serve) async fn get_line(
    State(app): AppState,
    P(line): P<String>,
) -> Result<Response, ApiError> {
    match app.lines.get(&line) {
        Some(e) => Ok(axum::Json(line_info(&app.lines, &line, e)).into_response()),
        None => Err(ApiError::NoLine(line)),
    }
}

#[utoipa::path(
    get,
    path = "/api/lines/{line}/releases",
    tag = "lines",
    summary = "Releases of the line by period",
    params(("line" = String, Path, description = "The line's name")),
    responses(
        (status = 200, description = "Releases", body = inline(ReleaseList)),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 500, response = Problem),
    ),
)]
pub(in crate::serve) async fn get_releases(
    State(app): AppState,
    P(line): P<String>,
) -> Result<Response, ApiError> {
    if !app.lines.contains_key(&line) {
        return Err(ApiError::NoLine(line));
    }
    match crate::publish::releases::list_cached(&app.store, &line, &app.manifests).await {
        Ok(releases) => Ok(axum::Json(ReleaseList { releases }).into_response()),
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

#[utoipa::path(
    get,
    path = "/api/datasets",
    tag = "indicators",
    summary = "Published datasets and their current periods",
    responses(
        (status = 200, description = "Datasets", body = inline(DatasetList)),
    ),
)]
pub(in crate::serve) async fn get_datasets(State(app): AppState) -> Response {
    let mut datasets = Vec::new();
    for (name, e) in &app.lines {
        let periods = current_releases(&app, name).await.unwrap_or_default();
        for (_, p) in publish_steps(&e.line) {
            let shape = e
                .datasets
                .get(&p.dataset.value)
                .cloned()
                .unwrap_or_default();
            datasets.push(DatasetEntry {
                dimensions: shape.dimensions,
                area: shape.area,
                measures: shape.measures,
                dataset: p.dataset.value.clone(),
                line: name.clone(),
                title: text_of(&e.line.spec.title.value),
                periods: periods.iter().map(|(p, _)| p.clone()).collect(),
                href: format!("/api/v1/datasets/{}", p.dataset.value),
            });
        }
    }
    axum::Json(DatasetList { datasets }).into_response()
}

/// `/api/v1/datasets`, the indicator API's list: the same answer as `/api/datasets`.
#[utoipa::path(
    get,
    path = "/api/v1/datasets",
    tag = "indicators",
    summary = "Same as /api/datasets",
    responses(
        (status = 200, description = "Datasets", body = inline(DatasetList)),
    ),
)]
pub(in crate::serve) async fn get_datasets_v1(state: AppState) -> Response {
    get_datasets(state).await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::line::spec::{LocalizedText, Text};

    #[test]
    fn texts_answer_as_before() {
        let plain = text_of(&Text::Plain("Otsikko".into()));
        assert_eq!(
            json!(plain).to_string(),
            json!({ "fi": "Otsikko" }).to_string()
        );
        let some = text_of(&Text::Languages(LocalizedText {
            fi: "Otsikko".into(),
            sv: None,
            en: Some("Title".into()),
        }));
        assert_eq!(
            json!(some).to_string(),
            json!({ "fi": "Otsikko", "sv": null, "en": "Title" }).to_string()
        );
    }
}
