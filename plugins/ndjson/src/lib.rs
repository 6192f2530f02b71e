//! The NDJSON (newline-delimited JSON) source parser of Valtava.
//!
//! Each non-blank line is one JSON object; the declared columns are taken from its
//! top-level members. Strings are taken as they are, numbers and booleans as their JSON
//! text, nested values as compact JSON; the engine then converts them to the declared
//! types. A line that is not a JSON object is returned as a reject with its line number and
//! the column where parsing failed. The object is streamed in chunks.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use schemars::JsonSchema;
use serde::Deserialize;
use valtava_plugin::{
    ParseError, ParseRequest, ParseStream, ParsedBatch, Parser, SourceObject, TextBatchBuilder,
    typed_options,
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

    fn options_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<NdjsonOptions>()
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), String> {
        typed_options::<NdjsonOptions>(options).map(|_| ())
    }

    fn parse(&self, object: SourceObject, request: ParseRequest) -> ParseStream {
        let state = State {
            builder: TextBatchBuilder::new(request.columns.clone()),
            object,
            request,
            input: None,
            pending: Vec::new(),
            line: 0,
            done: false,
        };
        stream::try_unfold(state, State::next_batch).boxed()
    }
}

struct State {
    object: SourceObject,
    request: ParseRequest,
    input: Option<BoxStream<'static, Result<Bytes, ParseError>>>,
    /// Bytes of a line not yet ended.
    pending: Vec<u8>,
    line: u64,
    builder: TextBatchBuilder,
    done: bool,
}

impl State {
    async fn next_batch(mut self) -> Result<Option<(ParsedBatch, Self)>, ParseError> {
        while !self.done && self.builder.len() < self.request.batch_size {
            if self.input.is_none() {
                self.input = Some(self.object.open().await?);
            }
            let next = match self.input.as_mut() {
                Some(s) => s.next().await,
                None => None,
            };
            match next {
                Some(chunk) => {
                    let chunk = chunk?;
                    let mut start = 0;
                    for (i, &b) in chunk.iter().enumerate() {
                        if b == b'\n' {
                            if self.pending.is_empty() {
                                self.take_line(&chunk[start..i]);
                            } else {
                                self.pending.extend_from_slice(&chunk[start..i]);
                                let line = std::mem::take(&mut self.pending);
                                self.take_line(&line);
                            }
                            start = i + 1;
                        }
                    }
                    self.pending.extend_from_slice(&chunk[start..]);
                }
                None => {
                    let rest = std::mem::take(&mut self.pending);
                    if !rest.is_empty() {
                        self.take_line(&rest);
                    }
                    self.done = true;
                }
            }
        }
        if self.builder.is_empty() {
            return Ok(None);
        }
        let object = self.object.name.clone();
        let batch = self
            .builder
            .finish()
            .map_err(|source| ParseError::Arrow { object, source })?;
        Ok(Some((batch, self)))
    }

    fn take_line(&mut self, raw: &[u8]) {
        self.line += 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let raw = if self.line == 1 {
            raw.strip_prefix(b"\xef\xbb\xbf").unwrap_or(raw)
        } else {
            raw
        };
        if raw.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let value: serde_json::Map<String, serde_json::Value> = match serde_json::from_slice(raw) {
            Ok(v) => v,
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
                return;
            }
        };
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
    }
}

/// serde_json appends "at line 1 column 7"; we report the file's own line.
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
