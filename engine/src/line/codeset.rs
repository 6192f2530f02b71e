//! Code sets: classifications loaded from CSV files (`code`, `display`, `valid_from`,
//! `valid_to` and any other columns), FHIR `CodeSystem` and `ConceptMap` resources and
//! the THL code server's JSON, all held as small in-memory tables of text columns for
//! joins. Every loaded code set has a checksum and, where the file says, a version; a line
//! may pin either.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::{MemTable, TableProvider};
use sha2::{Digest, Sha256};

use crate::diag::{Code, Diagnostic};
use crate::line::LineError;
use crate::line::load::Line;
use crate::line::spec::CodesetFormat;

/// A loaded code set.
#[derive(Debug, Clone)]
pub struct Codeset {
    pub table: Arc<MemTable>,
    /// sha256 of the file, recorded in run reports.
    pub sha256: String,
    /// The version the file declares (FHIR `version`, THL `version`), if any.
    pub version: Option<String>,
    pub rows: usize,
}

/// What a run records of a code set.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct CodesetUse {
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub rows: usize,
}

impl Codeset {
    pub fn usage(&self) -> CodesetUse {
        CodesetUse {
            sha256: self.sha256.clone(),
            version: self.version.clone(),
            rows: self.rows,
        }
    }
}

/// Rows of text columns: the normalised form of every code-set format.
type Rows = Vec<BTreeMap<String, Option<String>>>;

/// Builds a batch of text columns, `first` columns first, then the others by name.
fn batch_of(rows: &Rows, first: &[&str]) -> Result<RecordBatch, LineError> {
    let mut names: Vec<String> = first.iter().map(|s| s.to_string()).collect();
    let mut others: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for r in rows {
        others.extend(r.keys().filter(|k| !first.contains(&k.as_str())).cloned());
    }
    names.extend(others);
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let columns: Vec<arrow::array::ArrayRef> = names
        .iter()
        .map(|n| {
            Arc::new(arrow::array::StringArray::from(
                rows.iter()
                    .map(|r| r.get(n).cloned().flatten())
                    .collect::<Vec<_>>(),
            )) as arrow::array::ArrayRef
        })
        .collect();
    RecordBatch::try_new(schema, columns).map_err(LineError::Table)
}

fn text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A date in any of the forms code servers write (`2023-01-01`, `2023-01-01T00:00:00…`).
fn day(v: &serde_json::Value) -> Option<String> {
    text(v).map(|s| s.chars().take(10).collect())
}

fn fhir_property_value(p: &serde_json::Value) -> Option<String> {
    p.as_object()?
        .iter()
        .find(|(k, _)| k.starts_with("value"))
        .and_then(|(_, v)| match v {
            serde_json::Value::Object(o) => o.get("code").and_then(text),
            other => text(other),
        })
}

fn fhir_concepts(concepts: &[serde_json::Value], rows: &mut Rows) {
    for c in concepts {
        let mut row = BTreeMap::new();
        row.insert("code".into(), c.get("code").and_then(text));
        row.insert("display".into(), c.get("display").and_then(text));
        for p in c
            .get("property")
            .and_then(|p| p.as_array())
            .into_iter()
            .flatten()
        {
            let Some(name) = p.get("code").and_then(text) else {
                continue;
            };
            let value = fhir_property_value(p);
            let key = match name.to_ascii_lowercase().as_str() {
                "begindate" | "validfrom" | "effectivedate" | "valid_from" => {
                    "valid_from".to_string()
                }
                "expirationdate" | "validto" | "retirementdate" | "valid_to" => {
                    "valid_to".to_string()
                }
                _ => name,
            };
            let value = if key.starts_with("valid_") {
                value.map(|v| v.chars().take(10).collect())
            } else {
                value
            };
            row.insert(key, value);
        }
        for d in c
            .get("designation")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
        {
            if let (Some(lang), Some(v)) = (
                d.get("language").and_then(text),
                d.get("value").and_then(text),
            ) {
                row.insert(
                    format!("display_{}", lang.split('-').next().unwrap_or(&lang)),
                    Some(v),
                );
            }
        }
        rows.push(row);
        if let Some(children) = c.get("concept").and_then(|c| c.as_array()) {
            fhir_concepts(children, rows);
        }
    }
}

/// Reads a JSON code set; returns its rows' batch and version.
pub fn read_json(
    bytes: &[u8],
    format: Option<CodesetFormat>,
) -> Result<(RecordBatch, Option<String>), LineError> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).map_err(LineError::NotJson)?;
    let format = json_format(&doc, format)?;
    let mut rows: Rows = Vec::new();
    let version = doc.get("version").and_then(text);
    match format {
        CodesetFormat::FhirCodesystem => {
            let concepts = doc
                .get("concept")
                .and_then(|c| c.as_array())
                .ok_or(LineError::NoConcept)?;
            fhir_concepts(concepts, &mut rows);
            Ok((batch_of(&rows, &["code", "display"])?, version))
        }
        CodesetFormat::FhirConceptmap => {
            conceptmap_rows(&doc, &mut rows)?;
            Ok((
                batch_of(&rows, &["code", "display", "target", "equivalence"])?,
                version,
            ))
        }
        CodesetFormat::Thl => {
            let codes = doc
                .get("conceptCodes")
                .unwrap_or(&doc)
                .as_array()
                .ok_or(LineError::ConceptCodesNotList)?;
            rows.extend(codes.iter().map(thl_row));
            Ok((
                batch_of(
                    &rows,
                    &["code", "display", "valid_from", "valid_to", "status"],
                )?,
                version,
            ))
        }
        CodesetFormat::Csv => Err(LineError::CsvNotJson),
    }
}

/// The format of a JSON code set: the one given, else recognised from the document.
fn json_format(
    doc: &serde_json::Value,
    format: Option<CodesetFormat>,
) -> Result<CodesetFormat, LineError> {
    Ok(match format {
        Some(f) => f,
        None => match doc.get("resourceType").and_then(|r| r.as_str()) {
            Some("CodeSystem") => CodesetFormat::FhirCodesystem,
            Some("ConceptMap") => CodesetFormat::FhirConceptmap,
            _ if doc.get("conceptCodes").is_some() || doc.is_array() => CodesetFormat::Thl,
            _ => return Err(LineError::UnknownJson),
        },
    })
}

/// One row per target of each element of each group of a FHIR ConceptMap.
fn conceptmap_rows(doc: &serde_json::Value, rows: &mut Rows) -> Result<(), LineError> {
    for group in doc
        .get("group")
        .and_then(|g| g.as_array())
        .ok_or(LineError::NoGroup)?
    {
        for element in group
            .get("element")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
        {
            for target in element
                .get("target")
                .and_then(|t| t.as_array())
                .into_iter()
                .flatten()
            {
                let mut row = BTreeMap::new();
                row.insert("code".into(), element.get("code").and_then(text));
                row.insert("display".into(), element.get("display").and_then(text));
                row.insert("target".into(), target.get("code").and_then(text));
                row.insert(
                    "target_display".into(),
                    target.get("display").and_then(text),
                );
                // R4 says `equivalence`, R5 `relationship`.
                let eq = target
                    .get("equivalence")
                    .or_else(|| target.get("relationship"))
                    .and_then(text);
                row.insert("equivalence".into(), eq.map(|e| normalise_equivalence(&e)));
                row.insert("source_system".into(), group.get("source").and_then(text));
                row.insert("target_system".into(), group.get("target").and_then(text));
                rows.push(row);
            }
        }
    }
    Ok(())
}

/// The row of one code of the THL code server, its attributes as further columns.
fn thl_row(c: &serde_json::Value) -> BTreeMap<String, Option<String>> {
    let mut row = BTreeMap::new();
    row.insert(
        "code".into(),
        c.get("conceptCodeId")
            .or_else(|| c.get("codeValue"))
            .and_then(text),
    );
    row.insert(
        "display".into(),
        c.get("longName")
            .or_else(|| c.get("abbreviation"))
            .or_else(|| c.get("name"))
            .and_then(text),
    );
    row.insert("valid_from".into(), c.get("beginDate").and_then(day));
    row.insert("valid_to".into(), c.get("expirationDate").and_then(day));
    row.insert("status".into(), c.get("status").and_then(text));
    match c.get("attributes") {
        Some(serde_json::Value::Array(attrs)) => {
            for a in attrs {
                let name = a
                    .get("attributeName")
                    .or_else(|| a.get("name"))
                    .or_else(|| a.get("attributeId"))
                    .and_then(text);
                let value = a
                    .get("attributeValue")
                    .or_else(|| a.get("value"))
                    .and_then(text);
                if let Some(n) = name {
                    row.insert(n, value);
                }
            }
        }
        Some(serde_json::Value::Object(attrs)) => {
            for (k, v) in attrs {
                row.insert(k.clone(), text(v));
            }
        }
        _ => {}
    }
    row
}

/// FHIR equivalences in the words of the line files: equal, wider, narrower, unmapped …
fn normalise_equivalence(e: &str) -> String {
    match e {
        "equivalent" | "equal" | "relatedto" | "related-to" => "equal".into(),
        "source-is-narrower-than-target" | "wider" => "wider".into(),
        "source-is-broader-than-target" | "narrower" | "subsumes" | "specializes" => {
            "narrower".into()
        }
        "unmatched" | "disjoint" | "not-related-to" => "unmapped".into(),
        other => other.to_string(),
    }
}

/// Reads a CSV code set: UTF-8 (a BOM is skipped), `,` or `;` delimited, header row, every
/// column as text.
pub fn read_csv(path: &Path) -> Result<(RecordBatch, String), LineError> {
    let bytes = std::fs::read(path).map_err(|source| LineError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let sha = hex::encode(Sha256::digest(&bytes));
    let text = std::str::from_utf8(&bytes).map_err(|_| LineError::NotUtf8 {
        path: path.to_path_buf(),
    })?;
    let text = text.trim_start_matches('\u{feff}');
    let header = text.lines().next().ok_or_else(|| LineError::Empty {
        path: path.to_path_buf(),
    })?;
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
    let csv_error = |source| LineError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let reader = arrow::csv::ReaderBuilder::new(schema.clone())
        .with_header(true)
        .with_delimiter(delimiter)
        .build(std::io::Cursor::new(text.as_bytes()))
        .map_err(csv_error)?;
    let mut batches = Vec::new();
    for b in reader {
        batches.push(b.map_err(csv_error)?);
    }
    let batch = arrow::compute::concat_batches(&schema, &batches).map_err(LineError::Table)?;
    Ok((batch, sha))
}

/// Reads a code-set file of any supported format.
pub fn read(
    path: &Path,
    format: Option<CodesetFormat>,
) -> Result<(RecordBatch, String, Option<String>), LineError> {
    let is_json = format.is_some_and(|f| f != CodesetFormat::Csv)
        || (format.is_none()
            && path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json")));
    if is_json {
        let bytes = std::fs::read(path).map_err(|source| LineError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let sha = hex::encode(Sha256::digest(&bytes));
        let (batch, version) = read_json(&bytes, format).map_err(|e| LineError::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        Ok((batch, sha, version))
    } else {
        let (batch, sha) = read_csv(path)?;
        Ok((batch, sha, None))
    }
}

/// Loads every code set of a line; problems are diagnostics at the code set.
pub fn load_all(line: &Line) -> Result<BTreeMap<String, Codeset>, Vec<Diagnostic>> {
    let mut out = BTreeMap::new();
    let mut diags = Vec::new();
    for (name, spec) in &line.spec.codesets {
        match load_one(line, &name.value, spec) {
            Ok(c) => {
                out.insert(name.value.clone(), c);
            }
            Err(d) => diags.push(d),
        }
    }
    if diags.is_empty() {
        Ok(out)
    } else {
        Err(diags)
    }
}

/// Loads the code set `name`, checked against its pins and for its key column.
fn load_one(
    line: &Line,
    name: &str,
    spec: &crate::line::spec::CodesetSpec,
) -> Result<Codeset, Diagnostic> {
    let path = line.dir.join(&spec.path.value);
    let (batch, sha256, version) = read(&path, spec.format.as_ref().map(|f| f.value))
        .map_err(|e| Diagnostic::error(Code::V304, &line.file, spec.path.at, e.to_string()))?;
    if let Some(pin) = &spec.sha256
        && !pin.value.eq_ignore_ascii_case(&sha256)
    {
        return Err(Diagnostic::error(
            Code::V305,
            &line.file,
            pin.at,
            format!("code set `{name}` has changed: its file's sha256 is {sha256}"),
        )
        .with_hint("review the new file, then update `sha256`"));
    }
    if let Some(pin) = &spec.version
        && version.as_deref() != Some(pin.value.as_str())
    {
        return Err(Diagnostic::error(
            Code::V305,
            &line.file,
            pin.at,
            format!(
                "code set `{name}` is version {}, not {}",
                version.as_deref().unwrap_or("(none)"),
                pin.value
            ),
        ));
    }
    if batch.schema().index_of(&spec.key).is_err() {
        let cols: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        return Err(Diagnostic::error(
            Code::V304,
            &line.file,
            if spec.key.at.line > 0 {
                spec.key.at
            } else {
                spec.path.at
            },
            format!(
                "code set `{name}` has no key column `{}`; it has {}",
                spec.key.value,
                cols.join(", ")
            ),
        ));
    }
    let rows = batch.num_rows();
    match MemTable::try_new(batch.schema(), vec![vec![batch]]) {
        Ok(t) => Ok(Codeset {
            table: Arc::new(t),
            sha256,
            version,
            rows,
        }),
        Err(e) => Err(Diagnostic::error(
            Code::V304,
            &line.file,
            spec.path.at,
            e.to_string(),
        )),
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

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/codesets")
            .join(name)
    }

    fn cell(b: &RecordBatch, column: &str, row: usize) -> Option<String> {
        let a = b.column_by_name(column)?.as_string::<i32>();
        a.is_valid(row).then(|| a.value(row).to_string())
    }

    #[test]
    fn fhir_codesystem_concepts_properties_and_designations() {
        let (b, sha, version) = read(&fixture("tila.codesystem.json"), None).unwrap();
        assert_eq!(version.as_deref(), Some("2"));
        assert_eq!(sha.len(), 64);
        // Nested concepts are flattened.
        assert_eq!(b.num_rows(), 3);
        assert_eq!(cell(&b, "code", 1).as_deref(), Some("A1"));
        assert_eq!(cell(&b, "valid_from", 0).as_deref(), Some("2020-01-01"));
        assert_eq!(cell(&b, "display_sv", 0).as_deref(), Some("Aktiv"));
        assert_eq!(cell(&b, "status", 2).as_deref(), Some("retired"));
    }

    #[test]
    fn fhir_conceptmap_targets_and_equivalences() {
        let (b, _, version) = read(&fixture("rokotteet.conceptmap.json"), None).unwrap();
        assert_eq!(version.as_deref(), Some("1.0.0"));
        assert_eq!(b.num_rows(), 3);
        let rows: Vec<(Option<String>, Option<String>, Option<String>)> = (0..3)
            .map(|i| {
                (
                    cell(&b, "code", i),
                    cell(&b, "target", i),
                    cell(&b, "equivalence", i),
                )
            })
            .collect();
        assert_eq!(
            rows[0],
            (Some("03".into()), Some("MPR".into()), Some("equal".into()))
        );
        assert_eq!(
            rows[1],
            (Some("94".into()), Some("MPR".into()), Some("wider".into()))
        );
        assert_eq!(
            cell(&b, "source_system", 2).as_deref(),
            Some("urn:oid:1.2.246.537.6.32.2007")
        );
        assert_eq!(
            normalise_equivalence("source-is-broader-than-target"),
            "narrower"
        );
        assert_eq!(normalise_equivalence("unmatched"), "unmapped");
    }

    #[test]
    fn thl_code_server_json() {
        let (b, _, version) = read(&fixture("luokitus.thl.json"), None).unwrap();
        assert_eq!(version.as_deref(), Some("2023"));
        assert_eq!(cell(&b, "code", 1).as_deref(), Some("X2"));
        assert_eq!(cell(&b, "display", 0).as_deref(), Some("Ensimmäinen"));
        assert_eq!(cell(&b, "valid_to", 1).as_deref(), Some("2024-06-30"));
        assert_eq!(cell(&b, "valid_to", 0), None);
        assert_eq!(cell(&b, "status", 1).as_deref(), Some("RETIRED"));
        assert_eq!(cell(&b, "Ruotsiksi", 0).as_deref(), Some("Första"));
        assert_eq!(cell(&b, "Englanniksi", 1).as_deref(), Some("Second"));
        assert!(read_json(b"{\"x\": 1}", None).is_err());
    }

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
