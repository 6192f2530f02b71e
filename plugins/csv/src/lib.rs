//! The CSV source parser of Valtava.
//!
//! Streams an object in chunks through [`csv_core`]: quoting (with doubled quotes), any
//! one-byte delimiter (`;` is common in Finnish submissions), an optional header row,
//! UTF-8 with or without a byte-order mark, and windows-1252.
//!
//! A large object is parsed on all cores: as its bytes arrive they are cut into pieces of a
//! few megabytes after a record end (found by following quotes, not parsing: a line break
//! inside a quoted field does not end a record), and the pieces are parsed on blocking
//! threads, a few at a time, their batches handed over in the object's order with the
//! object's line numbers. Memory stays bounded by the pieces in flight whatever the size of
//! the object.
//!
//! A row with the wrong number of fields, or with bytes that are not valid in its
//! encoding, is returned as a [`RowReject`](valtava_plugin::RowReject) with its line number;
//! the rest of the object is read on. Blank lines are not rows.
//!
//! Every object is taken as hostile. One record may be at most `limits.record_kib` long (the
//! line setting; its bytes from its first to its line break, quotes and delimiters included;
//! in windows-1252 once decoded, where a character may take three bytes). A longer one
//! (usually a quoted field that is never closed, which would swallow the rest of the object)
//! stops the object with a limit error naming the line where the record starts: the rows
//! before it are handed over, and no more of the object is read. The record is refused while
//! it arrives, so no more than about the limit of it is ever held, whatever the size of the
//! object.
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
use futures::stream;
use schemars::JsonSchema;
use serde::Deserialize;
use valtava_plugin::{
    Limits, ParseError, ParseRequest, ParseStream, ParsedBatch, Parser, SourceObject, typed_options,
};

mod read;
mod split;

use read::Driver;
use split::pieces;

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

    fn parses_ahead(&self) -> bool {
        true
    }

    fn rows_within_bytes(&self) -> bool {
        true
    }

    fn options_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<CsvOptions>()
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), String> {
        typed_options::<CsvOptions>(options)?.validate()
    }

    fn parse(&self, object: SourceObject, request: ParseRequest) -> ParseStream {
        parse_in_pieces(object, request, PIECE)
    }
}

/// Parses an object in pieces of at least `size` bytes, several at a time.
fn parse_in_pieces(object: SourceObject, request: ParseRequest, size: usize) -> ParseStream {
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
    let layout = (!options.header).then(|| Layout {
        positions: (0..request.columns.len()).collect(),
        fields: request.columns.len(),
    });
    let record_bytes = request.limits.record_bytes;
    let pieces = pieces(object.clone(), &options, size, record_bytes);
    let ctx = Ctx {
        object: object.name,
        columns: request.columns,
        options,
        batch_size: request.batch_size.max(1),
        record_bytes,
    };
    let driver = Driver::new(Arc::new(ctx), pieces, layout);
    stream::try_unfold(driver, Driver::next).boxed()
}

/// Bytes per piece of an object: pieces are parsed in parallel, each on a thread of its own.
/// A piece and its parsed rows are in memory at once, a few pieces at a time, and the
/// allocator keeps what they free for a while: pieces of a local file's 1 MiB chunk each
/// (any size up to a chunk gives that) kept the resident peak of reading 10 M rows
/// ≈ 20 MiB lower than 4 MiB pieces, at the same speed (PROFILE.md, tenth round).
const PIECE: usize = 512 << 10;

/// What every piece of one object is parsed with.
struct Ctx {
    object: String,
    columns: Vec<String>,
    options: CsvOptions,
    batch_size: usize,
    /// Longest record in bytes (`limits.record_kib`).
    record_bytes: usize,
}

impl Ctx {
    fn error(&self, message: String) -> ParseError {
        ParseError::Object {
            object: self.object.clone(),
            message,
        }
    }
}

/// The error for a record longer than `limit` bytes that starts at `line`: names the place
/// and the bound, never the record's bytes.
fn too_long(object: &str, line: u64, limit: usize) -> ParseError {
    Limits::exceeded(
        object,
        "record_kib",
        format!(
            "record at line {line} is longer than {}",
            valtava_plugin::size_text(limit)
        ),
    )
}

/// Where each declared column is in a record (from the header, or the declared order), and
/// how many fields a record has.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    positions: Vec<usize>,
    fields: usize,
}

/// A stretch of an object that starts at a record and ends after one (or at the end of the
/// object), with the number of line breaks before it. Its bytes are the chunks they arrived
/// in (or parts of them), not copied.
struct Piece {
    parts: Vec<Bytes>,
    lines_before: u64,
}

impl Piece {
    fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }
}

/// What a piece gave: its rows in batches, the layout if its header row was read, and the
/// error that stopped it (after the rows before it, which are handed over first).
struct Parsed {
    batches: Vec<ParsedBatch>,
    layout: Option<Layout>,
    stop: Option<ParseError>,
}

/// The parser as a registry entry.
pub fn parser() -> Arc<dyn Parser> {
    Arc::new(CsvParser)
}

#[cfg(test)]
mod tests;
