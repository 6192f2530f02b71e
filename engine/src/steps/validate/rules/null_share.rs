//! `null_share`: the share of missing values of a column, over the rows in scope, is at
//! most `max` (a dataset check). Each batch adds its null count. Tested with `rows` and
//! `fresh`: `rows.rs`, `dataset_checks`.

use std::sync::Arc;

use datafusion::common::DFSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{RuleCx, RuleKind, Scope};
use crate::line::spec::{Category, Name};
use crate::plan::{DatasetOutcome, DatasetRule, Diags, InScope, Seen};

/// The largest share of missing values of a column.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NullShareCheck {
    /// The column.
    pub column: Name,
    /// The share, 0–1.
    pub max: f64,
}

/// The planned check: the column's name and the share.
#[derive(Debug)]
struct NullShare {
    column: String,
    max: f64,
}

impl RuleKind for NullShareCheck {
    fn category(&self) -> Category {
        Category::Completeness
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
        cx.column(schema, &self.column)?;
        Ok(Arc::new(NullShare {
            column: self.column.value.clone(),
            max: self.max,
        }))
    }
}

impl DatasetRule for NullShare {
    fn observe(
        &self,
        rows: &InScope,
        state: &mut Option<i64>,
    ) -> Result<(), arrow::error::ArrowError> {
        if let Some(a) = rows.column(&self.column)? {
            *state = Some(state.unwrap_or(0) + a.null_count() as i64);
        }
        Ok(())
    }

    fn judge(&self, seen: &Seen) -> DatasetOutcome {
        let nulls = seen.state.unwrap_or(0) as u64;
        let share = if seen.rows == 0 {
            0.0
        } else {
            nulls as f64 / seen.rows as f64
        };
        DatasetOutcome {
            passed: share <= self.max,
            observed: format!(
                "`{}` missing in {:.1} % of rows",
                self.column,
                share * 100.0
            ),
            expected: format!("at most {:.1} %", self.max * 100.0),
            findings: Vec::new(),
        }
    }
}
