//! Local Arrow IPC files that one task writes and other plans read when it is complete: a
//! step's output read by several consumers (or scanned twice by one), and a part of a plan
//! computed once and read twice (`Materialised`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{SendableRecordBatchStream, execute_stream};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use tokio::sync::watch;

/// Whether a spill file is complete: `None` while it is written, then the writer's outcome.
pub type Ready = Option<Result<(), String>>;

/// The batches of the file at `path`, once `ready` says it is complete (an error if its
/// writer failed).
pub fn read_when_ready(
    schema: SchemaRef,
    path: PathBuf,
    mut ready: watch::Receiver<Ready>,
) -> SendableRecordBatchStream {
    let stream = futures::stream::once(async move {
        let outcome = ready
            .wait_for(|v| v.is_some())
            .await
            .map(|v| v.clone().unwrap_or(Ok(())))
            .unwrap_or_else(|_| Err("the writer ended before finishing".into()));
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
        |reader| -> futures::stream::BoxStream<'static, Result<RecordBatch, DataFusionError>> {
            match reader {
                Ok(r) => futures::stream::iter(r.map(|b| b.map_err(DataFusionError::from))).boxed(),
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            }
        },
    );
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}

/// A part of a step's plan computed once, before the rest of the plan reads it (twice or
/// more): DataFusion runs a subplan once per place it occurs, and some subplans are costly
/// (the per-value grouping of a distinct count). The step runs `plan` into a local file;
/// the scans of [`Materialised::table`] read it when it is complete.
#[derive(Debug)]
pub struct Materialised {
    pub plan: LogicalPlan,
    pub path: PathBuf,
    ready: watch::Sender<Ready>,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl Materialised {
    pub fn new(plan: LogicalPlan) -> Arc<Self> {
        let path = std::env::temp_dir().join(format!(
            "valtava-{}-part-{}.arrow",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let (ready, _) = watch::channel(None);
        Arc::new(Materialised { plan, path, ready })
    }

    /// A table that reads the result.
    pub fn table(self: &Arc<Self>) -> datafusion::error::Result<Arc<StreamingTable>> {
        let schema: SchemaRef = Arc::new(self.plan.schema().as_arrow().clone());
        let part = MaterialisedPartition {
            schema: schema.clone(),
            of: self.clone(),
        };
        Ok(Arc::new(StreamingTable::try_new(
            schema,
            vec![Arc::new(part)],
        )?))
    }

    /// Runs the plan into the file and tells the readers.
    pub async fn run(&self, ctx: &SessionContext) -> Result<(), String> {
        let outcome = async {
            let physical = ctx
                .state()
                .create_physical_plan(&self.plan)
                .await
                .map_err(|e| e.to_string())?;
            let mut stream = execute_stream(physical, ctx.task_ctx()).map_err(|e| e.to_string())?;
            let file = std::fs::File::create(&self.path)
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
            let mut w = arrow::ipc::writer::FileWriter::try_new(
                std::io::BufWriter::with_capacity(1 << 20, file),
                &stream.schema(),
            )
            .map_err(|e| e.to_string())?;
            while let Some(batch) = stream.next().await {
                w.write(&batch.map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            }
            w.finish().map_err(|e| e.to_string())
        }
        .await;
        self.ready.send_replace(Some(outcome.clone()));
        outcome
    }
}

impl Drop for Materialised {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Debug)]
struct MaterialisedPartition {
    schema: SchemaRef,
    of: Arc<Materialised>,
}

impl PartitionStream for MaterialisedPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }
    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        read_when_ready(
            self.schema.clone(),
            self.of.path.clone(),
            self.of.ready.subscribe(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sum_of(ctx: &SessionContext) -> datafusion::error::Result<i64> {
        let batches = ctx
            .sql("SELECT sum(a) AS s FROM t")
            .await?
            .collect()
            .await?;
        let col = batches[0].column(0);
        Ok(arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(col).value(0))
    }

    /// A session with the part of `sql` registered as table `t`.
    async fn part_of(sql: &str) -> (SessionContext, Arc<Materialised>) {
        let ctx = SessionContext::new();
        let plan = ctx.sql(sql).await.unwrap().into_unoptimized_plan();
        let part = Materialised::new(plan);
        ctx.register_table("t", part.table().unwrap()).unwrap();
        (ctx, part)
    }

    #[tokio::test]
    async fn a_part_is_computed_once_read_when_ready_and_its_failure_reaches_readers() {
        let (ctx, part) =
            part_of("SELECT CAST(column1 AS BIGINT) AS a FROM (VALUES (1), (2), (39))").await;
        // A reader that starts first waits for the part; later readers read the same file.
        let early = {
            let ctx = ctx.clone();
            tokio::spawn(async move { sum_of(&ctx).await })
        };
        part.run(&ctx).await.unwrap();
        assert_eq!(early.await.unwrap().unwrap(), 42);
        assert_eq!(sum_of(&ctx).await.unwrap(), 42);
        let path = part.path.clone();
        assert!(path.exists());
        ctx.deregister_table("t").unwrap();
        drop(part);
        assert!(!path.exists(), "the file goes with the part");

        // A part that fails: its error, not a hang.
        let (ctx, part) = part_of("SELECT CAST(column1 AS BIGINT) AS a FROM (VALUES ('x'))").await;
        let err = part.run(&ctx).await.unwrap_err();
        let read = sum_of(&ctx).await.unwrap_err().to_string();
        assert!(read.contains(&err), "{read} / {err}");
    }
}
