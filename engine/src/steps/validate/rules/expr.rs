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

    /// Local times against dates and against each other: a date is the zone's midnight
    /// (00:30 on the first of March in Finland is on the period's first day, although in
    /// UTC it is still February), and differences are real across the spring change of the
    /// clocks (02:55 to 04:05 is 10 minutes, not 70).
    #[test]
    fn local_times_against_dates_and_each_other() {
        let rows = vec![
            vec![Some("2025-03-01T00:30:00"), Some("2025-03-01T00:40:00")],
            vec![Some("2025-02-28T23:30:00"), Some("2025-02-28T23:50:00")],
            vec![Some("2025-03-30T02:55:00"), Some("2025-03-30T04:05:00")],
        ];
        let columns =
            "{ a: { type: timestamp, local: true }, b: { type: timestamp, local: true } }";
        let broken_by = |e: &str| broken(columns, &format!("{{ id: r, expr: \"{e}\" }}"), &rows);
        assert_eq!(broken_by("a >= $period_start"), vec![2]);
        assert_eq!(
            broken_by("a BETWEEN $period_start AND $period_end"),
            vec![2]
        );
        assert_eq!(
            broken_by("b <= a + INTERVAL '20 minutes'"),
            Vec::<usize>::new()
        );
        assert_eq!(
            broken_by("date_part('epoch', b) - date_part('epoch', a) = 600"),
            vec![2]
        );
        assert_eq!(broken_by("to_char(a, '%Y-%m') = '2025-03'"), vec![2]);
    }
}
