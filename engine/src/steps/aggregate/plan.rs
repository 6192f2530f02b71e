//! Planning an aggregate step: measures by dimensions (with totals), rates over a
//! population, and which measures count persons.

use std::collections::{BTreeMap, BTreeSet};

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, DataFusionError};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Expr, GroupingSet, JoinType, LogicalPlanBuilder, col, lit, when};

use super::distinct::{count_distinct_arg, distinct_counts, median_arg, medians, rolled_up};
use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::line::spec::{
    AggregateSpec, CountryPopulation, ExprText, Name, Pos, RateSpec, StepKind,
};
use crate::plan::expr::{cast_text, first_line};
use crate::plan::{Diags, InputInfo, Planner, StepPlan};
use crate::plan::{Inputs, PlanStep};

/// V205 at `at` for an engine error while planning the step (its first line).
fn engine_err(file: &str, at: Pos) -> impl Fn(DataFusionError) -> Diags + Copy + '_ {
    move |e: DataFusionError| {
        vec![Diagnostic::error(
            Code::V205,
            file,
            at,
            first_line(&e.to_string()),
        )]
    }
}

/// The measures of an aggregate step taken apart: the aggregates of the main grouping, the
/// distinct counts and medians computed apart, and each measure over their columns.
struct Measures {
    /// Aggregates of the main grouping, aliased `__agg<i>`.
    aggs: Vec<Expr>,
    /// `count(DISTINCT x)` (true) and `median(x)` (false) measures, computed apart and
    /// joined to the groups (see `distinct_counts` and `medians`): alias and argument.
    apart: Vec<(String, Expr, bool)>,
    /// Each measure, by name, over the columns of `aggs` and `apart`.
    measures: Vec<(String, Expr)>,
    /// The measures that count persons.
    person_counts: Vec<String>,
}

impl Planner<'_> {
    /// Plans an aggregate step: computed dimensions, the measures per group (and per
    /// grouping set with totals), the dimensions' total codes, then the rates.
    pub(crate) fn plan_aggregate(
        &self,
        a: &AggregateSpec,
        b: LogicalPlanBuilder,
        info: &InputInfo,
        populations: BTreeMap<String, LogicalPlanBuilder>,
    ) -> Result<StepPlan, Diags> {
        let b = self.aggregate_computed(a, b)?;
        let schema = b.schema().clone();
        let by: Vec<&Name> =
            a.by.iter()
                .flat_map(|d| d.parts())
                .map(|(n, _)| n)
                .collect();
        let mut dims = Vec::new();
        for d in &by {
            self.column_check(&schema, d).map_err(|d| vec![d])?;
            dims.push(d.value.clone());
        }
        let area = self.aggregate_area(a, &dims)?;
        let Measures {
            aggs,
            apart,
            measures,
            person_counts,
        } = self.aggregate_measures(a, &schema, info)?;
        let main = self.aggregate_groups(a, b, &dims, aggs, &apart)?;
        let mut b = self.aggregate_output(a, main, &dims, measures)?;
        for (i, (name, r)) in a.rates.iter().enumerate() {
            b = self.rate(
                b,
                i,
                name,
                r,
                a.totals.then(|| total_code(a, &r.area.value)),
                populations.get(r.population.value.as_str()),
            )?;
        }
        let plan = b.build().map_err(engine_err(&self.line.file, a.input.at))?;
        let mut p = self.finish(StepKind::Aggregate, plan, vec![], dims, area);
        p.person_counts = person_counts;
        Ok(p)
    }

    /// The declared area dimension; V201 when `area` names no dimension of the step.
    fn aggregate_area(&self, a: &AggregateSpec, dims: &[String]) -> Result<Option<String>, Diags> {
        let Some(area) = &a.area else {
            return Ok(None);
        };
        if dims.contains(&area.value) {
            return Ok(Some(area.value.clone()));
        }
        let mut d = self.diag(
            Code::V201,
            area.at,
            format!(
                "the area `{}` is not a dimension of the step (one of `by`)",
                area.value
            ),
        );
        if let Some(h) = did_you_mean(&area.value, dims.iter().map(String::as_str)) {
            d = d.with_hint(h);
        }
        Err(vec![d])
    }

    /// The input with the computed dimensions as columns (they become columns first).
    fn aggregate_computed(
        &self,
        a: &AggregateSpec,
        b: LogicalPlanBuilder,
    ) -> Result<LogicalPlanBuilder, Diags> {
        let computed: Vec<(&Name, &ExprText)> =
            a.by.iter()
                .flat_map(|d| d.parts())
                .filter_map(|(n, e)| e.map(|e| (n, e)))
                .collect();
        if computed.is_empty() {
            return Ok(b);
        }
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
        b.project(exprs)
            .map_err(engine_err(&self.line.file, a.input.at))
    }

    /// The measures parsed and taken apart (V204 for a measure without an aggregate), with
    /// the diagnostics of every measure.
    fn aggregate_measures(
        &self,
        a: &AggregateSpec,
        schema: &DFSchema,
        info: &InputInfo,
    ) -> Result<Measures, Diags> {
        // An input grouped by a personal value has a row per person (and per its other
        // dimensions): every count of its rows counts persons.
        let rows_are_persons = info.dimensions.iter().any(|d| info.personal.contains(d));
        let mut m = Measures {
            aggs: Vec::new(),
            apart: Vec::new(),
            measures: Vec::new(),
            person_counts: Vec::new(),
        };
        let mut diags = Vec::new();
        for (name, text) in &a.measures {
            let e = match self.expr(text, schema) {
                Ok(e) => e,
                Err(d) => {
                    diags.extend(d);
                    continue;
                }
            };
            if counts_persons(&e, &info.personal, rows_are_persons) {
                m.person_counts.push(name.value.clone());
            }
            match split_measure(e, schema, &mut m.aggs, &mut m.apart) {
                Ok((r, true)) => m.measures.push((name.value.clone(), r)),
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
        Ok(m)
    }

    /// The aggregates per group of `dims` (with totals, per grouping set of their cube, with
    /// a `__g_<dim>` flag per dimension), with the measures computed apart joined.
    fn aggregate_groups(
        &self,
        a: &AggregateSpec,
        b: LogicalPlanBuilder,
        dims: &[String],
        mut aggs: Vec<Expr>,
        apart: &[(String, Expr, bool)],
    ) -> Result<LogicalPlanBuilder, Diags> {
        let dim_exprs: Vec<Expr> = dims
            .iter()
            .map(|d| col(Column::from_name(d.as_str())))
            .collect();
        let mut groupings = Vec::new();
        let group: Vec<Expr> = if a.totals {
            for d in dims {
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
        let err = engine_err(&self.line.file, a.input.at);
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
        for (alias, arg, distinct) in apart {
            main = join_apart(main, &b, dims, a.totals, alias, arg, *distinct).map_err(err)?;
        }
        Ok(main)
    }

    /// The step's columns: each dimension as text (where a total rolls it up, `SSS` for the
    /// declared area and `YHT` for the others), then the measures.
    fn aggregate_output(
        &self,
        a: &AggregateSpec,
        b: LogicalPlanBuilder,
        dims: &[String],
        measures: Vec<(String, Expr)>,
    ) -> Result<LogicalPlanBuilder, Diags> {
        let err = engine_err(&self.line.file, a.input.at);
        let mut out: Vec<Expr> = Vec::new();
        for d in dims {
            let c = cast_text(col(Column::from_name(d.as_str())));
            if a.totals {
                let code = total_code(a, d);
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
        b.project(out).map_err(err)
    }

    /// Joins the population and adds `name = round(per × count / population, decimals)`.
    fn rate(
        &self,
        b: LogicalPlanBuilder,
        i: usize,
        name: &Name,
        r: &RateSpec,
        total: Option<&'static str>,
        population: Option<&LogicalPlanBuilder>,
    ) -> Result<LogicalPlanBuilder, Diags> {
        let err = |at: Pos| engine_err(&self.line.file, at);
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
        let (pa, py, pv) = (format!("__pa{i}"), format!("__py{i}"), format!("__pv{i}"));
        let names = [pa.as_str(), py.as_str(), pv.as_str()];
        let table = self.rate_population(r, total, pop, &b, names)?;
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

    /// A rate's population as columns `pa` (area, as text), `py` (year, as text) and `pv`
    /// (the population); with totals, also the whole country, the sum of the areas (all, or
    /// those `data` has rows for), coded `total` as the total of the rate's area dimension
    /// is (`SSS` for the declared area).
    fn rate_population(
        &self,
        r: &RateSpec,
        total: Option<&'static str>,
        pop: &LogicalPlanBuilder,
        data: &LogicalPlanBuilder,
        [pa, py, pv]: [&str; 3],
    ) -> Result<LogicalPlanBuilder, Diags> {
        let err = engine_err(&self.line.file, r.population.at);
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
        let rows = pop
            .clone()
            .project(vec![
                cast_text(col(Column::from_name(r.area.value.as_str()))).alias(pa),
                cast_text(col(Column::from_name(year_col.value.as_str()))).alias(py),
                Expr::Cast(datafusion::logical_expr::Cast::new(
                    Box::new(col(Column::from_name(value_col.value.as_str()))),
                    DataType::Float64,
                ))
                .alias(pv),
            ])
            .map_err(err)?;
        let Some(total) = total else {
            return Ok(rows);
        };
        // The whole country's population is the sum of the areas' (of those reported).
        let areas = match r.country {
            CountryPopulation::All => pop.clone(),
            CountryPopulation::Reported => {
                let reported = data
                    .clone()
                    .project(vec![
                        cast_text(col(Column::from_name(r.area.value.as_str()))).alias("__ra"),
                    ])
                    .and_then(|b| b.distinct())
                    .and_then(|b| b.build())
                    .map_err(err)?;
                let on = cast_text(col(Column::from_name(r.area.value.as_str())))
                    .eq(col(Column::from_name("__ra")));
                pop.clone()
                    .join_on(reported, JoinType::LeftSemi, vec![on])
                    .map_err(err)?
            }
        };
        let country = areas
            .aggregate(
                vec![cast_text(col(Column::from_name(year_col.value.as_str()))).alias(py)],
                vec![
                    datafusion::functions_aggregate::expr_fn::sum(Expr::Cast(
                        datafusion::logical_expr::Cast::new(
                            Box::new(col(Column::from_name(value_col.value.as_str()))),
                            DataType::Float64,
                        ),
                    ))
                    .alias(pv),
                ],
            )
            .and_then(|c| {
                c.project(vec![
                    lit(total).alias(pa),
                    col(Column::from_name(py)),
                    col(Column::from_name(pv)),
                ])
            })
            .map_err(err)?;
        rows.union(country.build().map_err(err)?).map_err(err)
    }
}

/// The code of a dimension's total: `SSS` (the whole country) for the declared area, `YHT`
/// for the others.
fn total_code(a: &AggregateSpec, dimension: &str) -> &'static str {
    if a.area.as_ref().is_some_and(|n| n.value == dimension) {
        "SSS"
    } else {
        "YHT"
    }
}

/// A measure with its distinct counts, medians and other aggregates replaced by columns
/// (their expressions pushed to `apart` and `aggs`), and whether it had any.
fn split_measure(
    e: Expr,
    schema: &DFSchema,
    aggs: &mut Vec<Expr>,
    apart: &mut Vec<(String, Expr, bool)>,
) -> datafusion::error::Result<(Expr, bool)> {
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
            if let Some(arg) = median_arg(&e, schema) {
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
        .map(|t| t.data)?;
    Ok((rewritten, found))
}

/// `main` with a distinct count or median of `arg` over the rows `b` joined to its groups
/// (on the dimensions, and with totals the grouping flags).
fn join_apart(
    main: LogicalPlanBuilder,
    b: &LogicalPlanBuilder,
    dims: &[String],
    totals: bool,
    alias: &str,
    arg: &Expr,
    distinct: bool,
) -> datafusion::error::Result<LogicalPlanBuilder> {
    let counts = if distinct {
        distinct_counts(b.clone(), dims, totals, arg, alias)
    } else {
        medians(b.clone(), dims, totals, arg, alias)
    }?;
    let mut left: Vec<Column> = dims.iter().map(|d| Column::from_name(d.as_str())).collect();
    let mut right: Vec<Column> = dims
        .iter()
        .map(|d| Column::from_name(format!("{alias}_d_{d}")))
        .collect();
    if totals {
        left.extend(dims.iter().map(|d| Column::from_name(format!("__g_{d}"))));
        right.extend(
            dims.iter()
                .map(|d| Column::from_name(format!("{alias}_g_{d}"))),
        );
    }
    main.join_detailed(
        counts,
        JoinType::Left,
        (left, right),
        None,
        datafusion::common::NullEquality::NullEqualsNull,
    )
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

impl PlanStep for AggregateSpec {
    fn plan(&self, p: &Planner, _name: &str, inputs: &Inputs) -> Result<StepPlan, Diags> {
        let (b, info) = p.scan(inputs, &self.input)?;
        let mut populations = BTreeMap::new();
        for r in self.rates.values() {
            populations.insert(r.population.value.clone(), p.scan(inputs, &r.population)?.0);
        }
        p.plan_aggregate(self, b, info, populations)
    }

    fn made_at(&self, p: &Planner, column: &str) -> Option<Pos> {
        if let Some(e) = self.measures.get(column) {
            return Some(p.locate(e, ""));
        }
        self.by
            .iter()
            .flat_map(|d| d.parts())
            .map(|(n, _)| n)
            .find(|n| n.value == column)
            .map(|n| n.at)
    }

    fn declares(&self, column: &str) -> Option<Pos> {
        self.measures.get_key_value(column).map(|(k, _)| k.at)
    }
}
