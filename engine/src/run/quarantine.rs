//! Quarantine: rows a step rejected, kept with their reasons.
//!
//! During a run, rejected rows stream into one local Parquet file per step; at the end each
//! file is sorted by object and row and written to
//! `quarantine/<line>/<period>/<run-id>/<step>.parquet` in the store. Personal columns are
//! pseudonymised before a row is written: a quarantine file holds no identity codes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, StringBuilder, UInt64Array,
    new_null_array,
};
use arrow::compute::kernels::boolean::{and, not, or};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;

use crate::functions::pseudonym;
use crate::line::spec::Severity;
use crate::plan::{OBJECT_COLUMN, ROW_COLUMN, StepPlan, TapRule};
use crate::run::accounting::StepQuality;
use crate::run::report::fail;
use crate::run::{RunCode, RunFailure};

pub const RULES_COLUMN: &str = "_rules";
pub const REASONS_COLUMN: &str = "_reasons";
pub const RUN_COLUMN: &str = "_run_id";

struct StepFile {
    writer: ArrowWriter<File>,
    schema: SchemaRef,
    rows: u64,
}

/// The quarantine of one run.
pub struct Quarantine {
    dir: PathBuf,
    run_id: String,
    key: Option<Vec<u8>>,
    files: Mutex<BTreeMap<String, StepFile>>,
}

impl Quarantine {
    pub fn new(dir: PathBuf, run_id: String, key: Option<Vec<u8>>) -> Self {
        Self {
            dir,
            run_id,
            key,
            files: Mutex::new(BTreeMap::new()),
        }
    }

    fn schema_for(data: &Schema) -> SchemaRef {
        let mut fields: Vec<Field> = data
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        fields.push(Field::new(RULES_COLUMN, DataType::Utf8, false));
        fields.push(Field::new(REASONS_COLUMN, DataType::Utf8, false));
        fields.push(Field::new(RUN_COLUMN, DataType::Utf8, false));
        Arc::new(Schema::new(fields))
    }

    /// Writes rejected rows: `data` holds the step's columns, one rule list and reason
    /// list per row. Personal columns are replaced by their pseudonyms (or emptied when the
    /// run has no key).
    pub fn write(
        &self,
        step: &str,
        data: &RecordBatch,
        rules: Vec<String>,
        reasons: Vec<String>,
        personal: &BTreeSet<String>,
    ) -> Result<(), RunFailure> {
        let (mut columns, fields) = self.safe_columns(data, personal)?;
        let n = data.num_rows();
        let reasons: Vec<String> = reasons.into_iter().map(crate::redact::scrubbed).collect();
        columns.push(Arc::new(StringArray::from(rules)));
        columns.push(Arc::new(StringArray::from(reasons)));
        columns.push(Arc::new(StringArray::from(vec![self.run_id.as_str(); n])));
        let schema = Self::schema_for(&Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), columns).map_err(write_failure)?;
        self.append(step, &schema, &batch, n)
    }

    /// The step's columns as quarantine keeps them: personal columns pseudonymised, other
    /// text scrubbed of identity codes, every field nullable.
    fn safe_columns(
        &self,
        data: &RecordBatch,
        personal: &BTreeSet<String>,
    ) -> Result<(Vec<ArrayRef>, Vec<Field>), RunFailure> {
        let schema = data.schema();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len() + 3);
        let mut fields: Vec<Field> = Vec::new();
        for (f, a) in schema.fields().iter().zip(data.columns()) {
            if personal.contains(f.name()) {
                columns.push(self.pseudonymised(a)?);
                fields.push(Field::new(f.name(), DataType::Utf8, true));
            } else if matches!(
                f.data_type(),
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            ) {
                // Raw text may hold an identity code where none belongs (a code typed into
                // the wrong column): scrubbed like every text the engine writes.
                columns.push(scrubbed_text(a, f.data_type())?);
                fields.push(f.as_ref().clone().with_nullable(true));
            } else {
                columns.push(a.clone());
                fields.push(f.as_ref().clone().with_nullable(true));
            }
        }
        Ok((columns, fields))
    }

    /// A personal column as the pseudonyms of its values as text, or nulls when the run
    /// has no key.
    fn pseudonymised(&self, a: &ArrayRef) -> Result<ArrayRef, RunFailure> {
        let text = arrow::compute::cast(a, &DataType::Utf8).map_err(write_failure)?;
        let text = text.as_string::<i32>();
        let mut b = StringBuilder::new();
        for v in text.iter() {
            match (&self.key, v) {
                (Some(k), Some(v)) => b.append_value(pseudonym(k, v)),
                _ => b.append_null(),
            }
        }
        Ok(Arc::new(b.finish()))
    }

    /// Appends a batch of `n` rows to the step's local file, opening the file with the
    /// step's first batch; a later batch is cast to the file's schema where they differ.
    fn append(
        &self,
        step: &str,
        schema: &SchemaRef,
        batch: &RecordBatch,
        n: usize,
    ) -> Result<(), RunFailure> {
        let mut files = self
            .files
            .lock()
            .map_err(|_| write_failure("quarantine lock poisoned"))?;
        if !files.contains_key(step) {
            let file = self.open_step_file(step, schema)?;
            files.insert(step.to_string(), file);
        }
        let f = files
            .get_mut(step)
            .ok_or_else(|| write_failure("quarantine file vanished"))?;
        if f.schema.fields() != schema.fields() {
            // A parse reject batch and a typed batch of the same step must agree.
            let cast: Vec<ArrayRef> = f
                .schema
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(field, a)| arrow::compute::cast(a, field.data_type()))
                .collect::<Result<_, _>>()
                .map_err(write_failure)?;
            let batch = RecordBatch::try_new(f.schema.clone(), cast).map_err(write_failure)?;
            f.writer.write(&batch).map_err(write_failure)?;
        } else {
            f.writer.write(batch).map_err(write_failure)?;
        }
        f.rows += n as u64;
        Ok(())
    }

    /// Creates the step's local Parquet file for batches of `schema`.
    fn open_step_file(&self, step: &str, schema: &SchemaRef) -> Result<StepFile, RunFailure> {
        let path = self.dir.join(format!("{step}.parquet"));
        let file =
            File::create(&path).map_err(|e| write_failure(format!("{}: {e}", path.display())))?;
        // Small row groups: the writer holds one in memory, and a run may reject
        // millions of rows (the file is sorted into the store's at the end).
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(crate::publish::ROW_GROUP_ROWS))
            .set_max_row_group_bytes(Some(crate::publish::ROW_GROUP_BYTES))
            .build();
        let writer =
            ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(write_failure)?;
        Ok(StepFile {
            writer,
            schema: schema.clone(),
            rows: 0,
        })
    }

    /// Writes rows a parser could not read: only their object, row and reason are known.
    pub fn write_unparsed(
        &self,
        step: &str,
        schema: &Schema,
        object: &str,
        rejects: &[valtava_plugin::RowReject],
    ) -> Result<(), RunFailure> {
        let n = rejects.len();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.name().as_str() {
                    OBJECT_COLUMN => Arc::new(StringArray::from(vec![object; n])),
                    ROW_COLUMN => {
                        Arc::new(UInt64Array::from_iter_values(rejects.iter().map(|r| r.row)))
                    }
                    _ => new_null_array(f.data_type(), n),
                }
            })
            .collect();
        let nullable = Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        );
        let batch = RecordBatch::try_new(Arc::new(nullable), columns).map_err(write_failure)?;
        self.write(
            step,
            &batch,
            vec!["parse".to_string(); n],
            rejects.iter().map(|r| r.reason.clone()).collect(),
            &BTreeSet::new(),
        )
    }

    /// Closes the files; returns (step, local file, rows) for each step that rejected rows.
    pub fn close(&self) -> Result<Vec<(String, PathBuf, u64)>, RunFailure> {
        let mut files = self
            .files
            .lock()
            .map_err(|_| write_failure("quarantine lock poisoned"))?;
        let mut out = Vec::new();
        for (step, f) in std::mem::take(&mut *files) {
            f.writer.close().map_err(write_failure)?;
            out.push((
                step.clone(),
                self.dir.join(format!("{step}.parquet")),
                f.rows,
            ));
        }
        Ok(out)
    }
}

/// What the tap did with one batch.
pub struct TapOutcome {
    /// Rows in scope that broke no `reject` rule, without rule columns.
    pub passed: RecordBatch,
    pub rejected: usize,
    /// Rows outside the step's declared filter.
    pub filtered: usize,
    /// The first reason of a `fail` rule, which stops the run.
    pub failure: Option<(String, String)>,
}

fn text_column(batch: &RecordBatch, name: &str) -> Option<ArrayRef> {
    batch
        .column_by_name(name)
        .and_then(|a| arrow::compute::cast(a, &DataType::Utf8).ok())
}

/// Who submitted each row, as the quality report and the dataset checks name submitters:
/// the column's text; for the object column, the object's file name's prefix
/// ([`crate::plan::object_submitter`]), the same in every period.
fn submitter_column(batch: &RecordBatch, name: &str) -> Option<ArrayRef> {
    let a = text_column(batch, name)?;
    if name != OBJECT_COLUMN {
        return Some(a);
    }
    let named: StringArray = a
        .as_string::<i32>()
        .iter()
        .map(|o| o.map(crate::plan::object_submitter))
        .collect();
    Some(Arc::new(named))
}

/// A failure of the quarantine or the tap: it fails the run as a write (`R008`), whatever
/// failed (Arrow, Parquet, the local file).
fn write_failure(e: impl std::fmt::Display) -> RunFailure {
    fail(RunCode::Write, e)
}

/// Text with identity codes scrubbed, cast back to the column's own text type.
fn scrubbed_text(a: &ArrayRef, data_type: &DataType) -> Result<ArrayRef, RunFailure> {
    let text = arrow::compute::cast(a, &DataType::Utf8).map_err(write_failure)?;
    let scrubbed: StringArray = text
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(crate::redact::scrub))
        .collect();
    arrow::compute::cast(&scrubbed, data_type).map_err(write_failure)
}

/// Applies a step's filter and rule columns to a batch: counts violations (overall and per
/// submitter), gathers dataset-check statistics, sends rejected rows to quarantine and
/// returns the rows that pass.
pub fn tap(
    batch: &RecordBatch,
    plan: &StepPlan,
    quality: &mut StepQuality,
    quarantine: &Quarantine,
    step: &str,
) -> Result<TapOutcome, RunFailure> {
    let schema = batch.schema();
    let data_idx: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| !schema.field(i).name().starts_with("__"))
        .collect();
    let data = batch.project(&data_idx).map_err(write_failure)?;
    let n = batch.num_rows();
    let in_scope = scope_of(batch, plan, n);
    let filtered = n - in_scope.true_count();
    // Dataset statistics over the rows in scope.
    observe_dataset_checks(plan, quality, &data, &in_scope, filtered)?;
    let submitters = plan
        .submitter
        .as_ref()
        .and_then(|s| submitter_column(&data, s));
    if let Some(a) = &submitters {
        count_submitter_rows(a, &in_scope, n, quality);
    }
    let broken = apply_rules(batch, plan, &in_scope, submitters.as_ref(), quality)?;
    let rejected = broken.reject.true_count();
    // Metrics describe the rows the step passes on.
    count_metrics(batch, plan, &in_scope, &broken.reject, quality);
    if rejected > 0 {
        let (rejects, ids, reasons) = rejected_rows(&data, &broken, submitters.as_ref(), quality)?;
        quarantine.write(step, &rejects, ids, reasons, &plan.clear_personal())?;
    }
    let passed = if rejected == 0 {
        if filtered == 0 {
            data.clone()
        } else {
            arrow::compute::filter_record_batch(&data, &in_scope).map_err(write_failure)?
        }
    } else {
        let keep =
            and(&not(&broken.reject).map_err(write_failure)?, &in_scope).map_err(write_failure)?;
        arrow::compute::filter_record_batch(&data, &keep).map_err(write_failure)?
    };
    Ok(TapOutcome {
        passed,
        rejected,
        filtered,
        failure: broken.failure,
    })
}

/// Which of a batch's `n` rows are in the step's scope: all unless the step is filtered,
/// and a null filter value counts as out of scope.
fn scope_of(batch: &RecordBatch, plan: &StepPlan, n: usize) -> BooleanArray {
    match batch.column_by_name(crate::plan::FILTER_COLUMN) {
        Some(f) if plan.filtered => {
            let f = f.as_boolean();
            // Null counts as out of scope.
            BooleanArray::from_iter(f.iter().map(|v| Some(v == Some(true))))
        }
        _ => BooleanArray::from(vec![true; n]),
    }
}

/// Folds the rows in scope into the state of each of the step's dataset checks.
fn observe_dataset_checks(
    plan: &StepPlan,
    quality: &mut StepQuality,
    data: &RecordBatch,
    in_scope: &BooleanArray,
    filtered: usize,
) -> Result<(), RunFailure> {
    let rows = crate::plan::InScope {
        rows: data,
        filter: (filtered != 0).then_some(in_scope),
    };
    for check in &plan.dataset_checks {
        let state = quality.checks.entry(check.id.clone()).or_default();
        check.rule.observe(&rows, state).map_err(write_failure)?;
    }
    Ok(())
}

/// The submitter of row `i` as the quality report names it: `(tyhjä)` when missing, empty
/// when the step has no submitter column.
fn submitter_of(submitters: Option<&ArrayRef>, i: usize) -> String {
    match submitters {
        Some(a) if a.is_valid(i) => a.as_string::<i32>().value(i).to_string(),
        Some(_) => "(tyhjä)".to_string(),
        None => String::new(),
    }
}

/// Adds each submitter's rows in scope (of the batch's `n`) to its row count.
fn count_submitter_rows(
    submitters: &ArrayRef,
    in_scope: &BooleanArray,
    n: usize,
    quality: &mut StepQuality,
) {
    let a = submitters.as_string::<i32>();
    count_runs(
        a,
        n,
        |i| in_scope.value(i),
        |k, c| {
            let key = k.map_or_else(|| "(tyhjä)".to_string(), str::to_string);
            quality.by_submitter.entry(key).or_default().rows += c;
        },
    );
}

/// Counts the values of `a`'s first `n` rows where `include` holds, handing each value
/// (`None`: null) and how many to `add`: once per run of equal values, as they come (a
/// submitter is the same for a whole object, a mapping's outcome mostly the same, a spill's
/// `_object` names one object for many rows), not a map lookup and a copy of the text per
/// row.
pub(super) fn count_runs<'a>(
    a: &'a arrow::array::StringArray,
    n: usize,
    include: impl Fn(usize) -> bool,
    mut add: impl FnMut(Option<&'a str>, u64),
) {
    let mut run: Option<(Option<&str>, u64)> = None;
    for i in (0..n).filter(|&i| include(i)) {
        let v = a.is_valid(i).then(|| a.value(i));
        match &mut run {
            Some((value, count)) if *value == v => *count += 1,
            _ => {
                if let Some((value, count)) = run.take() {
                    add(value, count);
                }
                run = Some((v, 1));
            }
        }
    }
    if let Some((value, count)) = run {
        add(value, count);
    }
}

/// What a step's rule columns say of a batch.
struct BrokenRules<'p> {
    /// Rows in scope that broke a `reject` rule.
    reject: BooleanArray,
    /// The first reason of a broken `fail` rule.
    failure: Option<(String, String)>,
    /// Each rule with its column of reasons and the rows in scope that broke it.
    flags: Vec<(&'p TapRule, ArrayRef, BooleanArray)>,
}

/// Reads each rule column over the rows in scope: counts its violations (overall and per
/// submitter) and gathers the rows to reject and the first failure.
fn apply_rules<'p>(
    batch: &RecordBatch,
    plan: &'p StepPlan,
    in_scope: &BooleanArray,
    submitters: Option<&ArrayRef>,
    quality: &mut StepQuality,
) -> Result<BrokenRules<'p>, RunFailure> {
    let n = batch.num_rows();
    let mut reject = BooleanArray::from(vec![false; n]);
    let mut failure = None;
    let mut flags = Vec::with_capacity(plan.rules.len());
    for r in &plan.rules {
        let a = batch
            .column_by_name(&r.column)
            .ok_or_else(|| write_failure(format!("rule column {} missing", r.column)))?;
        let broken = and(
            &arrow::compute::is_not_null(a).map_err(write_failure)?,
            in_scope,
        )
        .map_err(write_failure)?;
        let count = broken.true_count();
        if count > 0 {
            *quality.violations.entry(r.id.clone()).or_default() += count as u64;
            if submitters.is_some() {
                for i in (0..n).filter(|&i| broken.value(i)) {
                    *quality
                        .by_submitter
                        .entry(submitter_of(submitters, i))
                        .or_default()
                        .violations
                        .entry(r.id.clone())
                        .or_default() += 1;
                }
            }
            match r.severity {
                Severity::Reject => reject = or(&reject, &broken).map_err(write_failure)?,
                Severity::Warn => {}
                Severity::Fail => {
                    if failure.is_none() {
                        let i = (0..n).find(|&i| broken.value(i)).unwrap_or(0);
                        failure = Some((r.id.clone(), a.as_string::<i32>().value(i).to_string()));
                    }
                }
            }
        }
        flags.push((r, a.clone(), broken));
    }
    Ok(BrokenRules {
        reject,
        failure,
        flags,
    })
}

/// Counts the values of the step's metric columns over the rows it passes on.
fn count_metrics(
    batch: &RecordBatch,
    plan: &StepPlan,
    in_scope: &BooleanArray,
    reject: &BooleanArray,
    quality: &mut StepQuality,
) {
    let n = batch.num_rows();
    for (column, what) in &plan.metrics {
        let Some(a) = text_column(batch, column) else {
            continue;
        };
        let a = a.as_string::<i32>();
        let counts = quality.metrics.entry(what.clone()).or_default();
        let passed = |i: usize| in_scope.value(i) && !reject.value(i);
        count_runs(a, n, passed, |v, c| {
            if let Some(v) = v {
                match counts.get_mut(v) {
                    Some(have) => *have += c,
                    None => {
                        counts.insert(v.to_string(), c);
                    }
                }
            }
        });
    }
}

/// The rejected rows of `data` with the ids and reasons of the `reject` rules each broke;
/// counts them per submitter.
fn rejected_rows(
    data: &RecordBatch,
    broken: &BrokenRules,
    submitters: Option<&ArrayRef>,
    quality: &mut StepQuality,
) -> Result<(RecordBatch, Vec<String>, Vec<String>), RunFailure> {
    let n = data.num_rows();
    let idx: Vec<u64> = (0..n as u64)
        .filter(|&i| broken.reject.value(i as usize))
        .collect();
    let mut ids = Vec::with_capacity(idx.len());
    let mut reasons = Vec::with_capacity(idx.len());
    for &i in &idx {
        let i = i as usize;
        let mut rid = Vec::new();
        let mut why = Vec::new();
        for (r, a, flagged) in &broken.flags {
            if r.severity == Severity::Reject && flagged.value(i) {
                rid.push(r.id.as_str());
                why.push(a.as_string::<i32>().value(i));
            }
        }
        ids.push(rid.join(","));
        reasons.push(why.join("; "));
        if submitters.is_some() {
            quality
                .by_submitter
                .entry(submitter_of(submitters, i))
                .or_default()
                .rejected += 1;
        }
    }
    let take = UInt64Array::from(idx);
    let rows = arrow::compute::take_record_batch(data, &take).map_err(write_failure)?;
    Ok((rows, ids, reasons))
}

/// Evaluates the dataset checks of step `step` once it has seen every row; `rows` is the
/// number of rows in scope, `history` what the line's earlier periods counted. Returns the
/// first broken `fail` check.
pub fn finish_dataset_checks(
    step: &str,
    plan: &crate::plan::StepPlan,
    rows: u64,
    quality: &mut crate::run::accounting::StepQuality,
    history: &crate::plan::history::History,
) -> Option<(String, String)> {
    let mut failure = None;
    let submitters: BTreeMap<String, u64> = quality
        .by_submitter
        .iter()
        .map(|(s, q)| (s.clone(), q.rows))
        .collect();
    for check in &plan.dataset_checks {
        let outcome = check.rule.judge(&crate::plan::Seen {
            step,
            rows,
            state: quality.checks.get(&check.id).copied().flatten(),
            submitters: &submitters,
            history,
        });
        if !outcome.passed {
            *quality.violations.entry(check.id.clone()).or_default() += 1;
            if check.severity == crate::line::spec::Severity::Fail && failure.is_none() {
                failure = Some((
                    check.id.clone(),
                    format!("{}; expected {}", outcome.observed, outcome.expected),
                ));
            }
        }
        quality.dataset.insert(check.id.clone(), outcome);
    }
    failure
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes batches of rejected rows of step `lahde` into a quarantine, closes it and
    /// opens its file: the reader, the rows counted, and the directory that holds the file.
    fn quarantined<'a>(
        batches: impl IntoIterator<Item = &'a [valtava_plugin::RowReject]>,
    ) -> (
        parquet::file::reader::SerializedFileReader<File>,
        u64,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::new(dir.path().to_path_buf(), "run".into(), None);
        let schema = Schema::new(vec![
            Field::new(OBJECT_COLUMN, DataType::Utf8, true),
            Field::new(ROW_COLUMN, DataType::UInt64, true),
        ]);
        for rejects in batches {
            q.write_unparsed("lahde", &schema, "inbox/a.csv", rejects)
                .unwrap();
        }
        let [(step, path, rows)] = q.close().unwrap().try_into().unwrap();
        assert_eq!(step, "lahde");
        let reader =
            parquet::file::reader::SerializedFileReader::new(File::open(path).unwrap()).unwrap();
        (reader, rows, dir)
    }

    /// A step's local quarantine file is written in row groups of bounded size (the writer
    /// holds one in memory), and keeps every row.
    #[test]
    fn many_rejected_rows_are_written_in_bounded_row_groups() {
        let rejects: Vec<valtava_plugin::RowReject> = (0..10_000u64)
            .map(|row| valtava_plugin::RowReject {
                row,
                reason: "too few fields".into(),
            })
            .collect();
        let (reader, rows, _dir) = quarantined(std::iter::repeat_n(rejects.as_slice(), 14));
        assert_eq!(rows, 140_000);
        crate::publish::tests::assert_row_groups(&reader, 140_000, 3);
    }

    /// Wide rejected rows fill a row group by bytes long before its rows run out: the
    /// writer holds about [`crate::publish::ROW_GROUP_BYTES`], not 65 536 wide rows.
    #[test]
    fn wide_rejected_rows_are_written_in_row_groups_of_bounded_bytes() {
        use parquet::file::reader::FileReader;
        // 10 000 rows of 2 kB of reasons each, every one different: ≈ 20 MB.
        let rejects: Vec<valtava_plugin::RowReject> = (0..10_000u64)
            .map(|row| valtava_plugin::RowReject {
                row,
                reason: format!("{row:0>2000}"),
            })
            .collect();
        let (reader, rows, _dir) = quarantined(rejects.chunks(1000));
        assert_eq!(rows, 10_000);
        let groups = reader.metadata().row_groups();
        assert!(groups.len() >= 4, "{} row groups", groups.len());
        let limit = crate::publish::ROW_GROUP_BYTES as i64;
        for g in groups {
            // At most one batch beyond the bound: the writer splits by the rows' average size.
            assert!(
                g.compressed_size() <= limit + limit / 4,
                "{}",
                g.compressed_size()
            );
        }
        assert_eq!(groups.iter().map(|g| g.num_rows()).sum::<i64>(), 10_000);
    }

    /// Counting by runs of equal values gives what counting each row gives: runs split by
    /// rows left out, nulls among values, a value that comes back after another.
    #[test]
    fn runs_count_as_rows_do() {
        let values = ["a", "a", "b", "", "a", "b", "b", "c"];
        let a: arrow::array::StringArray = (0..64)
            .map(|i: usize| (i % 7 != 3).then(|| values[(i * i / 5) % values.len()]))
            .collect();
        for every in [1, 2, 3] {
            let include = |i: usize| i.is_multiple_of(every);
            let mut runs: BTreeMap<Option<String>, u64> = BTreeMap::new();
            super::count_runs(&a, a.len(), include, |v, c| {
                *runs.entry(v.map(String::from)).or_default() += c;
            });
            let mut rows: BTreeMap<Option<String>, u64> = BTreeMap::new();
            for i in (0..a.len()).filter(|&i| include(i)) {
                let v = a.is_valid(i).then(|| a.value(i).to_string());
                *rows.entry(v).or_default() += 1;
            }
            assert_eq!(runs, rows);
        }
    }
}
