//! Calendar functions for statutory time limits ("within three months", "within seven
//! working days", `LINES.md`).
//!
//! - `add_months(date, n) -> date`: the date `n` calendar months later (earlier for a
//!   negative `n`), the day clamped to the month's last day: 2025-11-30 + 3 months is
//!   2026-02-28, 2024-01-31 + 1 month 2024-02-29.
//! - `working_days(from, to) -> bigint`: how many working days `d` there are with
//!   `from < d ≤ to`, a working day being Monday to Friday and not a holiday of the line's
//!   `calendar`; an end date on a weekend or a holiday adds nothing. For `to < from` it is
//!   the negative of `working_days(to, from)`; NULL when either is NULL. The holidays are
//!   those listed: a range outside the years the calendar's code set covers counts every
//!   weekday there.
//!
//! A line writes `working_days(from, to)`; the planner adds the line's holidays as a third
//! argument, a text of sorted ISO dates separated by commas (`plan::expr`), so that a plan
//! sent to a cluster carries them (its executors know functions only by name). The text is
//! read once per batch; a row costs weekday arithmetic and two binary searches.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Date32Array, Int64Array};
use arrow::datatypes::{DataType, Date32Type, Int64Type};
use chrono::{Months, NaiveDate};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The name lines call, and the planner completes with the holidays.
pub const WORKING_DAYS: &str = "working_days";

/// The days from 1970-01-01 of a date; `None` when it is not an ISO date `YYYY-MM-DD`.
pub fn iso_day(text: &str) -> Option<i32> {
    let b = text.trim().as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |v, &c| {
            c.is_ascii_digit().then(|| v * 10 + u32::from(c - b'0'))
        })
    };
    let days = super::days_since_1970(n(0..4)?, n(5..7)?, n(8..10)?)?;
    i32::try_from(days).ok()
}

/// Holidays as the planner writes them: sorted ISO dates separated by commas. Only those
/// on weekdays are kept (a holiday on a weekend changes no count), sorted; `None` when a
/// part is not an ISO date.
pub fn holidays(text: &str) -> Option<Vec<i32>> {
    let mut days = Vec::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let d = iso_day(part)?;
        if weekday(d) < 5 {
            days.push(d);
        }
    }
    days.sort_unstable();
    days.dedup();
    Some(days)
}

/// The weekday of a day since 1970: 0 Monday … 6 Sunday (1970-01-01 was a Thursday).
fn weekday(day: i32) -> i64 {
    (i64::from(day) + 3).rem_euclid(7)
}

/// How many weekdays there are before `day` counted from the Monday 1969-12-29 (negative
/// before it): differences of it count weekdays in a range.
fn weekdays_before(day: i64) -> i64 {
    let k = day + 3;
    5 * k.div_euclid(7) + k.rem_euclid(7).min(5)
}

/// Working days `d` with `from < d ≤ to` (negative when `to < from`), `holidays` being
/// the sorted weekday holidays.
pub fn working_days(from: i32, to: i32, holidays: &[i32]) -> i64 {
    if to < from {
        return -working_days(to, from, holidays);
    }
    // In i64: a date column may hold any i32 day, and `to + 1` must not overflow.
    let weekdays = weekdays_before(i64::from(to) + 1) - weekdays_before(i64::from(from) + 1);
    let upto = |d: i32| holidays.partition_point(|&h| h <= d) as i64;
    weekdays - (upto(to) - upto(from))
}

/// The date `n` months after `day` (before it for a negative `n`), the day clamped to the
/// month's last day; `None` outside chrono's range.
pub fn add_months(day: i32, n: i64) -> Option<i32> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    let date = epoch.checked_add_signed(chrono::Duration::days(i64::from(day)))?;
    let months = Months::new(u32::try_from(n.unsigned_abs()).ok()?);
    let moved = if n >= 0 {
        date.checked_add_months(months)?
    } else {
        date.checked_sub_months(months)?
    };
    i32::try_from((moved - epoch).num_days()).ok()
}

/// `add_months` or `working_days`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CalendarFn {
    signature: Signature,
    working: bool,
}

/// An argument as an array of `t`.
fn arg(args: &ScalarFunctionArgs, i: usize, t: &DataType) -> Result<ArrayRef> {
    let Some(a) = args.args.get(i) else {
        return exec_err!("missing argument {}", i + 1);
    };
    Ok(arrow::compute::cast(&a.to_array(args.number_rows)?, t)?)
}

impl CalendarFn {
    fn working_days(&self, args: &ScalarFunctionArgs) -> Result<ArrayRef> {
        let text = match args.args.get(2) {
            Some(ColumnarValue::Scalar(
                ScalarValue::Utf8(t) | ScalarValue::LargeUtf8(t) | ScalarValue::Utf8View(t),
            )) => t.clone().unwrap_or_default(),
            _ => {
                return exec_err!(
                    "working_days needs the line's holidays: declare `calendar: {{ holidays: <code set> }}` in the line"
                );
            }
        };
        let Some(holidays) = holidays(&text) else {
            return exec_err!("working_days: the holidays are not ISO dates");
        };
        let from = arg(args, 0, &DataType::Date32)?;
        let to = arg(args, 1, &DataType::Date32)?;
        let (from, to) = (
            from.as_primitive::<Date32Type>(),
            to.as_primitive::<Date32Type>(),
        );
        let out: Int64Array = (0..from.len())
            .map(|i| {
                (from.is_valid(i) && to.is_valid(i))
                    .then(|| working_days(from.value(i), to.value(i), &holidays))
            })
            .collect();
        Ok(Arc::new(out))
    }

    fn add_months(&self, args: &ScalarFunctionArgs) -> Result<ArrayRef> {
        let day = arg(args, 0, &DataType::Date32)?;
        let n = arg(args, 1, &DataType::Int64)?;
        let (day, n) = (
            day.as_primitive::<Date32Type>(),
            n.as_primitive::<Int64Type>(),
        );
        let out: Date32Array = (0..day.len())
            .map(|i| {
                if day.is_valid(i) && n.is_valid(i) {
                    add_months(day.value(i), n.value(i))
                } else {
                    None
                }
            })
            .collect();
        Ok(Arc::new(out))
    }
}

impl ScalarUDFImpl for CalendarFn {
    fn name(&self) -> &str {
        if self.working {
            WORKING_DAYS
        } else {
            "add_months"
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        let arity = if self.working { 2usize..=3 } else { 2usize..=2 };
        if !arity.contains(&args.len()) {
            return datafusion::common::plan_err!(
                "{}() takes two arguments, a date and {}",
                self.name(),
                if self.working {
                    "a date"
                } else {
                    "a number of months"
                }
            );
        }
        Ok(if self.working {
            DataType::Int64
        } else {
            DataType::Date32
        })
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let out = if self.working {
            self.working_days(&args)?
        } else {
            self.add_months(&args)?
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// The calendar functions, ready to register.
pub fn udfs() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(CalendarFn {
            signature: Signature::any(2, Volatility::Immutable),
            working: false,
        }),
        ScalarUDF::new_from_impl(CalendarFn {
            signature: Signature::variadic_any(Volatility::Immutable),
            working: true,
        }),
    ]
}

#[cfg(test)]
mod tests;
