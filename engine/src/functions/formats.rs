//! Text formats of declared source columns (`format:` on a column): values written in a
//! form other than the one a plain cast reads, typed by hand-written byte parsers (no
//! regular expression, no allocation per row) so that a large workbook or document set
//! types at the speed of the common forms.
//!
//! - `finnish` (`decimal`, `integer`): numbers as Finnish spreadsheets and systems write
//!   them, `1 234 567,89`, `-12,5`, `−12,5` (U+2212 MINUS SIGN): a decimal comma, digits in
//!   groups of three separated by a space, a NO-BREAK SPACE (U+00A0) or a NARROW NO-BREAK
//!   SPACE (U+202F). A plain `1234567.89` (how the xlsx parser renders a numeric cell) reads
//!   too. Grouping is strict: the first group has one to three digits and every later group
//!   exactly three, so `1 23 4,5` does not read (a misplaced separator is more likely a
//!   typing error than a number). No `+` sign, no fraction without an integer digit
//!   (`,5`), no empty fraction (`5,`), no separator in the fraction. An integer reads only
//!   without a fraction or with one of zeros (`12,00`). Surrounding spaces are ignored;
//!   a text of spaces alone is empty (NULL, not an error).
//! - `hl7` (`date`, `timestamp`): the HL7 V3 `TS` form
//!   `YYYYMMDD[HH[MM[SS[.S{1,4}]]]][+|-ZZZZ]`. A date needs at least `YYYYMMDD` and takes
//!   the calendar date as written (any valid longer form too; its offset is checked but
//!   does not move the date). A timestamp needs at least minutes; with an offset it is
//!   converted to UTC, without one read as written. An offset is four digits, hours at
//!   most 14 and minutes at most 59.
//!
//! Each is an internal function, `__finnish_decimal`, `__finnish_integer`, `__hl7_date`
//! and `__hl7_timestamp` (the source step's planning calls them), registered so that a
//! cluster finds them by name. A text that does not read is NULL, which the source step's
//! `type-<column>` rule quarantines, its reason naming the column and the format.

use std::sync::Arc;

use arrow::array::TimestampMicrosecondArray;
use arrow::array::{Array, ArrayRef, AsArray, Date32Array, Float64Array, Int64Array};
use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::{TIMESTAMP, days_since_1970, string_arg};

/// Characters trimmed from a formatted text, as the source step's blank check trims them.
pub const BLANK: &str = " \t\u{a0}\u{202f}";

/// What a formatted column's function makes of its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Parse {
    FinnishDecimal,
    FinnishInteger,
    Hl7Date,
    Hl7Timestamp,
}

impl Parse {
    /// The function's name.
    pub fn name(self) -> &'static str {
        match self {
            Parse::FinnishDecimal => "__finnish_decimal",
            Parse::FinnishInteger => "__finnish_integer",
            Parse::Hl7Date => "__hl7_date",
            Parse::Hl7Timestamp => "__hl7_timestamp",
        }
    }

    fn return_type(self) -> DataType {
        match self {
            Parse::FinnishDecimal => DataType::Float64,
            Parse::FinnishInteger => DataType::Int64,
            Parse::Hl7Date => DataType::Date32,
            Parse::Hl7Timestamp => TIMESTAMP,
        }
    }
}

/// Removes the separators a Finnish text may be surrounded with.
fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| BLANK.contains(c))
}

/// The length of a group separator (space, NBSP, NNBSP) at the start of `b`, or 0.
fn separator(b: &[u8]) -> usize {
    match b {
        [b' ', ..] => 1,
        [0xC2, 0xA0, ..] => 2,
        [0xE2, 0x80, 0xAF, ..] => 3,
        _ => 0,
    }
}

/// A Finnish number text as plain ASCII (`-1234567.89`) written into `out`; `None` when it
/// is not one. An empty text is `Some` with an empty `out`.
fn finnish_plain(text: &str, out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    let mut b = trim(text).as_bytes();
    if b.is_empty() {
        return Some(());
    }
    if let Some(rest) = b
        .strip_prefix(b"-")
        .or_else(|| b.strip_prefix("\u{2212}".as_bytes()))
    {
        out.push(b'-');
        b = rest;
    }
    // The integer part: groups of digits, separated only when every later group has three.
    let mut group = 0usize;
    let mut grouped = false;
    let mut first = true;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() {
            out.push(c);
            group += 1;
            i += 1;
            continue;
        }
        let sep = separator(&b[i..]);
        if sep == 0 {
            break;
        }
        let ok = if first {
            (1..=3).contains(&group)
        } else {
            group == 3
        };
        if !ok {
            return None;
        }
        grouped = true;
        first = false;
        group = 0;
        i += sep;
    }
    if group == 0 || (grouped && group != 3) {
        return None; // no digit, or a separator last or before a short group
    }
    let rest = &b[i..];
    if rest.is_empty() {
        return Some(());
    }
    // A decimal comma, or a point in a plain (ungrouped) number.
    if !(rest[0] == b',' || (rest[0] == b'.' && !grouped)) {
        return None;
    }
    let fraction = &rest[1..];
    if fraction.is_empty() || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    out.push(b'.');
    out.extend_from_slice(fraction);
    Some(())
}

/// A Finnish number text as a decimal; `None` when blank, not one, or beyond the range of
/// a decimal (a run of hundreds of digits parses as infinity, which is no number).
pub fn finnish_decimal(text: &str, buffer: &mut Vec<u8>) -> Option<f64> {
    finnish_plain(text, buffer)?;
    let v: f64 = std::str::from_utf8(buffer).ok()?.parse().ok()?;
    v.is_finite().then_some(v)
}

/// A Finnish number text as a whole number (a fraction only of zeros); `None` when blank,
/// not one, with a fraction, or beyond 64 bits.
pub fn finnish_integer(text: &str, buffer: &mut Vec<u8>) -> Option<i64> {
    finnish_plain(text, buffer)?;
    let whole = match buffer.iter().position(|&c| c == b'.') {
        Some(p) if buffer[p + 1..].iter().all(|&c| c == b'0') => &buffer[..p],
        Some(_) => return None,
        None => &buffer[..],
    };
    std::str::from_utf8(whole).ok()?.parse().ok()
}

/// An HL7 `TS` read: the day as written, and the microseconds since 1970 in UTC (the
/// written time less its offset); `digits` is how many date and time digits it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hl7 {
    pub day: i32,
    pub utc_micros: i64,
    pub digits: usize,
}

/// `n` digits of `b` from `at` as a number.
fn number(b: &[u8], at: usize, n: usize) -> Option<u32> {
    b.get(at..at + n)?.iter().try_fold(0u32, |v, &c| {
        c.is_ascii_digit().then(|| v * 10 + u32::from(c - b'0'))
    })
}

/// An HL7 V3 `TS` text, `YYYYMMDD[HH[MM[SS[.S{1,4}]]]][+|-ZZZZ]`; `None` when it is not
/// one (too short, an invalid date or time, a bad offset, anything after it).
pub fn hl7(text: &str) -> Option<Hl7> {
    let b = text.trim().as_bytes();
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if !matches!(digits, 8 | 10 | 12 | 14) {
        return None;
    }
    let day = days_since_1970(number(b, 0, 4)?, number(b, 4, 2)?, number(b, 6, 2)?)?;
    let part = |at: usize, max: u32| -> Option<i64> {
        match number(b, at, 2) {
            Some(v) if at < digits && v <= max => Some(i64::from(v)),
            Some(_) if at < digits => None,
            _ => Some(0),
        }
    };
    let (h, m, s) = (part(8, 23)?, part(10, 59)?, part(12, 59)?);
    let mut micros = (day * 86_400 + h * 3_600 + m * 60 + s) * 1_000_000;
    let mut i = digits;
    if digits == 14 && b.get(i) == Some(&b'.') {
        let n = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=4).contains(&n) {
            return None;
        }
        micros += i64::from(number(b, i + 1, n)?) * 10i64.pow(6 - n as u32);
        i += 1 + n;
    }
    if let Some(&sign @ (b'+' | b'-')) = b.get(i) {
        let (oh, om) = (number(b, i + 1, 2)?, number(b, i + 3, 2)?);
        if oh > 14 || om > 59 {
            return None;
        }
        let offset = i64::from(oh * 3_600 + om * 60) * 1_000_000;
        micros -= if sign == b'+' { offset } else { -offset };
        i += 5;
    }
    if i != b.len() {
        return None;
    }
    Some(Hl7 {
        day: i32::try_from(day).ok()?,
        utc_micros: micros,
        digits,
    })
}

/// One of the format functions (see the module's documentation).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FormatRead {
    signature: Signature,
    parse: Parse,
}

impl FormatRead {
    pub fn new(parse: Parse) -> Self {
        FormatRead {
            signature: Signature::any(1, Volatility::Immutable),
            parse,
        }
    }
}

impl ScalarUDFImpl for FormatRead {
    fn name(&self) -> &str {
        self.parse.name()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.parse.return_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let array = string_arg(&args, self.parse.name())?;
        let text = array.as_string::<i32>();
        let mut buffer = Vec::with_capacity(32);
        let out: ArrayRef = match self.parse {
            Parse::FinnishDecimal => Arc::new(Float64Array::from_iter(
                text.iter()
                    .map(|v| v.and_then(|v| finnish_decimal(v, &mut buffer))),
            )),
            Parse::FinnishInteger => Arc::new(Int64Array::from_iter(
                text.iter()
                    .map(|v| v.and_then(|v| finnish_integer(v, &mut buffer))),
            )),
            Parse::Hl7Date => Arc::new(Date32Array::from_iter(
                text.iter().map(|v| v.and_then(hl7).map(|t| t.day)),
            )),
            Parse::Hl7Timestamp => {
                Arc::new(TimestampMicrosecondArray::from_iter(text.iter().map(|v| {
                    v.and_then(hl7)
                        .filter(|t| t.digits >= 12)
                        .map(|t| t.utc_micros)
                })))
            }
        };
        debug_assert_eq!(out.len(), text.len());
        Ok(ColumnarValue::Array(out))
    }
}

/// The format functions, ready to register.
pub fn udfs() -> Vec<ScalarUDF> {
    [
        Parse::FinnishDecimal,
        Parse::FinnishInteger,
        Parse::Hl7Date,
        Parse::Hl7Timestamp,
    ]
    .into_iter()
    .map(|p| ScalarUDF::new_from_impl(FormatRead::new(p)))
    .collect()
}

#[cfg(test)]
mod tests;
