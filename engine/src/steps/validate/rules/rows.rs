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
            findings: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::steps::validate::testing::*;

    /// The dataset checks in one step: `rows`, `null_share` (`null_share.rs`) and `fresh`
    /// (`fresh.rs`), each failing on a batch and all passing on another.
    #[test]
    fn dataset_checks() {
        use crate::plan::StepPlan;
        use crate::run::accounting::StepQuality;
        let text = line_text(
            "{ d: date, h: string }",
            "{ id: a, rows: { min: 3 }, severity: fail }, { id: b, null_share: { column: h, max: 0.4 }, severity: warn }, { id: c, fresh: d, severity: warn }",
        );
        let (line, _) =
            crate::line::load::load_text("t.yaml", std::path::Path::new("."), text).unwrap();
        let params = crate::plan::check::bind_params(&line, None).unwrap();
        let checked = crate::plan::check::plan_all(
            line,
            vec![],
            &crate::line::params::expression_values(&params),
            b"k",
        )
        .unwrap();
        let plan: &StepPlan = &checked.plans["v"];
        assert_eq!(plan.dataset_checks.len(), 3);
        assert_eq!(
            format!("{:?}", plan.dataset_checks[0].rule),
            "CountBounds { min: Some(3), max: None }"
        );
        let batch = typed(
            &checked.plans["s"].output,
            &[
                vec![Some("2025-02-10"), None],
                vec![Some("2025-02-11"), Some("x")],
            ],
        );
        let q = crate::run::quarantine::Quarantine::new(std::env::temp_dir(), "t".into(), None);
        let mut quality = StepQuality::default();
        crate::run::quarantine::tap(&batch, plan, &mut quality, &q, "v").unwrap();
        let history = crate::plan::history::History::default();
        let failure =
            crate::run::quarantine::finish_dataset_checks("v", plan, 2, &mut quality, &history);
        assert_eq!(failure.map(|f| f.0).as_deref(), Some("a"));
        assert!(!quality.dataset["b"].passed, "{:?}", quality.dataset["b"]);
        assert!(
            !quality.dataset["c"].passed,
            "stale data: {:?}",
            quality.dataset["c"]
        );
        assert_eq!(quality.violations.len(), 3);
        // Fresh data in the period, enough rows, few nulls: all pass.
        let batch = typed(
            &checked.plans["s"].output,
            &[
                vec![Some("2025-03-10"), Some("y")],
                vec![Some("2025-03-11"), Some("x")],
                vec![None, Some("z")],
            ],
        );
        let mut quality = StepQuality::default();
        crate::run::quarantine::tap(&batch, plan, &mut quality, &q, "v").unwrap();
        assert_eq!(
            crate::run::quarantine::finish_dataset_checks("v", plan, 3, &mut quality, &history),
            None
        );
        assert!(
            quality.dataset.values().all(|o| o.passed),
            "{:?}",
            quality.dataset
        );
    }
}
