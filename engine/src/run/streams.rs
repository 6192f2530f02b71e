//! How record batches travel from a step to the steps that read its output.
//!
//! A step's output read by one consumer goes through a bounded channel
//! ([`ChannelPartition`]): batches flow while both run and no table is held whole. An
//! output read by several consumers, or scanned more than once by one, is computed once
//! into a local Arrow IPC spill file (`spill.rs`) that each consumer reads, once the file
//! is complete, in as many partitions as the session runs ([`SpillPartition`]). Both are
//! `PartitionStream`s, behind a `StreamingTable` or (a spill, whose scans read only the
//! columns they project) a [`SpillTable`], so a step's plan reads them as tables, and both
//! count the rows a step receives on its main inputs. [`Output`] is where a step's
//! batches go: the schedule (`schedule.rs`) decides it, the step (`step.rs`) writes to it.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use super::Counters;
use super::report::{RunCode, RunFailure, fail};

/// Reads the batches another step sends through a channel (one consumer).
#[derive(Debug)]
pub(super) struct ChannelPartition {
    pub(super) schema: SchemaRef,
    pub(super) rx: Mutex<Option<mpsc::Receiver<Result<RecordBatch, DataFusionError>>>>,
    /// The reading step's counters, when this is one of its main inputs.
    pub(super) counter: Option<Arc<Counters>>,
}

impl PartitionStream for ChannelPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }
    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let rx = self.rx.lock().ok().and_then(|mut r| r.take());
        if rx.is_none() {
            // A channel can be read once; a plan that scans an input twice gets a spill file.
            let err = DataFusionError::Internal("a streamed input was read twice".into());
            return Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                futures::stream::once(async move { Err(err) }),
            ));
        }
        let counter = self.counter.clone();
        let stream = futures::stream::unfold(rx, |rx| async move {
            let mut rx = rx?;
            let item = rx.recv().await?;
            Some((item, Some(rx)))
        })
        .inspect(move |b| {
            if let (Ok(b), Some(c)) = (b, &counter) {
                c.rows_in.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// Reads one partition of a spilled output once it is complete (several consumers). A
/// consumer reads the file in as many partitions as the session runs, each partition
/// reading its batches when polled: a single stream would be spread over the partitions
/// by a repartition that pulls the whole file at once, and where a join waits for its
/// build side first, holds or spills all of it (at 50 M rows 5.8 GB spilled, PROFILE.md
/// tenth round).
#[derive(Debug, Clone)]
pub(super) struct SpillPartition {
    /// The columns it gives: the file's, or those of `projection`.
    pub(super) schema: SchemaRef,
    /// The file's columns it reads, in order; all when `None` (see [`SpillTable`]).
    pub(super) projection: Option<Vec<usize>>,
    pub(super) path: PathBuf,
    pub(super) ready: watch::Receiver<crate::run::spill::Ready>,
    /// Which partition of how many.
    pub(super) part: usize,
    pub(super) parts: usize,
    /// The reading step's counters, when this is one of its main inputs.
    pub(super) counter: Option<Arc<Counters>>,
    /// A query may scan an input more than once; its rows are counted once, by the first
    /// scan that reads the partition to its end (a join whose build side is empty drops
    /// its probe side unread).
    pub(super) counted: Arc<std::sync::atomic::AtomicBool>,
}

impl PartitionStream for SpillPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }
    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let rows = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = rows.clone();
        let (counter, counted) = (self.counter.clone(), self.counted.clone());
        let stream = crate::run::spill::read_when_ready(
            self.schema.clone(),
            self.path.clone(),
            self.ready.clone(),
            (self.part, self.parts),
            self.projection.clone(),
        )
        .inspect(move |b| {
            if let Ok(b) = b {
                seen.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
            }
        })
        .chain(futures::stream::poll_fn(move |_| {
            if let Some(c) = &counter
                && !counted.swap(true, Ordering::Relaxed)
            {
                c.rows_in
                    .fetch_add(rows.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            std::task::Poll::Ready(None)
        }));
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

impl SpillPartition {
    /// The same partition giving only its columns `projection` (all when `None`).
    fn projected(&self, projection: Option<&Vec<usize>>) -> Result<Self, DataFusionError> {
        let Some(p) = projection else {
            return Ok(self.clone());
        };
        let schema = Arc::new(self.schema.project(p)?);
        let of_file = match &self.projection {
            Some(base) => p.iter().map(|&i| base[i]).collect(),
            None => p.clone(),
        };
        Ok(Self {
            schema,
            projection: Some(of_file),
            ..self.clone()
        })
    }
}

/// A spill file as a table, read in partitions ([`SpillPartition`]): each scan decodes only
/// the columns it projects. A rule's first passes read a key or three of every row (the
/// unique rule scans its input three times), and every column they do not read was
/// decoded, checked and, for `_object`, spelled out again for every row.
#[derive(Debug)]
pub(super) struct SpillTable {
    schema: SchemaRef,
    parts: Vec<SpillPartition>,
}

impl SpillTable {
    /// A table of the given partitions (at least one; all of one schema).
    pub(super) fn new(parts: impl IntoIterator<Item = SpillPartition>) -> Result<Self, RunFailure> {
        let parts: Vec<SpillPartition> = parts.into_iter().collect();
        let schema = (parts.first().map(|p| p.schema.clone()))
            .ok_or_else(|| fail(RunCode::Engine, "a table of no partitions"))?;
        Ok(Self { schema, parts })
    }
}

#[async_trait::async_trait]
impl datafusion::datasource::TableProvider for SpillTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        _filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>, DataFusionError> {
        let parts = (self.parts.iter())
            .map(|p| Ok(Arc::new(p.projected(projection)?) as Arc<dyn PartitionStream>))
            .collect::<Result<Vec<_>, DataFusionError>>()?;
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let exec = datafusion::physical_plan::streaming::StreamingTableExec::try_new(
            schema,
            parts,
            None,
            vec![],
            false,
            limit,
        )?;
        Ok(Arc::new(exec))
    }
}

/// Where a step's output goes.
pub(super) enum Output {
    Channel(mpsc::Sender<Result<RecordBatch, DataFusionError>>),
    /// A file, with the columns (of the step's output) its readers read, if not all.
    Spill(
        PathBuf,
        watch::Sender<crate::run::spill::Ready>,
        Option<Vec<String>>,
    ),
    Publish,
    Drain,
}

/// A table whose one partition is the given stream.
pub(super) fn stream_table(
    part: impl PartitionStream + 'static,
) -> Result<Arc<dyn datafusion::datasource::TableProvider>, RunFailure> {
    partitioned_table([part])
}

/// A table of the given partitions (at least one; all of one schema).
pub(super) fn partitioned_table<P: PartitionStream + 'static>(
    parts: impl IntoIterator<Item = P>,
) -> Result<Arc<dyn datafusion::datasource::TableProvider>, RunFailure> {
    let parts: Vec<Arc<dyn PartitionStream>> = parts
        .into_iter()
        .map(|p| Arc::new(p) as Arc<dyn PartitionStream>)
        .collect();
    let schema = parts
        .first()
        .ok_or_else(|| fail(RunCode::Engine, "a table of no partitions"))?
        .schema()
        .clone();
    let table =
        StreamingTable::try_new(schema, parts).map_err(|e| fail(RunCode::Engine, e.to_string()))?;
    Ok(Arc::new(table))
}

/// `schema` with only the columns `read` (all when `None`), and their positions in it.
pub(super) fn narrowed(
    schema: &Schema,
    read: Option<&[String]>,
) -> Result<(Schema, Option<Vec<usize>>), RunFailure> {
    let Some(read) = read else {
        return Ok((schema.clone(), None));
    };
    let cols = read
        .iter()
        .map(|n| schema.index_of(n))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(RunCode::Engine, e.to_string()))?;
    let projected = schema
        .project(&cols)
        .map_err(|e| fail(RunCode::Engine, e.to_string()))?;
    Ok((projected, Some(cols)))
}

/// A step's plan keeping of its output only the columns `keep` (and its own `__` columns:
/// filter and metrics). Its logical plan ends in a projection to them, so the optimiser
/// drops whatever computed the others; what the plan says of its columns (personal, their
/// lineage, dimensions) names only those kept. The schedule gives consumers this output;
/// the step runs this plan.
pub(super) fn narrowed_plan(
    mut plan: crate::plan::StepPlan,
    keep: &[String],
) -> Result<crate::plan::StepPlan, RunFailure> {
    let columns: Vec<datafusion::prelude::Expr> = (plan.plan.schema().columns().into_iter())
        .filter(|c| keep.contains(&c.name) || c.name.starts_with("__"))
        .map(datafusion::prelude::Expr::Column)
        .collect();
    plan.plan = datafusion::logical_expr::LogicalPlanBuilder::from(plan.plan)
        .project(columns)
        .and_then(|b| b.build())
        .map_err(|e| fail(RunCode::Engine, e.to_string()))?;
    plan.output = Arc::new(narrowed(&plan.output, Some(keep))?.0);
    let kept = |c: &String| keep.contains(c);
    plan.personal.retain(kept);
    plan.pseudonymised.retain(kept);
    plan.lineage.retain(|c, _| kept(c));
    plan.person_counts.retain(kept);
    plan.dimensions.retain(kept);
    plan.area = plan.area.filter(kept);
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, UInt64Type};
    use datafusion::prelude::SessionContext;
    use futures::TryStreamExt;

    use super::*;

    /// Partition `part` of `parts` of the spill file at `path`, every column of it.
    fn partition(
        schema: &SchemaRef,
        path: &std::path::Path,
        ready: &watch::Receiver<crate::run::spill::Ready>,
        (part, parts): (usize, usize),
        counter: Option<Arc<Counters>>,
    ) -> SpillPartition {
        SpillPartition {
            schema: schema.clone(),
            projection: None,
            path: path.to_path_buf(),
            ready: ready.clone(),
            part,
            parts,
            counter,
            counted: Default::default(),
        }
    }

    /// A spill file read in two partitions: each reads every other batch, together every
    /// row once; the consumer's rows are counted once, by the first scan of a partition
    /// that reads it to its end (not by a scan dropped early, as a join with an empty build
    /// side drops its probe side).
    #[tokio::test]
    async fn partitions_of_a_spill_file_read_each_batch_once_and_count_rows_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vaihe.arrow");
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::UInt64, false)]));
        let mut writer =
            arrow::ipc::writer::FileWriter::try_new(std::fs::File::create(&path).unwrap(), &schema)
                .unwrap();
        for b in 0..5u64 {
            let values = UInt64Array::from_iter_values(b * 10..(b + 1) * 10);
            writer
                .write(&RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).unwrap())
                .unwrap();
        }
        writer.finish().unwrap();
        let (_tx, ready) = watch::channel(Some(Ok(crate::run::spill::Written::default())));
        let counters = Arc::new(Counters::default());
        let parts: Vec<SpillPartition> = (0..2)
            .map(|part| partition(&schema, &path, &ready, (part, 2), Some(counters.clone())))
            .collect();
        let ctx = SessionContext::new().task_ctx();
        let mut dropped = parts[1].execute(ctx.clone());
        assert!(dropped.next().await.unwrap().is_ok());
        drop(dropped);
        assert_eq!(counters.rows_in.load(Ordering::Relaxed), 0);
        for _scan in 0..2 {
            let mut all: Vec<u64> = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                let batches: Vec<RecordBatch> = p.execute(ctx.clone()).try_collect().await.unwrap();
                let firsts: Vec<u64> = batches
                    .iter()
                    .map(|b| b.column(0).as_primitive::<UInt64Type>().value(0))
                    .collect();
                assert_eq!(
                    firsts,
                    if i == 0 {
                        vec![0, 20, 40]
                    } else {
                        vec![10, 30]
                    }
                );
                for b in &batches {
                    all.extend(b.column(0).as_primitive::<UInt64Type>().values().iter());
                }
            }
            all.sort_unstable();
            assert_eq!(all, (0..50).collect::<Vec<u64>>());
        }
        assert_eq!(counters.rows_in.load(Ordering::Relaxed), 50);
    }

    /// A spill file as a table: a query reading some of its columns gets them, in the
    /// query's order, from every partition; the scan reads those columns of the file only.
    #[tokio::test]
    async fn a_spill_table_scan_reads_the_columns_it_projects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vaihe.arrow");
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::UInt64, false),
            Field::new("m", DataType::UInt64, false),
            Field::new("k", DataType::UInt64, false),
        ]));
        let mut writer =
            arrow::ipc::writer::FileWriter::try_new(std::fs::File::create(&path).unwrap(), &schema)
                .unwrap();
        for b in 0..3u64 {
            let column = |f: u64| {
                Arc::new(UInt64Array::from_iter_values(
                    (b * 4..(b + 1) * 4).map(|v| v * f),
                )) as arrow::array::ArrayRef
            };
            let batch =
                RecordBatch::try_new(schema.clone(), vec![column(1), column(10), column(100)]);
            writer.write(&batch.unwrap()).unwrap();
        }
        writer.finish().unwrap();
        let (_tx, ready) = watch::channel(Some(Ok(crate::run::spill::Written::default())));
        let parts = (0..2).map(|part| partition(&schema, &path, &ready, (part, 2), None));
        let ctx = SessionContext::new();
        ctx.register_table("t", Arc::new(SpillTable::new(parts).unwrap()))
            .unwrap();
        let df = ctx.sql("SELECT k, m FROM t ORDER BY m").await.unwrap();
        let batches = df.collect().await.unwrap();
        let (mut ks, mut ms) = (Vec::new(), Vec::new());
        for b in &batches {
            assert_eq!(b.schema().field(0).name(), "k");
            ks.extend(
                b.column(0)
                    .as_primitive::<UInt64Type>()
                    .values()
                    .iter()
                    .copied(),
            );
            ms.extend(
                b.column(1)
                    .as_primitive::<UInt64Type>()
                    .values()
                    .iter()
                    .copied(),
            );
        }
        assert_eq!(ms, (0..12u64).map(|v| v * 10).collect::<Vec<_>>());
        assert_eq!(ks, (0..12u64).map(|v| v * 100).collect::<Vec<_>>());
        // Each partition's scan is of the projected columns alone.
        let scan = SpillTable::new([partition(&schema, &path, &ready, (0, 1), None)]).unwrap();
        let part = scan.parts[0].projected(Some(&vec![2, 0])).unwrap();
        assert_eq!(part.projection, Some(vec![2, 0]));
        let twice = part.projected(Some(&vec![1])).unwrap();
        assert_eq!(twice.projection, Some(vec![0]));
        assert_eq!(twice.schema.field(0).name(), "n");
        let read: Vec<RecordBatch> = part.execute(ctx.task_ctx()).try_collect().await.unwrap();
        assert_eq!(read[0].num_columns(), 2);
        assert_eq!(read[0].schema().field(0).name(), "k");
    }
}
