//! `in_period`: the column's date or timestamp lies in the run's period. A timestamp is
//! compared with the period's first midnight and the one after its last day (a local time
//! column's with its zone's: Finnish midnights), so no cast per row is needed.

use arrow::datatypes::DataType;
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{Expr, col, lit, when};
use datafusion::scalar::ScalarValue;

use super::{RuleCx, RuleKind, column_check};
use crate::diag::Code;
use crate::line::spec::Category;
use crate::plan::Diags;
use crate::plan::expr::midnight;

column_check! {
    /// The date or timestamp column that must lie in the period.
    PeriodCheck
}

impl RuleKind for PeriodCheck {
    fn category(&self) -> Category {
        Category::Plausibility
    }

    fn needs_period(&self) -> bool {
        true
    }

    fn row_check(&self, cx: &RuleCx, schema: &DFSchema) -> Result<Expr, Diags> {
        let p = &self.0;
        let t = cx.column(schema, p)?;
        let params = &cx.planner.params;
        let (Some(start), Some(end)) = (params.get("period_start"), params.get("period_end"))
        else {
            return Err(cx.error(Code::V301, p.at, "the line has no period parameter"));
        };
        let c = col(Column::from_name(p.value.as_str()));
        let outside = match (&t, start, end) {
            (
                DataType::Timestamp(unit, zone),
                ScalarValue::Date32(Some(_)),
                ScalarValue::Date32(Some(_)),
            ) => {
                let first = midnight(lit(start.clone()), *unit, zone.clone(), false);
                let after = midnight(lit(end.clone()), *unit, zone.clone(), true);
                Some(c.clone().lt(first).or(c.clone().gt_eq(after)))
            }
            _ => None,
        };
        let day = match t {
            _ if outside.is_some() => c.clone(),
            DataType::Date32 => c.clone(),
            DataType::Timestamp(..) => Expr::Cast(datafusion::logical_expr::Cast::new(
                Box::new(c.clone()),
                DataType::Date32,
            )),
            other => {
                return Err(cx.error(
                    Code::V202,
                    p.at,
                    format!(
                        "`{}` is {other}; the period check needs a date or timestamp",
                        p.value
                    ),
                ));
            }
        };
        let outside = outside.unwrap_or_else(|| {
            day.clone()
                .lt(lit(start.clone()))
                .or(day.gt(lit(end.clone())))
        });
        when(
            c.is_not_null().and(outside),
            lit(format!(
                "outside-period: `{}` is not in the period",
                p.value
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
    fn period() {
        let rows = vec![
            one(Some("2025-03-01T00:00:00")),
            one(Some("2025-02-28T23:59:59")),
            one(Some("2025-03-31T23:59:59")),
            one(Some("2025-04-01T00:00:00")),
        ];
        assert_eq!(
            broken("{ t: timestamp }", "{ id: r, in_period: t }", &rows),
            vec![2, 4]
        );
    }

    /// A local time is in the period by the zone's calendar: 00:30 on the first of March
    /// in Finland is in March although it is still February in UTC, and 00:30 on the first
    /// of April is not in March although it still is in UTC.
    #[test]
    fn period_of_local_times() {
        let rows = vec![
            one(Some("2025-03-01T00:30:00")),
            one(Some("2025-02-28T23:59:59")),
            one(Some("2025-03-31T23:59:59")),
            one(Some("2025-04-01T00:30:00")),
            one(Some("2025-03-30T04:05:00")),
        ];
        assert_eq!(
            broken(
                "{ t: { type: timestamp, local: true } }",
                "{ id: r, in_period: t }",
                &rows
            ),
            vec![2, 4]
        );
    }
}
