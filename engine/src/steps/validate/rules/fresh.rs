//! `fresh`: the latest value of a date or timestamp column lies in the run's period — the
//! data is not stale (a dataset check). Each batch raises the latest day seen. Tested with
//! `rows` and `null_share`: `rows.rs`, `dataset_checks`.

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::scalar::ScalarValue;

use super::{RuleCx, RuleKind, Scope, column_check};
use crate::diag::Code;
use crate::line::spec::{Category, Name};
use crate::plan::{DatasetOutcome, DatasetRule, Diags, InScope, Seen};

column_check! {
    /// The date or timestamp column whose latest value must lie in the period.
    FreshCheck
}

/// The planned check: the column and the period's first and last day (days since the
/// epoch).
#[derive(Debug)]
struct Fresh {
    column: String,
    start: i32,
    end: i32,
}

impl RuleKind for FreshCheck {
    fn category(&self) -> Category {
        Category::Plausibility
    }

    fn scope(&self) -> Scope {
        Scope::Dataset
    }

    fn dataset_check(
        &self,
        cx: &RuleCx,
        schema: &DFSchema,
        _submitter: Option<&Name>,
    ) -> Result<Arc<dyn DatasetRule>, Diags> {
        let f = &self.0;
        let t = cx.column(schema, f)?;
        if !matches!(t, DataType::Date32 | DataType::Timestamp(..)) {
            return Err(cx.error(
                Code::V202,
                f.at,
                format!("`{}` is {t}; freshness needs a date or timestamp", f.value),
            ));
        }
        let day = |k: &str| match cx.planner.params.get(k) {
            Some(ScalarValue::Date32(Some(d))) => Some(*d),
            _ => None,
        };
        let (Some(start), Some(end)) = (day("period_start"), day("period_end")) else {
            return Err(cx.error(
                Code::V301,
                f.at,
                "freshness needs the line's `period` parameter",
            ));
        };
        Ok(Arc::new(Fresh {
            column: f.value.clone(),
            start,
            end,
        }))
    }
}

impl DatasetRule for Fresh {
    fn observe(
        &self,
        rows: &InScope,
        state: &mut Option<i64>,
    ) -> Result<(), arrow::error::ArrowError> {
        if let Some(a) = rows.column(&self.column)? {
            let days = arrow::compute::cast(&a, &DataType::Date32)?;
            if let Some(max) =
                arrow::compute::max(days.as_primitive::<arrow::datatypes::Date32Type>())
            {
                *state = Some(state.unwrap_or(i64::MIN).max(max as i64));
            }
        }
        Ok(())
    }

    fn judge(&self, seen: &Seen) -> DatasetOutcome {
        let day = |d: i64| {
            chrono::NaiveDate::from_num_days_from_ce_opt(d as i32 + 719_163)
                .map(|d| d.to_string())
                .unwrap_or_else(|| "?".into())
        };
        let (column, start, end) = (&self.column, self.start as i64, self.end as i64);
        DatasetOutcome {
            passed: seen.state.is_some_and(|l| l >= start && l <= end),
            observed: match seen.state {
                Some(l) => format!("latest `{column}` {}", day(l)),
                None => format!("no `{column}` values"),
            },
            expected: format!("within {}–{}", day(start), day(end)),
            findings: Vec::new(),
        }
    }
}
