//! Parsing the pieces of an object: on blocking threads, several at a time, with
//! csv_core's reader, their rows handed over in batches in the object's order.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use valtava_plugin::{ParseError, ParsedBatch, TextBatchBuilder};

use crate::split::BOM;
use crate::{Ctx, Encoding, Layout, Parsed, Piece, too_long};

/// Parses pieces on blocking threads, several at a time, and hands their batches over in
/// the object's order. Until the header row has been read, one piece at a time. An error that
/// stops the object ends the stream after the batches before it.
pub(crate) struct Driver {
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
    /// A driver over the pieces of one object, none of them parsed yet; `layout` is known
    /// when the object has no header row.
    pub(crate) fn new(
        ctx: Arc<Ctx>,
        pieces: BoxStream<'static, Result<Piece, ParseError>>,
        layout: Option<Layout>,
    ) -> Self {
        Self {
            ctx,
            pieces,
            pieces_done: false,
            running: Default::default(),
            layout,
            ready: Default::default(),
            parallel: std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)),
            stopped: None,
        }
    }

    /// The next batch of the object, or its error, once the batches before it are handed
    /// over.
    pub(crate) async fn next(mut self) -> Result<Option<(ParsedBatch, Self)>, ParseError> {
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
pub(crate) fn parse_piece(
    ctx: &Ctx,
    piece: &Piece,
    layout: Option<Layout>,
) -> Result<Parsed, ParseError> {
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

/// The items as a list of `quoted` names, separated by commas.
fn quote_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
