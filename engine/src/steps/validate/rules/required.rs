//! `required`: these columns have a value. The reason names the first missing column.

use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{Expr, case, col, lit, when};
use datafusion::scalar::ScalarValue;
use serde::{Deserialize, Serialize};

use super::{OneOrMany, RuleCx, RuleKind};
use crate::line::spec::Category;
use crate::plan::Diags;

/// The columns that must have a value: one name or a list.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(transparent)]
pub struct RequiredCheck(pub OneOrMany);
super::transparent_schema!(RequiredCheck, OneOrMany);

impl RuleKind for RequiredCheck {
    fn category(&self) -> Category {
        Category::Completeness
    }

    fn row_check(&self, cx: &RuleCx, schema: &DFSchema) -> Result<Expr, Diags> {
        let mut c = case(lit(true));
        for (k, n) in self.0.names().into_iter().enumerate() {
            cx.column(schema, n)?;
            let missing = col(Column::from_name(n.value.as_str())).is_null();
            let msg = lit(format!("`{}` is missing", n.value));
            c = if k == 0 {
                when(missing, msg)
            } else {
                c.when(missing, msg)
            };
        }
        c.otherwise(lit(ScalarValue::Utf8(None)))
            .map_err(|e| cx.planning(e))
    }
}

#[cfg(test)]
mod tests {
    use crate::steps::validate::testing::*;

    #[test]
    fn required() {
        let rows = vec![
            vec![Some("x"), None],
            vec![None, Some("y")],
            vec![Some("x"), Some("y")],
        ];
        assert_eq!(
            broken(
                "{ a: string, b: string }",
                "{ id: r, required: [a, b] }",
                &rows
            ),
            vec![1, 2]
        );
        assert_eq!(
            broken("{ a: string, b: string }", "{ id: r, required: a }", &rows),
            vec![2]
        );
    }
}
