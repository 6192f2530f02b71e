//! Code lists (`/api/v2/codelists/{id}`): the value sets dimensions are labelled from.
//!
//! A dimension a publish step labels from a code set (`labels: { hyvinvointialue:
//! { codeset: alueet } }`) has the code list `vs_<code set>`: every code of the code set
//! with its label in the asked language. The totals a table adds (`SSS`) are not in it.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde::Serialize;
use tracing::error;
use utoipa::ToSchema;

use crate::serve::error::{PxError, PxProblem};
use crate::serve::extract::PxPath;
use crate::serve::pxweb::{
    BASE, Lang, MAX_ID, Params, PxLink, TableRef, catalogue, clip, json_answer, link,
};
use crate::serve::{App, AppState};

/// A code list (`CodelistResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct PxCodelist {
    /// `vs_<code set>`.
    id: String,
    /// The label of the dimension it labels.
    label: String,
    language: &'static str,
    languages: Vec<&'static str>,
    elimination: bool,
    /// `Valueset`.
    #[serde(rename = "type")]
    kind: &'static str,
    values: Vec<PxValueMap>,
    links: Vec<PxLink>,
}

/// A value of a code list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(in crate::serve) struct PxValueMap {
    code: String,
    label: String,
    /// The codes of the dimension it stands for: itself.
    value_map: Vec<String>,
}

/// The first table (by id) with a dimension labelled from the code set `id` names, and
/// that dimension.
fn holder<'a>(app: &'a App, id: &str) -> Option<(TableRef<'a>, String)> {
    if id.len() > MAX_ID {
        return None;
    }
    let codeset = id.strip_prefix("vs_")?;
    catalogue(app).into_iter().find_map(|t| {
        (t.spec.labels.iter())
            .find(|(_, l)| l.codeset.value == codeset)
            .map(|(d, _)| (t, d.value.clone()))
    })
}

#[utoipa::path(
    get,
    path = "/api/v2/codelists/{id}",
    tag = "pxweb",
    summary = "A code list: the value set a dimension is labelled from",
    params(
        ("id" = String, Path, description = "`vs_<code set>`, as a dimension's `extension.codelists` names it"),
        ("lang" = Option<String>, Query, description = "fi (the default), sv or en"),
    ),
    responses(
        (status = 200, description = "The code list", body = PxCodelist),
        (status = 400, response = PxProblem),
        (status = 404, response = PxProblem),
        (status = 500, response = PxProblem),
    ),
)]
pub(in crate::serve) async fn get_codelist(
    State(app): AppState,
    PxPath(id): PxPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, PxError> {
    let params = Params::parse(query.as_deref(), &["lang"])?;
    let lang = Lang::parse(params.one("lang")?)?;
    let Some((t, dim)) = holder(&app, &id) else {
        return Err(PxError::NoCodelist(clip(&id)));
    };
    let dims = t.dimensions();
    let area = (t.entry.datasets.get(t.id)).and_then(|s| s.area.clone());
    let meta = crate::publish::jsonstat_meta(
        &t.entry.line,
        t.spec,
        &dims,
        area.as_deref(),
        &t.entry.codesets,
    )
    .map_err(|e| {
        error!("{e}");
        PxError::Label
    })?;
    let values = (meta.code_labels.get(&dim).into_iter().flatten())
        .map(|(code, labels)| PxValueMap {
            code: code.clone(),
            label: lang.label(labels).unwrap_or_else(|| code.clone()),
            value_map: vec![code.clone()],
        })
        .collect();
    let href = format!("{BASE}/codelists/{id}?lang={}", lang.code());
    json_answer(&PxCodelist {
        label: t.column_label(&dim, lang),
        id,
        language: lang.code(),
        languages: Lang::ALL.map(Lang::code).to_vec(),
        elimination: false,
        kind: "Valueset",
        values,
        links: vec![link("self", lang, href)],
    })
}
