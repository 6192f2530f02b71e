//! Release sources (`source: { release: … }`): the checks a line file alone allows, the
//! period column their rows get, and which periods a run reads.
//!
//! A release source reads the current published releases of a dataset, of another line or
//! of this line's own earlier periods, exactly as the public reads them. Which line
//! publishes the dataset, and whether lines read each other in a cycle, is known only when
//! several lines are checked together (`plan::across`); the run finds the publisher in the
//! store (`run::release`).

use std::collections::BTreeSet;

use chrono::Months;

use crate::diag::{Code, Diagnostic};
use crate::line::params::ParamValue;
use crate::line::spec::{
    ColumnSpec, ColumnType, LineSpec, Name, ParamKind, PeriodChoice, ReleasePeriods,
    ReleaseSourceSpec, SourceSpec, Sp,
};

/// The column that holds the period: a release source's rows get their release's period
/// in it, and the daemon puts it first in every dataset it serves.
pub const PERIOD_COLUMN: &str = "jakso";

/// The parameter a release source's periods are taken relative to.
pub const PERIOD_PARAM: &str = "period";

/// Gives every release source the period column (text) when it does not declare it, first.
pub(crate) fn add_period_column(spec: &mut LineSpec) {
    for step in spec.steps.values_mut() {
        let Some(s) = step.source.as_mut() else {
            continue;
        };
        if s.release.is_none() || s.columns.contains_key(PERIOD_COLUMN) {
            continue;
        }
        let column = ColumnSpec {
            r#type: Sp::synthetic(ColumnType::String),
            required: false,
            personal: false,
            local: false,
            ambiguous: None,
            description: None,
            unit: None,
            format: None,
        };
        s.columns
            .shift_insert(0, Sp::synthetic(PERIOD_COLUMN.to_string()), column);
    }
}

/// A source gives one form: `format` and `location`, or `release` (V110); a file form
/// missing one of its keys is V004. True when the source reads objects and their checks
/// apply.
pub(crate) fn check_form(
    file: &str,
    name: &Name,
    s: &SourceSpec,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let (format, location) = (!s.format.value.is_empty(), !s.location.value.is_empty());
    if let Some(r) = &s.release {
        if format || location || s.options.is_some() {
            let at = if format { s.format.at } else { r.dataset.at };
            diags.push(
                Diagnostic::error(
                    Code::V110,
                    file,
                    at,
                    format!(
                        "source `{}` gives both `release` and `format`/`location`/`options`",
                        name.value
                    ),
                )
                .with_hint(
                    "a source reads either objects (`format`, `location`) or releases (`release`)",
                ),
            );
        }
        return false;
    }
    match (format, location) {
        (true, true) => true,
        (false, false) => {
            diags.push(
                Diagnostic::error(
                    Code::V110,
                    file,
                    name.at,
                    format!(
                        "source `{}` gives neither `format` and `location` nor `release`",
                        name.value
                    ),
                )
                .with_hint("give `format` and `location`, or `release: { dataset: … }`"),
            );
            false
        }
        (_, _) => {
            let missing = if format { "location" } else { "format" };
            diags.push(Diagnostic::error(
                Code::V004,
                file,
                name.at,
                format!("source `{}` needs `{missing}`", name.value),
            ));
            false
        }
    }
}

/// A release source's periods fit the line's `period` parameter (V307), and a line reads
/// its own dataset only from other periods than the run's (V112).
pub(crate) fn check_release(
    file: &str,
    spec: &LineSpec,
    r: &ReleaseSourceSpec,
    diags: &mut Vec<Diagnostic>,
) {
    let periods = r.periods.value;
    if let ReleasePeriods::Last { last } = periods
        && !(1..=crate::line::params::MAX_RANGE as u32).contains(&last)
    {
        diags.push(Diagnostic::error(
            Code::V307,
            file,
            r.periods.at,
            format!(
                "`last: {last}`: a release source reads 1 to {} earlier periods",
                crate::line::params::MAX_RANGE
            ),
        ));
    }
    let kind = spec.params.get(PERIOD_PARAM).map(|p| p.kind.value);
    let is_period = kind.is_some_and(period_kind);
    if periods != ReleasePeriods::Named(PeriodChoice::All) && !is_period {
        diags.push(
            Diagnostic::error(
                Code::V307,
                file,
                r.periods.at,
                format!(
                    "`periods: {}` is taken relative to the run's period, but the line has no period parameter `{PERIOD_PARAM}`",
                    periods.describe()
                ),
            )
            .with_hint("declare `params: { period: { kind: month } }`, or read `periods: all`"),
        );
    } else if periods == ReleasePeriods::Named(PeriodChoice::Sub) && kind == Some(ParamKind::Month)
    {
        diags.push(
            Diagnostic::error(
                Code::V307,
                file,
                r.periods.at,
                "`periods: sub` reads the periods inside the run's, but a month has none",
            )
            .with_hint("read `current`, `previous` or `{ last: n }`"),
        );
    }
    let own = spec
        .steps
        .values()
        .filter_map(|s| s.publish.as_ref())
        .any(|p| p.dataset.value == r.dataset.value);
    let reads_own_run = matches!(
        periods,
        ReleasePeriods::Named(PeriodChoice::Current | PeriodChoice::All)
    );
    if own && reads_own_run {
        diags.push(
            Diagnostic::error(
                Code::V112,
                file,
                r.dataset.at,
                format!(
                    "the line publishes `{}` itself and would read the release its own run makes (`periods: {}`)",
                    r.dataset.value,
                    periods.describe()
                ),
            )
            .with_hint("a line reads its own dataset only from earlier periods: `previous`, `{ last: n }` or `sub`"),
        );
    }
}

/// A release source's `release` in its wire JSON as people read it, `dataset (periods)`;
/// `none` when it is none (`valtava diff`).
pub fn describe(v: &serde_json::Value) -> String {
    let periods = serde_json::from_value::<ReleasePeriods>(v["periods"].clone());
    let periods = periods.map_or_else(|_| "current".into(), |p| p.describe());
    (v["dataset"].as_str()).map_or_else(|| "none".into(), |d| format!("{d} ({periods})"))
}

/// A kind whose values are calendar periods.
fn period_kind(k: ParamKind) -> bool {
    matches!(
        k,
        ParamKind::Month
            | ParamKind::Quarter
            | ParamKind::HalfYear
            | ParamKind::Year
            | ParamKind::Period
    )
}

/// The periods a run reads: those with a release (`read`, in order) and those it wanted
/// that have none (`missing`, logged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chosen {
    pub read: Vec<String>,
    pub missing: Vec<String>,
}

/// The periods `periods` chooses for a run of period `run` (`None` without one: only
/// `all` chooses any), among those with a current release (`available`).
pub fn choose(
    periods: ReleasePeriods,
    run: Option<&ParamValue>,
    available: &BTreeSet<String>,
) -> Chosen {
    let wanted: Vec<String> = match (periods, run) {
        (ReleasePeriods::Named(PeriodChoice::All), _) => available.iter().cloned().collect(),
        (_, None) => Vec::new(),
        (ReleasePeriods::Named(PeriodChoice::Current), Some(r)) => vec![r.text()],
        (ReleasePeriods::Named(PeriodChoice::Previous), Some(r)) => {
            periods_before(r, 1).unwrap_or_default()
        }
        (ReleasePeriods::Last { last }, Some(r)) => periods_before(r, last).unwrap_or_default(),
        (ReleasePeriods::Named(PeriodChoice::Sub), Some(r)) => sub_periods(r, available),
    };
    let (read, missing): (Vec<String>, Vec<String>) =
        wanted.into_iter().partition(|p| available.contains(p));
    Chosen { read, missing }
}

/// The `n` periods of the run's kind before it, oldest first (`2025-03`, 2 → `2025-01`,
/// `2025-02`); `None` for a value that is not a period.
pub fn periods_before(run: &ParamValue, n: u32) -> Option<Vec<String>> {
    let mut at = run.clone();
    let mut out = Vec::new();
    for _ in 0..n.min(crate::line::params::MAX_RANGE as u32) {
        at = at.previous()?;
        out.push(at.text());
    }
    out.reverse();
    Some(out)
}

/// The periods inside the run's: its months, else its quarters, else its half-years —
/// the first kind of which the dataset has any release (`available`).
fn sub_periods(run: &ParamValue, available: &BTreeSet<String>) -> Vec<String> {
    let ParamValue::Period { start, end, .. } = run else {
        return Vec::new();
    };
    let mut candidates: Vec<Vec<String>> = Vec::new();
    for (months, sample) in [(1u32, "2000-01"), (3, "2000-Q1"), (6, "2000-H1")] {
        let span = (end.year_month_index() - start.year_month_index() + 1) as u32;
        if months >= span || !span.is_multiple_of(months) {
            continue;
        }
        let parts = (0..span / months)
            .filter_map(|i| start.checked_add_months(Months::new(i * months)))
            .map(|day| crate::line::params::period_text_like(sample, day))
            .collect();
        candidates.push(parts);
    }
    let first = candidates.first().cloned().unwrap_or_default();
    candidates
        .into_iter()
        .find(|c| c.iter().any(|p| available.contains(p)))
        .unwrap_or(first)
}

/// Months since year 0, for the length of a period.
trait MonthIndex {
    fn year_month_index(&self) -> i64;
}

impl MonthIndex for chrono::NaiveDate {
    fn year_month_index(&self) -> i64 {
        use chrono::Datelike;
        i64::from(self.year()) * 12 + i64::from(self.month0())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::params::parse_value;

    fn period(t: &str) -> ParamValue {
        parse_value(ParamKind::Period, t).unwrap()
    }

    fn set(ps: &[&str]) -> BTreeSet<String> {
        ps.iter().map(|p| p.to_string()).collect()
    }

    fn named(c: PeriodChoice) -> ReleasePeriods {
        ReleasePeriods::Named(c)
    }

    #[test]
    fn current_and_previous_are_one_period_of_the_run_kind() {
        let have = set(&["2025-02", "2025-03", "2024-Q4", "2024", "2024-H2"]);
        let c = choose(
            named(PeriodChoice::Current),
            Some(&period("2025-03")),
            &have,
        );
        assert_eq!(c.read, ["2025-03"]);
        let c = choose(
            named(PeriodChoice::Previous),
            Some(&period("2025-03")),
            &have,
        );
        assert_eq!(c.read, ["2025-02"]);
        let c = choose(
            named(PeriodChoice::Previous),
            Some(&period("2025-Q1")),
            &have,
        );
        assert_eq!(c.read, ["2024-Q4"]);
        let c = choose(named(PeriodChoice::Previous), Some(&period("2025")), &have);
        assert_eq!(c.read, ["2024"]);
        let c = choose(
            named(PeriodChoice::Previous),
            Some(&period("2025-H1")),
            &have,
        );
        assert_eq!(c.read, ["2024-H2"]);
        // January's previous month is in the year before.
        let c = choose(
            named(PeriodChoice::Previous),
            Some(&period("2025-01")),
            &have,
        );
        assert_eq!((c.read.len(), c.missing), (0, vec!["2024-12".to_string()]));
        // Without a release of the period nothing is read: the run fails R004.
        let c = choose(
            named(PeriodChoice::Current),
            Some(&period("2025-04")),
            &have,
        );
        assert!(c.read.is_empty());
        assert_eq!(c.missing, ["2025-04"]);
    }

    #[test]
    fn last_reads_the_periods_before_the_run_skipping_those_without_a_release() {
        let have = set(&["2024-11", "2025-01", "2025-02", "2025-03"]);
        let c = choose(
            ReleasePeriods::Last { last: 4 },
            Some(&period("2025-03")),
            &have,
        );
        assert_eq!(c.read, ["2024-11", "2025-01", "2025-02"]);
        assert_eq!(c.missing, ["2024-12"]);
        let c = choose(
            ReleasePeriods::Last { last: 0 },
            Some(&period("2025-03")),
            &have,
        );
        assert_eq!(c, Chosen::default());
    }

    #[test]
    fn sub_reads_the_finest_periods_inside_the_run_that_have_releases() {
        let months = set(&["2025-01", "2025-02", "2025-04", "2024-12"]);
        let c = choose(named(PeriodChoice::Sub), Some(&period("2025-Q1")), &months);
        assert_eq!(c.read, ["2025-01", "2025-02"]);
        assert_eq!(c.missing, ["2025-03"]);
        let c = choose(named(PeriodChoice::Sub), Some(&period("2025")), &months);
        assert_eq!(c.read, ["2025-01", "2025-02", "2025-04"]);
        let quarters = set(&["2025-Q1", "2025-Q3"]);
        let c = choose(named(PeriodChoice::Sub), Some(&period("2025")), &quarters);
        assert_eq!(c.read, ["2025-Q1", "2025-Q3"]);
        assert_eq!(c.missing, ["2025-Q2", "2025-Q4"]);
        let halves = set(&["2025-H2"]);
        let c = choose(named(PeriodChoice::Sub), Some(&period("2025")), &halves);
        assert_eq!(c.read, ["2025-H2"]);
        // A month has nothing inside it.
        let c = choose(named(PeriodChoice::Sub), Some(&period("2025-01")), &months);
        assert_eq!(c, Chosen::default());
    }

    #[test]
    fn all_reads_every_release_and_needs_no_period() {
        let have = set(&["2025-02", "2024-12"]);
        let c = choose(named(PeriodChoice::All), None, &have);
        assert_eq!(c.read, ["2024-12", "2025-02"]);
        assert_eq!(
            choose(named(PeriodChoice::Current), None, &have),
            Chosen::default()
        );
    }
}
