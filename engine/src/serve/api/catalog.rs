//! The catalog of the lines the daemon serves (`/api/catalog`; the page `/catalog` reads it),
//! with a search, and for each published dataset its column lineage
//! (`/api/datasets/{id}/lineage`) and the quality summary of the run behind its newest
//! release (`/api/datasets/{id}/quality`, in `quality.rs`).
//!
//! The catalog is the one `valtava catalog` writes (`artefacts::catalog`), built once per
//! line when the daemon loads it (`LineEntry::catalog`): no request reads a line file or a
//! code set. The search is a case-insensitive substring over the lines' names, titles and
//! descriptions, owners, legal bases, code sets, datasets and columns, and each line found
//! says what matched. None of these asks for a token, so every answer passes
//! `serve::scrubbed`: a source's location may be an absolute path, and where the daemon's
//! folders are is not for callers.

pub(in crate::serve) mod quality;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::artefacts::catalog as cat;
use crate::line::spec::Text;
use crate::serve::api::lines::{LineText, text_of};
use crate::serve::error::{ApiError, Problem};
use crate::serve::extract::{P, Q};
use crate::serve::{App, AppState, LineEntry, scrubbed};

/// The longest search, in characters: a search is a few words, and a longer one is refused
/// rather than compared with every text of every line.
const MAX_QUERY: usize = 200;

/// The catalog of the lines the daemon serves, or the lines a search matched.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct CatalogAnswer {
    /// The search (`q`, trimmed); null for the whole catalog.
    query: Option<String>,
    /// The lines by name: all of them, or those in which the search matched something.
    lines: Vec<CatalogLine>,
}

/// A line in the catalog: what it produces, who owns it and on what legal basis, the code
/// sets it reads and the datasets it publishes.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct CatalogLine {
    /// The line's name.
    line: String,
    /// Its title.
    title: LineText,
    /// What it produces and for whom.
    description: Option<LineText>,
    /// Why the data are collected.
    purpose: Option<LineText>,
    /// The organisation that owns it.
    owner: Option<String>,
    /// Whom to ask about it.
    contact: Option<String>,
    /// The law it collects and publishes the data under.
    legal_basis: Option<String>,
    /// When the daemon runs it: a five-field cron expression, Finnish time.
    schedule: Option<String>,
    /// The code sets (classifications) it reads.
    codesets: Vec<CatalogCodeset>,
    /// The datasets it publishes.
    datasets: Vec<CatalogDataset>,
    /// What the search matched in the line; empty without a search.
    matches: Vec<CatalogMatch>,
}

/// A code set a line reads, as it was loaded.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct CatalogCodeset {
    /// Its name in the line.
    name: String,
    /// What it classifies.
    description: Option<String>,
    /// Its version, when the file gives one.
    version: Option<String>,
    /// Its rows.
    rows: usize,
    /// The SHA-256 of its file.
    sha256: String,
}

/// A dataset a line publishes: its dimensions, disclosure control, columns and links.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct CatalogDataset {
    /// The dataset's name (its id in the indicator API).
    dataset: String,
    /// Its dimensions, in their order in the table.
    dimensions: Vec<String>,
    /// Its small-cell suppression, described; null when it has none.
    disclosure: Option<String>,
    /// Its columns.
    columns: Vec<CatalogColumn>,
    /// Where its data, lineage and quality are.
    links: DatasetLinks,
}

/// A column of a published dataset.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct CatalogColumn {
    /// The column's name.
    name: String,
    /// Its type.
    #[serde(rename = "type")]
    kind: String,
    /// Whether it is a dimension, a measure or the cell status.
    role: ColumnRole,
    /// What it holds.
    description: Option<LineText>,
    /// Its unit (`lkm`, `%`, …).
    unit: Option<String>,
}

/// What a column of a published table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(in crate::serve) enum ColumnRole {
    /// A dimension: its codes classify the cells.
    Dimension,
    /// A measure: a figure of each cell.
    Measure,
    /// The cell's status (`suppressed` for a cell hidden by disclosure control).
    Status,
}

/// Where a dataset's data, lineage and quality are.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct DatasetLinks {
    /// Its data as JSON-stat 2.0 or CSV: `/api/v1/datasets/{id}`.
    data: String,
    /// Its table in the PxWeb API: `/api/v2/tables/{id}`.
    table: String,
    /// The reporting page on it: `/?dataset={id}`.
    page: String,
    /// Its column lineage: `/api/datasets/{id}/lineage`.
    lineage: String,
    /// The quality summary of the run behind its newest release:
    /// `/api/datasets/{id}/quality`.
    quality: String,
}

/// Something the search matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub(in crate::serve) struct CatalogMatch {
    /// Where it matched.
    field: MatchField,
    /// The whole text it matched in (a name, a title, an owner, a description, …).
    text: String,
    /// The dataset, for a match in a dataset or one of its columns.
    dataset: Option<String>,
}

/// Where a search matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(in crate::serve) enum MatchField {
    /// The line's name.
    Line,
    /// Its title, in any language.
    Title,
    /// Its description or purpose, in any language.
    Description,
    /// Its owner.
    Owner,
    /// Its legal basis.
    LegalBasis,
    /// The name or description of a code set it reads.
    Codeset,
    /// The name of a dataset it publishes.
    Dataset,
    /// The name or description of a column of a dataset it publishes.
    Column,
}

/// The catalog's query string.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(in crate::serve) struct CatalogQuery {
    /// Text to look for, ignoring case, in the lines' names, titles and descriptions,
    /// owners, legal bases, code sets, datasets and columns (at most 200 characters).
    q: Option<String>,
}

/// The search of a request: `q` trimmed, none when empty; longer than [`MAX_QUERY`]
/// characters is refused.
fn search_text(q: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(q) = q.map(str::trim).filter(|q| !q.is_empty()) else {
        return Ok(None);
    };
    if q.chars().count() > MAX_QUERY {
        return Err(ApiError::BadQuery { max: MAX_QUERY });
    }
    Ok(Some(q.to_string()))
}

/// A text in each language it is given in.
fn languages(t: &Text) -> Vec<&str> {
    match t {
        Text::Plain(s) => vec![s.as_str()],
        Text::Languages(l) => [Some(l.fi.as_str()), l.sv.as_deref(), l.en.as_deref()]
            .into_iter()
            .flatten()
            .collect(),
    }
}

/// Everything in a line's catalog entry that contains `needle` (in lower case), ignoring
/// case; each text once.
fn matches(l: &cat::LineEntry, needle: &str) -> Vec<CatalogMatch> {
    let mut out: Vec<CatalogMatch> = Vec::new();
    let mut check = |field: MatchField, text: &str, dataset: Option<&str>| {
        let found = CatalogMatch {
            field,
            text: text.to_string(),
            dataset: dataset.map(str::to_string),
        };
        if text.to_lowercase().contains(needle) && !out.contains(&found) {
            out.push(found);
        }
    };
    check(MatchField::Line, l.line.as_str(), None);
    for t in languages(&l.title) {
        check(MatchField::Title, t, None);
    }
    for t in l.description.iter().chain(&l.purpose).flat_map(languages) {
        check(MatchField::Description, t, None);
    }
    for (field, text) in [
        (MatchField::Owner, &l.owner),
        (MatchField::LegalBasis, &l.legal_basis),
    ] {
        if let Some(t) = text {
            check(field, t.as_str(), None);
        }
    }
    for c in &l.codesets {
        for t in std::iter::once(&c.name).chain(&c.description) {
            check(MatchField::Codeset, t.as_str(), None);
        }
    }
    for d in &l.datasets {
        let id = Some(d.dataset.as_str());
        check(MatchField::Dataset, d.dataset.as_str(), id);
        for c in &d.columns {
            check(MatchField::Column, c.name.as_str(), id);
            for t in c.description.iter().flat_map(languages) {
                check(MatchField::Column, t, id);
            }
        }
    }
    out
}

/// The role of a published column.
fn role_of(d: &cat::DatasetEntry, column: &str) -> ColumnRole {
    if column == crate::plan::STATUS_COLUMN
        || column.starts_with(&format!("{}_", crate::plan::STATUS_COLUMN))
    {
        ColumnRole::Status
    } else if d.dimensions.iter().any(|x| x == column) {
        ColumnRole::Dimension
    } else {
        ColumnRole::Measure
    }
}

/// A dataset in the catalog, with its links.
fn catalog_dataset(d: &cat::DatasetEntry) -> CatalogDataset {
    let id = &d.dataset;
    CatalogDataset {
        dataset: id.clone(),
        dimensions: d.dimensions.clone(),
        disclosure: d.disclosure.clone(),
        columns: (d.columns.iter())
            .map(|c| CatalogColumn {
                name: c.name.clone(),
                kind: c.r#type.clone(),
                role: role_of(d, &c.name),
                description: c.description.as_ref().map(text_of),
                unit: c.unit.clone(),
            })
            .collect(),
        links: DatasetLinks {
            data: format!("/api/v1/datasets/{id}"),
            table: format!("/api/v2/tables/{id}"),
            page: format!("/?dataset={id}"),
            lineage: format!("/api/datasets/{id}/lineage"),
            quality: format!("/api/datasets/{id}/quality"),
        },
    }
}

/// A line in the catalog, with what the search matched in it.
fn catalog_line(name: &str, c: &cat::LineEntry, found: Vec<CatalogMatch>) -> CatalogLine {
    CatalogLine {
        line: name.to_string(),
        title: text_of(&c.title),
        description: c.description.as_ref().map(text_of),
        purpose: c.purpose.as_ref().map(text_of),
        owner: c.owner.clone(),
        contact: c.contact.clone(),
        legal_basis: c.legal_basis.clone(),
        schedule: c.schedule.clone(),
        codesets: (c.codesets.iter())
            .map(|s| CatalogCodeset {
                name: s.name.clone(),
                description: s.description.clone(),
                version: s.version.clone(),
                rows: s.rows,
                sha256: s.sha256.clone(),
            })
            .collect(),
        datasets: c.datasets.iter().map(catalog_dataset).collect(),
        matches: found,
    }
}

/// The catalog of `lines`, or the lines in which `query` matched something.
fn search<'a>(
    lines: impl IntoIterator<Item = (&'a str, &'a cat::LineEntry)>,
    query: Option<&str>,
) -> Vec<CatalogLine> {
    let needle = query.map(str::to_lowercase);
    lines
        .into_iter()
        .filter_map(|(name, c)| match &needle {
            None => Some(catalog_line(name, c, Vec::new())),
            Some(n) => {
                let found = matches(c, n);
                (!found.is_empty()).then(|| catalog_line(name, c, found))
            }
        })
        .collect()
}

#[utoipa::path(
    get,
    path = "/api/catalog",
    tag = "catalog",
    summary = "The catalog of the lines, or a search in it",
    description = "Each line with its owner, legal basis, code sets and datasets (their columns and links to their data, lineage and quality). With `q`, only the lines in which `q` occurs (ignoring case) in a name, title, description, owner, legal basis, code set, dataset or column, each saying what matched.",
    params(CatalogQuery),
    responses(
        (status = 200, description = "The catalog", body = CatalogAnswer),
        (status = 400, response = Problem),
    ),
)]
pub(in crate::serve) async fn get_catalog(
    State(app): AppState,
    Q(q): Q<CatalogQuery>,
) -> Result<Response, ApiError> {
    let query = search_text(q.q.as_deref())?;
    let entries = (app.lines.iter()).map(|(name, e)| (name.as_str(), &e.catalog));
    let answer = CatalogAnswer {
        lines: search(entries, query.as_deref()),
        query,
    };
    Ok(scrubbed(json!(answer)).into_response())
}

/// The line and catalog entry of a dataset.
fn find_dataset<'a>(app: &'a App, id: &str) -> Option<(&'a LineEntry, &'a cat::DatasetEntry)> {
    app.lines.values().find_map(|e| {
        (e.catalog.datasets.iter())
            .find(|d| d.dataset == id)
            .map(|d| (e, d))
    })
}

/// A dataset's column lineage: for each column, the source columns its values are computed
/// from, as the planned line traces them (`plan::columns`).
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct DatasetLineage {
    /// The dataset's name.
    dataset: String,
    /// The line that publishes it.
    line: String,
    /// The line's publish step that writes it.
    step: String,
    /// Its columns, in their order in the table.
    columns: Vec<ColumnLineage>,
}

/// One published column and where its values come from.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct ColumnLineage {
    /// The column's name.
    column: String,
    /// Whether it is a dimension, a measure or the cell status.
    role: ColumnRole,
    /// The source columns its values are computed from; empty for one that depends on no
    /// column's value (a count of rows, a constant, the status).
    sources: Vec<SourceColumn>,
}

/// A column a source step reads.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub(in crate::serve) struct SourceColumn {
    /// The source step.
    step: String,
    /// The column.
    column: String,
    /// Its declared type.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Whether the line declares it personal data: a published column computed from it
    /// counts or generalises its values, never shows them.
    personal: bool,
    /// Where the source reads, `{period}` standing for the period (the daemon's own folders
    /// named `<store>` and `<lines>`).
    location: Option<String>,
}

/// The lineage of a dataset of the line `c`.
fn lineage_of(c: &cat::LineEntry, d: &cat::DatasetEntry) -> DatasetLineage {
    let source = |from: &str| {
        let (step, column) = from.split_once('.').unwrap_or((from, ""));
        let s = c.sources.iter().find(|s| s.step == step);
        let col = s.and_then(|s| s.columns.iter().find(|x| x.name == column));
        SourceColumn {
            step: step.to_string(),
            column: column.to_string(),
            kind: col.map(|x| x.r#type.clone()),
            personal: col.is_some_and(|x| x.personal),
            location: s.map(|s| match &s.release {
                Some(r) => format!("release: {}", r.dataset),
                None => s.location.clone(),
            }),
        }
    };
    DatasetLineage {
        dataset: d.dataset.clone(),
        line: c.line.clone(),
        step: d.step.clone(),
        columns: (d.columns.iter())
            .map(|col| ColumnLineage {
                column: col.name.clone(),
                role: role_of(d, &col.name),
                sources: col.lineage.iter().map(|f| source(f.as_str())).collect(),
            })
            .collect(),
    }
}

#[utoipa::path(
    get,
    path = "/api/datasets/{id}/lineage",
    tag = "catalog",
    summary = "The column lineage of a dataset",
    description = "For each column of the published table, the source columns (step, column, type, whether personal data) its values are computed from, traced through the planned line. Names only, no rows.",
    params(("id" = String, Path, description = "The dataset's name")),
    responses(
        (status = 200, description = "The lineage", body = DatasetLineage),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
    ),
)]
pub(in crate::serve) async fn get_lineage(
    State(app): AppState,
    P(id): P<String>,
) -> Result<Response, ApiError> {
    let Some((e, d)) = find_dataset(&app, &id) else {
        return Err(ApiError::NoDataset(id));
    };
    Ok(scrubbed(json!(lineage_of(&e.catalog, d))).into_response())
}

#[cfg(test)]
mod tests;
