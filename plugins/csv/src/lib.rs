//! The CSV source parser of Valtava.
//!
//! Streams an object in chunks through [`csv_core`]: quoting (with doubled quotes), any
//! one-byte delimiter (`;` is common in Finnish submissions), an optional header row,
//! UTF-8 with or without a byte-order mark, and windows-1252. Memory stays bounded by the
//! batch size whatever the size of the object.
//!
//! A row with the wrong number of fields, or with bytes that are not valid in its
//! encoding, is returned as a [`RowReject`](valtava_plugin::RowReject) with its line number;
//! the rest of the object is read on. Blank lines are not rows.
//!
//! ```yaml
//! source:
//!   format: csv
//!   location: inbox/ensihoito/{period}/*.csv
//!   options: { delimiter: ";", encoding: windows-1252 }
//! ```

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

/// Character encoding of a CSV object.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// UTF-8; a leading byte-order mark is skipped.
    #[default]
    #[serde(rename = "utf-8", alias = "utf8")]
    Utf8,
    /// Windows code page 1252 (Western European), as written by older Finnish systems.
    #[serde(rename = "windows-1252", alias = "cp1252")]
    Windows1252,
}

/// Options of the `csv` format.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CsvOptions {
    /// Field delimiter, one character. Default `,`; Finnish submissions often use `;`.
    pub delimiter: char,
    /// Quote character. Default `"`; a quote inside a quoted field is written twice.
    pub quote: char,
    /// Whether the first row names the columns. With a header, columns are found by name
    /// and their order in the file does not matter; without one, the declared columns are
    /// taken in order.
    pub header: bool,
    /// Character encoding: `utf-8` (default) or `windows-1252`.
    pub encoding: Encoding,
    /// Field values read as missing (null), besides the empty field.
    pub null_values: Vec<String>,
    /// Whether leading and trailing spaces are removed from every field.
    pub trim: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: ',',
            quote: '"',
            header: true,
            encoding: Encoding::Utf8,
            null_values: Vec::new(),
            trim: false,
        }
    }
}

impl CsvOptions {
    fn byte(c: char, what: &str) -> Result<u8, String> {
        if c.is_ascii() {
            Ok(c as u8)
        } else {
            Err(format!("{what} must be one ASCII character, not `{c}`"))
        }
    }

    /// Checks what serde cannot: one-byte delimiter and quote that differ.
    pub fn validate(&self) -> Result<(), String> {
        let d = Self::byte(self.delimiter, "delimiter")?;
        let q = Self::byte(self.quote, "quote")?;
        if d == q || d == b'\n' || d == b'\r' {
            return Err(format!(
                "delimiter `{}` cannot be the quote or a line break",
                self.delimiter.escape_default()
            ));
        }
        Ok(())
    }
}

/// The `csv` parser.
#[derive(Debug, Default)]
pub struct CsvParser;

impl Parser for CsvParser {
    fn format(&self) -> &'static str {
        "csv"
    }

    fn options_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<CsvOptions>()
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), String> {
        typed_options::<CsvOptions>(options)?.validate()
    }

    fn parse(&self, object: SourceObject, request: ParseRequest) -> ParseStream {
        let options = match typed_options::<CsvOptions>(&request.options)
            .and_then(|o| o.validate().map(|()| o))
        {
            Ok(o) => o,
            Err(message) => {
                return stream::once(async move {
                    Err(ParseError::Object {
                        object: object.name,
                        message,
                    })
                })
                .boxed();
            }
        };
        let state = State::new(object, request, options);
        stream::try_unfold(state, State::next_batch).boxed()
    }
}

enum Input {
    NotOpened,
    Open(BoxStream<'static, Result<Bytes, ParseError>>),
    Done,
}

struct State {
    object: SourceObject,
    request: ParseRequest,
    options: CsvOptions,
    input: Input,
    decoder: Option<encoding_rs::Decoder>,
    reader: csv_core::Reader,
    out: Vec<u8>,
    out_len: usize,
    ends: Vec<usize>,
    ends_len: usize,
    /// For each declared column, the index of its field in a record.
    positions: Option<Vec<usize>>,
    fields_expected: usize,
    builder: TextBatchBuilder,
    finished: bool,
    /// The last byte the CSV reader consumed: tells whether a record's line break has
    /// been counted yet.
    last_byte: u8,
}

impl State {
    fn new(object: SourceObject, request: ParseRequest, options: CsvOptions) -> Self {
        let reader = csv_core::ReaderBuilder::new()
            .delimiter(options.delimiter as u8)
            .quote(options.quote as u8)
            .build();
        let decoder = match options.encoding {
            Encoding::Utf8 => None,
            Encoding::Windows1252 => {
                Some(encoding_rs::WINDOWS_1252.new_decoder_without_bom_handling())
            }
        };
        let positions = if options.header {
            None
        } else {
            Some((0..request.columns.len()).collect())
        };
        let fields_expected = request.columns.len();
        Self {
            builder: TextBatchBuilder::new(request.columns.clone()),
            object,
            request,
            options,
            input: Input::NotOpened,
            decoder,
            reader,
            out: vec![0; 64 * 1024],
            out_len: 0,
            ends: vec![0; 64],
            ends_len: 0,
            positions,
            fields_expected,
            finished: false,
            last_byte: 0,
        }
    }

    fn object_error(&self, message: String) -> ParseError {
        ParseError::Object {
            object: self.object.name.clone(),
            message,
        }
    }

    async fn next_batch(mut self) -> Result<Option<(ParsedBatch, Self)>, ParseError> {
        while !self.finished && self.builder.len() < self.request.batch_size {
            let chunk = match &mut self.input {
                Input::NotOpened => {
                    self.input = Input::Open(self.object.open().await?);
                    continue;
                }
                Input::Open(s) => s.next().await.transpose()?,
                Input::Done => None,
            };
            match chunk {
                Some(bytes) if self.decoder.is_none() => self.feed(&bytes, false)?,
                Some(bytes) => {
                    let decoded = self.decode(&bytes, false);
                    self.feed(&decoded, false)?;
                }
                None => {
                    self.input = Input::Done;
                    let tail = self.decode(&[], true);
                    if !tail.is_empty() {
                        self.feed(&tail, false)?;
                    }
                    self.feed(&[], true)?;
                    self.finished = true;
                }
            }
        }
        if self.builder.is_empty() {
            if self.finished && self.positions.is_none() {
                return Err(self.object_error("the object has no header row".into()));
            }
            return Ok(None);
        }
        let object = self.object.name.clone();
        let batch = self
            .builder
            .finish()
            .map_err(|source| ParseError::Arrow { object, source })?;
        Ok(Some((batch, self)))
    }

    fn decode(&mut self, bytes: &[u8], last: bool) -> Vec<u8> {
        match &mut self.decoder {
            None => bytes.to_vec(),
            Some(decoder) => {
                let mut s = String::with_capacity(
                    decoder
                        .max_utf8_buffer_length(bytes.len())
                        .unwrap_or(bytes.len() * 3),
                );
                // windows-1252 maps every byte, so there is nothing to replace.
                let _ = decoder.decode_to_string(bytes, &mut s, last);
                s.into_bytes()
            }
        }
    }

    /// Runs the CSV state machine over `input`; with `last`, flushes the final record.
    fn feed(&mut self, mut input: &[u8], last: bool) -> Result<(), ParseError> {
        use csv_core::ReadRecordResult as R;
        loop {
            let (res, nin, nout, nend) = self.reader.read_record(
                input,
                &mut self.out[self.out_len..],
                &mut self.ends[self.ends_len..],
            );
            if nin > 0 {
                self.last_byte = input[nin - 1];
            }
            input = &input[nin..];
            self.out_len += nout;
            self.ends_len += nend;
            match res {
                R::InputEmpty => {
                    if !last {
                        return Ok(());
                    }
                }
                R::OutputFull => {
                    let n = self.out.len() * 2;
                    self.out.resize(n, 0);
                }
                R::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                R::Record => {
                    self.record()?;
                    self.out_len = 0;
                    self.ends_len = 0;
                }
                R::End => return Ok(()),
            }
        }
    }

    fn record(&mut self) -> Result<(), ParseError> {
        let data = &self.out[..self.out_len];
        let ends = &self.ends[..self.ends_len];
        // The reader counts line breaks read so far; step back over those inside this
        // record, and over its terminator when the reader has consumed it (it has after
        // `\n`, not yet after the `\r` of `\r\n`, and there is none at the end of data).
        let inner = data.iter().filter(|&&b| b == b'\n').count() as u64;
        let line = self
            .reader
            .line()
            .saturating_sub(inner + u64::from(self.last_byte == b'\n'))
            .max(1);
        let field = |i: usize| -> &[u8] {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            &data[start..ends[i]]
        };
        let Some(positions) = &self.positions else {
            let mut names = Vec::with_capacity(ends.len());
            for i in 0..ends.len() {
                let name = std::str::from_utf8(field(i)).map_err(|_| {
                    self.object_error(format!(
                        "line {line}: the header is not valid UTF-8 (is the object in windows-1252? set `encoding`)"
                    ))
                })?;
                names.push(name.trim().to_string());
            }
            let mut positions = Vec::with_capacity(self.request.columns.len());
            let mut missing = Vec::new();
            for c in &self.request.columns {
                match names.iter().position(|n| n == c) {
                    Some(p) => positions.push(p),
                    None => missing.push(c.as_str()),
                }
            }
            if !missing.is_empty() {
                return Err(self.object_error(format!(
                    "line {line}: the header lacks declared column(s) {}; it has {}",
                    quote_list(&missing),
                    quote_list(&names.iter().map(String::as_str).collect::<Vec<_>>())
                )));
            }
            self.fields_expected = names.len();
            self.positions = Some(positions);
            return Ok(());
        };
        if ends.len() != self.fields_expected {
            self.builder.reject(
                line,
                format!(
                    "expected {} fields separated by `{}`, found {}",
                    self.fields_expected,
                    self.options.delimiter,
                    ends.len()
                ),
            );
            return Ok(());
        }
        let mut values: Vec<Option<&str>> = Vec::with_capacity(positions.len());
        for (col, &p) in positions.iter().enumerate() {
            let raw = field(p);
            let text = match std::str::from_utf8(raw) {
                Ok(t) => t,
                Err(e) => {
                    self.builder.reject(
                        line,
                        format!(
                            "column `{}` is not valid UTF-8 at byte {} of the field (is the object in windows-1252? set `encoding`)",
                            self.request.columns[col],
                            e.valid_up_to()
                        ),
                    );
                    return Ok(());
                }
            };
            let text = if self.options.trim { text.trim() } else { text };
            let is_null = text.is_empty() || self.options.null_values.iter().any(|n| n == text);
            values.push((!is_null).then_some(text));
        }
        self.builder.push_row(line, values);
        Ok(())
    }
}

fn quote_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The parser as a registry entry.
pub fn parser() -> Arc<dyn Parser> {
    Arc::new(CsvParser)
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

    async fn parse(
        bytes: &[u8],
        columns: &[&str],
        options: serde_json::Value,
        batch_size: usize,
    ) -> (Vec<Vec<Option<String>>>, Vec<u64>, Vec<RowReject>) {
        let store = Arc::new(InMemory::new());
        let path = Path::from("t.csv");
        store
            .put(&path, PutPayload::from(bytes.to_vec()))
            .await
            .unwrap();
        let object = SourceObject {
            store,
            path,
            size: bytes.len() as u64,
            name: "t.csv".into(),
        };
        let request = ParseRequest {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            types: vec![],
            options,
            batch_size,
            base_dir: None,
        };
        let mut s = CsvParser.parse(object, request);
        let (mut rows, mut lines, mut rejects) = (vec![], vec![], vec![]);
        while let Some(b) = s.next().await {
            let b = b.unwrap();
            rejects.extend(b.rejects);
            let batch = b.batch;
            for r in 0..batch.num_rows() {
                rows.push(
                    (0..columns.len())
                        .map(|c| {
                            let a = batch.column(c).as_string::<i32>();
                            a.is_valid(r).then(|| a.value(r).to_string())
                        })
                        .collect(),
                );
                lines.push(
                    batch
                        .column(columns.len())
                        .as_primitive::<UInt64Type>()
                        .value(r),
                );
            }
        }
        (rows, lines, rejects)
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[tokio::test]
    async fn semicolons_quotes_bom_and_header_order() {
        let data = "\u{feff}b;a\n\"x;1\";\"say \"\"hi\"\"\"\n\"multi\nline\";2\n;3";
        let (rows, lines, rejects) = parse(
            data.as_bytes(),
            &["a", "b"],
            serde_json::json!({"delimiter": ";"}),
            8192,
        )
        .await;
        assert!(rejects.is_empty());
        assert_eq!(
            rows,
            vec![
                vec![s("say \"hi\""), s("x;1")],
                vec![s("2"), s("multi\nline")],
                vec![s("3"), None],
            ]
        );
        assert_eq!(lines, vec![2, 3, 5]);
    }

    #[tokio::test]
    async fn windows_1252_is_decoded() {
        let data = b"kunta;nimi\n091;Hyvink\xe4\xe4\n";
        let (rows, _, rejects) = parse(
            data,
            &["nimi"],
            serde_json::json!({"delimiter": ";", "encoding": "windows-1252"}),
            8192,
        )
        .await;
        assert!(rejects.is_empty());
        assert_eq!(rows, vec![vec![s("Hyvinkää")]]);
    }

    #[tokio::test]
    async fn bad_rows_are_rejected_with_their_line() {
        let data = b"a,b\n1,2\n3\n4,5,6\n\xe4,7\n8,9\n";
        let (rows, lines, rejects) = parse(data, &["a", "b"], serde_json::Value::Null, 2).await;
        assert_eq!(rows, vec![vec![s("1"), s("2")], vec![s("8"), s("9")]]);
        assert_eq!(lines, vec![2, 6]);
        assert_eq!(
            rejects.iter().map(|r| r.row).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert!(
            rejects[0].reason.contains("expected 2 fields"),
            "{}",
            rejects[0].reason
        );
        assert!(
            rejects[2].reason.contains("not valid UTF-8"),
            "{}",
            rejects[2].reason
        );
    }

    #[tokio::test]
    async fn missing_column_names_the_object() {
        let store = Arc::new(InMemory::new());
        let path = Path::from("t.csv");
        store
            .put(&path, PutPayload::from_static(b"a\n1\n"))
            .await
            .unwrap();
        let object = SourceObject {
            store,
            path,
            size: 4,
            name: "inbox/t.csv".into(),
        };
        let request = ParseRequest {
            columns: vec!["a".into(), "kunta".into()],
            types: vec![],
            options: serde_json::Value::Null,
            batch_size: 10,
            base_dir: None,
        };
        let err = CsvParser
            .parse(object, request)
            .next()
            .await
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("inbox/t.csv") && err.contains("`kunta`"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn headerless_null_values_and_batches() {
        let mut data = String::new();
        for i in 0..25 {
            data.push_str(&format!("{i},NA\r\n"));
        }
        let (rows, lines, _) = parse(
            data.as_bytes(),
            &["n", "m"],
            serde_json::json!({"header": false, "null_values": ["NA"]}),
            10,
        )
        .await;
        assert_eq!(rows.len(), 25);
        assert_eq!(rows[24], vec![s("24"), None]);
        assert_eq!(lines[0], 1);
        assert_eq!(lines[24], 25);
    }

    #[test]
    fn options_are_checked() {
        assert!(
            CsvParser
                .check_options(&serde_json::json!({"delimiter": "ä"}))
                .is_err()
        );
        assert!(
            CsvParser
                .check_options(&serde_json::json!({"delimiter": "\""}))
                .is_err()
        );
        assert!(
            CsvParser
                .check_options(&serde_json::json!({"delimitr": ";"}))
                .is_err()
        );
        assert!(
            CsvParser
                .check_options(&serde_json::json!({"delimiter": ";"}))
                .is_ok()
        );
    }
}
