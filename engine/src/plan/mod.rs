//! Planning: each step of a line becomes a DataFusion logical plan over its inputs.
//!
//! The same code plans a step when a line is checked (inputs are empty tables of the
//! input steps' schemas, so every expression is parsed and type-checked without data) and
//! when it runs (inputs are streams). A step's plan may add rule columns named
//! `__r<i>` (text: null when the row passes, otherwise the reason); the scheduler diverts
//! the rows that fail a `reject` rule to quarantine and drops those columns, so the step's
//! output schema is its plan's schema without them.

pub mod check;
pub mod explain;
pub mod personal;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, DataFusionError, SchemaError};
use datafusion::datasource::{MemTable, TableProvider, provider_as_source};
use datafusion::execution::SessionState;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    Expr, ExprSchemable, GroupingSet, JoinType, LogicalPlan, LogicalPlanBuilder, SortExpr, case,
    col, lit, when,
};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;

use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::line::load::Line;
use crate::line::spec::{
    AggregateSpec, ColumnType, ExprText, HarmoniseSpec, Name, Pos, PublishSpec, RuleSpec, Severity,
    SourceSpec, SqlSpec, StepKind, Unmapped, ValidateSpec,
};
use crate::plan::personal::{Lineage, Taint};

/// Column of a row's source object.
pub const OBJECT_COLUMN: &str = "_object";
/// Column of a row's number inside its object.
pub use valtava_plugin::ROW_COLUMN;
/// Prefix of rule columns.
pub const RULE_PREFIX: &str = "__r";
/// Prefix of columns counted by value (e.g. how each row was mapped).
pub const METRIC_PREFIX: &str = "__m";
/// Column that marks suppressed cells in a published table.
pub const STATUS_COLUMN: &str = "status";

/// A rule column of a step's plan and what to do with rows it flags.
#[derive(Debug, Clone, PartialEq)]
pub struct TapRule {
    /// The `__r<i>` column.
    pub column: String,
    /// Rule id, for quarantine and reports.
    pub id: String,
    pub severity: Severity,
}

/// A check of a whole step's data, evaluated when the step has seen every row.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetCheck {
    pub id: String,
    pub severity: Severity,
    pub kind: DatasetCheckKind,
}

/// What a dataset check tests.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetCheckKind {
    /// The row count lies within the bounds.
    Rows { min: Option<u64>, max: Option<u64> },
    /// The share of nulls in a column is at most `max`.
    NullShare { column: String, max: f64 },
    /// The latest date of a column lies within the period (days since the epoch).
    Fresh {
        column: String,
        start: i32,
        end: i32,
    },
}

/// Column of a step's filter: true for rows in scope.
pub const FILTER_COLUMN: &str = "__rfilter";

/// A planned step.
#[derive(Debug, Clone)]
pub struct StepPlan {
    pub kind: StepKind,
    pub plan: LogicalPlan,
    /// The step's output: the plan's columns less the rule columns.
    pub output: SchemaRef,
    pub rules: Vec<TapRule>,
    /// Output columns that identify a person (the keys of `lineage`).
    pub personal: BTreeSet<String>,
    /// Personal columns that hold pseudonyms.
    pub pseudonymised: BTreeSet<String>,
    /// Why each personal column is personal, computed from the plan.
    pub lineage: Lineage,
    /// Measures that count persons (`count(DISTINCT` of a personal column): each decides
    /// disclosure like the dataset's first count.
    pub person_counts: Vec<String>,
    /// Dimensions of an aggregate, for publish.
    pub dimensions: Vec<String>,
    /// Whether the plan has a [`FILTER_COLUMN`].
    pub filtered: bool,
    /// Checks of the whole dataset.
    pub dataset_checks: Vec<DatasetCheck>,
    /// The column naming who submitted each row, for the quality report.
    pub submitter: Option<String>,
    /// Text columns whose values are counted for the run report: (column, what).
    pub metrics: Vec<(String, String)>,
    /// Small-cell suppression of a publish step.
    pub disclosure: Option<Disclosure>,
}

/// How a published table is protected (see [`crate::publish::disclosure`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Disclosure {
    /// The counts that decide: the dataset's first count, then the counts of persons.
    pub counts: Vec<String>,
    pub min_count: i64,
    /// The columns emptied in a suppressed cell.
    pub measures: Vec<String>,
}

/// The inputs of a step: providers of the input steps' outputs, by step name.
pub type Inputs = BTreeMap<String, (Arc<dyn TableProvider>, InputInfo)>;

/// A step's output as seen by a consumer.
#[derive(Debug, Clone)]
pub struct InputInfo {
    pub schema: SchemaRef,
    pub personal: BTreeSet<String>,
    /// Personal columns that already hold pseudonyms.
    pub pseudonymised: BTreeSet<String>,
    pub lineage: Lineage,
    pub person_counts: Vec<String>,
    pub dimensions: Vec<String>,
}

impl InputInfo {
    /// What is known of rows straight from a parser: nothing but their schema.
    pub fn raw(schema: SchemaRef) -> Self {
        Self {
            schema,
            personal: BTreeSet::new(),
            pseudonymised: BTreeSet::new(),
            lineage: Lineage::new(),
            person_counts: Vec::new(),
            dimensions: Vec::new(),
        }
    }
}

impl StepPlan {
    /// The step's output as its consumers see it.
    pub fn info(&self) -> InputInfo {
        InputInfo {
            schema: self.output.clone(),
            personal: self.personal.clone(),
            pseudonymised: self.pseudonymised.clone(),
            lineage: self.lineage.clone(),
            person_counts: self.person_counts.clone(),
            dimensions: self.dimensions.clone(),
        }
    }

    /// Personal columns still in clear text (to pseudonymise on the way to quarantine).
    pub fn clear_personal(&self) -> BTreeSet<String> {
        self.personal
            .difference(&self.pseudonymised)
            .cloned()
            .collect()
    }
}

/// The Arrow type of a declared column type.
pub fn arrow_type(t: ColumnType) -> DataType {
    match t {
        ColumnType::String => DataType::Utf8,
        ColumnType::Integer => DataType::Int64,
        ColumnType::Decimal => DataType::Float64,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
    }
}

/// The schema a source's parser delivers: declared columns as text (or native types),
/// provenance columns.
pub fn raw_source_schema(spec: &SourceSpec) -> SchemaRef {
    let mut fields: Vec<Field> = spec
        .columns
        .keys()
        .map(|c| Field::new(c.value.as_str(), DataType::Utf8, true))
        .collect();
    fields.push(Field::new(ROW_COLUMN, DataType::UInt64, false));
    fields.push(Field::new(OBJECT_COLUMN, DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// The session every plan is made in: Valtava's functions registered, deterministic
/// settings, no memory limit (planning and checking read no rows).
pub fn session(key: Option<&[u8]>, target_partitions: usize) -> SessionContext {
    with_functions(
        SessionContext::new_with_config(session_config(target_partitions)),
        key,
    )
}

/// The session a run executes in: as [`session`], and with `memory_limit` bytes sorts and
/// aggregations spill to temporary files instead of growing; the fair pool shares the limit
/// among the operators that can spill, as the steps of a line run at once. The limit is
/// the caller's (the command line reads `VALTAVA_MEMORY_LIMIT`); a pool that cannot be
/// built is an error, never a run without its limit.
pub fn limited_session(
    key: Option<&[u8]>,
    target_partitions: usize,
    memory_limit: Option<usize>,
) -> Result<SessionContext, DataFusionError> {
    let Some(bytes) = memory_limit else {
        return Ok(session(key, target_partitions));
    };
    let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_max_spill_merge_fan_in(SPILL_MERGE_FAN_IN)
        .with_memory_pool(Arc::new(
            // An error names the largest consumers, so an operator can see what to tune.
            datafusion::execution::memory_pool::TrackConsumersPool::new(
                datafusion::execution::memory_pool::FairSpillPool::new(bytes),
                std::num::NonZeroUsize::new(5).expect("5 is not zero"),
            ),
        ))
        .build_arc()?;
    let ctx = SessionContext::new_with_config_rt(session_config(target_partitions), runtime);
    Ok(with_functions(ctx, key))
}

fn session_config(target_partitions: usize) -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_target_partitions(target_partitions.max(1))
        .with_information_schema(false);
    // A line's joins have small build sides (duplicates found, keys of another step, code
    // sets, groups): the build side is collected once and the rows stream past it in their
    // partitions, instead of every row being hashed into new partitions (at 10 M rows of
    // the unique rule's join, 1.4 GB moved).
    config.options_mut().optimizer.repartition_joins = false;
    config
}

fn with_functions(ctx: SessionContext, key: Option<&[u8]>) -> SessionContext {
    for f in crate::functions::udfs(key) {
        ctx.register_udf(f);
    }
    for f in crate::functions::udafs() {
        ctx.register_udaf(f);
    }
    ctx
}

/// Spilled runs a sort or grouping merges at once; more are merged in rounds. Unlimited, a
/// merge reads a batch of every run at once, and the runs grow with the input (the
/// per-value grouping of a distinct count spills ≈ 86 runs a partition at 50 M rows under
/// 512 MiB, against ≈ 18 at 10 M): the end of a 50 M run held ≈ 20 MiB more than with 16
/// (one run each, PROFILE.md, tenth round).
pub const SPILL_MERGE_FAN_IN: usize = 16;

/// The argument of a plain `count(DISTINCT x)`.
fn count_distinct_arg(e: &Expr) -> Option<Expr> {
    let Expr::AggregateFunction(f) = e else {
        return None;
    };
    let p = &f.params;
    (f.func.name() == "count"
        && p.distinct
        && p.args.len() == 1
        && p.filter.is_none()
        && p.order_by.is_empty())
    .then(|| p.args[0].clone())
}

/// The argument of a plain `median(x)` of a `DOUBLE` (other types keep DataFusion's
/// median, whose integer and decimal rounding this plan does not repeat).
fn median_arg(e: &Expr, schema: &DFSchema) -> Option<Expr> {
    let Expr::AggregateFunction(f) = e else {
        return None;
    };
    let p = &f.params;
    (f.func.name() == "median"
        && !p.distinct
        && p.args.len() == 1
        && p.filter.is_none()
        && p.order_by.is_empty()
        && p.args[0].get_type(schema).ok() == Some(DataType::Float64))
    .then(|| p.args[0].clone())
}

/// The (group, value) pairs of `value` per group of `dims` (and per grouping set when
/// `totals`), with the rows of each pair in `{alias}_count`. The columns are
/// `{alias}_d_{dim}`, `{alias}_value`, with totals `{alias}_g_{dim}` (1 where the
/// dimension is rolled up), and the count. Also returns the columns of a group (all but
/// the value and the count).
///
/// With totals, the pairs of the finest cells are made first, in one pass over the rows,
/// and the grouping sets roll those up: each row is grouped once, not once per set.
fn value_pairs(
    b: LogicalPlanBuilder,
    dims: &[String],
    totals: bool,
    value: Expr,
    alias: &str,
) -> datafusion::error::Result<(LogicalPlanBuilder, Vec<Expr>)> {
    use datafusion::functions_aggregate::expr_fn::{count, grouping, sum};
    let v = col(Column::from_name(format!("{alias}_value")));
    let n = format!("{alias}_count");
    let d = |n: &str| col(Column::from_name(format!("{alias}_d_{n}")));
    let mut pre: Vec<Expr> = dims
        .iter()
        .map(|n| col(Column::from_name(n.as_str())).alias(format!("{alias}_d_{n}")))
        .collect();
    pre.push(value.alias(format!("{alias}_value")));
    let rows = b.project(pre)?.filter(v.clone().is_not_null())?;
    let keys: Vec<Expr> = dims.iter().map(|n| d(n)).collect();
    let mut cell = keys.clone();
    cell.push(v.clone());
    let fine = rows.aggregate(cell, vec![count(lit(1u8)).alias(&n)])?;
    if !totals {
        return Ok((fine, keys));
    }
    // Every subset of the dimensions, with the value.
    let sets: Vec<Vec<Expr>> = (0..1usize << dims.len())
        .map(|mask| {
            let mut set: Vec<Expr> = dims
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, n)| d(n))
                .collect();
            set.push(v.clone());
            set
        })
        .collect();
    let mut aggs: Vec<Expr> = dims
        .iter()
        .map(|n| grouping(d(n)).alias(format!("{alias}_g_{n}")))
        .collect();
    aggs.push(sum(col(Column::from_name(&n))).alias(&n));
    let mut group = keys;
    group.extend(
        dims.iter()
            .map(|n| col(Column::from_name(format!("{alias}_g_{n}")))),
    );
    let pairs = fine.aggregate(
        vec![Expr::GroupingSet(GroupingSet::GroupingSets(sets))],
        aggs,
    )?;
    Ok((pairs, group))
}

/// The aggregates `aggs` (each aliased) per cell of `dims`, as a plan whose aggregations
/// over it (with the same aliases, e.g. per grouping set of a cube) give the same result as
/// `aggs` over the rows: each row is grouped once, and the grouping sets roll up the cells.
/// The second aggregations come with the plan; `None` when an aggregate does not roll up
/// (only plain `count`, `sum`, `min` and `max` do, also with a filter).
fn rolled_up(
    aggs: &[Expr],
    dims: &[Expr],
    b: LogicalPlanBuilder,
) -> datafusion::error::Result<Option<(LogicalPlanBuilder, Vec<Expr>)>> {
    use datafusion::functions_aggregate::expr_fn::{max, min, sum};
    let mut partials = Vec::new();
    let mut finals = Vec::new();
    for (i, a) in aggs.iter().enumerate() {
        let Expr::Alias(alias) = a else {
            return Ok(None);
        };
        let Expr::AggregateFunction(f) = alias.expr.as_ref() else {
            return Ok(None);
        };
        if f.params.distinct || !f.params.order_by.is_empty() {
            return Ok(None);
        }
        let p = col(Column::from_name(format!("__p{i}")));
        let total = match f.func.name() {
            // A cell has at least one row, so a sum of counts is never NULL.
            "count" => datafusion::functions::core::expr_fn::coalesce(vec![sum(p), lit(0i64)]),
            "sum" => sum(p),
            "min" => min(p),
            "max" => max(p),
            _ => return Ok(None),
        };
        partials.push(alias.expr.as_ref().clone().alias(format!("__p{i}")));
        finals.push((total, alias.name.clone(), alias.expr.as_ref().clone()));
    }
    let schema = b.schema().clone();
    let fine = b.aggregate(dims.to_vec(), partials)?;
    let mut out = Vec::new();
    for (total, name, original) in finals {
        // A sum of sums may widen a decimal: keep the type of the aggregate over rows.
        let want = original.get_type(&schema)?;
        let total = if total.get_type(fine.schema())? == want {
            total
        } else {
            Expr::Cast(datafusion::logical_expr::Cast::new(Box::new(total), want))
        };
        out.push(total.alias(name));
    }
    Ok(Some((fine, out)))
}

/// `count(DISTINCT arg)` per group of `dims` (and per grouping set when `totals`), exact,
/// with ordinary groupings that spill under a memory limit and no per-group set of values.
/// Values are grouped by their 128-bit key (`functions::DistinctKey`).
///
/// The finest cells (the distinct tuples of `dims`, few) are numbered exactly from the
/// dense codes of their values (`cellsets::CellLanes`), so that a cell's number gives the
/// number of each group it lies in. A value counts once in each group that has one of its
/// cells: 1. per value, the set of its cells (`__cell_set`, a grouping that spills); 2.
/// over all values, per group the values whose set has a cell in it (`__group_counts`,
/// which holds one count per group and per cell, streaming past the sets); 3. the groups'
/// dimensions joined back from the cells. Only step 1 sees every value. The result has the
/// group columns of `value_pairs` and `alias`.
fn distinct_counts(
    b: LogicalPlanBuilder,
    dims: &[String],
    totals: bool,
    arg: &Expr,
    alias: &str,
) -> datafusion::error::Result<LogicalPlan> {
    use datafusion::common::NullEquality;
    use datafusion::logical_expr::ExprFunctionExt;
    let c = |n: String| col(Column::from_name(n));
    let key = format!("{alias}_key");
    let cell = format!("{alias}_cell");
    let set = format!("{alias}_set");
    let group = format!("{alias}_group");
    let value = format!("{alias}_value");
    let d = |n: &String| format!("{alias}_d_{n}");
    let code = |i: usize| format!("{alias}_code{i}");
    let codes = || (0..dims.len()).map(|i| c(code(i))).collect::<Vec<_>>();
    // A cell's number from the codes, with the dimensions' names for its errors.
    let lanes = || {
        crate::functions::cellsets::cell_lanes().call(
            codes()
                .into_iter()
                .chain(dims.iter().map(|n| lit(n.as_str())))
                .collect(),
        )
    };
    let value_key = datafusion::logical_expr::ScalarUDF::new_from_impl(
        crate::functions::DistinctKey::default(),
    );
    let dim_cols = || dims.iter().map(|n| c(n.clone())).collect::<Vec<_>>();
    let dim_out = || dims.iter().map(|n| c(d(n))).collect::<Vec<_>>();

    // The cells: their dimensions grouped, each dimension's values numbered 0, 1, … in
    // order (NULL is a value), each cell numbered from its codes. Without dimensions, one
    // cell numbered 0.
    let zero = || lit(ScalarValue::Decimal128(Some(0), 38, 0));
    let (cells, keyed) = if dims.is_empty() {
        let cells = LogicalPlanBuilder::empty(true).project(vec![zero().alias(&cell)])?;
        let keyed = b.filter(arg.clone().is_not_null())?.project(vec![
            zero().alias(&cell),
            value_key.call(vec![arg.clone()]).alias(&key),
        ])?;
        (cells, keyed)
    } else {
        let mut cells = b
            .clone()
            .project(dim_cols())?
            .aggregate(dim_cols(), Vec::<Expr>::new())?;
        for (i, dim) in dims.iter().enumerate() {
            let rank = datafusion::functions_window::expr_fn::dense_rank()
                .order_by(vec![c(dim.clone()).sort(true, true)])
                .build()?;
            cells = cells.window(vec![rank.alias(format!("{alias}_rank{i}"))])?;
        }
        let mut numbered: Vec<Expr> = dims.iter().map(|n| c(n.clone()).alias(d(n))).collect();
        numbered.extend(
            (0..dims.len()).map(|i| (c(format!("{alias}_rank{i}")) - lit(1u64)).alias(code(i))),
        );
        let cells = cells.project(numbered)?.project(
            dim_out()
                .into_iter()
                .chain(codes())
                .chain([lanes().alias(&cell)])
                .collect::<Vec<_>>(),
        )?;
        // Each row's cell: the few cells (dimensions and numbers) are the join's build side,
        // the rows stream past.
        let rows = b
            .project(
                dim_cols()
                    .into_iter()
                    .chain([arg.clone().alias(&value)])
                    .collect::<Vec<_>>(),
            )?
            .filter(c(value.clone()).is_not_null())?
            .build()?;
        let keyed = cells
            .clone()
            .project(
                dim_out()
                    .into_iter()
                    .chain([c(cell.clone())])
                    .collect::<Vec<_>>(),
            )?
            .join_detailed(
                rows,
                JoinType::Inner,
                (
                    dims.iter()
                        .map(|n| Column::from_name(d(n)))
                        .collect::<Vec<_>>(),
                    dims.iter().map(Column::from_name).collect::<Vec<_>>(),
                ),
                None,
                NullEquality::NullEqualsNull,
            )?
            .project(vec![
                c(cell.clone()),
                value_key.call(vec![c(value)]).alias(&key),
            ])?;
        (cells, keyed)
    };

    // 1. Per value, the set of its cells.
    let sets = keyed.aggregate(
        vec![c(key)],
        vec![
            crate::functions::cellsets::cell_set()
                .call(vec![c(cell.clone())])
                .alias(&set),
        ],
    )?;

    // 2. Per group, the values that have a cell in it: each value's set of cells gives its
    // groups, each counted once.
    let counted = format!("{alias}_counted");
    let counts = sets
        .aggregate(
            Vec::<Expr>::new(),
            vec![
                crate::functions::cellsets::group_counts()
                    .call(vec![c(set), lit(dims.len() as i64), lit(totals)])
                    .alias(&counted),
            ],
        )?
        .unnest_column(counted.as_str())?
        .project(vec![
            datafusion::functions::core::expr_fn::get_field(c(counted.clone()), "group")
                .alias(&group),
            datafusion::functions::core::expr_fn::get_field(c(counted), "n").alias(alias),
        ])?
        .build()?;

    // The groups' dimensions (NULL where a grouping set leaves one out) and numbers.
    let labels = if totals && !dims.is_empty() {
        let sets: Vec<Vec<Expr>> = (0..1usize << dims.len())
            .map(|kept| {
                (0..dims.len())
                    .filter(|i| kept & (1 << i) != 0)
                    .flat_map(|i| [c(d(&dims[i])), c(code(i))])
                    .collect()
            })
            .collect();
        let flags: Vec<Expr> = dims
            .iter()
            .map(|n| {
                datafusion::functions_aggregate::expr_fn::grouping(c(d(n)))
                    .alias(format!("{alias}_g_{n}"))
            })
            .collect();
        cells
            .aggregate(
                vec![Expr::GroupingSet(GroupingSet::GroupingSets(sets))],
                flags,
            )?
            .project(
                dim_out()
                    .into_iter()
                    .chain(dims.iter().map(|n| c(format!("{alias}_g_{n}"))))
                    .chain([lanes().alias(&cell)])
                    .collect::<Vec<_>>(),
            )?
    } else {
        cells.project(
            dim_out()
                .into_iter()
                .chain([c(cell.clone())])
                .collect::<Vec<_>>(),
        )?
    };
    let mut out = dim_out();
    if totals {
        out.extend(dims.iter().map(|n| c(format!("{alias}_g_{n}"))));
    }
    out.push(c(alias.to_string()));
    labels
        .join(
            counts,
            JoinType::Inner,
            (
                vec![Column::from_name(&cell)],
                vec![Column::from_name(&group)],
            ),
            None,
        )?
        .project(out)?
        .build()
}

/// `median(arg)` of a `DOUBLE` per group of `dims` (and per grouping set when `totals`),
/// exact and in bounded memory: DataFusion's median keeps every value of a group in memory
/// (each value once per grouping set), so it is planned as the count of each (group, value)
/// pair, a running count in value order, and per group the smallest values whose running
/// count reaches the middle positions `(n + 1) / 2` and `n / 2 + 1`; their mean is the
/// median, as DataFusion computes it. All are groupings and sorts that spill. The result
/// has the group columns of `value_pairs` and `alias`.
fn medians(
    b: LogicalPlanBuilder,
    dims: &[String],
    totals: bool,
    arg: &Expr,
    alias: &str,
) -> datafusion::error::Result<LogicalPlan> {
    use datafusion::functions_aggregate::expr_fn::min;
    use datafusion::logical_expr::{
        ExprFunctionExt, WindowFrame, WindowFrameBound, WindowFrameUnits, WindowFunctionDefinition,
        expr::WindowFunction,
    };
    let c = |n: &str| col(Column::from_name(format!("{alias}_{n}")));
    let (pairs, group) = value_pairs(b, dims, totals, arg.clone(), alias)?;
    let running = |frame: WindowFrame, ordered: bool| {
        let w =
            Expr::from(WindowFunction::new(
                WindowFunctionDefinition::AggregateUDF(
                    datafusion::functions_aggregate::sum::sum_udaf(),
                ),
                vec![c("count")],
            ))
            .partition_by(group.clone())
            .window_frame(frame);
        if ordered {
            w.order_by(vec![c("value").sort(true, false)]).build()
        } else {
            w.build()
        }
    };
    let upto = running(
        WindowFrame::new_bounds(
            WindowFrameUnits::Rows,
            WindowFrameBound::Preceding(ScalarValue::UInt64(None)),
            WindowFrameBound::CurrentRow,
        ),
        true,
    )?
    .alias(format!("{alias}_upto"));
    let all = running(WindowFrame::new(None), false)?.alias(format!("{alias}_n"));
    let low = min(c("value"))
        .filter(c("upto").gt_eq((c("n") + lit(1i64)) / lit(2i64)))
        .build()?
        .alias(format!("{alias}_low"));
    let high = min(c("value"))
        .filter(c("upto").gt_eq(c("n") / lit(2i64) + lit(1i64)))
        .build()?
        .alias(format!("{alias}_high"));
    let mut out = group.clone();
    out.push(
        when(c("low").eq(c("high")), c("low"))
            .otherwise((c("low") + c("high")) / lit(2.0f64))?
            .alias(alias),
    );
    pairs
        .window(vec![upto])?
        .window(vec![all])?
        .aggregate(group, vec![low, high])?
        .project(out)?
        .build()
}

/// Plans the steps of one line.
pub struct Planner<'a> {
    pub line: &'a Line,
    pub state: SessionState,
    pub params: BTreeMap<String, ScalarValue>,
    pub codesets: &'a BTreeMap<String, Arc<MemTable>>,
    /// The bytes of a unique rule's first-pass filter (`seen::SeenBefore`), when the plan
    /// runs in this process so that all partitions share one; `None` on a cluster, where the
    /// first pass groups every row's keys.
    pub unique_filter: Option<usize>,
}

type Diags = Vec<Diagnostic>;

impl Planner<'_> {
    fn diag(&self, code: Code, at: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(code, &self.line.file, at, message)
    }

    /// Plans step `name` over `inputs` (providers of the input steps, with what is known
    /// of them). Expression errors come back as diagnostics pointing at the expression.
    /// Which output columns are personal is computed from the plan ([`crate::plan::personal`]).
    pub fn plan_step(&self, name: &str, inputs: &Inputs) -> Result<StepPlan, Diags> {
        let mut p = self.plan_kind(name, inputs)?;
        let step = crate::line::load::step(&self.line.spec, name);
        let mut lineage = match &step.source {
            Some(s) => s
                .columns
                .iter()
                .filter(|(_, c)| c.personal)
                .map(|(n, _)| (n.value.clone(), Taint::declared(&n.value)))
                .collect(),
            None => {
                let of_inputs = inputs
                    .iter()
                    .map(|(n, (_, i))| (n.clone(), i.lineage.clone()))
                    .collect();
                crate::plan::personal::of_plan(&p.plan, &of_inputs, name)
            }
        };
        lineage.retain(|c, _| p.output.column_with_name(c).is_some());
        if let (Some(v), Some(s)) = (&step.validate, &p.submitter)
            && let Some(t) = lineage.get(s)
        {
            return Err(vec![self.personal_diag(
                v.submitter.as_ref().map_or(v.input.at, |n| n.at),
                format!("the submitter column `{s}` identifies a person"),
                s,
                t,
            )]);
        }
        if step.source.is_none() {
            let of_inputs: BTreeMap<String, Lineage> = inputs
                .iter()
                .map(|(n, (_, i))| (n.clone(), i.lineage.clone()))
                .collect();
            let counts = inputs
                .iter()
                .map(|(n, (_, i))| (n.clone(), i.person_counts.clone()))
                .collect();
            for c in crate::plan::personal::person_counts(&p.plan, &of_inputs, &counts) {
                if !p.person_counts.contains(&c) && p.output.column_with_name(&c).is_some() {
                    p.person_counts.push(c);
                }
            }
        }
        p.personal = lineage.keys().cloned().collect();
        p.pseudonymised = lineage
            .iter()
            .filter(|(_, t)| t.pseudonym)
            .map(|(c, _)| c.clone())
            .collect();
        p.lineage = lineage;
        Ok(p)
    }

    /// V206: a personal value would leave where it may be, placed at the expression that
    /// made it (or its declaration), with its path.
    fn personal_diag(&self, at: Pos, what: String, column: &str, t: &Taint) -> Diagnostic {
        let at = self.made_at(t).unwrap_or(at);
        self.diag(
            Code::V206,
            at,
            format!("{what}: {}", t.describe(column)),
        )
        .with_hint("drop it, aggregate it (count(DISTINCT …)) or generalise it (hetu_birth_year, hetu_age, hetu_sex) before it leaves the step")
    }

    /// Where a personal value was last computed: the expression in the line file.
    fn made_at(&self, t: &Taint) -> Option<Pos> {
        let Some((step, column)) = &t.made else {
            let declared = t.path.last()?.trim_end_matches(" (personal)");
            return self.declaration_of(declared);
        };
        let spec = self.line.spec.steps.get(step.as_str())?;
        if let Some(h) = &spec.harmonise {
            if let Some(e) = h.derive.get(column.as_str()) {
                return Some(self.locate(e, ""));
            }
            return h
                .rename
                .values()
                .chain(&h.pseudonymise)
                .find(|n| &n.value == column)
                .map(|n| n.at);
        }
        if let Some(a) = &spec.aggregate {
            if let Some(e) = a.measures.get(column.as_str()) {
                return Some(self.locate(e, ""));
            }
            return a
                .by
                .iter()
                .flat_map(|d| d.parts())
                .map(|(n, _)| n)
                .find(|n| &n.value == column)
                .map(|n| n.at);
        }
        spec.sql.as_ref().map(|q| self.locate(&q.query, ""))
    }

    fn plan_kind(&self, name: &str, inputs: &Inputs) -> Result<StepPlan, Diags> {
        let step = crate::line::load::step(&self.line.spec, name);
        let scan = |input: &Name| -> Result<(LogicalPlanBuilder, &InputInfo), Diags> {
            let (provider, info) = inputs.get(input.value.as_str()).ok_or_else(|| {
                vec![self.diag(
                    Code::V102,
                    input.at,
                    format!("`{}` has no output", input.value),
                )]
            })?;
            let b = LogicalPlanBuilder::scan(
                input.value.as_str(),
                provider_as_source(provider.clone()),
                None,
            )
            .map_err(|e| vec![self.diag(Code::V205, input.at, e.to_string())])?;
            Ok((b, info))
        };
        if let Some(s) = &step.source {
            let (b, _) = scan(&crate::line::spec::Sp::synthetic(name.to_string()))?;
            return self.plan_source(s, b);
        }
        if let Some(v) = &step.validate {
            let (b, info) = scan(&v.input)?;
            let mut others = BTreeMap::new();
            for r in &v.rules {
                if let Some(e) = &r.exists_in {
                    others.insert(e.step.value.clone(), scan(&e.step)?.0);
                }
            }
            return self.plan_validate(v, b, info, others);
        }
        if let Some(h) = &step.harmonise {
            let (b, info) = scan(&h.input)?;
            return self.plan_harmonise(h, b, info);
        }
        if let Some(a) = &step.aggregate {
            let (b, info) = scan(&a.input)?;
            let mut populations = BTreeMap::new();
            for r in a.rates.values() {
                populations.insert(r.population.value.clone(), scan(&r.population)?.0);
            }
            return self.plan_aggregate(a, b, info, populations);
        }
        if let Some(p) = &step.publish {
            let (b, info) = scan(&p.input)?;
            return self.plan_publish(p, b, info);
        }
        if let Some(q) = &step.sql {
            return self.plan_sql(q, inputs);
        }
        Err(vec![])
    }

    /// Parses an expression against a schema, binds parameters, and type-checks it.
    pub fn expr(&self, text: &Name, schema: &DFSchema) -> Result<Expr, Diags> {
        let e = self
            .state
            .create_logical_expr(&text.value, schema)
            .map_err(|e| vec![self.expr_error(text, e)])?;
        let e = self.bind(e, text)?;
        // Type-check now, so that a mismatch is reported at the expression.
        e.get_type(schema)
            .map_err(|err| vec![self.expr_error(text, err)])?;
        Ok(fixed_intervals(e, schema))
    }

    fn bind(&self, e: Expr, text: &Name) -> Result<Expr, Diags> {
        let mut unknown = None;
        let bound = e
            .transform_up(|e| match &e {
                Expr::Placeholder(p) => {
                    let key = p.id.trim_start_matches('$');
                    match self.params.get(key) {
                        Some(v) => Ok(Transformed::yes(lit(v.clone()))),
                        None => {
                            unknown = Some(key.to_string());
                            Ok(Transformed::no(e))
                        }
                    }
                }
                _ => Ok(Transformed::no(e)),
            })
            .map_err(|err| vec![self.expr_error(text, err)])?
            .data;
        if let Some(u) = unknown {
            let mut d = self.diag(
                Code::V301,
                self.locate(text, &format!("${u}")),
                format!("unknown parameter `${u}`"),
            );
            if let Some(c) = crate::diag::closest(&u, self.params.keys().map(String::as_str)) {
                d = d.with_hint(format!("did you mean `${c}`?"));
            }
            return Err(vec![d]);
        }
        Ok(bound)
    }

    /// The place of `needle` inside an expression written at `text.at`.
    fn locate(&self, text: &Name, needle: &str) -> Pos {
        crate::diag::locate_in(&self.line.text, text.at, needle)
    }

    fn expr_error(&self, text: &Name, e: DataFusionError) -> Diagnostic {
        let root = e.find_root();
        if let DataFusionError::SchemaError(se, _) = root
            && let SchemaError::FieldNotFound {
                field,
                valid_fields,
            } = se.as_ref()
        {
            let name = field.name();
            let candidates: Vec<&str> = valid_fields
                .iter()
                .map(|c| c.name())
                .filter(|c| !c.starts_with("__"))
                .collect();
            let mut d = self.diag(
                Code::V201,
                self.locate(text, name),
                format!("unknown column `{name}`"),
            );
            d = match did_you_mean(name, candidates.iter().copied()) {
                Some(h) => d.with_hint(h),
                None => d.with_hint(format!(
                    "the input has {}",
                    candidates
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            };
            return d;
        }
        let msg = root.to_string();
        let mut clean = msg
            .trim_start_matches("Error during planning: ")
            .trim_start_matches("SQL error: ")
            .to_string();
        let mut at = self.locate(text, "");
        // sqlparser says where in the expression it stopped: "… at Line: 1, Column: 7".
        if let Some(p) = clean.find("ParserError(\"") {
            let inner = clean[p + 13..].trim_end_matches("\")").to_string();
            if let Some((m, pos)) = inner.rsplit_once(" at Line: ")
                && let Some((l, c)) = pos.split_once(", Column: ")
                && l == "1"
                && let Ok(c) = c.trim().parse::<u32>()
            {
                at.col += c.saturating_sub(1);
                clean = m.to_string();
            } else {
                clean = inner;
            }
        }
        let code = match root {
            DataFusionError::SQL(..) => Code::V203,
            _ if msg.contains("ParserError") => Code::V203,
            _ if msg.contains("coerc")
                || msg.contains("common type")
                || msg.contains("not supported for")
                || msg.contains("Cannot infer")
                || msg.contains("No function matches")
                || msg.contains("signature") =>
            {
                Code::V202
            }
            _ => Code::V205,
        };
        self.diag(
            code,
            at,
            format!("in `{}`: {}", text.value, first_line(&clean)),
        )
    }

    fn plan_source(&self, s: &SourceSpec, b: LogicalPlanBuilder) -> Result<StepPlan, Diags> {
        let mut exprs = Vec::new();
        let mut rules = Vec::new();
        for (i, (name, c)) in s.columns.iter().enumerate() {
            let t = arrow_type(c.r#type.value);
            let raw = col(Column::from_name(name.value.as_str()));
            let typed = if t == DataType::Utf8 {
                raw.clone()
            } else if c.r#type.value == ColumnType::Timestamp {
                // TRY_CAST, faster on the common forms.
                datafusion::logical_expr::ScalarUDF::new_from_impl(
                    crate::functions::TextTimestamp::default(),
                )
                .call(vec![raw.clone()])
            } else {
                Expr::TryCast(datafusion::logical_expr::TryCast::new(
                    Box::new(raw.clone()),
                    t.clone(),
                ))
            };
            // A reason names the column and what was expected, never the value.
            let what = lit(format!(
                "column `{}`: not a {}",
                name.value,
                c.r#type.value.as_str()
            ));
            exprs.push(typed.clone().alias(name.value.as_str()));
            let null = || lit(ScalarValue::Utf8(None));
            let err = |e: DataFusionError| vec![self.diag(Code::V205, name.at, e.to_string())];
            if c.required {
                let column = format!("{RULE_PREFIX}{i}q");
                let r = when(
                    raw.clone().is_null(),
                    lit(format!("column `{}` is required", name.value)),
                )
                .otherwise(null())
                .map_err(err)?;
                exprs.push(r.alias(&column));
                rules.push(TapRule {
                    column,
                    id: format!("required-{}", name.value),
                    severity: Severity::Reject,
                });
            }
            if t != DataType::Utf8 {
                let column = format!("{RULE_PREFIX}{i}t");
                let r = when(raw.clone().is_not_null().and(typed.is_null()), what)
                    .otherwise(null())
                    .map_err(err)?;
                exprs.push(r.alias(&column));
                rules.push(TapRule {
                    column,
                    id: format!("type-{}", name.value),
                    severity: Severity::Reject,
                });
            }
        }
        exprs.push(col(OBJECT_COLUMN));
        exprs.push(col(ROW_COLUMN));
        let plan = b
            .project(exprs)
            .and_then(|b| b.build())
            .map_err(|e| vec![self.diag(Code::V205, s.location.at, e.to_string())])?;
        Ok(self.finish(StepKind::Source, plan, rules, vec![]))
    }

    fn finish(
        &self,
        kind: StepKind,
        plan: LogicalPlan,
        rules: Vec<TapRule>,
        dimensions: Vec<String>,
    ) -> StepPlan {
        let fields: Vec<Field> = plan
            .schema()
            .fields()
            .iter()
            .filter(|f| !f.name().starts_with("__"))
            .map(|f| f.as_ref().clone())
            .collect();
        let filtered = plan
            .schema()
            .has_column_with_unqualified_name(FILTER_COLUMN);
        StepPlan {
            kind,
            output: Arc::new(Schema::new(fields)),
            plan,
            rules,
            // Filled in by `plan_step`, from the plan.
            personal: BTreeSet::new(),
            pseudonymised: BTreeSet::new(),
            lineage: Lineage::new(),
            person_counts: Vec::new(),
            dimensions,
            filtered,
            dataset_checks: Vec::new(),
            submitter: None,
            metrics: Vec::new(),
            disclosure: None,
        }
    }

    fn column_check(&self, schema: &DFSchema, name: &Name) -> Result<DataType, Diagnostic> {
        match schema.field_with_unqualified_name(name) {
            Ok(f) => Ok(f.data_type().clone()),
            Err(_) => {
                let fields: Vec<String> = schema
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .filter(|f| !f.starts_with("__"))
                    .collect();
                let mut d = self.diag(
                    Code::V201,
                    name.at,
                    format!("unknown column `{}`", name.value),
                );
                if let Some(h) = did_you_mean(name, fields.iter().map(String::as_str)) {
                    d = d.with_hint(h);
                }
                Err(d)
            }
        }
    }

    fn rule_expr(&self, index: usize, rule: &RuleSpec, schema: &DFSchema) -> Result<Expr, Diags> {
        let null = || lit(ScalarValue::Utf8(None));
        let colcheck = |n: &Name| self.column_check(schema, n).map_err(|d| vec![d]);
        let id = &rule.id.value;
        let e = if let Some(req) = &rule.required {
            let names = req.names();
            let mut c = case(lit(true));
            let mut first = true;
            for n in names {
                colcheck(n)?;
                let msg = lit(format!("`{}` is missing", n.value));
                c = if first {
                    when(col(Column::from_name(n.value.as_str())).is_null(), msg)
                } else {
                    c.when(col(Column::from_name(n.value.as_str())).is_null(), msg)
                };
                first = false;
            }
            c.otherwise(null())
        } else if let Some(u) = &rule.unique {
            // The duplicates were joined in by `join_duplicates`: a row is a duplicate when
            // its key has a first occurrence elsewhere.
            let names = u.names();
            for n in &names {
                colcheck(n)?;
            }
            let first_object = col(Column::from_name(format!("__u{index}_object")));
            let first_row = col(Column::from_name(format!("__u{index}_row")));
            let label = names
                .iter()
                .map(|n| format!("`{}`", n.value))
                .collect::<Vec<_>>()
                .join(", ");
            let is_first = col(OBJECT_COLUMN)
                .eq(first_object)
                .and(col(ROW_COLUMN).eq(first_row.clone()));
            when(
                first_row.clone().is_not_null().and(is_first.is_not_true()),
                datafusion::functions::string::expr_fn::concat(vec![
                    lit(format!("duplicate {label}; first at row ")),
                    cast_text(first_row),
                ]),
            )
            .otherwise(null())
        } else if let Some(v) = &rule.values {
            let t = colcheck(&v.column)?;
            let c = col(Column::from_name(v.column.value.as_str()));
            let c = if t == DataType::Utf8 {
                c
            } else {
                Expr::Cast(datafusion::logical_expr::Cast::new(
                    Box::new(c),
                    DataType::Utf8,
                ))
            };
            let list: Vec<Expr> = v.values.iter().map(|s| lit(s.clone())).collect();
            when(
                c.clone().is_not_null().and(c.clone().in_list(list, true)),
                lit(format!(
                    "`{}` is not one of {}",
                    v.column.value,
                    v.values.join(", ")
                )),
            )
            .otherwise(null())
        } else if let Some(h) = &rule.hetu {
            colcheck(h)?;
            let f = self
                .state
                .scalar_functions()
                .get("hetu_problem")
                .cloned()
                .ok_or_else(|| {
                    vec![self.diag(Code::V205, h.at, "hetu_problem is not registered")]
                })?;
            let c = col(Column::from_name(h.value.as_str()));
            let mut problem = f.call(vec![c.clone()]);
            if !rule.temporary {
                // Individual numbers 900–999 are temporary codes (characters 8–10).
                let individual = datafusion::functions::unicode::expr_fn::substr(
                    cast_text(c.clone()),
                    lit(8i64),
                );
                problem = datafusion::functions::core::expr_fn::coalesce(vec![
                    problem,
                    when(
                        individual.gt_eq(lit("900")),
                        lit("temporary personal identity codes are not accepted here"),
                    )
                    .otherwise(null())
                    .map_err(|e| vec![self.diag(Code::V205, h.at, e.to_string())])?,
                ]);
            }
            // NULL for NULL: the problem itself (computed once per row, not in a condition
            // and again in its branch).
            Ok(problem)
        } else if let Some(cs) = &rule.in_codeset {
            let t = colcheck(&cs.column)?;
            let codes = self.codeset_codes(&cs.codeset)?;
            let c = col(Column::from_name(cs.column.value.as_str()));
            let c = if t == DataType::Utf8 {
                c
            } else {
                Expr::Cast(datafusion::logical_expr::Cast::new(
                    Box::new(c),
                    DataType::Utf8,
                ))
            };
            when(
                c.clone().is_not_null().and(
                    c.clone()
                        .in_list(codes.into_iter().map(lit).collect(), true),
                ),
                lit(format!(
                    "`{}` is not in code set `{}`",
                    cs.column.value, cs.codeset.value
                )),
            )
            .otherwise(null())
        } else if let Some(p) = &rule.in_period {
            let t = colcheck(p)?;
            let (Some(start), Some(end)) = (
                self.params.get("period_start"),
                self.params.get("period_end"),
            ) else {
                return Err(vec![self.diag(
                    Code::V301,
                    p.at,
                    "the line has no period parameter",
                )]);
            };
            let c = col(Column::from_name(p.value.as_str()));
            let outside = match (&t, start, end) {
                // A timestamp without a time zone against the period's first midnight and
                // the one after its last day.
                (
                    DataType::Timestamp(unit, None),
                    ScalarValue::Date32(Some(_)),
                    ScalarValue::Date32(Some(_)),
                ) => Some(
                    c.clone()
                        .lt(midnight(lit(start.clone()), *unit, false))
                        .or(c.clone().gt_eq(midnight(lit(end.clone()), *unit, true))),
                ),
                _ => None,
            };
            let day = match t {
                _ if outside.is_some() => c.clone(),
                DataType::Date32 => c.clone(),
                DataType::Timestamp(..) => Expr::Cast(datafusion::logical_expr::Cast::new(
                    Box::new(c.clone()),
                    DataType::Date32,
                )),
                other => {
                    return Err(vec![self.diag(
                        Code::V202,
                        p.at,
                        format!(
                            "`{}` is {other}; the period check needs a date or timestamp",
                            p.value
                        ),
                    )]);
                }
            };
            let outside = outside.unwrap_or_else(|| {
                day.clone()
                    .lt(lit(start.clone()))
                    .or(day.gt(lit(end.clone())))
            });
            when(
                c.is_not_null().and(outside),
                lit(format!(
                    "outside-period: `{}` is not in the period",
                    p.value
                )),
            )
            .otherwise(null())
        } else if let Some(r) = &rule.range {
            let t = colcheck(&r.column)?;
            let c = col(Column::from_name(r.column.value.as_str()));
            let mut cond: Option<Expr> = None;
            let mut parts = Vec::new();
            for (bound, is_min) in [(&r.min, true), (&r.max, false)] {
                let Some(b) = bound else { continue };
                let v = self.bound(b, &t, &r.column)?;
                let broken = if is_min {
                    c.clone().lt(lit(v))
                } else {
                    c.clone().gt(lit(v))
                };
                parts.push(format!(
                    "{} {}",
                    if is_min { "≥" } else { "≤" },
                    b.value.text()
                ));
                cond = Some(match cond {
                    Some(x) => x.or(broken),
                    None => broken,
                });
            }
            let Some(cond) = cond else {
                return Err(vec![self.diag(
                    Code::V004,
                    r.column.at,
                    "a range needs `min`, `max` or both",
                )]);
            };
            when(
                c.clone().is_not_null().and(cond),
                lit(format!(
                    "`{}` is out of range; expected {}",
                    r.column.value,
                    parts.join(" and ")
                )),
            )
            .otherwise(null())
        } else if let Some(r) = &rule.regex {
            colcheck(&r.column)?;
            let anchored = format!("^(?:{})$", r.pattern.value);
            if let Err(e) = regex::Regex::new(&anchored) {
                return Err(vec![self.diag(
                    Code::V203,
                    crate::diag::locate_in(&self.line.text, r.pattern.at, ""),
                    format!("invalid pattern: {}", first_line(&e.to_string())),
                )]);
            }
            let c = cast_text(col(Column::from_name(r.column.value.as_str())));
            let matches =
                datafusion::functions::regex::expr_fn::regexp_like(c.clone(), lit(anchored), None);
            when(
                c.clone().is_not_null().and(matches.is_false()),
                lit(format!(
                    "`{}` does not match `{}`",
                    r.column.value, r.pattern.value
                )),
            )
            .otherwise(null())
        } else if let Some(order) = &rule.order {
            if order.len() < 2 {
                return Err(vec![self.diag(
                    Code::V003,
                    rule.id.at,
                    "`order` needs two or more columns",
                )]);
            }
            let mut types = Vec::new();
            for n in order {
                types.push(colcheck(n)?);
            }
            let same = types.windows(2).all(|w| w[0] == w[1]);
            let value = |n: &Name| {
                let c = col(Column::from_name(n.value.as_str()));
                if same {
                    c
                } else {
                    Expr::Cast(datafusion::logical_expr::Cast::new(
                        Box::new(c),
                        DataType::Timestamp(TimeUnit::Microsecond, None),
                    ))
                }
            };
            let mut c = case(lit(true));
            for (k, pair) in order.windows(2).enumerate() {
                let (a, b) = (value(&pair[0]), value(&pair[1]));
                let broken = a
                    .clone()
                    .is_not_null()
                    .and(b.clone().is_not_null())
                    .and(a.gt(b));
                let msg = lit(format!("`{}` is after `{}`", pair[0].value, pair[1].value));
                c = if k == 0 {
                    when(broken, msg)
                } else {
                    c.when(broken, msg)
                };
            }
            c.otherwise(null())
        } else if let Some(e) = &rule.exists_in {
            colcheck(&e.column)?;
            let key = format!("__e{index}");
            let c = col(Column::from_name(e.column.value.as_str()));
            when(
                c.clone()
                    .is_not_null()
                    .and(col(Column::from_name(key)).is_null()),
                lit(format!(
                    "`{}` is not in step `{}`",
                    e.column.value, e.step.value
                )),
            )
            .otherwise(null())
        } else if let Some(x) = &rule.expr {
            let e = self.expr(x, schema)?;
            if e.get_type(schema)
                .map_err(|err| vec![self.expr_error(x, err)])?
                != DataType::Boolean
            {
                return Err(vec![self.diag(
                    Code::V202,
                    self.locate(x, ""),
                    format!("`{}` is not a condition (true/false)", x.value),
                )]);
            }
            when(e.is_false(), lit(format!("`{}` does not hold", x.value))).otherwise(null())
        } else {
            return Err(vec![]);
        };
        let e = e.map_err(|err| vec![self.diag(Code::V205, rule.id.at, err.to_string())])?;
        let e = match &rule.when {
            Some(w) => {
                let cond = self.expr(w, schema)?;
                when(cond.is_true(), e)
                    .otherwise(null())
                    .map_err(|err| vec![self.diag(Code::V205, w.at, err.to_string())])?
            }
            None => e,
        };
        let _ = id;
        Ok(e)
    }

    /// Where a column is declared or made: a source column, a derived or renamed column, or a
    /// measure.
    fn declaration_of(&self, column: &str) -> Option<Pos> {
        for step in self.line.spec.steps.values() {
            if let Some(s) = &step.source
                && let Some((k, _)) = s.columns.get_key_value(column)
            {
                return Some(k.at);
            }
            if let Some(h) = &step.harmonise {
                if let Some((k, _)) = h.derive.get_key_value(column) {
                    return Some(k.at);
                }
                if let Some(new) = h.rename.values().find(|n| n.value == column) {
                    return Some(new.at);
                }
            }
            if let Some(a) = &step.aggregate
                && let Some((k, _)) = a.measures.get_key_value(column)
            {
                return Some(k.at);
            }
        }
        None
    }

    /// V207 for each of `columns` that is handled as an identity code (`what`) but is not
    /// personal in `input`: nothing would protect it.
    fn declared_personal<'n>(
        &self,
        columns: impl Iterator<Item = &'n Name>,
        input: &InputInfo,
        what: &str,
    ) -> Result<(), Diags> {
        let undeclared: Diags = columns
            .filter(|c| !input.personal.contains(&c.value))
            .map(|c| {
                self.diag(
                    Code::V207,
                    c.at,
                    format!(
                        "column `{}` {what} but is not personal: declare it `personal: true` where it is read",
                        c.value
                    ),
                )
            })
            .collect();
        if undeclared.is_empty() {
            Ok(())
        } else {
            Err(undeclared)
        }
    }

    /// A range bound as a value of the column's type.
    fn bound(
        &self,
        b: &crate::line::spec::Sp<crate::line::spec::Scalar>,
        t: &DataType,
        column: &Name,
    ) -> Result<ScalarValue, Diags> {
        let v = match &b.value {
            crate::line::spec::Scalar::Integer(i) => ScalarValue::Int64(Some(*i)),
            crate::line::spec::Scalar::Number(n) => ScalarValue::Float64(Some(*n)),
            crate::line::spec::Scalar::Text(s) => ScalarValue::Utf8(Some(s.clone())),
        };
        let target = if matches!(t, DataType::Int64) && matches!(v, ScalarValue::Float64(_)) {
            DataType::Float64
        } else {
            t.clone()
        };
        v.cast_to(&target)
            .ok()
            .filter(|v| !v.is_null())
            .ok_or_else(|| {
                vec![self.diag(
                    Code::V202,
                    b.at,
                    format!(
                        "bound `{}` is not a value of `{}` ({t})",
                        b.value.text(),
                        column.value
                    ),
                )]
            })
    }

    fn codeset_codes(&self, name: &Name) -> Result<Vec<String>, Diags> {
        let table = self.codesets.get(name.value.as_str()).ok_or_else(|| {
            vec![self.diag(
                Code::V303,
                name.at,
                format!("unknown code set `{}`", name.value),
            )]
        })?;
        let key = &self.line.spec.codesets[name.value.as_str()].key.value;
        Ok(crate::line::codeset::codes(table, key))
    }

    fn plan_validate(
        &self,
        v: &ValidateSpec,
        mut b: LogicalPlanBuilder,
        info: &InputInfo,
        others: BTreeMap<String, LogicalPlanBuilder>,
    ) -> Result<StepPlan, Diags> {
        // A column checked as an identity code is one: undeclared, it would be neither
        // traced nor kept from the cluster.
        self.declared_personal(
            v.rules.iter().filter_map(|r| r.hetu.as_ref()),
            info,
            "is checked as an identity code",
        )?;
        let err = |at: Pos| {
            move |e: DataFusionError| {
                vec![Diagnostic::error(
                    Code::V205,
                    &self.line.file,
                    at,
                    first_line(&e.to_string()),
                )]
            }
        };
        let schema = b.schema().clone();
        let mut exprs: Vec<Expr> = schema.columns().into_iter().map(col).collect();
        let mut rules = Vec::new();
        let mut diags = Vec::new();
        let mut dataset_checks = Vec::new();
        let base = b.clone();
        // Relationships join the keys of the other step first.
        for (i, rule) in v.rules.iter().enumerate() {
            let Some(e) = &rule.exists_in else { continue };
            let Some(other) = others.get(e.step.value.as_str()) else {
                continue;
            };
            let key = e.key.clone().unwrap_or_else(|| e.column.clone());
            self.column_check(other.schema(), &key)
                .map_err(|d| vec![d])?;
            let alias = format!("__e{i}");
            let keys = other
                .clone()
                .project(vec![
                    cast_text(col(Column::from_name(key.value.as_str()))).alias(&alias),
                ])
                .and_then(|k| k.distinct())
                .and_then(|k| k.build())
                .map_err(err(e.step.at))?;
            self.column_check(&schema, &e.column).map_err(|d| vec![d])?;
            let on = cast_text(col(Column::from_name(e.column.value.as_str())))
                .eq(col(Column::from_name(alias)));
            // The keys are the join's build side; the rows stream past them.
            b = LogicalPlanBuilder::from(keys)
                .join_on(
                    b.build().map_err(err(e.step.at))?,
                    JoinType::Right,
                    vec![on],
                )
                .map_err(err(e.step.at))?;
        }
        // Duplicate keys, without sorting the rows: (1) the candidate keys, whose 128-bit
        // `DistinctKey`s a Bloom filter saw before in the scan (`seen::SeenBefore`; on a
        // cluster, a grouping of every row's keys counts them); (2) the rows with a candidate
        // key (few) are grouped by the keys themselves — exact — for the count and the first
        // occurrence; (3) those keys are the build side of a join the rows stream past. A
        // false positive or a key collision in (1) only adds a candidate that (2) drops.
        let distinct_key = datafusion::logical_expr::ScalarUDF::new_from_impl(
            crate::functions::DistinctKey::default(),
        );
        for (i, rule) in v.rules.iter().enumerate() {
            let Some(u) = &rule.unique else { continue };
            let names = u.names();
            for n in &names {
                self.column_check(&schema, n).map_err(|d| vec![d])?;
            }
            let c = |n: &Name| col(Column::from_name(n.value.as_str()));
            let u_col = |what: String| col(Column::from_name(format!("__u{i}_{what}")));
            use datafusion::functions_aggregate::expr_fn::{count, first_value};
            let present = names
                .iter()
                .map(|n| c(n).is_not_null())
                .reduce(|a, b| a.and(b))
                .unwrap_or(lit(true));
            let hashed: Vec<Expr> = names
                .iter()
                .enumerate()
                .map(|(j, n)| distinct_key.call(vec![c(n)]).alias(format!("__u{i}_h{j}")))
                .collect();
            // The filter's end: on the second scan, which starts after the first pass.
            let mut seen_done = None;
            let candidates = if let Some(bytes) = self.unique_filter {
                let filter = crate::steps::validate::seen::SeenBefore::new(
                    bytes,
                    self.state.runtime_env().memory_pool.clone(),
                );
                seen_done = Some(datafusion::logical_expr::ScalarUDF::new_from_impl(
                    filter.done(),
                ));
                let seen = datafusion::logical_expr::ScalarUDF::new_from_impl(filter);
                base.clone()
                    .filter(present.clone())
                    .and_then(|d| d.filter(seen.call(names.iter().map(|n| c(n)).collect())))
                    .and_then(|d| d.aggregate(hashed, Vec::<Expr>::new()))
            } else {
                base.clone()
                    .filter(present.clone())
                    .and_then(|d| {
                        d.aggregate(hashed, vec![count(lit(1u8)).alias(format!("__u{i}_c"))])
                    })
                    .and_then(|d| d.filter(u_col("c".into()).gt(lit(1i64))))
            }
            .and_then(|d| d.build())
            .map_err(err(rule.id.at))?;
            let mut rows: Vec<Expr> = Vec::new();
            let mut on_hash = Vec::new();
            let mut keys = Vec::new();
            let mut on = Vec::new();
            for (j, n) in names.iter().enumerate() {
                rows.push(c(n).alias(format!("__u{i}_k{j}")));
                let hash = distinct_key.call(vec![c(n)]);
                let hash = match (&seen_done, j) {
                    (Some(done), 0) => done.call(vec![hash]),
                    _ => hash,
                };
                rows.push(hash.alias(format!("__u{i}_r{j}")));
                on_hash.push(u_col(format!("h{j}")).eq(u_col(format!("r{j}"))));
                keys.push(u_col(format!("k{j}")));
                on.push(u_col(format!("k{j}")).eq(col(Column::new(
                    Some(v.input.value.as_str()),
                    n.value.as_str(),
                ))));
            }
            rows.push(col(OBJECT_COLUMN).alias(format!("__u{i}_o")));
            rows.push(col(ROW_COLUMN).alias(format!("__u{i}_w")));
            let order = vec![
                SortExpr::new(u_col("o".into()), true, false),
                SortExpr::new(u_col("w".into()), true, false),
            ];
            let with_rows = base
                .clone()
                .filter(present)
                .and_then(|d| d.project(rows))
                .and_then(|d| d.build())
                .map_err(err(rule.id.at))?;
            let dups = LogicalPlanBuilder::from(candidates)
                .join_on(with_rows, JoinType::Inner, on_hash)
                .and_then(|d| {
                    d.aggregate(
                        keys,
                        vec![
                            count(lit(1u8)).alias(format!("__u{i}_n")),
                            first_value(u_col("o".into()), order.clone())
                                .alias(format!("__u{i}_object")),
                            first_value(u_col("w".into()), order).alias(format!("__u{i}_row")),
                        ],
                    )
                })
                .and_then(|d| d.filter(u_col("n".into()).gt(lit(1i64))))
                .and_then(|d| d.build())
                .map_err(err(rule.id.at))?;
            b = LogicalPlanBuilder::from(dups)
                .join_on(b.build().map_err(err(rule.id.at))?, JoinType::Right, on)
                .map_err(err(rule.id.at))?;
        }
        for (i, rule) in v.rules.iter().enumerate() {
            if crate::steps::validate::is_dataset_check(rule) {
                match self.dataset_check(rule, &schema) {
                    Ok(c) => dataset_checks.push(c),
                    Err(d) => diags.extend(d),
                }
                continue;
            }
            let all = b.schema().clone();
            match self.rule_expr(i, rule, &all) {
                Ok(e) => {
                    let column = format!("{RULE_PREFIX}{i}");
                    exprs.push(e.alias(&column));
                    rules.push(TapRule {
                        column,
                        id: rule.id.value.clone(),
                        severity: rule.severity,
                    });
                }
                Err(d) => diags.extend(d),
            }
        }
        if let Some(f) = &v.filter {
            match self.condition(f, &schema) {
                Ok(e) => exprs.push(e.alias(FILTER_COLUMN)),
                Err(d) => diags.extend(d),
            }
        }
        let submitter = match &v.submitter {
            Some(s) => match self.column_check(&schema, s) {
                Ok(_) => Some(s.value.clone()),
                Err(d) => {
                    diags.push(d);
                    None
                }
            },
            None => None,
        };
        if !diags.is_empty() {
            return Err(diags);
        }
        let plan = b
            .project(exprs)
            .and_then(|b| b.build())
            .map_err(err(v.input.at))?;
        let mut p = self.finish(StepKind::Validate, plan, rules, info.dimensions.clone());
        p.dataset_checks = dataset_checks;
        p.submitter = submitter;
        Ok(p)
    }

    /// A boolean expression (a filter or a condition).
    fn condition(&self, text: &Name, schema: &DFSchema) -> Result<Expr, Diags> {
        let e = self.expr(text, schema)?;
        if e.get_type(schema)
            .map_err(|err| vec![self.expr_error(text, err)])?
            != DataType::Boolean
        {
            return Err(vec![self.diag(
                Code::V202,
                self.locate(text, ""),
                format!("`{}` is not a condition (true/false)", text.value),
            )]);
        }
        Ok(e.is_true())
    }

    fn dataset_check(&self, rule: &RuleSpec, schema: &DFSchema) -> Result<DatasetCheck, Diags> {
        if rule.severity == Severity::Reject {
            return Err(vec![self.diag(
                Code::V003,
                rule.id.at,
                format!("rule `{}` checks the whole dataset: its severity is `warn` or `fail`, not `reject`", rule.id.value),
            )]);
        }
        let kind = if let Some(r) = &rule.rows {
            DatasetCheckKind::Rows {
                min: r.min,
                max: r.max,
            }
        } else if let Some(n) = &rule.null_share {
            self.column_check(schema, &n.column).map_err(|d| vec![d])?;
            DatasetCheckKind::NullShare {
                column: n.column.value.clone(),
                max: n.max,
            }
        } else if let Some(f) = &rule.fresh {
            let t = self.column_check(schema, f).map_err(|d| vec![d])?;
            if !matches!(t, DataType::Date32 | DataType::Timestamp(..)) {
                return Err(vec![self.diag(
                    Code::V202,
                    f.at,
                    format!("`{}` is {t}; freshness needs a date or timestamp", f.value),
                )]);
            }
            let day = |k: &str| match self.params.get(k) {
                Some(ScalarValue::Date32(Some(d))) => Some(*d),
                _ => None,
            };
            let (Some(start), Some(end)) = (day("period_start"), day("period_end")) else {
                return Err(vec![self.diag(
                    Code::V301,
                    f.at,
                    "freshness needs the line's `period` parameter",
                )]);
            };
            DatasetCheckKind::Fresh {
                column: f.value.clone(),
                start,
                end,
            }
        } else {
            return Err(vec![]);
        };
        Ok(DatasetCheck {
            id: rule.id.value.clone(),
            severity: rule.severity,
            kind,
        })
    }

    fn plan_harmonise(
        &self,
        h: &HarmoniseSpec,
        mut b: LogicalPlanBuilder,
        info: &InputInfo,
    ) -> Result<StepPlan, Diags> {
        let err = |at: Pos| {
            move |e: DataFusionError| {
                vec![Diagnostic::error(
                    Code::V205,
                    &self.line.file,
                    at,
                    e.to_string(),
                )]
            }
        };
        let mut rules = Vec::new();
        let mut metrics = Vec::new();
        if !h.cast.is_empty() {
            let schema = b.schema().clone();
            let mut exprs = Vec::new();
            for c in schema.columns() {
                let spec = h.cast.iter().find(|(n, _)| n.value == c.name);
                match spec {
                    Some((name, t)) => {
                        let raw = col(c.clone());
                        let typed = Expr::TryCast(datafusion::logical_expr::TryCast::new(
                            Box::new(raw.clone()),
                            arrow_type(t.value),
                        ));
                        let what = lit(format!(
                            "column `{}`: not a {}",
                            name.value,
                            t.value.as_str()
                        ));
                        let column = format!("{RULE_PREFIX}c{}", rules.len());
                        let reason = when(raw.is_not_null().and(typed.clone().is_null()), what)
                            .otherwise(lit(ScalarValue::Utf8(None)))
                            .map_err(err(name.at))?;
                        exprs.push(typed.alias(name.value.as_str()));
                        exprs.push(reason.alias(&column));
                        rules.push(TapRule {
                            column,
                            id: format!("cast-{}", name.value),
                            severity: Severity::Reject,
                        });
                    }
                    None => exprs.push(col(c)),
                }
            }
            for (name, _) in &h.cast {
                self.column_check(&schema, name).map_err(|d| vec![d])?;
            }
            b = b.project(exprs).map_err(err(h.input.at))?;
        }
        for (i, m) in h.map.iter().enumerate() {
            let schema = b.schema().clone();
            let from_type = self.column_check(&schema, &m.column).map_err(|d| vec![d])?;
            let table = self.codesets.get(m.codeset.value.as_str()).ok_or_else(|| {
                vec![self.diag(
                    Code::V303,
                    m.codeset.at,
                    format!("unknown code set `{}`", m.codeset.value),
                )]
            })?;
            let key = self.line.spec.codesets[m.codeset.value.as_str()]
                .key
                .value
                .clone();
            let cs_schema = table.schema();
            if cs_schema.index_of(&m.to).is_err() {
                let cols: Vec<&str> = cs_schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                let mut d = self.diag(
                    Code::V304,
                    m.to.at,
                    format!(
                        "code set `{}` has no column `{}`",
                        m.codeset.value, m.to.value
                    ),
                );
                if let Some(hint) = did_you_mean(&m.to, cols.iter().copied()) {
                    d = d.with_hint(hint);
                }
                return Err(vec![d]);
            }
            let alias = format!("__cs{i}");
            let windowed = m.on.is_some() && cs_schema.index_of("valid_from").is_ok();
            // A window checked against a timestamp without a time zone: the code set's days
            // as the midnights that start and end them, compared with the timestamps as
            // they are (not each cast to its day).
            let on_unit = match &m.on {
                Some(on_col) if windowed => {
                    match self.column_check(&schema, on_col).map_err(|d| vec![d])? {
                        DataType::Timestamp(unit, None) => Some(unit),
                        _ => None,
                    }
                }
                _ => None,
            };
            let bound = |column: &str, next_day: bool| {
                let day = Expr::Cast(datafusion::logical_expr::Cast::new(
                    Box::new(col(column)),
                    DataType::Date32,
                ));
                match &on_unit {
                    Some(unit) => midnight(day, *unit, next_day),
                    None => day,
                }
            };
            let mut cs_cols = vec![
                col(Column::from_name(key.as_str())).alias(format!("{alias}_key")),
                col(Column::from_name(m.to.value.as_str())).alias(format!("{alias}_to")),
            ];
            let has_equivalence = cs_schema.index_of("equivalence").is_ok();
            if cs_schema.index_of("match").is_ok() {
                cs_cols.push(col("match").alias(format!("{alias}_match")));
            }
            if has_equivalence {
                cs_cols.push(col("equivalence").alias(format!("{alias}_eq")));
            }
            if windowed {
                cs_cols.push(bound("valid_from", false).alias(format!("{alias}_from")));
                // With timestamps: the midnight after the last day.
                cs_cols.push(bound("valid_to", true).alias(format!("{alias}_until")));
            }
            let cs_plan = LogicalPlanBuilder::scan(
                alias.as_str(),
                provider_as_source(table.clone() as Arc<dyn TableProvider>),
                None,
            )
            .and_then(|b| b.project(cs_cols))
            .and_then(|b| b.build())
            .map_err(err(m.codeset.at))?;
            let from = col(Column::from_name(m.column.value.as_str()));
            let from_text = if from_type == DataType::Utf8 {
                from.clone()
            } else {
                Expr::Cast(datafusion::logical_expr::Cast::new(
                    Box::new(from.clone()),
                    DataType::Utf8,
                ))
            };
            let key_col = col(Column::from_name(format!("{alias}_key")));
            // A code set with a `match` column may give prefixes (`J07BM` for every HPV
            // vaccine): rows marked `prefix` match codes that start with their key.
            let mut on = if cs_schema.index_of("match").is_ok() {
                from_text
                    .clone()
                    .eq(key_col.clone())
                    .or(col(Column::from_name(format!("{alias}_match")))
                        .eq(lit("prefix"))
                        .and(datafusion::functions::string::expr_fn::starts_with(
                            from_text.clone(),
                            key_col,
                        )))
            } else {
                from_text.clone().eq(key_col)
            };
            if windowed && let Some(on_col) = &m.on {
                let t = self.column_check(&schema, on_col).map_err(|d| vec![d])?;
                let day = if t == DataType::Date32 {
                    col(Column::from_name(on_col.value.as_str()))
                } else {
                    Expr::Cast(datafusion::logical_expr::Cast::new(
                        Box::new(col(Column::from_name(on_col.value.as_str()))),
                        DataType::Date32,
                    ))
                };
                let fromc = col(Column::from_name(format!("{alias}_from")));
                let untilc = col(Column::from_name(format!("{alias}_until")));
                let (day, before_end) = if on_unit.is_some() {
                    let at = col(Column::from_name(on_col.value.as_str()));
                    (at.clone(), at.lt(untilc.clone()))
                } else {
                    (day.clone(), day.lt_eq(untilc.clone()))
                };
                on = on
                    .and(fromc.clone().is_null().or(day.gt_eq(fromc)))
                    .and(untilc.is_null().or(before_end));
            }
            // The code set is the join's build side; the rows stream past it.
            let joined = LogicalPlanBuilder::from(cs_plan)
                .join_on(
                    b.build().map_err(err(m.column.at))?,
                    JoinType::Right,
                    vec![on],
                )
                .map_err(err(m.column.at))?;
            let to = col(Column::from_name(format!("{alias}_to")));
            let target = match m.unmapped {
                Unmapped::Quarantine => to.clone(),
                Unmapped::Default => {
                    let d = m.default.clone().ok_or_else(|| {
                        vec![self.diag(Code::V004, m.to.at, "`unmapped: default` needs `default:`")]
                    })?;
                    datafusion::functions::core::expr_fn::coalesce(vec![to.clone(), lit(d)])
                }
                Unmapped::Keep => to.clone(),
            };
            let mut exprs: Vec<Expr> = schema.columns().into_iter().map(col).collect();
            exprs.retain(|e| !matches!(e, Expr::Column(c) if c.name == m.to.value));
            exprs.push(target.alias(m.to.value.as_str()));
            if m.unmapped == Unmapped::Quarantine {
                let column = format!("{RULE_PREFIX}m{i}");
                let reason = when(
                    to.clone().is_null(),
                    lit(format!(
                        "`{}` has no `{}` in code set `{}`",
                        m.column.value, m.to.value, m.codeset.value
                    )),
                )
                .otherwise(lit(ScalarValue::Utf8(None)))
                .map_err(err(m.column.at))?;
                exprs.push(reason.alias(&column));
                rules.push(TapRule {
                    column: column.clone(),
                    id: format!("map-{}", m.to.value),
                    severity: Severity::Reject,
                });
            }
            // How each row was mapped: the mapping row's equivalence, or unmapped.
            let how = if has_equivalence {
                datafusion::functions::core::expr_fn::coalesce(vec![
                    col(Column::from_name(format!("{alias}_eq"))),
                    lit("equal"),
                ])
            } else {
                lit("mapped")
            };
            let metric = format!("{METRIC_PREFIX}{i}");
            exprs.push(
                when(to.is_null(), lit("unmapped"))
                    .otherwise(how)
                    .map_err(err(m.column.at))?
                    .alias(&metric),
            );
            metrics.push((metric, format!("map-{}", m.to.value)));
            b = joined.project(exprs).map_err(err(m.column.at))?;
        }
        for (name, text) in &h.derive {
            let schema = b.schema().clone();
            let e = self.expr(text, &schema)?;
            let mut exprs: Vec<Expr> = schema
                .columns()
                .into_iter()
                .filter(|c| c.name != name.value)
                .map(col)
                .collect();
            exprs.push(e.alias(name.value.as_str()));
            b = b.project(exprs).map_err(err(text.at))?;
        }
        if let Some(f) = &h.filter {
            let schema = b.schema().clone();
            let cond = self.condition(f, &schema)?;
            let mut exprs: Vec<Expr> = schema.columns().into_iter().map(col).collect();
            exprs.push(cond.alias(FILTER_COLUMN));
            b = b.project(exprs).map_err(err(f.at))?;
        }
        let pseudo = self.state.scalar_functions().get("pseudonym").cloned();
        if !h.pseudonymise.is_empty() {
            self.declared_personal(
                h.pseudonymise
                    .iter()
                    .filter(|p| !h.derive.contains_key(p.value.as_str())),
                info,
                "is pseudonymised",
            )?;
            let schema = b.schema().clone();
            let mut names = BTreeSet::new();
            for p in &h.pseudonymise {
                self.column_check(&schema, p).map_err(|d| vec![d])?;
                names.insert(p.value.clone());
            }
            let Some(f) = pseudo else {
                return Err(vec![self.diag(
                    Code::V205,
                    h.input.at,
                    "pseudonym is not registered",
                )]);
            };
            let exprs: Vec<Expr> = schema
                .columns()
                .into_iter()
                .map(|c| {
                    if names.contains(&c.name) {
                        f.call(vec![cast_text(col(c.clone()))])
                            .alias(c.name.clone())
                    } else {
                        col(c)
                    }
                })
                .collect();
            // A pseudonym is still personal data (see `crate::plan::personal`): it can be counted
            // (count(DISTINCT hetu)) but not published row by row.
            b = b.project(exprs).map_err(err(h.input.at))?;
        }
        if !h.drop.is_empty() {
            let schema = b.schema().clone();
            for d in &h.drop {
                self.column_check(&schema, d).map_err(|d| vec![d])?;
            }
            let exprs: Vec<Expr> = schema
                .columns()
                .into_iter()
                .filter(|c| !h.drop.iter().any(|d| d.value == c.name))
                .map(col)
                .collect();
            b = b.project(exprs).map_err(err(h.input.at))?;
        }
        if !h.rename.is_empty() {
            let schema = b.schema().clone();
            for (old, new) in &h.rename {
                self.column_check(&schema, old).map_err(|d| vec![d])?;
                if schema.has_column_with_unqualified_name(&new.value)
                    && !h.rename.contains_key(new.value.as_str())
                {
                    return Err(vec![self.diag(
                        Code::V104,
                        new.at,
                        format!(
                            "renaming `{}` to `{}`: the step already has a column `{}`",
                            old.value, new.value, new.value
                        ),
                    )]);
                }
            }
            let exprs: Vec<Expr> = schema
                .columns()
                .into_iter()
                .map(|c| match h.rename.get(c.name.as_str()) {
                    Some(new) => col(c).alias(new.value.as_str()),
                    None => col(c),
                })
                .collect();
            b = b.project(exprs).map_err(err(h.input.at))?;
        }
        let plan = b.build().map_err(err(h.input.at))?;
        let mut p = self.finish(StepKind::Harmonise, plan, rules, info.dimensions.clone());
        p.metrics = metrics;
        Ok(p)
    }

    fn plan_aggregate(
        &self,
        a: &AggregateSpec,
        mut b: LogicalPlanBuilder,
        info: &InputInfo,
        populations: BTreeMap<String, LogicalPlanBuilder>,
    ) -> Result<StepPlan, Diags> {
        let err0 = |at: Pos| {
            move |e: DataFusionError| {
                vec![Diagnostic::error(
                    Code::V205,
                    &self.line.file,
                    at,
                    first_line(&e.to_string()),
                )]
            }
        };
        // Computed dimensions become columns first.
        let computed: Vec<(&Name, &ExprText)> =
            a.by.iter()
                .flat_map(|d| d.parts())
                .filter_map(|(n, e)| e.map(|e| (n, e)))
                .collect();
        if !computed.is_empty() {
            let schema = b.schema().clone();
            let mut exprs: Vec<Expr> = schema
                .columns()
                .into_iter()
                .filter(|c| !computed.iter().any(|(n, _)| n.value == c.name))
                .map(col)
                .collect();
            for (n, e) in &computed {
                exprs.push(self.expr(e, &schema)?.alias(n.value.as_str()));
            }
            b = b.project(exprs).map_err(err0(a.input.at))?;
        }
        let schema = b.schema().clone();
        let by: Vec<&Name> =
            a.by.iter()
                .flat_map(|d| d.parts())
                .map(|(n, _)| n)
                .collect();
        let mut person_counts = Vec::new();
        // An input grouped by a personal value has a row per person (and per its other
        // dimensions): every count of its rows counts persons.
        let rows_are_persons = info.dimensions.iter().any(|d| info.personal.contains(d));
        let mut dims = Vec::new();
        for d in &by {
            self.column_check(&schema, d).map_err(|d| vec![d])?;
            dims.push(d.value.clone());
        }
        let mut aggs: Vec<Expr> = Vec::new();
        // `count(DISTINCT x)` and `median(x)` measures, computed apart and joined to the
        // groups (see `distinct_counts` and `medians`).
        let mut apart: Vec<(String, Expr, bool)> = Vec::new();
        let mut measures: Vec<(String, Expr)> = Vec::new();
        let mut diags = Vec::new();
        for (name, text) in &a.measures {
            let e = match self.expr(text, &schema) {
                Ok(e) => e,
                Err(d) => {
                    diags.extend(d);
                    continue;
                }
            };
            if counts_persons(&e, &info.personal, rows_are_persons) {
                person_counts.push(name.value.clone());
            }
            let mut found = false;
            let rewritten = e
                .transform_up(|e| {
                    if let Some(arg) = count_distinct_arg(&e) {
                        found = true;
                        let alias = format!("__dc{}", apart.len());
                        apart.push((alias.clone(), arg, true));
                        return Ok(Transformed::yes(
                            datafusion::functions::core::expr_fn::coalesce(vec![
                                col(Column::from_name(alias)),
                                lit(0i64),
                            ]),
                        ));
                    }
                    if let Some(arg) = median_arg(&e, &schema) {
                        found = true;
                        let alias = format!("__md{}", apart.len());
                        apart.push((alias.clone(), arg, false));
                        return Ok(Transformed::yes(col(Column::from_name(alias))));
                    }
                    if let Expr::AggregateFunction(AggregateFunction { .. }) = &e {
                        found = true;
                        let alias = format!("__agg{}", aggs.len());
                        aggs.push(e.alias(&alias));
                        return Ok(Transformed::yes(col(Column::from_name(alias))));
                    }
                    Ok(Transformed::no(e))
                })
                .map(|t| t.data);
            match rewritten {
                Ok(r) if found => measures.push((name.value.clone(), r)),
                Ok(_) => diags.push(self.diag(
                    Code::V204,
                    self.locate(text, ""),
                    format!(
                        "measure `{}` has no aggregate function (count, sum, avg, median, …)",
                        name.value
                    ),
                )),
                Err(e) => diags.push(self.expr_error(text, e)),
            }
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        let dim_exprs: Vec<Expr> = dims
            .iter()
            .map(|d| col(Column::from_name(d.as_str())))
            .collect();
        let mut groupings = Vec::new();
        let group: Vec<Expr> = if a.totals {
            for d in &dims {
                groupings.push(
                    datafusion::functions_aggregate::expr_fn::grouping(col(Column::from_name(
                        d.as_str(),
                    )))
                    .alias(format!("__g_{d}")),
                );
            }
            vec![Expr::GroupingSet(GroupingSet::Cube(dim_exprs.clone()))]
        } else {
            dim_exprs.clone()
        };
        let err = |e: DataFusionError| {
            vec![self.diag(Code::V205, a.input.at, first_line(&e.to_string()))]
        };
        // With totals, each row is grouped into its cell once and the cube rolls up cells.
        let fine = if a.totals {
            rolled_up(&aggs, &dim_exprs, b.clone()).map_err(err)?
        } else {
            None
        };
        let mut main = match fine {
            Some((fine, mut totals)) => {
                totals.extend(groupings);
                fine.aggregate(group, totals)
            }
            None => {
                aggs.extend(groupings);
                b.clone().aggregate(group, aggs)
            }
        }
        .map_err(err)?;
        for (alias, arg, distinct) in &apart {
            let counts = if *distinct {
                distinct_counts(b.clone(), &dims, a.totals, arg, alias)
            } else {
                medians(b.clone(), &dims, a.totals, arg, alias)
            }
            .map_err(err)?;
            let mut left: Vec<Column> =
                dims.iter().map(|d| Column::from_name(d.as_str())).collect();
            let mut right: Vec<Column> = dims
                .iter()
                .map(|d| Column::from_name(format!("{alias}_d_{d}")))
                .collect();
            if a.totals {
                left.extend(dims.iter().map(|d| Column::from_name(format!("__g_{d}"))));
                right.extend(
                    dims.iter()
                        .map(|d| Column::from_name(format!("{alias}_g_{d}"))),
                );
            }
            main = main
                .join_detailed(
                    counts,
                    JoinType::Left,
                    (left, right),
                    None,
                    datafusion::common::NullEquality::NullEqualsNull,
                )
                .map_err(err)?;
        }
        let b = main;
        let mut out: Vec<Expr> = Vec::new();
        for d in &dims {
            let c = cast_text(col(Column::from_name(d.as_str())));
            if a.totals {
                let code = if is_area(d) { "SSS" } else { "YHT" };
                out.push(
                    when(
                        col(Column::from_name(format!("__g_{d}"))).gt(lit(0)),
                        lit(code),
                    )
                    .otherwise(c)
                    .map_err(err)?
                    .alias(d.as_str()),
                );
            } else {
                out.push(c.alias(d.as_str()));
            }
        }
        for (name, e) in measures {
            out.push(e.alias(name));
        }
        let mut b = b.project(out).map_err(err)?;
        for (i, (name, r)) in a.rates.iter().enumerate() {
            b = self.rate(
                b,
                i,
                name,
                r,
                a.totals,
                populations.get(r.population.value.as_str()),
            )?;
        }
        let plan = b.build().map_err(err)?;
        let mut p = self.finish(StepKind::Aggregate, plan, vec![], dims);
        p.person_counts = person_counts;
        Ok(p)
    }

    /// Joins the population and adds `name = round(per × count / population, decimals)`.
    fn rate(
        &self,
        b: LogicalPlanBuilder,
        i: usize,
        name: &Name,
        r: &crate::line::spec::RateSpec,
        totals: bool,
        population: Option<&LogicalPlanBuilder>,
    ) -> Result<LogicalPlanBuilder, Diags> {
        let err = |at: Pos| {
            move |e: DataFusionError| {
                vec![Diagnostic::error(
                    Code::V205,
                    &self.line.file,
                    at,
                    first_line(&e.to_string()),
                )]
            }
        };
        let Some(pop) = population else {
            return Err(vec![self.diag(
                Code::V102,
                r.population.at,
                format!("`{}` has no output", r.population.value),
            )]);
        };
        let schema = b.schema().clone();
        let count_type = self.column_check(&schema, &r.count).map_err(|d| vec![d])?;
        if !count_type.is_numeric() {
            return Err(vec![self.diag(
                Code::V202,
                r.count.at,
                format!("`{}` is {count_type}, not a number", r.count.value),
            )]);
        }
        self.column_check(&schema, &r.area).map_err(|d| vec![d])?;
        let year_col = r
            .year_column
            .clone()
            .unwrap_or_else(|| crate::line::spec::Sp::synthetic("vuosi".into()));
        let value_col = r
            .value
            .clone()
            .unwrap_or_else(|| crate::line::spec::Sp::synthetic("vaesto".into()));
        for c in [&r.area, &year_col, &value_col] {
            self.column_check(pop.schema(), c).map_err(|d| vec![d])?;
        }
        let (pa, py, pv) = (format!("__pa{i}"), format!("__py{i}"), format!("__pv{i}"));
        let rows = pop
            .clone()
            .project(vec![
                cast_text(col(Column::from_name(r.area.value.as_str()))).alias(&pa),
                cast_text(col(Column::from_name(year_col.value.as_str()))).alias(&py),
                Expr::Cast(datafusion::logical_expr::Cast::new(
                    Box::new(col(Column::from_name(value_col.value.as_str()))),
                    DataType::Float64,
                ))
                .alias(&pv),
            ])
            .map_err(err(r.population.at))?;
        let table = if totals {
            // The whole country's population is the sum of the areas'.
            let country = pop
                .clone()
                .aggregate(
                    vec![cast_text(col(Column::from_name(year_col.value.as_str()))).alias(&py)],
                    vec![
                        datafusion::functions_aggregate::expr_fn::sum(Expr::Cast(
                            datafusion::logical_expr::Cast::new(
                                Box::new(col(Column::from_name(value_col.value.as_str()))),
                                DataType::Float64,
                            ),
                        ))
                        .alias(&pv),
                    ],
                )
                .and_then(|c| {
                    c.project(vec![
                        lit("SSS").alias(&pa),
                        col(Column::from_name(py.as_str())),
                        col(Column::from_name(pv.as_str())),
                    ])
                })
                .map_err(err(r.population.at))?;
            rows.union(country.build().map_err(err(r.population.at))?)
                .map_err(err(r.population.at))?
        } else {
            rows
        };
        let year = self.expr(&r.year, &schema)?;
        let on = col(Column::from_name(r.area.value.as_str()))
            .eq(col(Column::from_name(pa.as_str())))
            .and(cast_text(year).eq(col(Column::from_name(py.as_str()))));
        let joined = b
            .join_on(
                table.build().map_err(err(name.at))?,
                JoinType::Left,
                vec![on],
            )
            .map_err(err(name.at))?;
        let mut exprs: Vec<Expr> = schema.columns().into_iter().map(col).collect();
        let count = Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(col(Column::from_name(r.count.value.as_str()))),
            DataType::Float64,
        ));
        let rate = datafusion::functions::math::expr_fn::round(vec![
            lit(r.per) * count / col(Column::from_name(pv.as_str())),
            lit(r.decimals),
        ]);
        exprs.push(rate.alias(name.value.as_str()));
        joined.project(exprs).map_err(err(name.at))
    }

    fn plan_publish(
        &self,
        p: &PublishSpec,
        b: LogicalPlanBuilder,
        info: &InputInfo,
    ) -> Result<StepPlan, Diags> {
        let schema = b.schema().clone();
        let err = |at: Pos| {
            move |e: DataFusionError| {
                vec![Diagnostic::error(
                    Code::V205,
                    &self.line.file,
                    at,
                    first_line(&e.to_string()),
                )]
            }
        };
        let dims: Vec<String> = match &p.dimensions {
            Some(d) => {
                for n in d {
                    self.column_check(&schema, n).map_err(|d| vec![d])?;
                }
                d.iter().map(|n| n.value.clone()).collect()
            }
            None => info.dimensions.clone(),
        };
        if !info.lineage.is_empty() {
            return Err(info
                .lineage
                .iter()
                .map(|(c, t)| {
                    self.personal_diag(
                        p.input.at,
                        format!(
                            "column `{c}` identifies a person and would be published in dataset `{}`",
                            p.dataset.value
                        ),
                        c,
                        t,
                    )
                })
                .collect());
        }
        let measures: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| {
                !dims.contains(n) && !n.starts_with("__") && n != OBJECT_COLUMN && n != ROW_COLUMN
            })
            .collect();
        let mut exprs: Vec<Expr> = Vec::new();
        let min = p
            .disclosure
            .as_ref()
            .map(|d| d.min_count.value)
            .unwrap_or(5);
        let count = match p.disclosure.as_ref().and_then(|d| d.count.clone()) {
            Some(c) => {
                self.column_check(&schema, &c).map_err(|d| vec![d])?;
                Some(c.value)
            }
            None => measures.first().cloned(),
        };
        let declared: Vec<&Name> = p
            .disclosure
            .iter()
            .flat_map(|d| d.count.iter().chain(&d.persons))
            .collect();
        for n in &declared {
            self.column_check(&schema, n).map_err(|d| vec![d])?;
        }
        if count.is_none() && min > 1 {
            // Every column a dimension: each row would be a published combination, of one
            // person as well as of many, with nothing to decide its suppression.
            return Err(vec![self.diag(
                Code::V206,
                p.input.at,
                format!(
                    "dataset `{}` has no measure to decide disclosure: every column is a dimension; publish a count (or switch disclosure off with `min_count: 1` where no person can be recognised)",
                    p.dataset.value
                ),
            )]);
        }
        let mut counts: Vec<(String, Pos)> = Vec::new();
        if let Some(c) = count.as_ref().filter(|_| min > 1) {
            let at = |c: &str| {
                declared
                    .iter()
                    .find(|n| n.value == c)
                    .map_or(p.input.at, |n| n.at)
            };
            counts.push((c.clone(), at(c)));
            let persons = p.disclosure.iter().flat_map(|d| &d.persons);
            for c in persons
                .map(|n| &n.value)
                .chain(info.person_counts.iter().filter(|c| measures.contains(c)))
            {
                if !counts.iter().any(|(k, _)| k == c) {
                    counts.push((c.clone(), at(c)));
                }
            }
            for (c, at) in &counts {
                let t = schema
                    .field_with_unqualified_name(c)
                    .map(|f| f.data_type().clone())
                    .unwrap_or(DataType::Null);
                if !t.is_numeric() {
                    return Err(vec![self.diag(
                        Code::V202,
                        *at,
                        format!("the disclosure count `{c}` is {t}, not a number; name the count measure with `disclosure: {{ count: … }}`"),
                    )]);
                }
            }
        }
        for f in schema.fields() {
            let n = f.name();
            if n.starts_with("__") || n == OBJECT_COLUMN || n == ROW_COLUMN {
                continue;
            }
            exprs.push(col(Column::from_name(n.as_str())));
        }
        if count.is_some() && min > 1 {
            exprs.push(lit(ScalarValue::Utf8(None)).alias(STATUS_COLUMN));
        }
        let sort: Vec<SortExpr> = dims
            .iter()
            .map(|d| SortExpr::new(col(Column::from_name(d.as_str())), true, true))
            .chain(
                measures
                    .iter()
                    .map(|d| SortExpr::new(col(Column::from_name(d.as_str())), true, true)),
            )
            .collect();
        let plan = b
            .project(exprs)
            .and_then(|b| b.sort(sort))
            .and_then(|b| b.build())
            .map_err(err(p.input.at))?;
        let mut out = self.finish(StepKind::Publish, plan, vec![], dims);
        // Suppressed cells are empty: every published column may be null.
        out.output = Arc::new(Schema::new(
            out.output
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        out.disclosure = (!counts.is_empty()).then(|| Disclosure {
            counts: counts.into_iter().map(|(c, _)| c).collect(),
            min_count: min as i64,
            measures,
        });
        Ok(out)
    }

    fn plan_sql(&self, q: &SqlSpec, inputs: &Inputs) -> Result<StepPlan, Diags> {
        let ctx = SessionContext::new_with_state(self.state.clone());
        for i in &q.inputs {
            if let Some((p, _)) = inputs.get(i.value.as_str()) {
                ctx.register_table(i.value.as_str(), p.clone())
                    .map_err(|e| vec![self.diag(Code::V205, i.at, e.to_string())])?;
            }
        }
        let state = ctx.state();
        let plan = futures::executor::block_on(state.create_logical_plan(&q.query.value))
            .map_err(|e| vec![self.expr_error(&q.query, e)])?;
        // A query, nothing else: `COPY … TO` would write rows past every control, and DDL or
        // DML would change the session.
        datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|_| {
                vec![self.diag(
                    Code::V203,
                    self.locate(&q.query, ""),
                    "an sql step is a query (SELECT …): COPY, DDL, DML and other statements are not allowed",
                )]
            })?;
        let plan = self.bind_plan(plan, &q.query)?;
        let names: BTreeSet<String> = plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let dims = inputs
            .values()
            .next()
            .map(|(_, i)| i.dimensions.clone())
            .unwrap_or_default();
        let dims = dims.into_iter().filter(|d| names.contains(d)).collect();
        Ok(self.finish(StepKind::Sql, plan, vec![], dims))
    }

    fn bind_plan(&self, plan: LogicalPlan, text: &Name) -> Result<LogicalPlan, Diags> {
        let mut unknown = None;
        let values: Vec<(String, ScalarValue)> = self
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for p in plan
            .get_parameter_names()
            .map_err(|e| vec![self.expr_error(text, e)])?
        {
            let key = p.trim_start_matches('$');
            if !self.params.contains_key(key) {
                unknown = Some(key.to_string());
            }
        }
        if let Some(u) = unknown {
            return Err(vec![self.diag(
                Code::V301,
                self.locate(text, &format!("${u}")),
                format!("unknown parameter `${u}`"),
            )]);
        }
        let map: std::collections::HashMap<String, ScalarValue> = values.into_iter().collect();
        plan.with_param_values(datafusion::common::ParamValues::Map(
            map.into_iter().map(|(k, v)| (k, v.into())).collect(),
        ))
        .map_err(|e| vec![self.expr_error(text, e)])
    }
}

/// The midnight that starts `day` (a `DATE` expression), or with `next` the one that ends
/// it, as a timestamp of `unit` without a time zone: timestamps compared with it directly
/// need no cast to their day per row.
fn midnight(day: Expr, unit: TimeUnit, next: bool) -> Expr {
    let day = if next {
        day + lit(ScalarValue::IntervalDayTime(Some(
            arrow::datatypes::IntervalDayTime::new(1, 0),
        )))
    } else {
        day
    };
    Expr::Cast(datafusion::logical_expr::Cast::new(
        Box::new(day),
        DataType::Timestamp(unit, None),
    ))
}

/// `timestamp ± INTERVAL '…'` with a fixed interval (no months; a timestamp without a time
/// zone has 24-hour days) as `timestamp ± duration`: the same instants, and Arrow adds a
/// duration as a number where it adds an interval per value by the calendar (20 times
/// slower, measured on ten million rows).
fn fixed_intervals(e: Expr, schema: &DFSchema) -> Expr {
    use datafusion::logical_expr::{BinaryExpr, Operator};
    let duration = |v: &ScalarValue, unit: &TimeUnit| -> Option<ScalarValue> {
        let nanos: i128 = match v {
            ScalarValue::IntervalMonthDayNano(Some(i)) if i.months == 0 => {
                i128::from(i.days) * 86_400_000_000_000 + i128::from(i.nanoseconds)
            }
            ScalarValue::IntervalDayTime(Some(i)) => {
                i128::from(i.days) * 86_400_000_000_000 + i128::from(i.milliseconds) * 1_000_000
            }
            _ => return None,
        };
        let per: i128 = match unit {
            TimeUnit::Second => 1_000_000_000,
            TimeUnit::Millisecond => 1_000_000,
            TimeUnit::Microsecond => 1_000,
            TimeUnit::Nanosecond => 1,
        };
        if nanos % per != 0 {
            return None;
        }
        let n = i64::try_from(nanos / per).ok()?;
        Some(match unit {
            TimeUnit::Second => ScalarValue::DurationSecond(Some(n)),
            TimeUnit::Millisecond => ScalarValue::DurationMillisecond(Some(n)),
            TimeUnit::Microsecond => ScalarValue::DurationMicrosecond(Some(n)),
            TimeUnit::Nanosecond => ScalarValue::DurationNanosecond(Some(n)),
        })
    };
    let naive = |e: &Expr| match e.get_type(schema) {
        Ok(DataType::Timestamp(unit, None)) => Some(unit),
        _ => None,
    };
    e.clone()
        .transform_up(|e| {
            let Expr::BinaryExpr(b) = &e else {
                return Ok(Transformed::no(e));
            };
            if !matches!(b.op, Operator::Plus | Operator::Minus) {
                return Ok(Transformed::no(e));
            }
            let interval = |side: &Expr| match side {
                Expr::Literal(v, _) => Some(v.clone()),
                _ => None,
            };
            // timestamp ± interval, or interval + timestamp.
            let (ts, iv, ts_left) = match (naive(&b.left), interval(&b.right)) {
                (Some(u), Some(v)) => (u, v, true),
                _ if b.op == Operator::Plus => match (interval(&b.left), naive(&b.right)) {
                    (Some(v), Some(u)) => (u, v, false),
                    _ => return Ok(Transformed::no(e)),
                },
                _ => return Ok(Transformed::no(e)),
            };
            let Some(d) = duration(&iv, &ts) else {
                return Ok(Transformed::no(e));
            };
            // The timestamp first (addition commutes): Arrow adds a duration to it.
            let ts_side = if ts_left { &b.left } else { &b.right };
            Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                ts_side.clone(),
                b.op,
                Box::new(lit(d)),
            ))))
        })
        // Types were checked before; a failure keeps the expression as written.
        .map(|t| t.data)
        .unwrap_or(e)
}

/// Whether a measure counts persons anywhere in it: a distinct count of a personal value
/// (`count(DISTINCT hetu)`, `approx_distinct(hetu)`, also inside a cast or a sum with it),
/// or any count when the rows are persons.
fn counts_persons(e: &Expr, personal: &BTreeSet<String>, rows_are_persons: bool) -> bool {
    let mut found = false;
    let _ = e.apply(|x| {
        if let Expr::AggregateFunction(f) = x {
            let name = f.func.name();
            if rows_are_persons && name == "count" {
                found = true;
                return Ok(datafusion::common::tree_node::TreeNodeRecursion::Stop);
            }
            let distinct = (name == "count" && f.params.distinct) || name == "approx_distinct";
            if distinct
                && f.params
                    .args
                    .iter()
                    .any(|a| a.column_refs().iter().any(|c| personal.contains(&c.name)))
            {
                found = true;
                return Ok(datafusion::common::tree_node::TreeNodeRecursion::Stop);
            }
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    found
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

fn cast_text(e: Expr) -> Expr {
    Expr::Cast(datafusion::logical_expr::Cast::new(
        Box::new(e),
        DataType::Utf8,
    ))
}

/// Whether a dimension is an area (its total is `SSS`, the whole country).
pub fn is_area(name: &str) -> bool {
    matches!(name, "hyvinvointialue" | "kunta" | "alue" | "maakunta")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Float64Array, StringArray};
    use arrow::record_batch::RecordBatch;

    /// Groups of every size from 0 to 9 values (odd and even counts, repeated values,
    /// negatives, NULLs), in two dimensions.
    fn table() -> Arc<MemTable> {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let mut x = Vec::new();
        let mut seed = 7u64;
        for g in 0..40usize {
            for i in 0..g % 10 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                a.push(format!("a{}", g % 3));
                // Some cells have a NULL member; values repeat within and across cells.
                b.push((g % 7 != 0).then(|| format!("b{}", g % 13)));
                x.push(match (seed >> 33) % 7 {
                    0 => None,
                    r => Some(r as f64 * 1.5 - 4.0 + (i % 2) as f64),
                });
            }
        }
        // Values in one cell (also a NULL member), in two cells that share one member,
        // in a cell with a NULL member and one without.
        for (va, vb, v) in [
            ("a0", Some("b1"), 100.0),
            ("a0", Some("b1"), 100.0),
            ("a0", Some("b1"), 101.0),
            ("a0", Some("b2"), 101.0),
            ("a1", Some("b3"), 102.0),
            ("a2", Some("b3"), 102.0),
            ("a1", None, 103.0),
            ("a1", Some("b3"), 103.0),
            ("a2", None, 104.0),
            ("a2", None, 104.0),
        ] {
            a.push(va.to_string());
            b.push(vb.map(str::to_string));
            x.push(Some(v));
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, false),
            Field::new("b", DataType::Utf8, true),
            Field::new("x", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(a)),
                Arc::new(StringArray::from(b)),
                Arc::new(Float64Array::from(x)),
            ],
        )
        .unwrap();
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())
    }

    /// Rows of `plan` as text, sorted.
    async fn rows(ctx: &SessionContext, plan: LogicalPlan) -> Vec<String> {
        let batches = ctx
            .execute_logical_plan(plan)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        text_rows(batches)
    }

    /// Rows of `batches` as text, sorted.
    fn text_rows(batches: Vec<RecordBatch>) -> Vec<String> {
        let mut out = Vec::new();
        for batch in batches {
            for r in 0..batch.num_rows() {
                let cells: Vec<String> = batch
                    .columns()
                    .iter()
                    .map(|c| {
                        if c.is_null(r) {
                            "∅".into()
                        } else {
                            arrow::util::display::array_value_to_string(c, r).unwrap()
                        }
                    })
                    .collect();
                out.push(cells.join("|"));
            }
        }
        out.sort();
        out
    }

    /// Medians and distinct counts per group of `dims` (per grouping set when `totals`)
    /// against DataFusion's own.
    async fn compare(dims: &[&str], totals: bool) {
        use datafusion::functions_aggregate::expr_fn::{count_distinct, grouping, median};
        let ctx = SessionContext::new();
        let scan = || LogicalPlanBuilder::scan("t", provider_as_source(table()), None).unwrap();
        let names: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        let x = col("x");
        let keys = || dims.iter().map(|d| col(*d)).collect::<Vec<_>>();
        let flags = || {
            dims.iter()
                .map(|d| col(format!("g{d}")))
                .collect::<Vec<_>>()
        };
        let mut aggs = vec![
            median(x.clone()).alias("m"),
            count_distinct(x.clone()).alias("d"),
        ];
        let group = if totals {
            aggs.extend(
                dims.iter()
                    .map(|d| grouping(col(*d)).alias(format!("g{d}"))),
            );
            vec![Expr::GroupingSet(GroupingSet::Cube(keys()))]
        } else {
            keys()
        };
        let reference = scan().aggregate(group, aggs).unwrap();
        let mut out = keys();
        if totals {
            out.extend(flags());
        }
        let project = |b: LogicalPlanBuilder, m: &str| {
            let mut e = out.clone();
            e.push(col(m));
            b.project(e).unwrap().build().unwrap()
        };
        let mine_cols = |alias: &str| {
            let mut e: Vec<Expr> = dims
                .iter()
                .map(|d| col(format!("{alias}_d_{d}")).alias(*d))
                .collect();
            if totals {
                e.extend(
                    dims.iter()
                        .map(|d| col(format!("{alias}_g_{d}")).alias(format!("g{d}"))),
                );
            }
            e.push(col(alias).alias(if alias == "md" { "m" } else { "d" }));
            e
        };
        let mine = medians(scan(), &names, totals, &x, "md").unwrap();
        let mine = LogicalPlanBuilder::from(mine)
            .project(mine_cols("md"))
            .unwrap()
            .build()
            .unwrap();
        // Groups whose values are all NULL have no pairs: DataFusion gives them NULL.
        let want: Vec<String> = rows(&ctx, project(reference.clone(), "m"))
            .await
            .into_iter()
            .filter(|r| !r.ends_with("|∅"))
            .collect();
        assert!(
            want.len() > 5 || (dims.is_empty() && want.len() == 1),
            "{want:?}"
        );
        assert_eq!(rows(&ctx, mine).await, want);

        let mine = distinct_counts(scan(), &names, totals, &x, "dc").unwrap();
        let mine = LogicalPlanBuilder::from(mine)
            .project(mine_cols("dc"))
            .unwrap()
            .build()
            .unwrap();
        let want: Vec<String> = rows(&ctx, project(reference, "d"))
            .await
            .into_iter()
            .filter(|r| !r.ends_with("|0"))
            .collect();
        assert_eq!(rows(&ctx, mine).await, want);
    }

    /// Fixed intervals added to or subtracted from timestamps without a time zone become
    /// durations with the same results; months, fractions finer than the unit and
    /// timestamps with a time zone keep their interval.
    #[tokio::test]
    async fn fixed_intervals_become_durations_with_the_same_results() {
        let ctx = SessionContext::new();
        ctx.sql(
            "CREATE TABLE t AS SELECT \
               arrow_cast(to_timestamp_micros(v * 3700000123), 'Timestamp(Microsecond, None)') AS us, \
               arrow_cast(to_timestamp_seconds(v * 86399), 'Timestamp(Second, None)') AS s, \
               to_timestamp_nanos(v * 1234567890123) AS ns, \
               arrow_cast(to_timestamp_seconds(v * 86399), 'Timestamp(Second, Some(\"Europe/Helsinki\"))') AS tz \
             FROM (SELECT unnest(generate_series(-50, 400)) AS v)",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
        let table = ctx.table("t").await.unwrap();
        let schema = table.schema().clone();
        let cases = [
            ("us + INTERVAL '3 hours'", true),
            ("INTERVAL '1 day 2 hours' + us", true),
            ("us - INTERVAL '90 minutes 0.000001 seconds'", true),
            ("s + INTERVAL '2 days'", true),
            ("s - INTERVAL '1.5 seconds'", false),
            ("ns + INTERVAL '0.000000001 seconds'", true),
            ("us + INTERVAL '1 month'", false),
            ("tz + INTERVAL '1 day'", false),
        ];
        for (sql, fixed) in cases {
            let written = ctx.state().create_logical_expr(sql, &schema).unwrap();
            let rewritten = fixed_intervals(written.clone(), &schema);
            assert_eq!(
                rewritten.to_string().contains("Interval"),
                !fixed,
                "{sql}: {rewritten}"
            );
            let values = |e: Expr| {
                let table = table.clone();
                async move {
                    let batches = table
                        .select(vec![e.alias("x")])
                        .unwrap()
                        .collect()
                        .await
                        .unwrap();
                    text_rows(batches)
                }
            };
            let want = values(written).await;
            assert_eq!(want.len(), 451);
            assert_eq!(values(rewritten).await, want, "{sql}");
        }
    }

    /// Distinct counts whose groupings spill under a small memory limit (their states
    /// written, sorted and merged), and without a limit skip the partial grouping of mostly
    /// distinct values (each row's own state), equal DataFusion's own.
    #[tokio::test]
    async fn distinct_counts_that_spill_equal_datafusion() {
        use datafusion::execution::memory_pool::FairSpillPool;
        use datafusion::execution::runtime_env::RuntimeEnvBuilder;
        use datafusion::functions_aggregate::expr_fn::{count_distinct, grouping};
        use datafusion::physical_plan::ExecutionPlan;
        let n = 150_000usize;
        let mut seed = 11u64;
        let mut next = |m: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        let (mut a, mut b, mut x) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let v = next(n as u64 / 2);
            // Values keep to one `a` mostly; `b` varies (and is sometimes NULL).
            a.push(format!("a{}", (v + u64::from(next(10) == 0)) % 4));
            b.push((next(9) != 0).then(|| format!("b{}", next(3))));
            x.push((next(50) != 0).then(|| format!("hetu-{v:06}")));
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, false),
            Field::new("b", DataType::Utf8, true),
            Field::new("x", DataType::Utf8, true),
        ]));
        let batches: Vec<RecordBatch> = (0..n)
            .step_by(4096)
            .map(|from| {
                let to = (from + 4096).min(n);
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(StringArray::from(a[from..to].to_vec())),
                        Arc::new(StringArray::from(b[from..to].to_vec())),
                        Arc::new(StringArray::from(x[from..to].to_vec())),
                    ],
                )
                .unwrap()
            })
            .collect();
        let table = Arc::new(MemTable::try_new(schema, vec![batches]).unwrap());
        let scan =
            || LogicalPlanBuilder::scan("t", provider_as_source(table.clone()), None).unwrap();
        let dims = ["a".to_string(), "b".to_string()];
        let keys = || vec![col("a"), col("b")];

        let reference = scan()
            .aggregate(
                vec![Expr::GroupingSet(GroupingSet::Cube(keys()))],
                vec![
                    count_distinct(col("x")).alias("d"),
                    grouping(col("a")).alias("ga"),
                    grouping(col("b")).alias("gb"),
                ],
            )
            .unwrap()
            .project(vec![col("a"), col("b"), col("ga"), col("gb"), col("d")])
            .unwrap()
            .build()
            .unwrap();
        let want: Vec<String> = rows(&SessionContext::new(), reference)
            .await
            .into_iter()
            .filter(|r| !r.ends_with("|0"))
            .collect();
        assert!(want.len() > 20, "{want:?}");

        // Runs the plan in a session with `pool` bytes, if any; its rows and metrics.
        type Metrics = datafusion::physical_plan::metrics::MetricsSet;
        fn total(p: &Arc<dyn ExecutionPlan>, metric: &dyn Fn(Metrics) -> Option<usize>) -> usize {
            let own = p.metrics().and_then(metric).unwrap_or(0);
            own + p.children().iter().map(|c| total(c, metric)).sum::<usize>()
        }
        let run = |pool: Option<usize>, fan_in: usize| {
            let mut config = SessionConfig::new()
                .with_target_partitions(2)
                .with_batch_size(512);
            config
                .options_mut()
                .execution
                .skip_partial_aggregation_probe_rows_threshold = 2000;
            // The sort that numbers the few cells keeps its merge reserve within the pool
            // (10 MB by default, more than the whole pool here).
            config.options_mut().execution.sort_spill_reservation_bytes = 256 << 10;
            // A step's inputs are streams without statistics, so its joins keep the build
            // side the planner gives them (the few cells); the table here has statistics.
            config.options_mut().optimizer.join_reordering = false;
            let mut runtime = RuntimeEnvBuilder::new().with_max_spill_merge_fan_in(fan_in);
            if let Some(bytes) = pool {
                runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(bytes)));
            }
            let ctx = SessionContext::new_with_config_rt(config, runtime.build_arc().unwrap());
            let mine = distinct_counts(scan(), &dims, true, &col("x"), "dc").unwrap();
            let mine = LogicalPlanBuilder::from(mine)
                .project(vec![
                    col("dc_d_a"),
                    col("dc_d_b"),
                    col("dc_g_a"),
                    col("dc_g_b"),
                    col("dc"),
                ])
                .unwrap()
                .build()
                .unwrap();
            async move {
                let physical = ctx
                    .execute_logical_plan(mine)
                    .await
                    .unwrap()
                    .create_physical_plan()
                    .await
                    .unwrap();
                let batches = datafusion::physical_plan::collect(physical.clone(), ctx.task_ctx())
                    .await
                    .unwrap();
                let spills = total(&physical, &|m| m.spill_count());
                let skipped = total(&physical, &|m| {
                    m.sum_by_name("skipped_aggregation_rows")
                        .map(|v| v.as_usize())
                });
                (text_rows(batches), spills, skipped)
            }
        };
        let (limited, spills, _) = run(Some(3 << 20), SPILL_MERGE_FAN_IN).await;
        assert!(spills > 0, "no grouping spilled");
        assert_eq!(limited, want);
        // Runs merged two at a time, in rounds (as a long run's many runs are, 16 at a time).
        // A round writes its merged runs to a new spill file: more spills than at once.
        let (rounds, more_spills, _) = run(Some(3 << 20), 2).await;
        assert!(
            more_spills > spills,
            "{more_spills} spills: no merge in rounds"
        );
        assert_eq!(rounds, want);
        let (unlimited, _, skipped) = run(None, 0).await;
        assert!(skipped > 0, "no partial grouping was skipped");
        assert_eq!(unlimited, want);
    }

    /// Counts, sums (also filtered, also of decimals), least and greatest values rolled up
    /// from cells equal the same aggregates over the rows in every grouping set, with their
    /// types; other aggregates are not rolled up.
    #[tokio::test]
    async fn aggregates_rolled_up_from_cells_equal_the_cube_over_rows() {
        use datafusion::functions_aggregate::expr_fn::{avg, count, grouping, max, min, sum};
        use datafusion::logical_expr::ExprFunctionExt;
        let ctx = SessionContext::new();
        let scan = || LogicalPlanBuilder::scan("t", provider_as_source(table()), None).unwrap();
        let keys = vec![col("a"), col("b")];
        let dec = Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(col("x")),
            DataType::Decimal128(10, 2),
        ));
        let aggs = vec![
            count(lit(1u8)).alias("n"),
            count(col("x")).alias("nx"),
            sum(col("x")).alias("s"),
            sum(dec).alias("sd"),
            sum(col("x"))
                .filter(col("x").gt(lit(0.0)))
                .build()
                .unwrap()
                .alias("sp"),
            min(col("x")).alias("lo"),
            max(col("x")).alias("hi"),
        ];
        let cube = || vec![Expr::GroupingSet(GroupingSet::Cube(keys.clone()))];
        let flags = || {
            vec![
                grouping(col("a")).alias("ga"),
                grouping(col("b")).alias("gb"),
            ]
        };
        let mut direct = aggs.clone();
        direct.extend(flags());
        let direct = scan().aggregate(cube(), direct).unwrap().build().unwrap();
        let (fine, mut totals) = rolled_up(&aggs, &keys, scan()).unwrap().unwrap();
        totals.extend(flags());
        let rolled = fine.aggregate(cube(), totals).unwrap().build().unwrap();
        let types = |p: &LogicalPlan| {
            p.schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(types(&rolled), types(&direct));
        let want = rows(&ctx, direct).await;
        assert!(want.len() > 30, "{want:?}");
        assert_eq!(rows(&ctx, rolled).await, want);
        assert!(
            rolled_up(&[avg(col("x")).alias("m")], &keys, scan())
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn medians_and_distinct_counts_equal_datafusion_per_group() {
        compare(&["a", "b"], false).await;
    }

    #[tokio::test]
    async fn medians_and_distinct_counts_equal_datafusion_per_grouping_set() {
        compare(&["a", "b"], true).await;
    }

    /// One dimension with NULL members: a NULL member is a cell of its own.
    #[tokio::test]
    async fn medians_and_distinct_counts_by_one_dimension_with_nulls() {
        compare(&["b"], false).await;
        compare(&["b"], true).await;
    }

    /// Without dimensions: one group, all rows.
    #[tokio::test]
    async fn medians_and_distinct_counts_of_all_rows() {
        compare(&[], false).await;
    }

    /// A dimension with more values than its lane of a cell's number holds (15 bits each for
    /// eight dimensions) is an error that names it, not a wrong count.
    #[tokio::test]
    async fn too_many_values_of_a_dimension_is_an_error_that_names_it() {
        let ctx = SessionContext::new();
        ctx.sql(
            "CREATE TABLE t AS SELECT v AS a, 1 AS b, 1 AS c, 1 AS d, 1 AS e, 1 AS f, 1 AS g, \
             1 AS h, v AS x FROM (SELECT unnest(generate_series(1, 32768)) AS v)",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
        let dims: Vec<String> = "abcdefgh".chars().map(String::from).collect();
        let count = |rows: i64| {
            let ctx = ctx.clone();
            let dims = dims.clone();
            async move {
                let scan = ctx
                    .table("t")
                    .await
                    .unwrap()
                    .filter(col("a").lt_eq(lit(rows)))
                    .unwrap()
                    .into_unoptimized_plan();
                let plan = distinct_counts(
                    LogicalPlanBuilder::from(scan),
                    &dims,
                    false,
                    &col("x"),
                    "dc",
                )
                .unwrap();
                ctx.execute_logical_plan(plan)
                    .await
                    .unwrap()
                    .collect()
                    .await
            }
        };
        // 32 767 values fit (codes 0 to 32 766); one more does not.
        let fits: usize = count(32_767)
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(fits, 32_767);
        let err = count(32_768).await.unwrap_err().to_string();
        assert!(
            err.contains("over 8 dimensions takes at most 32767 distinct values in each; `a`"),
            "{err}"
        );
    }
}
