//! Code sets: classifications loaded from CSV files (`code`, `display`, `valid_from`,
//! `valid_to` and any other columns), held as small in-memory tables for joins.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::{MemTable, TableProvider};
use sha2::{Digest, Sha256};

use crate::diag::{Code, Diagnostic};
use crate::load::Line;

/// A loaded code set.
#[derive(Debug, Clone)]
pub struct Codeset {
    pub table: Arc<MemTable>,
    /// sha256 of the file, recorded in run reports.
    pub sha256: String,
    pub rows: usize,
}

/// Reads a CSV code set: UTF-8 (a BOM is skipped), `,` or `;` delimited, header row, every
/// column as text.
pub fn read_csv(path: &Path) -> Result<(RecordBatch, String), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let sha = hex::encode(Sha256::digest(&bytes));
    let text =
        std::str::from_utf8(&bytes).map_err(|_| format!("{} is not UTF-8", path.display()))?;
    let text = text.trim_start_matches('\u{feff}');
    let header = text
        .lines()
        .next()
        .ok_or_else(|| format!("{} is empty", path.display()))?;
    let delimiter = if header.matches(';').count() > header.matches(',').count() {
        b';'
    } else {
        b','
    };
    let names: Vec<String> = header
        .split(delimiter as char)
        .map(|s| s.trim().trim_matches('"').to_string())
        .collect();
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let reader = arrow::csv::ReaderBuilder::new(schema.clone())
        .with_header(true)
        .with_delimiter(delimiter)
        .build(std::io::Cursor::new(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut batches = Vec::new();
    for b in reader {
        batches.push(b.map_err(|e| format!("{}: {e}", path.display()))?);
    }
    let batch = arrow::compute::concat_batches(&schema, &batches).map_err(|e| e.to_string())?;
    Ok((batch, sha))
}

/// Loads every code set of a line; problems are diagnostics at the code set.
pub fn load_all(line: &Line) -> Result<BTreeMap<String, Codeset>, Vec<Diagnostic>> {
    let mut out = BTreeMap::new();
    let mut diags = Vec::new();
    for (name, spec) in &line.spec.codesets {
        let path = line.dir.join(&spec.path.value);
        match read_csv(&path) {
            Ok((batch, sha256)) => {
                if batch.schema().index_of(&spec.key).is_err() {
                    diags.push(Diagnostic::error(
                        Code::V304,
                        &line.file,
                        spec.key.at.max(spec.path.at),
                        format!(
                            "code set `{}` has no key column `{}`",
                            name.value, spec.key.value
                        ),
                    ));
                    continue;
                }
                let rows = batch.num_rows();
                match MemTable::try_new(batch.schema(), vec![vec![batch]]) {
                    Ok(t) => {
                        out.insert(
                            name.value.clone(),
                            Codeset {
                                table: Arc::new(t),
                                sha256,
                                rows,
                            },
                        );
                    }
                    Err(e) => diags.push(Diagnostic::error(
                        Code::V304,
                        &line.file,
                        spec.path.at,
                        e.to_string(),
                    )),
                }
            }
            Err(e) => diags.push(Diagnostic::error(Code::V304, &line.file, spec.path.at, e)),
        }
    }
    if diags.is_empty() {
        Ok(out)
    } else {
        Err(diags)
    }
}

/// The distinct codes of a code set's key column, sorted.
pub fn codes(table: &MemTable, key: &str) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    let Ok(i) = table.schema().index_of(key) else {
        return Vec::new();
    };
    for partition in table.batches.iter() {
        if let Ok(batches) = partition.try_read() {
            for b in batches.iter() {
                let a = b.column(i).as_string::<i32>();
                for r in 0..a.len() {
                    if a.is_valid(r) {
                        out.insert(a.value(r).to_string());
                    }
                }
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_reference_municipalities() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/reference/kunta_hyvinvointialue_2023.csv");
        let (b, sha) = read_csv(&p).unwrap();
        assert_eq!(b.num_rows(), 309);
        assert_eq!(sha.len(), 64);
        let t = MemTable::try_new(b.schema(), vec![vec![b]]).unwrap();
        let c = codes(&t, "kunta");
        assert_eq!(c.len(), 309);
        assert!(c.contains(&"091".to_string()));
    }
}
