//! The FHIR R4 source parser of Valtava.
//!
//! Reads FHIR resources from bulk-export NDJSON (one resource per line) or from Bundles
//! (`entry[].resource`, one JSON document per object), and flattens them with a
//! [SQL-on-FHIR v2](https://sql-on-fhir.org) view definition: each resource of the view's
//! type gives rows of the view's columns. The declared columns of the source are the view's
//! columns (by name). A resource that breaks the view (say, two values where one is
//! expected) is rejected with its resource id and the reason; a line that is not JSON is
//! rejected with its line number.
//!
//! ```yaml
//! source:
//!   format: fhir
//!   location: kanta/{period}/Patient.ndjson
//!   options:
//!     view:
//!       resource: Patient
//!       select:
//!         - column:
//!             - { name: id, path: getResourceKey() }
//!             - { name: hetu, path: "identifier.where(system = 'urn:oid:1.2.246.21').value.first()" }
//!   columns: { id: string, hetu: { type: string, personal: true } }
//! ```

pub mod fhirpath;
pub mod view;

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use valtava_plugin::{
    ParseRequest, ParseStream, ParsedBatch, Parser, SourceObject, TextBatchBuilder, typed_options,
};

/// Options of the `fhir` format.
#[derive(Debug, Clone, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct FhirOptions {
    /// The SQL-on-FHIR v2 ViewDefinition, written in the line file.
    #[serde(default)]
    pub view: Option<serde_json::Value>,
    /// A ViewDefinition JSON file, relative to the line file.
    #[serde(default)]
    pub view_file: Option<String>,
}

impl FhirOptions {
    fn view(&self, base: Option<&std::path::Path>) -> Result<view::View, String> {
        let doc = match (&self.view, &self.view_file) {
            (Some(v), None) => v.clone(),
            (None, Some(f)) => {
                let path = base.map(|b| b.join(f)).unwrap_or_else(|| f.into());
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            _ => return Err("give the view definition as `view` or `view_file`".into()),
        };
        view::compile(&doc)
    }
}

/// The `fhir` parser.
#[derive(Debug, Default)]
pub struct FhirParser;

fn text_of(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s)),
        Value::Array(a) if a.is_empty() => None,
        other => Some(std::borrow::Cow::Owned(other.to_string())),
    }
}

impl Parser for FhirParser {
    fn format(&self) -> &'static str {
        "fhir"
    }

    fn options_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<FhirOptions>()
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), String> {
        let o = typed_options::<FhirOptions>(options)?;
        // A view file is checked when the line runs (its folder is known then).
        if o.view.is_some() {
            o.view(None)?;
        }
        Ok(())
    }

    fn parse(&self, object: SourceObject, request: ParseRequest) -> ParseStream {
        valtava_plugin::whole_object_streamed(object, request, |bytes, request, emit| {
            let options = typed_options::<FhirOptions>(&request.options)?;
            let view = options.view(request.base_dir.as_deref())?;
            let missing: Vec<&String> = request
                .columns
                .iter()
                .filter(|c| !view.columns.contains(c))
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "the view has no column(s) {missing:?}; it has {:?}",
                    view.columns
                ));
            }
            read(&bytes, &view, request, emit)
        })
    }
}

/// An object's resources: the lines of NDJSON, or the resources of one JSON document (a
/// Bundle's entries, or a single resource).
enum Resources<'a> {
    /// Non-empty lines with their line numbers.
    Lines(Vec<(u64, &'a str)>),
    /// Resources with the entry (1-based) each is reported at.
    Parsed(Vec<(u64, Value)>),
}

fn resources(text: &str) -> Resources<'_> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{')
        && let Ok(doc) = serde_json::from_str::<Value>(trimmed)
    {
        if doc.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
            return Resources::Parsed(
                doc.get("entry")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .filter_map(|(i, e)| e.get("resource").map(|r| (i as u64 + 1, r.clone())))
                    .collect(),
            );
        }
        return Resources::Parsed(vec![(1, doc)]);
    }
    Resources::Lines(
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i as u64 + 1, l))
            .collect(),
    )
}

/// Rows of some resources, as batches.
fn rows_of<'a>(
    resources: impl Iterator<Item = (u64, Result<std::borrow::Cow<'a, Value>, String>)>,
    view: &view::View,
    request: &ParseRequest,
) -> Result<Vec<ParsedBatch>, String> {
    let mut builder = TextBatchBuilder::new(request.columns.clone());
    let mut out = Vec::new();
    for (row, resource) in resources {
        match resource.and_then(|r| view.rows(r.into_owned())) {
            Ok(rows) => {
                for r in rows {
                    let values: Vec<Option<std::borrow::Cow<'_, str>>> = request
                        .columns
                        .iter()
                        .map(|c| r.get(c).and_then(text_of))
                        .collect();
                    builder.push_row(row, values.iter().map(|v| v.as_deref()));
                }
            }
            Err(reason) => builder.reject(row, reason),
        }
        if builder.len() >= request.batch_size {
            out.push(builder.finish().map_err(|e| e.to_string())?);
        }
    }
    if !builder.is_empty() {
        out.push(builder.finish().map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// Evaluates the view over an object's resources and emits the batches in the object's
/// order. NDJSON lines are parsed and evaluated in chunks on all cores (at most twice as
/// many chunks as cores ahead of the one handed on, so memory stays a few chunks' worth).
fn read(
    bytes: &[u8],
    view: &view::View,
    request: &ParseRequest,
    emit: &mut dyn FnMut(ParsedBatch) -> bool,
) -> Result<(), String> {
    // Valid UTF-8 (the usual case) is checked by the fast validator; only an object with
    // invalid bytes goes through the slower lossy conversion.
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => std::borrow::Cow::Borrowed(t),
        Err(_) => String::from_utf8_lossy(bytes),
    };
    let lines = match resources(&text) {
        Resources::Parsed(list) => {
            let iter = list
                .iter()
                .map(|(row, r)| (*row, Ok(std::borrow::Cow::Borrowed(r))));
            for b in rows_of(iter, view, request)? {
                if !emit(b) {
                    break;
                }
            }
            return Ok(());
        }
        Resources::Lines(lines) => lines,
    };
    let chunk = request.batch_size.max(1);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let parse_line = |(row, line): &(u64, &str)| {
        (
            *row,
            serde_json::from_str::<Value>(line)
                .map(std::borrow::Cow::Owned)
                .map_err(|e| format!("not JSON: {e}")),
        )
    };
    let parts: Vec<&[(u64, &str)]> = lines.chunks(chunk).collect();
    // Workers take the next chunk as soon as they are free, at most `window` chunks ahead
    // of the one emitted next: no round waits for its slowest chunk, and the chunks done
    // are emitted while the workers go on.
    let window = 2 * workers;
    let progress = std::sync::Mutex::new(Progress {
        next: 0,
        emitted: 0,
        stop: false,
    });
    let moved = std::sync::Condvar::new();
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<Vec<ParsedBatch>, String>)>();
    std::thread::scope(|s| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (progress, moved, parts) = (&progress, &moved, &parts);
            s.spawn(move || {
                loop {
                    let i = {
                        let Ok(mut p) = progress.lock() else { return };
                        while !p.stop && p.next < parts.len() && p.next >= p.emitted + window {
                            p = match moved.wait(p) {
                                Ok(p) => p,
                                Err(_) => return,
                            };
                        }
                        if p.stop || p.next >= parts.len() {
                            return;
                        }
                        p.next += 1;
                        p.next - 1
                    };
                    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        rows_of(parts[i].iter().map(parse_line), view, request)
                    }))
                    .unwrap_or_else(|_| Err("the FHIR view evaluation panicked".into()));
                    if tx.send((i, done)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut ready = std::collections::BTreeMap::new();
        let mut next = 0;
        let mut result = Ok(());
        'emit: for (i, done) in rx.iter() {
            ready.insert(i, done);
            while let Some(done) = ready.remove(&next) {
                next += 1;
                let stop = match done {
                    Ok(batches) => !batches.into_iter().all(&mut *emit),
                    Err(e) => {
                        result = Err(e);
                        true
                    }
                };
                if let Ok(mut p) = progress.lock() {
                    p.emitted = next;
                    p.stop |= stop;
                }
                moved.notify_all();
                if stop {
                    break 'emit;
                }
            }
        }
        // Workers waiting for room see the stop (or the end) and return.
        let stopped = progress
            .lock()
            .map(|mut p| std::mem::replace(&mut p.stop, true))
            .unwrap_or(true);
        moved.notify_all();
        if result.is_ok() && !stopped && next < parts.len() {
            // Every chunk taken is sent; a missing one would be rows lost without a word.
            result = Err(format!(
                "the FHIR view evaluation ended after {next} of {} chunks",
                parts.len()
            ));
        }
        result
    })
}

/// How far the workers of [`read`] are: the next chunk to take, the chunks emitted, and
/// whether to stop (the reader stopped listening, or a chunk failed).
struct Progress {
    next: usize,
    emitted: usize,
    stop: bool,
}

/// The parser as a registry entry.
pub fn parser() -> Arc<dyn Parser> {
    Arc::new(FhirParser)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_from_files_and_errors_with_resource_and_path() {
        let dir = std::env::temp_dir().join(format!("valtava-fhir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("nimet.json"),
            r#"{"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}, {"name": "sukunimi", "path": "name.family"}]}]}"#,
        )
        .unwrap();
        let o = FhirOptions {
            view: None,
            view_file: Some("nimet.json".into()),
        };
        let v = o.view(Some(&dir)).unwrap();
        assert_eq!(v.columns, vec!["id", "sukunimi"]);
        let request = ParseRequest {
            columns: v.columns.clone(),
            types: vec![],
            options: Value::Null,
            batch_size: 10,
            base_dir: None,
        };
        let ndjson = b"{\"resourceType\": \"Patient\", \"id\": \"a\", \"name\": [{\"family\": \"X\"}]}\n{\"resourceType\": \"Patient\", \"id\": \"b\", \"name\": [{\"family\": \"Y\"}, {\"family\": \"Z\"}]}\nnot json\n";
        let parsed = read_all(ndjson, &v, &request);
        assert_eq!(parsed[0].batch.num_rows(), 1);
        let reasons: Vec<(u64, String)> = parsed[0]
            .rejects
            .iter()
            .map(|r| (r.row, r.reason.clone()))
            .collect();
        assert_eq!(reasons[0].0, 2);
        assert!(
            reasons[0].1.contains("Patient resource")
                && !reasons[0].1.contains("Patient/b")
                && reasons[0].1.contains("path `name.family`"),
            "{reasons:?}"
        );
        assert_eq!(reasons[1].0, 3);
        assert!(reasons[1].1.contains("not JSON"), "{reasons:?}");
        assert!(FhirOptions::default().view(None).is_err());

        // Many chunks on several threads: every row, in the object's order, numbered by
        // its line (blank lines counted), bad lines quarantined in place.
        let mut text = String::new();
        for i in 1..=40 {
            match i % 10 {
                0 => text.push_str("{broken\n"),
                5 => text.push('\n'),
                _ => text.push_str(&format!(
                    "{{\"resourceType\": \"Patient\", \"id\": \"p{i}\", \"name\": [{{\"family\": \"F{i}\"}}]}}\n"
                )),
            }
        }
        let request = ParseRequest {
            batch_size: 3,
            ..request
        };
        let parsed = read_all(text.as_bytes(), &v, &request);
        let mut rows = Vec::new();
        let mut rejects = Vec::new();
        for p in &parsed {
            let ids = p
                .batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            let nums = p
                .batch
                .column(2)
                .as_any()
                .downcast_ref::<arrow::array::UInt64Array>()
                .unwrap();
            for r in 0..p.batch.num_rows() {
                rows.push((nums.value(r), ids.value(r).to_string()));
            }
            rejects.extend(p.rejects.iter().map(|r| r.row));
        }
        let want: Vec<(u64, String)> = (1..=40u64)
            .filter(|i| i % 10 != 0 && i % 10 != 5)
            .map(|i| (i, format!("p{i}")))
            .collect();
        assert_eq!(rows, want);
        assert_eq!(rejects, vec![10, 20, 30, 40]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Hundreds of chunks through the workers' window come out whole and in order; a reader
    /// that stops listening stops the workers (no more batches, no hang).
    #[test]
    fn many_chunks_in_order_and_a_stop_ends_the_work() {
        let v = FhirOptions {
            view: Some(serde_json::json!({"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]})),
            view_file: None,
        }
        .view(None)
        .unwrap();
        let request = ParseRequest {
            columns: v.columns.clone(),
            types: vec![],
            options: Value::Null,
            batch_size: 3,
            base_dir: None,
        };
        let text: String = (1..=2000)
            .map(|i| format!("{{\"resourceType\": \"Patient\", \"id\": \"p{i}\"}}\n"))
            .collect();
        let ids: Vec<String> = read_all(text.as_bytes(), &v, &request)
            .iter()
            .flat_map(|p| {
                let a = p
                    .batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::StringArray>()
                    .unwrap()
                    .clone();
                (0..arrow::array::Array::len(&a)).map(move |r| a.value(r).to_string())
            })
            .collect();
        assert_eq!(ids, (1..=2000).map(|i| format!("p{i}")).collect::<Vec<_>>());
        let mut emitted = 0;
        read(text.as_bytes(), &v, &request, &mut |_| {
            emitted += 1;
            emitted < 5
        })
        .unwrap();
        assert_eq!(emitted, 5);
    }

    fn read_all(bytes: &[u8], v: &view::View, request: &ParseRequest) -> Vec<ParsedBatch> {
        let mut out = Vec::new();
        read(bytes, v, request, &mut |b| {
            out.push(b);
            true
        })
        .unwrap();
        out
    }
}

#[cfg(test)]
mod conformance {
    //! The official SQL-on-FHIR v2 test suite: every `shareable` test.
    use super::*;

    /// Rows as text with keys in one order, so that rows compare whatever their key order.
    fn sorted(rows: Vec<Value>) -> Vec<String> {
        let mut v: Vec<String> = rows
            .into_iter()
            .map(|r| match r {
                Value::Object(o) => serde_json::to_string(
                    &o.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
                )
                .unwrap_or_default(),
                other => other.to_string(),
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn sql_on_fhir_v2_shareable_tests() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/conformance/sql-on-fhir-v2/tests");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let (mut passed, mut total) = (0, 0);
        let mut failures = Vec::new();
        let mut report = serde_json::Map::new();
        for f in files {
            let suite: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
            let resources: Vec<Value> = suite["resources"].as_array().cloned().unwrap_or_default();
            let mut results = Vec::new();
            for t in suite["tests"].as_array().unwrap() {
                if !t["tags"]
                    .as_array()
                    .is_some_and(|tags| tags.iter().any(|x| x == "shareable"))
                {
                    continue;
                }
                total += 1;
                let title = t["title"].as_str().unwrap_or_default();
                let outcome: Result<Vec<Value>, String> = view::compile(&t["view"]).and_then(|v| {
                    let mut rows = Vec::new();
                    for r in &resources {
                        for row in v.rows(r.clone())? {
                            rows.push(Value::Object(row.into_iter().collect()));
                        }
                    }
                    Ok(rows)
                });
                let ok = match (
                    &outcome,
                    t.get("expectError").and_then(Value::as_bool) == Some(true),
                ) {
                    (Err(_), true) => true,
                    (Ok(rows), false) => {
                        let expected: Vec<Value> =
                            t["expect"].as_array().cloned().unwrap_or_default();
                        sorted(rows.clone()) == sorted(expected)
                    }
                    _ => false,
                };
                if ok {
                    passed += 1;
                } else {
                    failures.push(format!(
                        "{} / {title}: {:?}",
                        f.file_name().unwrap().to_string_lossy(),
                        outcome
                    ));
                }
                results.push(serde_json::json!({ "name": title, "result": { "passed": ok } }));
            }
            report.insert(
                f.file_name().unwrap().to_string_lossy().to_string(),
                serde_json::json!({ "tests": results }),
            );
        }
        let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/sql-on-fhir-v2-test-report.json");
        let _ = std::fs::write(
            &out,
            serde_json::to_vec_pretty(&Value::Object(report)).unwrap(),
        );
        println!(
            "SQL-on-FHIR v2 shareable tests: {passed}/{total} passed (report: {})",
            out.display()
        );
        for f in &failures {
            println!("  failed: {f}");
        }
        assert_eq!(passed, total, "{} of {total} failed", total - passed);
    }
}
