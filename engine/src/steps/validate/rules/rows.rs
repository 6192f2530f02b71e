//! `rows`: the number of rows in scope lies within `min` and `max` (a dataset check).

use std::sync::Arc;

use datafusion::common::DFSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{RuleCx, RuleKind, Scope};
use crate::line::spec::{Category, Name};
use crate::plan::{DatasetOutcome, DatasetRule, Diags, Seen};

/// Bounds of a row count.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountBounds {
    /// At least this many rows.
    #[serde(default)]
    pub min: Option<u64>,
    /// At most this many rows.
    #[serde(default)]
    pub max: Option<u64>,
}

impl RuleKind for CountBounds {
    fn category(&self) -> Category {
        Category::Completeness
    }

    fn scope(&self) -> Scope {
        Scope::Dataset
    }

    fn dataset_check(
        &self,
        _cx: &RuleCx,
        _schema: &DFSchema,
        _submitter: Option<&Name>,
    ) -> Result<Arc<dyn DatasetRule>, Diags> {
        Ok(Arc::new(self.clone()))
    }
}

impl DatasetRule for CountBounds {
    fn judge(&self, seen: &Seen) -> DatasetOutcome {
        let (rows, min, max) = (seen.rows, self.min, self.max);
        DatasetOutcome {
            passed: min.is_none_or(|m| rows >= m) && max.is_none_or(|m| rows <= m),
            observed: format!("{rows} rows"),
            expected: match (min, max) {
                (Some(a), Some(b)) => format!("{a}–{b} rows"),
                (Some(a), None) => format!("at least {a} rows"),
                (None, Some(b)) => format!("at most {b} rows"),
                (None, None) => "any number of rows".into(),
            },
        }
    }
}
