//! `values`: the column's value is one of the listed ones (when present).

use datafusion::common::DFSchema;
use datafusion::logical_expr::{Expr, lit, when};
use datafusion::scalar::ScalarValue;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{RuleCx, RuleKind};
use crate::line::spec::{Category, Name};
use crate::plan::Diags;

/// A column and the values it may take.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValuesCheck {
    /// The column.
    pub column: Name,
    /// The accepted values, as text.
    pub values: Vec<String>,
}

impl RuleKind for ValuesCheck {
    fn category(&self) -> Category {
        Category::Conformance
    }

    fn row_check(&self, cx: &RuleCx, schema: &DFSchema) -> Result<Expr, Diags> {
        let c = as_text(cx, schema, &self.column)?;
        let list: Vec<Expr> = self.values.iter().map(|s| lit(s.clone())).collect();
        when(
            c.clone().is_not_null().and(c.in_list(list, true)),
            lit(format!(
                "`{}` is not one of {}",
                self.column.value,
                self.values.join(", ")
            )),
        )
        .otherwise(lit(ScalarValue::Utf8(None)))
        .map_err(|e| cx.planning(e))
    }
}

/// Column `name` as text (cast when it is not), after checking it exists.
pub(super) fn as_text(cx: &RuleCx, schema: &DFSchema, name: &Name) -> Result<Expr, Diags> {
    use arrow::datatypes::DataType;
    use datafusion::common::Column;
    use datafusion::logical_expr::col;
    let t = cx.column(schema, name)?;
    let c = col(Column::from_name(name.value.as_str()));
    Ok(if t == DataType::Utf8 {
        c
    } else {
        Expr::Cast(datafusion::logical_expr::Cast::new(
            Box::new(c),
            DataType::Utf8,
        ))
    })
}

#[cfg(test)]
mod tests {
    use crate::steps::validate::testing::*;

    #[test]
    fn accepted_values() {
        let rows = vec![one(Some("A")), one(Some("E")), one(None)];
        assert_eq!(
            broken(
                "{ u: string }",
                "{ id: r, values: { column: u, values: [A, B] } }",
                &rows
            ),
            vec![2]
        );
    }
}
