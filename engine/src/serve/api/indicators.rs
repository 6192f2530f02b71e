//! The indicator API in the style of Sotkanet: `/api/v1/datasets/{id}`.
//!
//! Reads the current release of each period of a dataset into one table with a leading
//! period dimension ([`PERIOD_DIMENSION`]), filters it by dimension codes, area and period,
//! and answers JSON-stat 2.0 (labelled from the line's code sets) or CSV.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;

use crate::serve::extract::{P, Q};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::error;

use crate::serve::api::lines::publish_steps;
use crate::serve::error::{ApiError, Problem};
use crate::serve::{App, AppState, LineEntry, now_text};

// The `format` parameter in the OpenAPI document; the handler reads the query as text (and
// also takes `jsonstat`), so this type is only described, never built.
/// The format of the answer: JSON-stat 2.0 or CSV. Without `format`, CSV when the request
/// accepts `text/csv` and not `application/json`.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(in crate::serve) enum IndicatorFormat {
    Json,
    Csv,
}

/// The line and publish step of a dataset.
pub(in crate::serve) fn find_dataset<'a>(
    app: &'a App,
    id: &str,
) -> Option<(&'a str, &'a LineEntry, &'a crate::line::spec::PublishSpec)> {
    app.lines.iter().find_map(|(n, e)| {
        publish_steps(&e.line)
            .into_iter()
            .find(|(_, p)| p.dataset.value == id)
            .map(|(_, p)| (n.as_str(), e, p))
    })
}

/// The name of the period dimension the indicator API adds.
pub const PERIOD_DIMENSION: &str = crate::plan::PERIOD_COLUMN;

/// The area dimension of a dataset: the `area` its aggregate declared, as the line's
/// planned publish step gives it (the one place a table's shape comes from).
pub(in crate::serve) fn dataset_area(entry: &LineEntry, dataset: &str) -> Option<String> {
    entry.datasets.get(dataset).and_then(|s| s.area.clone())
}

#[utoipa::path(
    get,
    path = "/api/v1/datasets/{id}",
    tag = "indicators",
    summary = "Indicator data: the current releases of a dataset, filtered",
    description = "Any dimension of the dataset filters by comma-separated codes (e.g. kiireellisyys=A,B); `area` filters the area dimension (the one its line declares `area:`) and `period` the releases. `release` asks for one earlier release (a revision) by the id of its run. JSON-stat 2.0 (with a leading `jakso` dimension; `updated` is the latest release time, `extension.releases` each period's release with its status and note) unless `format=csv` or Accept: text/csv.",
    params(
        ("id" = String, Path, description = "The dataset's name"),
        ("area" = Option<String>, Query, description = "Codes of the area dimension, comma-separated"),
        ("period" = Option<String>, Query, description = "Periods, comma-separated (also `jakso`)"),
        ("release" = Option<String>, Query, description = "The id of the run whose release to answer (its period only); without it, each period's current release"),
        ("format" = inline(Option<IndicatorFormat>), Query, description = "json (JSON-stat 2.0) or csv"),
    ),
    responses(
        (status = 200, description = "The data", content(
            (Object = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 500, response = Problem),
    ),
)]
pub(in crate::serve) async fn get_indicator(
    State(app): AppState,
    P(id): P<String>,
    Q(q): Q<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some((line, entry, spec)) = find_dataset(&app, &id) else {
        return Err(ApiError::NoDataset(id));
    };
    // The table's dimensions as its planned publish step gives them (failed before for
    // every dataset whose publish step does not list `dimensions:`).
    let dims = entry
        .datasets
        .get(&id)
        .map(|s| s.dimensions.clone())
        .unwrap_or_default();
    let geo = dataset_area(entry, &id);
    let asked = asked(&q, &id, &dims, geo.as_deref(), &headers)?;
    let series = match crate::serve::series::read(
        &app,
        line,
        &id,
        asked.periods.as_ref(),
        &asked.pick,
    )
    .await
    {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(match asked.pick {
                crate::serve::series::Pick::Run(run) => ApiError::NoRelease(run),
                crate::serve::series::Pick::Current => ApiError::NotPublished(id.clone()),
            });
        }
        Err(e) => return Err(ApiError::from_series(e)),
    };
    let table = filtered(&series.table, &asked.filters)?;
    if asked.csv {
        return csv_answer(&table);
    }
    let mut all_dims = vec![PERIOD_DIMENSION.to_string()];
    all_dims.extend(dims.iter().cloned());
    let meta = period_meta(&entry.line, spec, &all_dims, geo.as_deref(), entry)?;
    let mut doc = crate::publish::jsonstat::dataset(&table, &meta).map_err(|e| {
        error!("{e}");
        ApiError::WriteJsonStat
    })?;
    doc["updated"] = json!(series.updated.unwrap_or_else(now_text));
    let releases = json!(series.releases);
    match doc.get_mut("extension").and_then(|e| e.as_object_mut()) {
        Some(ext) => {
            ext.insert("releases".into(), releases);
        }
        None => doc["extension"] = json!({ "releases": releases }),
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::VARY, "Accept"),
        ],
        axum::Json(doc),
    )
        .into_response())
}

/// What a request asks of a dataset.
struct Asked {
    /// Codes to keep, by dimension.
    filters: BTreeMap<String, BTreeSet<String>>,
    /// The periods, or all.
    periods: Option<BTreeSet<String>>,
    /// Which release of each period.
    pick: crate::serve::series::Pick,
    /// CSV rather than JSON-stat.
    csv: bool,
}

/// Reads the query: `dimension=code,code`, `area` (the area dimension), `period`,
/// `release`, `format`; anything else is refused.
fn asked(
    q: &BTreeMap<String, String>,
    id: &str,
    dims: &[String],
    geo: Option<&str>,
    headers: &HeaderMap,
) -> Result<Asked, ApiError> {
    let mut asked = Asked {
        filters: BTreeMap::new(),
        periods: None,
        pick: crate::serve::series::Pick::Current,
        csv: false,
    };
    let mut format = None;
    for (k, v) in q {
        let values: BTreeSet<String> = v
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        match k.as_str() {
            "format" => format = Some(v.clone()),
            "release" => asked.pick = crate::serve::series::Pick::Run(v.clone()),
            "period" | PERIOD_DIMENSION => asked.periods = Some(values),
            "area" if geo.is_some() => {
                asked.filters.insert(geo.unwrap_or_default().into(), values);
            }
            d if dims.iter().any(|x| x == d) => {
                asked.filters.insert(d.to_string(), values);
            }
            other => {
                return Err(ApiError::BadFilter {
                    filter: other.to_string(),
                    dataset: id.to_string(),
                    dimensions: dims.join(", "),
                });
            }
        }
    }
    asked.csv = match format.as_deref() {
        Some("csv") => true,
        Some("json") | Some("jsonstat") => false,
        Some(f) => return Err(ApiError::BadFormat(f.to_string())),
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/csv") && !a.contains("application/json")),
    };
    Ok(asked)
}

/// The rows whose code in each filtered dimension is one asked for.
fn filtered(
    table: &arrow::record_batch::RecordBatch,
    filters: &BTreeMap<String, BTreeSet<String>>,
) -> Result<arrow::record_batch::RecordBatch, ApiError> {
    use arrow::array::{Array, AsArray, BooleanArray};
    let mut keep = BooleanArray::from(vec![true; table.num_rows()]);
    for (d, values) in filters {
        // Every filtered dimension is a column of the series (it has the planned shape): a
        // filter is never silently ignored.
        let Some(a) = table.column_by_name(d) else {
            error!(dimension = %d, "a planned dimension is not a column of the series");
            return Err(ApiError::Filter);
        };
        let a = arrow::compute::cast(a, &arrow::datatypes::DataType::Utf8).map_err(|e| {
            error!("{e}");
            ApiError::Filter
        })?;
        let a = a.as_string::<i32>();
        let m: BooleanArray = (0..a.len())
            .map(|i| Some(a.is_valid(i) && values.contains(a.value(i))))
            .collect();
        keep = arrow::compute::and(&keep, &m).map_err(|e| {
            error!("{e}");
            ApiError::Filter
        })?;
    }
    arrow::compute::filter_record_batch(table, &keep).map_err(|e| {
        error!("{e}");
        ApiError::Filter
    })
}

/// The table as CSV.
fn csv_answer(table: &arrow::record_batch::RecordBatch) -> Result<Response, ApiError> {
    let mut out = Vec::new();
    {
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut out);
        if let Err(e) = w.write(table) {
            error!("{e}");
            return Err(ApiError::WriteCsv);
        }
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::VARY, "Accept"),
        ],
        out,
    )
        .into_response())
}

/// The labels of a dataset with the period dimension in front.
pub(in crate::serve) fn period_meta<'a>(
    line: &crate::line::load::Line,
    spec: &crate::line::spec::PublishSpec,
    all_dims: &'a [String],
    geo: Option<&'a str>,
    entry: &LineEntry,
) -> Result<crate::publish::jsonstat::DatasetMeta<'a>, ApiError> {
    let mut meta = crate::publish::jsonstat_meta(line, spec, all_dims, geo, &entry.codesets)
        .map_err(|e| {
            error!("{e}");
            ApiError::Label
        })?;
    meta.column_labels.insert(
        PERIOD_DIMENSION.into(),
        [
            Some("Tilastojakso".into()),
            Some("Statistikperiod".into()),
            Some("Statistical period".into()),
        ],
    );
    Ok(meta)
}

#[cfg(test)]
mod tests {
    /// Every dataset's dimensions and area come from its planned publish step, whether or
    /// not the step lists `dimensions:` (failed before: the API knew only listed ones, and
    /// the area of a release made before manifests recorded it).
    #[test]
    fn each_table_is_shaped_by_its_planned_publish_step() {
        let text = "line: t\ntitle: t\nsteps:\n\
            \x20 s: { source: { format: csv, location: x.csv, columns: { alue: string, laji: string, n: integer } } }\n\
            \x20 a: { aggregate: { input: s, by: [alue, laji], totals: true, area: alue, measures: { m: sum(n) } } }\n\
            \x20 p: { publish: { input: a, dataset: kaikki, formats: [csv], disclosure: { min_count: 1, count: m } } }\n\
            \x20 q: { publish: { input: a, dataset: lajit, formats: [csv], dimensions: [laji], disclosure: { min_count: 1, count: m } } }\n";
        let (line, _) =
            crate::line::load::load_text("t.yaml", std::path::Path::new("."), text.into())
                .expect("loads");
        let checked =
            crate::plan::check::plan_all(line, vec![], &Default::default(), b"k").expect("plans");
        let shapes = crate::serve::published_tables(&checked);
        assert_eq!(shapes["kaikki"].dimensions, ["alue", "laji"]);
        assert_eq!(shapes["kaikki"].area.as_deref(), Some("alue"));
        assert_eq!(shapes["kaikki"].measures, ["m"]);
        // A table that leaves the area out has none.
        assert_eq!(shapes["lajit"].dimensions, ["laji"]);
        assert_eq!(shapes["lajit"].area, None);
    }
}
