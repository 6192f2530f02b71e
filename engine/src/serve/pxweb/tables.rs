//! The table list and search (`/api/v2/tables`), one table (`/api/v2/tables/{id}`) and
//! the API's configuration (`/api/v2/config`).
//!
//! A table's periods and update time come from its line's releases without reading their
//! data: the periods with a current release of the dataset, and when the latest of their
//! pointers (`latest.json`) was written — the moment that release became current.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjPath;
use serde::Serialize;
use tracing::error;
use utoipa::ToSchema;

use crate::serve::error::{PxError, PxProblem};
use crate::serve::extract::PxPath;
use crate::serve::pxweb::{
    BASE, Lang, MAX_DATA_CELLS, Params, PxLink, TableRef, catalogue, find, json_answer, link,
};
use crate::serve::{App, AppState};

/// Tables per page unless `pageSize` says otherwise.
const DEFAULT_PAGE: u64 = 20;

/// The largest `pageSize`.
const MAX_PAGE: u64 = 1_000;

/// The longest search (`query`), and the most words in it.
const MAX_QUERY: usize = 200;
const MAX_WORDS: usize = 20;

/// A table (`Table` of PxWeb API 2.0).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(in crate::serve) struct PxTable {
    /// The published dataset's name.
    id: String,
    label: String,
    /// The line's description.
    description: Option<String>,
    sort_code: String,
    /// When its latest release became current (RFC 3339, UTC); null before any release.
    updated: Option<String>,
    first_period: Option<String>,
    last_period: Option<String>,
    /// `public`.
    category: &'static str,
    /// The labels of its variables: the period, the dimensions, the contents.
    variable_names: Vec<String>,
    /// Never: a table is served while its line is.
    discontinued: bool,
    /// Who answers for the figures (the line's owner).
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    /// The line.
    subject_code: String,
    /// `Monthly`, `Quarterly`, `Annual` or `Other`, as the line's periods are.
    time_unit: &'static str,
    /// Where it sits: under its line.
    paths: Vec<Vec<PxPathElement>>,
    links: Vec<PxLink>,
}

/// A step of a table's path.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct PxPathElement {
    id: String,
    label: String,
}

/// One table (`TableResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct PxTableResponse {
    #[serde(flatten)]
    table: PxTable,
    language: &'static str,
}

/// A page of tables (`TablesResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct PxTablesResponse {
    language: &'static str,
    tables: Vec<PxTable>,
    page: PxPageInfo,
    links: Vec<PxLink>,
}

/// Where a page is among the pages.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(in crate::serve) struct PxPageInfo {
    page_number: u64,
    page_size: u64,
    total_elements: u64,
    total_pages: u64,
    links: Vec<PxLink>,
}

/// What a table's releases say without reading them.
struct Released {
    /// The periods with a current release of the dataset, ascending.
    periods: Vec<String>,
    /// When the latest of them became current.
    updated: Option<DateTime<Utc>>,
}

/// The periods and update time of a table.
async fn released(app: &App, t: &TableRef<'_>) -> Released {
    let listed = crate::publish::releases::list_cached(&app.store, t.line, &app.manifests).await;
    let releases = listed.unwrap_or_else(|e| {
        error!("{e}");
        Vec::new()
    });
    let periods: Vec<String> = (releases.into_iter())
        .filter(|r| r.current && r.datasets.iter().any(|(d, _)| d == t.id))
        .map(|r| r.period)
        .collect();
    let mut updated = None;
    for p in &periods {
        let pointer = ObjPath::from(crate::store::layout::release_pointer(t.line, p));
        if let Ok(meta) = app.store.inner.head(&pointer).await {
            updated = updated.max(Some(meta.last_modified));
        }
    }
    Released { periods, updated }
}

/// A table as the list and `/tables/{id}` give it.
fn table_of(t: &TableRef<'_>, r: &Released, lang: Lang) -> PxTable {
    let q = format!("lang={}", lang.code());
    PxTable {
        id: t.id.to_string(),
        label: t.label(lang),
        description: t.description(lang),
        sort_code: t.id.to_string(),
        updated: (r.updated).map(|u| u.to_rfc3339_opts(SecondsFormat::Secs, true)),
        first_period: r.periods.first().cloned(),
        last_period: r.periods.last().cloned(),
        category: "public",
        variable_names: t.variable_labels(&t.dimensions(), lang),
        discontinued: false,
        source: t.entry.line.spec.owner.clone(),
        subject_code: t.line.to_string(),
        time_unit: t.time_unit(),
        paths: vec![vec![PxPathElement {
            id: t.line.to_string(),
            label: lang.text(&t.entry.line.spec.title.value),
        }]],
        links: vec![
            link("self", lang, format!("{BASE}/tables/{}?{q}", t.id)),
            link(
                "metadata",
                lang,
                format!("{BASE}/tables/{}/metadata?{q}", t.id),
            ),
            link(
                "data",
                lang,
                format!("{BASE}/tables/{}/data?{q}&outputFormat=json-stat2", t.id),
            ),
        ],
    }
}

/// What a search looks in: the ids, the line, titles, descriptions, variables and
/// columns in every language, lower case.
fn haystack(t: &TableRef<'_>) -> String {
    let spec = &t.entry.line.spec;
    let dims = t.dimensions();
    let mut words = vec![t.id.to_string(), t.line.to_string()];
    words.extend(dims.iter().cloned());
    for lang in Lang::ALL {
        words.push(lang.text(&spec.title.value));
        words.extend(spec.description.as_ref().map(|d| lang.text(d)));
        words.extend(t.variable_labels(&dims, lang));
        for (name, c) in &t.spec.columns {
            words.push(name.value.clone());
            words.extend(c.description.as_ref().map(|d| lang.text(d)));
        }
    }
    words.join(" ").to_lowercase()
}

/// The words of `query`, lower case; every one must occur in a table found.
fn search_words(query: Option<&str>) -> Result<Vec<String>, PxError> {
    let query = query.unwrap_or_default();
    if query.chars().count() > MAX_QUERY {
        return Err(PxError::BadRequest(format!(
            "`query` is longer than {MAX_QUERY} characters"
        )));
    }
    let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
    if words.len() > MAX_WORDS {
        return Err(PxError::BadRequest(format!(
            "`query` has more than {MAX_WORDS} words"
        )));
    }
    Ok(words)
}

/// The oldest update time `pastDays` lets through.
fn updated_since(past_days: Option<u64>) -> Result<Option<DateTime<Utc>>, PxError> {
    let Some(days) = past_days else {
        return Ok(None);
    };
    let bad = || PxError::BadRequest(format!("`pastDays` is a whole number from 1, not {days}"));
    if days < 1 {
        return Err(bad());
    }
    let delta = i64::try_from(days)
        .ok()
        .and_then(chrono::TimeDelta::try_days)
        .ok_or_else(bad)?;
    Ok(Utc::now().checked_sub_signed(delta))
}

/// The page asked: its number (from 1) and size (1 to [`MAX_PAGE`]).
fn paging(params: &Params) -> Result<(u64, u64), PxError> {
    let number = params.number("pageNumber")?.unwrap_or(1);
    let size = params.number("pageSize")?.unwrap_or(DEFAULT_PAGE);
    if number < 1 {
        return Err(PxError::BadRequest("`pageNumber` starts from 1".into()));
    }
    if !(1..=MAX_PAGE).contains(&size) {
        return Err(PxError::BadRequest(format!(
            "`pageSize` is from 1 to {MAX_PAGE}"
        )));
    }
    Ok((number, size))
}

#[utoipa::path(
    get,
    path = "/api/v2/tables",
    tag = "pxweb",
    summary = "The tables: every published dataset, searched and paged",
    params(
        ("lang" = Option<String>, Query, description = "fi (the default), sv or en"),
        ("query" = Option<String>, Query, max_length = 200,
            description = "Words that must all occur in the table's id, line, title, description or variables"),
        ("pastDays" = Option<u32>, Query, description = "Only tables whose latest release became current in the last n days"),
        ("includeDiscontinued" = Option<bool>, Query, description = "Accepted; no table is discontinued"),
        ("pageNumber" = Option<u32>, Query, description = "From 1 (the default)"),
        ("pageSize" = Option<u32>, Query, description = "1 to 1000 (20 by default)"),
    ),
    responses(
        (status = 200, description = "A page of tables", body = PxTablesResponse),
        (status = 400, response = PxProblem),
    ),
)]
pub(in crate::serve) async fn get_tables(
    State(app): AppState,
    RawQuery(query): RawQuery,
) -> Result<Response, PxError> {
    let params = Params::parse(
        query.as_deref(),
        &[
            "lang",
            "query",
            "pastDays",
            "includeDiscontinued",
            "pageNumber",
            "pageSize",
        ],
    )?;
    let lang = Lang::parse(params.one("lang")?)?;
    let words = search_words(params.one("query")?)?;
    let since = updated_since(params.number("pastDays")?)?;
    params.flag("includeDiscontinued")?;
    let (number, size) = paging(&params)?;
    let mut tables = Vec::new();
    for t in catalogue(&app) {
        if !words.is_empty() {
            let hay = haystack(&t);
            if !words.iter().all(|w| hay.contains(w.as_str())) {
                continue;
            }
        }
        let r = released(&app, &t).await;
        if since.is_some_and(|s| r.updated.is_none_or(|u| u < s)) {
            continue;
        }
        tables.push(table_of(&t, &r, lang));
    }
    let total = tables.len() as u64;
    let pages = total.div_ceil(size).max(1);
    let skip = usize::try_from((number - 1).saturating_mul(size)).unwrap_or(usize::MAX);
    let shown: Vec<PxTable> = tables.into_iter().skip(skip).take(size as usize).collect();
    let href = |n: u64| page_href(&params, lang, n, size);
    let mut links = Vec::new();
    if number > 1 {
        links.push(link("previous", lang, href((number - 1).min(pages))));
    }
    if number < pages {
        links.push(link("next", lang, href(number + 1)));
    }
    links.push(link("last", lang, href(pages)));
    json_answer(&PxTablesResponse {
        language: lang.code(),
        tables: shown,
        page: PxPageInfo {
            page_number: number,
            page_size: size,
            total_elements: total,
            total_pages: pages,
            links,
        },
        links: vec![link("self", lang, href(number))],
    })
}

/// The address of page `n` of the same search.
fn page_href(params: &Params, lang: Lang, n: u64, size: u64) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("lang", lang.code());
    for name in ["query", "pastDays"] {
        if let Some(v) = params.one(name).ok().flatten() {
            q.append_pair(name, v);
        }
    }
    q.append_pair("pageNumber", &n.to_string());
    q.append_pair("pageSize", &size.to_string());
    format!("{BASE}/tables?{}", q.finish())
}

#[utoipa::path(
    get,
    path = "/api/v2/tables/{id}",
    tag = "pxweb",
    summary = "One table",
    params(
        ("id" = String, Path, description = "The table (a published dataset's name)"),
        ("lang" = Option<String>, Query, description = "fi (the default), sv or en"),
    ),
    responses(
        (status = 200, description = "The table", body = PxTableResponse),
        (status = 400, response = PxProblem),
        (status = 404, response = PxProblem),
    ),
)]
pub(in crate::serve) async fn get_table(
    State(app): AppState,
    PxPath(id): PxPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, PxError> {
    let params = Params::parse(query.as_deref(), &["lang"])?;
    let lang = Lang::parse(params.one("lang")?)?;
    let t = find(&app, &id)?;
    let r = released(&app, &t).await;
    json_answer(&PxTableResponse {
        table: table_of(&t, &r, lang),
        language: lang.code(),
    })
}

/// The API's configuration (`ConfigResponse`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(in crate::serve) struct PxConfig {
    /// The PxWeb API version served.
    api_version: &'static str,
    /// Valtava's version.
    app_version: &'static str,
    languages: Vec<PxLanguage>,
    default_language: &'static str,
    /// The most cells one data request may ask for (403 beyond).
    max_data_cells: usize,
    /// The pace clients keep to: calls per `timeWindow` seconds. The daemon counts no
    /// calls per client; beyond its requests at once it answers 503, which this pace
    /// stays well within.
    max_calls_per_time_window: u32,
    time_window: u32,
    license: &'static str,
    default_data_format: &'static str,
    data_formats: Vec<&'static str>,
}

/// A language of the labels.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct PxLanguage {
    id: &'static str,
    label: &'static str,
}

#[utoipa::path(
    get,
    path = "/api/v2/config",
    tag = "pxweb",
    summary = "The PxWeb API's configuration",
    params(("lang" = Option<String>, Query, description = "fi (the default), sv or en")),
    responses(
        (status = 200, description = "The configuration", body = PxConfig),
        (status = 400, response = PxProblem),
    ),
)]
pub(in crate::serve) async fn get_config(RawQuery(query): RawQuery) -> Result<Response, PxError> {
    let params = Params::parse(query.as_deref(), &["lang"])?;
    Lang::parse(params.one("lang")?)?;
    json_answer(&PxConfig {
        api_version: "2.0.0",
        app_version: env!("CARGO_PKG_VERSION"),
        languages: vec![
            PxLanguage {
                id: "fi",
                label: "suomi",
            },
            PxLanguage {
                id: "sv",
                label: "svenska",
            },
            PxLanguage {
                id: "en",
                label: "English",
            },
        ],
        default_language: "fi",
        max_data_cells: MAX_DATA_CELLS,
        max_calls_per_time_window: 1_000,
        time_window: 10,
        license: "The terms of each table's source (its owner) apply",
        default_data_format: "json-stat2",
        data_formats: vec!["json-stat2", "csv", "xlsx", "px"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_and_pages_are_bounded() {
        assert_eq!(
            search_words(Some("  Ensihoito  KUUKAUSI ")).unwrap(),
            ["ensihoito", "kuukausi"]
        );
        assert!(search_words(Some("x".repeat(MAX_QUERY + 1).as_str())).is_err());
        assert!(search_words(Some("a ".repeat(MAX_WORDS + 1).as_str())).is_err());
        assert!(updated_since(Some(0)).is_err());
        assert!(updated_since(Some(999_999_999)).is_ok());
        let s = updated_since(Some(2)).unwrap().unwrap();
        assert!(Utc::now() - s >= chrono::TimeDelta::days(2));
        let p = |q: &str| paging(&Params::parse(Some(q), &["pageNumber", "pageSize"]).unwrap());
        assert_eq!(p("").unwrap(), (1, DEFAULT_PAGE));
        assert_eq!(p("pageNumber=3&pageSize=5").unwrap(), (3, 5));
        assert!(p("pageNumber=0").is_err());
        assert!(p("pageSize=0").is_err());
        assert!(p("pageSize=1001").is_err());
        assert!(p("pageSize=-1").is_err());
        assert!(p("pageSize=99999999999999999999").is_err());
    }
}
