//! JSON-stat 2.0: writing published tables and checking JSON-stat documents.
//!
//! A published table becomes one dataset: its dimensions in order, then a metric dimension
//! `tiedot` whose categories are the numeric measures (with units and decimals). Values are
//! dense, row-major, `null` where a combination has no row or a cell is suppressed; the
//! `status` of a suppressed cell is `suppressed`. Labels are Finnish; Swedish and English
//! labels go to `extension.labels`.
//!
//! [`validate`] checks a document against the semantic rules of the JSON-stat 2.0 format
//! (those that a JSON Schema cannot express), with stable issue codes.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use serde_json::{Map, Value, json};

use crate::publish::PublishError;

/// Label of a code in Finnish, Swedish and English.
pub type Labels = BTreeMap<String, [Option<String>; 3]>;

/// The name of the metric dimension (a published column may not have it: the planner
/// refuses one with V208).
pub const METRIC: &str = crate::plan::MEASURE_DIMENSION;

/// The column that gives a measure's own status where it differs from its row's (e.g. a
/// measure a period's release does not publish, in a time series of releases):
/// `status_<measure>`. Where it has a value, that is the cell's status.
pub fn measure_status_column(measure: &str) -> String {
    format!("{}_{measure}", crate::plan::STATUS_COLUMN)
}

/// What the writer needs besides the table.
pub struct DatasetMeta<'a> {
    pub label: [Option<String>; 3],
    pub source: Option<String>,
    pub dimensions: &'a [String],
    /// The dimension that is an area (the step's declared `area`): its role is `geo`.
    pub area: Option<&'a str>,
    /// Label of each column (dimension or measure), fi/sv/en.
    pub column_labels: BTreeMap<String, [Option<String>; 3]>,
    pub units: BTreeMap<String, String>,
    /// Labels of the codes of each dimension.
    pub code_labels: BTreeMap<String, Labels>,
}

/// The labels of the total codes (`SSS` the whole country, `YHT` all), fi/sv/en.
pub(crate) fn total_label(code: &str) -> Option<[Option<String>; 3]> {
    let l = |a: &str, b: &str, c: &str| {
        Some([
            Some(a.to_string()),
            Some(b.to_string()),
            Some(c.to_string()),
        ])
    };
    match code {
        "SSS" => l("Koko maa", "Hela landet", "Whole country"),
        "YHT" => l("Yhteensä", "Totalt", "Total"),
        _ => None,
    }
}

fn role_of(dim: &str, area: Option<&str>) -> Option<&'static str> {
    if area == Some(dim) {
        Some("geo")
    } else if matches!(
        dim,
        "kuukausi" | "vuosi" | "neljannes" | "viikko" | "jakso" | "paiva"
    ) {
        Some("time")
    } else {
        None
    }
}

fn decimals(a: &dyn Array) -> u32 {
    match a.data_type() {
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let Ok(f) = arrow::compute::cast(a, &DataType::Float64) else {
                return 1;
            };
            let f = f.as_primitive::<arrow::datatypes::Float64Type>();
            let mut d = 0;
            for v in f.iter().flatten() {
                while d < 6
                    && ((v * 10f64.powi(d as i32)).round() - v * 10f64.powi(d as i32)).abs() > 1e-9
                {
                    d += 1;
                }
            }
            d
        }
        _ => 0,
    }
}

/// The largest cube a dataset may describe (cell indexes stay exact in a JavaScript
/// number). Its `size` multiplies the category counts of
/// every dimension, so a few hundred distinct values in a handful of columns would
/// otherwise ask for more cells than memory holds.
pub(crate) const MAX_CELLS: usize = 1 << 53;

/// The `value` member: a dense array when most cells are filled, otherwise the sparse
/// object form of JSON-stat 2.0 (`{"index": value}`), so that the answer grows with the
/// rows of the table and never with the product of its category counts.
enum Values {
    Dense(Vec<Value>),
    Sparse(BTreeMap<usize, Value>),
}

impl Values {
    fn new(cells: usize, filled: usize) -> Self {
        if cells <= filled.saturating_mul(2).saturating_add(1024) {
            Values::Dense(vec![Value::Null; cells])
        } else {
            Values::Sparse(BTreeMap::new())
        }
    }

    fn set(&mut self, idx: usize, v: Value) {
        match self {
            Values::Dense(a) => a[idx] = v,
            Values::Sparse(m) => {
                m.insert(idx, v);
            }
        }
    }

    fn into_json(self) -> Value {
        match self {
            Values::Dense(a) => Value::Array(a),
            Values::Sparse(m) => {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }
        }
    }
}

/// The languages of labels: Finnish is the main label, the others go to the extension.
const LANG: [&str; 3] = ["fi", "sv", "en"];

/// Builds the JSON-stat dataset of a published table.
pub fn dataset(table: &RecordBatch, meta: &DatasetMeta) -> Result<Value, PublishError> {
    let n = table.num_rows();
    let measures = measure_names(table, meta.dimensions);
    let (categories, row_keys) = categorise(table, meta.dimensions)?;
    let mut size: Vec<usize> = categories.iter().map(Vec::len).collect();
    size.push(measures.len());
    let cells = cube_cells(&size)?;
    let mut values = Values::new(cells, n * measures.len());
    let status_col = table
        .column_by_name(crate::plan::STATUS_COLUMN)
        .and_then(|a| arrow::compute::cast(a, &DataType::Utf8).ok());
    let measure_arrays = measure_columns(table, &measures)?;
    let measure_status: Vec<Option<arrow::array::ArrayRef>> = measures
        .iter()
        .map(|m| {
            table
                .column_by_name(&measure_status_column(m))
                .and_then(|a| arrow::compute::cast(a, &DataType::Utf8).ok())
        })
        .collect();
    let status = fill_cells(
        &row_keys,
        &size,
        &measure_arrays,
        (status_col.as_ref(), &measure_status),
        &mut values,
    )?;
    let (mut dimension, mut extension_labels) = dimension_entries(meta, &categories);
    metric_labels(meta, &measures, &mut extension_labels);
    dimension.insert(
        METRIC.to_string(),
        metric_dimension(meta, &measures, &measure_arrays),
    );
    let mut ids: Vec<String> = meta.dimensions.to_vec();
    ids.push(METRIC.to_string());
    let role = roles(meta.dimensions, meta.area);
    let mut doc = Map::new();
    doc.insert("version".into(), json!("2.0"));
    doc.insert("class".into(), json!("dataset"));
    doc.insert(
        "label".into(),
        json!(meta.label[0].clone().unwrap_or_default()),
    );
    if let Some(s) = &meta.source {
        doc.insert("source".into(), json!(s));
    }
    doc.insert("id".into(), json!(ids));
    doc.insert("size".into(), json!(size));
    doc.insert("role".into(), json!(role));
    doc.insert("dimension".into(), Value::Object(dimension));
    doc.insert("value".into(), values.into_json());
    if !status.is_empty() {
        doc.insert("status".into(), Value::Object(status));
    }
    let ext = extension(meta, extension_labels);
    if !ext.is_empty() {
        doc.insert("extension".into(), json!({ "labels": ext }));
    }
    Ok(Value::Object(doc))
}

/// The numeric columns that are not dimensions: the categories of the metric dimension.
fn measure_names(table: &RecordBatch, dimensions: &[String]) -> Vec<String> {
    table
        .schema()
        .fields()
        .iter()
        .filter(|f| !dimensions.contains(f.name()) && f.data_type().is_numeric())
        .map(|f| f.name().clone())
        .collect()
}

/// A column of the table cast to text.
fn text_column(table: &RecordBatch, name: &str) -> Result<arrow::array::ArrayRef, PublishError> {
    let a = table
        .column_by_name(name)
        .ok_or_else(|| PublishError::NoColumn {
            name: name.to_string(),
        })?;
    arrow::compute::cast(a, &DataType::Utf8).map_err(PublishError::Table)
}

/// Each dimension's categories, and each row's category position in each dimension.
type Categorised = (Vec<Vec<String>>, Vec<Vec<usize>>);

/// Categories of each dimension, in order of first appearance (the table is sorted), and
/// the category position of each row in each dimension.
fn categorise(table: &RecordBatch, dimensions: &[String]) -> Result<Categorised, PublishError> {
    let mut categories: Vec<Vec<String>> = Vec::new();
    let mut row_keys: Vec<Vec<usize>> = vec![Vec::new(); table.num_rows()];
    for d in dimensions {
        let a = text_column(table, d)?;
        let a = a.as_string::<i32>();
        let mut order: Vec<String> = Vec::new();
        let mut pos: BTreeMap<String, usize> = BTreeMap::new();
        for (i, key) in row_keys.iter_mut().enumerate() {
            let v = if a.is_valid(i) {
                a.value(i).to_string()
            } else {
                String::new()
            };
            let p = *pos.entry(v.clone()).or_insert_with(|| {
                order.push(v);
                order.len() - 1
            });
            key.push(p);
        }
        categories.push(order);
    }
    Ok((categories, row_keys))
}

/// The number of cells of the cube, refused past [`MAX_CELLS`].
fn cube_cells(size: &[usize]) -> Result<usize, PublishError> {
    size.iter()
        .try_fold(1usize, |acc, &s| acc.checked_mul(s))
        .filter(|&c| c <= MAX_CELLS)
        .ok_or_else(|| PublishError::TooManyCells {
            dimensions: size.len() - 1,
        })
}

/// The measure columns cast to `Float64`, in the order of `measures`.
fn measure_columns(
    table: &RecordBatch,
    measures: &[String],
) -> Result<Vec<arrow::array::ArrayRef>, PublishError> {
    measures
        .iter()
        .map(|m| {
            let a = table
                .column_by_name(m)
                .ok_or_else(|| PublishError::NoColumn { name: m.clone() })?;
            arrow::compute::cast(a, &DataType::Float64).map_err(PublishError::Table)
        })
        .collect()
}

/// Puts each row's measures into their cells of `values`; returns the `status` member.
fn fill_cells(
    row_keys: &[Vec<usize>],
    size: &[usize],
    measure_arrays: &[arrow::array::ArrayRef],
    (status_col, measure_status): (
        Option<&arrow::array::ArrayRef>,
        &[Option<arrow::array::ArrayRef>],
    ),
    values: &mut Values,
) -> Result<Map<String, Value>, PublishError> {
    let mut status = Map::new();
    // Each cell is one row: a second row for a cell would overwrite the first's figures.
    let mut seen = std::collections::HashSet::with_capacity(row_keys.len());
    for (row, key) in row_keys.iter().enumerate() {
        let mut base = 0usize;
        for (k, &p) in key.iter().enumerate() {
            base = base * size[k] + p;
        }
        if !seen.insert(base) {
            return Err(PublishError::DuplicateCell {
                dimensions: key.len(),
            });
        }
        for (m, a) in measure_arrays.iter().enumerate() {
            let idx = base * measure_arrays.len() + m;
            let a = a.as_primitive::<arrow::datatypes::Float64Type>();
            if a.is_valid(row) {
                let v = a.value(row);
                values.set(
                    idx,
                    if v.fract() == 0.0 && v.abs() < 9e15 {
                        json!(v as i64)
                    } else {
                        json!(v)
                    },
                );
            }
            let own = measure_status[m]
                .as_ref()
                .map(|s| s.as_string::<i32>())
                .filter(|s| s.is_valid(row));
            if let Some(s) = own.or_else(|| {
                status_col
                    .map(|s| s.as_string::<i32>())
                    .filter(|s| s.is_valid(row))
            }) {
                status.insert(idx.to_string(), json!(s.value(row)));
            }
        }
    }
    Ok(status)
}

/// Labels in other languages, keyed by language.
type LabelsByLanguage = BTreeMap<&'static str, Map<String, Value>>;

/// The `dimension` entries of the table's dimensions, and their Swedish and English
/// labels keyed by language for `extension.labels`.
fn dimension_entries(
    meta: &DatasetMeta,
    categories: &[Vec<String>],
) -> (Map<String, Value>, LabelsByLanguage) {
    let mut dimension = Map::new();
    let mut extension_labels: BTreeMap<&'static str, Map<String, Value>> = BTreeMap::new();
    for (k, d) in meta.dimensions.iter().enumerate() {
        let (labels, other) = code_labels(meta, d, &categories[k]);
        let dl = meta
            .column_labels
            .get(d)
            .cloned()
            .unwrap_or([None, None, None]);
        dimension.insert(
            d.clone(),
            json!({
                "label": dl[0].clone().unwrap_or_else(|| d.clone()),
                "category": { "index": categories[k], "label": labels }
            }),
        );
        for j in 1..3 {
            let mut entry = Map::new();
            if let Some(t) = &dl[j] {
                entry.insert("label".into(), json!(t));
            }
            if !other[j - 1].is_empty() {
                entry.insert("category".into(), Value::Object(other[j - 1].clone()));
            }
            if !entry.is_empty() {
                extension_labels
                    .entry(LANG[j])
                    .or_default()
                    .insert(d.clone(), Value::Object(entry));
            }
        }
    }
    (dimension, extension_labels)
}

/// The Finnish labels of the codes of dimension `d`, and the Swedish and English ones.
fn code_labels(
    meta: &DatasetMeta,
    d: &str,
    codes: &[String],
) -> (Map<String, Value>, [Map<String, Value>; 2]) {
    let mut labels = Map::new();
    let mut other: [Map<String, Value>; 2] = [Map::new(), Map::new()];
    for code in codes {
        let l = meta
            .code_labels
            .get(d)
            .and_then(|m| m.get(code).cloned())
            .or_else(|| total_label(code));
        let l = l.unwrap_or([None, None, None]);
        labels.insert(
            code.clone(),
            json!(l[0].clone().unwrap_or_else(|| code.clone())),
        );
        for j in 1..3 {
            if let Some(t) = &l[j] {
                other[j - 1].insert(code.clone(), json!(t));
            }
        }
    }
    (labels, other)
}

/// The metric dimension `tiedot`: the measures with their labels, decimals and units.
fn metric_dimension(
    meta: &DatasetMeta,
    measures: &[String],
    measure_arrays: &[arrow::array::ArrayRef],
) -> Value {
    let mut mlabels = Map::new();
    let mut units = Map::new();
    for (m, a) in measures.iter().zip(measure_arrays) {
        let l = meta
            .column_labels
            .get(m)
            .cloned()
            .unwrap_or([None, None, None]);
        mlabels.insert(m.clone(), json!(l[0].clone().unwrap_or_else(|| m.clone())));
        let mut unit = Map::new();
        unit.insert("decimals".into(), json!(decimals(a.as_ref())));
        if let Some(u) = meta.units.get(m) {
            unit.insert("label".into(), json!(u));
        }
        units.insert(m.clone(), Value::Object(unit));
    }
    json!({ "label": "tiedot", "category": { "index": measures, "label": mlabels, "unit": units } })
}

/// The Swedish and English labels of the measures, as `extension.labels.<lang>.tiedot`
/// (the reporting page names the measures in the language it shows).
fn metric_labels(meta: &DatasetMeta, measures: &[String], out: &mut LabelsByLanguage) {
    for (j, lang) in LANG.iter().enumerate().skip(1) {
        let labels: Map<String, Value> = measures
            .iter()
            .filter_map(|m| {
                let label = meta.column_labels.get(m)?[j].clone()?;
                Some((m.clone(), json!(label)))
            })
            .collect();
        if !labels.is_empty() {
            out.entry(*lang)
                .or_default()
                .insert(METRIC.to_string(), json!({ "category": labels }));
        }
    }
}

/// The `role` member: the geographic dimension (the declared area), time dimensions, and
/// the metric.
fn roles(dimensions: &[String], area: Option<&str>) -> BTreeMap<&'static str, Vec<String>> {
    let mut role: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for d in dimensions {
        if let Some(r) = role_of(d, area) {
            role.entry(r).or_default().push(d.clone());
        }
    }
    role.entry("metric").or_default().push(METRIC.to_string());
    role
}

/// The `extension.labels` member: the Swedish and English labels of the dataset and its
/// dimensions, by language.
fn extension(
    meta: &DatasetMeta,
    mut extension_labels: BTreeMap<&'static str, Map<String, Value>>,
) -> Map<String, Value> {
    let mut ext = Map::new();
    for (j, code) in LANG.iter().enumerate().skip(1) {
        let mut l = extension_labels.remove(code).unwrap_or_default();
        if let Some(t) = &meta.label[j] {
            l.insert("label".into(), json!(t));
        }
        if !l.is_empty() {
            ext.insert((*code).to_string(), Value::Object(l));
        }
    }
    ext
}

mod validate;
pub use validate::{Issue, validate};

#[cfg(test)]
mod tests;
