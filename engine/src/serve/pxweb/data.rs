//! The data of a table: `GET …/data` (the selection in `valueCodes[VAR]=…`) and
//! `POST …/data` (a VariablesSelection body), as JSON-stat 2.0, csv, xlsx or PX.
//!
//! The selection is resolved and its cells counted before any cell is made; the cube is
//! then filled from the published rows, so its size is the selection's, whatever the
//! table holds.

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tracing::error;

use crate::serve::AppState;
use crate::serve::error::{PxError, PxProblem};
use crate::serve::extract::PxPath;
use crate::serve::pxweb::model::{Cell, Model, load};
use crate::serve::pxweb::output::{Labels, TextStyle};
use crate::serve::pxweb::selection::{self, PxVariablesSelection, Request};
use crate::serve::pxweb::{Lang, Params, clip, json_answer};

/// The largest body of `POST …/data`: a selection of a few thousand codes.
const MAX_BODY: usize = 256 << 10;

/// What a data answer is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    JsonStat2,
    Csv,
    Xlsx,
    Px,
}

/// The output format (`outputFormat`, json-stat2 by default) and its parameters.
fn format_of(params: &Params) -> Result<(Format, TextStyle), PxError> {
    let format = match params.one("outputFormat")?.map(str::trim) {
        None | Some("") => Format::JsonStat2,
        Some(f) if f.eq_ignore_ascii_case("json-stat2") => Format::JsonStat2,
        Some(f) if f.eq_ignore_ascii_case("csv") => Format::Csv,
        Some(f) if f.eq_ignore_ascii_case("xlsx") => Format::Xlsx,
        Some(f) if f.eq_ignore_ascii_case("px") => Format::Px,
        Some(f) => return Err(PxError::BadFormat(clip(f))),
    };
    Ok((format, style_of(params)?))
}

/// The `outputFormatParams` (csv and xlsx): labels, separator, title; two that
/// contradict each other are refused.
fn style_of(params: &Params) -> Result<TextStyle, PxError> {
    let mut style = TextStyle::default();
    let (mut labels, mut separator) = (None, None);
    for p in params.list("outputFormatParams") {
        match p.to_ascii_lowercase().as_str() {
            "includetitle" => style.title = true,
            "usecodes" => set(&mut labels, Labels::Codes, p)?,
            "usetexts" => set(&mut labels, Labels::Texts, p)?,
            "usecodesandtexts" => set(&mut labels, Labels::Both, p)?,
            "separatortab" => set(&mut separator, b'\t', p)?,
            "separatorspace" => set(&mut separator, b' ', p)?,
            "separatorsemicolon" => set(&mut separator, b';', p)?,
            _ => {
                return Err(PxError::BadRequest(format!(
                    "output format parameter `{}`: use UseCodes, UseTexts, UseCodesAndTexts, IncludeTitle, SeparatorTab, SeparatorSpace or SeparatorSemicolon",
                    clip(p)
                )));
            }
        }
    }
    style.labels = labels.unwrap_or(style.labels);
    style.separator = separator.unwrap_or(style.separator);
    Ok(style)
}

/// Sets one choice of the output parameters, refusing a second that differs.
fn set<T: PartialEq + Copy>(slot: &mut Option<T>, value: T, given: &str) -> Result<(), PxError> {
    if slot.is_some_and(|s| s != value) {
        return Err(PxError::BadRequest(format!(
            "output format parameter `{}` contradicts another",
            clip(given)
        )));
    }
    *slot = Some(value);
    Ok(())
}

/// Each selected cell, row-major over the selection (the last variable fastest): the
/// published value of its row and measure, or why there is none.
pub(super) fn cube(model: &Model, selection: &[Vec<usize>]) -> Vec<Cell> {
    let Some(last) = selection.len().checked_sub(1) else {
        return Vec::new();
    };
    let total: usize = selection.iter().map(Vec::len).product();
    let mut cells = vec![Cell::Empty; total];
    if total == 0 {
        return cells;
    }
    // Where each code of each variable sits in the selection.
    let place: Vec<Vec<Option<usize>>> = (selection.iter().zip(&model.variables))
        .map(|(chosen, v)| {
            let mut p = vec![None; v.values.len()];
            for (j, &i) in chosen.iter().enumerate() {
                p[i] = Some(j);
            }
            p
        })
        .collect();
    let measures = &selection[last];
    'rows: for r in 0..model.rows.len() {
        let mut base = 0usize;
        for (k, chosen) in selection[..last].iter().enumerate() {
            let Some(j) = place[k][model.rows.key(k, r)] else {
                continue 'rows;
            };
            base = base * chosen.len() + j;
        }
        for (j, &m) in measures.iter().enumerate() {
            cells[base * measures.len() + j] = model.rows.cell(r, m);
        }
    }
    cells
}

#[utoipa::path(
    get,
    path = "/api/v2/tables/{id}/data",
    tag = "pxweb",
    summary = "A table's data",
    description = "The selection is `valueCodes[VARIABLE]=a,b,…` per variable: codes, `*`, `top(n)` (the n latest periods, the n last codes), `bottom(n)`, `from(x)`, `to(x)`, `range(x,y)`, `x*`, `*x`; a variable left out takes the default selection. At most `maxDataCells` cells (403 beyond). Suppressed cells are null with status `..`, a measure a period's release lacks null with `...`; in csv, xlsx and PX the symbols stand in the cells (`.`: no figure).",
    params(
        ("id" = String, Path, description = "The table (a published dataset's name)"),
        ("lang" = Option<String>, Query, description = "fi (the default), sv or en"),
        ("valueCodes" = Option<std::collections::BTreeMap<String, String>>, Query, style = DeepObject,
            description = "valueCodes[VARIABLE]=codes or expressions, comma-separated"),
        ("codelist" = Option<std::collections::BTreeMap<String, String>>, Query, style = DeepObject,
            description = "codelist[VARIABLE]=vs_<code set>: select within that value set"),
        ("outputFormat" = Option<String>, Query, description = "json-stat2 (the default), csv, xlsx or px"),
        ("outputFormatParams" = Option<String>, Query,
            description = "For csv and xlsx: UseCodes (the default), UseTexts or UseCodesAndTexts; IncludeTitle; SeparatorTab, SeparatorSpace or SeparatorSemicolon (csv)"),
        ("heading" = Option<String>, Query, description = "Variables across (checked; the layout is fixed: the contents across)"),
        ("stub" = Option<String>, Query, description = "Variables down (checked; the layout is fixed: the period and dimensions down)"),
    ),
    responses(
        (status = 200, description = "The data", content(
            (Object = "application/json"),
            (String = "text/csv"),
            (String = "text/plain"),
            (String = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        )),
        (status = 400, response = PxProblem),
        (status = 403, response = PxProblem),
        (status = 404, response = PxProblem),
        (status = 500, response = PxProblem),
    ),
)]
pub(in crate::serve) async fn get_data(
    State(app): AppState,
    PxPath(id): PxPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, PxError> {
    let params = Params::parse(
        query.as_deref(),
        &[
            "lang",
            "outputFormat",
            "outputFormatParams",
            "valueCodes[]",
            "codelist[]",
            "heading",
            "stub",
        ],
    )?;
    let lang = Lang::parse(params.one("lang")?)?;
    let format = format_of(&params)?;
    let request = selection::from_params(&params)?;
    answer(&app, &id, lang, format, &request).await
}

#[utoipa::path(
    post,
    path = "/api/v2/tables/{id}/data",
    tag = "pxweb",
    summary = "A table's data, the selection in the body",
    description = "As `GET`, the selection a VariablesSelection (an empty body: the default selection).",
    params(
        ("id" = String, Path, description = "The table (a published dataset's name)"),
        ("lang" = Option<String>, Query, description = "fi (the default), sv or en"),
        ("outputFormat" = Option<String>, Query, description = "json-stat2 (the default), csv, xlsx or px"),
        ("outputFormatParams" = Option<String>, Query, description = "As for GET"),
    ),
    request_body(
        content = PxVariablesSelection,
        content_type = "application/json",
        description = "The selection",
    ),
    responses(
        (status = 200, description = "The data", content(
            (Object = "application/json"),
            (String = "text/csv"),
            (String = "text/plain"),
            (String = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        )),
        (status = 400, response = PxProblem),
        (status = 403, response = PxProblem),
        (status = 404, response = PxProblem),
        (status = 408, response = PxProblem),
        (status = 413, response = PxProblem),
        (status = 500, response = PxProblem),
    ),
)]
pub(in crate::serve) async fn post_data(
    State(app): AppState,
    PxPath(id): PxPath<String>,
    RawQuery(query): RawQuery,
    body: axum::body::Body,
) -> Result<Response, PxError> {
    let body = crate::serve::auth::read_body(body, MAX_BODY)
        .await
        .map_err(PxError::Body)?;
    let params = Params::parse(
        query.as_deref(),
        &["lang", "outputFormat", "outputFormatParams"],
    )?;
    let lang = Lang::parse(params.one("lang")?)?;
    let format = format_of(&params)?;
    let request = selection::from_body(&body)?;
    answer(&app, &id, lang, format, &request).await
}

/// Reads the table, resolves and bounds the selection, and writes the cells.
async fn answer(
    app: &crate::serve::App,
    id: &str,
    lang: Lang,
    (format, style): (Format, TextStyle),
    request: &Request,
) -> Result<Response, PxError> {
    let model = load(app, id, lang).await?;
    let chosen = selection::resolve(&model, request, selection::default_selection(&model))?;
    selection::check_cells(&chosen)?;
    let cells = cube(&model, &chosen);
    let file = |ext: &str| format!("attachment; filename=\"{}.{ext}\"", model.id);
    let written = match format {
        Format::JsonStat2 => {
            return json_answer(&crate::serve::pxweb::metadata::dataset(
                &model,
                &chosen,
                Some(cells.as_slice()),
            ));
        }
        Format::Csv => (
            "text/csv; charset=utf-8",
            file("csv"),
            crate::serve::pxweb::output::csv(&model, &chosen, &cells, &style).into_bytes(),
        ),
        Format::Xlsx => (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            file("xlsx"),
            crate::serve::pxweb::output::xlsx(&model, &chosen, &cells, &style).map_err(|e| {
                error!("{e}");
                PxError::Write("xlsx")
            })?,
        ),
        Format::Px => (
            "text/plain; charset=utf-8",
            file("px"),
            crate::serve::pxweb::px::write(&model, &chosen, &cells).into_bytes(),
        ),
    };
    let (content_type, disposition, bytes) = written;
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::pxweb::model::sample;

    #[test]
    fn each_cell_is_the_published_value_or_why_there_is_none() {
        let m = sample();
        let all = selection::everything(&m);
        let cells = cube(&m, &all);
        // jakso × alue × tiedot = 3 × 3 × 2, row-major.
        assert_eq!(cells.len(), 18);
        let at = |p: usize, a: usize, t: usize| cells[(p * 3 + a) * 2 + t];
        assert_eq!(at(0, 0, 0), Cell::Value(10.0));
        assert_eq!(at(0, 1, 1), Cell::Value(0.25));
        // 2025-02 / 01 was suppressed.
        assert_eq!(at(1, 0, 0), Cell::Suppressed);
        assert_eq!(at(1, 0, 1), Cell::Suppressed);
        // 2025-03 has no `osuus`: missing, while its counts stand.
        assert_eq!(at(2, 2, 0), Cell::Value(5.0));
        assert_eq!(at(2, 2, 1), Cell::Missing);
        // No row for 2025-01 / 02.
        assert_eq!(at(0, 2, 0), Cell::Empty);
    }

    #[test]
    fn a_selection_takes_its_cells_in_its_own_order() {
        let m = sample();
        // The last two periods, the whole country, `osuus` only.
        let cells = cube(&m, &[vec![1usize, 2], vec![1], vec![1]]);
        assert_eq!(cells, [Cell::Value(0.125), Cell::Missing]);
    }

    #[test]
    fn formats_and_their_parameters_are_checked() {
        let p = |q: &str| Params::parse(Some(q), &["outputFormat", "outputFormatParams"]).unwrap();
        assert_eq!(format_of(&p("")).unwrap().0, Format::JsonStat2);
        assert_eq!(format_of(&p("outputFormat=PX")).unwrap().0, Format::Px);
        assert!(matches!(
            format_of(&p("outputFormat=html")),
            Err(PxError::BadFormat(_))
        ));
        let (f, s) = format_of(&p(
            "outputFormat=csv&outputFormatParams=UseTexts,SeparatorSemicolon,IncludeTitle",
        ))
        .unwrap();
        assert_eq!(f, Format::Csv);
        assert_eq!(
            (s.labels, s.separator, s.title),
            (Labels::Texts, b';', true)
        );
        assert!(format_of(&p("outputFormatParams=UseCodes,UseTexts")).is_err());
        assert!(format_of(&p("outputFormatParams=Bold")).is_err());
    }
}
