//! `order`: date or timestamp columns are in order, each no later than the next. Columns
//! of different types are compared as timestamps (in the zone of a local time column among
//! them: a date is then its midnight there); a pair with a missing value passes.

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{Expr, case, col, lit, when};
use datafusion::scalar::ScalarValue;
use serde::{Deserialize, Serialize};

use super::{RuleCx, RuleKind};
use crate::diag::Code;
use crate::line::spec::{Category, Name};
use crate::plan::Diags;

/// The columns, earliest first.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(transparent)]
pub struct OrderCheck(pub Vec<Name>);
super::transparent_schema!(OrderCheck, Vec<Name>);

impl RuleKind for OrderCheck {
    fn category(&self) -> Category {
        Category::Plausibility
    }

    fn row_check(&self, cx: &RuleCx, schema: &DFSchema) -> Result<Expr, Diags> {
        let order = &self.0;
        if order.len() < 2 {
            return Err(cx.error(
                Code::V003,
                cx.rule.id.at,
                "`order` needs two or more columns",
            ));
        }
        let mut types = Vec::new();
        for n in order {
            types.push(cx.column(schema, n)?);
        }
        let same = types.windows(2).all(|w| w[0] == w[1]);
        let zone = types.iter().find_map(|t| match t {
            DataType::Timestamp(_, Some(zone)) => Some(zone.clone()),
            _ => None,
        });
        let value = |n: &Name| {
            let c = col(Column::from_name(n.value.as_str()));
            if same {
                c
            } else {
                Expr::Cast(datafusion::logical_expr::Cast::new(
                    Box::new(c),
                    DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
                ))
            }
        };
        let mut c = case(lit(true));
        for (k, pair) in order.windows(2).enumerate() {
            let (a, b) = (value(&pair[0]), value(&pair[1]));
            let broken = a
                .clone()
                .is_not_null()
                .and(b.clone().is_not_null())
                .and(a.gt(b));
            let msg = lit(format!("`{}` is after `{}`", pair[0].value, pair[1].value));
            c = if k == 0 {
                when(broken, msg)
            } else {
                c.when(broken, msg)
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
    fn order_of_dates() {
        let rows = vec![
            vec![Some("2025-01-01"), Some("2025-01-02"), Some("2025-01-03")],
            vec![Some("2025-01-02"), Some("2025-01-01"), Some("2025-01-03")],
            vec![Some("2025-01-01"), Some("2025-01-04"), Some("2025-01-03")],
            vec![Some("2025-01-01"), None, Some("2025-01-03")],
        ];
        let reasons = eval(
            "{ a: date, b: date, c: date }",
            "{ id: r, order: [a, b, c] }",
            &rows,
        )
        .unwrap();
        assert_eq!(reasons[0], None);
        assert_eq!(reasons[1].as_deref(), Some("`a` is after `b`"));
        assert_eq!(reasons[2].as_deref(), Some("`b` is after `c`"));
        assert_eq!(reasons[3], None);
    }

    /// A date before a local time is its midnight in the time's zone: 00:30 on the first
    /// of March in Finland is not before the first of March (it is in UTC).
    #[test]
    fn order_of_a_date_and_a_local_time() {
        let rows = vec![
            vec![Some("2025-03-01"), Some("2025-03-01T00:30:00")],
            vec![Some("2025-03-02"), Some("2025-03-01T23:30:00")],
        ];
        let reasons = eval(
            "{ a: date, b: { type: timestamp, local: true } }",
            "{ id: r, order: [a, b] }",
            &rows,
        )
        .unwrap();
        assert_eq!(reasons[0], None);
        assert_eq!(reasons[1].as_deref(), Some("`a` is after `b`"));
    }
}
