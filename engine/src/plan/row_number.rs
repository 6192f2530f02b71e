//! A streaming `row_number()` over input already sorted by its partition: the operator a
//! physical optimiser rule puts in place of DataFusion's `BoundedWindowAggExec` when that
//! window computes `row_number()` alone over sorted input.
//!
//! Why: "the latest row of each person" is written `row_number() OVER (PARTITION BY …
//! ORDER BY …) = 1` (the `rai` line keeps each client's latest assessment). DataFusion's
//! bounded window keeps per-partition state and evaluates each partition separately; with
//! one or two rows a partition (177 000 partitions in 297 000 rows) that bookkeeping cost
//! 370 ms of the line's compute (PROFILE.md, twenty-first round). The input arrives sorted
//! by the partition keys (the window requires it, and the rule only acts in that mode), so
//! a row's number is one more than the previous row's, or 1 where the keys change: one
//! pass with Arrow's `partition` kernel over each batch, the last key carried across
//! batches. Everything the planner asks of the operator — schema, ordering, distribution,
//! required input order — is the replaced window's own, so the plan around it is
//! unchanged. Only the local session installs the rule; plans a Ballista cluster runs are
//! made by its scheduler with DataFusion's operators.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, ScalarValue};
use datafusion::execution::TaskContext;
use datafusion::functions_window::row_number::RowNumber;
use datafusion::physical_expr::window::StandardWindowExpr;
use datafusion::physical_expr::{OrderingRequirements, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::distribution_requirements::InputDistributionRequirements;
use datafusion::physical_plan::execution_plan::CardinalityEffect;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet, RecordOutput,
};
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowUDFExpr};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, InputOrderMode,
    PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream, Statistics,
};
use futures::StreamExt;

/// The rule: every `BoundedWindowAggExec` computing only `row_number()` over input sorted
/// by its partition becomes a [`RowNumberExec`]. Appended after DataFusion's rules, so the
/// sorts and distributions the window required are already in place.
#[derive(Debug, Default)]
pub struct StreamingRowNumber;

impl PhysicalOptimizerRule for StreamingRowNumber {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            // The node itself, not a node a wrapper delegates to (which would lose the wrapper).
            let any: &dyn std::any::Any = node.as_ref();
            let Some(window) = any.downcast_ref::<BoundedWindowAggExec>() else {
                return Ok(Transformed::no(node));
            };
            if !replaceable(window) {
                return Ok(Transformed::no(node));
            }
            let window = Arc::new(window.clone());
            Ok(Transformed::yes(Arc::new(RowNumberExec::new(window)) as _))
        })
        .data()
    }

    fn name(&self) -> &str {
        "streaming_row_number"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether `window` numbers rows alone over input sorted by its partition keys (and so a
/// row's number is its place in a run of equal keys).
fn replaceable(window: &BoundedWindowAggExec) -> bool {
    let [expr] = window.window_expr() else {
        return false;
    };
    let is_row_number = expr
        .as_any()
        .downcast_ref::<StandardWindowExpr>()
        .and_then(|e| {
            e.get_standard_func_expr()
                .as_any()
                .downcast_ref::<WindowUDFExpr>()
        })
        .is_some_and(|f| f.fun().inner().is::<RowNumber>());
    let last = window.schema().fields().len() - 1;
    is_row_number
        && window.input_order_mode == InputOrderMode::Sorted
        && window.state_observer().is_none()
        && window.schema().field(last).data_type() == &DataType::UInt64
        && window.schema().fields().len() == window.input().schema().fields().len() + 1
}

/// `row_number()` over input sorted by the partition keys, streamed batch by batch. Holds
/// the window it replaces for everything the planner reads (schema, properties,
/// requirements, display of the expression).
#[derive(Debug)]
pub struct RowNumberExec {
    window: Arc<BoundedWindowAggExec>,
    metrics: ExecutionPlanMetricsSet,
}

impl RowNumberExec {
    fn new(window: Arc<BoundedWindowAggExec>) -> Self {
        RowNumberExec {
            window,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    fn partition_by(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        self.window.window_expr()[0].partition_by().to_vec()
    }
}

impl DisplayAs for RowNumberExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "RowNumberExec: {}", self.window.window_expr()[0].name())
            }
            DisplayFormatType::TreeRender => {
                writeln!(f, "select_list={}", self.window.window_expr()[0].name())
            }
        }
    }
}

impl ExecutionPlan for RowNumberExec {
    fn name(&self) -> &str {
        "RowNumberExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.window.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.window.input()]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.window.apply_expressions(f)
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.window.input_distribution_requirements()
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        self.window.required_input_ordering()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let window = Arc::clone(&self.window).replace_children(children, options)?;
        let any: &dyn std::any::Any = window.as_ref();
        match any.downcast_ref::<BoundedWindowAggExec>() {
            Some(w) if replaceable(w) => Ok(Arc::new(RowNumberExec::new(Arc::new(w.clone())))),
            _ => Ok(window),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.window.input().execute(partition, context)?;
        let schema = self.schema();
        let mut numbering = Numbering {
            keys: self.partition_by(),
            schema: Arc::clone(&schema),
            last: None,
            metrics: BaselineMetrics::new(&self.metrics, partition),
        };
        let stream = input.map(move |batch| numbering.number(batch?));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        CardinalityEffect::Equal
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        self.window.child_stats_requests(partition)
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        self.window.statistics_from_inputs(input_stats, args)
    }
}

/// One partition's numbering state: the keys of the last row seen and its number.
struct Numbering {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    last: Option<(Vec<ScalarValue>, u64)>,
    metrics: BaselineMetrics,
}

impl Numbering {
    /// `batch` with its rows' numbers appended.
    fn number(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        let _timer = self.metrics.elapsed_compute().timer();
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(RecordBatch::new_empty(Arc::clone(&self.schema)));
        }
        let keys = self
            .keys
            .iter()
            .map(|k| k.evaluate(&batch)?.into_array(rows))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let mut numbers = Vec::with_capacity(rows);
        let mut next = match &self.last {
            Some((last, n)) if *last == key_at(&keys, 0)? => n + 1,
            _ => 1,
        };
        if keys.is_empty() {
            numbers.extend(next..next + rows as u64);
        } else {
            for run in arrow::compute::partition(&keys)?.ranges() {
                numbers.extend(next..next + run.len() as u64);
                next = 1;
            }
        }
        let last_number = *numbers.last().expect("a batch with rows has a last number");
        self.last = Some((key_at(&keys, rows - 1)?, last_number));
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(UInt64Array::from(numbers)));
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?.record_output(&self.metrics))
    }
}

/// The partition key of row `row`.
fn key_at(keys: &[ArrayRef], row: usize) -> Result<Vec<ScalarValue>> {
    keys.iter()
        .map(|k| ScalarValue::try_from_array(k, row))
        .collect()
}

#[cfg(test)]
mod tests;
