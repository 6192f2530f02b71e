//! One table read for an answer: its variables with their codes and labels in the asked
//! language, and each published row's place and cells.
//!
//! The rows are the current release of each period (`serve::series`), as published: a
//! cell's value is the row's measure unchanged, a suppressed row's emptied measures are
//! [`Cell::Suppressed`], and a measure a period's release lacks is [`Cell::Missing`].
//! Codes come in the order the releases give them (periods ascending).

use std::collections::HashMap;

use arrow::array::{Array, AsArray, Float64Array};
use arrow::datatypes::{DataType, Float64Type};
use arrow::record_batch::RecordBatch;
use tracing::error;

use crate::publish::jsonstat::Labels;
use crate::serve::App;
use crate::serve::api::indicators::PERIOD_DIMENSION;
use crate::serve::error::PxError;
use crate::serve::pxweb::{CONTENTS, Lang, TableRef, find};
use crate::serve::series::{Pick, Series, SeriesRelease};

/// What a variable is to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// The period (`jakso`).
    Time,
    /// The area dimension.
    Geo,
    /// Another dimension.
    Other,
    /// The contents variable: its values are the measures.
    Contents,
}

/// A variable of the table.
pub(super) struct Variable {
    pub(super) code: String,
    pub(super) label: String,
    pub(super) role: Role,
    /// Its codes, in order.
    pub(super) values: Vec<String>,
    /// The label of each code.
    pub(super) texts: Vec<String>,
    /// The code list its codes are labelled from (`vs_<code set>`).
    pub(super) codelist: Option<String>,
}

impl Variable {
    /// The position of its total code (`SSS`, `YHT`): the value that stands for all.
    pub(super) fn total(&self) -> Option<usize> {
        self.values.iter().position(|c| c == "SSS" || c == "YHT")
    }
}

/// A measure (a value of the contents variable).
pub(super) struct Measure {
    pub(super) unit: Option<String>,
    /// The decimals its published values have (at most 15).
    pub(super) decimals: u32,
}

/// One cell of the cube.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Cell {
    /// The published value.
    Value(f64),
    /// Emptied by disclosure control (the row's `status` is `suppressed`).
    Suppressed,
    /// A measure the period's release does not have.
    Missing,
    /// No figure: no row for the combination, or an empty value.
    Empty,
}

impl Cell {
    /// The symbol of a cell without a figure in csv, xlsx and PX (`..` suppressed, `...`
    /// missing from the release, `.` no figure).
    pub(super) fn symbol(self) -> Option<&'static str> {
        match self {
            Cell::Value(_) => None,
            Cell::Suppressed => Some(".."),
            Cell::Missing => Some("..."),
            Cell::Empty => Some("."),
        }
    }

    /// The JSON-stat `status` of the cell: the symbol of a suppressed or missing one.
    pub(super) fn status(self) -> Option<&'static str> {
        match self {
            Cell::Suppressed | Cell::Missing => self.symbol(),
            Cell::Value(_) | Cell::Empty => None,
        }
    }
}

/// The published rows: where each sits in the variables and what its cells hold.
pub(super) struct Rows {
    /// Each row's code position in the period and each dimension: `keys[variable][row]`.
    keys: Vec<Vec<u32>>,
    /// Each measure's values.
    values: Vec<Float64Array>,
    /// Whether each row was suppressed.
    suppressed: Vec<bool>,
    /// For each measure, whether each row's release lacks it.
    missing: Vec<Vec<bool>>,
}

impl Rows {
    pub(super) fn len(&self) -> usize {
        self.suppressed.len()
    }

    /// The position of row `row`'s code in variable `variable` (not the contents one).
    pub(super) fn key(&self, variable: usize, row: usize) -> usize {
        self.keys[variable][row] as usize
    }

    /// Row `row`'s cell of measure `measure`.
    pub(super) fn cell(&self, row: usize, measure: usize) -> Cell {
        let a = &self.values[measure];
        if a.is_valid(row) && a.value(row).is_finite() {
            Cell::Value(a.value(row))
        } else if self.suppressed[row] {
            Cell::Suppressed
        } else if self.missing[measure][row] {
            Cell::Missing
        } else {
            Cell::Empty
        }
    }
}

/// A table read for one answer, in one language.
pub(super) struct Model {
    pub(super) id: String,
    pub(super) line: String,
    pub(super) lang: Lang,
    /// The table's label.
    pub(super) label: String,
    /// The line's title.
    pub(super) title: String,
    pub(super) description: Option<String>,
    /// Who answers for the figures (the line's `owner`).
    pub(super) source: Option<String>,
    /// Whom to ask (the line's `contact`).
    pub(super) contact: Option<String>,
    /// The period, the dimensions, the contents.
    pub(super) variables: Vec<Variable>,
    /// The measures, in the order of the contents variable's values.
    pub(super) measures: Vec<Measure>,
    /// The latest release time among the periods (RFC 3339).
    pub(super) updated: Option<String>,
    /// The release read for each period, in period order.
    pub(super) releases: Vec<SeriesRelease>,
    pub(super) rows: Rows,
}

impl Model {
    /// The contents variable (always the last).
    pub(super) fn contents(&self) -> &Variable {
        &self.variables[self.variables.len() - 1]
    }
}

/// Reads table `id`: 404 for no such table or no release of it.
pub(super) async fn load(app: &App, id: &str, lang: Lang) -> Result<Model, PxError> {
    let t = find(app, id)?;
    let dims = t.dimensions();
    let area = crate::serve::api::indicators::dataset_area(t.entry, t.id);
    let series = match crate::serve::series::read(app, t.line, t.id, None, &Pick::Current).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(PxError::NotPublished(t.id.to_string())),
        Err(e) => {
            error!("{e}");
            return Err(PxError::ReadTable);
        }
    };
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
    let Series {
        table,
        releases,
        updated,
        ..
    } = series;
    let periods: Vec<String> = releases.iter().map(|r| r.period.clone()).collect();
    let labels = t.variable_labels(&dims, lang);
    let shape = Shape {
        dims: &dims,
        area: area.as_deref(),
        code_labels: &meta.code_labels,
        labels: &labels,
    };
    let (mut variables, keys) = dimensions(&t, &table, periods, &shape, lang);
    let names = measures_of(&table, &dims);
    let rows = read_rows(&table, &names, keys)?;
    let measures = (names.iter().zip(&rows.values))
        .map(|(m, a)| Measure {
            unit: t.spec.columns.get(m.as_str()).and_then(|c| c.unit.clone()),
            decimals: decimals_of(&table, m, a),
        })
        .collect();
    variables.push(Variable {
        code: CONTENTS.to_string(),
        label: labels.last().cloned().unwrap_or_default(),
        role: Role::Contents,
        texts: names.iter().map(|m| t.column_label(m, lang)).collect(),
        values: names,
        codelist: None,
    });
    Ok(Model {
        id: t.id.to_string(),
        line: t.line.to_string(),
        lang,
        label: t.label(lang),
        title: lang.text(&t.entry.line.spec.title.value),
        description: t.description(lang),
        source: t.entry.line.spec.owner.clone(),
        contact: t.entry.line.spec.contact.clone(),
        variables,
        measures,
        updated,
        releases,
        rows,
    })
}

/// What the variables of a table are made from besides its rows.
struct Shape<'a> {
    dims: &'a [String],
    area: Option<&'a str>,
    code_labels: &'a std::collections::BTreeMap<String, Labels>,
    /// The variables' labels: the period, the dimensions, the contents.
    labels: &'a [String],
}

/// The period variable and the dimensions, with each row's code position in them.
fn dimensions(
    t: &TableRef<'_>,
    table: &RecordBatch,
    periods: Vec<String>,
    shape: &Shape<'_>,
    lang: Lang,
) -> (Vec<Variable>, Vec<Vec<u32>>) {
    let mut variables = Vec::new();
    let mut keys = Vec::new();
    let (values, k) = categorise(table, PERIOD_DIMENSION, periods);
    variables.push(Variable {
        code: PERIOD_DIMENSION.to_string(),
        label: shape.labels[0].clone(),
        role: Role::Time,
        texts: values.clone(),
        values,
        codelist: None,
    });
    keys.push(k);
    for (i, d) in shape.dims.iter().enumerate() {
        let (values, k) = categorise(table, d, Vec::new());
        let labels = shape.code_labels.get(d);
        variables.push(Variable {
            code: d.clone(),
            label: shape.labels[i + 1].clone(),
            role: if shape.area == Some(d.as_str()) {
                Role::Geo
            } else {
                Role::Other
            },
            texts: values.iter().map(|c| code_text(labels, c, lang)).collect(),
            values,
            codelist: t.codelist_of(d),
        });
        keys.push(k);
    }
    (variables, keys)
}

/// A code's label: from the code set, else the total codes' own, else the code.
fn code_text(labels: Option<&Labels>, code: &str, lang: Lang) -> String {
    labels
        .and_then(|l| l.get(code))
        .and_then(|l| lang.label(l))
        .or_else(|| crate::publish::jsonstat::total_label(code).and_then(|l| lang.label(&l)))
        .unwrap_or_else(|| code.to_string())
}

/// The codes of a column in order of first appearance after `seed` (a null is the code
/// `""`), and each row's position among them.
fn categorise(table: &RecordBatch, column: &str, seed: Vec<String>) -> (Vec<String>, Vec<u32>) {
    let mut index: HashMap<String, u32> = (seed.iter().enumerate())
        .map(|(i, c)| (c.clone(), i as u32))
        .collect();
    let mut values = seed;
    let text =
        (table.column_by_name(column)).and_then(|a| arrow::compute::cast(a, &DataType::Utf8).ok());
    let mut keys = Vec::with_capacity(table.num_rows());
    for r in 0..table.num_rows() {
        let code = match &text {
            Some(a) => {
                let a = a.as_string::<i32>();
                if a.is_valid(r) { a.value(r) } else { "" }
            }
            None => "",
        };
        let k = match index.get(code) {
            Some(&k) => k,
            None => {
                let k = values.len() as u32;
                values.push(code.to_string());
                index.insert(code.to_string(), k);
                k
            }
        };
        keys.push(k);
    }
    (values, keys)
}

/// The measures: the numeric columns that are neither the period nor a dimension.
fn measures_of(table: &RecordBatch, dims: &[String]) -> Vec<String> {
    (table.schema().fields().iter())
        .filter(|f| f.name() != PERIOD_DIMENSION && !dims.contains(f.name()))
        .filter(|f| f.data_type().is_numeric())
        .map(|f| f.name().clone())
        .collect()
}

/// Each row's cells: the measures as numbers, which rows were suppressed and which
/// measures each row's release lacks.
fn read_rows(
    table: &RecordBatch,
    measures: &[String],
    keys: Vec<Vec<u32>>,
) -> Result<Rows, PxError> {
    let values = (measures.iter())
        .map(|m| {
            let a = table.column_by_name(m).ok_or(PxError::ReadTable)?;
            let f = arrow::compute::cast(a, &DataType::Float64).map_err(|e| {
                error!("{m}: {e}");
                PxError::ReadTable
            })?;
            Ok(f.as_primitive::<Float64Type>().clone())
        })
        .collect::<Result<Vec<Float64Array>, PxError>>()?;
    let suppressed = flags(table, crate::plan::STATUS_COLUMN, "suppressed");
    let missing = (measures.iter())
        .map(|m| {
            flags(
                table,
                &crate::serve::series::measure_status_column(m),
                "missing",
            )
        })
        .collect();
    Ok(Rows {
        keys,
        values,
        suppressed,
        missing,
    })
}

/// Whether each row's `column` holds `value` (all false without the column).
fn flags(table: &RecordBatch, column: &str, value: &str) -> Vec<bool> {
    let n = table.num_rows();
    let Some(a) = table
        .column_by_name(column)
        .and_then(|a| arrow::compute::cast(a, &DataType::Utf8).ok())
    else {
        return vec![false; n];
    };
    let a = a.as_string::<i32>();
    (0..n)
        .map(|r| a.is_valid(r) && a.value(r) == value)
        .collect()
}

/// The decimals a measure's published values have: 0 for whole-number columns, else the
/// most any value needs written exactly (at most 15).
fn decimals_of(table: &RecordBatch, name: &str, values: &Float64Array) -> u32 {
    let fractional = (table.schema().field_with_name(name)).is_ok_and(|f| {
        matches!(
            f.data_type(),
            DataType::Float16
                | DataType::Float32
                | DataType::Float64
                | DataType::Decimal128(..)
                | DataType::Decimal256(..)
        )
    });
    if !fractional {
        return 0;
    }
    let most = (values.iter().flatten())
        .filter(|v| v.is_finite())
        .map(|v| format!("{v}").split_once('.').map_or(0, |(_, f)| f.len()))
        .max()
        .unwrap_or(0);
    most.min(15) as u32
}

/// A model of `table` (with `jakso`, the dimensions `dims` and measures) for the tests of
/// the selections and writers, read as `load` reads a series.
#[cfg(test)]
pub(super) fn test_model(table: &RecordBatch, dims: &[&str], area: Option<&str>) -> Model {
    let dims: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    let mut variables = Vec::new();
    let mut keys = Vec::new();
    let names = std::iter::once(PERIOD_DIMENSION).chain(dims.iter().map(String::as_str));
    for (k, d) in names.enumerate() {
        let (values, key) = categorise(table, d, Vec::new());
        let role = match (k, area == Some(d)) {
            (0, _) => Role::Time,
            (_, true) => Role::Geo,
            _ => Role::Other,
        };
        variables.push(Variable {
            code: d.to_string(),
            label: format!("Muuttuja {d}"),
            role,
            texts: values.iter().map(|c| format!("Nimi {c}")).collect(),
            values,
            codelist: (role == Role::Geo).then(|| "vs_alueet".to_string()),
        });
        keys.push(key);
    }
    let names = measures_of(table, &dims);
    let rows = read_rows(table, &names, keys).expect("rows");
    let measures = (names.iter().zip(&rows.values))
        .map(|(m, a)| Measure {
            unit: Some("lkm".into()),
            decimals: decimals_of(table, m, a),
        })
        .collect();
    variables.push(Variable {
        code: CONTENTS.into(),
        label: "Tiedot".into(),
        role: Role::Contents,
        texts: names.iter().map(|m| format!("Mittari {m}")).collect(),
        values: names,
        codelist: None,
    });
    Model {
        id: "testi".into(),
        line: "linja".into(),
        lang: Lang::Fi,
        label: "Testitaulu".into(),
        title: "Testilinja".into(),
        description: Some("Kuvaus".into()),
        source: Some("THL".into()),
        contact: Some("tilastot@thl.fi".into()),
        variables,
        measures,
        updated: Some("2025-04-02T08:30:00.000Z".into()),
        releases: Vec::new(),
        rows,
    }
}

/// Three months of two areas and the whole country, with a suppressed row and a measure
/// (`osuus`) that the last month's release lacks.
#[cfg(test)]
pub(super) fn sample() -> Model {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, StringArray};
    let text = |v: &[Option<&str>]| Arc::new(StringArray::from(v.to_vec())) as ArrayRef;
    let table = RecordBatch::try_from_iter([
        (
            "jakso",
            text(&[
                Some("2025-01"),
                Some("2025-01"),
                Some("2025-02"),
                Some("2025-02"),
                Some("2025-03"),
                Some("2025-03"),
            ]),
        ),
        (
            "alue",
            text(&[
                Some("01"),
                Some("SSS"),
                Some("01"),
                Some("SSS"),
                Some("02"),
                Some("SSS"),
            ]),
        ),
        (
            "n",
            Arc::new(Int64Array::from(vec![
                Some(10),
                Some(20),
                None,
                Some(30),
                Some(5),
                Some(40),
            ])) as ArrayRef,
        ),
        (
            "osuus",
            Arc::new(Float64Array::from(vec![
                Some(0.5),
                Some(0.25),
                None,
                Some(0.125),
                None,
                None,
            ])) as ArrayRef,
        ),
        (
            "status",
            text(&[None, None, Some("suppressed"), None, None, None]),
        ),
        (
            "status_osuus",
            text(&[None, None, None, None, Some("missing"), Some("missing")]),
        ),
    ])
    .expect("table");
    test_model(&table, &["alue"], Some("alue"))
}
