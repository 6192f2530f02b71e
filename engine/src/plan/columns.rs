//! Column lineage from the plans: for each output column of a step's logical plan, the
//! (input step, column) pairs its values are computed from.
//!
//! Why from the plan and not from the line's text: an expression's words are not its
//! inputs (`CASE`, a literal, a function name, a column of another step with the same
//! name); the plan has resolved every column reference. The artefacts' OpenLineage column
//! lineage composes these per step (`artefacts/lineage.rs`). Operators the walk does not
//! know make every output depend on every input column: unknown means all.

use std::collections::BTreeSet;

use datafusion::common::DFSchema;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::utils::grouping_set_to_exprlist;
use datafusion::logical_expr::{Aggregate, Distinct, Expr, LogicalPlan};

/// The (scanned table, column) pairs one output column is computed from.
pub type Origins = BTreeSet<(String, String)>;

/// For each output column of `plan`, by position, the columns of the tables it scans that
/// the column's values are computed from. `is_step` tells an input step's table from a
/// lookup table (a code set): a value looked up by a join comes from the keys it was looked
/// up with (a municipality's county from the municipality and the date the mapping is valid
/// on), not from the lookup table.
pub fn origins(plan: &LogicalPlan, is_step: &dyn Fn(&str) -> bool) -> Vec<Origins> {
    Walk { is_step }.node(plan)
}

struct Walk<'a> {
    is_step: &'a dyn Fn(&str) -> bool,
}

impl Walk<'_> {
    fn node(&self, plan: &LogicalPlan) -> Vec<Origins> {
        let width = plan.schema().fields().len();
        let out = match plan {
            LogicalPlan::TableScan(s) => s
                .projected_schema
                .fields()
                .iter()
                .map(|f| Origins::from([(s.table_name.table().to_string(), f.name().clone())]))
                .collect(),
            LogicalPlan::Projection(p) => self.of_exprs(&p.expr, &p.input),
            LogicalPlan::Filter(f) => self.node(&f.input),
            LogicalPlan::Sort(s) => self.node(&s.input),
            LogicalPlan::Limit(l) => self.node(&l.input),
            LogicalPlan::Repartition(r) => self.node(&r.input),
            LogicalPlan::SubqueryAlias(a) => self.node(&a.input),
            LogicalPlan::Subquery(s) => self.node(&s.subquery),
            LogicalPlan::Distinct(Distinct::All(input)) => self.node(input),
            LogicalPlan::Distinct(Distinct::On(d)) => self.of_exprs(&d.select_expr, &d.input),
            LogicalPlan::Aggregate(a) => self.aggregate(a, width),
            LogicalPlan::Window(w) => {
                let mut out = self.node(&w.input);
                out.extend(self.of_exprs(&w.window_expr, &w.input));
                out
            }
            LogicalPlan::Join(j) => self.join(j),
            LogicalPlan::Union(u) => {
                let mut out = vec![Origins::new(); width];
                for input in &u.inputs {
                    for (o, i) in out.iter_mut().zip(self.node(input)) {
                        o.extend(i);
                    }
                }
                out
            }
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => vec![Origins::new(); width],
            other => all(other.inputs().into_iter().flat_map(|i| self.node(i)), width),
        };
        if out.len() == width {
            out
        } else {
            all(out, width)
        }
    }

    /// Each expression's origins: the union of those of the input columns it refers to.
    fn of_exprs(&self, exprs: &[Expr], input: &LogicalPlan) -> Vec<Origins> {
        let from = self.node(input);
        exprs
            .iter()
            .map(|e| self.of_expr(e, input.schema(), &from))
            .collect()
    }

    /// The origins of an expression's value: the columns it computes with. The rows a window
    /// or an aggregate sees (its partition, order and filter) decide which values go in, not
    /// what they are, so only their arguments count; a scalar subquery gives its column's.
    fn of_expr(&self, e: &Expr, schema: &DFSchema, from: &[Origins]) -> Origins {
        let mut out = Origins::new();
        self.collect(e, schema, from, &mut out);
        out
    }

    fn collect(&self, e: &Expr, schema: &DFSchema, from: &[Origins], out: &mut Origins) {
        match e {
            Expr::Column(c) => {
                if let Some(o) = schema.maybe_index_of_column(c).and_then(|i| from.get(i)) {
                    out.extend(o.iter().cloned());
                }
            }
            Expr::AggregateFunction(f) => {
                for a in &f.params.args {
                    self.collect(a, schema, from, out);
                }
            }
            Expr::WindowFunction(w) => {
                for a in &w.params.args {
                    self.collect(a, schema, from, out);
                }
            }
            Expr::ScalarSubquery(q) => {
                out.extend(
                    self.node(&q.subquery)
                        .into_iter()
                        .next()
                        .unwrap_or_default(),
                );
            }
            _ => {
                let _ = e.apply_children(|c| {
                    self.collect(c, schema, from, out);
                    Ok(TreeNodeRecursion::Continue)
                });
            }
        }
    }

    /// An aggregate's output: grouping keys, the grouping id of grouping sets, then aggregates.
    fn aggregate(&self, a: &Aggregate, width: usize) -> Vec<Origins> {
        let from = self.node(&a.input);
        let schema = a.input.schema();
        let Ok(groups) = grouping_set_to_exprlist(&a.group_expr) else {
            return all(from, width);
        };
        let mut out: Vec<Origins> = groups
            .iter()
            .map(|e| self.of_expr(e, schema, &from))
            .collect();
        if matches!(a.group_expr.as_slice(), [Expr::GroupingSet(_)]) {
            out.push(Origins::new());
        }
        // Over the groups of an inner aggregate, a value also depends on the inner keys
        // this one does not group by: counting the groups of `hetu` (a distinct count)
        // counts `hetu`s; a roll-up of the inner groups' figures by the same keys does not.
        let own: Origins = out.iter().flatten().cloned().collect();
        let grouped: Origins = self
            .group_origins(&a.input)
            .into_iter()
            .filter(|o| !own.contains(o))
            .collect();
        out.extend(a.aggr_expr.iter().map(|e| {
            let mut o = self.of_expr(e, schema, &from);
            o.extend(grouped.iter().cloned());
            o
        }));
        out
    }

    /// The origins of the group keys of `input` when it is an aggregate (under projections,
    /// filters and aliases); none otherwise.
    fn group_origins(&self, input: &LogicalPlan) -> Origins {
        match input {
            LogicalPlan::Aggregate(inner) => {
                let from = self.node(&inner.input);
                let Ok(groups) = grouping_set_to_exprlist(&inner.group_expr) else {
                    return Origins::new();
                };
                groups
                    .iter()
                    .flat_map(|e| self.of_expr(e, inner.input.schema(), &from))
                    .collect()
            }
            LogicalPlan::Projection(p) => self.group_origins(&p.input),
            LogicalPlan::Filter(f) => self.group_origins(&f.input),
            LogicalPlan::SubqueryAlias(s) => self.group_origins(&s.input),
            _ => Origins::new(),
        }
    }

    /// A join's output; a side that only looks values up (no input step in it) gives each
    /// of its columns the origins of the other side's keys.
    fn join(&self, j: &datafusion::logical_expr::Join) -> Vec<Origins> {
        let (mut left, mut right) = (self.node(&j.left), self.node(&j.right));
        let keys = |side: &LogicalPlan, from: &[Origins], pick: fn(&(Expr, Expr)) -> &Expr| {
            let mut o: Origins =
                j.on.iter()
                    .map(pick)
                    .flat_map(|e| self.of_expr(e, side.schema(), from))
                    .collect();
            if let Some(f) = &j.filter {
                o.extend(self.of_expr(f, side.schema(), from));
            }
            o
        };
        let lookup = |side: &[Origins]| {
            side.iter().any(|o| !o.is_empty())
                && side.iter().flatten().all(|(t, _)| !(self.is_step)(t))
        };
        if lookup(&right) && !lookup(&left) {
            let k = keys(&j.left, &left, |(l, _)| l);
            right = vec![k; right.len()];
        } else if lookup(&left) && !lookup(&right) {
            let k = keys(&j.right, &right, |(_, r)| r);
            left = vec![k; left.len()];
        }
        super::personal::join_output(j.join_type, left, right, Origins::new())
    }
}

/// Every output column from every input column: an operator that cannot be traced.
fn all(from: impl IntoIterator<Item = Origins>, width: usize) -> Vec<Origins> {
    let every: Origins = from.into_iter().flatten().collect();
    vec![every; width]
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::{MemTable, provider_as_source};
    use datafusion::logical_expr::{JoinType, LogicalPlanBuilder, col, lit};
    use datafusion::prelude::SessionContext;
    use std::sync::Arc;

    fn scan(name: &str, columns: &[&str]) -> LogicalPlanBuilder {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(*c, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let t = MemTable::try_new(schema, vec![vec![]]).unwrap();
        LogicalPlanBuilder::scan(name, provider_as_source(Arc::new(t)), None).unwrap()
    }

    /// An empty table of these columns, registered as `name`.
    fn register(ctx: &SessionContext, name: &str, columns: &[(&str, DataType)]) {
        let fields: Vec<Field> = (columns.iter())
            .map(|(c, t)| Field::new(*c, t.clone(), true))
            .collect();
        let t = MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]]).unwrap();
        ctx.register_table(name, Arc::new(t)).unwrap();
    }

    fn pairs(o: &Origins) -> Vec<String> {
        o.iter().map(|(t, c)| format!("{t}.{c}")).collect()
    }

    /// A query's output columns trace to the input columns it refers to, not to words: the
    /// literal `'koko'` and the function name are no columns, and `b.x` is `b`'s.
    #[test]
    fn sql_columns_trace_through_joins_and_aggregates() {
        let ctx = SessionContext::new();
        register(
            &ctx,
            "a",
            &[("k", DataType::Utf8), ("koko", DataType::Int64)],
        );
        register(&ctx, "b", &[("k", DataType::Utf8), ("x", DataType::Int64)]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let plan = rt
            .block_on(ctx.state().create_logical_plan(
                "SELECT a.k AS alue, 'koko' AS laji, upper(a.k) AS iso, sum(b.x) AS summa \
                 FROM a JOIN b ON a.k = b.k GROUP BY a.k",
            ))
            .unwrap();
        let o = origins(&plan, &|_| true);
        assert_eq!(pairs(&o[0]), ["a.k"]);
        assert!(o[1].is_empty(), "{:?}", o[1]);
        assert_eq!(pairs(&o[2]), ["a.k"]);
        assert_eq!(pairs(&o[3]), ["b.x"]);
    }

    /// Counting the groups of an aggregate counts what made the groups; rolling up an
    /// aggregate by its own keys adds nothing (failed before: a count of distinct patients,
    /// planned as groups of keys counted, traced to nothing).
    #[test]
    fn counting_groups_traces_to_their_keys() {
        let ctx = SessionContext::new();
        register(
            &ctx,
            "a",
            &[("alue", DataType::Utf8), ("hetu", DataType::Utf8)],
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let sql = |q: &str| rt.block_on(ctx.state().create_logical_plan(q)).unwrap();
        let plan = sql("SELECT count(*) AS n FROM (SELECT hetu FROM a GROUP BY hetu) g");
        assert_eq!(pairs(&origins(&plan, &|_| true)[0]), ["a.hetu"]);
        let plan = sql(
            "SELECT alue, sum(n) AS n FROM (SELECT alue, count(*) AS n FROM a GROUP BY alue) g GROUP BY alue",
        );
        let o = origins(&plan, &|_| true);
        assert_eq!(pairs(&o[0]), ["a.alue"]);
        assert!(o[1].is_empty(), "{:?}", o[1]);
    }

    /// A window's partition and an aggregate's filter choose rows; the value comes from
    /// the argument only.
    #[test]
    fn windows_and_filters_choose_rows_not_values() {
        let ctx = SessionContext::new();
        register(
            &ctx,
            "a",
            &[
                ("alue", DataType::Utf8),
                ("v", DataType::Int64),
                ("ok", DataType::Boolean),
            ],
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let plan = rt
            .block_on(ctx.state().create_logical_plan(
                "SELECT sum(v) OVER (PARTITION BY alue ORDER BY v) AS s, \
                 (SELECT max(v) FROM a) AS m FROM a",
            ))
            .unwrap();
        let o = origins(&plan, &|_| true);
        assert_eq!(pairs(&o[0]), ["a.v"]);
        assert_eq!(pairs(&o[1]), ["a.v"]);
        let plan = rt
            .block_on(ctx.state().create_logical_plan(
                "SELECT alue, min(v) FILTER (WHERE ok) AS m FROM a GROUP BY alue",
            ))
            .unwrap();
        assert_eq!(pairs(&origins(&plan, &|_| true)[1]), ["a.v"]);
    }

    #[test]
    fn projections_unions_and_semi_joins() {
        let a = scan("a", &["k", "v"]);
        let b = scan("b", &["k", "w"]);
        let plan = a
            .clone()
            .project(vec![col("k"), (col("v").eq(lit("x"))).alias("on_x")])
            .unwrap()
            .union(
                b.clone()
                    .project(vec![col("k"), col("w").alias("on_x")])
                    .unwrap()
                    .build()
                    .unwrap(),
            )
            .unwrap()
            .build()
            .unwrap();
        let o = origins(&plan, &|_| true);
        assert_eq!(pairs(&o[0]), ["a.k", "b.k"]);
        assert_eq!(pairs(&o[1]), ["a.v", "b.w"]);
        let semi = a
            .join_on(
                b.build().unwrap(),
                JoinType::LeftSemi,
                vec![col("a.k").eq(col("b.k"))],
            )
            .unwrap()
            .build()
            .unwrap();
        let o = origins(&semi, &|_| true);
        assert_eq!(o.len(), 2);
        assert_eq!(pairs(&o[1]), ["a.v"]);
    }
}
