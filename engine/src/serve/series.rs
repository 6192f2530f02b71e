//! A dataset as a time series: one table over all its periods, from one release of each.
//!
//! Every API that serves data (the indicator API, PxWeb) reads a dataset through
//! [`read`], so that they agree on which release answers for a period (the current one, or
//! one asked for by run id: a revision), on what a period whose release has another schema
//! looks like, and on when the data were updated.
//!
//! Releases made at different times may publish different columns: a measure added to the
//! line later, a column retyped. The series is the union of the columns, in the order the
//! newest release gives them, then those only older ones have. A period whose release lacks
//! a measure keeps its rows: the measure is empty there, and the column
//! `status_<measure>` ([`crate::publish::jsonstat::measure_status_column`]) says
//! [`MISSING`] for those rows — never a dropped period.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, new_null_array};
use arrow::datatypes::{DataType, Field, Schema};
use serde::Serialize;

use crate::publish::manifest::ReleaseStatus;
use crate::publish::releases::Release;
use crate::serve::App;
use crate::serve::api::indicators::PERIOD_DIMENSION;
use crate::serve::error::ServeError;

pub(in crate::serve) use crate::publish::jsonstat::measure_status_column;

/// The status of a cell whose measure its period's release does not publish.
pub(in crate::serve) const MISSING: &str = "missing";

/// Which release answers for a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::serve) enum Pick {
    /// The current release of each period (what `latest.json` points at).
    Current,
    /// One release, by the id of the run that made it: its period only.
    Run(String),
}

/// The release a period's rows come from.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(in crate::serve) struct SeriesRelease {
    /// The period.
    pub period: String,
    /// The run that made the release (`?release=` asks for it again).
    pub run_id: String,
    /// When it was released (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub released: Option<String>,
    /// `preliminary` or `final`.
    pub status: ReleaseStatus,
    /// Its revision note, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Whether it is the period's current release.
    pub current: bool,
}

/// A dataset over its periods.
#[derive(Debug)]
pub(in crate::serve) struct Series {
    /// `jakso` first, then the union of the releases' columns; see the module doc.
    pub table: RecordBatch,
    /// The release used for each period, in period order.
    pub releases: Vec<SeriesRelease>,
    /// The latest release time among them: when the series was last updated.
    pub updated: Option<String>,
}

/// The releases of a line that answer for `dataset`: per period, the one `pick` chooses.
fn chosen<'a>(
    releases: &'a [Release],
    dataset: &str,
    periods: Option<&BTreeSet<String>>,
    pick: &Pick,
) -> Vec<&'a Release> {
    releases
        .iter()
        .filter(|r| match pick {
            Pick::Current => r.current,
            Pick::Run(id) => &r.run_id == id,
        })
        .filter(|r| periods.is_none_or(|p| p.contains(&r.period)))
        .filter(|r| r.datasets.iter().any(|(d, _)| d == dataset))
        .collect()
}

/// Reads `dataset` of `line` over the periods asked (all without `periods`), one release
/// per period as `pick` says. `None` when no release answers.
pub(in crate::serve) async fn read(
    app: &App,
    line: &str,
    dataset: &str,
    periods: Option<&BTreeSet<String>>,
    pick: &Pick,
) -> Result<Option<Series>, ServeError> {
    let releases = crate::publish::releases::list_cached(&app.store, line, &app.manifests)
        .await
        .map_err(ServeError::Releases)?;
    let mut parts = Vec::new();
    let mut used = Vec::new();
    for r in chosen(&releases, dataset, periods, pick) {
        let batches = read_release(app, line, r, dataset).await?;
        parts.push((r.period.clone(), batches));
        used.push(SeriesRelease {
            period: r.period.clone(),
            run_id: r.run_id.clone(),
            released: r.released.clone(),
            status: r.status,
            note: r.note.clone(),
            current: r.current,
        });
    }
    if parts.iter().all(|(_, b)| b.is_empty()) {
        return Ok(None);
    }
    let dimensions = app
        .lines
        .get(line)
        .and_then(|e| e.datasets.get(dataset))
        .map(|s| s.dimensions.clone())
        .unwrap_or_default();
    let table = merge(&parts, &dimensions)?;
    let updated = used.iter().filter_map(|r| r.released.clone()).max();
    Ok(Some(Series {
        table,
        releases: used,
        updated,
    }))
}

/// The batches of one release's Parquet file of `dataset` (none when it has no file).
async fn read_release(
    app: &App,
    line: &str,
    r: &Release,
    dataset: &str,
) -> Result<Vec<RecordBatch>, ServeError> {
    let path = crate::store::layout::release_file(line, &r.period, &r.run_id, dataset, "parquet");
    let Some(bytes) = app.get_bytes(&path).await else {
        return Ok(Vec::new());
    };
    let file_error = |source| ServeError::ReleaseFile {
        path: path.clone(),
        source,
    };
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(file_error)?
        .build()
        .map_err(file_error)?;
    reader
        .map(|b| {
            b.map_err(|source| ServeError::ReleaseBatch {
                path: path.clone(),
                source,
            })
        })
        .collect()
}

/// The type two releases' columns of one name are read as: the same type, a float for two
/// numbers, otherwise text.
fn common_type(a: &DataType, b: &DataType) -> DataType {
    if a == b {
        a.clone()
    } else if a.is_numeric() && b.is_numeric() {
        DataType::Float64
    } else {
        DataType::Utf8
    }
}

/// The columns of the series: the newest release's first, then those only older ones have,
/// each with a type every release's column casts to. Field metadata is left out (it
/// differs between releases).
fn union_fields(parts: &[(String, Vec<RecordBatch>)]) -> Vec<Field> {
    let mut order: Vec<String> = Vec::new();
    let mut types: BTreeMap<String, DataType> = BTreeMap::new();
    for (_, batches) in parts.iter().rev() {
        let Some(b) = batches.first() else { continue };
        for f in b.schema().fields() {
            match types.get_mut(f.name()) {
                Some(t) => *t = common_type(t, f.data_type()),
                None => {
                    order.push(f.name().clone());
                    types.insert(f.name().clone(), f.data_type().clone());
                }
            }
        }
    }
    order
        .into_iter()
        .map(|n| {
            let t = types[&n].clone();
            Field::new(n, t, true)
        })
        .collect()
}

/// One table of all parts: `jakso`, the union of the columns, and a `status_<measure>`
/// column for each measure some release lacks.
fn merge(
    parts: &[(String, Vec<RecordBatch>)],
    dimensions: &[String],
) -> Result<RecordBatch, ServeError> {
    let fields = union_fields(parts);
    let measures: Vec<&Field> = fields
        .iter()
        .filter(|f| f.data_type().is_numeric() && !dimensions.contains(f.name()))
        .collect();
    let lacking: Vec<&Field> = measures
        .iter()
        .copied()
        .filter(|m| {
            parts.iter().any(|(_, bs)| {
                bs.first()
                    .is_some_and(|b| b.schema().column_with_name(m.name()).is_none())
            })
        })
        .collect();
    let mut schema_fields = vec![Field::new(PERIOD_DIMENSION, DataType::Utf8, false)];
    schema_fields.extend(fields.iter().cloned());
    schema_fields.extend(
        lacking
            .iter()
            .map(|m| Field::new(measure_status_column(m.name()), DataType::Utf8, true)),
    );
    let schema = Arc::new(Schema::new(schema_fields));
    let mut tables = Vec::new();
    for (period, batches) in parts {
        for b in batches {
            tables.push(conform(b, period, &fields, &lacking, schema.clone())?);
        }
    }
    arrow::compute::concat_batches(&schema, &tables).map_err(ServeError::Table)
}

/// One release's batch in the series' columns.
fn conform(
    b: &RecordBatch,
    period: &str,
    fields: &[Field],
    lacking: &[&Field],
    schema: Arc<Schema>,
) -> Result<RecordBatch, ServeError> {
    let n = b.num_rows();
    let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec![period; n]))];
    for f in fields {
        cols.push(match b.column_by_name(f.name()) {
            Some(a) if a.data_type() == f.data_type() => a.clone(),
            Some(a) => arrow::compute::cast(a, f.data_type()).map_err(ServeError::Table)?,
            None => new_null_array(f.data_type(), n),
        });
    }
    for m in lacking {
        let missing = b.column_by_name(m.name()).is_none();
        cols.push(Arc::new(StringArray::from(vec![missing.then_some(MISSING); n])) as ArrayRef);
    }
    RecordBatch::try_new(schema, cols).map_err(ServeError::Table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Float64Array, Int64Array};

    fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(cols).expect("batch")
    }

    /// A period whose release lacks a measure stays in the series, the measure empty with
    /// its status (failed before: the period was dropped when its schema differed).
    #[test]
    fn a_period_with_another_schema_stays_with_the_missing_measure_marked() {
        let alue = |v: Vec<&str>| Arc::new(StringArray::from(v)) as ArrayRef;
        let old = batch(vec![
            ("alue", alue(vec!["01", "02"])),
            ("n", Arc::new(Int64Array::from(vec![5, 7])) as ArrayRef),
        ]);
        let new = batch(vec![
            ("alue", alue(vec!["01"])),
            ("n", Arc::new(Float64Array::from(vec![6.5])) as ArrayRef),
            (
                "osuus",
                Arc::new(Float64Array::from(vec![0.25])) as ArrayRef,
            ),
        ]);
        let parts = vec![
            ("2025-01".to_string(), vec![old]),
            ("2025-02".to_string(), vec![new]),
        ];
        let t = merge(&parts, &["alue".to_string()]).expect("merges");
        let names: Vec<String> = t
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["jakso", "alue", "n", "osuus", "status_osuus"]);
        assert_eq!(t.num_rows(), 3);
        let jakso = t.column(0).as_string::<i32>();
        assert_eq!(jakso.value(0), "2025-01");
        assert_eq!(jakso.value(2), "2025-02");
        // An integer and a float measure of one name read as floats, values kept.
        let n = t.column(2).as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!((n.value(0), n.value(1), n.value(2)), (5.0, 7.0, 6.5));
        let osuus = t.column(3);
        assert!(osuus.is_null(0) && osuus.is_null(1) && !osuus.is_null(2));
        let status = t.column(4).as_string::<i32>();
        assert_eq!(status.value(0), MISSING);
        assert!(status.is_null(2));
    }

    #[test]
    fn the_same_schema_adds_no_status_columns() {
        let b = || {
            batch(vec![(
                "n",
                Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
            )])
        };
        let parts = vec![("a".to_string(), vec![b()]), ("b".to_string(), vec![b()])];
        let t = merge(&parts, &[]).expect("merges");
        assert_eq!(t.num_columns(), 2);
        assert_eq!(t.column(1).data_type(), &DataType::Int64);
    }
}
