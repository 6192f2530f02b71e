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
//! - Bulk NDJSON (an object whose second line starts a resource) is read as it streams in,
//!   in windows of whole lines ([`lines`]): an export of any size is held a few windows at
//!   a time. Any other object (a Bundle, one resource, an object of at most a window) is
//!   read whole, at most `limits.object_bytes` (larger ones are refused).
//! - An NDJSON line longer than `limits.record_bytes` stops the object with a `record_kib`
//!   limit naming the line's number, after the lines before it have been read; the reader
//!   notices it before holding more than a record and a chunk of it. No bulk export writes
//!   one resource that large, and as JSON values it would take several times its size. A
//!   resource inside a Bundle is not measured on its own; the Bundle as a whole is bounded
//!   by `object_bytes`.
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
pub mod json;
mod lines;
mod prune;
pub mod view;

use std::borrow::Cow;
use std::sync::Arc;

use futures::StreamExt;
use schemars::JsonSchema;
use serde::Deserialize;
use valtava_plugin::{
    Limits, ParseError, ParseRequest, ParseStream, ParsedBatch, Parser, SourceObject, Stop,
    TextBatchBuilder, typed_options,
};

use crate::json::Json;
use crate::view::Cell;

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

/// A cell as text: a string as it is, another value as JSON text; nothing for null or an
/// empty list.
fn text_of<'c>(cell: &'c Cell) -> Option<Cow<'c, str>> {
    fn json(v: &impl serde::Serialize) -> Option<Cow<'static, str>> {
        Some(Cow::Owned(serde_json::to_string(v).unwrap_or_default()))
    }
    match cell {
        Cell::Null => None,
        Cell::One(v) => match &**v {
            Json::Null => None,
            Json::String(s) => Some(Cow::Borrowed(s)),
            Json::Array(a) if a.is_empty() => None,
            other => json(other),
        },
        Cell::Many(list) if list.is_empty() => None,
        Cell::Many(list) => json(list),
    }
}

impl Parser for FhirParser {
    fn format(&self) -> &'static str {
        "fhir"
    }

    fn parses_ahead(&self) -> bool {
        true
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
        let name = object.name.clone();
        let limits = request.limits;
        futures::stream::once(async move { opening(&object, &limits).await })
            .flat_map(move |opened| match opened {
                Ok(Opening::Whole(bytes)) => valtava_plugin::parse_off_runtime(
                    name.clone(),
                    request.clone(),
                    Box::new(move |request, emit| read(&bytes, &prepared(request)?, request, emit)),
                ),
                Ok(Opening::Lines { head, rest }) => {
                    lines_streamed(name.clone(), request.clone(), head, rest)
                }
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            })
            .boxed()
    }
}

/// The view of a request, checked against the columns the source declares.
fn prepared(request: &ParseRequest) -> Result<view::View, Stop> {
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
    Ok(view)
}

/// The bytes of an object's stream.
type Chunks = futures::stream::BoxStream<'static, Result<bytes::Bytes, ParseError>>;

/// How an object is read: whole (a JSON document, or an object of at most a window), or as
/// NDJSON lines while they stream in (`head` read so far, then `rest`).
enum Opening {
    Whole(Vec<u8>),
    Lines { head: Vec<u8>, rest: Chunks },
}

/// Opens an object: one of at most a window is read whole; a larger one is read until its
/// second line shows what it is (see [`starts_lines`]). NDJSON streams; a document (a
/// Bundle written over many lines) is read whole, at most `limits.object_bytes`, as is text
/// whose first line runs past a record without ending.
async fn opening(object: &SourceObject, limits: &Limits) -> Result<Opening, ParseError> {
    let mut input = object.open().await?;
    let mut head = Vec::new();
    if object.size > lines::WINDOW_BYTES as u64 {
        loop {
            if let Some(lines) = starts_lines(&head) {
                if lines {
                    return Ok(Opening::Lines { head, rest: input });
                }
                break;
            }
            if head.len() > limits.record_bytes.max(lines::WINDOW_BYTES) {
                break;
            }
            match input.next().await {
                Some(chunk) => head.extend_from_slice(&chunk?),
                None => break,
            }
        }
    }
    valtava_plugin::read_rest(object, limits, head, input)
        .await
        .map(Opening::Whole)
}

/// Whether `head` starts NDJSON (`Some(true)`: a resource a line) or a document over many
/// lines (`Some(false)`); `None` while `head` does not reach its second non-blank line.
/// NDJSON's first line is a resource (closed, or a broken one still at its first level)
/// and its second starts another (`{`). A Bundle written an entry a line also has lines
/// starting with `{`, but its first line ends inside the entries, deeper than one level.
fn starts_lines(head: &[u8]) -> Option<bool> {
    let mut first: Option<&[u8]> = None;
    let mut rest = head;
    loop {
        let end = memchr::memchr(b'\n', rest);
        let line = &rest[..end.unwrap_or(rest.len())];
        if let Some(&b) = line.iter().find(|b| !b.is_ascii_whitespace()) {
            let Some(first) = first else {
                first = Some(line);
                rest = &rest[end? + 1..];
                continue;
            };
            let mut nesting = Nesting::default();
            first.iter().for_each(|&c| nesting.step(c));
            return Some(b == b'{' && nesting.depth <= 1);
        }
        rest = &rest[end? + 1..];
    }
}

/// The stream of an object read as NDJSON while it comes in: the chunks go from the
/// object's stream to the reader off the async runtime (at most a few waiting), and the
/// batches come back. A failure of the object's stream ends this stream with its error;
/// the reader then stops without the partial last line.
fn lines_streamed(name: String, request: ParseRequest, head: Vec<u8>, rest: Chunks) -> ParseStream {
    use futures::SinkExt;
    let (mut chunks_tx, mut chunks_rx) = futures::channel::mpsc::channel::<Option<bytes::Bytes>>(4);
    let pump = async move {
        let mut rest = rest;
        while let Some(chunk) = rest.next().await {
            let (chunk, failed) = match chunk {
                Ok(c) => (Some(c), None),
                Err(e) => (None, Some(e)),
            };
            if chunks_tx.send(chunk).await.is_err() || failed.is_some() {
                return failed.map(Err);
            }
        }
        None
    };
    let parse = valtava_plugin::parse_off_runtime(
        name,
        request,
        Box::new(move |request, emit| {
            let view = prepared(request)?;
            let mut next = || match futures::executor::block_on(chunks_rx.next()) {
                Some(Some(chunk)) => lines::Next::Chunk(chunk),
                Some(None) => lines::Next::Failed,
                None => lines::Next::End,
            };
            lines::read(head, &mut next, &view, request, lines::WINDOW_BYTES, emit)
        }),
    );
    let pump = futures::stream::once(pump).filter_map(futures::future::ready);
    futures::stream::select(parse, pump).boxed()
}

/// The resources of an object's text when it is one JSON document (a Bundle's entries, or
/// a single resource), each with the entry (1-based) it is reported at; `None` when it is
/// not (it is then NDJSON). A document nesting deeper than a Bundle of resources may stops
/// the object.
fn document<'t>(text: &'t str, limits: &Limits) -> Result<Option<Vec<(u64, Json<'t>)>>, Stop> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if !trimmed.starts_with('{') {
        return Ok(None);
    }
    let Some((end, deepest)) = first_value(trimmed.as_bytes()) else {
        return Ok(None);
    };
    if !trimmed[end..].trim().is_empty() {
        return Ok(None);
    }
    let limit = document_depth(limits);
    if deepest > limit {
        return Err(Stop::Limit {
            setting: "depth",
            message: format!("the JSON document nests deeper than {limit} levels"),
        });
    }
    Ok(Json::parse(trimmed).ok().map(entries))
}

/// The resources of a JSON document: a Bundle's `entry[].resource` (numbered by entry), or
/// the document itself as one resource.
fn entries(doc: Json<'_>) -> Vec<(u64, Json<'_>)> {
    let is_bundle = doc.get("resourceType").and_then(Json::as_str) == Some("Bundle");
    let Json::Object(pairs) = doc else {
        return vec![(1, doc)];
    };
    if !is_bundle {
        return vec![(1, Json::Object(pairs))];
    }
    let Some((_, Json::Array(list))) = pairs.into_iter().find(|(k, _)| k == "entry") else {
        return Vec::new();
    };
    list.into_iter()
        .enumerate()
        .filter_map(|(i, entry)| match entry {
            Json::Object(e) => (e.into_iter())
                .find(|(k, _)| k == "resource")
                .map(|(_, r)| (i as u64 + 1, r)),
            _ => None,
        })
        .collect()
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
    if opening_brackets(json) <= limit {
        return false;
    }
    let mut nesting = Nesting::default();
    json.iter().any(|&b| {
        nesting.step(b);
        nesting.depth > limit
    })
}

/// How many bytes of `json` are `[` or `{`: the two bytes that are `{` with bit 0x20 set,
/// so one comparison a byte. Counted in byte-wide lanes, 255 bytes at a time (a count a
/// byte holds): summed into a word a byte, the loop vectorised eight times narrower and
/// was 4 % of the diabetes line's CPU (PROFILE.md, twenty-first round).
fn opening_brackets(json: &[u8]) -> usize {
    json.chunks(usize::from(u8::MAX))
        .map(|chunk| {
            let n = chunk
                .iter()
                .fold(0u8, |n, &b| n.wrapping_add(u8::from(b | 0x20 == b'{')));
            usize::from(n)
        })
        .sum()
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
fn value_deeper(value: &Json, limit: usize) -> bool {
    let mut stack = vec![(value, 1usize)];
    while let Some((v, level)) = stack.pop() {
        match v {
            Json::Array(_) | Json::Object(_) if level > limit => return true,
            Json::Array(a) => stack.extend(a.iter().map(|c| (c, level + 1))),
            Json::Object(o) => stack.extend(o.iter().map(|(_, c)| (c, level + 1))),
            _ => {}
        }
    }
    false
}

/// A resource of a JSON document, or why it is rejected: it nests deeper than `depth`.
fn within_depth(resource: Json<'_>, depth: usize) -> Result<Json<'_>, String> {
    if value_deeper(&resource, depth) {
        return Err(too_deep(depth));
    }
    Ok(resource)
}

/// One NDJSON line as a resource, or why it is rejected: nesting deeper than `depth` is
/// refused before parsing; a line that is not JSON is named by the parser's message (a
/// place in the line, not its content).
fn line_resource<'t>(
    line: &'t str,
    depth: usize,
    keys: Option<&prune::Keys>,
) -> Result<Json<'t>, String> {
    if nests_deeper(line.as_bytes(), depth) {
        return Err(too_deep(depth));
    }
    match keys {
        Some(keys) => Json::parse_keeping(line, keys),
        None => Json::parse(line),
    }
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
fn rows_of<'t>(
    resources: impl Iterator<Item = (u64, Result<Json<'t>, String>)>,
    view: &view::View,
    request: &ParseRequest,
    place: &str,
    builder: &mut TextBatchBuilder,
) -> Result<Vec<ParsedBatch>, Stop> {
    let finish = |b: &mut TextBatchBuilder| b.finish().map_err(|e| Stop::Invalid(e.to_string()));
    // The view's cell of each declared column (they are checked to be the view's).
    let slots: Vec<usize> = (request.columns.iter())
        .map(|c| {
            view.columns
                .iter()
                .position(|v| v == c)
                .unwrap_or(usize::MAX)
        })
        .collect();
    // Text bytes of the rows in `builder`, against `BATCH_BYTES`.
    let mut held = 0usize;
    let mut out = Vec::new();
    for (row, resource) in resources {
        let rows = match &resource {
            Ok(r) => view.rows(r),
            Err(reason) => Err(reason.clone()),
        };
        match rows {
            Ok(rows) => {
                let mut values: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(slots.len());
                for (index, r) in rows.iter().enumerate() {
                    values.clear();
                    values.extend(slots.iter().map(|&i| r.get(i).and_then(text_of)));
                    held += row_bytes(&values, &request.limits, place, row, index)?;
                    builder.push_row(row, values.iter().map(|v| v.as_deref()));
                    if held > BATCH_BYTES {
                        out.push(finish(builder)?);
                        held = 0;
                    }
                }
            }
            Err(reason) => builder.reject(row, reason),
        }
        if builder.len() >= request.batch_size {
            out.push(finish(builder)?);
            held = 0;
        }
    }
    if !builder.is_empty() {
        out.push(finish(builder)?);
    }
    Ok(out)
}

/// Evaluates the view over an object read whole and emits the batches in the object's
/// order: a document's resources, or NDJSON lines (see [`lines`]).
fn read(
    bytes: &[u8],
    view: &view::View,
    request: &ParseRequest,
    emit: &mut dyn FnMut(ParsedBatch) -> bool,
) -> Result<(), Stop> {
    // Valid UTF-8 (the usual case) is checked by the fast validator; only an object with
    // invalid bytes goes through the slower lossy conversion.
    let text = match simdutf8::basic::from_utf8(bytes) {
        Ok(t) => Cow::Borrowed(t),
        Err(_) => String::from_utf8_lossy(bytes),
    };
    if let Some(list) = document(&text, &request.limits)? {
        let depth = resource_depth(&request.limits);
        let iter = (list.into_iter()).map(|(row, r)| (row, within_depth(r, depth)));
        let mut builder = TextBatchBuilder::new(request.columns.clone());
        for b in rows_of(iter, view, request, "entry", &mut builder)? {
            if !emit(b) {
                break;
            }
        }
        return Ok(());
    }
    lines::read_held(text.as_bytes(), view, request, lines::WINDOW_BYTES, emit)
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
    use serde_json::Value;

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
                        for row in v.rows_as_json(r)? {
                            rows.push(Value::Object(row));
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
