//! Local wall-clock times read as instants, for source columns declared `local: true`, and
//! instants shown as a zone's clocks showed them, for `to_char`.
//!
//! - `__local_timestamp(text, zone, policy)`: the instant a timestamp text names, typed
//!   `Timestamp(Microsecond, zone)`: Arrow keeps the instant and reads its calendar in the
//!   zone, so differences and comparisons are between instants while `to_char`,
//!   `date_part('hour', …)` and a cast to `DATE` show the zone's clocks. NULL for a text
//!   that is not a timestamp and for one that names no one instant.
//! - `__local_time_problem(text, zone, policy)`: why a timestamp text names no one
//!   instant: `nonexistent` or `ambiguous`; otherwise NULL.
//!
//! A text with a UTC offset (`2025-03-30T02:55+02:00`, `…Z`) names its instant itself. One
//! without is a wall-clock time of the zone. When summer time starts the clocks skip an
//! hour (in Finland 03:00–03:59 on the last Sunday of March): a time in it is
//! `nonexistent`. When it ends they show an hour twice (03:00–03:59 on the last Sunday of
//! October, first UTC+3, then UTC+2): the policy `earliest` takes the first, `quarantine`
//! calls it `ambiguous`. Both are internal (the source step's planning calls them, with the
//! line's `timezone` and each column's policy), registered so that a cluster finds them.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use chrono::{LocalResult, Offset, TimeZone};
use chrono_tz::Tz;
use datafusion::common::{Result, exec_err, internal_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

const MICROS: i64 = 1_000_000;
const HOUR: i64 = 3_600 * MICROS;
/// Hours remembered by a [`Resolver`] (six weeks of distinct hours before two share a slot).
const SLOTS: i64 = 1024;

/// What a wall-clock time that the clocks showed twice becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The earlier of its two instants (summer time).
    Earliest,
    /// No instant: the row goes to quarantine.
    Quarantine,
}

impl Policy {
    /// `earliest` or `quarantine`, as a line writes it.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "earliest" => Some(Policy::Earliest),
            "quarantine" => Some(Policy::Quarantine),
            _ => None,
        }
    }
}

/// Why a wall-clock time names no one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The clocks skipped it (they were moved forward).
    Nonexistent,
    /// The clocks showed it twice (they were moved back) and the policy does not pick.
    Ambiguous,
}

impl Problem {
    /// The word `__local_time_problem` answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Nonexistent => "nonexistent",
            Problem::Ambiguous => "ambiguous",
        }
    }
}

/// A timestamp text as written, in microseconds since 1970: a wall-clock time (no offset
/// given) or an instant (an offset given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    Wall(i64),
    Instant(i64),
}

/// What a timestamp text says; `None` when it is not a timestamp. Read directly: the forms
/// of a timestamp column (`YYYY-MM-DD`, then `T` or a space and `HH:MM:SS`, a fraction),
/// also `HH:MM`, each optionally followed by `Z`, `±HH:MM`, `±HHMM` or `±HH`. Any other form
/// as Arrow reads it, an offset or zone after the time making it an instant.
fn written(text: &str) -> Option<Written> {
    if let Some(wall) = super::common_timestamp(text.as_bytes()) {
        return Some(Written::Wall(wall));
    }
    if let Some(w) = iso(text.as_bytes()) {
        return Some(w);
    }
    let t = arrow::compute::kernels::cast_utils::string_to_datetime(&chrono::Utc, text).ok()?;
    let zoned = text.get(11..).is_some_and(|time| {
        time.trim_end()
            .bytes()
            .any(|c| !(c.is_ascii_digit() || c == b':' || c == b'.'))
    });
    Some(if zoned {
        Written::Instant(t.timestamp_micros())
    } else {
        Written::Wall(t.timestamp_micros())
    })
}

/// `YYYY-MM-DD`, `T` or a space, `HH:MM`, optionally `:SS` and a fraction, optionally an
/// offset.
fn iso(b: &[u8]) -> Option<Written> {
    let midnight = super::common_timestamp(b.get(..10)?)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
        return None;
    }
    let (h, m) = (two(b, 11)?, two(b, 14)?);
    if h > 23 || m > 59 {
        return None;
    }
    let mut wall = midnight + (h * 3_600 + m * 60) * MICROS;
    let mut i = 16;
    if b.get(i) == Some(&b':') {
        let s = two(b, i + 1)?;
        if s > 59 {
            return None;
        }
        wall += s * MICROS;
        i += 3;
        if b.get(i) == Some(&b'.') {
            let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            // Microseconds: the first six digits (a finer fraction is cut, as Arrow does).
            wall += (0..6).fold(0i64, |n, k| {
                let d = if k < digits {
                    i64::from(b[i + 1 + k] - b'0')
                } else {
                    0
                };
                n * 10 + d
            });
            i += 1 + digits;
        }
    }
    match &b[i..] {
        [] => Some(Written::Wall(wall)),
        [b'Z' | b'z'] => Some(Written::Instant(wall)),
        [sign @ (b'+' | b'-'), offset @ ..] => {
            let seconds = offset_seconds(offset)?;
            let seconds = if *sign == b'-' { -seconds } else { seconds };
            Some(Written::Instant(wall - seconds * MICROS))
        }
        _ => None,
    }
}

/// The two digits at `i` as a number.
fn two(b: &[u8], i: usize) -> Option<i64> {
    let (x, y) = (*b.get(i)?, *b.get(i + 1)?);
    (x.is_ascii_digit() && y.is_ascii_digit())
        .then(|| i64::from(x - b'0') * 10 + i64::from(y - b'0'))
}

/// An offset `HH`, `HHMM` or `HH:MM`, in seconds.
fn offset_seconds(b: &[u8]) -> Option<i64> {
    let (h, m) = match b.len() {
        2 => (two(b, 0)?, 0),
        4 => (two(b, 0)?, two(b, 2)?),
        5 if b[2] == b':' => (two(b, 0)?, two(b, 3)?),
        _ => return None,
    };
    (h <= 23 && m <= 59).then_some((h * 60 + m) * 60)
}

/// Wall-clock times of one zone resolved to instants. A zone moves its clocks at most once
/// in an hour, so an hour whose first and last microsecond have one offset has it
/// throughout: such hours are remembered, and a time in them needs no lookup.
struct Resolver {
    zone: Tz,
    policy: Policy,
    /// (local hour since 1970, its offset in microseconds), by the hour modulo [`SLOTS`].
    hours: Vec<(i64, i64)>,
}

impl Resolver {
    fn new(zone: Tz, policy: Policy) -> Self {
        Self {
            zone,
            policy,
            hours: vec![(i64::MIN, 0); SLOTS as usize],
        }
    }

    /// The instant a timestamp text names: `Ok(None)` when it is not a timestamp, `Err`
    /// when it names no one instant.
    fn read(&mut self, text: &str) -> Result<Option<i64>, Problem> {
        match written(text) {
            None => Ok(None),
            Some(Written::Instant(t)) => Ok(Some(t)),
            Some(Written::Wall(wall)) => self.instant(wall).map(Some),
        }
    }

    /// The instant of wall-clock time `wall`, or why it has none.
    fn instant(&mut self, wall: i64) -> Result<i64, Problem> {
        let hour = wall.div_euclid(HOUR);
        let slot = hour.rem_euclid(SLOTS) as usize;
        let (known, offset) = self.hours[slot];
        if known == hour {
            return Ok(wall - offset);
        }
        let start = hour * HOUR;
        match (
            offsets(&self.zone, start),
            offsets(&self.zone, start + HOUR - 1),
        ) {
            (LocalResult::Single(a), LocalResult::Single(b)) if a == b => {
                self.hours[slot] = (hour, a);
                Ok(wall - a)
            }
            _ => pick(offsets(&self.zone, wall), wall, self.policy),
        }
    }
}

/// The offsets (in microseconds) the zone's clocks had when they showed `wall`: none (a
/// time they skipped), one, or two (a time they showed twice).
fn offsets(zone: &Tz, wall: i64) -> LocalResult<i64> {
    match chrono::DateTime::from_timestamp_micros(wall) {
        Some(t) => zone
            .offset_from_local_datetime(&t.naive_utc())
            .map(|o| i64::from(o.fix().local_minus_utc()) * MICROS),
        None => LocalResult::None,
    }
}

/// The instant of `wall`, given the zone's offsets then and the policy.
fn pick(offsets: LocalResult<i64>, wall: i64, policy: Policy) -> Result<i64, Problem> {
    match offsets {
        LocalResult::Single(o) => Ok(wall - o),
        // The earlier instant is the one of the larger offset (summer time).
        LocalResult::Ambiguous(a, b) if policy == Policy::Earliest => Ok((wall - a).min(wall - b)),
        LocalResult::Ambiguous(..) => Err(Problem::Ambiguous),
        LocalResult::None => Err(Problem::Nonexistent),
    }
}

/// The type of instants whose calendar is read in `zone`.
pub fn instant_type(zone: &str) -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(zone.into()))
}

/// `__local_timestamp` (the instant) or `__local_time_problem` (why there is none).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LocalTime {
    signature: Signature,
    problem: bool,
}

impl LocalTime {
    /// `__local_timestamp(text, zone, policy)`.
    pub fn instant() -> Self {
        Self {
            signature: Signature::any(3, Volatility::Immutable),
            problem: false,
        }
    }

    /// `__local_time_problem(text, zone, policy)`.
    pub fn problem() -> Self {
        Self {
            signature: Signature::any(3, Volatility::Immutable),
            problem: true,
        }
    }
}

/// The text of a literal argument.
fn literal(v: &ColumnarValue) -> Option<&str> {
    match v {
        ColumnarValue::Scalar(s) => s.try_as_str().flatten(),
        ColumnarValue::Array(_) => None,
    }
}

impl ScalarUDFImpl for LocalTime {
    fn name(&self) -> &str {
        if self.problem {
            "__local_time_problem"
        } else {
            "__local_timestamp"
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        if self.problem {
            Ok(DataType::Utf8)
        } else {
            internal_err!("__local_timestamp: the type depends on the zone given")
        }
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if self.problem {
            return Ok(Arc::new(Field::new(self.name(), DataType::Utf8, true)));
        }
        let zone = args
            .scalar_arguments
            .get(1)
            .copied()
            .flatten()
            .and_then(|v| v.try_as_str().flatten());
        let Some(zone) = zone else {
            return plan_err!("__local_timestamp takes its zone as a text literal");
        };
        Ok(Arc::new(Field::new(self.name(), instant_type(zone), true)))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [text, zone, policy] = args.args.as_slice() else {
            return exec_err!("{} takes a text, a zone and a policy", self.name());
        };
        let (Some(zone_name), Some(policy)) =
            (literal(zone), literal(policy).and_then(Policy::parse))
        else {
            return exec_err!("{}: the zone and the policy are text literals", self.name());
        };
        let Ok(tz) = zone_name.parse::<Tz>() else {
            return exec_err!("{}: `{zone_name}` is not a time zone", self.name());
        };
        let texts = arrow::compute::cast(&text.to_array(args.number_rows)?, &DataType::Utf8)?;
        let texts = texts.as_string::<i32>();
        let mut resolver = Resolver::new(tz, policy);
        let out: ArrayRef = if self.problem {
            let mut b = StringBuilder::with_capacity(texts.len(), 0);
            for v in texts.iter() {
                let problem = v.and_then(|s| resolver.read(s).err());
                b.append_option(problem.map(Problem::as_str));
            }
            Arc::new(b.finish())
        } else {
            let mut values = Vec::with_capacity(texts.len());
            for v in texts.iter() {
                values.push(v.and_then(|s| resolver.read(s).ok().flatten()));
            }
            Arc::new(TimestampMicrosecondArray::from(values).with_timezone(zone_name.to_string()))
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// Instants of a timestamp array with a zone as the zone's clocks showed them: a timestamp
/// array of `unit` without a zone, for formatting with `format`. `None` for a zone that
/// chrono-tz does not name (a fixed offset such as `+02:00`) and for a format that writes
/// the instant itself (`%s`, seconds since 1970): DataFusion's `to_char` formats those.
pub fn wall_clock(values: &ArrayRef, unit: TimeUnit, zone: &str, format: &str) -> Option<ArrayRef> {
    use chrono::format::{Item, Numeric, StrftimeItems};
    let epoch =
        StrftimeItems::new(format).any(|i| matches!(i, Item::Numeric(Numeric::Timestamp, _)));
    let zone: Tz = zone.parse().ok().filter(|_| !epoch)?;
    let per_second: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let raw = arrow::compute::cast(values, &DataType::Int64).ok()?;
    let raw = raw.as_primitive::<arrow::datatypes::Int64Type>();
    // The offset (seconds) of each UTC hour that has one throughout, as in `Resolver`.
    let mut hours = vec![(i64::MIN, 0i64); SLOTS as usize];
    let offset_at = |second: i64| -> Option<i64> {
        let t = chrono::DateTime::from_timestamp(second, 0)?;
        Some(i64::from(
            zone.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc(),
        ))
    };
    let mut out = Vec::with_capacity(raw.len());
    for v in raw.iter() {
        let Some(t) = v else {
            out.push(None);
            continue;
        };
        let second = t.div_euclid(per_second);
        let hour = second.div_euclid(3_600);
        let slot = hour.rem_euclid(SLOTS) as usize;
        let (known, mut offset) = hours[slot];
        if known != hour {
            let (a, b) = (offset_at(hour * 3_600)?, offset_at(hour * 3_600 + 3_599)?);
            offset = if a == b {
                hours[slot] = (hour, a);
                a
            } else {
                offset_at(second)?
            };
        }
        out.push(Some(t.checked_add(offset.checked_mul(per_second)?)?));
    }
    let walls = arrow::array::Int64Array::from(out);
    arrow::compute::cast(&walls, &DataType::Timestamp(unit, None)).ok()
}

#[cfg(test)]
mod tests;
