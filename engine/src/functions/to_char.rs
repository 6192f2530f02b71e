//! `to_char`: DataFusion's, with a faster path for a column of timestamps or dates and one
//! constant format (the common case: `to_char(pvm, '%Y-%m')` of every row of a step).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature};

use super::local_time;

/// DataFusion's `to_char`, faster for the common case: a column of timestamps (or of dates,
/// [`format_dates`]) and one constant format (a timestamp with a zone formatted as the zone's clocks showed it, as
/// DataFusion does). The format is parsed once (DataFusion parses it for
/// every value), and zero-padded years 0–9999, months, days, hours, minutes and seconds
/// are written directly; anything else is formatted by chrono as DataFusion does, with
/// the same result. Other arguments go to DataFusion's own function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToChar {
    inner: datafusion::functions::datetime::to_char::ToCharFunc,
}

impl ToChar {
    pub fn new() -> Self {
        Self {
            inner: datafusion::functions::datetime::to_char::ToCharFunc::new(),
        }
    }
}

impl Default for ToChar {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }
    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.inner.documentation()
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let [
            ColumnarValue::Array(values),
            ColumnarValue::Scalar(datafusion::common::ScalarValue::Utf8(Some(format))),
        ] = args.args.as_slice()
            && let DataType::Timestamp(unit, zone) = values.data_type()
            && let Some(walls) = match zone {
                None => Some(values.clone()),
                Some(zone) => local_time::wall_clock(values, *unit, zone, format),
            }
            && let Some(out) = format_timestamps(&walls, *unit, format)
        {
            return Ok(ColumnarValue::Array(Arc::new(out)));
        }
        if let [
            ColumnarValue::Array(values),
            ColumnarValue::Scalar(datafusion::common::ScalarValue::Utf8(Some(format))),
        ] = args.args.as_slice()
            && values.data_type() == &DataType::Date32
            && let Some(out) = format_dates(values, format)
        {
            return Ok(ColumnarValue::Array(Arc::new(out)));
        }
        self.inner.invoke_with_args(args)
    }
}

/// Timestamps (without a time zone) formatted with `format`, or `None` when the format or a
/// value is one this fast path leaves to DataFusion.
pub(super) fn format_timestamps(
    values: &ArrayRef,
    unit: arrow::datatypes::TimeUnit,
    format: &str,
) -> Option<arrow::array::StringArray> {
    use chrono::format::Item;
    let items: Vec<Item<'_>> = chrono::format::StrftimeItems::new(format).parse().ok()?;
    let mut out = StringBuilder::with_capacity(values.len(), values.len() * (format.len() + 8));
    for i in 0..values.len() {
        if values.is_null(i) {
            out.append_null();
            continue;
        }
        let t = timestamp_at(values, unit, i)?;
        for item in &items {
            format_item(&mut out, item, &t)?;
        }
        out.append_value("");
    }
    Some(out.finish())
}

/// Dates (`Date32`) formatted with `format`, or `None` when the format holds anything but
/// text and zero-padded years, months and days (DataFusion then formats them: a time field
/// of a date is its error to give), or a value is one chrono cannot hold.
pub(super) fn format_dates(values: &ArrayRef, format: &str) -> Option<arrow::array::StringArray> {
    use arrow::datatypes::Date32Type;
    use chrono::format::{Item, Numeric, Pad};
    let items: Vec<Item<'_>> = chrono::format::StrftimeItems::new(format).parse().ok()?;
    let dated = |i: &Item<'_>| {
        matches!(
            i,
            Item::Literal(_)
                | Item::Space(_)
                | Item::Numeric(Numeric::Year | Numeric::Month | Numeric::Day, Pad::Zero)
        )
    };
    if !items.iter().all(dated) {
        return None;
    }
    let dates = values.as_primitive::<Date32Type>();
    let mut out = StringBuilder::with_capacity(values.len(), values.len() * (format.len() + 4));
    for i in 0..values.len() {
        if values.is_null(i) {
            out.append_null();
            continue;
        }
        let t = Date32Type::to_naive_date_opt(dates.value(i))?.and_time(chrono::NaiveTime::MIN);
        for item in &items {
            format_item(&mut out, item, &t)?;
        }
        out.append_value("");
    }
    Some(out.finish())
}

/// The `i`th value of a timestamp array in `unit` as a date and time; `None` when chrono
/// cannot hold it.
fn timestamp_at(
    values: &ArrayRef,
    unit: arrow::datatypes::TimeUnit,
    i: usize,
) -> Option<chrono::NaiveDateTime> {
    use arrow::array::temporal_conversions::as_datetime;
    use arrow::datatypes::{
        TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
        TimestampSecondType,
    };
    let v = match unit {
        TimeUnit::Second => values.as_primitive::<TimestampSecondType>().value(i),
        TimeUnit::Millisecond => values.as_primitive::<TimestampMillisecondType>().value(i),
        TimeUnit::Microsecond => values.as_primitive::<TimestampMicrosecondType>().value(i),
        TimeUnit::Nanosecond => values.as_primitive::<TimestampNanosecondType>().value(i),
    };
    match unit {
        TimeUnit::Second => as_datetime::<TimestampSecondType>(v),
        TimeUnit::Millisecond => as_datetime::<TimestampMillisecondType>(v),
        TimeUnit::Microsecond => as_datetime::<TimestampMicrosecondType>(v),
        TimeUnit::Nanosecond => as_datetime::<TimestampNanosecondType>(v),
    }
}

/// Writes one item of a format for `t`: zero-padded years 0–9999, months, days, hours,
/// minutes and seconds directly, anything else through chrono; `None` when chrono fails.
fn format_item(
    out: &mut StringBuilder,
    item: &chrono::format::Item<'_>,
    t: &chrono::NaiveDateTime,
) -> Option<()> {
    use chrono::format::{Item, Numeric, Pad};
    use chrono::{Datelike, Timelike};
    use std::fmt::Write;
    match item {
        Item::Literal(s) | Item::Space(s) => {
            let _ = out.write_str(s);
        }
        Item::Numeric(Numeric::Year, Pad::Zero) if (0..=9999).contains(&t.year()) => {
            let y = t.year() as u32;
            two_digits(out, y / 100);
            two_digits(out, y % 100);
        }
        Item::Numeric(n, Pad::Zero)
            if matches!(
                n,
                Numeric::Month | Numeric::Day | Numeric::Hour | Numeric::Minute | Numeric::Second
            ) =>
        {
            let v = match n {
                Numeric::Month => t.month(),
                Numeric::Day => t.day(),
                Numeric::Hour => t.hour(),
                Numeric::Minute => t.minute(),
                _ => t.second(),
            };
            two_digits(out, v);
        }
        other => {
            write!(out, "{}", t.format_with_items(std::iter::once(other))).ok()?;
        }
    }
    Some(())
}

/// Writes `n` (below 100) as two digits.
fn two_digits(out: &mut StringBuilder, n: u32) {
    use std::fmt::Write;
    let _ = out.write_char(char::from(b'0' + (n / 10) as u8));
    let _ = out.write_char(char::from(b'0' + (n % 10) as u8));
}
