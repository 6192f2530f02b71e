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

#[cfg(test)]
mod tests {
    use crate::steps::validate::testing::*;

    #[test]
    fn range_of_numbers_dates_and_timestamps() {
        let rows = vec![
            one(Some("0")),
            one(Some("-1")),
            one(Some("5.5")),
            one(Some("6")),
        ];
        assert_eq!(
            broken(
                "{ n: decimal }",
                "{ id: r, range: { column: n, min: 0, max: 5.5 } }",
                &rows
            ),
            vec![2, 4]
        );
        let days = vec![
            one(Some("2024-12-31")),
            one(Some("2025-01-01")),
            one(Some("2026-01-01")),
        ];
        assert_eq!(
            broken(
                "{ d: date }",
                "{ id: r, range: { column: d, min: 2025-01-01, max: 2025-12-31 } }",
                &days
            ),
            vec![1, 3]
        );
        let times = vec![
            one(Some("2025-01-01T00:00:00")),
            one(Some("2025-01-01T23:59:59")),
        ];
        assert_eq!(
            broken(
                "{ t: timestamp }",
                "{ id: r, range: { column: t, max: \"2025-01-01T12:00:00\" } }",
                &times
            ),
            vec![2]
        );
        let e = eval(
            "{ d: date }",
            "{ id: r, range: { column: d, min: eilen } }",
            &days,
        )
        .unwrap_err();
        assert!(e.contains("V202"), "{e}");
    }
}
