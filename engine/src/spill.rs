//! Local Arrow IPC stream files that one task writes and other plans read while it is
//! written: a step's output read by several consumers (or scanned twice by one). Each
//! reader follows the file at its own pace, so a consumer that must see every row before it
//! emits any (a grouping, the build side of a join) works alongside the producer instead of
//! waiting for it, and a slow reader never holds the writer back.

use std::io::Write;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamDecoder;
use datafusion::common::DataFusionError;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use tokio::sync::watch;

/// How much of a spill file is written (whole batches only), and once it is complete, the
/// writer's outcome.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub written: u64,
    pub done: Option<Result<(), String>>,
}

/// The most a reader reads at once (a reader that is far behind catches up in such steps).
const CHUNK: u64 = 8 << 20;

/// Writes batches to a spill file and tells its readers how far it got.
pub struct Writer {
    w: arrow::ipc::writer::StreamWriter<std::io::BufWriter<Counted>>,
    progress: watch::Sender<Progress>,
}

/// A file that counts the bytes written to it.
struct Counted {
    file: std::fs::File,
    bytes: u64,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Writer {
    pub fn create(
        path: &Path,
        schema: &arrow::datatypes::Schema,
        progress: watch::Sender<Progress>,
    ) -> Result<Self, String> {
        let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let w = arrow::ipc::writer::StreamWriter::try_new(
            std::io::BufWriter::with_capacity(1 << 20, Counted { file, bytes: 0 }),
            schema,
        )
        .map_err(|e| e.to_string())?;
        Ok(Writer { w, progress })
    }

    /// Writes a batch and makes it visible to the readers.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        self.w.write(batch).map_err(|e| e.to_string())?;
        self.publish()
    }

    fn publish(&mut self) -> Result<(), String> {
        self.w.flush().map_err(|e| e.to_string())?;
        let written = self.w.get_ref().get_ref().bytes;
        self.progress.send_modify(|p| p.written = written);
        Ok(())
    }

    /// Ends the file; the readers read to its end.
    pub fn finish(mut self) -> Result<(), String> {
        self.w.finish().map_err(|e| e.to_string())?;
        self.publish()?;
        self.progress.send_modify(|p| p.done = Some(Ok(())));
        Ok(())
    }
}

/// Tells the readers of a file that its writer failed (they end with this error).
pub fn failed(progress: &watch::Sender<Progress>, why: String) {
    progress.send_modify(|p| p.done = Some(Err(why)));
}

/// What a reader has read so far.
struct Reading {
    path: PathBuf,
    file: Option<std::fs::File>,
    at: u64,
    decoder: StreamDecoder,
    pending: Buffer,
    progress: watch::Receiver<Progress>,
}

impl Reading {
    /// The next batch: decoded from what was read, or read when written, or the end.
    async fn next(&mut self) -> Result<Option<RecordBatch>, DataFusionError> {
        loop {
            if !self.pending.is_empty() {
                if let Some(batch) = self.decoder.decode(&mut self.pending)? {
                    return Ok(Some(batch));
                }
                continue;
            }
            let at = self.at;
            let progress = self
                .progress
                .wait_for(|p| p.written > at || p.done.is_some())
                .await
                .map(|p| p.clone())
                .map_err(|_| {
                    DataFusionError::Execution("the writer ended before finishing".into())
                })?;
            if let Some(Err(why)) = &progress.done {
                return Err(DataFusionError::Execution(why.clone()));
            }
            if progress.written > self.at {
                let n = (progress.written - self.at).min(CHUNK);
                let file = match &mut self.file {
                    Some(f) => f,
                    None => self.file.insert(std::fs::File::open(&self.path)?),
                };
                let mut bytes = vec![0u8; n as usize];
                std::os::unix::fs::FileExt::read_exact_at(file, &mut bytes, self.at)?;
                self.at += n;
                self.pending = Buffer::from_vec(bytes);
                continue;
            }
            // Complete and all read.
            self.decoder.finish()?;
            return Ok(None);
        }
    }
}

/// The batches of the file at `path` as they are written (`progress`); an error if its
/// writer fails.
pub fn read_as_written(
    schema: SchemaRef,
    path: PathBuf,
    progress: watch::Receiver<Progress>,
) -> SendableRecordBatchStream {
    let reading = Reading {
        path,
        file: None,
        at: 0,
        decoder: StreamDecoder::new(),
        pending: Buffer::from_vec(Vec::<u8>::new()),
        progress,
    };
    let stream = futures::stream::try_unfold(reading, |mut r| async move {
        Ok(r.next().await?.map(|batch| (batch, r)))
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use futures::StreamExt;
    use std::sync::Arc;

    fn batch(schema: &SchemaRef, from: i64, rows: i64) -> RecordBatch {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(from..from + rows)),
                Arc::new(StringArray::from_iter_values(
                    (from..from + rows)
                        .map(|i| format!("rivi {i} {}", "x".repeat(i as usize % 50))),
                )),
            ],
        )
        .unwrap()
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]))
    }

    /// Readers that start before the writer (and one after it is done) read every batch
    /// in order, while it is written, including batches larger than a read.
    #[tokio::test]
    async fn readers_follow_the_writer_and_read_every_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.arrow");
        let schema = schema();
        let (tx, rx) = watch::channel(Progress::default());
        let mut early: Vec<_> = (0..2)
            .map(|_| read_as_written(schema.clone(), path.clone(), rx.clone()))
            .collect();
        let mut w = Writer::create(&path, &schema, tx).unwrap();
        // The first batch is larger than a read (8 MiB).
        let sizes = [300_000i64, 7, 1, 5_000, 2];
        let mut from = 0;
        let mut sent = Vec::new();
        for rows in sizes {
            w.write(&batch(&schema, from, rows)).unwrap();
            // A reader gets a batch as soon as it is written.
            let got = early[0].next().await.unwrap().unwrap();
            assert_eq!(got.num_rows() as i64, rows);
            sent.push(got);
            from += rows;
        }
        w.finish().unwrap();
        assert!(early[0].next().await.is_none());
        let late = read_as_written(schema.clone(), path.clone(), rx.clone());
        for s in [early.remove(1), late] {
            let got: Vec<RecordBatch> = s.map(|b| b.unwrap()).collect().await;
            assert_eq!(got, sent);
        }
    }

    /// A writer that fails: its readers end with its error, not with what was written.
    #[tokio::test]
    async fn a_failed_writer_fails_its_readers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.arrow");
        let schema = schema();
        let (tx, rx) = watch::channel(Progress::default());
        let mut reader = read_as_written(schema.clone(), path.clone(), rx.clone());
        let mut w = Writer::create(&path, &schema, tx.clone()).unwrap();
        w.write(&batch(&schema, 0, 10)).unwrap();
        assert_eq!(reader.next().await.unwrap().unwrap().num_rows(), 10);
        failed(&tx, "the producing step failed".into());
        let err = reader.next().await.unwrap().unwrap_err();
        assert!(
            err.to_string().contains("the producing step failed"),
            "{err}"
        );
        // A writer dropped without finishing (its task aborted) also ends its readers.
        let (tx, rx) = watch::channel(Progress::default());
        let mut reader = read_as_written(schema.clone(), path.clone(), rx);
        drop(Writer::create(&path, &schema, tx).unwrap());
        assert!(reader.next().await.unwrap().is_err());
    }
}
