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
    let parts: Vec<&[(u64, &str)]> = lines.chunks(chunk).collect();
    // Workers take the next chunk as soon as they are free, at most `window` chunks ahead
    // of the one emitted next: no round waits for its slowest chunk, and the chunks done
    // are emitted while the workers go on.
    let turns = Turns {
        progress: std::sync::Mutex::new(Progress {
            next: 0,
            emitted: 0,
            stop: false,
        }),
        moved: std::sync::Condvar::new(),
        window: 2 * workers,
    };
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<Vec<ParsedBatch>, Stop>)>();
    std::thread::scope(|s| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (turns, parts) = (&turns, &parts);
            s.spawn(move || work(turns, parts, depth, view, request, tx));
        }
        drop(tx);
        let (next, mut result) = emit_in_order(&turns, &rx, &mut *emit);
        // Workers waiting for room see the stop (or the end) and return.
        let stopped = turns
            .progress
            .lock()
            .map(|mut p| std::mem::replace(&mut p.stop, true))
            .unwrap_or(true);
        turns.moved.notify_all();
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

/// A worker of [`read_lines`]: evaluates the chunks it takes, in turn, and sends their
/// batches to the emitter, until none is left, the reading stops or the emitter is gone.
fn work(
    turns: &Turns,
    parts: &[&[(u64, &str)]],
    depth: usize,
    view: &view::View,
    request: &ParseRequest,
    tx: std::sync::mpsc::Sender<(usize, Result<Vec<ParsedBatch>, Stop>)>,
) {
    let parse_line = move |(row, line): &(u64, &str)| (*row, line_resource(line, depth));
    while let Some(i) = turns.take(parts.len()) {
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rows_of(parts[i].iter().map(parse_line), view, request, "line")
        }))
        .unwrap_or_else(|_| Err("the FHIR view evaluation panicked".into()));
        if tx.send((i, done)).is_err() {
            return;
        }
    }
}

/// The emitting side of [`read_lines`]: hands the chunks' batches on in the lines' order as
/// they arrive, until one fails or the reader stops listening. Returns the chunks emitted,
/// and the error of the chunk that failed.
fn emit_in_order(
    turns: &Turns,
    rx: &std::sync::mpsc::Receiver<(usize, Result<Vec<ParsedBatch>, Stop>)>,
    emit: &mut dyn FnMut(ParsedBatch) -> bool,
) -> (usize, Result<(), Stop>) {
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
            if let Ok(mut p) = turns.progress.lock() {
                p.emitted = next;
                p.stop |= stop;
            }
            turns.moved.notify_all();
            if stop {
                break 'emit;
            }
        }
    }
    (next, result)
}

/// What the workers and the emitter of [`read_lines`] share: how far they are, and a signal
/// when that changes.
struct Turns {
    progress: std::sync::Mutex<Progress>,
    moved: std::sync::Condvar,
    /// How many chunks the workers may be ahead of the one emitted next.
    window: usize,
}

impl Turns {
    /// The next of `count` chunks for a worker to take, once it is within the window; `None`
    /// when none is left or the reading stops.
    fn take(&self, count: usize) -> Option<usize> {
        let Ok(mut p) = self.progress.lock() else {
            return None;
        };
        while !p.stop && p.next < count && p.next >= p.emitted + self.window {
            p = match self.moved.wait(p) {
                Ok(p) => p,
                Err(_) => return None,
            };
        }
        if p.stop || p.next >= count {
            return None;
        }
        p.next += 1;
        Some(p.next - 1)
    }
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
mod tests;

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
