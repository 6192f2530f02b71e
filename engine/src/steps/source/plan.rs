//! Planning a source step: declared columns typed, with a rule column per required or
//! mistyped value.

use arrow::datatypes::DataType;
use datafusion::common::{Column, DataFusionError};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, col, lit, when};
use datafusion::scalar::ScalarValue;

use crate::diag::Code;
use crate::line::spec::{ColumnType, Severity, SourceSpec, StepKind};
use crate::line::spec::{Pos, Sp};
use crate::plan::RULE_PREFIX;
use crate::plan::{Diags, OBJECT_COLUMN, Planner, ROW_COLUMN, StepPlan, TapRule, arrow_type};
use crate::plan::{Inputs, PlanStep};

impl Planner<'_> {
    pub(crate) fn plan_source(
        &self,
        s: &SourceSpec,
        b: LogicalPlanBuilder,
    ) -> Result<StepPlan, Diags> {
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
        Ok(self.finish(StepKind::Source, plan, rules, vec![], None))
    }
}

impl PlanStep for SourceSpec {
    fn plan(&self, p: &Planner, name: &str, inputs: &Inputs) -> Result<StepPlan, Diags> {
        let (b, _) = p.scan(inputs, &Sp::synthetic(name.to_string()))?;
        p.plan_source(self, b)
    }

    fn declares(&self, column: &str) -> Option<Pos> {
        self.columns.get_key_value(column).map(|(k, _)| k.at)
    }
}
