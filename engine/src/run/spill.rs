//! A step's output that one task writes and other plans read when it is complete: an output
//! read by several consumers (or scanned twice by one).
//!
//! The batches are held in memory while they fit ([`SpillWriter`]): at most a quarter of
//! the run's memory limit (512 MiB without one) and what the memory pool grants, so that
//! they count against the limit like any operator's memory. Beyond that, they go to a
//! local Arrow IPC file, the held ones first. Written to a file, the 2 M visits of
//! `hoitoonpaasy` (306 MB) took 2 s of the kernel's time, copying into and clearing the
//! page cache, more than the line's reading and grouping (examples/benchmark/PROFILE.md,
//! twentieth round).

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::FileWriter;
use datafusion::common::DataFusionError;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use tokio::sync::watch;

use super::report::{RunCode, RunFailure, fail};
use crate::run::RunIoError;

/// A complete spilled output: held in memory, or in its file.
#[derive(Debug, Clone)]
pub enum Spilled {
    File,
    Memory(Arc<Held>),
}

/// Whether a spilled output is complete: `None` while it is written, then the writer's
/// outcome.
pub type Ready = Option<Result<Spilled, RunIoError>>;

/// Batches of a step's output held in memory, counted in the run's memory pool until the
/// last reader lets them go.
#[derive(Debug)]
pub struct Held {
    batches: Vec<RecordBatch>,
    _reservation: MemoryReservation,
}

/// Bytes of a step's output held in memory before it goes to a file: a quarter of the
/// memory limit, 512 MiB without one.
pub fn memory_budget(memory_limit: Option<usize>) -> usize {
    memory_limit.map_or(512 << 20, |limit| limit / 4)
}

/// Writes a step's spilled output: into memory while it fits in `budget` and the pool
/// grants it, then to the file at `path`.
pub struct SpillWriter {
    path: PathBuf,
    schema: SchemaRef,
    held: Vec<RecordBatch>,
    reservation: MemoryReservation,
    budget: usize,
    file: Option<FileWriter<std::io::BufWriter<std::fs::File>>>,
}

impl SpillWriter {
    pub fn new(
        path: PathBuf,
        schema: SchemaRef,
        pool: &Arc<dyn MemoryPool>,
        step: &str,
        budget: usize,
    ) -> Self {
        let reservation = MemoryConsumer::new(format!("output of step `{step}`")).register(pool);
        Self {
            path,
            schema,
            held: Vec::new(),
            reservation,
            budget,
            file: None,
        }
    }

    /// Adds one batch: held, or written once the output no longer fits.
    pub fn write(&mut self, batch: RecordBatch) -> Result<(), RunFailure> {
        if self.file.is_none() {
            let bytes = batch.get_array_memory_size();
            if self.reservation.size() + bytes <= self.budget
                && self.reservation.try_grow(bytes).is_ok()
            {
                self.held.push(batch);
                return Ok(());
            }
            self.to_file()?;
        }
        let file = self.file.as_mut().expect("opened above");
        file.write(&batch).map_err(|e| fail(RunCode::Write, e.to_string()))
    }

    /// Opens the file and moves the held batches into it.
    fn to_file(&mut self) -> Result<(), RunFailure> {
        let file = std::fs::File::create(&self.path)
            .map_err(|e| fail(RunCode::Write, format!("{}: {e}", self.path.display())))?;
        let mut w = FileWriter::try_new(
            std::io::BufWriter::with_capacity(1 << 20, file),
            &self.schema,
        )
        .map_err(|e| fail(RunCode::Write, e.to_string()))?;
        for b in std::mem::take(&mut self.held) {
            w.write(&b).map_err(|e| fail(RunCode::Write, e.to_string()))?;
        }
        self.reservation.free();
        self.file = Some(w);
        Ok(())
    }

    /// The complete output.
    pub fn finish(self) -> Result<Spilled, RunFailure> {
        match self.file {
            Some(mut w) => {
                w.finish().map_err(|e| fail(RunCode::Write, e.to_string()))?;
                Ok(Spilled::File)
            }
            None => Ok(Spilled::Memory(Arc::new(Held {
                batches: self.held,
                _reservation: self.reservation,
            }))),
        }
    }
}

/// Where a reader finds a complete output's batches.
enum Source {
    Memory(Arc<Held>),
    File(arrow::ipc::reader::FileReader<std::io::BufReader<std::fs::File>>),
}

/// Partition `part` of `parts` of a spilled output (held, or in the file at `path`): every
/// `parts`-th batch from `part`, once `ready` says the output is complete (an error if its
/// writer failed).
pub fn read_when_ready(
    schema: SchemaRef,
    path: PathBuf,
    mut ready: watch::Receiver<Ready>,
    part: usize,
    parts: usize,
) -> SendableRecordBatchStream {
    let stream = futures::stream::once(async move {
        let outcome = match ready.wait_for(|v| v.is_some()).await {
            Ok(v) => match &*v {
                Some(Err(e)) => Err(e.to_string()),
                Some(Ok(spilled)) => Ok(spilled.clone()),
                None => Err(RunIoError::WriterGone.to_string()),
            },
            Err(_) => Err(RunIoError::WriterGone.to_string()),
        };
        match outcome.map_err(DataFusionError::Execution)? {
            Spilled::Memory(held) => Ok(Source::Memory(held)),
            Spilled::File => {
                let file = std::fs::File::open(&path)?;
                Ok(Source::File(arrow::ipc::reader::FileReader::try_new(
                    std::io::BufReader::with_capacity(1 << 20, file),
                    None,
                )?))
            }
        }
    })
    .flat_map(
        move |reader| -> futures::stream::BoxStream<'static, Result<RecordBatch, DataFusionError>> {
            match reader {
                Ok(Source::Memory(held)) => {
                    let batches = (part..held.batches.len()).step_by(parts.max(1));
                    futures::stream::iter(batches.map(move |i| Ok(held.batches[i].clone()))).boxed()
                }
                Ok(Source::File(mut r)) => {
                    // This partition's batches: every `parts`-th from `part` (the file's
                    // footer indexes them), read only when the partition is polled.
                    let batches = (part..r.num_batches()).step_by(parts.max(1));
                    futures::stream::iter(batches.map(move |i| {
                        r.set_index(i)?;
                        r.next().unwrap_or_else(|| {
                            Err(arrow::error::ArrowError::IpcError(format!(
                                "spill file has no batch {i}"
                            )))
                        })
                    }))
                    .map(|b| b.map_err(DataFusionError::from))
                    .boxed()
                }
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            }
        },
    );
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}
