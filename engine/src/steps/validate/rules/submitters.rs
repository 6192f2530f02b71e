//! `submitters`: every expected submitter sent rows for the period (a dataset check over
//! the step's `submitter` column; for `_object`, the file name's prefix). The submitters
//! are listed, or every code of a code set (e.g. the wellbeing services counties); each
//! missing one is named, with its rows in the previous period when that is known.

use std::sync::Arc;

use datafusion::common::DFSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{RuleCx, RuleKind, Scope};
use crate::diag::Code;
use crate::line::spec::{Category, Name};
use crate::plan::history::Before;
use crate::plan::{DatasetOutcome, DatasetRule, Diags, Finding, FindingKind, Seen};

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
            .filter(|s| seen.submitter_rows(s) == 0)
            .map(String::as_str)
            .collect();
        // What a missing one sent in the previous period, when that is known.
        let before = match seen.history.of_step(1, seen.step) {
            Before::Counts(counts) => Some(counts),
            _ => None,
        };
        let findings = missing
            .iter()
            .map(|s| Finding {
                submitter: s.to_string(),
                what: FindingKind::Missing,
                rows: 0,
                previous: before.and_then(|b| b.get(*s)).map(|c| c.rows),
                ratio: None,
            })
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
            findings,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::history::{EarlierPeriod, History, Recorded, SubmitterCounts};
    use crate::plan::{Finding, FindingKind};
    use crate::steps::validate::testing::*;

    /// The `submitters` rule names each expected submitter that sent no rows: listed, or
    /// every code of a code set; a step without a submitter column cannot have the rule.
    #[test]
    fn submitters_names_each_missing_one() {
        let none = History::default();
        let rule =
            "{ id: s, submitters: { expected: [pirkanmaa, uusimaa, lappi] }, severity: fail }";
        let outcome = |rule: &str, rows: &[Vec<Option<&str>>]| {
            let (failure, mut o) = judge_rows(submitter_line(rule, "h"), rows, None, &none).unwrap();
            (failure, o.remove("s").unwrap())
        };
        let (failure, o) = outcome(rule, &[vec![Some("uusimaa")], vec![Some("uusimaa")]]);
        assert!(!o.passed);
        assert_eq!(o.observed, "missing 2: lappi, pirkanmaa");
        assert_eq!(failure.map(|f| f.0).as_deref(), Some("s"));
        let named: Vec<(&str, FindingKind, u64)> = o
            .findings
            .iter()
            .map(|f| (f.submitter.as_str(), f.what, f.rows))
            .collect();
        assert_eq!(
            named,
            [
                ("lappi", FindingKind::Missing, 0),
                ("pirkanmaa", FindingKind::Missing, 0)
            ]
        );
        let (failure, o) = outcome(
            rule,
            &[
                vec![Some("lappi")],
                vec![Some("uusimaa")],
                vec![Some("pirkanmaa")],
            ],
        );
        assert!(o.passed, "{o:?}");
        assert!(o.findings.is_empty());
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
        assert!(o.findings.iter().any(|f| f.submitter == "049"));
        // Without a submitter column the rule cannot be planned.
        let e = judge_rows(line_text("{ h: string }", rule), &[], None, &none).unwrap_err();
        assert!(e.contains("`submitter` column"), "{e}");
    }

    /// With `submitter: _object` a submitter is its files' name up to the first `.` or `_`,
    /// the same in every period: a county that sent no file is named, with the rows it
    /// sent in the previous period.
    #[test]
    fn submitters_of_objects_are_named_by_their_files() {
        let counts: std::collections::BTreeMap<String, SubmitterCounts> = [("05", 7), ("06", 3), ("07", 12)]
            .into_iter()
            .map(|(s, n)| (s.to_string(), SubmitterCounts { rows: n, rejected: 1 }))
            .collect();
        let history = History {
            periods: vec![EarlierPeriod {
                period: "2025-02".into(),
                back: 1,
                recorded: Recorded::Counts {
                    run_id: "r".into(),
                    steps: std::collections::BTreeMap::from([("v".to_string(), counts)]),
                },
            }],
        };
        let rule = "{ id: s, submitters: { expected: [\"05\", \"06\", \"07\"] }, severity: warn }";
        let objects = [
            "inbox/ensihoito/2025-03/05.csv",
            "inbox/ensihoito/2025-03/05_toinen.csv",
            "inbox/ensihoito/2025-03/06-2025-03.csv",
        ];
        let rows = vec![vec![None]; 3];
        let (failure, o) =
            judge_rows(submitter_line(rule, "_object"), &rows, Some(&objects[..]), &history).unwrap();
        let o = &o["s"];
        assert_eq!(failure, None, "severity warn");
        assert!(!o.passed);
        // `06-2025-03` is not `06`: a hyphen does not end a submitter's name.
        assert_eq!(o.observed, "missing 2: 06, 07");
        assert_eq!(
            o.findings,
            [
                Finding {
                    submitter: "06".into(),
                    what: FindingKind::Missing,
                    rows: 0,
                    previous: Some(3),
                    ratio: None,
                },
                Finding {
                    submitter: "07".into(),
                    what: FindingKind::Missing,
                    rows: 0,
                    previous: Some(12),
                    ratio: None,
                },
            ]
        );
    }
}
