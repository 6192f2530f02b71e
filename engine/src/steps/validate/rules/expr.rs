//! `expr`: a boolean DataFusion SQL expression over the row holds (a null result passes).

use arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::logical_expr::{Expr, ExprSchemable, lit, when};
use datafusion::scalar::ScalarValue;
use serde::{Deserialize, Serialize};

use super::{RuleCx, RuleKind};
use crate::diag::Code;
use crate::line::spec::{Category, ExprText};
use crate::plan::Diags;

/// The condition, as DataFusion SQL.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(transparent)]
pub struct ExprCheck(pub ExprText);
super::transparent_schema!(ExprCheck, ExprText);

impl RuleKind for ExprCheck {
    fn category(&self) -> Category {
        Category::Plausibility
    }

    fn row_check(&self, cx: &RuleCx, schema: &DFSchema) -> Result<Expr, Diags> {
        let (p, x) = (cx.planner, &self.0);
        let e = p.expr(x, schema)?;
        if e.get_type(schema)
            .map_err(|err| vec![p.expr_error(x, err)])?
            != DataType::Boolean
        {
            return Err(cx.error(
                Code::V202,
                p.locate(x, ""),
                format!("`{}` is not a condition (true/false)", x.value),
            ));
        }
        when(e.is_false(), lit(format!("`{}` does not hold", x.value)))
            .otherwise(lit(ScalarValue::Utf8(None)))
            .map_err(|e| cx.planning(e))
    }
}

#[cfg(test)]
mod tests {
    use crate::steps::validate::testing::*;

    #[test]
    fn expressions_and_conditions() {
        let rows = vec![
            vec![Some("1"), Some("A")],
            vec![Some("-1"), Some("A")],
            vec![Some("-1"), Some("B")],
            vec![None, Some("A")],
        ];
        assert_eq!(
            broken(
                "{ n: integer, k: string }",
                "{ id: r, expr: \"n >= 0\" }",
                &rows
            ),
            vec![2, 3]
        );
        assert_eq!(
            broken(
                "{ n: integer, k: string }",
                "{ id: r, expr: \"n >= 0\", when: \"k = 'A'\" }",
                &rows
            ),
            vec![2]
        );
        let e = eval(
            "{ n: integer, k: string }",
            "{ id: r, expr: \"n + 1\" }",
            &rows,
        )
        .unwrap_err();
        assert!(e.contains("V202"), "{e}");
    }
}
