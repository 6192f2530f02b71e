//! Distinct counts and medians planned as groupings of values (exact, spillable), and
//! aggregates rolled up from cells to every grouping set.

use arrow::datatypes::DataType;
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{
    Expr, ExprSchemable, GroupingSet, JoinType, LogicalPlan, LogicalPlanBuilder, col, lit, when,
};
use datafusion::scalar::ScalarValue;

/// The argument of a plain `count(DISTINCT x)`.
pub(crate) fn count_distinct_arg(e: &Expr) -> Option<Expr> {
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
pub(crate) fn median_arg(e: &Expr, schema: &DFSchema) -> Option<Expr> {
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
pub(crate) fn rolled_up(
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
pub(crate) fn distinct_counts(
    b: LogicalPlanBuilder,
    dims: &[String],
    totals: bool,
    arg: &Expr,
    alias: &str,
) -> datafusion::error::Result<LogicalPlan> {
    let names = Names::new(dims, alias);
    let (cells, keyed) = keyed_cells(b, &names, arg)?;
    let counts = counted_groups(keyed, &names, totals)?;
    let labels = group_labels(cells, &names, totals)?;
    let mut out = names.dim_out();
    if totals {
        out.extend(dims.iter().map(|n| c(format!("{alias}_g_{n}"))));
    }
    out.push(c(alias.to_string()));
    labels
        .join(
            counts,
            JoinType::Inner,
            (
                vec![Column::from_name(&names.cell)],
                vec![Column::from_name(&names.group)],
            ),
            None,
        )?
        .project(out)?
        .build()
}

/// A column by its name.
fn c(n: String) -> Expr {
    col(Column::from_name(n))
}

/// The number of the one cell of a distinct count without dimensions.
fn zero() -> Expr {
    lit(ScalarValue::Decimal128(Some(0), 38, 0))
}

/// The columns of a distinct count's plan, named after its alias.
struct Names<'a> {
    dims: &'a [String],
    alias: &'a str,
    /// A value's 128-bit key.
    key: String,
    /// A cell's number.
    cell: String,
    /// A value's set of cells.
    set: String,
    /// A group's number.
    group: String,
}

impl<'a> Names<'a> {
    /// The names of the distinct count `alias` by `dims`.
    fn new(dims: &'a [String], alias: &'a str) -> Self {
        Self {
            dims,
            alias,
            key: format!("{alias}_key"),
            cell: format!("{alias}_cell"),
            set: format!("{alias}_set"),
            group: format!("{alias}_group"),
        }
    }

    /// A dimension's column in the result.
    fn d(&self, n: &str) -> String {
        format!("{}_d_{n}", self.alias)
    }

    /// The column of the `i`th dimension's dense code.
    fn code(&self, i: usize) -> String {
        format!("{}_code{i}", self.alias)
    }

    /// The dimensions' codes.
    fn codes(&self) -> Vec<Expr> {
        (0..self.dims.len()).map(|i| c(self.code(i))).collect()
    }

    /// A cell's number from the codes, with the dimensions' names for its errors.
    fn lanes(&self) -> Expr {
        crate::functions::cellsets::cell_lanes().call(
            self.codes()
                .into_iter()
                .chain(self.dims.iter().map(|n| lit(n.as_str())))
                .collect(),
        )
    }

    /// The dimensions as the rows name them.
    fn dim_cols(&self) -> Vec<Expr> {
        self.dims.iter().map(|n| c(n.clone())).collect()
    }

    /// The dimensions as the result names them.
    fn dim_out(&self) -> Vec<Expr> {
        self.dims.iter().map(|n| c(self.d(n))).collect()
    }
}

/// The cells (their dimensions, codes and numbers) and each row's cell with its value's
/// key. Without dimensions, one cell numbered 0.
fn keyed_cells(
    b: LogicalPlanBuilder,
    names: &Names<'_>,
    arg: &Expr,
) -> datafusion::error::Result<(LogicalPlanBuilder, LogicalPlanBuilder)> {
    let value_key = datafusion::logical_expr::ScalarUDF::new_from_impl(
        crate::functions::DistinctKey::default(),
    );
    if names.dims.is_empty() {
        let cells = LogicalPlanBuilder::empty(true).project(vec![zero().alias(&names.cell)])?;
        let keyed = b.filter(arg.clone().is_not_null())?.project(vec![
            zero().alias(&names.cell),
            value_key.call(vec![arg.clone()]).alias(&names.key),
        ])?;
        return Ok((cells, keyed));
    }
    let cells = numbered_cells(&b, names)?;
    let keyed = keyed_rows(b, &cells, names, arg, &value_key)?;
    Ok((cells, keyed))
}

/// The cells: their dimensions grouped, each dimension's values numbered 0, 1, … in
/// order (NULL is a value), each cell numbered from its codes.
fn numbered_cells(
    b: &LogicalPlanBuilder,
    names: &Names<'_>,
) -> datafusion::error::Result<LogicalPlanBuilder> {
    use datafusion::logical_expr::ExprFunctionExt;
    let (dims, alias) = (names.dims, names.alias);
    let mut cells = b
        .clone()
        .project(names.dim_cols())?
        .aggregate(names.dim_cols(), Vec::<Expr>::new())?;
    for (i, dim) in dims.iter().enumerate() {
        let rank = datafusion::functions_window::expr_fn::dense_rank()
            .order_by(vec![c(dim.clone()).sort(true, true)])
            .build()?;
        cells = cells.window(vec![rank.alias(format!("{alias}_rank{i}"))])?;
    }
    let mut numbered: Vec<Expr> = dims
        .iter()
        .map(|n| c(n.clone()).alias(names.d(n)))
        .collect();
    numbered.extend(
        (0..dims.len()).map(|i| (c(format!("{alias}_rank{i}")) - lit(1u64)).alias(names.code(i))),
    );
    cells.project(numbered)?.project(
        names
            .dim_out()
            .into_iter()
            .chain(names.codes())
            .chain([names.lanes().alias(&names.cell)])
            .collect::<Vec<_>>(),
    )
}

/// Each row's cell and its value's key, for the rows whose value is not NULL.
fn keyed_rows(
    b: LogicalPlanBuilder,
    cells: &LogicalPlanBuilder,
    names: &Names<'_>,
    arg: &Expr,
    value_key: &datafusion::logical_expr::ScalarUDF,
) -> datafusion::error::Result<LogicalPlanBuilder> {
    use datafusion::common::NullEquality;
    let dims = names.dims;
    let value = format!("{}_value", names.alias);
    // Each row's cell: the few cells (dimensions and numbers) are the join's build side,
    // the rows stream past.
    let rows = b
        .project(
            names
                .dim_cols()
                .into_iter()
                .chain([arg.clone().alias(&value)])
                .collect::<Vec<_>>(),
        )?
        .filter(c(value.clone()).is_not_null())?
        .build()?;
    cells
        .clone()
        .project(
            names
                .dim_out()
                .into_iter()
                .chain([c(names.cell.clone())])
                .collect::<Vec<_>>(),
        )?
        .join_detailed(
            rows,
            JoinType::Inner,
            (
                dims.iter()
                    .map(|n| Column::from_name(names.d(n)))
                    .collect::<Vec<_>>(),
                dims.iter().map(Column::from_name).collect::<Vec<_>>(),
            ),
            None,
            NullEquality::NullEqualsNull,
        )?
        .project(vec![
            c(names.cell.clone()),
            value_key.call(vec![c(value)]).alias(&names.key),
        ])
}

/// Steps 1 and 2 of a distinct count: per value the set of its cells, then per group the
/// values that have a cell in it (columns: the group's number and the count).
fn counted_groups(
    keyed: LogicalPlanBuilder,
    names: &Names<'_>,
    totals: bool,
) -> datafusion::error::Result<LogicalPlan> {
    let alias = names.alias;
    // 1. Per value, the set of its cells.
    let sets = keyed.aggregate(
        vec![c(names.key.clone())],
        vec![
            crate::functions::cellsets::cell_set()
                .call(vec![c(names.cell.clone())])
                .alias(&names.set),
        ],
    )?;

    // 2. Per group, the values that have a cell in it: each value's set of cells gives its
    // groups, each counted once.
    let counted = format!("{alias}_counted");
    sets.aggregate(
        Vec::<Expr>::new(),
        vec![
            crate::functions::cellsets::group_counts()
                .call(vec![
                    c(names.set.clone()),
                    lit(names.dims.len() as i64),
                    lit(totals),
                ])
                .alias(&counted),
        ],
    )?
    .unnest_column(counted.as_str())?
    .project(vec![
        datafusion::functions::core::expr_fn::get_field(c(counted.clone()), "group")
            .alias(&names.group),
        datafusion::functions::core::expr_fn::get_field(c(counted), "n").alias(alias),
    ])?
    .build()
}

/// The groups' dimensions (NULL where a grouping set leaves one out) and numbers.
fn group_labels(
    cells: LogicalPlanBuilder,
    names: &Names<'_>,
    totals: bool,
) -> datafusion::error::Result<LogicalPlanBuilder> {
    let (dims, alias) = (names.dims, names.alias);
    if !totals || dims.is_empty() {
        return cells.project(
            names
                .dim_out()
                .into_iter()
                .chain([c(names.cell.clone())])
                .collect::<Vec<_>>(),
        );
    }
    let sets: Vec<Vec<Expr>> = (0..1usize << dims.len())
        .map(|kept| {
            (0..dims.len())
                .filter(|i| kept & (1 << i) != 0)
                .flat_map(|i| [c(names.d(&dims[i])), c(names.code(i))])
                .collect()
        })
        .collect();
    let flags: Vec<Expr> = dims
        .iter()
        .map(|n| {
            datafusion::functions_aggregate::expr_fn::grouping(c(names.d(n)))
                .alias(format!("{alias}_g_{n}"))
        })
        .collect();
    cells
        .aggregate(
            vec![Expr::GroupingSet(GroupingSet::GroupingSets(sets))],
            flags,
        )?
        .project(
            names
                .dim_out()
                .into_iter()
                .chain(dims.iter().map(|n| c(format!("{alias}_g_{n}"))))
                .chain([names.lanes().alias(&names.cell)])
                .collect::<Vec<_>>(),
        )
}

/// `median(arg)` of a `DOUBLE` per group of `dims` (and per grouping set when `totals`),
/// exact and in bounded memory: DataFusion's median keeps every value of a group in memory
/// (each value once per grouping set), so it is planned as the count of each (group, value)
/// pair, a running count in value order, and per group the smallest values whose running
/// count reaches the middle positions `(n + 1) / 2` and `n / 2 + 1`; their mean is the
/// median, as DataFusion computes it. All are groupings and sorts that spill. The result
/// has the group columns of `value_pairs` and `alias`.
pub(crate) fn medians(
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
