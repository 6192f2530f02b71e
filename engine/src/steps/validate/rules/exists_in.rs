//! `exists_in`: the column's value is a key of another step's rows (a relationship). The
//! other step's distinct keys are joined in first, as the join's build side, so the rows
//! stream past them; a row whose key found no partner breaks the rule.

use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{Expr, JoinType, LogicalPlanBuilder, col, lit, when};
use datafusion::scalar::ScalarValue;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Joins, RuleCx, RuleKind, plan_error};
use crate::line::spec::{Category, Name};
use crate::plan::Diags;
use crate::plan::expr::cast_text;

/// A column whose values must be keys of another step.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExistsCheck {
    /// The column.
    pub column: Name,
    /// The step whose rows hold the keys.
    pub step: Name,
    /// The key column of that step. Default: the same name as `column`.
    #[serde(default)]
    pub key: Option<Name>,
}

impl ExistsCheck {
    /// The column the joined keys are in.
    fn alias(cx: &RuleCx) -> String {
        format!("__e{}", cx.index)
    }
}

impl RuleKind for ExistsCheck {
    fn category(&self) -> Category {
        Category::Conformance
    }

    fn other_step(&self) -> Option<&Name> {
        Some(&self.step)
    }

    fn join_other(
        &self,
        cx: &RuleCx,
        joins: &Joins,
        b: LogicalPlanBuilder,
    ) -> Result<LogicalPlanBuilder, Diags> {
        let Some(other) = joins.others.get(self.step.value.as_str()) else {
            return Ok(b);
        };
        let err = plan_error(cx.planner, self.step.at);
        let key = self.key.clone().unwrap_or_else(|| self.column.clone());
        cx.column(other.schema(), &key)?;
        let alias = Self::alias(cx);
        let keys = other
            .clone()
            .project(vec![
                cast_text(col(Column::from_name(key.value.as_str()))).alias(&alias),
            ])
            .and_then(|k| k.distinct())
            .and_then(|k| k.build())
            .map_err(&err)?;
        cx.column(joins.schema, &self.column)?;
        let on = cast_text(col(Column::from_name(self.column.value.as_str())))
            .eq(col(Column::from_name(alias)));
        // The keys are the join's build side; the rows stream past them.
        LogicalPlanBuilder::from(keys)
            .join_on(b.build().map_err(&err)?, JoinType::Right, vec![on])
            .map_err(&err)
    }

    fn row_check(&self, cx: &RuleCx, schema: &DFSchema) -> Result<Expr, Diags> {
        cx.column(schema, &self.column)?;
        let c = col(Column::from_name(self.column.value.as_str()));
        when(
            c.is_not_null()
                .and(col(Column::from_name(Self::alias(cx))).is_null()),
            lit(format!(
                "`{}` is not in step `{}`",
                self.column.value, self.step.value
            )),
        )
        .otherwise(lit(ScalarValue::Utf8(None)))
        .map_err(|e| cx.planning(e))
    }
}

#[cfg(test)]
mod tests {
    use crate::steps::validate::testing::*;

    #[test]
    fn relationship_to_another_step() {
        let rows = vec![one(Some("a")), one(Some("c")), one(None), one(Some("b"))];
        assert_eq!(
            broken(
                "{ k: string }",
                "{ id: r, exists_in: { column: k, step: muut, key: avain } }",
                &rows
            ),
            vec![2]
        );
        let e = eval(
            "{ k: string }",
            "{ id: r, exists_in: { column: k, step: muut, key: avian } }",
            &rows,
        )
        .unwrap_err();
        assert!(e.contains("avian"), "{e}");
    }
}
