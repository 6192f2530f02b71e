//! The parser plugin contract of Valtava.
//!
//! A parser turns the bytes of one object into Arrow record batches. Every batch carries
//! the row number of each row inside its object (column [`ROW_COLUMN`]), so that the engine
//! can give every row its provenance and quarantine a bad row with its place. A row that a
//! parser cannot read is not an error of the run: it comes back as a [`RowReject`] with its
//! row number and a reason, and the engine quarantines it.
//!
//! Text formats return the declared columns as UTF-8 text; the engine converts them to the
//! declared types (and quarantines what does not convert). Binary formats may return native
//! Arrow types, which the engine casts to the declared ones.
//!
//! ```
//! use valtava_plugin::{TextBatchBuilder, ROW_COLUMN};
//! let mut b = TextBatchBuilder::new(vec!["kunta".into(), "hetu".into()]);
//! b.push_row(2, [Some("091"), None]);
//! let parsed = b.finish().unwrap();
//! assert_eq!(parsed.batch.num_rows(), 1);
//! assert_eq!(parsed.batch.schema().field(2).name(), ROW_COLUMN);
//! ```

use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use futures::stream::BoxStream;
use object_store::ObjectStore;
use object_store::path::Path;

/// Name of the column that holds a row's number inside its object (1-based: the line
/// number for line-oriented text formats, the row index for tabular binary formats).
pub const ROW_COLUMN: &str = "_row";

/// Rows per record batch unless a parser is told otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 8192;

/// One object to parse.
#[derive(Clone)]
pub struct SourceObject {
    /// The store the object lives in.
    pub store: Arc<dyn ObjectStore>,
    /// Its path inside the store.
    pub path: Path,
    /// Its size in bytes, from the listing.
    pub size: u64,
    /// How the object is named to people (the URL or store-relative path).
    pub name: String,
}

impl fmt::Debug for SourceObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceObject")
            .field("name", &self.name)
            .field("size", &self.size)
            .finish()
    }
}

impl SourceObject {
    /// Opens the object as a stream of byte chunks.
    pub async fn open(
        &self,
    ) -> Result<BoxStream<'static, Result<bytes::Bytes, ParseError>>, ParseError> {
        use futures::{StreamExt, TryStreamExt};
        use object_store::ObjectStoreExt;
        let name = self.name.clone();
        let got = self
            .store
            .get(&self.path)
            .await
            .map_err(|source| ParseError::Store {
                object: self.name.clone(),
                source,
            })?;
        if let object_store::GetResultPayload::File(file, path) = got.payload {
            return Ok(read_file(file, path, got.range, name));
        }
        Ok(got
            .into_stream()
            .map_err(move |source| ParseError::Store {
                object: name.clone(),
                source,
            })
            .boxed())
    }
}

/// Bytes of a file read in large chunks.
const FILE_CHUNK: usize = 1 << 20;

/// Chunk buffers a file's reader keeps for reuse: a chunk's buffer comes back when the last
/// of its bytes are dropped. About as many as are between the reader and the parser at once
/// (the channel's four, pieces waiting and being parsed); more are freed.
const SPARE_CHUNKS: usize = 16;

/// Chunk buffers allocated by file readers so far (for tests).
#[cfg(test)]
static NEW_CHUNK_BUFFERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Buffers of chunks read before, ready to be read into again.
type Spares = Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// The memory of one chunk: its bytes, and where its buffer goes back to when they are
/// dropped.
struct Recycled {
    buf: Vec<u8>,
    spares: Spares,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        if let Ok(mut spares) = self.spares.lock()
            && spares.len() < SPARE_CHUNKS
        {
            spares.push(std::mem::take(&mut self.buf));
        }
    }
}

/// Streams `range` of a local file, read off the async runtime in 1 MiB chunks (the store's
/// own stream reads 8 KiB at a time, each on a blocking task: for a large object the
/// hand-overs between threads cost more than the reading). The chunks' buffers are reused
/// once their bytes are dropped, so that reading an object of any size allocates about
/// sixteen of them, not one a megabyte: a new buffer is memory the allocator hands over
/// fresh and takes back (PROFILE.md, twelfth round).
fn read_file(
    mut file: std::fs::File,
    path: std::path::PathBuf,
    range: std::ops::Range<u64>,
    object: String,
) -> BoxStream<'static, Result<bytes::Bytes, ParseError>> {
    use futures::{SinkExt, StreamExt};
    use std::io::{Read, Seek, SeekFrom};
    if range.end.saturating_sub(range.start) <= FILE_CHUNK as u64 {
        // One chunk: read in place. A thread per small object (a CDA document per file)
        // costs more than the reading (its start, and the allocator's heap for it).
        let mut read = || -> std::io::Result<Vec<u8>> {
            file.seek(SeekFrom::Start(range.start))?;
            let mut buf = vec![0; range.end.saturating_sub(range.start) as usize];
            file.read_exact(&mut buf)?;
            Ok(buf)
        };
        let got = read()
            .map(bytes::Bytes::from)
            .map_err(|e| ParseError::Store {
                object: object.clone(),
                source: object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: format!("{}: {e}", path.display()).into(),
                },
            });
        return futures::stream::once(futures::future::ready(got)).boxed();
    }
    let (tx, rx) = futures::channel::mpsc::channel::<Result<bytes::Bytes, ParseError>>(4);
    off_runtime(move || {
        let mut tx = tx;
        let spares: Spares = Default::default();
        let error = |e: std::io::Error| ParseError::Store {
            object: object.clone(),
            source: object_store::Error::Generic {
                store: "LocalFileSystem",
                source: format!("{}: {e}", path.display()).into(),
            },
        };
        let mut read = || -> Result<(), ParseError> {
            file.seek(SeekFrom::Start(range.start)).map_err(error)?;
            let mut left = range.end.saturating_sub(range.start);
            while left > 0 {
                let n = left.min(FILE_CHUNK as u64) as usize;
                let spare = spares.lock().ok().and_then(|mut s| s.pop());
                let mut buf = spare.unwrap_or_else(|| {
                    #[cfg(test)]
                    NEW_CHUNK_BUFFERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Vec::new()
                });
                // A reused buffer's bytes are overwritten, not cleared first.
                buf.resize(n, 0);
                file.read_exact(&mut buf).map_err(error)?;
                left -= n as u64;
                let chunk = bytes::Bytes::from_owner(Recycled {
                    buf,
                    spares: spares.clone(),
                });
                if futures::executor::block_on(tx.send(Ok(chunk))).is_err() {
                    // The reader stopped listening.
                    return Ok(());
                }
            }
            Ok(())
        };
        if let Err(e) = read() {
            let _ = futures::executor::block_on(tx.send(Err(e)));
        }
    });
    rx.boxed()
}

/// What the engine asks of a parser for one object.
#[derive(Debug, Clone)]
pub struct ParseRequest {
    /// The declared columns, in output order.
    pub columns: Vec<String>,
    /// The declared type of each column, where the parser can use it (binary formats);
    /// text parsers may ignore it.
    pub types: Vec<DataType>,
    /// The parser's options from the line file (already checked by [`Parser::check_options`]).
    pub options: serde_json::Value,
    /// Rows per batch.
    pub batch_size: usize,
    /// The folder of the line file: relative paths in options (an external program) start
    /// here.
    pub base_dir: Option<std::path::PathBuf>,
    /// How much one object may make the parser hold or do.
    pub limits: Limits,
}

/// Bounds on what one object may make a parser hold or do. Every input is assumed hostile:
/// a small file can claim a huge sheet, nest elements a million deep or never end a quoted
/// field. A parser that reaches a bound stops reading the object and returns
/// [`ParseError::Limit`]; the engine quarantines the object and goes on with the next.
/// The line file sets them (`limits:`); the defaults hold for national submissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest record in bytes: a CSV record, an NDJSON line, one FHIR resource.
    pub record_bytes: usize,
    /// Largest object a whole-object format reads into memory (a workbook, a CDA document,
    /// a FHIR Bundle), and the most an archive's parts may unpack to, in bytes.
    pub object_bytes: usize,
    /// Most cells one spreadsheet sheet may hold.
    pub cells: u64,
    /// Deepest nesting of XML elements or JSON values.
    pub depth: usize,
}

impl Limits {
    /// Default longest record: 4 MiB.
    pub const RECORD_BYTES: usize = 4 << 20;
    /// Default largest whole object: 256 MiB.
    pub const OBJECT_BYTES: usize = 256 << 20;
    /// Default most cells of a sheet: 20 million.
    pub const CELLS: u64 = 20_000_000;
    /// Default deepest nesting: 100 levels.
    pub const DEPTH: usize = 100;

    /// The error for a bound reached in `object`: names the object and the line setting that
    /// raises the bound, never content.
    pub fn exceeded(object: &str, setting: &'static str, what: impl Into<String>) -> ParseError {
        ParseError::Limit {
            object: object.to_string(),
            setting,
            message: what.into(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            record_bytes: Self::RECORD_BYTES,
            object_bytes: Self::OBJECT_BYTES,
            cells: Self::CELLS,
            depth: Self::DEPTH,
        }
    }
}

/// A row the parser could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowReject {
    /// Row number inside the object, as in [`ROW_COLUMN`]; 0 stands for the whole object
    /// (it could not be read at all, and all its rows count as rejected).
    pub row: u64,
    /// Why, for people: what was expected and what was found.
    pub reason: String,
}

/// A batch of parsed rows and the rows of the same stretch of the object that failed.
#[derive(Debug, Clone)]
pub struct ParsedBatch {
    /// The declared columns followed by [`ROW_COLUMN`].
    pub batch: RecordBatch,
    /// Rows that could not be read.
    pub rejects: Vec<RowReject>,
}

/// An error that stops the reading of a whole object.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The object is not of the declared shape (for example a declared column is missing
    /// from the header).
    #[error("{object}: {message}")]
    Object { object: String, message: String },
    /// The store failed.
    #[error("{object}: reading failed: {source}")]
    Store {
        object: String,
        #[source]
        source: object_store::Error,
    },
    /// The object reached one of the reader's [`Limits`]: it is quarantined whole.
    /// `setting` names the line file's `limits:` key that sets the bound.
    #[error("{object}: {message} (limit `limits.{setting}`)")]
    Limit {
        object: String,
        setting: &'static str,
        message: String,
    },
    /// Arrow failed while building batches.
    #[error("{object}: {source}")]
    Arrow {
        object: String,
        #[source]
        source: ArrowError,
    },
}

/// A bound in bytes for messages, as the line file sets it: whole KiB in KiB (as
/// `record_kib` counts), else bytes.
pub fn size_text(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

impl ParseError {
    /// The line setting whose bound the object reached, for a limit error.
    pub fn limit_setting(&self) -> Option<&'static str> {
        match self {
            ParseError::Limit { setting, .. } => Some(*setting),
            _ => None,
        }
    }
}

/// The stream a parser yields for one object.
pub type ParseStream = BoxStream<'static, Result<ParsedBatch, ParseError>>;

/// The stream of `object` with a panic of its parser (a defect, perhaps reached by a
/// hostile object) turned into an error of that object, after which the stream ends: the
/// run reports it, the process goes on. Whole-object parsers already run guarded
/// ([`whole_object`]); this covers streaming ones.
pub fn guarded(stream: ParseStream, object: String) -> ParseStream {
    use futures::StreamExt;
    let mut inner = Some(stream);
    futures::stream::poll_fn(move |cx| {
        let Some(s) = inner.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.poll_next_unpin(cx))) {
            Ok(polled) => polled,
            Err(_) => {
                inner = None;
                std::task::Poll::Ready(Some(Err(ParseError::Object {
                    object: object.clone(),
                    message: "the parser failed unexpectedly (a panic)".into(),
                })))
            }
        }
    })
    .boxed()
}

/// A source format.
pub trait Parser: Send + Sync + fmt::Debug {
    /// The name line files use in `format:`.
    fn format(&self) -> &'static str;

    /// JSON Schema of this parser's `options:` (for `schemas/line.schema.json`).
    fn options_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema;

    /// Checks the options of a line file without reading data; the error names what is
    /// wrong.
    fn check_options(&self, options: &serde_json::Value) -> Result<(), String>;

    /// Starts reading one object.
    fn parse(&self, object: SourceObject, request: ParseRequest) -> ParseStream;

    /// Whether a small object may be parsed while the one before it is still being read:
    /// true only when a parse holds about its object's size or a bounded window of it (it
    /// streams, or builds a tree of the object), so that two at once stay small. A format
    /// that may unpack or buffer far beyond its object (a workbook's compressed sheets, an
    /// external program's output) keeps the default, one object at a time.
    fn parses_ahead(&self) -> bool {
        false
    }

    /// Whether an object's bytes bound the rows it gives: plain text, one row for each line
    /// or record, nothing compressed. A run sizes a unique rule's filter from such sources'
    /// bytes. A compressed format (Parquet, a workbook), a program's output, and a format
    /// whose record may give many rows (a FHIR view's `forEach`es multiply, a CDA document
    /// gives its entries) keep the default, and the filter its largest size: a few of
    /// their bytes may give millions of rows.
    fn rows_within_bytes(&self) -> bool {
        false
    }
}

/// Why the parse of a whole object stopped: it is not of the expected shape, or it reached
/// one of the [`Limits`] (named by its `limits:` setting). A `String` error converts to the
/// first, so `?` works on text errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Not of the expected shape; the message names what was expected, never content.
    Invalid(String),
    /// A bound reached: the object is quarantined whole.
    Limit {
        setting: &'static str,
        message: String,
    },
}

impl Stop {
    /// The error of `object` this stop stands for.
    pub fn into_error(self, object: &str) -> ParseError {
        match self {
            Stop::Invalid(message) => ParseError::Object {
                object: object.to_string(),
                message,
            },
            Stop::Limit { setting, message } => Limits::exceeded(object, setting, message),
        }
    }
}

impl From<String> for Stop {
    fn from(message: String) -> Self {
        Stop::Invalid(message)
    }
}

impl From<&str> for Stop {
    fn from(message: &str) -> Self {
        Stop::Invalid(message.to_string())
    }
}

/// A parse stream for formats that read an object whole (archives, documents): reads the
/// bytes, then hands them to `parse` (off the async runtime, see
/// [`whole_object_streamed`]); an error of `parse` names the object.
pub fn whole_object<F>(object: SourceObject, request: ParseRequest, parse: F) -> ParseStream
where
    F: FnOnce(Vec<u8>, &ParseRequest) -> Result<Vec<ParsedBatch>, Stop> + Send + 'static,
{
    whole_object_streamed(object, request, move |bytes, request, emit| {
        for batch in parse(bytes, request)? {
            if !emit(batch) {
                break;
            }
        }
        Ok(())
    })
}

/// Reads an object whole, refusing one larger than `limits.object_bytes` before and while
/// reading it (a listing's size may be wrong).
async fn read_whole(object: &SourceObject, limits: &Limits) -> Result<Vec<u8>, ParseError> {
    if object.size > limits.object_bytes as u64 {
        return Err(too_big(object, limits, object.size));
    }
    let bytes = Vec::with_capacity(object.size as usize);
    read_rest(object, limits, bytes, object.open().await?).await
}

/// The error of an object larger than `limits.object_bytes` (`size` bytes or more).
fn too_big(object: &SourceObject, limits: &Limits, size: u64) -> ParseError {
    Limits::exceeded(
        &object.name,
        "object_mib",
        format!(
            "the object is larger than {} MiB ({} bytes or more)",
            limits.object_bytes >> 20,
            size
        ),
    )
}

/// Reads the rest of an object onto the bytes already read from it (`bytes`, from the
/// stream `rest`), whole, refusing more than `limits.object_bytes` in all.
pub async fn read_rest(
    object: &SourceObject,
    limits: &Limits,
    mut bytes: Vec<u8>,
    mut rest: BoxStream<'static, Result<bytes::Bytes, ParseError>>,
) -> Result<Vec<u8>, ParseError> {
    use futures::StreamExt;
    if bytes.len() > limits.object_bytes {
        return Err(too_big(object, limits, bytes.len() as u64));
    }
    while let Some(chunk) = rest.next().await {
        let chunk = chunk?;
        if bytes.len() + chunk.len() > limits.object_bytes {
            return Err(too_big(object, limits, (bytes.len() + chunk.len()) as u64));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// What a parse that runs off the async runtime does: hands each batch to `emit` as it is
/// made (`false` back: the reader has stopped, return), and stops with an error.
pub type BlockingParse =
    Box<dyn FnOnce(&ParseRequest, &mut dyn FnMut(ParsedBatch) -> bool) -> Result<(), Stop> + Send>;

/// A parse stream for formats that read an object whole, for large objects: reads the
/// bytes (at most `limits.object_bytes`), then `parse` runs off the async runtime (see
/// [`off_runtime`]) and hands over each batch as it is made through `emit`, with at most
/// two batches waiting, so an object's rows are never all in memory at once. `emit` returns
/// `false` when the reader has stopped; the parse should then return. An error of `parse`,
/// or a panic, ends the stream with an error naming the object.
pub fn whole_object_streamed<F>(
    object: SourceObject,
    request: ParseRequest,
    parse: F,
) -> ParseStream
where
    F: FnOnce(Vec<u8>, &ParseRequest, &mut dyn FnMut(ParsedBatch) -> bool) -> Result<(), Stop>
        + Send
        + 'static,
{
    use futures::StreamExt;
    let name = object.name.clone();
    let mut parse = Some(parse);
    let limits = request.limits;
    futures::stream::once(async move { read_whole(&object, &limits).await })
        .flat_map(move |read| match read {
            Ok(bytes) => {
                let Some(parse) = parse.take() else {
                    return futures::stream::empty().boxed();
                };
                let run: BlockingParse = Box::new(move |request, emit| parse(bytes, request, emit));
                parse_off_runtime(name.clone(), request.clone(), run)
            }
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .boxed()
}

/// Runs `parse` off the async runtime (see [`off_runtime`]): its batches come out of the
/// stream as they are made, with at most two waiting; its error, or a panic, ends the
/// stream with an error naming the object `name`.
pub fn parse_off_runtime(name: String, request: ParseRequest, parse: BlockingParse) -> ParseStream {
    use futures::{SinkExt, StreamExt};
    let (tx, rx) = futures::channel::mpsc::channel::<Result<ParsedBatch, ParseError>>(2);
    off_runtime(move || {
        let mut tx = tx;
        let mut emit = |b: ParsedBatch| futures::executor::block_on(tx.send(Ok(b))).is_ok();
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(&request, &mut emit)))
                .unwrap_or_else(|_| {
                    Err(Stop::Invalid(
                        "the parser failed unexpectedly (a panic)".into(),
                    ))
                });
        if let Err(stop) = result {
            let _ = futures::executor::block_on(tx.send(Err(stop.into_error(&name))));
        }
    });
    rx.boxed()
}

/// Runs a parse off the async runtime: on the runtime's pool of blocking threads when
/// there is one (a thread is reused from object to object: starting one per small
/// document, with the allocator's heap for it, cost more than parsing it), else on a
/// thread of its own. The pool grows while all its threads are busy, so a parse blocked
/// on its reader never keeps another from starting.
fn off_runtime(f: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn_blocking(f);
        }
        Err(_) => {
            std::thread::spawn(f);
        }
    }
}

/// Deserialises typed options, treating a missing `options:` as all defaults.
pub fn typed_options<T: serde::de::DeserializeOwned + Default>(
    options: &serde_json::Value,
) -> Result<T, String> {
    if options.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(options.clone()).map_err(|e| e.to_string())
}

/// The schema of a text batch: the columns as nullable UTF-8, then [`ROW_COLUMN`].
pub fn text_schema(columns: &[String]) -> SchemaRef {
    let mut fields: Vec<Field> = columns
        .iter()
        .map(|c| Field::new(c, DataType::Utf8, true))
        .collect();
    fields.push(Field::new(ROW_COLUMN, DataType::UInt64, false));
    Arc::new(Schema::new(fields))
}

/// Builds [`ParsedBatch`]es of text columns row by row; shared by the text parsers.
pub struct TextBatchBuilder {
    schema: SchemaRef,
    columns: Vec<StringBuilder>,
    rows: UInt64Builder,
    rejects: Vec<RowReject>,
}

impl TextBatchBuilder {
    /// A builder for the given column names.
    pub fn new(columns: Vec<String>) -> Self {
        let schema = text_schema(&columns);
        Self {
            columns: columns.iter().map(|_| StringBuilder::new()).collect(),
            schema,
            rows: UInt64Builder::new(),
            rejects: Vec::new(),
        }
    }

    /// Appends one row: a value (or null) per declared column, in order.
    pub fn push_row<'a>(&mut self, row: u64, values: impl IntoIterator<Item = Option<&'a str>>) {
        for (builder, value) in self.columns.iter_mut().zip(values) {
            builder.append_option(value);
        }
        self.rows.append_value(row);
    }

    /// Records a row that could not be read.
    pub fn reject(&mut self, row: u64, reason: impl Into<String>) {
        self.rejects.push(RowReject {
            row,
            reason: reason.into(),
        });
    }

    /// Rows and rejects gathered since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        arrow::array::ArrayBuilder::len(&self.rows) + self.rejects.len()
    }

    /// Whether nothing has been gathered since the last [`finish`](Self::finish).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The gathered rows as a batch; the builder starts over.
    pub fn finish(&mut self) -> Result<ParsedBatch, ArrowError> {
        let rows = arrow::array::ArrayBuilder::len(&self.rows);
        let mut arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|b| {
                // The next batch starts with room for one like this (an eighth more text):
                // its buffers are not grown by doubling, copied on the way and left up to
                // half unused.
                let text = b.values_slice().len();
                let next = StringBuilder::with_capacity(rows, text + text / 8);
                Arc::new(std::mem::replace(b, next).finish()) as ArrayRef
            })
            .collect();
        arrays.push(Arc::new(
            std::mem::replace(&mut self.rows, UInt64Builder::with_capacity(rows)).finish(),
        ));
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)?;
        Ok(ParsedBatch {
            batch,
            rejects: std::mem::take(&mut self.rejects),
        })
    }
}

#[cfg(test)]
mod tests;
