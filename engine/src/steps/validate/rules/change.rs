//! `change`: each submitter's volume is plausible against the previous period — its rows
//! this period over its rows then lie within `1/max_ratio` and `max_ratio` (a dataset check
//! over the step's `submitter` column; for `_object`, the file name's prefix). The earlier
//! counts are those the quality report of the previous period's current release recorded:
//! the run reads them before its steps start and hands them down
//! ([`crate::plan::history`]). A submitter that sent nothing then is named as new, one that
//! sends nothing now as missing; a line's first period, with nothing before it, passes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::common::DFSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{RuleCx, RuleKind, Scope};
use crate::diag::Code;
use crate::line::spec::{Category, Name, Sp};
use crate::plan::history::{Before, SubmitterCounts};
use crate::plan::{DatasetOutcome, DatasetRule, Diags, Finding, FindingKind, Seen};

/// How far each submitter's volume may move from an earlier period's.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeCheck {
    /// What is compared; `rows` (the default): each submitter's rows in scope.
    #[serde(default)]
    pub measure: ChangeMeasure,
    /// The largest change allowed, as a ratio above 1: `1.5` allows from two thirds to one
    /// and a half times the earlier volume.
    pub max_ratio: Sp<f64>,
    /// The period compared with; `previous` (the default): the one before the run's
    /// (`2025-02` for `2025-03`, the quarter before, the year before).
    #[serde(default)]
    pub against: ChangeAgainst,
}

/// What a `change` rule compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeMeasure {
    /// Each submitter's rows in scope (after the step's filter).
    #[default]
    Rows,
}

/// The period a `change` rule compares with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAgainst {
    /// The period before the run's.
    #[default]
    Previous,
}

impl ChangeMeasure {
    /// The measure's name in reports.
    fn name(self) -> &'static str {
        match self {
            ChangeMeasure::Rows => "rows",
        }
    }

    /// The measure of a submitter in an earlier period.
    fn before(self, c: &SubmitterCounts) -> u64 {
        match self {
            ChangeMeasure::Rows => c.rows,
        }
    }

    /// The measure of each submitter this period.
    fn now(self, seen: &Seen) -> BTreeMap<String, u64> {
        match self {
            ChangeMeasure::Rows => seen.submitters.clone(),
        }
    }
}

impl ChangeAgainst {
    /// How many periods before the run's.
    fn back(self) -> u32 {
        match self {
            ChangeAgainst::Previous => 1,
        }
    }
}

/// The planned check.
#[derive(Debug)]
struct Change {
    measure: ChangeMeasure,
    max_ratio: f64,
    back: u32,
}

/// How many findings the observed text names; the findings list has them all.
const NAMED: usize = 10;

impl RuleKind for ChangeCheck {
    fn category(&self) -> Category {
        Category::Plausibility
    }

    fn scope(&self) -> Scope {
        Scope::Dataset
    }

    fn needs_period(&self) -> bool {
        true
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
                    "rule `{}` compares each submitter's volume: the step names its `submitter` column",
                    id.value
                ),
            ));
        }
        let max = &self.max_ratio;
        let above_one = max.value.is_finite() && max.value > 1.0;
        if !above_one {
            return Err(cx.error(
                Code::V003,
                max.at,
                format!(
                    "rule `{}`: max_ratio is a ratio above 1 (1.5 allows two thirds to one and a half times the earlier volume), not {}",
                    id.value, max.value
                ),
            ));
        }
        Ok(Arc::new(Change {
            measure: self.measure,
            max_ratio: max.value,
            back: self.against.back(),
        }))
    }
}

impl DatasetRule for Change {
    fn judge(&self, seen: &Seen) -> DatasetOutcome {
        let period = seen
            .history
            .period(self.back)
            .map_or("the previous period", |p| p.period.as_str());
        let expected = format!(
            "each submitter's {} {:.2}–{} times those of {period}",
            self.measure.name(),
            1.0 / self.max_ratio,
            self.max_ratio
        );
        let outcome = |passed: bool, observed: String, findings: Vec<Finding>| DatasetOutcome {
            passed,
            observed,
            expected: expected.clone(),
            findings,
        };
        let before = match seen.history.of_step(self.back, seen.step) {
            Before::Counts(c) => c,
            Before::NoRelease => {
                return outcome(true, format!("no release of {period} to compare with"), vec![]);
            }
            Before::NoCounts => {
                return outcome(
                    true,
                    format!("the release of {period} counted no submitters here"),
                    vec![],
                );
            }
            Before::Unreadable(why) => {
                return outcome(
                    false,
                    format!("the counts of {period} cannot be read: {why}"),
                    vec![],
                );
            }
        };
        let now = self.measure.now(seen);
        let findings = self.compare(&now, before);
        let compared = now.keys().chain(before.keys()).collect::<BTreeSet<_>>().len();
        if findings.is_empty() {
            return outcome(
                true,
                format!("{compared} submitters within the range"),
                findings,
            );
        }
        let mut named: Vec<String> = findings.iter().take(NAMED).map(describe).collect();
        if findings.len() > NAMED {
            named.push(format!("and {} more", findings.len() - NAMED));
        }
        let observed = format!(
            "{} of {compared} submitters changed: {}",
            findings.len(),
            named.join("; ")
        );
        outcome(false, observed, findings)
    }
}

impl Change {
    /// Each submitter whose measure moved beyond the bounds, in the order of their names.
    fn compare(
        &self,
        now: &BTreeMap<String, u64>,
        before: &BTreeMap<String, SubmitterCounts>,
    ) -> Vec<Finding> {
        let max = self.max_ratio;
        let names: BTreeSet<&String> = now.keys().chain(before.keys()).collect();
        names
            .into_iter()
            .filter_map(|s| {
                let rows = now.get(s).copied().unwrap_or(0);
                let previous = before.get(s).map_or(0, |c| self.measure.before(c));
                let (n, p) = (rows as f64, previous as f64);
                // Compared by multiplying, so that a ratio of exactly `max_ratio` (or its
                // inverse) passes whatever the rounding of a division would say.
                let what = match (rows, previous) {
                    (0, 0) => return None,
                    (_, 0) => FindingKind::New,
                    (0, _) => FindingKind::Missing,
                    _ if n > p * max => FindingKind::Increased,
                    _ if n * max < p => FindingKind::Decreased,
                    _ => return None,
                };
                Some(Finding {
                    submitter: s.clone(),
                    what,
                    rows,
                    previous: (previous > 0).then_some(previous),
                    ratio: (previous > 0).then_some(n / p),
                })
            })
            .collect()
    }
}

/// A finding as the observed text names it.
fn describe(f: &Finding) -> String {
    let (who, rows) = (&f.submitter, f.rows);
    match (f.what, f.previous, f.ratio) {
        (FindingKind::New, ..) => format!("{who} new, {rows} rows"),
        (FindingKind::Missing, Some(p), _) => format!("{who} no rows, {p} before"),
        (_, Some(p), Some(r)) => format!("{who} {rows} rows, {p} before (×{r:.2})"),
        _ => format!("{who} {rows} rows"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::plan::history::{EarlierPeriod, History, Recorded, SubmitterCounts};
    use crate::plan::{Finding, FindingKind};
    use crate::steps::validate::testing::*;

    /// The history of step `v` one period back (2025-02): each submitter's rows.
    fn before(rows: &[(&str, u64)]) -> History {
        let counts: BTreeMap<String, SubmitterCounts> = rows
            .iter()
            .map(|(s, n)| (s.to_string(), SubmitterCounts { rows: *n, rejected: 0 }))
            .collect();
        History {
            periods: vec![EarlierPeriod {
                period: "2025-02".into(),
                back: 1,
                recorded: Recorded::Counts {
                    run_id: "r".into(),
                    steps: [("v".to_string(), counts)].into(),
                },
            }],
        }
    }

    /// `n` rows of each submitter.
    fn rows<'a>(counts: &[(&'a str, usize)]) -> Vec<Vec<Option<&'a str>>> {
        counts
            .iter()
            .flat_map(|(s, n)| std::iter::repeat_n(vec![Some(*s)], *n))
            .collect()
    }

    const RULE: &str =
        "{ id: m, change: { measure: rows, max_ratio: 1.5, against: previous }, severity: fail }";

    /// Each submitter whose rows moved beyond the ratio is named with both counts and the
    /// ratio; one absent before is new, one absent now missing; exactly the ratio (or its
    /// inverse) passes. The same inputs give the same outcome.
    #[test]
    fn change_names_each_submitter_whose_volume_moved() {
        let history = before(&[("05", 10), ("06", 10), ("07", 4), ("08", 9)]);
        let now = rows(&[("05", 20), ("06", 15), ("08", 6), ("09", 3)]);
        let (failure, outcomes) =
            judge_rows(submitter_line(RULE, "h"), &now, None, &history).unwrap();
        let o = &outcomes["m"];
        assert!(!o.passed);
        let finding = |s: &str,
                       what: FindingKind,
                       rows: u64,
                       previous: Option<u64>,
                       ratio: Option<f64>| Finding {
            submitter: s.into(),
            what,
            rows,
            previous,
            ratio,
        };
        assert_eq!(
            o.findings,
            [
                finding("05", FindingKind::Increased, 20, Some(10), Some(2.0)),
                finding("07", FindingKind::Missing, 0, Some(4), Some(0.0)),
                finding("09", FindingKind::New, 3, None, None),
            ]
        );
        assert_eq!(
            o.observed,
            "3 of 5 submitters changed: 05 20 rows, 10 before (×2.00); 07 no rows, 4 before; 09 new, 3 rows"
        );
        assert!(o.expected.contains("0.67–1.5") && o.expected.contains("2025-02"));
        // Severity fail: the run fails, naming the rule.
        assert_eq!(failure.map(|f| f.0).as_deref(), Some("m"));
        let again = judge_rows(submitter_line(RULE, "h"), &now, None, &history).unwrap();
        assert_eq!(&again.1["m"], o);
        // Within the bounds: passes, severity warn or not.
        let warn = RULE.replace("fail", "warn");
        let (failure, outcomes) = judge_rows(
            submitter_line(&warn, "h"),
            &rows(&[("05", 14), ("06", 7), ("07", 4), ("08", 9)]),
            None,
            &history,
        )
        .unwrap();
        assert!(outcomes["m"].passed, "{:?}", outcomes["m"]);
        assert_eq!(failure, None);
    }

    /// A line's first period (no release before) and a previous release that counted no
    /// submitters of the step pass; counts that cannot be read do not.
    #[test]
    fn change_without_earlier_counts() {
        let now = rows(&[("05", 2)]);
        let line = || submitter_line(RULE, "h");
        let (failure, o) = judge_rows(line(), &now, None, &History::default()).unwrap();
        assert!(o["m"].passed && o["m"].observed.contains("no release"), "{o:?}");
        assert_eq!(failure, None);
        let mut other_step = before(&[("05", 2)]);
        if let Recorded::Counts { steps, .. } = &mut other_step.periods[0].recorded {
            let counts = steps.remove("v").unwrap();
            steps.insert("w".into(), counts);
        }
        let (_, o) = judge_rows(line(), &now, None, &other_step).unwrap();
        assert!(o["m"].passed, "{o:?}");
        let mut unreadable = before(&[]);
        unreadable.periods[0].recorded = Recorded::Unreadable("r.quality.json is missing".into());
        let (failure, o) = judge_rows(line(), &now, None, &unreadable).unwrap();
        assert!(!o["m"].passed);
        assert!(o["m"].observed.contains("r.quality.json is missing"), "{o:?}");
        assert_eq!(failure.map(|f| f.0).as_deref(), Some("m"));
    }

    /// A spec that cannot mean anything is refused with a code: a ratio of 1 or less, a
    /// measure or period there is not, a step without a submitter column.
    #[test]
    fn change_refuses_a_bad_spec() {
        let refused = |rule: &str, submitter: Option<&str>| {
            let text = match submitter {
                Some(s) => submitter_line(rule, s),
                None => line_text("{ h: string }", rule),
            };
            judge_rows(text, &[], None, &History::default())
                .err()
                .unwrap_or_else(|| panic!("{rule} was accepted"))
        };
        for ratio in ["1", "0.5", "-2", "1.0"] {
            let e = refused(
                &format!("{{ id: m, change: {{ max_ratio: {ratio} }}, severity: warn }}"),
                Some("h"),
            );
            assert!(e.contains("V003") && e.contains("max_ratio"), "{ratio}: {e}");
        }
        let e = refused(
            "{ id: m, change: { measure: rivit, max_ratio: 2 }, severity: warn }",
            Some("h"),
        );
        assert!(e.contains("V003") && e.contains("rivit"), "{e}");
        let e = refused(
            "{ id: m, change: { max_ratio: 2, against: last_year }, severity: warn }",
            Some("h"),
        );
        assert!(e.contains("V003") && e.contains("last_year"), "{e}");
        let e = refused("{ id: m, change: { max_ratio: 2 }, severity: warn }", None);
        assert!(e.contains("V201") && e.contains("`submitter` column"), "{e}");
        // Defaults: rows against the previous period.
        let (_, o) = judge_rows(
            submitter_line("{ id: m, change: { max_ratio: 2 }, severity: warn }", "h"),
            &rows(&[("05", 5)]),
            None,
            &before(&[("05", 2)]),
        )
        .unwrap();
        assert_eq!(o["m"].findings[0].ratio, Some(2.5));
    }
}
