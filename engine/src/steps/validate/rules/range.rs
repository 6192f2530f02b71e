//! `range`: the column's value lies within `min` and `max` (inclusive; either may be left
//! out). The bounds are typed like the column: numbers, dates and timestamps.

use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{Expr, col, lit, when};
use datafusion::scalar::ScalarValue;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{RuleCx, RuleKind};
use crate::diag::Code;
use crate::line::spec::{Category, Name, Scalar, Sp};
use crate::plan::Diags;

/// Bounds of a column's values.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeCheck {
    /// The column.
    pub column: Name,
    /// The smallest accepted value, as text (e.g. `0`, `2023-01-01`).
    #[serde(default)]
    pub min: Option<Sp<Scalar>>,
    /// The largest accepted value.
    #[serde(default)]
    pub max: Option<Sp<Scalar>>,
}

impl RuleKind for RangeCheck {
    fn category(&self) -> Category {
        Category::Plausibility
    }

    fn row_check(&self, cx: &RuleCx, schema: &DFSchema) -> Result<Expr, Diags> {
        let t = cx.column(schema, &self.column)?;
        let c = col(Column::from_name(self.column.value.as_str()));
        let mut cond: Option<Expr> = None;
        let mut parts = Vec::new();
        for (bound, is_min) in [(&self.min, true), (&self.max, false)] {
            let Some(b) = bound else { continue };
            let v = cx.planner.bound(b, &t, &self.column)?;
            let broken = if is_min {
                c.clone().lt(lit(v))
            } else {
                c.clone().gt(lit(v))
            };
            parts.push(format!(
                "{} {}",
                if is_min { "≥" } else { "≤" },
                b.value.text()
            ));
            cond = Some(match cond {
                Some(x) => x.or(broken),
                None => broken,
            });
        }
        let Some(cond) = cond else {
            return Err(cx.error(
                Code::V004,
                self.column.at,
                "a range needs `min`, `max` or both",
            ));
        };
        when(
            c.is_not_null().and(cond),
            lit(format!(
                "`{}` is out of range; expected {}",
                self.column.value,
                parts.join(" and ")
            )),
        )
        .otherwise(lit(ScalarValue::Utf8(None)))
        .map_err(|e| cx.planning(e))
    }
}
