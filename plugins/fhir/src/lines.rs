//! Bulk NDJSON read as it streams in: the text is cut into windows of whole lines, the
//! windows are evaluated on all cores, and their batches handed on in the lines' order.
//!
//! A bulk export is one file per resource type: gigabytes for a national year of
//! Immunizations. Read whole it was held twice over (the text and the workers' parts) and
//! refused above `limits.object_bytes`; here an object of any size is held a few windows
//! at a time. A reader thread cuts windows, workers take them as they are free, and the
//! emitter hands their batches on in order. Workers are at most [`Turns::window`] windows
//! ahead of the one handed on next, and the reader waits when the workers have enough, so
//! memory stays a few windows' worth whatever the object's size or the consumer's pace.
//!
//! A line longer than `limits.record_bytes` stops the object after the lines before it
//! are handed on (named by its number only); the reader notices one before it has read
//! more than a record and a chunk of it.

use std::borrow::Cow;
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Condvar, Mutex};

use bytes::Bytes;
use valtava_plugin::{ParseRequest, ParsedBatch, Stop, TextBatchBuilder};

use crate::view::View;

/// Bytes of whole lines a window gathers before it is handed to a worker: big enough that
/// handing over costs nothing next to evaluating, small enough that a few per worker are
/// little memory.
pub const WINDOW_BYTES: usize = 4 << 20;

/// Window buffers allocated so far (for tests).
#[cfg(test)]
pub static NEW_WINDOW_BUFFERS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// What the reader gets from the object: the next chunk, the end, or a failure (reported
/// on the object's stream; the reader then reads the lines that arrived whole, not the
/// partial last one).
pub enum Next {
    Chunk(Bytes),
    End,
    Failed,
}

/// A piece of the object to evaluate: whole lines, the number of the first, and the stop
/// that follows the window (a line too long to read) if one does.
struct Window {
    index: usize,
    first: u64,
    text: Vec<u8>,
    cut: Option<Stop>,
}

/// What evaluating a window gave: its batches, then the stop that ends the object, if any.
type Done = (Vec<ParsedBatch>, Option<Stop>);

/// Evaluates the view over NDJSON: `head`, then what `next` gives, cut into windows of
/// `window_bytes` and evaluated by as many workers as there are cores; the batches go to
/// `emit` in the lines' order. Returns when the object is read, the reader stopped
/// listening (`emit` gave `false`), or a stop ended the object (its error).
pub fn read(
    head: Vec<u8>,
    next: &mut (dyn FnMut() -> Next + Send),
    view: &View,
    request: &ParseRequest,
    window_bytes: usize,
    emit: &mut dyn FnMut(ParsedBatch) -> bool,
) -> Result<(), Stop> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let turns = Turns {
        progress: Mutex::new(Progress::default()),
        moved: Condvar::new(),
        window: 2 * workers,
        spares: Mutex::new(Vec::new()),
    };
    let (windows_tx, windows_rx) = std::sync::mpsc::sync_channel::<Window>(workers);
    // The workers share the receiving end; when the last one returns it is dropped, and a
    // reader waiting to send stops.
    let windows_rx = std::sync::Arc::new(Mutex::new(windows_rx));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, Done)>();
    std::thread::scope(|s| {
        let turns = &turns;
        let shape = Shape {
            bytes: window_bytes,
            lines: request.batch_size.max(1),
            record: request.limits.record_bytes,
        };
        s.spawn(move || cut(head, next, shape, turns, windows_tx));
        for _ in 0..workers {
            let (rx, tx) = (windows_rx.clone(), done_tx.clone());
            s.spawn(move || work(turns, &rx, view, request, tx));
        }
        drop((windows_rx, done_tx));
        let (emitted, mut result) = emit_in_order(turns, &done_rx, emit);
        let (stopped, sent) = turns.stop();
        if result.is_ok() && !stopped && emitted < sent {
            // Every window cut is evaluated; a missing one would be rows lost unsaid.
            result = Err(format!(
                "the FHIR view evaluation ended after {emitted} of {sent} windows"
            )
            .into());
        }
        result
    })
}

/// The reader: cuts the object into windows of whole lines (the last may lack its line
/// end) and sends them to the workers, until the object ends, a line is longer than a
/// record may be (a last window carries that stop) or the workers are gone.
fn cut(
    head: Vec<u8>,
    next: &mut (dyn FnMut() -> Next + Send),
    shape: Shape,
    turns: &Turns,
    tx: SyncSender<Window>,
) {
    let mut buf = head;
    // Where the bytes not yet sent start in `buf`.
    let mut start = 0;
    let mut out = Sent {
        index: 0,
        first: 1,
        turns,
        tx,
    };
    let mut ended = false;
    let mut scan = Scan::default();
    scan.advance(&buf);
    loop {
        while !ended && !scan.ready(buf.len(), start, shape) {
            if turns.stopping() {
                return;
            }
            // What was sent goes before more is read: `buf` holds a window and a chunk.
            buf.drain(..start);
            scan.shift(start);
            start = 0;
            match next() {
                Next::Chunk(chunk) => {
                    buf.extend_from_slice(&chunk);
                    scan.advance(&buf);
                }
                Next::End => ended = true,
                Next::Failed => {
                    // The lines that arrived whole are read; the partial last one is not.
                    buf.truncate(scan.whole);
                    ended = true;
                }
            }
        }
        let rest = &buf[start..];
        if rest.is_empty() {
            return;
        }
        let Some(len) = window_end(rest, shape, ended) else {
            // No line ends in more than a record: that line stops the object.
            let stop = too_long(out.first, shape.record);
            out.send(Vec::new(), Some(stop), 0);
            return;
        };
        let lines = memchr::memchr_iter(b'\n', &rest[..len]).count();
        if !out.send(turns.filled(&rest[..len]), None, lines) || turns.stopping() {
            return;
        }
        scan.lines -= lines;
        start += len;
    }
}

/// What the reader knows of `buf`, kept up as chunks arrive: scanning all it holds at each
/// chunk made a long line arriving in small chunks cost the square of its length.
#[derive(Debug, Default)]
struct Scan {
    /// Bytes of `buf` scanned.
    upto: usize,
    /// Where the bytes that end in a line end stop (0 when none does).
    whole: usize,
    /// Line ends among the scanned bytes not yet sent.
    lines: usize,
}

impl Scan {
    /// Scans what was added to `buf`.
    fn advance(&mut self, buf: &[u8]) {
        for i in memchr::memchr_iter(b'\n', &buf[self.upto..]) {
            self.lines += 1;
            self.whole = self.upto + i + 1;
        }
        self.upto = buf.len();
    }

    /// The first `by` bytes of `buf` were dropped.
    fn shift(&mut self, by: usize) {
        self.upto -= by;
        self.whole = self.whole.saturating_sub(by);
    }

    /// Whether the bytes from `start` to `len` hold a window: a window's lines or bytes
    /// ending in a line end, or a last line longer than a record may be.
    fn ready(&self, len: usize, start: usize, shape: Shape) -> bool {
        let whole = self.whole.max(start);
        if len - whole > shape.record {
            return true;
        }
        whole > start && (len - start >= shape.bytes || self.lines >= shape.lines)
    }
}

/// How windows are cut: at most `lines` lines (a batch's rows: a worker's batch builder,
/// sized by its last batch, then fits the next window without growing) and `bytes` (unless
/// one line is longer); a line longer than `record` stops the object.
#[derive(Debug, Clone, Copy)]
struct Shape {
    bytes: usize,
    lines: usize,
    record: usize,
}

/// Where the next window of `rest` ends: after its `lines`-th line or the last line that
/// ends within `bytes`, or after the first line if that one is longer; at the end of the
/// object once it has ended. `None` when no line ends in `rest` and more may come.
fn window_end(rest: &[u8], shape: Shape, ended: bool) -> Option<usize> {
    let limit = shape.bytes.min(rest.len());
    if let Some(i) = memchr::memchr_iter(b'\n', &rest[..limit]).nth(shape.lines - 1) {
        return Some(i + 1);
    }
    if ended && rest.len() <= shape.bytes {
        return Some(rest.len());
    }
    memchr::memrchr(b'\n', &rest[..limit])
        .or_else(|| memchr::memchr(b'\n', &rest[limit..]).map(|i| limit + i))
        .map(|i| i + 1)
        .or(ended.then_some(rest.len()))
}

/// The windows the reader has sent: the next one's index and first line number.
struct Sent<'t> {
    index: usize,
    first: u64,
    turns: &'t Turns,
    tx: SyncSender<Window>,
}

impl Sent<'_> {
    /// Sends a window of whole lines (and the stop after it); `false` when the workers are
    /// gone.
    fn send(&mut self, text: Vec<u8>, cut: Option<Stop>, lines: usize) -> bool {
        self.turns.sent(self.index + 1);
        let window = Window {
            index: self.index,
            first: self.first,
            text,
            cut,
        };
        self.index += 1;
        self.first += lines as u64;
        self.tx.send(window).is_ok()
    }
}

/// The stop of a line longer than a record may be, named by its number only.
fn too_long(line: u64, record_bytes: usize) -> Stop {
    Stop::Limit {
        setting: "record_kib",
        message: format!(
            "line {line} is longer than {}",
            valtava_plugin::size_text(record_bytes)
        ),
    }
}

/// A worker: evaluates the windows it takes, each once it is within the turns' window,
/// and sends the results to the emitter, until the reader is done, the reading stops or
/// the emitter is gone.
fn work(
    turns: &Turns,
    rx: &Mutex<Receiver<Window>>,
    view: &View,
    request: &ParseRequest,
    tx: Sender<(usize, Done)>,
) {
    // One builder for all the worker's windows: each batch starts with room for one like
    // the last (see `TextBatchBuilder::finish`).
    let mut builder = TextBatchBuilder::new(request.columns.clone());
    loop {
        let Some(window) = rx.lock().ok().and_then(|r| r.recv().ok()) else {
            return;
        };
        if !turns.wait_for(window.index) {
            return;
        }
        let Window {
            index,
            first,
            text,
            cut,
        } = window;
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            evaluate(&text, first, view, request, &mut builder)
        }))
        .unwrap_or_else(|_| (Vec::new(), Some("the FHIR view evaluation panicked".into())));
        turns.give_back(text);
        let done = match done {
            (batches, None) => (batches, cut),
            stopped => stopped,
        };
        if tx.send((index, done)).is_err() {
            return;
        }
    }
}

/// Evaluates NDJSON held whole: on this thread when it is at most a window (threads for
/// each small object cost more than the work), else in windows on all cores.
pub fn read_held(
    bytes: &[u8],
    view: &View,
    request: &ParseRequest,
    window_bytes: usize,
    emit: &mut dyn FnMut(ParsedBatch) -> bool,
) -> Result<(), Stop> {
    if bytes.len() > window_bytes {
        let mut end = || Next::End;
        return read(bytes.to_vec(), &mut end, view, request, window_bytes, emit);
    }
    let mut builder = TextBatchBuilder::new(request.columns.clone());
    let (batches, stop) = evaluate(bytes, 1, view, request, &mut builder);
    if batches.into_iter().all(emit) {
        return stop.map_or(Ok(()), Err);
    }
    Ok(())
}

/// The batches of some lines (`first` the number of the first), up to a line longer than
/// a record may be; then the stop that ends the object (that line's, or a row too long: a
/// row's stop drops the batches, as it names a row among them).
fn evaluate(
    bytes: &[u8],
    first: u64,
    view: &View,
    request: &ParseRequest,
    builder: &mut TextBatchBuilder,
) -> Done {
    let text = match simdutf8::basic::from_utf8(bytes) {
        Ok(t) => Cow::Borrowed(t),
        Err(_) => String::from_utf8_lossy(bytes),
    };
    let depth = crate::resource_depth(&request.limits);
    let record_bytes = request.limits.record_bytes;
    let mut cut = None;
    let lines = lines_of(&text)
        .enumerate()
        .map(|(i, line)| (first + i as u64, line))
        .take_while(|&(row, line)| {
            if line.len() > record_bytes {
                cut = Some(too_long(row, record_bytes));
            }
            cut.is_none()
        })
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(row, line)| (row, crate::line_resource(line, depth, view.keys.as_ref())));
    match crate::rows_of(lines, view, request, "line", builder) {
        Ok(batches) => (batches, cut),
        Err(stop) => {
            // The rows of the window so far go with it.
            *builder = TextBatchBuilder::new(request.columns.clone());
            (Vec::new(), Some(stop))
        }
    }
}

/// The lines of `text` as `str::lines` gives them (a `\r` before a `\n` dropped), each end
/// found by a vectorised search.
fn lines_of(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let Some(end) = memchr::memchr(b'\n', rest.as_bytes()) else {
            return Some(std::mem::take(&mut rest));
        };
        let line = &rest[..end];
        rest = &rest[end + 1..];
        Some(line.strip_suffix('\r').unwrap_or(line))
    })
}

/// The emitting side: hands the windows' batches on in order as they arrive, until one
/// ends the object or the reader stops listening. Returns the windows emitted, and the
/// stop that ended the object.
fn emit_in_order(
    turns: &Turns,
    rx: &Receiver<(usize, Done)>,
    emit: &mut dyn FnMut(ParsedBatch) -> bool,
) -> (usize, Result<(), Stop>) {
    let mut ready = std::collections::BTreeMap::new();
    let mut next = 0;
    for (i, done) in rx.iter() {
        ready.insert(i, done);
        while let Some((batches, stop)) = ready.remove(&next) {
            next += 1;
            let listening = batches.into_iter().all(&mut *emit);
            turns.emitted(next, !listening || stop.is_some());
            if let Some(stop) = stop {
                return (next, Err(stop));
            }
            if !listening {
                return (next, Ok(()));
            }
        }
    }
    (next, Ok(()))
}

/// What the reader, the workers and the emitter share: how far they are, and a signal
/// when that changes.
struct Turns {
    progress: Mutex<Progress>,
    moved: Condvar,
    /// How many windows the workers may be ahead of the one emitted next.
    window: usize,
    /// Windows' buffers evaluated and given back, for the reader to fill again: a fresh
    /// buffer for every window is memory the allocator hands over new (each page cleared
    /// on first touch) and, freed on another thread, was not handed back: the process grew
    /// by the size of the object read (PROFILE.md, nineteenth round).
    spares: Mutex<Vec<Vec<u8>>>,
}

/// How far the reading is: windows sent by the reader and emitted, and whether to stop
/// (the reader stopped listening, or a window ended the object).
#[derive(Default)]
struct Progress {
    sent: usize,
    emitted: usize,
    stop: bool,
}

impl Turns {
    /// A buffer holding `bytes`: a spare one if there is one.
    fn filled(&self, bytes: &[u8]) -> Vec<u8> {
        let mut buf = (self.spares.lock().ok())
            .and_then(|mut s| s.pop())
            .unwrap_or_else(|| {
                #[cfg(test)]
                NEW_WINDOW_BUFFERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Vec::new()
            });
        buf.clear();
        buf.extend_from_slice(bytes);
        buf
    }

    /// Gives a window's buffer back, up to as many as can be on the way at once.
    fn give_back(&self, buf: Vec<u8>) {
        if buf.capacity() == 0 {
            return;
        }
        if let Ok(mut spares) = self.spares.lock()
            && spares.len() < 2 * self.window
        {
            spares.push(buf);
        }
    }

    /// Waits until window `index` is within the window of the one emitted next; `false`
    /// when the reading stops.
    fn wait_for(&self, index: usize) -> bool {
        let Ok(mut p) = self.progress.lock() else {
            return false;
        };
        while !p.stop && index >= p.emitted + self.window {
            p = match self.moved.wait(p) {
                Ok(p) => p,
                Err(_) => return false,
            };
        }
        !p.stop
    }

    /// Whether the reading stops (a window ended the object, or the reader stopped
    /// listening): the reader reads no further.
    fn stopping(&self) -> bool {
        self.progress.lock().map(|p| p.stop).unwrap_or(true)
    }

    fn sent(&self, windows: usize) {
        if let Ok(mut p) = self.progress.lock() {
            p.sent = windows;
        }
    }

    fn emitted(&self, windows: usize, stop: bool) {
        if let Ok(mut p) = self.progress.lock() {
            p.emitted = windows;
            p.stop |= stop;
        }
        self.moved.notify_all();
    }

    /// Stops the workers (those waiting for their turn return); whether the reading had
    /// stopped already, and how many windows the reader sent.
    fn stop(&self) -> (bool, usize) {
        let r = self
            .progress
            .lock()
            .map(|mut p| (std::mem::replace(&mut p.stop, true), p.sent))
            .unwrap_or((true, 0));
        self.moved.notify_all();
        r
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_are_split_as_str_lines_splits_them() {
        for text in [
            "",
            "a",
            "a\n",
            "a\nb",
            "a\r\nb\r\n",
            "\n\na\n\n",
            "a\rb\nc\r",
            "\r\n\r",
            "ä\n{\"x\": \"y\"}\r\n",
        ] {
            let ours: Vec<&str> = super::lines_of(text).collect();
            assert_eq!(ours, text.lines().collect::<Vec<_>>(), "{text:?}");
        }
    }
}
