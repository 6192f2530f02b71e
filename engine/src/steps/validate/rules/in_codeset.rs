//! `in_codeset`: the column's value is a code of one of the line's code sets (when present).

use datafusion::common::DFSchema;
use datafusion::logical_expr::{Expr, lit, when};
use datafusion::scalar::ScalarValue;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{RuleCx, RuleKind};
use crate::line::spec::{Category, Name};
use crate::plan::Diags;

/// A column and the code set its values must come from.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodesetCheck {
    /// The column.
    pub column: Name,
    /// The code set, by its name under `codesets`.
    pub codeset: Name,
}

impl RuleKind for CodesetCheck {
    fn category(&self) -> Category {
        Category::Conformance
    }

    fn codeset(&self) -> Option<&Name> {
        Some(&self.codeset)
    }

    fn row_check(&self, cx: &RuleCx, schema: &DFSchema) -> Result<Expr, Diags> {
        let c = super::values::as_text(cx, schema, &self.column)?;
        let codes = cx.codes(&self.codeset)?;
        when(
            c.clone()
                .is_not_null()
                .and(c.in_list(codes.into_iter().map(lit).collect(), true)),
            lit(format!(
                "`{}` is not in code set `{}`",
                self.column.value, self.codeset.value
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
    fn in_codeset() {
        let rows = vec![one(Some("091")), one(Some("999")), one(Some("91"))];
        assert_eq!(
            broken(
                "{ kunta: string }",
                "{ id: r, in_codeset: { column: kunta, codeset: kunnat } }",
                &rows
            ),
            vec![2, 3]
        );
    }
}
