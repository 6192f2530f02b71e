//! A dataset as a time series: one table over all its periods, from one release of each.
//!
//! Every API that serves data (the indicator API, PxWeb) reads a dataset through
//! [`read`], so that they agree on which release answers for a period (the current one, or
//! one asked for by run id: a revision), on what a period whose release has another schema
//! looks like, and on when the data were updated.
//!
//! Releases made at different times may publish different columns: a measure added to the
//! line later, a dimension added or removed, a column retyped. The series has the line's
//! planned shape ([`crate::serve::TableShape`]): its dimensions as text, then its measures,
//! then measures only older releases have, then the row `status`. A period whose release
//! lacks a measure keeps its rows: the measure is empty there, and the column
//! `status_<measure>` ([`crate::publish::jsonstat::measure_status_column`]) says
//! [`MISSING`] for those rows — never a dropped period. A measure decided by a count of its
//! own has the column too, with its release's status (`suppressed` where the measure alone
//! is emptied, see [`crate::publish::disclosure`]). A release without a dimension
//! published totals over it: its rows take the dimension's total code (`SSS` for the area,
//! `YHT` otherwise). A release with a dimension the line no longer has keeps only its
//! total rows, so each cell of the series is one row. Integer measures stay integers;
//! a measure that is an integer in one release and a float in another is a float.
//!
//! Releases never change, so the series of one set of releases is kept ([`SeriesCache`],
//! a few recent ones) and a repeated request reads nothing but the listing. Parquet is
//! decoded off the request's task, and a series past [`MAX_ROWS`] is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, new_null_array};
use arrow::datatypes::{DataType, Field, Schema};
use serde::Serialize;

use crate::publish::releases::Release;
use crate::publish::revision::ReleaseStatus;
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

/// The most rows a series may have: published tables are aggregates, and one that grows
/// past this is asked for by period.
pub(in crate::serve) const MAX_ROWS: usize = 2_000_000;

/// The total code of a dimension a release does not have.
fn total_code(dimension: &str, area: Option<&str>) -> &'static str {
    if area == Some(dimension) {
        "SSS"
    } else {
        "YHT"
    }
}

/// The releases of a line that answer for `dataset`: per period, the one `pick` chooses;
/// a withdrawn release never answers.
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
        .filter(|r| r.status != ReleaseStatus::Withdrawn)
        .filter(|r| periods.is_none_or(|p| p.contains(&r.period)))
        .filter(|r| r.datasets.iter().any(|(d, _)| d == dataset))
        .collect()
}

/// The shape the series takes: the planned dimensions and measures and the area.
#[derive(Debug, Clone, Default)]
pub(in crate::serve) struct Shape {
    pub dimensions: Vec<String>,
    pub measures: Vec<String>,
    pub area: Option<String>,
}

/// Series made recently, by line, dataset and the releases read (which never change).
#[derive(Debug, Default)]
pub(in crate::serve) struct SeriesCache(
    std::sync::Mutex<std::collections::VecDeque<(String, Arc<RecordBatch>)>>,
);

impl SeriesCache {
    /// Series kept.
    const KEPT: usize = 16;

    fn get(&self, key: &str) -> Option<Arc<RecordBatch>> {
        let c = self.0.lock().ok()?;
        c.iter().find(|(k, _)| k == key).map(|(_, t)| t.clone())
    }

    fn put(&self, key: String, table: Arc<RecordBatch>) {
        if let Ok(mut c) = self.0.lock() {
            c.retain(|(k, _)| *k != key);
            c.push_front((key, table));
            c.truncate(Self::KEPT);
        }
    }
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
    let used: Vec<SeriesRelease> = chosen(&releases, dataset, periods, pick)
        .into_iter()
        .map(|r| SeriesRelease {
            period: r.period.clone(),
            run_id: r.run_id.clone(),
            released: r.released.clone(),
            status: r.status,
            note: r.note.clone(),
            current: r.current,
        })
        .collect();
    if used.is_empty() {
        return Ok(None);
    }
    let key = std::iter::once(format!("{line}\u{0}{dataset}"))
        .chain(
            used.iter()
                .map(|r| format!("{}\u{0}{}", r.period, r.run_id)),
        )
        .collect::<Vec<_>>()
        .join("\u{1}");
    let table = match app.series.get(&key) {
        Some(t) => t,
        None => {
            let shape = app
                .lines
                .get(line)
                .and_then(|e| e.datasets.get(dataset))
                .map(|s| Shape {
                    dimensions: s.dimensions.clone(),
                    measures: s.measures.clone(),
                    area: s.area.clone(),
                })
                .unwrap_or_default();
            let t = Arc::new(build(app, line, dataset, &used, shape).await?);
            app.series.put(key, t.clone());
            t
        }
    };
    let updated = used.iter().filter_map(|r| r.released.clone()).max();
    Ok(Some(Series {
        table: (*table).clone(),
        releases: used,
        updated,
    }))
}

/// Reads the releases' files and merges them into one table in the planned shape.
async fn build(
    app: &App,
    line: &str,
    dataset: &str,
    used: &[SeriesRelease],
    shape: Shape,
) -> Result<RecordBatch, ServeError> {
    let mut files = Vec::new();
    for r in used {
        let path =
            crate::store::layout::release_file(line, &r.period, &r.run_id, dataset, "parquet");
        if let Some(bytes) = release_bytes(app, &path).await? {
            files.push((r.period.clone(), path, bytes));
        }
    }
    let dataset = dataset.to_string();
    tokio::task::spawn_blocking(move || {
        let mut parts = Vec::new();
        let mut rows = 0usize;
        for (period, path, bytes) in files {
            let batches = decode(&path, bytes)?;
            rows += batches.iter().map(RecordBatch::num_rows).sum::<usize>();
            if rows > MAX_ROWS {
                return Err(ServeError::SeriesTooLarge {
                    dataset,
                    max: MAX_ROWS,
                });
            }
            parts.push((period, batches));
        }
        merge(&parts, &shape)
    })
    .await
    .map_err(|e| ServeError::Decode(e.to_string()))?
}

/// A release's file: `None` when the release has none of the dataset (it published the
/// dataset in another format only), an error when the store cannot be read.
async fn release_bytes(app: &App, path: &str) -> Result<Option<bytes::Bytes>, ServeError> {
    use object_store::ObjectStoreExt as _;
    let err = |source| ServeError::ReleaseObject {
        path: path.to_string(),
        source,
    };
    match app
        .store
        .inner
        .get(&object_store::path::Path::from(path))
        .await
    {
        Ok(got) => Ok(Some(got.bytes().await.map_err(err)?)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(err(e)),
    }
}

/// The batches of a Parquet file.
fn decode(path: &str, bytes: bytes::Bytes) -> Result<Vec<RecordBatch>, ServeError> {
    let file_error = |source| ServeError::ReleaseFile {
        path: path.to_string(),
        source,
    };
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(file_error)?
        .build()
        .map_err(file_error)?;
    reader
        .map(|b| {
            b.map_err(|source| ServeError::ReleaseBatch {
                path: path.to_string(),
                source,
            })
        })
        .collect()
}

/// The type a measure is read as across releases: integers stay integers (widened to
/// 64 bits), any float makes it a float.
fn measure_type(types: &[&DataType]) -> DataType {
    if types.iter().all(|t| t.is_integer()) {
        DataType::Int64
    } else {
        DataType::Float64
    }
}

/// The measures of the series: the planned ones, then numeric columns that are neither
/// planned dimensions nor planned measures (measures older releases had), each with its
/// type across releases.
fn measure_fields(parts: &[(String, Vec<RecordBatch>)], shape: &Shape) -> Vec<Field> {
    let mut names: Vec<String> = shape.measures.clone();
    let mut types: BTreeMap<String, Vec<DataType>> = BTreeMap::new();
    for (_, batches) in parts.iter().rev() {
        let Some(b) = batches.first() else { continue };
        for f in b.schema().fields() {
            let n = f.name();
            if !f.data_type().is_numeric() || shape.dimensions.contains(n) {
                continue;
            }
            if !names.contains(n) {
                names.push(n.clone());
            }
            types
                .entry(n.clone())
                .or_default()
                .push(f.data_type().clone());
        }
    }
    names
        .into_iter()
        .map(|n| {
            let t = types
                .get(&n)
                .map(|ts| measure_type(&ts.iter().collect::<Vec<_>>()));
            Field::new(n, t.unwrap_or(DataType::Float64), true)
        })
        .collect()
}

/// One table of all parts in the planned shape; see the module doc.
fn merge(parts: &[(String, Vec<RecordBatch>)], shape: &Shape) -> Result<RecordBatch, ServeError> {
    let measures = measure_fields(parts, shape);
    let lacking: Vec<&Field> = measures
        .iter()
        .filter(|m| {
            // A measure some release lacks, or one with a status of its own (a measure
            // decided by a count of its own, see `crate::publish::disclosure`).
            let own = measure_status_column(m.name());
            parts.iter().any(|(_, bs)| {
                bs.first().is_some_and(|b| {
                    b.schema().column_with_name(m.name()).is_none()
                        || b.schema().column_with_name(&own).is_some()
                })
            })
        })
        .collect();
    let mut fields = vec![Field::new(PERIOD_DIMENSION, DataType::Utf8, false)];
    fields.extend(
        shape
            .dimensions
            .iter()
            .map(|d| Field::new(d, DataType::Utf8, true)),
    );
    fields.extend(measures.iter().cloned());
    fields.push(Field::new(crate::plan::STATUS_COLUMN, DataType::Utf8, true));
    fields.extend(
        lacking
            .iter()
            .map(|m| Field::new(measure_status_column(m.name()), DataType::Utf8, true)),
    );
    let schema = Arc::new(Schema::new(fields));
    let mut tables = Vec::new();
    for (period, batches) in parts {
        for b in batches {
            let b = totals_only(b, shape)?;
            tables.push(conform(
                &b,
                period,
                shape,
                (&measures, &lacking),
                schema.clone(),
            )?);
        }
    }
    arrow::compute::concat_batches(&schema, &tables).map_err(ServeError::Table)
}

/// The rows of a release whose text columns the line no longer has as dimensions (a
/// dimension since removed) are their totals: only those rows are kept.
fn totals_only(b: &RecordBatch, shape: &Shape) -> Result<RecordBatch, ServeError> {
    use arrow::array::{AsArray, BooleanArray};
    let mut keep: Option<BooleanArray> = None;
    for (i, f) in b.schema().fields().iter().enumerate() {
        let n = f.name();
        let dropped_dimension = !f.data_type().is_numeric()
            && !shape.dimensions.contains(n)
            && n != crate::plan::STATUS_COLUMN
            && !n.starts_with(&format!("{}_", crate::plan::STATUS_COLUMN));
        if !dropped_dimension {
            continue;
        }
        let text = arrow::compute::cast(b.column(i), &DataType::Utf8).map_err(ServeError::Table)?;
        let text = text.as_string::<i32>();
        let total: BooleanArray = text
            .iter()
            .map(|v| Some(matches!(v, Some("YHT") | Some("SSS"))))
            .collect();
        keep = Some(match keep {
            Some(k) => arrow::compute::and(&k, &total).map_err(ServeError::Table)?,
            None => total,
        });
    }
    match keep {
        Some(k) => arrow::compute::filter_record_batch(b, &k).map_err(ServeError::Table),
        None => Ok(b.clone()),
    }
}

/// One release's batch in the series' columns.
fn conform(
    b: &RecordBatch,
    period: &str,
    shape: &Shape,
    (measures, lacking): (&[Field], &[&Field]),
    schema: Arc<Schema>,
) -> Result<RecordBatch, ServeError> {
    let n = b.num_rows();
    let cast = |a: &ArrayRef, t: &DataType| arrow::compute::cast(a, t).map_err(ServeError::Table);
    let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec![period; n]))];
    for d in &shape.dimensions {
        cols.push(match b.column_by_name(d) {
            Some(a) => cast(a, &DataType::Utf8)?,
            None => Arc::new(StringArray::from(vec![
                total_code(d, shape.area.as_deref());
                n
            ])),
        });
    }
    for m in measures {
        cols.push(match b.column_by_name(m.name()) {
            Some(a) => cast(a, m.data_type())?,
            None => new_null_array(m.data_type(), n),
        });
    }
    cols.push(match b.column_by_name(crate::plan::STATUS_COLUMN) {
        Some(a) => cast(a, &DataType::Utf8)?,
        None => new_null_array(&DataType::Utf8, n),
    });
    for m in lacking {
        let missing = b.column_by_name(m.name()).is_none();
        cols.push(match b.column_by_name(&measure_status_column(m.name())) {
            Some(a) if !missing => cast(a, &DataType::Utf8)?,
            _ => Arc::new(StringArray::from(vec![missing.then_some(MISSING); n])) as ArrayRef,
        });
    }
    RecordBatch::try_new(schema, cols).map_err(ServeError::Table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Float64Array, Int32Array, Int64Array};

    fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(cols).expect("batch")
    }

    fn text(v: Vec<&str>) -> ArrayRef {
        Arc::new(StringArray::from(v))
    }

    fn shape(dimensions: &[&str], measures: &[&str], area: Option<&str>) -> Shape {
        Shape {
            dimensions: dimensions.iter().map(|s| s.to_string()).collect(),
            measures: measures.iter().map(|s| s.to_string()).collect(),
            area: area.map(String::from),
        }
    }

    fn names(t: &RecordBatch) -> Vec<String> {
        t.schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// A period whose release lacks a measure stays in the series, the measure empty with
    /// its status (failed before: the period was dropped when its schema differed).
    #[test]
    fn a_period_with_another_schema_stays_with_the_missing_measure_marked() {
        let old = batch(vec![
            ("alue", text(vec!["01", "02"])),
            ("n", Arc::new(Int64Array::from(vec![5, 7])) as ArrayRef),
        ]);
        let new = batch(vec![
            ("alue", text(vec!["01"])),
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
        let t = merge(&parts, &shape(&["alue"], &["n", "osuus"], Some("alue"))).expect("merges");
        assert_eq!(
            names(&t),
            ["jakso", "alue", "n", "osuus", "status", "status_osuus"]
        );
        assert_eq!(t.num_rows(), 3);
        let jakso = t.column(0).as_string::<i32>();
        assert_eq!(jakso.value(0), "2025-01");
        assert_eq!(jakso.value(2), "2025-02");
        // An integer and a float measure of one name read as floats, values kept.
        let n = t.column(2).as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!((n.value(0), n.value(1), n.value(2)), (5.0, 7.0, 6.5));
        let osuus = t.column(3);
        assert!(osuus.is_null(0) && osuus.is_null(1) && !osuus.is_null(2));
        let status = t.column(5).as_string::<i32>();
        assert_eq!(status.value(0), MISSING);
        assert!(status.is_null(2));
    }

    /// A dimension a release does not have takes its total code; one the line no longer has
    /// keeps only its total rows, so each cell is one row (failed before: a breakdown row
    /// overwrote the total, and a missing dimension was the empty category).
    #[test]
    fn dimensions_added_or_removed_keep_one_row_per_cell() {
        let without_age = batch(vec![
            ("alue", text(vec!["01", "SSS"])),
            ("n", Arc::new(Int64Array::from(vec![3, 9])) as ArrayRef),
        ]);
        let with_sex = batch(vec![
            ("alue", text(vec!["01", "01", "01"])),
            ("sukupuoli", text(vec!["1", "2", "YHT"])),
            ("n", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
        ]);
        let parts = vec![
            ("2024".to_string(), vec![without_age]),
            ("2025".to_string(), vec![with_sex]),
        ];
        // The line now has no `sukupuoli` but an `ika` that 2024 and 2025 lack.
        let t = merge(&parts, &shape(&["alue", "ika"], &["n"], Some("alue"))).expect("merges");
        assert_eq!(names(&t), ["jakso", "alue", "ika", "n", "status"]);
        assert_eq!(t.num_rows(), 3, "2024: two rows; 2025: its total only");
        let ika = t.column(2).as_string::<i32>();
        assert!((0..3).all(|i| ika.value(i) == "YHT"));
        let n = t.column(3).as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(n.value(2), 3);
        // The area's total is SSS.
        let s = shape(&["alue"], &["n"], Some("alue"));
        let no_area = batch(vec![("n", Arc::new(Int64Array::from(vec![4])) as ArrayRef)]);
        let t = merge(&[("2025".into(), vec![no_area])], &s).expect("merges");
        assert_eq!(t.column(1).as_string::<i32>().value(0), "SSS");
    }

    /// Integers of different widths stay integers; a numeric dimension becomes its text
    /// (failed before: Int32 and Int64 became floats and a code `2024` read `2024.0`).
    #[test]
    fn integers_stay_integers_and_dimension_codes_stay_codes() {
        let a = batch(vec![
            ("vuosi", Arc::new(Int32Array::from(vec![2024])) as ArrayRef),
            ("n", Arc::new(Int32Array::from(vec![1])) as ArrayRef),
        ]);
        let b = batch(vec![
            ("vuosi", Arc::new(Int64Array::from(vec![2025])) as ArrayRef),
            ("n", Arc::new(Int64Array::from(vec![2])) as ArrayRef),
        ]);
        let parts = vec![("2024".to_string(), vec![a]), ("2025".to_string(), vec![b])];
        let t = merge(&parts, &shape(&["vuosi"], &["n"], None)).expect("merges");
        assert_eq!(t.column(1).as_string::<i32>().value(0), "2024");
        assert_eq!(t.column(2).data_type(), &DataType::Int64);
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
        let t = merge(&parts, &shape(&[], &["n"], None)).expect("merges");
        assert_eq!(names(&t), ["jakso", "n", "status"]);
        assert_eq!(t.column(1).data_type(), &DataType::Int64);
    }

    #[test]
    fn a_withdrawn_release_never_answers() {
        let release = |run: &str, current: bool, status: ReleaseStatus| Release {
            line: "l".into(),
            period: "2025".into(),
            run_id: run.into(),
            current,
            datasets: vec![("d".into(), 1)],
            areas: Default::default(),
            released: None,
            status,
            note: None,
        };
        let all = [
            release("a", false, ReleaseStatus::Preliminary),
            release("b", true, ReleaseStatus::Withdrawn),
        ];
        assert!(chosen(&all, "d", None, &Pick::Current).is_empty());
        assert!(chosen(&all, "d", None, &Pick::Run("b".into())).is_empty());
        assert_eq!(chosen(&all, "d", None, &Pick::Run("a".into())).len(), 1);
    }
}
