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
            } else {
                columns.push(a.clone());
                fields.push(f.as_ref().clone().with_nullable(true));
            }
        }
        let n = data.num_rows();
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
            let writer =
                ArrowWriter::try_new(file, schema.clone(), None).map_err(|e| e.to_string())?;
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

/// Splits a tapped batch: returns the rows that pass; sends rejected rows to quarantine.
/// `rules` are (column index, rule id, severity); violations are added to `violations`.
pub struct TapOutcome {
    pub passed: RecordBatch,
    pub rejected: usize,
    /// The first reason of a `fail` rule, which stops the run.
    pub failure: Option<(String, String)>,
}

/// Applies a step's rule columns to a batch.
pub fn tap(
    batch: &RecordBatch,
    rules: &[crate::plan::TapRule],
    violations: &mut BTreeMap<String, u64>,
    quarantine: &Quarantine,
    step: &str,
    personal: &BTreeSet<String>,
) -> Result<TapOutcome, String> {
    use crate::spec::Severity;
    let schema = batch.schema();
    let data_idx: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| !schema.field(i).name().starts_with(crate::plan::RULE_PREFIX))
        .collect();
    let data = batch.project(&data_idx).map_err(|e| e.to_string())?;
    if rules.is_empty() {
        return Ok(TapOutcome {
            passed: data,
            rejected: 0,
            failure: None,
        });
    }
    let n = batch.num_rows();
    let mut reject = vec![false; n];
    let mut any = false;
    let mut failure = None;
    let mut cols = Vec::with_capacity(rules.len());
    for r in rules {
        let a = batch
            .column_by_name(&r.column)
            .ok_or_else(|| format!("rule column {} missing", r.column))?;
        let a = a.as_string::<i32>();
        let violated = a.len() - a.null_count();
        if violated > 0 {
            *violations.entry(r.id.clone()).or_default() += violated as u64;
            match r.severity {
                Severity::Reject => {
                    for (i, flag) in reject.iter_mut().enumerate() {
                        if a.is_valid(i) {
                            *flag = true;
                            any = true;
                        }
                    }
                }
                Severity::Warn => {}
                Severity::Fail => {
                    if failure.is_none() {
                        let i = (0..n).find(|&i| a.is_valid(i)).unwrap_or(0);
                        failure = Some((r.id.clone(), a.value(i).to_string()));
                    }
                }
            }
        }
        cols.push((r, a.clone()));
    }
    if !any {
        return Ok(TapOutcome {
            passed: data,
            rejected: 0,
            failure,
        });
    }
    let idx: Vec<u32> = (0..n as u32).filter(|&i| reject[i as usize]).collect();
    let mut ids = Vec::with_capacity(idx.len());
    let mut reasons = Vec::with_capacity(idx.len());
    for &i in &idx {
        let mut rid = Vec::new();
        let mut why = Vec::new();
        for (r, a) in &cols {
            if r.severity == Severity::Reject && a.is_valid(i as usize) {
                rid.push(r.id.as_str());
                why.push(a.value(i as usize));
            }
        }
        ids.push(rid.join(","));
        reasons.push(why.join("; "));
    }
    let take = UInt64Array::from_iter_values(idx.iter().map(|&i| i as u64));
    let rejected_rows =
        arrow::compute::take_record_batch(&data, &take).map_err(|e| e.to_string())?;
    quarantine.write(step, &rejected_rows, ids, reasons, personal)?;
    let keep = arrow::array::BooleanArray::from(reject.iter().map(|r| !r).collect::<Vec<_>>());
    let passed = arrow::compute::filter_record_batch(&data, &keep).map_err(|e| e.to_string())?;
    Ok(TapOutcome {
        passed,
        rejected: idx.len(),
        failure,
    })
}
