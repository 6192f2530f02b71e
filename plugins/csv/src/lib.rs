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
use futures::stream::{self, BoxStream};
use schemars::JsonSchema;
use serde::Deserialize;
use valtava_plugin::{
    Limits, ParseError, ParseRequest, ParseStream, ParsedBatch, Parser, SourceObject,
    TextBatchBuilder, typed_options,
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
    let driver = Driver {
        ctx: Arc::new(Ctx {
            object: object.name,
            columns: request.columns,
            options,
            batch_size: request.batch_size.max(1),
            record_bytes,
        }),
        pieces,
        pieces_done: false,
        running: Default::default(),
        layout,
        ready: Default::default(),
        parallel: std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)),
        stopped: None,
    };
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

/// Finds where records end as bytes arrive, without parsing them: it follows the states of
/// csv_core's reader that decide whether a line break ends a record — inside a quoted field
/// it does not. A quote opens a quoted field only at the start of a field; inside one, a
/// doubled quote is a quote and a single one closes it.
struct Splitter {
    quote: u8,
    delimiter: u8,
    state: Scan,
    /// The byte before the next one scanned (a line break at the start of the object).
    prev: u8,
    /// How much of a leading byte-order mark has been seen (3: all, or there is none).
    bom: usize,
}

/// The UTF-8 byte-order mark.
const BOM: &[u8; 3] = b"\xef\xbb\xbf";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: doubled, or the end of the field.
    QuoteInQuoted,
}

impl Splitter {
    fn new(options: &CsvOptions) -> Self {
        Self {
            quote: options.quote as u8,
            delimiter: options.delimiter as u8,
            state: Scan::Unquoted,
            prev: b'\n',
            // In windows-1252 the mark's bytes are three characters (csv_core reads the
            // decoded text).
            bom: if options.encoding == Encoding::Utf8 {
                0
            } else {
                3
            },
        }
    }

    /// Scans `bytes`, which follow those scanned before, and returns the offset just past
    /// the last record end in them: a `\n` outside quotes, or a lone `\r` (one followed by
    /// a byte other than `\n`).
    fn scan(&mut self, mut bytes: &[u8]) -> Option<usize> {
        // A byte-order mark at the start of the object is skipped, as csv_core does; its
        // bytes may arrive one at a time.
        let mut skipped = 0;
        while self.bom < 3 && !bytes.is_empty() {
            if bytes[0] == BOM[self.bom] {
                self.bom += 1;
                self.prev = if self.bom == 3 { b'\n' } else { bytes[0] };
                skipped += 1;
                bytes = &bytes[1..];
            } else {
                // Not a mark: what was taken for its start is data.
                self.bom = 3;
            }
        }
        let mut cut = None;
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                Scan::Unquoted => {
                    // The next quote that opens a field, skipping quotes inside unquoted
                    // fields (they are data).
                    let mut j = i;
                    let open = loop {
                        match memchr::memchr(self.quote, &bytes[j..]) {
                            None => break None,
                            Some(k) => {
                                let q = j + k;
                                let before = if q == 0 { self.prev } else { bytes[q - 1] };
                                if before == self.delimiter || before == b'\n' || before == b'\r' {
                                    break Some(q);
                                }
                                j = q + 1;
                            }
                        }
                    };
                    let end = open.unwrap_or(bytes.len());
                    // A record end in `i..end`; after `end` comes a quote or more input.
                    if let Some(c) = record_end(&bytes[i..end], open.is_some()) {
                        cut = Some(i + c);
                    }
                    match open {
                        Some(q) => {
                            self.state = Scan::Quoted;
                            i = q + 1;
                        }
                        None => i = bytes.len(),
                    }
                }
                Scan::Quoted => match memchr::memchr(self.quote, &bytes[i..]) {
                    Some(k) => {
                        self.state = Scan::QuoteInQuoted;
                        i += k + 1;
                    }
                    None => i = bytes.len(),
                },
                Scan::QuoteInQuoted => {
                    if bytes[i] == self.quote {
                        self.state = Scan::Quoted;
                        i += 1;
                    } else {
                        // The field has ended; this byte is read as outside quotes.
                        self.state = Scan::Unquoted;
                    }
                }
            }
        }
        if let Some(&b) = bytes.last() {
            self.prev = b;
        }
        cut.map(|c| c + skipped)
    }
}

/// The offset just past the last record end in `stretch` (bytes outside quotes); `known_next`
/// says that the byte after the stretch is known not to be `\n` (it is a quote).
fn record_end(stretch: &[u8], known_next: bool) -> Option<usize> {
    let mut upto = stretch.len();
    while let Some(p) = memchr::memrchr2(b'\n', b'\r', &stretch[..upto]) {
        // The last of both, so the byte after it (if in the stretch) is neither.
        if stretch[p] == b'\n' || p + 1 < stretch.len() || known_next {
            return Some(p + 1);
        }
        upto = p;
    }
    None
}

/// Cuts the bytes of an object, as they arrive, into pieces that start at records: each at
/// least `size` bytes (but the last), cut after a record end. A piece holds the chunks it is
/// made of (cheap references), so no byte of the object is copied on the way.
struct Cutter {
    splitter: Splitter,
    size: usize,
    /// Chunks not yet in a piece, in order; the first may be the rest of a chunk cut before.
    pending: Vec<Bytes>,
    /// Bytes in `pending`.
    pending_len: usize,
    /// The last record end in `pending`: the chunk it is in, the offset just past it there,
    /// and the bytes of `pending` before that offset.
    cut: Option<(usize, usize, usize)>,
    lines_before: u64,
}

impl Cutter {
    fn new(options: &CsvOptions, size: usize) -> Self {
        Self {
            splitter: Splitter::new(options),
            size,
            pending: Vec::new(),
            pending_len: 0,
            cut: None,
            lines_before: 0,
        }
    }

    /// Takes the next chunk; returns a piece when one is complete.
    fn push(&mut self, chunk: Bytes) -> Option<Piece> {
        if chunk.is_empty() {
            return None;
        }
        if let Some(c) = self.splitter.scan(&chunk) {
            self.cut = Some((self.pending.len(), c, self.pending_len + c));
        }
        self.pending_len += chunk.len();
        self.pending.push(chunk);
        let (i, c, before) = self.cut?;
        // A piece's reader skips a byte-order mark at its start, where the object's reader
        // would keep it: no cut before one (or before what may become one).
        let next: Vec<u8> = self.pending[i..]
            .iter()
            .enumerate()
            .flat_map(|(k, p)| p[if k == 0 { c } else { 0 }..].iter().copied())
            .take(3)
            .collect();
        (before >= self.size && !BOM.starts_with(&next)).then(|| self.piece(i, c))
    }

    /// The line where the record not yet ended starts, if its bytes so far are longer than
    /// `limit`: it is refused before more of it is held. Counted as the piece's reader counts
    /// it, or less: a leading byte-order mark and a trailing `\r` (maybe half of the
    /// record's `\r\n`) are not counted.
    fn overlong(&self, limit: usize) -> Option<u64> {
        let before = self.cut.map_or(0, |(_, _, before)| before);
        let cr = self.pending.last().and_then(|p| p.last()) == Some(&b'\r');
        let bom = self.cut.is_none()
            && self
                .pending
                .iter()
                .flat_map(|p| p.iter())
                .take(BOM.len())
                .eq(BOM.iter());
        let partial = (self.pending_len - before)
            .saturating_sub(usize::from(cr) + if bom { BOM.len() } else { 0 });
        (partial > limit).then(|| self.lines_before + 1 + self.lines_before_cut())
    }

    /// Line breaks in `pending` before its last record end.
    fn lines_before_cut(&self) -> u64 {
        let Some((i, c, _)) = self.cut else {
            return 0;
        };
        self.pending[..=i]
            .iter()
            .enumerate()
            .map(|(k, p)| {
                let p = if k == i { &p[..c] } else { &p[..] };
                memchr::memchr_iter(b'\n', p).count() as u64
            })
            .sum()
    }

    /// The pending records that have ended, as a piece of any size: the rows before a
    /// record that is refused.
    fn ended(&mut self) -> Option<Piece> {
        let (i, c, _) = self.cut?;
        Some(self.piece(i, c))
    }

    /// The rest of the object, as its last piece.
    fn finish(&mut self) -> Piece {
        let parts = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        self.cut = None;
        self.make(parts)
    }

    /// The pending bytes up to offset `c` of chunk `i`.
    fn piece(&mut self, i: usize, c: usize) -> Piece {
        let mut parts: Vec<Bytes> = self.pending.drain(..i).collect();
        let head = self.pending[0].split_to(c);
        self.pending_len -= parts.iter().map(Bytes::len).sum::<usize>() + head.len();
        if self.pending[0].is_empty() {
            self.pending.remove(0);
        }
        if !head.is_empty() {
            parts.push(head);
        }
        self.cut = None;
        self.make(parts)
    }

    fn make(&mut self, parts: Vec<Bytes>) -> Piece {
        let lines_before = self.lines_before;
        self.lines_before += parts
            .iter()
            .map(|p| memchr::memchr_iter(b'\n', p).count() as u64)
            .sum::<u64>();
        Piece {
            parts,
            lines_before,
        }
    }
}

/// Reads an object as pieces of at least `size` bytes that start at records. A record longer
/// than `record_bytes` ends the pieces with its error, after a piece of the records before it.
fn pieces(
    object: SourceObject,
    options: &CsvOptions,
    size: usize,
    record_bytes: usize,
) -> BoxStream<'static, Result<Piece, ParseError>> {
    struct Reading {
        object: SourceObject,
        input: Option<BoxStream<'static, Result<Bytes, ParseError>>>,
        cutter: Cutter,
        record_bytes: usize,
        done: bool,
        /// The error to end with once the piece before it has been handed over.
        refused: Option<ParseError>,
    }
    async fn next(mut r: Reading) -> Result<Option<(Piece, Reading)>, ParseError> {
        while !r.done {
            // Checked before every chunk is read: the record being assembled is never held
            // much beyond the limit (a quoted field that never closes would hold the rest of
            // the object).
            if let Some(line) = r.cutter.overlong(r.record_bytes) {
                r.done = true;
                r.input = None;
                let error = too_long(&r.object.name, line, r.record_bytes);
                return match r.cutter.ended() {
                    Some(piece) => {
                        r.refused = Some(error);
                        Ok(Some((piece, r)))
                    }
                    None => Err(error),
                };
            }
            let input = match &mut r.input {
                Some(i) => i,
                None => r.input.insert(r.object.open().await?),
            };
            match input.next().await.transpose()? {
                Some(chunk) => {
                    if let Some(piece) = r.cutter.push(chunk) {
                        return Ok(Some((piece, r)));
                    }
                }
                None => {
                    r.done = true;
                    let piece = r.cutter.finish();
                    return Ok(Some((piece, r)));
                }
            }
        }
        match r.refused.take() {
            Some(error) => Err(error),
            None => Ok(None),
        }
    }
    let reading = Reading {
        object,
        input: None,
        cutter: Cutter::new(options, size),
        record_bytes,
        done: false,
        refused: None,
    };
    stream::try_unfold(reading, next).boxed()
}

/// Parses pieces on blocking threads, several at a time, and hands their batches over in
/// the object's order. Until the header row has been read, one piece at a time. An error that
/// stops the object ends the stream after the batches before it.
struct Driver {
    ctx: Arc<Ctx>,
    pieces: BoxStream<'static, Result<Piece, ParseError>>,
    pieces_done: bool,
    running: futures::stream::FuturesOrdered<tokio::task::JoinHandle<Result<Parsed, ParseError>>>,
    layout: Option<Layout>,
    ready: std::collections::VecDeque<ParsedBatch>,
    parallel: usize,
    /// The error that stops the object, once the batches before it are handed over.
    stopped: Option<ParseError>,
}

impl Driver {
    async fn next(mut self) -> Result<Option<(ParsedBatch, Self)>, ParseError> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                return Ok(Some((b, self)));
            }
            while !self.pieces_done
                && self.running.len() < self.parallel
                && (self.layout.is_some() || self.running.is_empty())
            {
                match self.pieces.next().await {
                    Some(Ok(piece)) => {
                        let ctx = self.ctx.clone();
                        let layout = self.layout.clone();
                        self.running.push_back(tokio::task::spawn_blocking(move || {
                            parse_piece(&ctx, &piece, layout)
                        }));
                    }
                    // The pieces before it, already running, are handed over first.
                    Some(Err(error)) => {
                        self.pieces_done = true;
                        self.stopped = Some(error);
                    }
                    None => self.pieces_done = true,
                }
            }
            match self.running.next().await {
                Some(done) => {
                    let parsed = done.map_err(|_| {
                        self.ctx
                            .error("the CSV parser failed unexpectedly (a panic)".into())
                    })??;
                    if self.layout.is_none() {
                        self.layout = parsed.layout;
                    }
                    self.ready.extend(parsed.batches);
                    if let Some(error) = parsed.stop {
                        // Earlier in the object than any error of the pieces after it, which
                        // are not handed over.
                        self.pieces_done = true;
                        self.running = Default::default();
                        self.stopped = Some(error);
                    }
                }
                None => {
                    if let Some(error) = self.stopped.take() {
                        return Err(error);
                    }
                    if self.layout.is_none() {
                        return Err(self.ctx.error("the object has no header row".into()));
                    }
                    return Ok(None);
                }
            }
        }
    }
}

/// Parses one piece: its rows in batches of the requested size; with no layout yet, its
/// first record is the header.
fn parse_piece(ctx: &Ctx, piece: &Piece, layout: Option<Layout>) -> Result<Parsed, ParseError> {
    let decoded;
    let parts: &[Bytes] = match ctx.options.encoding {
        Encoding::Utf8 => &piece.parts,
        Encoding::Windows1252 => {
            // Every byte is one character: a piece decodes on its own.
            let mut decoder = encoding_rs::WINDOWS_1252.new_decoder_without_bom_handling();
            let len = piece.len();
            let mut s =
                String::with_capacity(decoder.max_utf8_buffer_length(len).unwrap_or(len * 3));
            for part in &piece.parts {
                let _ = decoder.decode_to_string(part, &mut s, false);
            }
            let _ = decoder.decode_to_string(&[], &mut s, true);
            decoded = [Bytes::from(s.into_bytes())];
            &decoded
        }
    };
    let mut records = Records::new(ctx, layout, piece.lines_before);
    // An error stops the object after the rows before it in the piece.
    let stop = read_parts(&mut records, parts).err();
    records.flush()?;
    Ok(Parsed {
        batches: records.batches,
        layout: records.layout,
        stop,
    })
}

/// Feeds the bytes of a piece to its reader, then the end of the data.
fn read_parts(records: &mut Records<'_>, parts: &[Bytes]) -> Result<(), ParseError> {
    // The reader skips a byte-order mark only when its first input holds all of it: a
    // first part shorter than that is joined with the next bytes.
    let mut skip = 0;
    if parts.len() > 1 && parts[0].len() < BOM.len() {
        let head: Vec<u8> = parts
            .iter()
            .flat_map(|p| p.iter().copied())
            .take(BOM.len())
            .collect();
        records.feed(&head, false)?;
        skip = head.len();
    }
    for part in parts {
        let from = skip.min(part.len());
        skip -= from;
        // An empty input is the end of the data to the reader.
        if from < part.len() {
            records.feed(&part[from..], false)?;
        }
    }
    // A piece ends at a record end, so this only ends the object's last record.
    records.feed(&[], true)
}

/// csv_core's reader over one piece, its rows going into batches.
struct Records<'a> {
    ctx: &'a Ctx,
    reader: csv_core::Reader,
    out: Vec<u8>,
    out_len: usize,
    ends: Vec<usize>,
    ends_len: usize,
    layout: Option<Layout>,
    /// Line breaks before the piece: line numbers inside it count on from here.
    lines_before: u64,
    builder: TextBatchBuilder,
    batches: Vec<ParsedBatch>,
    /// The last byte the CSV reader consumed in its last call: tells whether a record's
    /// line break has been counted yet.
    last_byte: u8,
    /// Bytes of the record being read, consumed so far from its first byte on.
    record_in: usize,
    /// Whether the reader has been called: it skips a byte-order mark only in its first
    /// input.
    started: bool,
}

impl<'a> Records<'a> {
    fn new(ctx: &'a Ctx, layout: Option<Layout>, lines_before: u64) -> Self {
        let reader = csv_core::ReaderBuilder::new()
            .delimiter(ctx.options.delimiter as u8)
            .quote(ctx.options.quote as u8)
            .build();
        Self {
            ctx,
            reader,
            out: vec![0; 4096],
            out_len: 0,
            ends: vec![0; 64],
            ends_len: 0,
            layout,
            lines_before,
            builder: TextBatchBuilder::new(ctx.columns.clone()),
            batches: Vec::new(),
            last_byte: 0,
            record_in: 0,
            started: false,
        }
    }

    fn flush(&mut self) -> Result<(), ParseError> {
        if self.builder.is_empty() {
            return Ok(());
        }
        let batch = self.builder.finish().map_err(|source| ParseError::Arrow {
            object: self.ctx.object.clone(),
            source,
        })?;
        self.batches.push(batch);
        Ok(())
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
            // A record ended by the end of data (`last`, no input) has no terminator.
            self.last_byte = if nin > 0 { input[nin - 1] } else { 0 };
            self.count(&input[..nin]);
            input = &input[nin..];
            self.out_len += nout;
            self.ends_len += nend;
            // Checked at every return of the reader, which fills the output buffers at most:
            // they grow (doubling) only while the record is within the limit.
            self.check_length(matches!(res, R::Record) && nin > 0)?;
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
                    self.record_in = 0;
                    if self.builder.len() >= self.ctx.batch_size {
                        self.flush()?;
                    }
                }
                R::End => return Ok(()),
            }
        }
    }

    /// Counts the bytes the reader consumed toward the record being read: line breaks before
    /// its first byte are blank lines, which the reader skips, and so is a byte-order mark at
    /// the start of its first input.
    fn count(&mut self, mut used: &[u8]) {
        if !self.started {
            self.started = true;
            used = used.strip_prefix(BOM).unwrap_or(used);
        }
        if self.record_in == 0 {
            let blank = used
                .iter()
                .take_while(|&&b| b == b'\n' || b == b'\r')
                .count();
            used = &used[blank..];
        }
        self.record_in += used.len();
    }

    /// Stops at a record longer than the limit; `ended` says that the reader has just
    /// consumed its line break, which is not counted.
    fn check_length(&self, ended: bool) -> Result<(), ParseError> {
        let limit = self.ctx.record_bytes;
        if self.record_in.saturating_sub(usize::from(ended)) > limit {
            return Err(too_long(&self.ctx.object, self.record_line(ended), limit));
        }
        Ok(())
    }

    /// The line where the record being read starts. The reader counts line breaks read so
    /// far; step back over those inside the record (all in its output), and over its
    /// terminator when it has `ended` and the reader has consumed it (it has after `\n`, not
    /// yet after the `\r` of `\r\n`, and there is none at the end of data).
    fn record_line(&self, ended: bool) -> u64 {
        let inner = self.out[..self.out_len]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        let terminator = u64::from(ended && self.last_byte == b'\n');
        self.lines_before + self.reader.line().saturating_sub(inner + terminator).max(1)
    }

    fn record(&mut self) -> Result<(), ParseError> {
        let ctx = self.ctx;
        let line = self.record_line(true);
        let data = &self.out[..self.out_len];
        let ends = &self.ends[..self.ends_len];
        let field = |i: usize| -> &[u8] {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            &data[start..ends[i]]
        };
        let Some(layout) = &self.layout else {
            let mut names = Vec::with_capacity(ends.len());
            for i in 0..ends.len() {
                let name = std::str::from_utf8(field(i)).map_err(|_| {
                    ctx.error(format!(
                        "line {line}: the header is not valid UTF-8 (is the object in windows-1252? set `encoding`)"
                    ))
                })?;
                names.push(name.trim().to_string());
            }
            let mut positions = Vec::with_capacity(ctx.columns.len());
            let mut missing = Vec::new();
            for c in &ctx.columns {
                match names.iter().position(|n| n == c) {
                    Some(p) => positions.push(p),
                    None => missing.push(c.as_str()),
                }
            }
            if !missing.is_empty() {
                // The row read as the header may be data (a file without its header row):
                // what it holds is never quoted, only how many fields it has.
                return Err(ctx.error(format!(
                    "line {line}: the header lacks declared column(s) {}; the row read as the header has {} field(s) (is the header row missing?)",
                    quote_list(&missing),
                    names.len()
                )));
            }
            self.layout = Some(Layout {
                positions,
                fields: names.len(),
            });
            return Ok(());
        };
        if ends.len() != layout.fields {
            self.builder.reject(
                line,
                format!(
                    "expected {} fields separated by `{}`, found {}",
                    layout.fields,
                    ctx.options.delimiter,
                    ends.len()
                ),
            );
            return Ok(());
        }
        let mut values: Vec<Option<&str>> = Vec::with_capacity(layout.positions.len());
        for (col, &p) in layout.positions.iter().enumerate() {
            let raw = field(p);
            let text = match std::str::from_utf8(raw) {
                Ok(t) => t,
                Err(e) => {
                    self.builder.reject(
                        line,
                        format!(
                            "column `{}` is not valid UTF-8 at byte {} of the field (is the object in windows-1252? set `encoding`)",
                            ctx.columns[col],
                            e.valid_up_to()
                        ),
                    );
                    return Ok(());
                }
            };
            let text = if ctx.options.trim { text.trim() } else { text };
            let is_null = text.is_empty() || ctx.options.null_values.iter().any(|n| n == text);
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
            limits: Limits::default(),
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
            limits: Limits::default(),
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

    /// Rows, line numbers and rejects of pieces parsed one after another (as the driver
    /// does, in order), or the first error.
    type Outcome = Result<(Vec<Vec<Option<String>>>, Vec<u64>, Vec<RowReject>), String>;

    fn parse_pieces(ctx: &Ctx, pieces: &[Piece]) -> Outcome {
        let mut layout = (!ctx.options.header).then(|| Layout {
            positions: (0..ctx.columns.len()).collect(),
            fields: ctx.columns.len(),
        });
        let (mut rows, mut lines, mut rejects) = (vec![], vec![], vec![]);
        for piece in pieces {
            let parsed = parse_piece(ctx, piece, layout.clone()).map_err(|e| e.to_string())?;
            if let Some(e) = parsed.stop {
                return Err(e.to_string());
            }
            layout = layout.or(parsed.layout);
            for b in parsed.batches {
                rejects.extend(b.rejects);
                let batch = b.batch;
                for r in 0..batch.num_rows() {
                    rows.push(
                        (0..ctx.columns.len())
                            .map(|c| {
                                let a = batch.column(c).as_string::<i32>();
                                a.is_valid(r).then(|| a.value(r).to_string())
                            })
                            .collect(),
                    );
                    let line = batch.column(ctx.columns.len()).as_primitive::<UInt64Type>();
                    lines.push(line.value(r));
                }
            }
        }
        if layout.is_none() {
            return Err("the object has no header row".into());
        }
        Ok((rows, lines, rejects))
    }

    /// Bytes from a small alphabet that exercises every state of the reader: delimiters,
    /// quotes (opening, doubled, inside unquoted fields), `\n`, `\r`, a byte-order mark,
    /// UTF-8 and invalid bytes.
    fn random_csv(seed: &mut u64, header: bool) -> Vec<u8> {
        let mut next = || {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed
        };
        const PARTS: [&[u8]; 14] = [
            b"a",
            b"bc",
            b";",
            b";",
            b"\"",
            b"\"",
            b"\"\"",
            b"\n",
            b"\n",
            b"\r",
            b"\r\n",
            b"\xef\xbb\xbf",
            b"\xc3\xa4",
            b"\xff",
        ];
        let mut out = Vec::new();
        if next() % 3 == 0 {
            out.extend_from_slice(b"\xef\xbb\xbf");
        }
        if header {
            out.extend_from_slice(b"a;b\n");
        }
        let n = next() % 120;
        for _ in 0..n {
            out.extend_from_slice(PARTS[(next() % PARTS.len() as u64) as usize]);
        }
        out
    }

    #[test]
    fn pieces_parse_as_the_whole_object_does() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut cuts = 0;
        for case in 0..800 {
            let header = case % 2 == 0;
            let encoding = if case % 5 == 0 {
                Encoding::Windows1252
            } else {
                Encoding::Utf8
            };
            let bytes = random_csv(&mut seed, header);
            let ctx = Ctx {
                object: "t.csv".into(),
                columns: vec!["a".into(), "b".into()],
                options: CsvOptions {
                    delimiter: ';',
                    header,
                    encoding,
                    ..Default::default()
                },
                batch_size: 3,
                record_bytes: Limits::RECORD_BYTES,
            };
            let whole = parse_pieces(
                &ctx,
                &[Piece {
                    parts: vec![Bytes::from(bytes.clone())],
                    lines_before: 0,
                }],
            );
            for (size, chunk) in [(1, 1), (2, 3), (9, 4), (30, 7)] {
                let mut cutter = Cutter::new(&ctx.options, size);
                let mut pieces: Vec<Piece> = bytes
                    .chunks(chunk)
                    .filter_map(|c| cutter.push(Bytes::copy_from_slice(c)))
                    .collect();
                pieces.push(cutter.finish());
                cuts += pieces.len() - 1;
                assert_eq!(
                    pieces
                        .iter()
                        .flat_map(|p| p.parts.iter().flat_map(|b| b.to_vec()))
                        .collect::<Vec<u8>>(),
                    bytes
                );
                assert_eq!(
                    parse_pieces(&ctx, &pieces),
                    whole,
                    "case {case}, pieces of {size}, chunks of {chunk}: {:?}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
        // The cases did cut objects, many times.
        assert!(cuts > 10_000, "{cuts}");
    }

    /// Cuts `data`, arriving in chunks of `chunk` bytes, into pieces of at least `size`;
    /// checks that every byte of every piece is the object's own byte in its own place in
    /// the chunk it arrived in (not a copy), and returns the pieces.
    fn cut_in_place(options: &CsvOptions, data: &[u8], size: usize, chunk: usize) -> Vec<Piece> {
        let object = Bytes::copy_from_slice(data);
        let base = object.as_ptr() as usize;
        let mut cutter = Cutter::new(options, size);
        let mut pieces: Vec<Piece> = (0..data.len())
            .step_by(chunk)
            .filter_map(|at| cutter.push(object.slice(at..(at + chunk).min(data.len()))))
            .collect();
        pieces.push(cutter.finish());
        let mut at = 0;
        for part in pieces.iter().flat_map(|p| &p.parts) {
            assert_eq!(part.as_ptr() as usize - base, at, "a part not in place");
            at += part.len();
        }
        assert_eq!(at, data.len());
        pieces
    }

    /// Pieces gathered from many small chunks (as an object store's HTTP body arrives) are
    /// those chunks, cut at record ends: no byte is copied into a buffer of the piece's own.
    #[test]
    fn pieces_are_made_of_the_chunks_they_came_in() {
        let options = CsvOptions {
            delimiter: ';',
            ..Default::default()
        };
        let mut data = Vec::new();
        for i in 0..200_000 {
            data.extend_from_slice(format!("{i};nimi {i}\n").as_bytes());
        }
        let (size, chunk) = (256 << 10, 8 << 10);
        let pieces = cut_in_place(&options, &data, size, chunk);
        assert!(pieces.len() >= 8, "{} pieces", pieces.len());
        for p in &pieces[..pieces.len() - 1] {
            // Cut at the last record end in the chunk that made it long enough.
            assert!(
                p.len() >= size && p.len() < size + chunk + 64,
                "{}",
                p.len()
            );
            // Each ends with a whole record.
            assert_eq!(p.parts.last().and_then(|b| b.last()), Some(&b'\n'));
        }
    }

    /// A record longer than a piece (a long quoted text) is kept whole, in the chunks it
    /// arrived in.
    #[test]
    fn a_record_longer_than_a_piece_stays_in_its_chunks() {
        let options = CsvOptions::default();
        let (size, chunk) = (4 << 10, 1 << 10);
        let mut record = b"1,\"".to_vec();
        record.extend(std::iter::repeat_n(b'x', 1 << 20));
        record.extend_from_slice(b"\"\n");
        let long = record.len();
        for i in 0..2000 {
            record.extend_from_slice(format!("{i},y\n").as_bytes());
        }
        let pieces = cut_in_place(&options, &record, size, chunk);
        // The first piece ends in the chunk where the long record ends, after the last
        // record end there; it is made of every chunk up to that one.
        assert!(pieces.len() > 2);
        assert!(pieces[0].len() >= long && pieces[0].len() < long + chunk);
        assert_eq!(pieces[0].parts.len(), long.div_ceil(chunk));
    }

    #[tokio::test]
    async fn an_object_in_many_pieces_keeps_its_order() {
        let dir = std::env::temp_dir().join(format!("valtava-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Three megabytes: the local store hands them over in 1 MiB chunks, each a piece.
        let mut data = String::from("n;t\n");
        let mut i = 0;
        while data.len() < 3 << 20 {
            data.push_str(&format!("{i};\"x\n{i}\"\n"));
            i += 1;
        }
        std::fs::write(dir.join("t.csv"), &data).unwrap();
        let store: Arc<dyn object_store::ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&dir).unwrap());
        let object = SourceObject {
            store,
            path: Path::from("t.csv"),
            size: data.len() as u64,
            name: "t.csv".into(),
        };
        let request = ParseRequest {
            columns: vec!["n".into(), "t".into()],
            types: vec![],
            options: serde_json::json!({"delimiter": ";"}),
            batch_size: 1000,
            base_dir: None,
            limits: Limits::default(),
        };
        let mut s = parse_in_pieces(object, request, 1000);
        let mut expected = 0u64;
        while let Some(b) = s.next().await {
            let b = b.unwrap().batch;
            let n = b.column(0).as_string::<i32>();
            let t = b.column(1).as_string::<i32>();
            let line = b.column(2).as_primitive::<UInt64Type>();
            for r in 0..b.num_rows() {
                assert_eq!(n.value(r), expected.to_string());
                assert_eq!(t.value(r), format!("x\n{expected}"));
                assert_eq!(line.value(r), 2 + 2 * expected);
                expected += 1;
            }
        }
        assert_eq!(expected, i);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Parses `bytes` (columns `a` and `b`) with records of at most `limit` bytes: the values
    /// of `a`, and the error that ended the stream, if one did.
    async fn parse_limited(bytes: Vec<u8>, limit: usize) -> (Vec<String>, Option<ParseError>) {
        let store = Arc::new(InMemory::new());
        let path = Path::from("t.csv");
        let size = bytes.len() as u64;
        store.put(&path, PutPayload::from(bytes)).await.unwrap();
        let object = SourceObject {
            store,
            path,
            size,
            name: "t.csv".into(),
        };
        let request = ParseRequest {
            columns: vec!["a".into(), "b".into()],
            types: vec![],
            options: serde_json::Value::Null,
            batch_size: 1000,
            base_dir: None,
            limits: Limits {
                record_bytes: limit,
                ..Limits::default()
            },
        };
        let mut s = CsvParser.parse(object, request);
        let mut values = vec![];
        while let Some(b) = s.next().await {
            match b {
                Ok(b) => {
                    let a = b.batch.column(0).as_string::<i32>();
                    values.extend((0..a.len()).map(|r| a.value(r).to_string()));
                }
                Err(e) => {
                    // The error ends the stream.
                    assert!(s.next().await.is_none());
                    return (values, Some(e));
                }
            }
        }
        (values, None)
    }

    /// A quoted field that is never closed would make the rest of the object one record: it
    /// stops the object once longer than the limit, after the rows before it, and the error
    /// names its line and the bound, not what it holds.
    #[tokio::test]
    async fn an_unclosed_quote_stops_the_object_after_the_rows_before_it() {
        let limit = 64 << 10;
        let mut data = b"a,b\n1,2\n3,4\n5,\"never closed SALAINEN-MERKKI ".to_vec();
        while data.len() < 8 << 20 {
            data.extend_from_slice(b"more text, \"\" and lines\n");
        }
        let (values, error) = parse_limited(data, limit).await;
        assert_eq!(values, ["1", "3"]);
        let error = error.expect("a limit error");
        let text = error.to_string();
        assert_eq!(error.limit_setting(), Some("record_kib"), "{text}");
        assert!(
            text.contains("t.csv") && text.contains("line 4") && text.contains("64 KiB"),
            "{text}"
        );
        assert!(!text.contains("SALAINEN"), "{text}");
    }

    /// A record as long as the limit is read; one byte more, and the object stops at it
    /// (here found by the reader of a piece: the object arrives in one chunk).
    #[tokio::test]
    async fn a_record_as_long_as_the_limit_is_read_and_a_longer_one_is_not() {
        let limit = 64 << 10;
        let object = |len: usize| {
            // `2,"yy…y"` of `len` bytes, between two short records.
            let mut record = b"2,\"SALAINEN-MERKKI".to_vec();
            record.resize(len - 1, b'y');
            record.push(b'"');
            let mut data = b"a,b\r\n1,x\r\n".to_vec();
            data.extend(record);
            data.extend_from_slice(b"\r\n3,z\r\n");
            data
        };
        let (values, error) = parse_limited(object(limit), limit).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(values, ["1", "2", "3"]);
        let (values, error) = parse_limited(object(limit - 100), limit).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(values, ["1", "2", "3"]);
        let (values, error) = parse_limited(object(limit + 1), limit).await;
        assert_eq!(values, ["1"]);
        let error = error.expect("a limit error");
        let text = error.to_string();
        assert_eq!(error.limit_setting(), Some("record_kib"), "{text}");
        assert!(text.contains("line 3") && text.contains("64 KiB"), "{text}");
        assert!(!text.contains("SALAINEN"), "{text}");
    }

    /// The cutter refuses a record at the first chunk that makes it longer than the limit:
    /// no more of it is held than the limit and a chunk. The records before it are a piece.
    #[test]
    fn the_cutter_refuses_a_long_record_as_it_arrives() {
        let (limit, chunk) = (64 << 10, 8 << 10);
        let mut data = b"a,b\n1,2\n3,\"".to_vec();
        data.resize(8 << 20, b'x');
        let mut cutter = Cutter::new(&CsvOptions::default(), PIECE);
        let mut refused = None;
        for c in data.chunks(chunk) {
            assert!(cutter.push(Bytes::copy_from_slice(c)).is_none());
            if let Some(line) = cutter.overlong(limit) {
                refused = Some(line);
                break;
            }
        }
        assert_eq!(refused, Some(3));
        assert!(
            cutter.pending_len <= limit + chunk + 8,
            "{}",
            cutter.pending_len
        );
        let before = cutter.ended().expect("the records before it");
        assert_eq!(before.len(), 8);
        assert_eq!(before.lines_before, 0);
        // A record as long as the limit, arriving in small chunks, is not refused.
        let mut data = b"a,b\n1,\"".to_vec();
        data.resize(4 + limit - 1, b'x');
        data.extend_from_slice(b"\"\r\n2,y\r\n");
        let mut cutter = Cutter::new(&CsvOptions::default(), PIECE);
        for c in data.chunks(1000) {
            assert!(cutter.push(Bytes::copy_from_slice(c)).is_none());
            assert_eq!(cutter.overlong(limit), None);
        }
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
