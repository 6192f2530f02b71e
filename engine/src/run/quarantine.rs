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
    Array, ArrayRef, AsArray, RecordBatch, StringArray, StringBuilder, UInt64Array, new_null_array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;

use crate::functions::pseudonym;
use crate::plan::{OBJECT_COLUMN, ROW_COLUMN};

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
    ) -> Result<(), String> {
        let schema = data.schema();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len() + 3);
        let mut fields: Vec<Field> = Vec::new();
        for (f, a) in schema.fields().iter().zip(data.columns()) {
            if personal.contains(f.name()) {
                let text = arrow::compute::cast(a, &DataType::Utf8).map_err(|e| e.to_string())?;
                let text = text.as_string::<i32>();
                let mut b = StringBuilder::new();
                for v in text.iter() {
                    match (&self.key, v) {
                        (Some(k), Some(v)) => b.append_value(pseudonym(k, v)),
                        _ => b.append_null(),
                    }
                }
                columns.push(Arc::new(b.finish()));
                fields.push(Field::new(f.name(), DataType::Utf8, true));
            } else if matches!(
                f.data_type(),
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            ) {
                // Raw text may hold an identity code where none belongs (a code typed into
                // the wrong column): scrubbed like every text the engine writes.
                let text = arrow::compute::cast(a, &DataType::Utf8).map_err(|e| e.to_string())?;
                let scrubbed: StringArray = text
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.map(crate::redact::scrub))
                    .collect();
                let back =
                    arrow::compute::cast(&scrubbed, f.data_type()).map_err(|e| e.to_string())?;
                columns.push(back);
                fields.push(f.as_ref().clone().with_nullable(true));
            } else {
                columns.push(a.clone());
                fields.push(f.as_ref().clone().with_nullable(true));
            }
        }
        let n = data.num_rows();
        let reasons: Vec<String> = reasons.into_iter().map(crate::redact::scrubbed).collect();
        columns.push(Arc::new(StringArray::from(rules)));
        columns.push(Arc::new(StringArray::from(reasons)));
        columns.push(Arc::new(StringArray::from(vec![self.run_id.as_str(); n])));
        let schema = Self::schema_for(&Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
        let mut files = self
            .files
            .lock()
            .map_err(|_| "quarantine lock poisoned".to_string())?;
        if !files.contains_key(step) {
            let path = self.dir.join(format!("{step}.parquet"));
            let file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            // Small row groups: the writer holds one in memory, and a run may reject
            // millions of rows (the file is sorted into the store's at the end).
            let props = parquet::file::properties::WriterProperties::builder()
                .set_max_row_group_row_count(Some(crate::publish::ROW_GROUP_ROWS))
                .set_max_row_group_bytes(Some(crate::publish::ROW_GROUP_BYTES))
                .build();
            let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
                .map_err(|e| e.to_string())?;
            files.insert(
                step.to_string(),
                StepFile {
                    writer,
                    schema: schema.clone(),
                    rows: 0,
                },
            );
        }
        let f = files.get_mut(step).ok_or("quarantine file vanished")?;
        if f.schema.fields() != schema.fields() {
            // A parse reject batch and a typed batch of the same step must agree.
            let cast: Vec<ArrayRef> = f
                .schema
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(field, a)| arrow::compute::cast(a, field.data_type()))
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            let batch = RecordBatch::try_new(f.schema.clone(), cast).map_err(|e| e.to_string())?;
            f.writer.write(&batch).map_err(|e| e.to_string())?;
        } else {
            f.writer.write(&batch).map_err(|e| e.to_string())?;
        }
        f.rows += n as u64;
        Ok(())
    }

    /// Writes rows a parser could not read: only their object, row and reason are known.
    pub fn write_unparsed(
        &self,
        step: &str,
        schema: &Schema,
        object: &str,
        rejects: &[valtava_plugin::RowReject],
    ) -> Result<(), String> {
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
        let batch = RecordBatch::try_new(Arc::new(nullable), columns).map_err(|e| e.to_string())?;
        self.write(
            step,
            &batch,
            vec!["parse".to_string(); n],
            rejects.iter().map(|r| r.reason.clone()).collect(),
            &BTreeSet::new(),
        )
    }

    /// Closes the files; returns (step, local file, rows) for each step that rejected rows.
    pub fn close(&self) -> Result<Vec<(String, PathBuf, u64)>, String> {
        let mut files = self
            .files
            .lock()
            .map_err(|_| "quarantine lock poisoned".to_string())?;
        let mut out = Vec::new();
        for (step, f) in std::mem::take(&mut *files) {
            f.writer.close().map_err(|e| e.to_string())?;
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

/// Applies a step's filter and rule columns to a batch: counts violations (overall and per
/// submitter), gathers dataset-check statistics, sends rejected rows to quarantine and
/// returns the rows that pass.
pub fn tap(
    batch: &RecordBatch,
    plan: &crate::plan::StepPlan,
    quality: &mut crate::run::accounting::StepQuality,
    quarantine: &Quarantine,
    step: &str,
) -> Result<TapOutcome, String> {
    use crate::line::spec::Severity;
    use arrow::array::BooleanArray;
    use arrow::compute::kernels::boolean::{and, not, or};
    let schema = batch.schema();
    let data_idx: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| !schema.field(i).name().starts_with("__"))
        .collect();
    let data = batch.project(&data_idx).map_err(|e| e.to_string())?;
    let n = batch.num_rows();
    let err = |e: arrow::error::ArrowError| e.to_string();
    let in_scope: BooleanArray = match batch.column_by_name(crate::plan::FILTER_COLUMN) {
        Some(f) if plan.filtered => {
            let f = f.as_boolean();
            // Null counts as out of scope.
            BooleanArray::from_iter(f.iter().map(|v| Some(v == Some(true))))
        }
        _ => BooleanArray::from(vec![true; n]),
    };
    let filtered = n - in_scope.true_count();
    let scoped = |a: &RecordBatch| -> Result<RecordBatch, String> {
        if filtered == 0 {
            Ok(a.clone())
        } else {
            arrow::compute::filter_record_batch(a, &in_scope).map_err(err)
        }
    };
    // Dataset statistics over the rows in scope.
    let rows = crate::plan::InScope {
        rows: &data,
        filter: (filtered != 0).then_some(&in_scope),
    };
    for check in &plan.dataset_checks {
        let state = quality.checks.entry(check.id.clone()).or_default();
        check.rule.observe(&rows, state).map_err(err)?;
    }
    let submitters = plan.submitter.as_ref().and_then(|s| text_column(&data, s));

    let submitter_of = |i: usize| -> String {
        match &submitters {
            Some(a) if a.is_valid(i) => a.as_string::<i32>().value(i).to_string(),
            Some(_) => "(tyhjä)".to_string(),
            None => String::new(),
        }
    };
    if let Some(a) = &submitters {
        let a = a.as_string::<i32>();
        let mut rows: std::collections::HashMap<Option<&str>, u64> =
            std::collections::HashMap::new();
        for i in 0..n {
            if in_scope.value(i) {
                *rows.entry(a.is_valid(i).then(|| a.value(i))).or_default() += 1;
            }
        }
        for (k, c) in rows {
            let key = k
                .map(str::to_string)
                .unwrap_or_else(|| "(tyhjä)".to_string());
            quality.by_submitter.entry(key).or_default().rows += c;
        }
    }
    let mut reject = BooleanArray::from(vec![false; n]);
    let mut failure = None;
    let mut flags = Vec::with_capacity(plan.rules.len());
    for r in &plan.rules {
        let a = batch
            .column_by_name(&r.column)
            .ok_or_else(|| format!("rule column {} missing", r.column))?;
        let broken = and(&arrow::compute::is_not_null(a).map_err(err)?, &in_scope).map_err(err)?;
        let count = broken.true_count();
        if count > 0 {
            *quality.violations.entry(r.id.clone()).or_default() += count as u64;
            if submitters.is_some() {
                for i in (0..n).filter(|&i| broken.value(i)) {
                    *quality
                        .by_submitter
                        .entry(submitter_of(i))
                        .or_default()
                        .violations
                        .entry(r.id.clone())
                        .or_default() += 1;
                }
            }
            match r.severity {
                Severity::Reject => reject = or(&reject, &broken).map_err(err)?,
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
    let rejected = reject.true_count();
    // Metrics describe the rows the step passes on.
    for (column, what) in &plan.metrics {
        let Some(a) = text_column(batch, column) else {
            continue;
        };
        let a = a.as_string::<i32>();
        let counts = quality.metrics.entry(what.clone()).or_default();
        for i in 0..n {
            if in_scope.value(i) && !reject.value(i) && a.is_valid(i) {
                *counts.entry(a.value(i).to_string()).or_default() += 1;
            }
        }
    }
    if rejected > 0 {
        let idx: Vec<u64> = (0..n as u64)
            .filter(|&i| reject.value(i as usize))
            .collect();
        let mut ids = Vec::with_capacity(idx.len());
        let mut reasons = Vec::with_capacity(idx.len());
        for &i in &idx {
            let i = i as usize;
            let mut rid = Vec::new();
            let mut why = Vec::new();
            for (r, a, broken) in &flags {
                if r.severity == Severity::Reject && broken.value(i) {
                    rid.push(r.id.as_str());
                    why.push(a.as_string::<i32>().value(i));
                }
            }
            ids.push(rid.join(","));
            reasons.push(why.join("; "));
            if submitters.is_some() {
                quality
                    .by_submitter
                    .entry(submitter_of(i))
                    .or_default()
                    .rejected += 1;
            }
        }
        let take = UInt64Array::from(idx);
        let rejected_rows = arrow::compute::take_record_batch(&data, &take).map_err(err)?;
        quarantine.write(step, &rejected_rows, ids, reasons, &plan.clear_personal())?;
    }
    let passed = if rejected == 0 {
        scoped(&data)?
    } else {
        let keep = and(&not(&reject).map_err(err)?, &in_scope).map_err(err)?;
        arrow::compute::filter_record_batch(&data, &keep).map_err(err)?
    };
    Ok(TapOutcome {
        passed,
        rejected,
        filtered,
        failure,
    })
}

/// Evaluates a step's dataset checks once it has seen every row; `rows` is the number of
/// rows in scope. Returns the first broken `fail` check.
pub fn finish_dataset_checks(
    plan: &crate::plan::StepPlan,
    rows: u64,
    quality: &mut crate::run::accounting::StepQuality,
) -> Option<(String, String)> {
    let mut failure = None;
    for check in &plan.dataset_checks {
        let by_submitter = &quality.by_submitter;
        let outcome = check.rule.judge(&crate::plan::Seen {
            rows,
            state: quality.checks.get(&check.id).copied().flatten(),
            submitter_rows: &|s| by_submitter.get(s).map_or(0, |q| q.rows),
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
}
