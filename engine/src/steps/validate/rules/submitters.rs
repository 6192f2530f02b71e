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

#[cfg(test)]
mod tests {
    use crate::steps::validate::testing::*;

    /// The `submitters` rule names each expected submitter that sent no rows: listed, or
    /// every code of a code set; a step without a submitter column cannot have the rule.
    #[test]
    fn submitters_names_each_missing_one() {
        use crate::run::accounting::StepQuality;
        let checked = |rule: &str| {
            let text = line_text("{ h: string }", rule).replace(
                "validate: { input: s,",
                "validate: { input: s, submitter: h,",
            );
            let (line, _) =
                crate::line::load::load_text("t.yaml", std::path::Path::new("."), text).unwrap();
            let params = crate::plan::check::bind_params(&line, None).unwrap();
            crate::plan::check::plan_all(
                line,
                vec![],
                &crate::line::params::expression_values(&params),
                b"k",
            )
        };
        let q = crate::run::quarantine::Quarantine::new(std::env::temp_dir(), "t".into(), None);
        let outcome = |rule: &str, rows: &[Vec<Option<&str>>]| {
            let checked = checked(rule).unwrap();
            let plan = &checked.plans["v"];
            let batch = typed(&checked.plans["s"].output, rows);
            let mut quality = StepQuality::default();
            crate::run::quarantine::tap(&batch, plan, &mut quality, &q, "v").unwrap();
            let failure = crate::run::quarantine::finish_dataset_checks(
                plan,
                rows.len() as u64,
                &mut quality,
            );
            (failure, quality.dataset["s"].clone())
        };
        let rule =
            "{ id: s, submitters: { expected: [pirkanmaa, uusimaa, lappi] }, severity: fail }";
        let (failure, o) = outcome(rule, &[vec![Some("uusimaa")], vec![Some("uusimaa")]]);
        assert!(!o.passed);
        assert_eq!(o.observed, "missing 2: lappi, pirkanmaa");
        assert_eq!(failure.map(|f| f.0).as_deref(), Some("s"));
        let (failure, o) = outcome(
            rule,
            &[
                vec![Some("lappi")],
                vec![Some("uusimaa")],
                vec![Some("pirkanmaa")],
            ],
        );
        assert!(o.passed, "{o:?}");
        assert_eq!(failure, None);
        // Every municipality of the code set is expected; one sent rows.
        let (_, o) = outcome(
            "{ id: s, submitters: { codeset: kunnat }, severity: warn }",
            &[vec![Some("091")]],
        );
        assert!(!o.passed);
        assert!(o.observed.starts_with("missing "), "{}", o.observed);
        assert!(!o.observed.contains("091"), "{}", o.observed);
        assert!(o.observed.contains("049"), "{}", o.observed);
        // Without a submitter column the rule cannot be planned.
        let text = line_text("{ h: string }", rule);
        let (line, _) =
            crate::line::load::load_text("t.yaml", std::path::Path::new("."), text).unwrap();
        let params = crate::plan::check::bind_params(&line, None).unwrap();
        let d = crate::plan::check::plan_all(
            line,
            vec![],
            &crate::line::params::expression_values(&params),
            b"k",
        )
        .err()
        .expect("refused");
        assert!(
            d.iter().any(|d| d.message.contains("`submitter` column")),
            "{d:?}"
        );
    }
}
