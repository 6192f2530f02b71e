//! Run-time parameters: typed values bound to `{name}` in locations and `$name` in
//! expressions.
//!
//! A period parameter (`month`, `quarter`, `year`, `period`) also binds `$name_start` and
//! `$name_end`, the first and last day of the period, as dates.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use datafusion::scalar::ScalarValue;

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
}

fn days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days() as i32
}

/// Parses a value of the given kind; the error says what form was expected.
pub fn parse_value(kind: ParamKind, text: &str) -> Result<ParamValue, LineError> {
    let month = |t: &str| -> Option<ParamValue> {
        let (y, m) = t.split_once('-')?;
        if y.len() != 4 || m.len() != 2 {
            return None;
        }
        let start = NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, 1)?;
        let next = if start.month() == 12 {
            NaiveDate::from_ymd_opt(start.year() + 1, 1, 1)?
        } else {
            NaiveDate::from_ymd_opt(start.year(), start.month() + 1, 1)?
        };
        Some(ParamValue::Period {
            text: t.to_string(),
            start,
            end: next.pred_opt()?,
        })
    };
    let quarter = |t: &str| -> Option<ParamValue> {
        let (y, q) = t.split_once("-Q")?;
        let q: u32 = q.parse().ok().filter(|q| (1..=4).contains(q))?;
        let year: i32 = y.parse().ok().filter(|_| y.len() == 4)?;
        let start = NaiveDate::from_ymd_opt(year, 3 * q - 2, 1)?;
        let next = if q == 4 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1)?
        } else {
            NaiveDate::from_ymd_opt(year, 3 * q + 1, 1)?
        };
        Some(ParamValue::Period {
            text: t.to_string(),
            start,
            end: next.pred_opt()?,
        })
    };
    let year = |t: &str| -> Option<ParamValue> {
        let year: i32 = t.parse().ok().filter(|_| t.len() == 4)?;
        Some(ParamValue::Period {
            text: t.to_string(),
            start: NaiveDate::from_ymd_opt(year, 1, 1)?,
            end: NaiveDate::from_ymd_opt(year, 12, 31)?,
        })
    };
    let parsed = match kind {
        ParamKind::Month => month(text),
        ParamKind::Quarter => quarter(text),
        ParamKind::Year => year(text),
        ParamKind::Period => month(text).or_else(|| quarter(text)).or_else(|| year(text)),
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
            ParamKind::Year => "a year, `YYYY`",
            ParamKind::Period => "a period: `YYYY-MM`, `YYYY-Qn` or `YYYY`",
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
    Year,
}

impl Form {
    fn months(self) -> u32 {
        match self {
            Form::Month => 1,
            Form::Quarter => 3,
            Form::Year => 12,
        }
    }
}

fn period_form(text: &str) -> Form {
    if text.contains("-Q") {
        Form::Quarter
    } else if text.contains('-') {
        Form::Month
    } else {
        Form::Year
    }
}

/// The text of the period of `form` starting on `start`.
fn period_text(form: Form, start: NaiveDate) -> String {
    match form {
        Form::Month => start.format("%Y-%m").to_string(),
        Form::Quarter => format!("{}-Q{}", start.year(), (start.month() - 1) / 3 + 1),
        Form::Year => start.year().to_string(),
    }
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
            (ParamKind::Integer, "x"),
            (ParamKind::Date, "2025-02-30"),
        ] {
            let e = parse_value(k, t).unwrap_err().to_string();
            assert!(e.contains(t) && e.contains("is not"), "{e}");
        }
    }
}
