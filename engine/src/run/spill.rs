//! Local Arrow IPC files that one task writes and other plans read when it is complete: a
//! step's output read by several consumers (or scanned twice by one).

use std::path::PathBuf;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::DataFusionError;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use tokio::sync::watch;

use crate::run::RunIoError;

/// Whether a spill file is complete: `None` while it is written, then the writer's outcome.
pub type Ready = Option<Result<(), RunIoError>>;

/// Partition `part` of `parts` of the file at `path`: every `parts`-th batch from `part`,
/// once `ready` says the file is complete (an error if its writer failed).
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
                _ => Ok(()),
            },
            Err(_) => Err(RunIoError::WriterGone.to_string()),
        };
        if let Err(e) = outcome {
            return Err(DataFusionError::Execution(e));
        }
        let file = std::fs::File::open(&path)?;
        Ok(arrow::ipc::reader::FileReader::try_new(
            std::io::BufReader::with_capacity(1 << 20, file),
            None,
        )?)
    })
    .flat_map(
        move |reader| -> futures::stream::BoxStream<'static, Result<RecordBatch, DataFusionError>> {
            match reader {
                Ok(mut r) => {
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
