//! `submitters`: every expected submitter sent rows for the period (a dataset check over
//! the step's `submitter` column). The submitters are listed, or every code of a code set
//! (e.g. the wellbeing services counties); each missing one is named.

use std::sync::Arc;

use datafusion::common::DFSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{RuleCx, RuleKind, Scope};
use crate::diag::Code;
use crate::line::spec::{Category, Name};
use crate::plan::{DatasetOutcome, DatasetRule, Diags, Seen};

/// The submitters a period must have: `expected` listed, or every code of `codeset`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmittersCheck {
    /// The submitters, as the step's `submitter` column writes them.
    #[serde(default)]
    pub expected: Vec<String>,
    /// Or: every code of this code set is a submitter.
    #[serde(default)]
    pub codeset: Option<Name>,
}

/// The planned check: the submitters expected, sorted and without repeats.
#[derive(Debug)]
struct Submitters {
    expected: Vec<String>,
}

impl RuleKind for SubmittersCheck {
    fn category(&self) -> Category {
        Category::Completeness
    }

    fn scope(&self) -> Scope {
        Scope::Dataset
    }

    fn dataset_check(
        &self,
        cx: &RuleCx,
        _schema: &DFSchema,
        submitter: Option<&Name>,
    ) -> Result<Arc<dyn DatasetRule>, Diags> {
        let id = &cx.rule.id;
        if submitter.is_none() {
            return Err(cx.error(
                Code::V201,
                id.at,
                format!(
                    "rule `{}` checks the submitters: the step names its `submitter` column",
                    id.value
                ),
            ));
        }
        let mut expected = match (&self.codeset, self.expected.is_empty()) {
            (Some(name), true) => cx.codes(name)?,
            (None, false) => self.expected.clone(),
            _ => {
                return Err(cx.error(
                    Code::V101,
                    id.at,
                    format!(
                        "rule `{}`: give the submitters as `expected` or as a `codeset`, one of them",
                        id.value
                    ),
                ));
            }
        };
        expected.sort();
        expected.dedup();
        Ok(Arc::new(Submitters { expected }))
    }
}

impl DatasetRule for Submitters {
    fn judge(&self, seen: &Seen) -> DatasetOutcome {
        let missing: Vec<&str> = self
            .expected
            .iter()
            .filter(|s| (seen.submitter_rows)(s) == 0)
            .map(String::as_str)
            .collect();
        let n = self.expected.len();
        DatasetOutcome {
            passed: missing.is_empty(),
            observed: if missing.is_empty() {
                format!("all {n} submitted")
            } else {
                format!("missing {}: {}", missing.len(), missing.join(", "))
            },
            expected: format!("{n} submitters"),
        }
    }
}
