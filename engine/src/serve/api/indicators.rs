//! The indicator API in the style of Sotkanet: `/api/v1/datasets/{id}`.
//!
//! Reads the current release of each period of a dataset into one table with a leading
//! period dimension ([`PERIOD_DIMENSION`]), filters it by dimension codes, area and period,
//! and answers JSON-stat 2.0 (labelled from the line's code sets) or CSV.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::error;

use crate::serve::api::lines::{current_releases, publish_steps};
use crate::serve::error::{ApiError, Problem, ServeError};
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
fn find_dataset<'a>(
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
pub const PERIOD_DIMENSION: &str = "jakso";

/// Reads the current releases of a dataset (some periods, or all) into one table with a
/// leading period column.
async fn dataset_table(
    app: &App,
    line: &str,
    dataset: &str,
    periods: Option<&BTreeSet<String>>,
) -> Result<Option<arrow::record_batch::RecordBatch>, ServeError> {
    use arrow::array::{ArrayRef, StringArray};
    let mut tables = Vec::new();
    for (period, run) in current_releases(app, line).await? {
        if periods.is_some_and(|p| !p.contains(&period)) {
            continue;
        }
        let path = crate::store::layout::release_file(line, &period, &run, dataset, "parquet");
        let Some(bytes) = app.get_bytes(&path).await else {
            continue;
        };
        let file_error = |source| ServeError::ReleaseFile {
            path: path.clone(),
            source,
        };
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(file_error)?
            .build()
            .map_err(file_error)?;
        for b in reader {
            let b = b.map_err(|source| ServeError::ReleaseBatch {
                path: path.clone(),
                source,
            })?;
            let mut fields = vec![arrow::datatypes::Field::new(
                PERIOD_DIMENSION,
                arrow::datatypes::DataType::Utf8,
                false,
            )];
            // Field metadata differs between releases; the table keeps names and types.
            fields.extend(b.schema().fields().iter().map(|f| {
                arrow::datatypes::Field::new(f.name(), f.data_type().clone(), f.is_nullable())
            }));
            let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec![
                period.as_str();
                b.num_rows()
            ]))];
            cols.extend(b.columns().iter().cloned());
            let schema = Arc::new(arrow::datatypes::Schema::new(fields));
            tables.push(
                arrow::record_batch::RecordBatch::try_new(schema, cols)
                    .map_err(ServeError::Table)?,
            );
        }
    }
    let Some(first) = tables.first() else {
        return Ok(None);
    };
    let schema = first.schema();
    let tables: Vec<_> = tables
        .into_iter()
        .filter(|t| t.schema() == schema)
        .collect();
    arrow::compute::concat_batches(&schema, &tables)
        .map(Some)
        .map_err(ServeError::Table)
}

/// The area dimension of a dataset (the `area` its aggregate declared), as the newest of
/// its current releases records it in the manifest; for releases made before manifests
/// recorded it, as the line's planned publish step gives it now.
async fn dataset_area(app: &App, line: &str, entry: &LineEntry, dataset: &str) -> Option<String> {
    let recorded =
        match crate::publish::releases::list_cached(&app.store, line, &app.manifests).await {
            Ok(releases) => releases
                .into_iter()
                .filter(|r| r.current)
                .filter_map(|r| r.areas.get(dataset).cloned())
                .next_back(),
            Err(e) => {
                error!("{e}");
                None
            }
        };
    recorded.or_else(|| entry.datasets.get(dataset).and_then(|s| s.area.clone()))
}

#[utoipa::path(
    get,
    path = "/api/v1/datasets/{id}",
    tag = "indicators",
    summary = "Indicator data: the current releases of a dataset, filtered",
    description = "Any dimension of the dataset filters by comma-separated codes (e.g. kiireellisyys=A,B); `area` filters the area dimension (the one its line declares `area:`) and `period` the releases. JSON-stat 2.0 (with a leading `jakso` dimension) unless `format=csv` or Accept: text/csv.",
    params(
        ("id" = String, Path, description = "The dataset's name"),
        ("area" = Option<String>, Query, description = "Codes of the area dimension, comma-separated"),
        ("period" = Option<String>, Query, description = "Periods, comma-separated (also `jakso`)"),
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
    UrlPath(id): UrlPath<String>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use arrow::array::{Array, AsArray, BooleanArray};
    let Some((line, entry, spec)) = find_dataset(&app, &id) else {
        return Err(ApiError::NoDataset(id));
    };
    // The table's dimensions as its planned publish step gives them (failed before for
    // every dataset whose publish step does not list `dimensions:`).
    let shape = entry.datasets.get(&id).cloned().unwrap_or_default();
    let dims = shape.dimensions;
    let geo = dataset_area(&app, line, entry, &id).await;
    // Filters: dimension=code,code; `area` names the area dimension; `period` the releases.
    let mut filters: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut periods: Option<BTreeSet<String>> = None;
    let mut format = None;
    for (k, v) in &q {
        let values: BTreeSet<String> = v
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        match k.as_str() {
            "format" => format = Some(v.clone()),
            "period" | PERIOD_DIMENSION => periods = Some(values),
            "area" if geo.is_some() => {
                filters.insert(geo.clone().unwrap_or_default(), values);
            }
            d if dims.iter().any(|x| x == d) => {
                filters.insert(d.to_string(), values);
            }
            other => {
                return Err(ApiError::BadFilter {
                    filter: other.to_string(),
                    dataset: id.clone(),
                    dimensions: dims.join(", "),
                });
            }
        }
    }
    let csv = match format.as_deref() {
        Some("csv") => true,
        Some("json") | Some("jsonstat") => false,
        Some(f) => return Err(ApiError::BadFormat(f.to_string())),
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/csv") && !a.contains("application/json")),
    };
    let table = match dataset_table(&app, line, &id, periods.as_ref()).await {
        Ok(Some(t)) => t,
        Ok(None) => return Err(ApiError::NotPublished(id.clone())),
        Err(e) => {
            error!("{e}");
            return Err(ApiError::ReadDataset);
        }
    };
    let mut keep = BooleanArray::from(vec![true; table.num_rows()]);
    for (d, values) in &filters {
        let Some(a) = table.column_by_name(d) else {
            continue;
        };
        let Ok(a) = arrow::compute::cast(a, &arrow::datatypes::DataType::Utf8) else {
            continue;
        };
        let a = a.as_string::<i32>();
        let m: BooleanArray = (0..a.len())
            .map(|i| Some(a.is_valid(i) && values.contains(a.value(i))))
            .collect();
        keep = arrow::compute::and(&keep, &m).unwrap_or(keep);
    }
    let table = match arrow::compute::filter_record_batch(&table, &keep) {
        Ok(t) => t,
        Err(e) => {
            error!("{e}");
            return Err(ApiError::Filter);
        }
    };
    if csv {
        let mut out = Vec::new();
        {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            if let Err(e) = w.write(&table) {
                error!("{e}");
                return Err(ApiError::WriteCsv);
            }
        }
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::VARY, "Accept"),
            ],
            out,
        )
            .into_response());
    }
    let mut all_dims = vec![PERIOD_DIMENSION.to_string()];
    all_dims.extend(dims.iter().cloned());
    let mut meta = match crate::publish::jsonstat_meta(
        &entry.line,
        spec,
        &all_dims,
        geo.as_deref(),
        &entry.codesets,
    ) {
        Ok(m) => m,
        Err(e) => {
            error!("{e}");
            return Err(ApiError::Label);
        }
    };
    meta.column_labels.insert(
        PERIOD_DIMENSION.into(),
        [
            Some("Tilastojakso".into()),
            Some("Statistikperiod".into()),
            Some("Statistical period".into()),
        ],
    );
    match crate::publish::jsonstat::dataset(&table, &meta) {
        Ok(mut doc) => {
            doc["updated"] = json!(now_text());
            Ok((
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::VARY, "Accept"),
                ],
                axum::Json(doc),
            )
                .into_response())
        }
        Err(e) => {
            error!("{e}");
            Err(ApiError::WriteJsonStat)
        }
    }
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
        // A table that leaves the area out has none.
        assert_eq!(shapes["lajit"].dimensions, ["laji"]);
        assert_eq!(shapes["lajit"].area, None);
    }
}
