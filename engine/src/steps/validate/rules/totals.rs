//! `totals`: within each group of rows (by default the rows of one submitted object, e.g.
//! one county's workbook) the row whose `code` is `total` equals, column by column, the sum
//! of the group's other rows within `tolerance`. When it does not, or the group has no
//! totals row or more than one, every row of the group breaks the rule: a workbook whose
//! totals disagree is returned to its submitter whole, not mended row by row.
//!
//! Why an aggregate joined back (like `unique`) rather than a window: the groups are few
//! (one per object), so their sums are a small build side that the rows stream past, where
//! a window function would sort every row of the step by its group.
//!
//! Decisions a statistician would ask about:
//! - the sums are over the rows as submitted: a row that breaks another rule (a bad class
//!   code, a negative euro value) still counts, and a `when` of this rule only decides
//!   which rows are rejected, not which are summed;
//! - a missing value of a listed column counts as 0 in the sum of the other rows, but a
//!   missing value on the totals row is a mismatch of that column;
//! - rows whose group column is missing form one group of their own;
//! - every reason starts with `totals-mismatch:` (also for a missing or repeated totals
//!   row) and names the columns and the kind of group, never a value.

use datafusion::common::{Column, DFSchema, NullEquality};
use datafusion::logical_expr::{Expr, JoinType, LogicalPlanBuilder, col, lit, when};
use datafusion::scalar::ScalarValue;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Joins, RuleCx, RuleKind, plan_error};
use crate::diag::Code;
use crate::line::spec::{Category, Name, Sp};
use crate::plan::expr::cast_text;
use arrow::datatypes::DataType;
use crate::plan::{Diags, OBJECT_COLUMN};

/// A totals row that must equal the sum of its group's other rows.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TotalsCheck {
    /// The column whose values make the groups: `_object` (default) for the rows of one
    /// submitted object, or any column.
    #[serde(default)]
    pub group: Option<Name>,
    /// The column whose value `total` marks the totals row.
    pub code: Name,
    /// The value of `code` on the totals row, e.g. `YHT`.
    pub total: String,
    /// The numeric columns that must add up.
    pub columns: Vec<Name>,
    /// The largest accepted absolute difference (default 0), e.g. 1 for whole euros.
    #[serde(default)]
    pub tolerance: Option<Sp<f64>>,
}

/// Column `__t<i>_<what>` of the rule's join.
fn t_col(cx: &RuleCx, what: &str) -> Expr {
    col(Column::from_name(format!("__t{}_{what}", cx.index)))
}

fn column(n: &Name) -> Expr {
    col(Column::from_name(n.value.as_str()))
}

impl TotalsCheck {
    /// The group column as written, or `_object`.
    fn group(&self) -> Name {
        self.group
            .clone()
            .unwrap_or_else(|| Sp::synthetic(OBJECT_COLUMN.to_string()))
    }

    /// How the reasons name a group: `object`, or `<column> group`.
    fn group_kind(&self) -> String {
        let g = self.group();
        if g.value == OBJECT_COLUMN {
            "object".into()
        } else {
            format!("{} group", g.value)
        }
    }

    fn tolerance(&self) -> f64 {
        self.tolerance.as_ref().map_or(0.0, |t| t.value)
    }

    /// The rule's columns exist, the summed ones are numeric and there is at least one,
    /// the tolerance is not negative: every problem, placed.
    fn checked(&self, cx: &RuleCx, schema: &DFSchema) -> Result<(), Diags> {
        let mut diags = Vec::new();
        for n in [self.group(), self.code.clone()] {
            if let Err(d) = cx.column(schema, &n) {
                diags.extend(d);
            }
        }
        if self.columns.is_empty() {
            diags.extend(cx.error(
                Code::V004,
                cx.rule.id.at,
                format!("rule `{}`: `totals` needs at least one of `columns`", cx.rule.id.value),
            ));
        }
        for n in &self.columns {
            match cx.column(schema, n) {
                Ok(t) if !t.is_numeric() => diags.extend(cx.error(
                    Code::V202,
                    n.at,
                    format!("column `{}` is {t}, not a number: it cannot be summed", n.value),
                )),
                Ok(_) => {}
                Err(d) => diags.extend(d),
            }
        }
        if let Some(t) = self.tolerance.as_ref().filter(|t| t.value < 0.0 || t.value.is_nan()) {
            diags.extend(cx.error(
                Code::V003,
                t.at,
                format!("the tolerance is {}: it cannot be negative", t.value),
            ));
        }
        if diags.is_empty() { Ok(()) } else { Err(diags) }
    }

    /// Per group: its number of totals rows (`__t<i>_n`) and, per column `j`, the value on
    /// the totals row (`__t<i>_v<j>`) and the sum over all its rows (`__t<i>_a<j>`).
    fn sums(&self, cx: &RuleCx, joins: &Joins) -> Result<LogicalPlanBuilder, Diags> {
        use datafusion::functions_aggregate::expr_fn::sum;
        let i = cx.index;
        let is_total = cast_text(column(&self.code)).eq(lit(self.total.as_str()));
        let count = when(is_total.clone(), lit(1i64))
            .otherwise(lit(0i64))
            .map_err(|e| cx.planning(e))?;
        let mut aggr = vec![sum(count).alias(format!("__t{i}_n"))];
        for (j, n) in self.columns.iter().enumerate() {
            // Integers are summed as 38-digit decimals: an integer sum would wrap, and a
            // hostile workbook could make its rows wrap around to its totals row.
            let value = match joins.schema.field_with_unqualified_name(&n.value) {
                Ok(f) if f.data_type().is_integer() => {
                    datafusion::logical_expr::cast(column(n), DataType::Decimal128(38, 0))
                }
                _ => column(n),
            };
            let on_total = when(is_total.clone(), value.clone())
                .end()
                .map_err(|e| cx.planning(e))?;
            aggr.push(sum(on_total).alias(format!("__t{i}_v{j}")));
            aggr.push(sum(value).alias(format!("__t{i}_a{j}")));
        }
        joins
            .base
            .clone()
            .aggregate(vec![column(&self.group()).alias(format!("__t{i}_g"))], aggr)
            .map_err(plan_error(cx.planner, cx.rule.id.at))
    }
}

impl RuleKind for TotalsCheck {
    fn category(&self) -> Category {
        Category::Plausibility
    }

    fn join_rows(
        &self,
        cx: &RuleCx,
        joins: &Joins,
        b: LogicalPlanBuilder,
    ) -> Result<LogicalPlanBuilder, Diags> {
        self.checked(cx, joins.schema)?;
        let sums = self.sums(cx, joins)?;
        let err = plan_error(cx.planner, cx.rule.id.at);
        // The groups' sums are the build side; the rows stream past them. Every row finds
        // its group (the sums are of the same rows); a missing group value finds its own.
        let group = self.group();
        sums.join_detailed(
            b.build().map_err(&err)?,
            JoinType::Right,
            (
                vec![Column::from_name(format!("__t{}_g", cx.index))],
                vec![Column::new(
                    Some(joins.input.value.as_str()),
                    group.value.as_str(),
                )],
            ),
            None,
            NullEquality::NullEqualsNull,
        )
        .map_err(&err)
    }

    fn row_check(&self, cx: &RuleCx, schema: &DFSchema) -> Result<Expr, Diags> {
        self.checked(cx, schema)?;
        let kind = self.group_kind();
        let total = &self.total;
        let tolerance = lit(self.tolerance());
        // Per column: the totals row's value is missing, or differs from the sum of the
        // other rows (all rows' sum less the totals row) by more than the tolerance.
        let named: Vec<Expr> = self
            .columns
            .iter()
            .enumerate()
            .map(|(j, n)| {
                let v = t_col(cx, &format!("v{j}"));
                let others = t_col(cx, &format!("a{j}")) - v.clone();
                let diff = datafusion::functions::math::expr_fn::abs(others - v.clone());
                when(
                    v.is_null().or(diff.gt(tolerance.clone())),
                    lit(n.value.as_str()),
                )
                .end()
            })
            .collect::<Result<_, _>>()
            .map_err(|e| cx.planning(e))?;
        let mismatched = datafusion::functions::string::expr_fn::concat_ws(lit(", "), named);
        let n = t_col(cx, "n");
        when(
            n.clone().is_null().or(n.clone().lt(lit(1i64))),
            lit(format!("totals-mismatch: this {kind} has no {total} row")),
        )
        .when(
            n.gt(lit(1i64)),
            lit(format!(
                "totals-mismatch: this {kind} has more than one {total} row"
            )),
        )
        .when(
            mismatched.clone().not_eq(lit("")),
            datafusion::functions::string::expr_fn::concat(vec![
                lit(format!(
                    "totals-mismatch: the {total} row of this {kind} does not equal the sum of its rows in "
                )),
                mismatched,
            ]),
        )
        .otherwise(lit(ScalarValue::Utf8(None)))
        .map_err(|e| cx.planning(e))
    }
}

#[cfg(test)]
mod tests;
