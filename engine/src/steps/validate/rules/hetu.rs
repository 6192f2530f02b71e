//! `hetu`: the column holds a valid Finnish personal identity code (when present). The
//! checksum and date are checked by the `hetu_problem` function; temporary codes
//! (individual numbers 900–999) are refused unless the rule says `temporary: true`.

use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{Expr, col, lit, when};
use datafusion::scalar::ScalarValue;

use super::{RuleCx, RuleKind, column_check};
use crate::diag::Code;
use crate::line::spec::{Category, Name};
use crate::plan::Diags;
use crate::plan::expr::cast_text;

column_check! {
    /// The column holding a personal identity code.
    HetuCheck
}

impl RuleKind for HetuCheck {
    fn category(&self) -> Category {
        Category::Conformance
    }

    fn personal_column(&self) -> Option<&Name> {
        Some(&self.0)
    }

    fn row_check(&self, cx: &RuleCx, schema: &DFSchema) -> Result<Expr, Diags> {
        let h = &self.0;
        cx.column(schema, h)?;
        let f = cx
            .planner
            .state
            .scalar_functions()
            .get("hetu_problem")
            .cloned()
            .ok_or_else(|| cx.error(Code::V205, h.at, "hetu_problem is not registered"))?;
        let c = col(Column::from_name(h.value.as_str()));
        let mut problem = f.call(vec![c.clone()]);
        if !cx.rule.temporary {
            // Individual numbers 900–999 are temporary codes (characters 8–10).
            let individual =
                datafusion::functions::unicode::expr_fn::substr(cast_text(c), lit(8i64));
            problem = datafusion::functions::core::expr_fn::coalesce(vec![
                problem,
                when(
                    individual.gt_eq(lit("900")),
                    lit("temporary personal identity codes are not accepted here"),
                )
                .otherwise(lit(ScalarValue::Utf8(None)))
                .map_err(|e| cx.error(Code::V205, h.at, e.to_string()))?,
            ]);
        }
        // NULL for NULL: the problem itself (computed once per row, not in a condition and
        // again in its branch).
        Ok(problem)
    }
}

#[cfg(test)]
mod tests {
    use crate::steps::validate::testing::*;

    #[test]
    fn identity_codes_with_and_without_temporary_ones() {
        let rows = vec![
            one(Some("131052-308T")),
            one(Some("131052-308U")),
            one(Some("020516C903K")),
            one(None),
        ];
        assert_eq!(
            broken(
                "{ h: { type: string, personal: true } }",
                "{ id: r, hetu: h }",
                &rows
            ),
            vec![2]
        );
        assert_eq!(
            broken(
                "{ h: { type: string, personal: true } }",
                "{ id: r, hetu: h, temporary: false }",
                &rows
            ),
            vec![2, 3]
        );
    }
}
