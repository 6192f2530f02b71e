//! `unique`: no two rows share these columns' values; the first occurrence (by object and
//! row) is kept and later ones break the rule, naming the first's row.
//!
//! Duplicate keys are found without sorting the rows: (1) the candidate keys, whose 128-bit
//! `DistinctKey`s a Bloom filter saw before in the scan (`seen::SeenBefore`; on a cluster,
//! a grouping of every row's keys counts them); (2) the rows with a candidate key (few) are
//! grouped by the keys themselves — exact — for the count and the first occurrence; (3)
//! those keys are the build side of a join the rows stream past. A false positive or a key
//! collision in (1) only adds a candidate that (2) drops.

use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{
    Expr, JoinType, LogicalPlan, LogicalPlanBuilder, ScalarUDF, SortExpr, col, lit, when,
};
use datafusion::scalar::ScalarValue;
use serde::{Deserialize, Serialize};

use super::{Joins, OneOrMany, RuleCx, RuleKind, plan_error};
use crate::line::spec::{Category, Name};
use crate::plan::expr::cast_text;
use crate::plan::{Diags, OBJECT_COLUMN, ROW_COLUMN};

/// The columns whose values together must be unique: one name or a list.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(transparent)]
pub struct UniqueCheck(pub OneOrMany);
super::transparent_schema!(UniqueCheck, OneOrMany);

/// Column `__u<i>_<what>` of the rule's joins.
fn u_col(cx: &RuleCx, what: &str) -> Expr {
    col(Column::from_name(format!("__u{}_{what}", cx.index)))
}

fn column(n: &Name) -> Expr {
    col(Column::from_name(n.value.as_str()))
}

impl UniqueCheck {
    /// (1): the keys seen more than once, as hashes `__u<i>_h<j>`.
    fn candidates(
        &self,
        cx: &RuleCx,
        joins: &Joins,
        present: Expr,
        distinct_key: &ScalarUDF,
    ) -> Result<(LogicalPlan, Option<ScalarUDF>), Diags> {
        use datafusion::functions_aggregate::expr_fn::count;
        let i = cx.index;
        let names = self.0.names();
        let hashed: Vec<Expr> = names
            .iter()
            .enumerate()
            .map(|(j, n)| {
                distinct_key
                    .call(vec![column(n)])
                    .alias(format!("__u{i}_h{j}"))
            })
            .collect();
        // The filter's end: on the second scan, which starts after the first pass.
        let mut seen_done = None;
        let candidates = if let Some(size) = &cx.planner.unique_filter {
            let filter = crate::steps::validate::seen::SeenBefore::sized(
                size.clone(),
                cx.planner.state.runtime_env().memory_pool.clone(),
            );
            seen_done = Some(ScalarUDF::new_from_impl(filter.done()));
            let seen = ScalarUDF::new_from_impl(filter);
            joins
                .base
                .clone()
                .filter(present)
                .and_then(|d| d.filter(seen.call(names.iter().map(|n| column(n)).collect())))
                .and_then(|d| d.aggregate(hashed, Vec::<Expr>::new()))
        } else {
            joins
                .base
                .clone()
                .filter(present)
                .and_then(|d| d.aggregate(hashed, vec![count(lit(1u8)).alias(format!("__u{i}_c"))]))
                .and_then(|d| d.filter(u_col(cx, "c").gt(lit(1i64))))
        }
        .and_then(|d| d.build())
        .map_err(plan_error(cx.planner, cx.rule.id.at))?;
        Ok((candidates, seen_done))
    }

    /// (2): the candidate keys that occur more than once, with their first object and row.
    fn duplicates(
        &self,
        cx: &RuleCx,
        joins: &Joins,
        present: Expr,
        distinct_key: &ScalarUDF,
    ) -> Result<(LogicalPlan, Vec<Expr>), Diags> {
        use datafusion::functions_aggregate::expr_fn::{count, first_value};
        let i = cx.index;
        let err = plan_error(cx.planner, cx.rule.id.at);
        let (candidates, seen_done) = self.candidates(cx, joins, present.clone(), distinct_key)?;
        let mut rows: Vec<Expr> = Vec::new();
        let mut on_hash = Vec::new();
        let mut keys = Vec::new();
        let mut on = Vec::new();
        for (j, n) in self.0.names().into_iter().enumerate() {
            rows.push(column(n).alias(format!("__u{i}_k{j}")));
            let hash = distinct_key.call(vec![column(n)]);
            let hash = match (&seen_done, j) {
                (Some(done), 0) => done.call(vec![hash]),
                _ => hash,
            };
            rows.push(hash.alias(format!("__u{i}_r{j}")));
            on_hash.push(u_col(cx, &format!("h{j}")).eq(u_col(cx, &format!("r{j}"))));
            keys.push(u_col(cx, &format!("k{j}")));
            on.push(u_col(cx, &format!("k{j}")).eq(col(Column::new(
                Some(joins.input.value.as_str()),
                n.value.as_str(),
            ))));
        }
        rows.push(col(OBJECT_COLUMN).alias(format!("__u{i}_o")));
        rows.push(col(ROW_COLUMN).alias(format!("__u{i}_w")));
        let order = vec![
            SortExpr::new(u_col(cx, "o"), true, false),
            SortExpr::new(u_col(cx, "w"), true, false),
        ];
        let with_rows = joins
            .base
            .clone()
            .filter(present)
            .and_then(|d| d.project(rows))
            .and_then(|d| d.build())
            .map_err(&err)?;
        let dups = LogicalPlanBuilder::from(candidates)
            .join_on(with_rows, JoinType::Inner, on_hash)
            .and_then(|d| {
                d.aggregate(
                    keys,
                    vec![
                        count(lit(1u8)).alias(format!("__u{i}_n")),
                        first_value(u_col(cx, "o"), order.clone()).alias(format!("__u{i}_object")),
                        first_value(u_col(cx, "w"), order).alias(format!("__u{i}_row")),
                    ],
                )
            })
            .and_then(|d| d.filter(u_col(cx, "n").gt(lit(1i64))))
            .and_then(|d| d.build())
            .map_err(&err)?;
        Ok((dups, on))
    }
}

impl RuleKind for UniqueCheck {
    fn category(&self) -> Category {
        Category::Conformance
    }

    fn join_rows(
        &self,
        cx: &RuleCx,
        joins: &Joins,
        b: LogicalPlanBuilder,
    ) -> Result<LogicalPlanBuilder, Diags> {
        let names = self.0.names();
        for n in &names {
            cx.column(joins.schema, n)?;
        }
        let present = names
            .iter()
            .map(|n| column(n).is_not_null())
            .reduce(|a, b| a.and(b))
            .unwrap_or(lit(true));
        let distinct_key = ScalarUDF::new_from_impl(crate::functions::DistinctKey::default());
        let (dups, on) = self.duplicates(cx, joins, present, &distinct_key)?;
        // (3): the duplicates are the build side; the rows stream past them.
        let err = plan_error(cx.planner, cx.rule.id.at);
        LogicalPlanBuilder::from(dups)
            .join_on(b.build().map_err(&err)?, JoinType::Right, on)
            .map_err(&err)
    }

    fn row_check(&self, cx: &RuleCx, schema: &DFSchema) -> Result<Expr, Diags> {
        // The duplicates were joined in by `join_rows`: a row is a duplicate when its key
        // has a first occurrence elsewhere.
        let names = self.0.names();
        for n in &names {
            cx.column(schema, n)?;
        }
        let first_object = u_col(cx, "object");
        let first_row = u_col(cx, "row");
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
        .otherwise(lit(ScalarValue::Utf8(None)))
        .map_err(|e| cx.planning(e))
    }
}

#[cfg(test)]
mod tests {
    use crate::steps::validate::testing::*;

    #[test]
    fn unique_single_and_composite() {
        let rows = vec![
            vec![Some("1"), Some("a")],
            vec![Some("2"), Some("a")],
            vec![Some("1"), Some("b")],
            vec![Some("1"), Some("a")],
            vec![None, Some("a")],
            vec![None, Some("a")],
        ];
        assert_eq!(
            broken("{ k: string, m: string }", "{ id: r, unique: k }", &rows),
            vec![3, 4]
        );
        let reasons = eval(
            "{ k: string, m: string }",
            "{ id: r, unique: [k, m] }",
            &rows,
        )
        .unwrap();
        assert_eq!(reasons.iter().filter(|r| r.is_some()).count(), 1);
        assert_eq!(
            reasons[3].as_deref(),
            Some("duplicate `k`, `m`; first at row 1")
        );
    }

    /// The first pass's filter may flag keys that were not seen (here a filter of one word
    /// flags most of them) and the partitions test it at once; the reasons are those of the
    /// exact grouping a cluster uses, row for row.
    #[test]
    fn unique_is_exact_whatever_the_filter_flags() {
        let ids: Vec<String> = (0..3000)
            .map(|i| format!("T{}", (i * 7919) % 2500))
            .collect();
        let rows: Vec<Vec<Option<&str>>> = ids
            .iter()
            .enumerate()
            .map(|(i, k)| vec![(i % 97 != 0).then_some(k.as_str()), Some(["a", "b"][i % 2])])
            .collect();
        for rule in ["{ id: r, unique: k }", "{ id: r, unique: [k, m] }"] {
            let exact = eval_with("{ k: string, m: string }", rule, &rows, None, 2).unwrap();
            let broken = exact.iter().filter(|r| r.is_some()).count();
            assert!(broken > 100, "{rule}: {broken}");
            for (filter, partitions) in [(8, 2), (8, 1), (1 << 20, 2)] {
                let got = eval_with(
                    "{ k: string, m: string }",
                    rule,
                    &rows,
                    Some(filter),
                    partitions,
                )
                .unwrap();
                assert_eq!(
                    got, exact,
                    "{rule}, filter {filter}, {partitions} partitions"
                );
            }
        }
    }

    /// Two unique rules in one step: each filter's pass ends before the other's begins (the
    /// outer join builds its side first), each filter goes back to the pool, and the first
    /// rule's reasons are the exact grouping's.
    #[test]
    fn two_unique_rules_each_give_their_filter_back() {
        let rows: Vec<Vec<Option<&str>>> = (0..500)
            .map(|i| {
                vec![
                    Some(["K1", "K2", "K3", "K4", "K5"][i % 5]),
                    Some(["a", "b", "c"][i % 3]),
                ]
            })
            .collect();
        let rules = "{ id: r, unique: k }, { id: s, unique: [k, m] }";
        let exact = eval_with("{ k: string, m: string }", rules, &rows, None, 2).unwrap();
        assert_eq!(exact.iter().filter(|r| r.is_some()).count(), 495);
        for partitions in [1, 2] {
            let got = eval_with(
                "{ k: string, m: string }",
                rules,
                &rows,
                Some(1 << 16),
                partitions,
            )
            .unwrap();
            assert_eq!(got, exact, "{partitions} partitions");
        }
    }
}
