//! The FHIR R4 source parser of Valtava.
//!
//! Reads FHIR resources from bulk-export NDJSON (one resource per line) or from Bundles
//! (`entry[].resource`, one JSON document per object), and flattens them with a
//! [SQL-on-FHIR v2](https://sql-on-fhir.org) view definition: each resource of the view's
//! type gives rows of the view's columns. The declared columns of the source are the view's
//! columns (by name). A resource that breaks the view (say, two values where one is
//! expected) is rejected with its line (or Bundle entry) number and the reason, never its
//! id; a line that is not JSON is rejected with its line number.
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
//!
//! # Bounds
//!
//! Every object is assumed hostile (see [`Limits`]); what one object may make the parser
//! hold or do is bounded, and messages name places (a line number, a level), never content
//! (a line may hold identity codes):
//!
//! - The object is read whole, at most `limits.object_bytes` (larger ones are refused
//!   before parsing), so a partial line is never buffered on its own.
//! - An NDJSON line longer than `limits.record_bytes` stops the object with a `record_kib`
//!   limit naming the line's number, after the lines before it have been read: no bulk
//!   export writes one resource that large, and as JSON values it would take several times
//!   its size. A resource inside a Bundle is not measured on its own; the Bundle as a whole
//!   is bounded by `object_bytes`.
//! - JSON nesting is measured byte by byte before anything parses it, because parsing,
//!   cloning, comparing and dropping JSON values all recurse once per level: a line or
//!   resource nesting deeper than `limits.depth` is rejected as a row ("JSON nests deeper
//!   than N levels"), and a whole document (a Bundle) nesting deeper than that plus the
//!   Bundle's own three levels stops the object with a `depth` limit. serde_json refuses
//!   128 levels of its own accord, so a `depth` above 127 counts as 127.
//! - A view's `repeat` descends at most `limits.depth` levels (see [`view`]).
//! - An output row whose values together are longer than `limits.record_bytes` stops the
//!   object with a `record_kib` limit naming the resource's line (or entry) and the row's
//!   number among its rows: `forEach` repeats a resource's parent columns in each of its
//!   rows, and columns may name the same value twice, so rows can be longer than the
//!   resource. A batch is finished once it holds 64 MiB of text, even before it has
//!   `batch_size` rows.

pub mod fhirpath;
pub mod view;

use std::borrow::Cow;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use valtava_plugin::{
    Limits, ParseRequest, ParseStream, ParsedBatch, Parser, SourceObject, Stop, TextBatchBuilder,
    typed_options,
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

fn text_of(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Array(a) if a.is_empty() => None,
        other => Some(Cow::Owned(other.to_string())),
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
            let mut view = options.view(request.base_dir.as_deref())?;
            view.depth = resource_depth(&request.limits);
            view.output_bytes = request.limits.object_bytes;
            let missing: Vec<&String> = request
                .columns
                .iter()
                .filter(|c| !view.columns.contains(c))
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "the view has no column(s) {missing:?}; it has {:?}",
                    view.columns
                )
                .into());
            }
            read(&bytes, &view, request, emit)
        })
    }
}

/// An object's resources: the lines of NDJSON, or the resources of one JSON document (a
/// Bundle's entries, or a single resource).
enum Resources<'a> {
    /// Non-empty lines with their line numbers, up to the first line longer than a record
    /// may be, and the stop for that one (`cut`): the lines before it are still read.
    Lines {
        lines: Vec<(u64, &'a str)>,
        cut: Option<Stop>,
    },
    /// Resources with the entry (1-based) each is reported at.
    Parsed(Vec<(u64, Value)>),
}

/// The resources of an object's text: one JSON document when the text is one, else NDJSON.
/// A document nesting deeper than a Bundle of resources may stops the object.
fn resources<'a>(text: &'a str, limits: &Limits) -> Result<Resources<'a>, Stop> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{')
        && let Some(doc) = document(trimmed, limits)?
    {
        return Ok(Resources::Parsed(entries(doc)));
    }
    Ok(lines(text, limits))
}

/// `text` parsed, when it is one JSON document; `None` when it is not (it is then read as
/// NDJSON, and a line that is not JSON is rejected in its place). Its nesting is measured
/// before it is parsed: deeper than [`document_depth`] stops the object.
fn document(text: &str, limits: &Limits) -> Result<Option<Value>, Stop> {
    let Some((end, deepest)) = first_value(text.as_bytes()) else {
        return Ok(None);
    };
    if !text[end..].trim().is_empty() {
        return Ok(None);
    }
    let limit = document_depth(limits);
    if deepest > limit {
        return Err(Stop::Limit {
            setting: "depth",
            message: format!("the JSON document nests deeper than {limit} levels"),
        });
    }
    Ok(serde_json::from_str::<Value>(text).ok())
}

/// The resources of a JSON document: a Bundle's `entry[].resource` (numbered by entry), or
/// the document itself as one resource.
fn entries(doc: Value) -> Vec<(u64, Value)> {
    match doc {
        Value::Object(mut bundle)
            if bundle.get("resourceType").and_then(Value::as_str) == Some("Bundle") =>
        {
            let Some(Value::Array(entries)) = bundle.remove("entry") else {
                return Vec::new();
            };
            entries
                .into_iter()
                .enumerate()
                .filter_map(|(i, entry)| match entry {
                    Value::Object(mut e) => e.remove("resource").map(|r| (i as u64 + 1, r)),
                    _ => None,
                })
                .collect()
        }
        resource => vec![(1, resource)],
    }
}

/// The non-empty lines of NDJSON with their numbers, up to the first line longer than
/// `limits.record_bytes`: that one stops the object (after the lines before it are read),
/// named by its number only.
fn lines<'a>(text: &'a str, limits: &Limits) -> Resources<'a> {
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let row = i as u64 + 1;
        if line.len() > limits.record_bytes {
            let cut = Stop::Limit {
                setting: "record_kib",
                message: format!(
                    "line {row} is longer than {}",
                    valtava_plugin::size_text(limits.record_bytes)
                ),
            };
            return Resources::Lines {
                lines,
                cut: Some(cut),
            };
        }
        if !line.trim().is_empty() {
            lines.push((row, line));
        }
    }
    Resources::Lines { lines, cut: None }
}

/// Levels of nesting serde_json reads: it refuses the 128th of its own accord (an error,
/// not a stack overflow), so no `limits.depth` above this can be honoured.
const JSON_DEPTH: usize = 127;

/// Levels a Bundle adds above each of its resources: the Bundle, its `entry` array and the
/// entry.
const BUNDLE_LEVELS: usize = 3;

/// How deep one resource (an NDJSON line, a Bundle's entry) may nest.
fn resource_depth(limits: &Limits) -> usize {
    limits.depth.min(JSON_DEPTH)
}

/// How deep a whole JSON document may nest: a Bundle's own levels above its resources'.
fn document_depth(limits: &Limits) -> usize {
    (resource_depth(limits) + BUNDLE_LEVELS).min(JSON_DEPTH)
}

/// Why a resource nesting too deep is rejected: the bound, not the content.
fn too_deep(depth: usize) -> String {
    format!("JSON nests deeper than {depth} levels")
}

/// Nesting of JSON arrays and objects, followed byte by byte without parsing, so that the
/// depth of hostile text is known before anything recurses over it. Brackets inside strings
/// do not count; a closing bracket without an opening one is let be (such text is not JSON
/// and is rejected when parsed).
#[derive(Default)]
struct Nesting {
    depth: usize,
    deepest: usize,
    in_string: bool,
    escaped: bool,
}

impl Nesting {
    /// Follows one more byte (multi-byte UTF-8 never looks like a quote or a bracket).
    #[inline]
    fn step(&mut self, b: u8) {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            return;
        }
        match b {
            b'"' => self.in_string = true,
            b'{' | b'[' => {
                self.depth += 1;
                self.deepest = self.deepest.max(self.depth);
            }
            b'}' | b']' => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
    }
}

/// Whether `json` nests arrays and objects deeper than `limit` levels.
fn nests_deeper(json: &[u8], limit: usize) -> bool {
    // Nesting that deep takes more than `limit` opening brackets: most resources have
    // fewer, and counting bytes is much quicker than following strings.
    if json.iter().filter(|&&b| b == b'{' || b == b'[').count() <= limit {
        return false;
    }
    let mut nesting = Nesting::default();
    json.iter().any(|&b| {
        nesting.step(b);
        nesting.depth > limit
    })
}

/// Where the JSON value that `json` starts with ends (just past its closing bracket) and
/// how deep it nests; `None` when it does not close. Only a counter, however deep.
fn first_value(json: &[u8]) -> Option<(usize, usize)> {
    let mut nesting = Nesting::default();
    for (i, &b) in json.iter().enumerate() {
        nesting.step(b);
        if nesting.depth == 0 && nesting.deepest > 0 {
            return Some((i + 1, nesting.deepest));
        }
    }
    None
}

/// Whether a parsed value nests arrays and objects deeper than `limit` levels, walked with
/// a stack of its own (not recursion).
fn value_deeper(value: &Value, limit: usize) -> bool {
    let mut stack = vec![(value, 1usize)];
    while let Some((v, level)) = stack.pop() {
        match v {
            Value::Array(_) | Value::Object(_) if level > limit => return true,
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, level + 1))),
            Value::Object(o) => stack.extend(o.values().map(|c| (c, level + 1))),
            _ => {}
        }
    }
    false
}

/// A resource of a JSON document, or why it is rejected: it nests deeper than `depth`.
fn within_depth(resource: &Value, depth: usize) -> Result<Cow<'_, Value>, String> {
    if value_deeper(resource, depth) {
        return Err(too_deep(depth));
    }
    Ok(Cow::Borrowed(resource))
}

/// One NDJSON line as a resource, or why it is rejected: nesting deeper than `depth` is
/// refused before parsing; a line that is not JSON is named by the parser's message (a
/// place in the line, not its content).
fn line_resource(line: &str, depth: usize) -> Result<Cow<'static, Value>, String> {
    if nests_deeper(line.as_bytes(), depth) {
        return Err(too_deep(depth));
    }
    serde_json::from_str::<Value>(line)
        .map(Cow::Owned)
        .map_err(|e| format!("not JSON: {e}"))
}

/// Most text one batch may hold before it is finished, whatever `batch_size` says: a
/// resource's rows repeat its parent columns' values once per `forEach` item, so rows near
/// `limits.record_kib` each are cheap to make, and a batch bounded by rows alone could hold
/// `batch_size` times that, tens of GiB at the defaults. A string column of a batch also
/// cannot hold more than 2 GiB of text.
const BATCH_BYTES: usize = 64 << 20;

/// The text bytes of an output row (its values together), refusing a row longer than
/// `limits.record_bytes`: columns may repeat a value, so a row can be longer than the
/// resource it comes from. The stop names the resource's place (`line` or `entry` and its
/// number) and the row's number among its rows, never a value.
fn row_bytes(
    values: &[Option<Cow<'_, str>>],
    limits: &Limits,
    place: &str,
    at: u64,
    index: usize,
) -> Result<usize, Stop> {
    let bytes = values
        .iter()
        .flatten()
        .fold(0usize, |sum, v| sum.saturating_add(v.len()));
    if bytes > limits.record_bytes {
        return Err(Stop::Limit {
            setting: "record_kib",
            message: format!(
                "row {} of the resource at {place} {at} is longer than {} (its values together)",
                index + 1,
                valtava_plugin::size_text(limits.record_bytes)
            ),
        });
    }
    Ok(bytes)
}

/// Rows of some resources, as batches of `batch_size` rows (a resource's rows stay in one
/// batch) or, once a batch holds more than [`BATCH_BYTES`] of text, fewer. `place` names
/// what a resource's number counts (`line`, `entry`) in messages. A row longer than a
/// record may be stops the object.
fn rows_of<'a>(
    resources: impl Iterator<Item = (u64, Result<Cow<'a, Value>, String>)>,
    view: &view::View,
    request: &ParseRequest,
    place: &str,
) -> Result<Vec<ParsedBatch>, Stop> {
    let finish = |b: &mut TextBatchBuilder| b.finish().map_err(|e| Stop::Invalid(e.to_string()));
    let mut builder = TextBatchBuilder::new(request.columns.clone());
    // Text bytes of the rows in `builder`, against `BATCH_BYTES`.
    let mut held = 0usize;
    let mut out = Vec::new();
    for (row, resource) in resources {
        match resource.and_then(|r| view.rows(r.into_owned())) {
            Ok(rows) => {
                for (index, r) in rows.into_iter().enumerate() {
                    let values: Vec<Option<Cow<'_, str>>> = request
                        .columns
                        .iter()
                        .map(|c| r.get(c).and_then(text_of))
                        .collect();
                    held += row_bytes(&values, &request.limits, place, row, index)?;
                    builder.push_row(row, values.iter().map(|v| v.as_deref()));
                    if held > BATCH_BYTES {
                        out.push(finish(&mut builder)?);
                        held = 0;
                    }
                }
            }
            Err(reason) => builder.reject(row, reason),
        }
        if builder.len() >= request.batch_size {
            out.push(finish(&mut builder)?);
            held = 0;
        }
    }
    if !builder.is_empty() {
        out.push(finish(&mut builder)?);
    }
    Ok(out)
}

/// Evaluates the view over an object's resources and emits the batches in the object's
/// order. A line longer than a record may be stops the object once the lines before it are
/// emitted.
fn read(
    bytes: &[u8],
    view: &view::View,
    request: &ParseRequest,
    emit: &mut dyn FnMut(ParsedBatch) -> bool,
) -> Result<(), Stop> {
    // Valid UTF-8 (the usual case) is checked by the fast validator; only an object with
    // invalid bytes goes through the slower lossy conversion.
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => Cow::Borrowed(t),
        Err(_) => String::from_utf8_lossy(bytes),
    };
    match resources(&text, &request.limits)? {
        Resources::Parsed(list) => {
            let depth = resource_depth(&request.limits);
            let iter = list.iter().map(|(row, r)| (*row, within_depth(r, depth)));
            for b in rows_of(iter, view, request, "entry")? {
                if !emit(b) {
                    break;
                }
            }
            Ok(())
        }
        Resources::Lines { lines, cut } => {
            let finished = read_lines(&lines, view, request, emit)?;
            match cut {
                Some(stop) if finished => Err(stop),
                _ => Ok(()),
            }
        }
    }
}

/// Evaluates the view over NDJSON lines and emits the batches in the lines' order; `true`
/// when every line was emitted, `false` when the reader stopped listening first. The lines
/// are parsed and evaluated in chunks on all cores (at most twice as many chunks as cores
/// ahead of the one handed on, so memory stays a few chunks' worth).
fn read_lines(
    lines: &[(u64, &str)],
    view: &view::View,
    request: &ParseRequest,
    emit: &mut dyn FnMut(ParsedBatch) -> bool,
) -> Result<bool, Stop> {
    let chunk = request.batch_size.max(1);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let depth = resource_depth(&request.limits);
    let parse_line = move |(row, line): &(u64, &str)| (*row, line_resource(line, depth));
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
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<Vec<ParsedBatch>, Stop>)>();
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
                        rows_of(parts[i].iter().map(parse_line), view, request, "line")
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
        let mut result: Result<(), Stop> = Ok(());
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
            )
            .into());
        }
        // Stopped with the result still fine: the reader stopped listening.
        result.map(|()| !stopped)
    })
}

/// How far the workers of [`read_lines`] are: the next chunk to take, the chunks emitted, and
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
            limits: Limits::default(),
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
            limits: Limits::default(),
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

    /// An identity code (a made-up hetu) that no message may quote.
    const MARKER: &str = "131052-308T";

    /// A view of Patient ids and a request for it, as the engine makes one (the view in
    /// the options, the default limits).
    fn ids_view() -> (view::View, ParseRequest) {
        let view = serde_json::json!({
            "resource": "Patient",
            "select": [{"column": [{"name": "id", "path": "id"}]}]
        });
        let v = view::compile(&view).unwrap();
        let request = ParseRequest {
            columns: v.columns.clone(),
            types: vec![],
            options: serde_json::json!({ "view": view }),
            batch_size: 100,
            base_dir: None,
            limits: Limits::default(),
        };
        (v, request)
    }

    fn patient(id: &str) -> String {
        format!("{{\"resourceType\": \"Patient\", \"id\": \"{id}\"}}")
    }

    /// The ids of the rows, in order.
    fn ids(parsed: &[ParsedBatch]) -> Vec<String> {
        let mut out = Vec::new();
        for p in parsed {
            let a = p
                .batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            out.extend((0..arrow::array::Array::len(a)).map(|r| a.value(r).to_string()));
        }
        out
    }

    /// Parses `bytes` as one object through the parser's stream, as the engine does.
    fn parse_object(
        bytes: Vec<u8>,
        request: ParseRequest,
    ) -> Vec<Result<ParsedBatch, valtava_plugin::ParseError>> {
        use futures::StreamExt;
        use object_store::ObjectStoreExt;
        let store: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::memory::InMemory::new());
        let path = object_store::path::Path::from("kanta/Patient.ndjson");
        let size = bytes.len() as u64;
        futures::executor::block_on(store.put(&path, bytes.into())).unwrap();
        let object = SourceObject {
            store,
            path,
            size,
            name: "kanta/Patient.ndjson".into(),
        };
        futures::executor::block_on(FhirParser.parse(object, request).collect::<Vec<_>>())
    }

    /// A line longer than a record may be stops the object with a `record_kib` limit that
    /// names the line by its number and quotes nothing of it; the lines before it are read,
    /// the lines after it are not.
    #[test]
    fn a_line_longer_than_a_record_stops_the_object_after_the_lines_before_it() {
        let (_, mut request) = ids_view();
        request.limits.record_bytes = 4096;
        let long = format!(
            "{{\"resourceType\": \"Patient\", \"id\": \"{MARKER}\", \"identifier\": [{{\"value\": \"{MARKER}\"}}], \"note\": \"{}\"}}",
            "x".repeat(5000)
        );
        let text = format!(
            "{}\n{}\n{long}\n{}\n",
            patient("p1"),
            patient("p2"),
            patient("p4")
        );
        let got = parse_object(text.into_bytes(), request);
        let (last, batches) = got.split_last().unwrap();
        let batches: Vec<ParsedBatch> = batches
            .iter()
            .map(|b| b.as_ref().unwrap().clone())
            .collect();
        assert_eq!(ids(&batches), ["p1", "p2"]);
        let err = last.as_ref().expect_err("the stream ends with an error");
        assert!(
            matches!(
                err,
                valtava_plugin::ParseError::Limit { setting: "record_kib", message, .. }
                    if message.contains("line 3")
            ),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("kanta/Patient.ndjson") && text.contains("4 KiB"),
            "{text}"
        );
        assert!(!text.contains(MARKER) && !text.contains("xxxx"), "{text}");
    }

    /// A line nested 100 000 levels deep (closed or not) is rejected as a row before it is
    /// parsed: no stack overflow, no panic, no content in the reason, and the lines around
    /// it are read.
    #[test]
    fn a_line_nested_too_deep_is_rejected_without_being_parsed() {
        let (v, request) = ids_view();
        let n = 100_000;
        let closed = format!(
            "{{\"resourceType\": \"Patient\", \"id\": \"{MARKER}\", \"x\": {}{}}}",
            "[".repeat(n),
            "]".repeat(n)
        );
        let open = format!(
            "{{\"resourceType\": \"Patient\", \"id\": \"{MARKER}\", \"x\": {}",
            "[{\"a\": ".repeat(n)
        );
        let text = format!("{}\n{closed}\n{}\n{open}\n", patient("p1"), patient("p3"));
        let got = read_all(text.as_bytes(), &v, &request);
        assert_eq!(ids(&got), ["p1", "p3"]);
        let rejects: Vec<(u64, String)> = got
            .iter()
            .flat_map(|p| p.rejects.iter().map(|r| (r.row, r.reason.clone())))
            .collect();
        let reason = "JSON nests deeper than 100 levels".to_string();
        assert_eq!(rejects, [(2, reason.clone()), (4, reason)]);
    }

    /// A whole document (a Bundle) nested 100 000 levels deep stops the object with a
    /// `depth` limit, through the stream as the engine reads it; no panic.
    #[test]
    fn a_document_nested_too_deep_stops_the_object() {
        let (_, request) = ids_view();
        let n = 100_000;
        let bundle = format!(
            "{{\"resourceType\": \"Bundle\", \"entry\": [{{\"resource\": {{\"resourceType\": \"Patient\", \"id\": \"{MARKER}\", \"x\": {}{}}}}}]}}",
            "[".repeat(n),
            "]".repeat(n)
        );
        let got = parse_object(bundle.into_bytes(), request);
        assert_eq!(got.len(), 1);
        let err = got[0].as_ref().expect_err("an error");
        assert!(
            matches!(
                err,
                valtava_plugin::ParseError::Limit { setting: "depth", message, .. }
                    if message == "the JSON document nests deeper than 103 levels"
            ),
            "{err}"
        );
        assert!(!err.to_string().contains(MARKER), "{err}");
    }

    /// `limits.depth` is the deepest a resource may nest, the resource itself the first
    /// level: in a Bundle (three levels above its resources) or as a document of its own.
    #[test]
    fn limits_depth_is_the_deepest_a_resource_may_nest() {
        let (v, mut request) = ids_view();
        request.limits.depth = 5;
        // The resource, then `k` arrays inside it.
        let nested = |id: &str, k: usize| {
            format!(
                "{{\"resourceType\": \"Patient\", \"id\": \"{id}\", \"x\": {}{}}}",
                "[".repeat(k),
                "]".repeat(k)
            )
        };
        let bundle = |resources: &[String]| {
            let entries: Vec<String> = resources
                .iter()
                .map(|r| format!("{{\"resource\": {r}}}"))
                .collect();
            format!(
                "{{\"resourceType\": \"Bundle\", \"entry\": [{}]}}",
                entries.join(", ")
            )
        };
        let at_most = bundle(&[patient("p1"), nested("p2", 4)]);
        assert_eq!(
            ids(&read_all(at_most.as_bytes(), &v, &request)),
            ["p1", "p2"]
        );
        let deeper = bundle(&[patient("p1"), nested("p2", 5)]);
        let stop = read(deeper.as_bytes(), &v, &request, &mut |_| true).unwrap_err();
        assert_eq!(
            stop,
            Stop::Limit {
                setting: "depth",
                message: "the JSON document nests deeper than 8 levels".into()
            }
        );
        // One resource as the whole document: rejected as a row, not the object.
        let single = read_all(nested("p1", 5).as_bytes(), &v, &request);
        assert!(ids(&single).is_empty());
        assert_eq!(
            single[0].rejects,
            [valtava_plugin::RowReject {
                row: 1,
                reason: "JSON nests deeper than 5 levels".into()
            }]
        );
        // Brackets inside strings are text, not nesting.
        let text = format!(
            "{{\"resourceType\": \"Patient\", \"id\": \"p1\", \"note\": \"{}\\\"{}\"}}\n{}\n",
            "[".repeat(50),
            "{".repeat(50),
            patient("p2")
        );
        assert_eq!(ids(&read_all(text.as_bytes(), &v, &request)), ["p1", "p2"]);
    }

    /// A `repeat` path that reaches its own item again stops at the depth limit: the
    /// resource is rejected, the thread's stack is not run down.
    #[test]
    fn a_repeat_that_never_runs_out_stops_at_the_depth() {
        let v = view::compile(&serde_json::json!({
            "resource": "Patient",
            "select": [{"repeat": ["$this"], "column": [{"name": "id", "path": "id"}]}]
        }))
        .unwrap();
        let err = v
            .rows(serde_json::json!({"resourceType": "Patient", "id": "p1"}))
            .unwrap_err();
        assert_eq!(
            err,
            "Patient resource: `repeat` goes deeper than 100 levels"
        );
    }

    /// A view of Patients whose rows repeat the id in two columns beside each name's
    /// family (`forEach`), and a request for it as the engine makes one.
    /// One resource under the record bound can still ask for rows without end: a long id
    /// repeated beside each of many names. Its rows are refused before they are built,
    /// and the error names sizes only (failed before: 2 000 rows of 100 KB were built).
    #[test]
    fn a_resource_whose_rows_would_hold_too_much_is_refused() {
        let (mut v, _) = repeating_view();
        v.output_bytes = 1 << 20;
        let id = "x".repeat(100_000);
        let names = vec![serde_json::json!({"family": "A"}); 2000];
        let patient = serde_json::json!({"resourceType": "Patient", "id": id, "name": names});
        let err = v.rows(patient.clone()).unwrap_err();
        assert!(err.contains("1 MiB"), "{err}");
        assert!(!err.contains("xxx"), "{err}");
        v.output_bytes = 1 << 30;
        assert_eq!(v.rows(patient).unwrap().len(), 2000);
    }

    fn repeating_view() -> (view::View, ParseRequest) {
        let view = serde_json::json!({
            "resource": "Patient",
            "select": [
                {"column": [{"name": "id", "path": "id"}, {"name": "id2", "path": "id"}]},
                {"forEach": "name", "column": [{"name": "family", "path": "family"}]}
            ]
        });
        let v = view::compile(&view).unwrap();
        let request = ParseRequest {
            columns: v.columns.clone(),
            types: vec![],
            options: serde_json::json!({ "view": view }),
            batch_size: 100,
            base_dir: None,
            limits: Limits::default(),
        };
        (v, request)
    }

    /// A Patient with the given id and two names.
    fn named(id: &str) -> String {
        format!(
            "{{\"resourceType\": \"Patient\", \"id\": \"{id}\", \"name\": [{{\"family\": \"A\"}}, {{\"family\": \"B\"}}]}}"
        )
    }

    /// A row longer than a record may be, from a line shorter than that (the row repeats
    /// the line's id), stops the object with a `record_kib` limit that names the line (or
    /// Bundle entry) and the row, and quotes nothing; under the limit the rows are read.
    #[test]
    fn a_row_longer_than_a_record_stops_the_object_and_is_never_quoted() {
        let (v, mut request) = repeating_view();
        request.limits.record_bytes = 4096;
        let id = format!("{MARKER}{}", "x".repeat(3000));
        assert!(named(&id).len() < 4096);
        let text = format!("{}\n{}\n", named("p1"), named(&id));
        let stop = read(text.as_bytes(), &v, &request, &mut |_| true).unwrap_err();
        let row_too_long = |place: &str| Stop::Limit {
            setting: "record_kib",
            message: format!(
                "row 1 of the resource at {place} is longer than 4 KiB (its values together)"
            ),
        };
        assert_eq!(stop, row_too_long("line 2"));
        // Through the stream, as the engine reads it: the object's error quotes nothing.
        let got = parse_object(text.clone().into_bytes(), request.clone());
        let err = got
            .last()
            .and_then(|r| r.as_ref().err())
            .expect("the stream ends with an error");
        assert_eq!(err.limit_setting(), Some("record_kib"), "{err}");
        let shown = err.to_string();
        assert!(
            !shown.contains(MARKER) && !shown.contains("xxxx"),
            "{shown}"
        );
        // In a Bundle the resource is named by its entry.
        let bundle = format!(
            "{{\"resourceType\": \"Bundle\", \"entry\": [{{\"resource\": {}}}, {{\"resource\": {}}}]}}",
            named("p1"),
            named(&id)
        );
        let stop = read(bundle.as_bytes(), &v, &request, &mut |_| true).unwrap_err();
        assert_eq!(stop, row_too_long("entry 2"));
        // Under the limit the same rows are read.
        request.limits.record_bytes = 8192;
        let got = read_all(text.as_bytes(), &v, &request);
        assert_eq!(ids(&got), ["p1", "p1", id.as_str(), id.as_str()]);
    }

    /// A batch is finished once it holds more than `BATCH_BYTES` of text, even amid one
    /// resource's rows: a 1 MiB id repeated beside each of 70 names makes batches of 64
    /// rows and 6, not one of 70.
    #[test]
    fn a_batch_is_finished_once_it_holds_more_than_64_mib_of_text() {
        let view = serde_json::json!({
            "resource": "Patient",
            "select": [
                {"column": [{"name": "id", "path": "id"}]},
                {"forEach": "name", "column": [{"name": "family", "path": "family"}]}
            ]
        });
        let v = view::compile(&view).unwrap();
        let request = ParseRequest {
            columns: v.columns.clone(),
            types: vec![],
            options: serde_json::json!({ "view": view }),
            batch_size: 100,
            base_dir: None,
            limits: Limits::default(),
        };
        let names = ["{\"family\": \"F\"}"; 70].join(", ");
        let line = format!(
            "{{\"resourceType\": \"Patient\", \"id\": \"{}\", \"name\": [{names}]}}\n",
            "x".repeat(1 << 20)
        );
        let got = read_all(line.as_bytes(), &v, &request);
        let sizes: Vec<usize> = got.iter().map(|p| p.batch.num_rows()).collect();
        // Each row holds 1 MiB and one byte of text: 64 rows are just over 64 MiB.
        assert_eq!(sizes, [64, 6]);
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
