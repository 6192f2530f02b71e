//! Each check with rows that pass and rows that break it, run through the real planner
//! and DataFusion.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::DataType;
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::prelude::SessionContext;

use crate::plan::{InputInfo, Planner};

pub(crate) fn line_text(columns: &str, rule: &str) -> String {
    let codes = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference/kunta_hyvinvointialue_2023.csv");
    format!(
        "line: t\ntitle: t\nparams: {{ period: {{ kind: month, default: \"2025-03\" }} }}\n\
         codesets: {{ kunnat: {{ path: \"{}\", key: kunta }} }}\n\
         steps:\n  s: {{ source: {{ format: csv, location: x.csv, columns: {columns} }} }}\n\
         \x20 muut: {{ source: {{ format: csv, location: y.csv, columns: {{ avain: string }} }} }}\n\
         \x20 v: {{ validate: {{ input: s, rules: [{rule}] }} }}\n",
        codes.display()
    )
}

pub(crate) fn typed(schema: &arrow::datatypes::Schema, rows: &[Vec<Option<&str>>]) -> RecordBatch {
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (i, f) in schema.fields().iter().enumerate() {
        let a: ArrayRef = match f.name().as_str() {
            "_object" => Arc::new(StringArray::from(vec!["x.csv"; rows.len()])),
            "_row" => Arc::new(UInt64Array::from_iter_values(1..=rows.len() as u64)),
            _ => {
                let text = StringArray::from(rows.iter().map(|r| r[i]).collect::<Vec<_>>());
                arrow::compute::cast(&text, f.data_type()).unwrap()
            }
        };
        arrays.push(a);
    }
    RecordBatch::try_new(Arc::new(schema.clone()), arrays).unwrap()
}

/// `batch` with each row's `_object` replaced by `objects`, when given.
fn with_objects(batch: RecordBatch, objects: Option<&[&str]>) -> RecordBatch {
    let Some(objects) = objects else { return batch };
    let i = batch.schema().index_of(crate::plan::OBJECT_COLUMN).unwrap();
    let mut columns = batch.columns().to_vec();
    columns[i] = Arc::new(StringArray::from(objects.to_vec()));
    RecordBatch::try_new(batch.schema(), columns).unwrap()
}

/// The reason of each row (in row order), or the diagnostics when the rule is invalid.
pub(crate) fn eval(
    columns: &str,
    rule: &str,
    rows: &[Vec<Option<&str>>],
) -> Result<Vec<Option<String>>, String> {
    eval_with(columns, rule, rows, Some(1 << 20), 1)
}

/// `eval` with a unique rule's first-pass filter of `unique_filter` bytes (`None`: the
/// grouping a cluster uses), the rows in `partitions` partitions read at once.
pub(crate) fn eval_with(
    columns: &str,
    rule: &str,
    rows: &[Vec<Option<&str>>],
    unique_filter: Option<usize>,
    partitions: usize,
) -> Result<Vec<Option<String>>, String> {
    eval_objects(columns, rule, rows, None, unique_filter, partitions)
}

/// `eval_with` with each row's `_object` given (`x.csv` without).
pub(crate) fn eval_objects(
    columns: &str,
    rule: &str,
    rows: &[Vec<Option<&str>>],
    objects: Option<&[&str]>,
    unique_filter: Option<usize>,
    partitions: usize,
) -> Result<Vec<Option<String>>, String> {
    let text = line_text(columns, rule);
    let (line, _) = crate::line::load::load_text("t.yaml", std::path::Path::new("."), text)
        .map_err(|d| format!("{d:?}"))?;
    let params = crate::plan::check::bind_params(&line, None).unwrap();
    let values = crate::line::params::expression_values(&params);
    let checked = crate::plan::check::plan_all(line, vec![], &values, b"k").map_err(|d| {
        d.iter()
            .map(|d| format!("{:?} {}", d.code, d.message))
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let src = &checked.plans["s"].output;
    let batch = with_objects(typed(src, rows), objects);
    let others = typed(
        &checked.plans["muut"].output,
        &[vec![Some("a")], vec![Some("b")]],
    );
    let mut inputs: BTreeMap<String, (Arc<dyn TableProvider>, InputInfo)> = BTreeMap::new();
    for (name, b) in [("s", batch), ("muut", others)] {
        let schema = b.schema();
        // Every `partitions`-th slice of 7 rows in one partition: repeats meet across them.
        let mut parts = vec![Vec::new(); partitions];
        for (i, start) in (0..b.num_rows()).step_by(7).enumerate() {
            parts[i % partitions].push(b.slice(start, 7.min(b.num_rows() - start)));
        }
        let t = MemTable::try_new(schema.clone(), parts).unwrap();
        // What is known of the step's output (its personal columns) comes with it.
        let info = InputInfo {
            schema,
            ..checked.plans[name].info()
        };
        inputs.insert(name.into(), (Arc::new(t), info));
    }
    let tables = checked
        .codesets
        .iter()
        .map(|(k, v)| (k.clone(), v.table.clone()))
        .collect();
    let ctx = crate::plan::session(Some(b"k"), partitions);
    let planner = Planner {
        line: &checked.line,
        state: ctx.state(),
        params: values,
        codesets: &tables,
        unique_filter: unique_filter.map(crate::plan::FilterSize::fixed),
    };
    let plan = planner
        .plan_step("v", &inputs)
        .map_err(|d| format!("{d:?}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let batches = rt
        .block_on(async {
            SessionContext::new_with_state(ctx.state())
                .execute_logical_plan(plan.plan.clone())
                .await?
                .collect()
                .await
        })
        .map_err(|e| e.to_string())?;
    // Once the rows are out, nothing is held in the pool, though the step's plan (and a
    // unique rule's filter in it) still exists: the filter went back after its pass.
    let held = ctx.state().runtime_env().memory_pool.reserved();
    if held != 0 {
        return Err(format!("{held} bytes still reserved after the step's rows"));
    }
    drop(plan);
    let mut out: Vec<(u64, Option<String>)> = Vec::new();
    for b in batches {
        let rowno = b
            .column_by_name("_row")
            .unwrap()
            .as_primitive::<arrow::datatypes::UInt64Type>()
            .clone();
        let reason =
            arrow::compute::cast(b.column_by_name("__r0").unwrap(), &DataType::Utf8).unwrap();
        let reason = reason.as_string::<i32>();
        for i in 0..b.num_rows() {
            out.push((
                rowno.value(i),
                reason.is_valid(i).then(|| reason.value(i).to_string()),
            ));
        }
    }
    out.sort();
    Ok(out.into_iter().map(|(_, r)| r).collect())
}

/// Which rows (1-based) break the rule.
pub(crate) fn broken(columns: &str, rule: &str, rows: &[Vec<Option<&str>>]) -> Vec<usize> {
    eval(columns, rule, rows)
        .unwrap_or_else(|e| panic!("{rule}: {e}"))
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_some())
        .map(|(i, _)| i + 1)
        .collect()
}

pub(crate) fn one(v: Option<&str>) -> Vec<Option<&str>> {
    vec![v]
}

/// [`line_text`] over one text column `h`, its validate step `v` naming `submitter` (`h` or
/// `_object`) as its submitter column.
pub(crate) fn submitter_line(rule: &str, submitter: &str) -> String {
    line_text("{ h: string }", rule).replace(
        "validate: { input: s,",
        &format!("validate: {{ input: s, submitter: {submitter},"),
    )
}

/// The first broken `fail` check (rule id, message) and each check's outcome by rule id.
pub(crate) type Judged = (
    Option<(String, String)>,
    BTreeMap<String, crate::plan::DatasetOutcome>,
);

/// The dataset checks of step `v` of line `text`, judged on `rows` of its source `s`
/// (`objects`: each row's `_object`; `x.csv` without) against `history`: the first broken
/// `fail` check and each check's outcome by rule id; or the diagnostics as text when the
/// line is refused.
pub(crate) fn judge_rows(
    text: String,
    rows: &[Vec<Option<&str>>],
    objects: Option<&[&str]>,
    history: &crate::plan::history::History,
) -> Result<Judged, String> {
    let codes = |d: Vec<crate::diag::Diagnostic>| {
        d.iter()
            .map(|d| format!("{:?} {}", d.code, d.message))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let (line, _) =
        crate::line::load::load_text("t.yaml", std::path::Path::new("."), text).map_err(codes)?;
    let params = crate::plan::check::bind_params(&line, None).unwrap();
    let values = crate::line::params::expression_values(&params);
    let checked = crate::plan::check::plan_all(line, vec![], &values, b"k").map_err(codes)?;
    let plan = &checked.plans["v"];
    let batch = with_objects(typed(&checked.plans["s"].output, rows), objects);
    let q = crate::run::quarantine::Quarantine::new(std::env::temp_dir(), "t".into(), None);
    let mut quality = crate::run::accounting::StepQuality::default();
    crate::run::quarantine::tap(&batch, plan, &mut quality, &q, "v").unwrap();
    let failure = crate::run::quarantine::finish_dataset_checks(
        "v",
        plan,
        rows.len() as u64,
        &mut quality,
        history,
    );
    Ok((failure, quality.dataset))
}
