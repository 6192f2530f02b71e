//! The NDJSON (newline-delimited JSON) source parser of Valtava.
//!
//! Each non-blank line is one JSON object; the declared columns are taken from its
//! top-level members. Strings are taken as they are, numbers and booleans as their JSON
//! text, nested values as compact JSON; the engine then converts them to the declared
//! types. A line that is not a JSON object is returned as a reject with its line number and
//! the column where parsing failed. The object is streamed in chunks.
//!
//! Every object is taken as hostile. A line may be at most `limits.record_kib` long (the line
//! setting; its bytes without its line break): a longer one stops the object with a limit
//! error naming its line, after the rows before it, and no more of the object is read. It is
//! refused while it arrives, so no more than about the limit of it is ever held. A line that
//! nests arrays and objects deeper than `limits.depth` is rejected as a row. serde_json
//! refuses nesting deeper than 128 levels on its own (whatever the setting), so a line of
//! a hundred thousand `[` is a rejected row, never a stack overflow.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use schemars::JsonSchema;
use serde::Deserialize;
use valtava_plugin::{
    Limits, ParseError, ParseRequest, ParseStream, ParsedBatch, Parser, SourceObject,
    TextBatchBuilder, typed_options,
};

/// Options of the `ndjson` format (none yet; the key is reserved).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NdjsonOptions {}

/// The `ndjson` parser.
#[derive(Debug, Default)]
pub struct NdjsonParser;

impl Parser for NdjsonParser {
    fn format(&self) -> &'static str {
        "ndjson"
    }

    fn parses_ahead(&self) -> bool {
        true
    }

    fn rows_within_bytes(&self) -> bool {
        true
    }

    fn options_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<NdjsonOptions>()
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), String> {
        typed_options::<NdjsonOptions>(options).map(|_| ())
    }

    fn parse(&self, object: SourceObject, request: ParseRequest) -> ParseStream {
        stream::try_unfold(State::new(object, request), State::next_batch).boxed()
    }
}

struct State {
    object: SourceObject,
    request: ParseRequest,
    input: Option<BoxStream<'static, Result<Bytes, ParseError>>>,
    /// Bytes of a line not yet ended (at most `limits.record_bytes` and a `\r`).
    pending: Vec<u8>,
    line: u64,
    builder: TextBatchBuilder,
    done: bool,
    /// The error that stops the object, once the rows before it are handed over.
    stopped: Option<ParseError>,
}

impl State {
    fn new(object: SourceObject, request: ParseRequest) -> Self {
        Self {
            builder: TextBatchBuilder::new(request.columns.clone()),
            object,
            request,
            input: None,
            pending: Vec::new(),
            line: 0,
            done: false,
            stopped: None,
        }
    }

    async fn next_batch(mut self) -> Result<Option<(ParsedBatch, Self)>, ParseError> {
        while !self.done && self.builder.len() < self.request.batch_size {
            if self.input.is_none() {
                self.input = Some(self.object.open().await?);
            }
            let next = match self.input.as_mut() {
                Some(s) => s.next().await,
                None => None,
            };
            let taken = match next {
                Some(chunk) => {
                    let chunk = chunk?;
                    self.take_chunk(&chunk)
                }
                None => {
                    self.done = true;
                    self.take_rest()
                }
            };
            if let Err(error) = taken {
                // No more of the object is read; the rows before the line go first.
                self.stopped = Some(error);
                self.done = true;
                self.input = None;
                self.pending = Vec::new();
            }
        }
        if self.builder.is_empty() {
            return match self.stopped.take() {
                Some(error) => Err(error),
                None => Ok(None),
            };
        }
        let object = self.object.name.clone();
        let batch = self
            .builder
            .finish()
            .map_err(|source| ParseError::Arrow { object, source })?;
        Ok(Some((batch, self)))
    }

    /// Takes the lines a chunk ends, and keeps the start of a line it does not end.
    fn take_chunk(&mut self, chunk: &[u8]) -> Result<(), ParseError> {
        let mut start = 0;
        while let Some(k) = chunk[start..].iter().position(|&b| b == b'\n') {
            let end = start + k;
            if self.pending.is_empty() {
                self.take_line(&chunk[start..end])?;
            } else {
                self.check_partial(&chunk[start..end])?;
                self.pending.extend_from_slice(&chunk[start..end]);
                let line = std::mem::take(&mut self.pending);
                self.take_line(&line)?;
            }
            start = end + 1;
        }
        self.check_partial(&chunk[start..])?;
        self.pending.extend_from_slice(&chunk[start..]);
        Ok(())
    }

    /// Takes the last line, when the object does not end with a line break.
    fn take_rest(&mut self) -> Result<(), ParseError> {
        let rest = std::mem::take(&mut self.pending);
        if rest.is_empty() {
            return Ok(());
        }
        self.take_line(&rest)
    }

    /// Refuses the line not yet ended once its bytes, those pending and `more`, are longer
    /// than the limit: before they are held. A trailing `\r` is not counted (it may be the
    /// first half of the line's `\r\n`).
    fn check_partial(&self, more: &[u8]) -> Result<(), ParseError> {
        let cr = more.last().or(self.pending.last()) == Some(&b'\r');
        let len = self.pending.len() + more.len() - usize::from(cr);
        if len > self.request.limits.record_bytes {
            return Err(self.too_long(self.line + 1));
        }
        Ok(())
    }

    /// The error for line `line`, longer than the limit: names the place and the bound,
    /// never the line's bytes.
    fn too_long(&self, line: u64) -> ParseError {
        Limits::exceeded(
            &self.object.name,
            "record_kib",
            format!(
                "line {line} is longer than {}",
                valtava_plugin::size_text(self.request.limits.record_bytes)
            ),
        )
    }

    fn take_line(&mut self, raw: &[u8]) -> Result<(), ParseError> {
        self.line += 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.len() > self.request.limits.record_bytes {
            return Err(self.too_long(self.line));
        }
        let depth = self.request.limits.depth;
        let raw = if self.line == 1 {
            raw.strip_prefix(b"\xef\xbb\xbf").unwrap_or(raw)
        } else {
            raw
        };
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let value: serde_json::Map<String, serde_json::Value> = match serde_json::from_slice(raw) {
            Ok(v) => v,
            // Nesting deeper than serde_json's own bound fails the parse: the line is
            // rejected for its depth, not for serde's message.
            Err(_) if nests_deeper(raw, depth) => {
                self.builder.reject(self.line, too_deep(depth));
                return Ok(());
            }
            Err(e) => {
                // A line that is JSON but not an object: serde's message would quote its
                // value, so only the kind of value is named.
                let what = if e.classify() == serde_json::error::Category::Data {
                    format!("a JSON {}", json_kind(raw))
                } else {
                    strip_position(&e)
                };
                self.builder.reject(
                    self.line,
                    format!("not a JSON object: {what} at column {}", e.column()),
                );
                return Ok(());
            }
        };
        // The object itself is one level.
        if 1 + value.values().map(nesting).max().unwrap_or(0) > depth {
            self.builder.reject(self.line, too_deep(depth));
            return Ok(());
        }
        let texts: Vec<Option<String>> = self
            .request
            .columns
            .iter()
            .map(|c| match value.get(c) {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
            })
            .collect();
        self.builder
            .push_row(self.line, texts.iter().map(|t| t.as_deref()));
        Ok(())
    }
}

/// Why a line that nests too deep is rejected (its content is never quoted).
fn too_deep(depth: usize) -> String {
    format!("JSON nests deeper than {depth} levels (limit `limits.depth`)")
}

/// How deep a parsed value nests arrays and objects (a scalar: 0). serde_json parsed it, so
/// it is at most 128 levels deep and the recursion is bounded.
fn nesting(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        serde_json::Value::Object(members) => 1 + members.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether the text of a line nests arrays and objects deeper than `depth`, counted without
/// parsing (and without recursion: a line may be a hundred thousand `[`): brackets inside
/// strings do not count.
fn nests_deeper(raw: &[u8], depth: usize) -> bool {
    let (mut level, mut in_string, mut escaped) = (0usize, false, false);
    for &b in raw {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                level += 1;
                if level > depth {
                    return true;
                }
            }
            b']' | b'}' => level = level.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// What kind of JSON value a line holds, from its first byte.
fn json_kind(raw: &[u8]) -> &'static str {
    match raw.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'"') => "string",
        Some(b'[') => "array",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        _ => "number",
    }
}

/// serde_json appends "at line 1 column 7"; we report the file's own line.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// The parser as a registry entry.
pub fn parser() -> Arc<dyn Parser> {
    Arc::new(NdjsonParser)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::UInt64Type;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStoreExt, PutPayload};
    use valtava_plugin::RowReject;

    /// Rows (line, `a`), rejects, and the error that ended the stream if one did.
    type Run = (
        Vec<(u64, Option<String>)>,
        Vec<RowReject>,
        Option<ParseError>,
    );

    /// Parses `data` (column `a`) with `limits`.
    async fn run(data: Vec<u8>, limits: Limits) -> Run {
        let store = Arc::new(InMemory::new());
        let path = Path::from("p.ndjson");
        let size = data.len() as u64;
        store.put(&path, PutPayload::from(data)).await.unwrap();
        let object = SourceObject {
            store,
            path,
            size,
            name: "p.ndjson".into(),
        };
        let request = ParseRequest {
            columns: vec!["a".into()],
            types: vec![],
            options: serde_json::Value::Null,
            batch_size: 1000,
            base_dir: None,
            limits,
        };
        let mut s = NdjsonParser.parse(object, request);
        let (mut rows, mut rejects) = (vec![], vec![]);
        while let Some(b) = s.next().await {
            match b {
                Ok(p) => {
                    rejects.extend(p.rejects);
                    let a = p.batch.column(0).as_string::<i32>();
                    let line = p.batch.column(1).as_primitive::<UInt64Type>();
                    for r in 0..p.batch.num_rows() {
                        rows.push((line.value(r), a.is_valid(r).then(|| a.value(r).to_string())));
                    }
                }
                Err(e) => {
                    // The error ends the stream.
                    assert!(s.next().await.is_none());
                    return (rows, rejects, Some(e));
                }
            }
        }
        (rows, rejects, None)
    }

    /// A line longer than the limit stops the object after the rows before it; the error
    /// names its line and the bound, not what it holds. A line as long as the limit is read.
    #[tokio::test]
    async fn a_line_longer_than_the_limit_stops_the_object() {
        let limits = Limits {
            record_bytes: 64 << 10,
            ..Limits::default()
        };
        let mut data = b"{\"a\": \"x\"}\n{\"a\": \"y\"}\n{\"a\": \"SALAINEN-MERKKI ".to_vec();
        data.resize(data.len() + (8 << 20), b'z');
        data.extend_from_slice(b"\"}\n{\"a\": \"w\"}\n");
        let (rows, _, error) = run(data, limits).await;
        assert_eq!(rows, vec![(1, Some("x".into())), (2, Some("y".into()))]);
        let error = error.expect("a limit error");
        let text = error.to_string();
        assert_eq!(error.limit_setting(), Some("record_kib"), "{text}");
        assert!(
            text.contains("p.ndjson") && text.contains("line 3") && text.contains("64 KiB"),
            "{text}"
        );
        assert!(!text.contains("SALAINEN"), "{text}");
        // `{"a": "vv…v"}` of exactly the limit, its `\r\n` not counted.
        let mut line = b"{\"a\": \"".to_vec();
        line.resize((64 << 10) - 2, b'v');
        line.extend_from_slice(b"\"}\r\n");
        let (rows, rejects, error) = run(line, limits).await;
        assert!(error.is_none(), "{error:?}");
        assert!(rejects.is_empty(), "{rejects:?}");
        assert_eq!(rows.len(), 1);
    }

    /// A line not yet ended is refused at the chunk that makes it longer than the limit, so
    /// no more of it is held than the limit.
    #[test]
    fn a_long_line_is_refused_while_it_arrives() {
        let limit = 1000;
        let object = SourceObject {
            store: Arc::new(InMemory::new()),
            path: Path::from("p.ndjson"),
            size: 0,
            name: "p.ndjson".into(),
        };
        let request = ParseRequest {
            columns: vec!["a".into()],
            types: vec![],
            options: serde_json::Value::Null,
            batch_size: 10,
            base_dir: None,
            limits: Limits {
                record_bytes: limit,
                ..Limits::default()
            },
        };
        let mut state = State::new(object, request);
        // Line 2 starts with 7 bytes: `{"a": "`.
        state.take_chunk(b"{\"a\": 1}\n{\"a\": \"").unwrap();
        let mut refused = None;
        for k in 0..100 {
            match state.take_chunk(&[b'x'; 100]) {
                Ok(()) => assert!(state.pending.len() <= limit),
                Err(e) => {
                    refused = Some((k, e.to_string()));
                    break;
                }
            }
        }
        let (k, text) = refused.expect("refused");
        // The tenth chunk makes it 1007 bytes.
        assert_eq!(k, 9, "{text}");
        assert!(
            text.contains("line 2") && text.contains("1000 bytes"),
            "{text}"
        );
        assert!(state.pending.len() <= limit);
    }

    /// Lines that nest deeper than the limit are rejected as rows, also far beyond
    /// serde_json's own bound (no stack overflow, no panic); the reason quotes nothing.
    #[tokio::test]
    async fn a_line_that_nests_too_deep_is_rejected_as_a_row() {
        // `{"SALAINEN-MERKKI": [[…]]}`: the object and `levels - 1` arrays.
        let deep = |levels: usize| {
            let mut line = b"{\"SALAINEN-MERKKI\": ".to_vec();
            line.extend(std::iter::repeat_n(b'[', levels - 1));
            line.extend(std::iter::repeat_n(b']', levels - 1));
            line.extend_from_slice(b"}\n");
            line
        };
        let mut data = b"{\"a\": \"x\"}\n".to_vec();
        // 2: a hundred thousand `[`, not even an object.
        data.extend(std::iter::repeat_n(b'[', 100_000));
        data.push(b'\n');
        // 3: far beyond serde_json's bound; 4: beyond the limit, within serde_json's bound;
        // 5: as deep as the limit.
        data.extend(deep(100_000));
        data.extend(deep(101));
        data.extend(deep(100));
        // 6: brackets in a string (after an escaped quote) do not nest; the line is bad for
        // another reason.
        data.extend_from_slice(b"{\"a\": \"");
        data.extend(std::iter::repeat_n(b'[', 200));
        data.extend_from_slice(b"\\\"[[[\", }\n");
        data.extend_from_slice(b"{\"a\": \"y\"}\n");
        let (rows, rejects, error) = run(data, Limits::default()).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(
            rows,
            vec![(1, Some("x".into())), (5, None), (7, Some("y".into()))]
        );
        assert_eq!(
            rejects.iter().map(|r| r.row).collect::<Vec<_>>(),
            vec![2, 3, 4, 6]
        );
        for r in &rejects[..3] {
            assert!(r.reason.contains("deeper than 100 levels"), "{}", r.reason);
        }
        assert!(
            rejects[3].reason.contains("not a JSON object"),
            "{}",
            rejects[3].reason
        );
        for r in &rejects {
            assert!(
                !r.reason.contains("SALAINEN") && !r.reason.contains("[["),
                "{}",
                r.reason
            );
        }
    }

    #[tokio::test]
    async fn values_become_text_and_bad_lines_are_rejected() {
        let data = "{\"a\": \"x\", \"b\": 1.5}\n\n{\"a\": null, \"b\": true}\r\n[1]\n{\"a\": \"y\", \"b\": {\"c\": 1}}";
        let store = Arc::new(InMemory::new());
        let path = Path::from("p.ndjson");
        store
            .put(&path, PutPayload::from(data.as_bytes().to_vec()))
            .await
            .unwrap();
        let object = SourceObject {
            store,
            path,
            size: data.len() as u64,
            name: "p.ndjson".into(),
        };
        let request = ParseRequest {
            columns: vec!["a".into(), "b".into()],
            types: vec![],
            options: serde_json::Value::Null,
            batch_size: 2,
            base_dir: None,
            limits: Limits::default(),
        };
        let parts: Vec<ParsedBatch> = NdjsonParser
            .parse(object, request)
            .map(|b| b.unwrap())
            .collect()
            .await;
        let mut rows = vec![];
        let mut rejects = vec![];
        for p in parts {
            rejects.extend(p.rejects);
            for r in 0..p.batch.num_rows() {
                let a = p.batch.column(0).as_string::<i32>();
                let b = p.batch.column(1).as_string::<i32>();
                let line = p.batch.column(2).as_primitive::<UInt64Type>().value(r);
                rows.push((
                    line,
                    a.is_valid(r).then(|| a.value(r).to_string()),
                    b.value(r).to_string(),
                ));
            }
        }
        assert_eq!(
            rows,
            vec![
                (1, Some("x".into()), "1.5".into()),
                (3, None, "true".into()),
                (5, Some("y".into()), "{\"c\":1}".into()),
            ]
        );
        assert_eq!(rejects.len(), 1);
        assert_eq!(rejects[0].row, 4);
        assert!(
            rejects[0].reason.contains("not a JSON object"),
            "{}",
            rejects[0].reason
        );
    }
}
