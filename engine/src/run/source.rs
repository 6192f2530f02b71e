//! Reading a source: its objects listed in the store (`--source NAME=URL` or the line's
//! `location`, with `{param}`s filled), each parsed by its format's plugin inside
//! `valtava_plugin::guarded` on a task of its own (a small object of a format that allows it
//! while the one before it is still being read, so that many small submissions keep the
//! cores busy), and the parsed batches sent, object by object in the listing's order, with
//! each row's object, into the source step's channel. Rows a parser rejects go to the quarantine (rule `parse`); an
//! object that reaches a reader limit is quarantined whole (R010) and the run goes on; an
//! unreadable object fails the run (R003), as does a location that matches nothing (R004).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::DataFusionError;
use futures::StreamExt;
use object_store::ObjectMeta;
use tokio::sync::mpsc;
use tracing::{debug, warn};
use valtava_plugin::{ParseRequest, SourceObject};

use super::Shared;
use super::report::{RunCode, RunFailure, fail};
use crate::store::{Listing, Location};

/// The channel into a source step.
type Tx = mpsc::Sender<Result<RecordBatch, DataFusionError>>;

/// Lists a source's objects and streams their parsed rows into the source step.
pub(super) async fn read_source(
    shared: Arc<Shared>,
    step: String,
    tx: Tx,
) -> Result<(), RunFailure> {
    let spec = crate::line::load::step(&shared.line.spec, &step)
        .source
        .as_ref()
        .ok_or_else(|| fail(RunCode::Engine, "not a source"))?;
    let counters = shared.counters[&step].clone();
    let listing = list_objects(&shared, &step, spec, &tx).await?;
    let reader = SourceReader::new(&shared, &step, spec, counters, &tx)?;
    let name_of = |(i, meta): &(usize, ObjectMeta)| {
        let (location, loc) = &listing.locations[*i];
        if location.contains("://") || location.starts_with('/') {
            format!("{}/{}", loc.store.url.trim_end_matches('/'), meta.location)
        } else {
            meta.location.to_string()
        }
    };
    let start = |object: &(usize, ObjectMeta)| {
        let name = name_of(object);
        let parsing = reader.start(&listing.locations[object.0].1, &object.1, name.clone());
        (name, parsing)
    };
    let mut ahead = None;
    for (k, object) in listing.objects.iter().enumerate() {
        let (name, parsing) = ahead.take().unwrap_or_else(|| start(object));
        ahead = (listing.objects.get(k + 1))
            .filter(|next| reader.parses_ahead(&next.1))
            .map(start);
        // A release's rows get its period; those of objects given instead (`--source`) the
        // run's.
        let meta = &object.1;
        let period = super::release::period_of(meta.location.as_ref())
            .or_else(|| (shared.fill.get(crate::line::release::PERIOD_PARAM)).map(String::as_str));
        if !reader.read_object(parsing, name, meta, period).await? {
            return Ok(()); // the step stopped; its own error is reported
        }
    }
    reader.flush().await?;
    Ok(())
}

/// The largest object parsed ahead while the one before it is still being read: enough for
/// the many small submissions of a CSV source (asiakaskokemus: 24 objects of about 1 MB) or
/// one document a file (CDA), and no second large object's parser state at once under a
/// memory limit.
const AHEAD_BYTES: u64 = 8 << 20;

/// Parsed batches an object parsed ahead may hold before the reader takes them.
const AHEAD_BATCHES: usize = 2;

/// One object's parse, running on a task of its own and handing its results over in order;
/// dropping it stops the parse.
struct Parsing {
    results: mpsc::Receiver<Result<valtava_plugin::ParsedBatch, valtava_plugin::ParseError>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Parsing {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The source's filled-in locations (one, or one per month of the period for
/// `{period.months}`), where they are and their objects; none at all is R004. A month
/// without objects is only logged: a yearly line may run before every month arrived. The
/// objects are recorded as the run's inputs (the release's manifest lists them).
async fn list_objects(
    shared: &Shared,
    step: &str,
    spec: &crate::line::spec::SourceSpec,
    tx: &Tx,
) -> Result<Listing, RunFailure> {
    let listed = source_objects(
        &shared.store,
        &shared.sources,
        (&shared.fill, &shared.parts),
        step,
        spec,
    )
    .await;
    match listed {
        Ok(listing) => {
            if let Some(counted) = shared.source_bytes.get(step) {
                counted.store(
                    input_bytes(spec, &listing),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            if let Ok(mut inputs) = shared.inputs.lock() {
                inputs.insert(
                    step.to_string(),
                    (listing.objects.iter())
                        .map(|(_, meta)| crate::run::inputs::InputObject::of(meta))
                        .collect(),
                );
            }
            Ok(listing)
        }
        Err(e) => {
            if e.code == RunCode::NoInput {
                let _ = tx
                    .send(Err(DataFusionError::Execution(e.message.clone())))
                    .await;
            }
            Err(e)
        }
    }
}

/// The bytes of a source's objects where they bound its rows (plain text:
/// `Parser::rows_within_bytes`), else `u64::MAX`: what a unique rule's filter is sized from.
fn input_bytes(spec: &crate::line::spec::SourceSpec, listing: &Listing) -> u64 {
    let text = spec.release.is_none()
        && crate::parsers::get(&spec.format.value).is_some_and(|p| p.rows_within_bytes());
    match text {
        true => (listing.objects.iter()).fold(0u64, |n, (_, meta)| n.saturating_add(meta.size)),
        false => u64::MAX,
    }
}

/// A source's filled-in locations, where they are and their objects, as a run would read
/// them (`sources` overriding the line's locations; `fill` the parameters' texts and
/// `parts` the list placeholders); none at all is R004.
pub(super) async fn source_objects(
    store: &crate::store::Store,
    sources: &BTreeMap<String, String>,
    (fill, parts): (&BTreeMap<String, String>, &BTreeMap<String, Vec<String>>),
    step: &str,
    spec: &crate::line::spec::SourceSpec,
) -> Result<Listing, RunFailure> {
    let (location, locations) = match (&spec.release, sources.get(step)) {
        (Some(r), None) => {
            let found = super::release::release_locations(store, fill, step, r).await?;
            (format!("releases of `{}`", r.dataset.value), found)
        }
        (_, given) => {
            let template = given
                .cloned()
                .unwrap_or_else(|| spec.location.value.clone());
            let location = crate::store::fill(&template, fill);
            let locations = crate::store::expand(&location, parts);
            (location, locations)
        }
    };
    let listing = crate::store::list_all(store, &locations)
        .await
        .map_err(|e| fail(RunCode::Source, format!("source `{step}`: {e}")))?;
    if listing.objects.is_empty() {
        return Err(fail(
            RunCode::NoInput,
            format!(
                "source `{step}`: no object matches `{}` in store {}",
                crate::store::shown(&location, parts),
                listing
                    .locations
                    .first()
                    .map_or(store.url.as_str(), |(_, l)| l.store.url.as_str())
            ),
        ));
    }
    if locations.len() > 1 {
        for ((text, _), n) in listing.locations.iter().zip(&listing.counts) {
            debug!(source = %step, location = %text, objects = n, "listed");
            if *n == 0 {
                warn!(source = %step, location = %text, "no objects for this part of the period");
            }
        }
    }
    Ok(listing)
}

/// What reading one source's objects needs: parser, row shapes, counters and channel.
struct SourceReader<'a> {
    shared: &'a Shared,
    step: &'a str,
    counters: Arc<super::Counters>,
    parser: Arc<dyn valtava_plugin::Parser>,
    /// The columns the parser reads: the declared ones, less the period column of a
    /// release source, which the reader adds at `period_at`.
    columns: Vec<String>,
    period_at: Option<usize>,
    types: Vec<arrow::datatypes::DataType>,
    options: serde_json::Value,
    raw_schema: SchemaRef,
    typed_schema: SchemaRef,
    tx: &'a Tx,
    /// Small batches not yet sent: many small objects (one CDA document per file) would
    /// otherwise each cross every step as a batch of a row or two, and the per-batch cost
    /// of the plan would dominate. Sent together once they hold `batch_size` rows or
    /// [`PENDING_BYTES`] of memory (a parser's batch of one row may hold buffers sized for
    /// a whole batch: 8 192 of them were 400 MiB).
    pending: std::sync::Mutex<Pending>,
}

/// Small batches waiting to be sent together, their rows and their memory.
#[derive(Default)]
struct Pending {
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
}

/// The most memory small batches hold before they are sent together.
const PENDING_BYTES: usize = 8 << 20;

impl<'a> SourceReader<'a> {
    /// The reader of source step `step`; an unknown format is an error (R003).
    fn new(
        shared: &'a Shared,
        step: &'a str,
        spec: &crate::line::spec::SourceSpec,
        counters: Arc<super::Counters>,
        tx: &'a Tx,
    ) -> Result<Self, RunFailure> {
        // A release source reads the releases' Parquet objects.
        let format = match spec.release {
            Some(_) => "parquet",
            None => spec.format.value.as_str(),
        };
        let parser = crate::parsers::get(format)
            .ok_or_else(|| fail(RunCode::Source, format!("unknown format `{format}`")))?;
        let period_at = (spec.release.as_ref())
            .and_then(|_| spec.columns.get_index_of(crate::plan::PERIOD_COLUMN));
        let read = |i: &usize| Some(*i) != period_at;
        let columns: Vec<String> = (spec.columns.keys().enumerate())
            .filter(|(i, _)| read(i))
            .map(|(_, k)| k.value.clone())
            .collect();
        let types: Vec<arrow::datatypes::DataType> = (spec.columns.values().enumerate())
            .filter(|(i, _)| read(i))
            .map(|(_, c)| crate::plan::column_type(c, &shared.line.spec))
            .collect();
        let raw_schema = crate::plan::raw_source_schema(spec);
        let typed_schema = shared.check_plans[step].output.clone();
        let options = spec
            .options
            .as_ref()
            .map(|o| o.value.clone())
            .unwrap_or(serde_json::Value::Null);
        Ok(Self {
            shared,
            step,
            counters,
            parser,
            columns,
            period_at,
            types,
            options,
            raw_schema,
            typed_schema,
            tx,
            pending: std::sync::Mutex::new(Pending::default()),
        })
    }

    /// Sends `batch` on: a large one at once (after what is pending, never copied), a small
    /// one together with earlier small ones once they make a whole batch; false if the
    /// step stopped taking them.
    async fn send(&self, batch: RecordBatch) -> Result<bool, RunFailure> {
        if batch.num_rows() >= self.shared.batch_size / 2 {
            return Ok(self.flush().await? && self.tx.send(Ok(batch)).await.is_ok());
        }
        let ready = {
            let mut p = self
                .pending
                .lock()
                .map_err(|_| fail(RunCode::Engine, "poisoned"))?;
            p.rows += batch.num_rows();
            p.bytes += batch.get_array_memory_size();
            p.batches.push(batch);
            if p.rows < self.shared.batch_size && p.bytes < PENDING_BYTES {
                return Ok(true);
            }
            std::mem::take(&mut *p)
        };
        self.send_all(ready.batches).await
    }

    /// Sends what is pending (before a large batch, at the end of the source); false if the
    /// step stopped.
    async fn flush(&self) -> Result<bool, RunFailure> {
        let ready = {
            let mut p = self
                .pending
                .lock()
                .map_err(|_| fail(RunCode::Engine, "poisoned"))?;
            std::mem::take(&mut *p)
        };
        self.send_all(ready.batches).await
    }

    async fn send_all(&self, batches: Vec<RecordBatch>) -> Result<bool, RunFailure> {
        let batch = match batches.len() {
            0 => return Ok(true),
            1 => batches.into_iter().next().expect("one batch"),
            _ => arrow::compute::concat_batches(&self.raw_schema, &batches)
                .map_err(|e| fail(RunCode::Source, format!("source `{}`: {e}", self.step)))?,
        };
        Ok(self.tx.send(Ok(batch)).await.is_ok())
    }

    /// Starts parsing object `meta` (named `name`) on a task of its own.
    fn start(&self, loc: &Location, meta: &ObjectMeta, name: String) -> Parsing {
        let shared = self.shared;
        debug!(object = %name, bytes = meta.size, "reading");
        let object = SourceObject {
            store: loc.store.inner.clone(),
            path: meta.location.clone(),
            size: meta.size,
            name: name.clone(),
        };
        let request = ParseRequest {
            columns: self.columns.clone(),
            types: self.types.clone(),
            options: self.options.clone(),
            batch_size: shared.batch_size,
            base_dir: Some(shared.line.dir.clone()),
            limits: shared.line.spec.limits.parser_limits(),
        };
        let mut stream = valtava_plugin::guarded(self.parser.parse(object, request), name.clone());
        let (tx, results) = mpsc::channel(AHEAD_BATCHES);
        let task = tokio::spawn(async move {
            while let Some(parsed) = stream.next().await {
                if tx.send(parsed).await.is_err() {
                    return; // the reader stopped
                }
            }
        });
        Parsing { results, task }
    }

    /// Whether `next` is parsed while the object before it is read: many small objects
    /// otherwise leave cores idle at each one's start and end. Only a small one, of a
    /// format whose parse holds about its object ([`valtava_plugin::Parser::parses_ahead`]).
    fn parses_ahead(&self, next: &ObjectMeta) -> bool {
        next.size <= AHEAD_BYTES && self.parser.parses_ahead()
    }

    /// Takes one object's parsed rows and sends them on; false if the step stopped taking
    /// them. The rows of a release get its `period`.
    async fn read_object(
        &self,
        mut parsing: Parsing,
        name: String,
        meta: &ObjectMeta,
        period: Option<&str>,
    ) -> Result<bool, RunFailure> {
        let (shared, step) = (self.shared, self.step);
        self.counters.objects.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_read
            .fetch_add(meta.size, Ordering::Relaxed);
        while let Some(parsed) = parsing.results.recv().await {
            let parsed = match parsed {
                Ok(p) => p,
                Err(e @ valtava_plugin::ParseError::Limit { .. }) => {
                    // The object is quarantined whole; the rows it gave before the bound
                    // stay counted as read.
                    warn!(object = %name, "{}", crate::redact::scrubbed(e.to_string()));
                    limit_reached(shared, step, &self.typed_schema, &name, meta.size, &e)?;
                    return Ok(true);
                }
                Err(e) => {
                    let f = fail(RunCode::Source, format!("source `{step}`: {e}"));
                    let _ = self
                        .tx
                        .send(Err(DataFusionError::Execution(f.message.clone())))
                        .await;
                    return Err(f);
                }
            };
            self.count(&name, meta.size, &parsed)?;
            let n = parsed.batch.num_rows();
            if n == 0 {
                continue;
            }
            let mut cols: Vec<ArrayRef> = parsed.batch.columns().to_vec();
            if let Some(i) = self.period_at {
                cols.insert(i, Arc::new(StringArray::from(vec![period; n])));
            }
            cols.push(Arc::new(StringArray::from(vec![name.as_str(); n])));
            let batch =
                RecordBatch::try_new(self.raw_schema.clone(), coerce(cols, &self.raw_schema)?)
                    .map_err(|e| fail(RunCode::Source, format!("{name}: {e}")))?;
            if !self.send(batch).await? {
                return Ok(false);
            }
        }
        // The results end when the parse's task does: normally, or (never expected: the
        // parser runs guarded) by failing, when rows could be missing.
        if (&mut parsing.task).await.is_err() {
            let f = fail(
                RunCode::Engine,
                format!("source `{step}`: {name}: the parse stopped unexpectedly"),
            );
            let _ = (self.tx)
                .send(Err(DataFusionError::Execution(f.message.clone())))
                .await;
            return Err(f);
        }
        Ok(true)
    }

    /// Counts a parsed batch's rows and rejects, and quarantines the rejects (rule `parse`).
    fn count(
        &self,
        name: &str,
        size: u64,
        parsed: &valtava_plugin::ParsedBatch,
    ) -> Result<(), RunFailure> {
        let counters = &self.counters;
        let n = parsed.batch.num_rows();
        counters
            .rows_in
            .fetch_add((n + parsed.rejects.len()) as u64, Ordering::Relaxed);
        if parsed.rejects.iter().any(|r| r.row == 0) {
            counters.bytes_failed.fetch_add(size, Ordering::Relaxed);
        }
        if !parsed.rejects.is_empty() {
            counters
                .quarantined
                .fetch_add(parsed.rejects.len() as u64, Ordering::Relaxed);
            if let Ok(mut q) = counters.quality.lock() {
                *q.violations.entry("parse".into()).or_default() += parsed.rejects.len() as u64;
            }
            self.shared.quarantine.write_unparsed(
                self.step,
                &self.typed_schema,
                name,
                &parsed.rejects,
            )?;
        }
        Ok(())
    }
}

/// Quarantines an object that reached a reader limit: one row-0 reject (the whole object)
/// with the code and the bound, its bytes counted as failed for `max_reject_share`.
fn limit_reached(
    shared: &Shared,
    step: &str,
    schema: &SchemaRef,
    name: &str,
    size: u64,
    error: &valtava_plugin::ParseError,
) -> Result<(), RunFailure> {
    let counters = &shared.counters[step];
    let reject = valtava_plugin::RowReject {
        row: 0,
        reason: format!("[{}] {error}", RunCode::Limit),
    };
    counters.rows_in.fetch_add(1, Ordering::Relaxed);
    counters.quarantined.fetch_add(1, Ordering::Relaxed);
    counters.bytes_failed.fetch_add(size, Ordering::Relaxed);
    if let Ok(mut q) = counters.quality.lock() {
        *q.violations.entry("limit".into()).or_default() += 1;
    }
    shared
        .quarantine
        .write_unparsed(step, schema, name, &[reject])
}

/// Casts a parser's native columns to text where the raw schema expects text.
fn coerce(cols: Vec<ArrayRef>, schema: &Schema) -> Result<Vec<ArrayRef>, RunFailure> {
    cols.into_iter()
        .zip(schema.fields())
        .map(|(a, f)| {
            if a.data_type() == f.data_type() {
                Ok(a)
            } else {
                arrow::compute::cast(&a, f.data_type())
                    .map_err(|e| fail(RunCode::Source, format!("column `{}`: {e}", f.name())))
            }
        })
        .collect()
}
