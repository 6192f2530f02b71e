//! Run-time parameters: typed values bound to `{name}` in locations and `$name` in
//! expressions.
//!
//! A period parameter (`month`, `quarter`, `half_year`, `year`, `period`) also binds
//! `$name_start` and `$name_end`, the first and last day of the period, as dates. In a
//! location, `{name.months}` (`{name.quarters}`) stands for each month (quarter) of the
//! period: the location is read once for each, so a yearly line reads the monthly inbox
//! folders of its year ([`PeriodPart`], [`location_parts`]).

use std::collections::BTreeMap;

use chrono::{Datelike, Months, NaiveDate};
use datafusion::scalar::ScalarValue;

use crate::diag::{Code, Diagnostic, Pos, did_you_mean};
use crate::line::LineError;
use crate::line::spec::ParamKind;

/// A parsed parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    /// A reporting period with its first and last day.
    Period {
        text: String,
        start: NaiveDate,
        end: NaiveDate,
    },
    Date(NaiveDate),
    String(String),
    Integer(i64),
}

impl ParamValue {
    /// The text as given (used in locations).
    pub fn text(&self) -> String {
        match self {
            ParamValue::Period { text, .. } => text.clone(),
            ParamValue::Date(d) => d.format("%Y-%m-%d").to_string(),
            ParamValue::String(s) => s.clone(),
            ParamValue::Integer(i) => i.to_string(),
        }
    }

    /// The period before this one, of the same form: `2025-03` → `2025-02`, `2025-Q1` →
    /// `2024-Q4`, `2025-H1` → `2024-H2`, `2025` → `2024`; `None` for a value that is not a
    /// period.
    pub fn previous(&self) -> Option<ParamValue> {
        let ParamValue::Period { text, start, .. } = self else {
            return None;
        };
        // The period of this form that holds the day before this one starts.
        parse_value(
            ParamKind::Period,
            &period_text_like(text, start.pred_opt()?),
        )
        .ok()
    }
}

fn days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days() as i32
}

/// A month, `YYYY-MM`.
fn month(t: &str) -> Option<ParamValue> {
    let (y, m) = t.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let start = NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, 1)?;
    spanning(t, start, 1)
}

/// A quarter, `YYYY-Qn`.
fn quarter(t: &str) -> Option<ParamValue> {
    let (y, q) = t.split_once("-Q")?;
    let q: u32 = q.parse().ok().filter(|q| (1..=4).contains(q))?;
    let year: i32 = y.parse().ok().filter(|_| y.len() == 4)?;
    spanning(t, NaiveDate::from_ymd_opt(year, 3 * q - 2, 1)?, 3)
}

/// A half-year, `YYYY-H1` (January–June) or `YYYY-H2` (July–December).
fn half_year(t: &str) -> Option<ParamValue> {
    let (y, h) = t.split_once("-H")?;
    let h: u32 = match h {
        "1" => 1,
        "2" => 2,
        _ => return None,
    };
    let year: i32 = y.parse().ok().filter(|_| y.len() == 4)?;
    spanning(t, NaiveDate::from_ymd_opt(year, 6 * h - 5, 1)?, 6)
}

/// A year, `YYYY`.
fn year(t: &str) -> Option<ParamValue> {
    let year: i32 = t.parse().ok().filter(|_| t.len() == 4)?;
    spanning(t, NaiveDate::from_ymd_opt(year, 1, 1)?, 12)
}

/// The period `text` of `months` months from `start`.
fn spanning(text: &str, start: NaiveDate, months: u32) -> Option<ParamValue> {
    let next = start.checked_add_months(Months::new(months))?;
    Some(ParamValue::Period {
        text: text.to_string(),
        start,
        end: next.pred_opt()?,
    })
}

/// Parses a value of the given kind; the error says what form was expected.
pub fn parse_value(kind: ParamKind, text: &str) -> Result<ParamValue, LineError> {
    let parsed = match kind {
        ParamKind::Month => month(text),
        ParamKind::Quarter => quarter(text),
        ParamKind::HalfYear => half_year(text),
        ParamKind::Year => year(text),
        ParamKind::Period => month(text)
            .or_else(|| quarter(text))
            .or_else(|| half_year(text))
            .or_else(|| year(text)),
        ParamKind::Date => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .map(ParamValue::Date),
        ParamKind::String => Some(ParamValue::String(text.to_string())),
        ParamKind::Integer => text.parse().ok().map(ParamValue::Integer),
    };
    parsed.ok_or_else(|| {
        let expected = match kind {
            ParamKind::Month => "a month, `YYYY-MM` (e.g. 2025-03)",
            ParamKind::Quarter => "a quarter, `YYYY-Qn` (e.g. 2025-Q1)",
            ParamKind::HalfYear => "a half-year, `YYYY-H1` (January–June) or `YYYY-H2`",
            ParamKind::Year => "a year, `YYYY`",
            ParamKind::Period => "a period: `YYYY-MM`, `YYYY-Qn`, `YYYY-Hn` or `YYYY`",
            ParamKind::Date => "a date, `YYYY-MM-DD`",
            ParamKind::String => "text",
            ParamKind::Integer => "a whole number",
        };
        LineError::BadValue {
            text: text.to_string(),
            expected,
        }
    })
}

/// The most periods one range may name (twenty years of months).
pub const MAX_RANGE: usize = 240;

/// The periods of a range `FIRST..LAST` of one kind (month, quarter or year), in order;
/// `None` when `text` is not a range. Both ends are periods of the kind `kind` accepts, of
/// the same form, the first not after the last, and the range at most [`MAX_RANGE`] long.
pub fn range(kind: ParamKind, text: &str) -> Option<Result<Vec<String>, LineError>> {
    let (first, last) = text.split_once("..")?;
    let bad = |why: &'static str| LineError::BadValue {
        text: text.to_string(),
        expected: why,
    };
    let ends = (parse_value(kind, first), parse_value(kind, last));
    let (Ok(ParamValue::Period { start: a, .. }), Ok(ParamValue::Period { start: b, end, .. })) =
        ends
    else {
        return Some(Err(bad(
            "a range of periods, `FIRST..LAST` (e.g. 2025-01..2025-06)",
        )));
    };
    let step = period_form(first);
    if step != period_form(last) {
        return Some(Err(bad(
            "a range whose ends are periods of one kind (e.g. 2025-01..2025-06)",
        )));
    }
    if a > b {
        return Some(Err(bad("a range whose first period is not after its last")));
    }
    let mut out = Vec::new();
    let mut at = a;
    while at <= end {
        if out.len() == MAX_RANGE {
            return Some(Err(bad("a range of at most 240 periods")));
        }
        out.push(period_text(step, at));
        at = match at.checked_add_months(chrono::Months::new(step.months())) {
            Some(next) => next,
            None => break,
        };
    }
    Some(Ok(out))
}

/// The form of a period's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Month,
    Quarter,
    HalfYear,
    Year,
}

impl Form {
    fn months(self) -> u32 {
        match self {
            Form::Month => 1,
            Form::Quarter => 3,
            Form::HalfYear => 6,
            Form::Year => 12,
        }
    }
}

fn period_form(text: &str) -> Form {
    if text.contains("-Q") {
        Form::Quarter
    } else if text.contains("-H") {
        Form::HalfYear
    } else if text.contains('-') {
        Form::Month
    } else {
        Form::Year
    }
}

/// The text of the period starting on `start` of the form `sample` has (`2025-Q1` → a
/// quarter).
pub(crate) fn period_text_like(sample: &str, start: NaiveDate) -> String {
    period_text(period_form(sample), start)
}

/// The text of the period of `form` starting on `start`.
fn period_text(form: Form, start: NaiveDate) -> String {
    match form {
        Form::Month => start.format("%Y-%m").to_string(),
        Form::Quarter => format!("{}-Q{}", start.year(), (start.month() - 1) / 3 + 1),
        Form::HalfYear => format!("{}-H{}", start.year(), (start.month() - 1) / 6 + 1),
        Form::Year => start.year().to_string(),
    }
}

/// The period of `kind` that contains `day`, as its text: the period an object in the
/// folder of a month belongs to (a yearly line's run for an arrival in `2025-03/` is
/// `2025`). `None` for kinds that are no calendar period, and for `period`, which could be
/// any of them.
pub fn period_containing(kind: ParamKind, day: NaiveDate) -> Option<String> {
    let (y, m) = (day.year(), day.month());
    Some(match kind {
        ParamKind::Month => format!("{y:04}-{m:02}"),
        ParamKind::Quarter => format!("{y:04}-Q{}", (m - 1) / 3 + 1),
        ParamKind::HalfYear => format!("{y:04}-H{}", (m - 1) / 6 + 1),
        ParamKind::Year => format!("{y:04}"),
        ParamKind::Period | ParamKind::Date | ParamKind::String | ParamKind::Integer => {
            return None;
        }
    })
}

/// A part of a period that a source's location may name as `{name.months}` or
/// `{name.quarters}`: the location is filled once for each month (quarter) of the run's
/// period and the objects of all of them are read, so a yearly line computes its medians
/// and distinct counts from the rows of its year's monthly submissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeriodPart {
    Months,
    Quarters,
}

/// How a [`PeriodPart`] fits the kind of the parameter it is taken of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartFit {
    /// Every value has one or more (a year's months).
    Fits,
    /// Every value is one itself (a month's months): the placeholder is just `{name}`.
    Itself,
    /// Some values of the kind have none (a `period` may be a month, without quarters).
    Sometimes,
    /// No value has any (a date, text, a number; a month's quarters).
    Never,
}

impl PeriodPart {
    pub const ALL: [PeriodPart; 2] = [PeriodPart::Months, PeriodPart::Quarters];

    /// Its name in a placeholder, after the parameter's name and a dot.
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodPart::Months => "months",
            PeriodPart::Quarters => "quarters",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The kind of each of its values: a month or a quarter.
    pub fn unit(self) -> ParamKind {
        match self {
            PeriodPart::Months => ParamKind::Month,
            PeriodPart::Quarters => ParamKind::Quarter,
        }
    }

    /// Whether the values of a parameter of `kind` have this part.
    pub fn fit(self, kind: ParamKind) -> PartFit {
        use ParamKind as K;
        match (self, kind) {
            (PeriodPart::Months, K::Month) | (PeriodPart::Quarters, K::Quarter) => PartFit::Itself,
            (PeriodPart::Months, K::Quarter | K::HalfYear | K::Year | K::Period)
            | (PeriodPart::Quarters, K::HalfYear | K::Year) => PartFit::Fits,
            (PeriodPart::Quarters, K::Period) => PartFit::Sometimes,
            (_, K::Month | K::Date | K::String | K::Integer) => PartFit::Never,
        }
    }
}

/// A placeholder's parameter and the part it names: `period.months` → (`period`,
/// `Some("months")`), `period` → (`period`, `None`).
pub fn placeholder(name: &str) -> (&str, Option<&str>) {
    match name.split_once('.') {
        Some((param, part)) => (param, Some(part)),
        None => (name, None),
    }
}

impl ParamValue {
    /// The months (quarters) of a period, in order, as their texts; `None` for a value
    /// without them (a date, text, a number; a month's quarters).
    pub fn part(&self, part: PeriodPart) -> Option<Vec<String>> {
        let ParamValue::Period { start, end, .. } = self else {
            return None;
        };
        let step = match part {
            PeriodPart::Months => 1,
            PeriodPart::Quarters if (start.month() - 1) % 3 == 0 => 3,
            PeriodPart::Quarters => return None,
        };
        let mut out = Vec::new();
        let mut day = *start;
        while day <= *end {
            let next = day.checked_add_months(Months::new(step))?;
            if next.pred_opt()? > *end {
                return None; // a quarter longer than the period
            }
            out.push(match part {
                PeriodPart::Months => day.format("%Y-%m").to_string(),
                PeriodPart::Quarters => format!("{}-Q{}", day.year(), (day.month() - 1) / 3 + 1),
            });
            day = next;
        }
        Some(out)
    }
}

/// The list placeholders of locations, `{name.months}` and `{name.quarters}`, with the
/// texts each stands for, of every value that has them.
pub fn location_parts(values: &BTreeMap<String, ParamValue>) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (name, v) in values {
        for part in PeriodPart::ALL {
            if let Some(list) = v.part(part) {
                out.insert(format!("{name}.{}", part.as_str()), list);
            }
        }
    }
    out
}

/// A kind's name as a line file writes it.
pub fn kind_name(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::Month => "month",
        ParamKind::Quarter => "quarter",
        ParamKind::HalfYear => "half_year",
        ParamKind::Year => "year",
        ParamKind::Period => "period",
        ParamKind::Date => "date",
        ParamKind::String => "string",
        ParamKind::Integer => "integer",
    }
}

/// The diagnostic (V306) of a location's `{param.part}` for a parameter of `kind`, at `at`:
/// an error for a part no value of the kind has (or no part at all), a warning for one
/// that is the value itself or that some values lack; none when it fits.
pub fn part_diagnostic(
    file: &str,
    at: Pos,
    param: &str,
    part: &str,
    kind: ParamKind,
) -> Option<Diagnostic> {
    let used = format!("location uses `{{{param}.{part}}}`");
    let Some(p) = PeriodPart::parse(part) else {
        let why = format!("{used}: a period has `.months` and `.quarters`, not `.{part}`");
        let d = Diagnostic::error(Code::V306, file, at, why);
        let names = PeriodPart::ALL.map(PeriodPart::as_str);
        return Some(match did_you_mean(part, names) {
            Some(h) => d.with_hint(h),
            None => d,
        });
    };
    let (kind_text, part_text) = (kind_name(kind), p.as_str());
    let kinds = match p {
        PeriodPart::Months => "`quarter`, `half_year`, `year` or `period`",
        PeriodPart::Quarters => "`half_year` or `year`",
    };
    let (error, why, hint) = match p.fit(kind) {
        PartFit::Fits => return None,
        PartFit::Never => (
            true,
            format!("parameter `{param}` is a {kind_text}, which has no {part_text}"),
            format!("`.{part_text}` is of a {kinds}"),
        ),
        PartFit::Itself => (
            false,
            format!("the {part_text} of a {kind_text} are the {kind_text} itself"),
            format!("write `{{{param}}}`"),
        ),
        PartFit::Sometimes => (
            false,
            format!("`{param}` may be a month, which has no {part_text}: its run fails"),
            "declare the parameter `kind: half_year` or `kind: year`".to_string(),
        ),
    };
    let message = format!("{used}: {why}");
    let d = if error {
        Diagnostic::error(Code::V306, file, at, message)
    } else {
        Diagnostic::warning(Code::V306, file, at, message)
    };
    Some(d.with_hint(hint))
}

/// The first `{name.part}` placeholder of a location that `parts` cannot fill (a
/// `{period.quarters}` when the run's period is a month), with its braces.
pub fn unfilled_part(location: &str, parts: &BTreeMap<String, Vec<String>>) -> Option<String> {
    crate::line::load::template_names(location)
        .into_iter()
        .find(|n| placeholder(n).1.is_some() && !parts.contains_key(n))
        .map(|n| format!("{{{n}}}"))
}

/// The values bound in expressions, by placeholder name without `$`.
pub fn expression_values(values: &BTreeMap<String, ParamValue>) -> BTreeMap<String, ScalarValue> {
    let mut out = BTreeMap::new();
    for (name, v) in values {
        match v {
            ParamValue::Period { text, start, end } => {
                out.insert(name.clone(), ScalarValue::Utf8(Some(text.clone())));
                out.insert(
                    format!("{name}_start"),
                    ScalarValue::Date32(Some(days(*start))),
                );
                out.insert(format!("{name}_end"), ScalarValue::Date32(Some(days(*end))));
            }
            ParamValue::Date(d) => {
                out.insert(name.clone(), ScalarValue::Date32(Some(days(*d))));
            }
            ParamValue::String(s) => {
                out.insert(name.clone(), ScalarValue::Utf8(Some(s.clone())));
            }
            ParamValue::Integer(i) => {
                out.insert(name.clone(), ScalarValue::Int64(Some(*i)));
            }
        }
    }
    out
}

/// A stand-in value of the right type for each kind, for checking a line without a run.
pub fn example_value(kind: ParamKind) -> ParamValue {
    let text = match kind {
        ParamKind::Month => "2025-01",
        ParamKind::Quarter => "2025-Q1",
        ParamKind::HalfYear => "2025-H1",
        ParamKind::Year | ParamKind::Period => "2025",
        ParamKind::Date => "2025-01-01",
        ParamKind::String => "x",
        ParamKind::Integer => "0",
    };
    parse_value(kind, text).unwrap_or(ParamValue::String(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn periods_have_their_days() {
        assert_eq!(
            parse_value(ParamKind::Month, "2024-02").unwrap(),
            ParamValue::Period {
                text: "2024-02".into(),
                start: d(2024, 2, 1),
                end: d(2024, 2, 29)
            }
        );
        assert_eq!(
            parse_value(ParamKind::Period, "2025-Q4").unwrap(),
            ParamValue::Period {
                text: "2025-Q4".into(),
                start: d(2025, 10, 1),
                end: d(2025, 12, 31)
            }
        );
        assert!(
            matches!(parse_value(ParamKind::Period, "2025").unwrap(), ParamValue::Period { end, .. } if end == d(2025, 12, 31))
        );
    }

    /// The period before a month, a quarter and a year is one of the same kind, across
    /// the turn of the year; other values have none.
    #[test]
    fn periods_have_a_previous_one() {
        let before = |k, t| parse_value(k, t).unwrap().previous().map(|p| p.text());
        assert_eq!(
            before(ParamKind::Month, "2025-03").as_deref(),
            Some("2025-02")
        );
        assert_eq!(
            before(ParamKind::Month, "2025-01").as_deref(),
            Some("2024-12")
        );
        assert_eq!(
            before(ParamKind::Quarter, "2025-Q1").as_deref(),
            Some("2024-Q4")
        );
        assert_eq!(
            before(ParamKind::Period, "2025-Q3").as_deref(),
            Some("2025-Q2")
        );
        assert_eq!(before(ParamKind::Year, "2025").as_deref(), Some("2024"));
        // A half-year's is a half-year (it was the month before).
        assert_eq!(
            before(ParamKind::HalfYear, "2025-H1").as_deref(),
            Some("2024-H2")
        );
        assert_eq!(
            before(ParamKind::Period, "2025-H2").as_deref(),
            Some("2025-H1")
        );
        assert_eq!(
            before(ParamKind::Period, "2025-10").as_deref(),
            Some("2025-09")
        );
        let q4 = parse_value(ParamKind::Quarter, "2025-Q1")
            .unwrap()
            .previous()
            .unwrap();
        assert!(
            matches!(q4, ParamValue::Period { start, end, .. } if start == d(2024, 10, 1) && end == d(2024, 12, 31))
        );
        assert_eq!(before(ParamKind::Date, "2025-03-01"), None);
        assert_eq!(before(ParamKind::Integer, "3"), None);
    }

    #[test]
    fn ranges_name_each_period_in_order_and_are_bounded() {
        let r = |k, t| range(k, t).expect("a range");
        assert_eq!(
            r(ParamKind::Month, "2024-11..2025-02").unwrap(),
            ["2024-11", "2024-12", "2025-01", "2025-02"]
        );
        assert_eq!(
            r(ParamKind::Period, "2024-Q4..2025-Q2").unwrap(),
            ["2024-Q4", "2025-Q1", "2025-Q2"]
        );
        assert_eq!(
            r(ParamKind::Year, "2023..2025").unwrap(),
            ["2023", "2024", "2025"]
        );
        assert_eq!(
            r(ParamKind::Month, "2025-03..2025-03").unwrap(),
            ["2025-03"]
        );
        assert!(range(ParamKind::Month, "2025-03").is_none());
        for bad in [
            (ParamKind::Month, "2025-06..2025-01"),
            (ParamKind::Period, "2025-01..2025-Q2"),
            (ParamKind::Month, "2025-01..x"),
            (ParamKind::Month, "1990-01..2025-01"),
            (ParamKind::String, "a..b"),
        ] {
            assert!(r(bad.0, bad.1).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        for (k, t) in [
            (ParamKind::Month, "2025-13"),
            (ParamKind::Month, "2025-3"),
            (ParamKind::Quarter, "2025-Q5"),
            (ParamKind::HalfYear, "2025-H3"),
            (ParamKind::HalfYear, "2025-H01"),
            (ParamKind::HalfYear, "2025-Q1"),
            (ParamKind::Period, "2025-H0"),
            (ParamKind::Integer, "x"),
            (ParamKind::Date, "2025-02-30"),
        ] {
            let e = parse_value(k, t).unwrap_err().to_string();
            assert!(e.contains(t) && e.contains("is not"), "{e}");
        }
    }

    #[test]
    fn half_years_are_periods() {
        let h1 = ParamValue::Period {
            text: "2025-H1".into(),
            start: d(2025, 1, 1),
            end: d(2025, 6, 30),
        };
        assert_eq!(parse_value(ParamKind::HalfYear, "2025-H1").unwrap(), h1);
        assert_eq!(parse_value(ParamKind::Period, "2025-H1").unwrap(), h1);
        assert_eq!(
            parse_value(ParamKind::HalfYear, "2024-H2").unwrap(),
            ParamValue::Period {
                text: "2024-H2".into(),
                start: d(2024, 7, 1),
                end: d(2024, 12, 31)
            }
        );
        // A half-year is not a month, quarter or year, nor they a half-year.
        assert!(parse_value(ParamKind::Month, "2025-H1").is_err());
        assert!(parse_value(ParamKind::Year, "2025-H1").is_err());
        assert!(parse_value(ParamKind::HalfYear, "2025").is_err());
        let e = parse_value(ParamKind::HalfYear, "2025-06").unwrap_err();
        assert!(e.to_string().contains("YYYY-H1"), "{e}");
        let values = expression_values(&BTreeMap::from([("period".to_string(), h1)]));
        assert_eq!(
            values["period_end"],
            ScalarValue::Date32(Some(days(d(2025, 6, 30))))
        );
        assert_eq!(
            values["period"],
            ScalarValue::Utf8(Some("2025-H1".to_string()))
        );
    }

    #[test]
    fn periods_have_their_months_and_quarters() {
        let parts = |kind, text| {
            let v = parse_value(kind, text).unwrap();
            (v.part(PeriodPart::Months), v.part(PeriodPart::Quarters))
        };
        let (months, quarters) = parts(ParamKind::HalfYear, "2025-H2");
        assert_eq!(
            months.unwrap(),
            [
                "2025-07", "2025-08", "2025-09", "2025-10", "2025-11", "2025-12"
            ]
        );
        assert_eq!(quarters.unwrap(), ["2025-Q3", "2025-Q4"]);
        let (months, quarters) = parts(ParamKind::Year, "2024");
        assert_eq!(months.unwrap().len(), 12);
        assert_eq!(
            quarters.unwrap(),
            ["2024-Q1", "2024-Q2", "2024-Q3", "2024-Q4"]
        );
        let (months, quarters) = parts(ParamKind::Quarter, "2025-Q2");
        assert_eq!(months.unwrap(), ["2025-04", "2025-05", "2025-06"]);
        assert_eq!(quarters.unwrap(), ["2025-Q2"]);
        // A month is its one month and has no quarters; a date has neither.
        assert_eq!(
            parts(ParamKind::Period, "2025-03"),
            (Some(vec!["2025-03".into()]), None)
        );
        assert_eq!(parts(ParamKind::Date, "2025-03-01"), (None, None));
        let values = BTreeMap::from([
            (
                "period".to_string(),
                parse_value(ParamKind::Period, "2025-02").unwrap(),
            ),
            ("kunta".to_string(), ParamValue::String("091".into())),
        ]);
        let lists = location_parts(&values);
        assert_eq!(lists.keys().collect::<Vec<_>>(), ["period.months"]);
        assert_eq!(
            unfilled_part("in/{kunta}/{period.quarters}/*.csv", &lists).as_deref(),
            Some("{period.quarters}")
        );
        assert_eq!(
            unfilled_part("in/{kunta}/{period.months}/*.csv", &lists),
            None
        );
    }

    #[test]
    fn parts_fit_the_kinds_that_have_them() {
        use PartFit::*;
        let months = PeriodPart::parse("months").unwrap();
        let quarters = PeriodPart::parse("quarters").unwrap();
        assert_eq!(PeriodPart::parse("weeks"), None);
        for (kind, m, q) in [
            (ParamKind::Month, Itself, Never),
            (ParamKind::Quarter, Fits, Itself),
            (ParamKind::HalfYear, Fits, Fits),
            (ParamKind::Year, Fits, Fits),
            (ParamKind::Period, Fits, Sometimes),
            (ParamKind::Date, Never, Never),
            (ParamKind::String, Never, Never),
        ] {
            assert_eq!((months.fit(kind), quarters.fit(kind)), (m, q), "{kind:?}");
        }
        assert_eq!(placeholder("period.months"), ("period", Some("months")));
        assert_eq!(placeholder("period"), ("period", None));
    }

    #[test]
    fn a_day_belongs_to_one_period_of_each_kind() {
        let day = d(2025, 8, 14);
        for (kind, want) in [
            (ParamKind::Month, Some("2025-08")),
            (ParamKind::Quarter, Some("2025-Q3")),
            (ParamKind::HalfYear, Some("2025-H2")),
            (ParamKind::Year, Some("2025")),
            (ParamKind::Period, None),
            (ParamKind::Date, None),
        ] {
            assert_eq!(period_containing(kind, day).as_deref(), want, "{kind:?}");
        }
        assert_eq!(
            period_containing(ParamKind::HalfYear, d(2025, 6, 30)).as_deref(),
            Some("2025-H1")
        );
    }
}
