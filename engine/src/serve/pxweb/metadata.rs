//! A table as JSON-stat 2.0 (`Dataset` of PxWeb API 2.0): its metadata without values,
//! its data with them, and its default selection.
//!
//! Dimensions come in the order period, dimensions, contents, with labels in the asked
//! language; the contents' categories carry each measure's unit and decimals, the periods
//! a note when their release is preliminary or has a note. `updated` is the UTC date of
//! the latest release (the specification's pattern admits a date only; the table list
//! gives the time). The status of a cell without a figure is its symbol (`..` suppressed,
//! `...` not in that period's release), which the dataset's `note` explains.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::publish::revision::ReleaseStatus;
use crate::serve::AppState;
use crate::serve::error::{PxError, PxProblem};
use crate::serve::extract::PxPath;
use crate::serve::pxweb::model::{Cell, Model, Role, Variable, load};
use crate::serve::pxweb::selection::{self, PxPlacement, PxVariableSelection};
use crate::serve::pxweb::{BASE, Lang, Params, PxLink, json_answer, link};

/// A JSON-stat 2.0 dataset: a table's metadata (`value` null) or its data.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct PxDataset {
    /// `2.0`.
    version: &'static str,
    /// `dataset`.
    class: &'static str,
    /// The table's label.
    label: String,
    /// Who answers for the figures (the line's owner).
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    /// The UTC date of the latest release among the periods.
    #[serde(skip_serializing_if = "Option::is_none")]
    updated: Option<String>,
    /// What the status symbols mean.
    note: Vec<String>,
    role: PxRole,
    /// The dimensions, in the order of the cells.
    id: Vec<String>,
    /// The number of categories of each dimension.
    size: Vec<usize>,
    dimension: BTreeMap<String, PxDimension>,
    extension: PxDatasetExtension,
    /// The cells, dense and row-major (the last dimension fastest); null in metadata.
    #[schema(value_type = Option<Vec<f64>>)]
    value: Option<Vec<Value>>,
    /// The symbol of each cell without a figure, by the cell's index.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    status: BTreeMap<String, String>,
}

/// The dimensions with a role.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct PxRole {
    time: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    geo: Vec<String>,
    metric: Vec<String>,
}

/// A dimension (a variable of the table).
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct PxDimension {
    label: String,
    category: PxCategory,
    extension: PxDimensionExtension,
}

/// A dimension's categories (codes).
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct PxCategory {
    /// The position of each code.
    index: BTreeMap<String, usize>,
    /// The label of each code.
    label: BTreeMap<String, String>,
    /// The unit and decimals of each measure (the contents variable only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    unit: BTreeMap<String, PxUnit>,
    /// Notes of codes: a period whose release is preliminary or has a note.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    note: BTreeMap<String, Vec<String>>,
}

/// A measure's unit.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct PxUnit {
    /// The unit (`lkm`, `%`, `min`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    base: Option<String>,
    /// The decimals its values have.
    decimals: u32,
}

/// PxWeb's extension of a dimension.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct PxDimensionExtension {
    /// Never: every variable is selected (one left out takes its default selection).
    elimination: bool,
    /// How clients show the codes: `value` (the labels).
    show: &'static str,
    /// The code lists its codes are labelled from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    codelists: Vec<PxCodelistInfo>,
}

/// A code list of a dimension.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct PxCodelistInfo {
    /// `vs_<code set>`.
    id: String,
    label: String,
    /// `Valueset`.
    #[serde(rename = "type")]
    kind: &'static str,
    links: Vec<PxLink>,
}

/// PxWeb's extension of a dataset.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct PxDatasetExtension {
    /// PX keywords of the table.
    px: PxKeywords,
    /// Whom to ask (the line's `contact`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    contact: Vec<PxContact>,
    #[serde(rename = "firstPeriod", skip_serializing_if = "Option::is_none")]
    first_period: Option<String>,
    #[serde(rename = "lastPeriod", skip_serializing_if = "Option::is_none")]
    last_period: Option<String>,
    /// Never: a table is served while its line is.
    discontinued: bool,
}

/// PX keywords of a table.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct PxKeywords {
    tableid: String,
    language: &'static str,
    contents: String,
    /// The line's description.
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// The most decimals of any measure.
    decimals: u32,
    matrix: String,
    /// The line.
    #[serde(rename = "subject-code")]
    subject_code: String,
    /// The line's title.
    #[serde(rename = "subject-area")]
    subject_area: String,
    heading: Vec<String>,
    stub: Vec<String>,
}

/// A contact.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct PxContact {
    #[serde(skip_serializing_if = "Option::is_none")]
    mail: Option<String>,
    /// As the line gives it.
    raw: String,
}

/// The default selection of a table (`SelectionResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct PxSelectionResponse {
    language: &'static str,
    /// Each variable's codes.
    selection: Vec<PxVariableSelection>,
    placement: PxPlacement,
    links: Vec<PxLink>,
}

/// What the symbols of cells without a figure mean, fi/sv/en.
const LEGEND: [(&str, [&str; 3]); 3] = [
    (
        "..",
        [
            "salattu tietosuojan vuoksi (pieni solu)",
            "skyddad av sekretesskäl (liten cell)",
            "suppressed for confidentiality (small cell)",
        ],
    ),
    (
        "...",
        [
            "tieto puuttuu jakson julkaisusta",
            "uppgiften saknas i periodens publicering",
            "not in the period's release",
        ],
    ),
    (".", ["ei lukua", "inget värde", "no figure"]),
];

/// The legend of the symbols: `..` and `...`, and `.` where the format shows it.
pub(super) fn legend(lang: Lang, with_dot: bool) -> Vec<String> {
    (LEGEND.iter())
        .filter(|(s, _)| with_dot || *s != ".")
        .map(|(s, texts)| format!("'{s}' = {}", lang.pick(*texts)))
        .collect()
}

/// A preliminary release's note, fi/sv/en.
const PRELIMINARY: [&str; 3] = ["Ennakkotieto", "Preliminär uppgift", "Preliminary figure"];

/// The table as JSON-stat over `selection` (positions per variable), with `cells` as its
/// values, or as metadata without.
pub(super) fn dataset(
    model: &Model,
    selection: &[Vec<usize>],
    cells: Option<&[Cell]>,
) -> PxDataset {
    let dimension = (model.variables.iter().zip(selection))
        .map(|(v, chosen)| (v.code.clone(), dimension_of(model, v, chosen)))
        .collect();
    let (value, status) = match cells {
        Some(c) => {
            let (v, s) = values(c);
            (Some(v), s)
        }
        None => (None, BTreeMap::new()),
    };
    let with = |role: Role| {
        (model.variables.iter())
            .filter(|v| v.role == role)
            .map(|v| v.code.clone())
            .collect::<Vec<_>>()
    };
    PxDataset {
        version: "2.0",
        class: "dataset",
        label: model.label.clone(),
        source: model.source.clone(),
        updated: (model.updated.as_deref()).map(|t| t.get(..10).unwrap_or(t).to_string()),
        note: legend(model.lang, false),
        role: PxRole {
            time: with(Role::Time),
            geo: with(Role::Geo),
            metric: with(Role::Contents),
        },
        id: model.variables.iter().map(|v| v.code.clone()).collect(),
        size: selection.iter().map(Vec::len).collect(),
        dimension,
        extension: extension_of(model),
        value,
        status,
    }
}

/// A variable as a dimension over its chosen codes.
fn dimension_of(model: &Model, v: &Variable, chosen: &[usize]) -> PxDimension {
    let lang = model.lang;
    let mut category = PxCategory {
        index: BTreeMap::new(),
        label: BTreeMap::new(),
        unit: BTreeMap::new(),
        note: BTreeMap::new(),
    };
    for (pos, &i) in chosen.iter().enumerate() {
        let code = &v.values[i];
        category.index.insert(code.clone(), pos);
        category.label.insert(code.clone(), v.texts[i].clone());
        if v.role == Role::Contents
            && let Some(m) = model.measures.get(i)
        {
            let unit = PxUnit {
                base: m.unit.clone(),
                decimals: m.decimals,
            };
            category.unit.insert(code.clone(), unit);
        }
        if v.role == Role::Time {
            let notes = period_notes(model, code);
            if !notes.is_empty() {
                category.note.insert(code.clone(), notes);
            }
        }
    }
    let codelists = (v.codelist.iter())
        .map(|id| PxCodelistInfo {
            id: id.clone(),
            label: v.label.clone(),
            kind: "Valueset",
            links: vec![link(
                "self",
                lang,
                format!("{BASE}/codelists/{id}?lang={}", lang.code()),
            )],
        })
        .collect();
    PxDimension {
        label: v.label.clone(),
        category,
        extension: PxDimensionExtension {
            elimination: false,
            show: "value",
            codelists,
        },
    }
}

/// The notes of a period: preliminary, and its release's own note.
fn period_notes(model: &Model, period: &str) -> Vec<String> {
    let Some(r) = model.releases.iter().find(|r| r.period == period) else {
        return Vec::new();
    };
    let mut notes = Vec::new();
    if matches!(r.status, ReleaseStatus::Preliminary) {
        notes.push(model.lang.pick(PRELIMINARY).to_string());
    }
    notes.extend(r.note.clone());
    notes
}

/// The `value` and `status` members of cells.
fn values(cells: &[Cell]) -> (Vec<Value>, BTreeMap<String, String>) {
    let mut status = BTreeMap::new();
    let value = (cells.iter().enumerate())
        .map(|(i, c)| {
            if let Some(s) = c.status() {
                status.insert(i.to_string(), s.to_string());
            }
            match c {
                Cell::Value(v) => number(*v),
                _ => Value::Null,
            }
        })
        .collect();
    (value, status)
}

/// A number as JSON: whole numbers without a decimal point, others as written exactly.
pub(super) fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9e15 {
        Value::from(v as i64)
    } else {
        serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}

/// The PX keywords, contact and periods of the table.
fn extension_of(model: &Model) -> PxDatasetExtension {
    let (stub, heading) = layout(model);
    PxDatasetExtension {
        px: PxKeywords {
            tableid: model.id.clone(),
            language: model.lang.code(),
            contents: model.label.clone(),
            description: model.description.clone(),
            decimals: model.measures.iter().map(|m| m.decimals).max().unwrap_or(0),
            matrix: model.id.clone(),
            subject_code: model.line.clone(),
            subject_area: model.title.clone(),
            heading,
            stub,
        },
        contact: (model.contact.iter())
            .map(|c| PxContact {
                mail: c.contains('@').then(|| c.clone()),
                raw: c.clone(),
            })
            .collect(),
        first_period: model.releases.first().map(|r| r.period.clone()),
        last_period: model.releases.last().map(|r| r.period.clone()),
        discontinued: false,
    }
}

/// The layout every format uses: the period and dimensions down (stub), the contents
/// across (heading).
pub(super) fn layout(model: &Model) -> (Vec<String>, Vec<String>) {
    let (heading, stub): (Vec<&Variable>, Vec<&Variable>) =
        (model.variables.iter()).partition(|v| v.role == Role::Contents);
    let codes = |vs: Vec<&Variable>| vs.into_iter().map(|v| v.code.clone()).collect();
    (codes(stub), codes(heading))
}

#[utoipa::path(
    get,
    path = "/api/v2/tables/{id}/metadata",
    tag = "pxweb",
    summary = "A table's metadata: JSON-stat 2.0 without values",
    description = "Every variable with its codes and their labels in the language asked, the measures' units and decimals, the notes of the periods, contact, source, the date of the latest release and the roles (time, geo, metric).",
    params(
        ("id" = String, Path, description = "The table (a published dataset's name)"),
        ("lang" = Option<String>, Query, description = "fi (the default), sv or en"),
        ("defaultSelection" = Option<bool>, Query, description = "Only the codes of the default selection"),
        ("codelist" = Option<std::collections::BTreeMap<String, String>>, Query, style = DeepObject,
            description = "codelist[VARIABLE]=vs_<code set>: the variable's codes in that value set"),
    ),
    responses(
        (status = 200, description = "The metadata", body = PxDataset),
        (status = 400, response = PxProblem),
        (status = 404, response = PxProblem),
        (status = 500, response = PxProblem),
    ),
)]
pub(in crate::serve) async fn get_metadata(
    State(app): AppState,
    PxPath(id): PxPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, PxError> {
    let params = Params::parse(
        query.as_deref(),
        &["lang", "defaultSelection", "codelist[]"],
    )?;
    let lang = Lang::parse(params.one("lang")?)?;
    let default = params.flag("defaultSelection")?.unwrap_or(false);
    let request = selection::from_params(&params)?;
    let model = load(&app, &id, lang).await?;
    let otherwise = if default {
        selection::default_selection(&model)
    } else {
        selection::everything(&model)
    };
    let chosen = selection::resolve(&model, &request, otherwise)?;
    json_answer(&dataset(&model, &chosen, None))
}

#[utoipa::path(
    get,
    path = "/api/v2/tables/{id}/defaultselection",
    tag = "pxweb",
    summary = "A table's default selection",
    description = "What `…/data` answers for the variables a request leaves out: the latest period and every code of the others (narrowed to totals when that is more than `maxDataCells`).",
    params(
        ("id" = String, Path, description = "The table (a published dataset's name)"),
        ("lang" = Option<String>, Query, description = "fi (the default), sv or en"),
    ),
    responses(
        (status = 200, description = "The default selection", body = PxSelectionResponse),
        (status = 400, response = PxProblem),
        (status = 404, response = PxProblem),
        (status = 500, response = PxProblem),
    ),
)]
pub(in crate::serve) async fn get_default_selection(
    State(app): AppState,
    PxPath(id): PxPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, PxError> {
    let params = Params::parse(query.as_deref(), &["lang"])?;
    let lang = Lang::parse(params.one("lang")?)?;
    let model = load(&app, &id, lang).await?;
    let chosen = selection::default_selection(&model);
    let picked = (model.variables.iter().zip(&chosen))
        .map(|(v, c)| PxVariableSelection {
            variable_code: v.code.clone(),
            codelist: None,
            value_codes: c.iter().map(|&i| v.values[i].clone()).collect(),
        })
        .collect();
    let (stub, heading) = layout(&model);
    json_answer(&PxSelectionResponse {
        language: lang.code(),
        selection: picked,
        placement: PxPlacement { heading, stub },
        links: vec![link(
            "self",
            lang,
            format!(
                "{BASE}/tables/{}/defaultselection?lang={}",
                model.id,
                lang.code()
            ),
        )],
    })
}
