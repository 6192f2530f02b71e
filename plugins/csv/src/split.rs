//! Cutting an object into pieces that start at records, as its bytes arrive, without
//! parsing them: the pieces are parsed in parallel by the `read` module.

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use valtava_plugin::{ParseError, SourceObject};

use crate::{CsvOptions, Encoding, Piece, too_long};

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
pub(crate) const BOM: &[u8; 3] = b"\xef\xbb\xbf";

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
pub(crate) struct Cutter {
    splitter: Splitter,
    size: usize,
    /// Chunks not yet in a piece, in order; the first may be the rest of a chunk cut before.
    pending: Vec<Bytes>,
    /// Bytes in `pending`.
    pub(crate) pending_len: usize,
    /// The last record end in `pending`: the chunk it is in, the offset just past it there,
    /// and the bytes of `pending` before that offset.
    cut: Option<(usize, usize, usize)>,
    lines_before: u64,
}

impl Cutter {
    pub(crate) fn new(options: &CsvOptions, size: usize) -> Self {
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
    pub(crate) fn push(&mut self, chunk: Bytes) -> Option<Piece> {
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
    pub(crate) fn overlong(&self, limit: usize) -> Option<u64> {
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
    pub(crate) fn ended(&mut self) -> Option<Piece> {
        let (i, c, _) = self.cut?;
        Some(self.piece(i, c))
    }

    /// The rest of the object, as its last piece.
    pub(crate) fn finish(&mut self) -> Piece {
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
pub(crate) fn pieces(
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
