//! Valtava's own SQL functions, vectorised over Arrow arrays.
//!
//! - `hetu_problem(text)`: null for a valid Finnish personal identity code, otherwise what
//!   is wrong with it (never the code itself). Rules in `DOMAIN.md`: 11 characters,
//!   an existing date, a century sign, individual number 002–999 (900–999 temporary and
//!   valid), check character.
//! - `pseudonym(text)`: the keyed pseudonym of an identifier, HMAC-SHA-256 over all its
//!   characters (trimmed, upper case), as 64 hex digits. The key is given at run time and
//!   never stored.
//! - `hetu_birth_date(text)`, `hetu_birth_year(text)`, `hetu_age(text, date)`: what a valid
//!   identity code says of its holder's birth; null for an invalid code.
//! - `hetu_sex(text)`: `1` (odd individual number, male) or `2` (even, female) for codes
//!   of people born before 2027; null from 2027 on, when the number no longer tells sex.
//! - `to_char(timestamp, format)`: DataFusion's, with a faster path for a constant format
//!   over timestamps (same result; a timestamp with a zone as its clocks showed it).
//! - `add_months(date, n)`, `working_days(from, to)` ([`calendar`]): statutory time limits,
//!   months with the day clamped, working days by the line's `calendar` of holidays.
//! - Internal: `__local_timestamp`, `__local_time_problem` ([`local_time`]): local
//!   wall-clock times of source columns declared `local: true`, read as instants;
//!   `__finnish_decimal`, `__finnish_integer`, `__hl7_date`, `__hl7_timestamp`
//!   ([`formats`]): source columns declared with a `format`.

pub mod calendar;
pub mod cellsets;
pub mod formats;
pub mod local_time;
mod to_char;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::DataType;
use chrono::NaiveDate;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
pub use to_char::ToChar;

const CHECK_CHARS: &[u8; 31] = b"0123456789ABCDEFHJKLMNPRSTUVWXY";

/// What is wrong with a personal identity code, or `None` when it is valid.
pub fn hetu_problem(code: &str) -> Option<&'static str> {
    let b = code.as_bytes();
    if b.len() != 11 || !code.is_ascii() {
        return Some("a personal identity code has 11 characters");
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = &code[r];
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (Some(dd), Some(mm), Some(yy)) = (digits(0..2), digits(2..4), digits(4..6)) else {
        return Some("the first six characters of a personal identity code are the date DDMMYY");
    };
    let century = match b[6] {
        b'+' => 1800,
        b'-' | b'Y' | b'X' | b'W' | b'V' | b'U' => 1900,
        b'A' | b'B' | b'C' | b'D' | b'E' | b'F' => 2000,
        _ => return Some("unknown century sign in the personal identity code"),
    };
    let Some(individual) = digits(7..10) else {
        return Some("characters 8–10 of a personal identity code are digits");
    };
    if NaiveDate::from_ymd_opt(century + yy as i32, mm, dd).is_none() {
        return Some("the date of the personal identity code does not exist");
    }
    if individual < 2 {
        return Some("the individual number of a personal identity code is 002–999");
    }
    let number = (dd * 10_000 + mm * 100 + yy) as u64 * 1000 + individual as u64;
    if CHECK_CHARS[(number % 31) as usize] != b[10] {
        return Some("the check character of the personal identity code does not match");
    }
    None
}

/// Keyed pseudonym of an identifier, as lower-case hex. The identifier is normalised
/// first (surrounding spaces removed, upper case), so `131052-308t` and `131052-308T` are
/// one person; every character, the century sign included, counts.
pub fn pseudonym(key: &[u8], identifier: &str) -> String {
    Pseudonymiser::new(key).pseudonym(identifier).to_string()
}

/// Makes the pseudonyms of many identifiers with one key: the HMAC state after the key's
/// block is kept and cloned per identifier, and the hex is written into a buffer, so a
/// pseudonym costs two SHA-256 blocks and no allocation.
pub struct Pseudonymiser {
    keyed: Hmac<Sha256>,
    upper: String,
    hex: [u8; 64],
}

impl Pseudonymiser {
    pub fn new(key: &[u8]) -> Self {
        Pseudonymiser {
            // HMAC accepts keys of any length, so this cannot fail.
            keyed: <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length"),
            upper: String::new(),
            hex: [0; 64],
        }
    }

    /// The pseudonym of `identifier` (trimmed, upper-cased), as lower-case hex.
    pub fn pseudonym(&mut self, identifier: &str) -> &str {
        let id = identifier.trim();
        let mut mac = self.keyed.clone();
        if id.bytes().any(|b| b.is_ascii_lowercase() || !b.is_ascii()) {
            self.upper = id.to_uppercase();
            mac.update(self.upper.as_bytes());
        } else {
            mac.update(id.as_bytes());
        }
        let digest = mac.finalize().into_bytes();
        hex::encode_to_slice(digest, &mut self.hex).expect("64 hex digits for 32 bytes");
        std::str::from_utf8(&self.hex).expect("hex digits are ASCII")
    }
}

/// The birth date a valid identity code gives.
pub fn hetu_birth_date(code: &str) -> Option<NaiveDate> {
    if hetu_problem(code).is_some() {
        return None;
    }
    let century = match code.as_bytes()[6] {
        b'+' => 1800,
        b'-' | b'Y' | b'X' | b'W' | b'V' | b'U' => 1900,
        _ => 2000,
    };
    let n = |r: std::ops::Range<usize>| code[r].parse::<u32>().ok();
    NaiveDate::from_ymd_opt(century + n(4..6)? as i32, n(2..4)?, n(0..2)?)
}

/// Sex from a valid identity code: 1 male, 2 female; None from births in 2027 on.
pub fn hetu_sex(code: &str) -> Option<&'static str> {
    let born = hetu_birth_date(code)?;
    if born >= NaiveDate::from_ymd_opt(2027, 1, 1)? {
        return None;
    }
    let individual: u32 = code[7..10].parse().ok()?;
    Some(if individual % 2 == 1 { "1" } else { "2" })
}

/// Full years of age on a day.
pub fn age_on(born: NaiveDate, day: NaiveDate) -> Option<i64> {
    use chrono::Datelike;
    if day < born {
        return None;
    }
    let mut years = day.year() - born.year();
    if (day.month(), day.day()) < (born.month(), born.day()) {
        years -= 1;
    }
    Some(years as i64)
}

fn string_arg(args: &ScalarFunctionArgs, name: &str) -> Result<ArrayRef> {
    let [arg] = args.args.as_slice() else {
        return exec_err!("{name} takes one argument");
    };
    let array = arg.to_array(args.number_rows)?;
    Ok(arrow::compute::cast(&array, &DataType::Utf8)?)
}

/// `hetu_problem(text) -> text`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HetuProblem {
    signature: Signature,
}

impl ScalarUDFImpl for HetuProblem {
    fn name(&self) -> &str {
        "hetu_problem"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let array = string_arg(&args, "hetu_problem")?;
        let input = array.as_string::<i32>();
        let mut out = StringBuilder::with_capacity(input.len(), 0);
        for v in input.iter() {
            out.append_option(v.and_then(hetu_problem));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `pseudonym(text) -> text`, with the run's key. Without a key (a cluster's scheduler and
/// executors, which never hold it) it is registered so that a plan naming it fails with
/// [`NO_KEY`] rather than with an unknown function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Pseudonym {
    signature: Signature,
    key: Option<Vec<u8>>,
}

/// The error of `pseudonym` where there is no key.
pub const NO_KEY: &str = "pseudonym() is not available here: identity codes are pseudonymised where the run starts, and the cluster never holds the key";

impl ScalarUDFImpl for Pseudonym {
    fn name(&self) -> &str {
        "pseudonym"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some(key) = &self.key else {
            return datafusion::common::exec_err!("{NO_KEY}");
        };
        let array = string_arg(&args, "pseudonym")?;
        let input = array.as_string::<i32>();
        let mut out = StringBuilder::with_capacity(input.len(), input.len() * 64);
        let mut p = Pseudonymiser::new(key);
        for v in input.iter() {
            match v {
                Some(s) => out.append_value(p.pseudonym(s)),
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// What a derived-from-identity-code function returns.
#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum HetuPart {
    BirthDate,
    BirthYear,
    Sex,
    Age,
}

/// `hetu_birth_date`, `hetu_birth_year`, `hetu_sex`, `hetu_age`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HetuDerived {
    signature: Signature,
    part: HetuPart,
}

impl ScalarUDFImpl for HetuDerived {
    fn name(&self) -> &str {
        match self.part {
            HetuPart::BirthDate => "hetu_birth_date",
            HetuPart::BirthYear => "hetu_birth_year",
            HetuPart::Sex => "hetu_sex",
            HetuPart::Age => "hetu_age",
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(match self.part {
            HetuPart::BirthDate => DataType::Date32,
            HetuPart::BirthYear | HetuPart::Age => DataType::Int64,
            HetuPart::Sex => DataType::Utf8,
        })
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use arrow::array::{Date32Builder, Int64Builder};
        let rows = args.number_rows;
        let Some(first) = args.args.first() else {
            return exec_err!("{} takes an identity code", self.name());
        };
        let codes = arrow::compute::cast(&first.to_array(rows)?, &DataType::Utf8)?;
        let codes = codes.as_string::<i32>();
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
        let out: ArrayRef = match self.part {
            HetuPart::BirthDate => {
                let mut b = Date32Builder::with_capacity(rows);
                for c in codes.iter() {
                    b.append_option(
                        c.and_then(hetu_birth_date)
                            .map(|d| (d - epoch).num_days() as i32),
                    );
                }
                Arc::new(b.finish())
            }
            HetuPart::BirthYear => {
                use chrono::Datelike;
                let mut b = Int64Builder::with_capacity(rows);
                for c in codes.iter() {
                    b.append_option(c.and_then(hetu_birth_date).map(|d| d.year() as i64));
                }
                Arc::new(b.finish())
            }
            HetuPart::Sex => {
                let mut b = StringBuilder::with_capacity(rows, rows);
                for c in codes.iter() {
                    b.append_option(c.and_then(hetu_sex));
                }
                Arc::new(b.finish())
            }
            HetuPart::Age => {
                let Some(second) = args.args.get(1) else {
                    return exec_err!("hetu_age takes an identity code and a date");
                };
                let days = arrow::compute::cast(&second.to_array(rows)?, &DataType::Date32)?;
                let days = days.as_primitive::<arrow::datatypes::Date32Type>();
                let mut b = Int64Builder::with_capacity(rows);
                for (i, c) in codes.iter().enumerate() {
                    let day = days
                        .is_valid(i)
                        .then(|| epoch + chrono::Duration::days(days.value(i) as i64));
                    b.append_option(match (c.and_then(hetu_birth_date), day) {
                        (Some(born), Some(day)) => age_on(born, day),
                        _ => None,
                    });
                }
                Arc::new(b.finish())
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// `__timestamp(text)`: `TRY_CAST(text AS TIMESTAMP)` (microseconds, no time zone), and
/// `__date(text)`: `TRY_CAST(text AS DATE)`, as Arrow casts, with a faster path for the
/// common forms `YYYY-MM-DD` (and for timestamps `YYYY-MM-DDTHH:MM:SS` and
/// `YYYY-MM-DD HH:MM:SS`): a valid such text is read directly, anything else (other forms,
/// invalid dates and times) goes to Arrow's cast. Used to type the timestamp and date
/// columns of sources (Arrow's general parser was a third of the typing; its date parser,
/// through chrono, 5 % of a CSV line of three date columns).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TextTimestamp {
    signature: Signature,
    /// `__date`, not `__timestamp`.
    date: bool,
}

impl Default for TextTimestamp {
    fn default() -> Self {
        TextTimestamp {
            signature: Signature::any(1, Volatility::Immutable),
            date: false,
        }
    }
}

impl TextTimestamp {
    /// `__date`.
    pub fn date() -> Self {
        TextTimestamp {
            date: true,
            ..Self::default()
        }
    }

    fn target(&self) -> DataType {
        if self.date {
            DataType::Date32
        } else {
            TIMESTAMP
        }
    }
}

const TIMESTAMP: DataType = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None);

/// The days from 1970-01-01 to a valid date of the proleptic Gregorian calendar (years
/// 0–9999); `None` for a month or day that does not exist. Integer arithmetic (the civil
/// day count of H. Hinnant's `days_from_civil`): every timestamp text a source reads passes
/// here, and building a chrono date for each was a measurable part of a run.
fn days_since_1970(year: u32, month: u32, day: u32) -> Option<i64> {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let length = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > length {
        return None;
    }
    let (y, m, d) = (i64::from(year), i64::from(month), i64::from(day));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

/// The microseconds since 1970 of a valid `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS` or
/// `YYYY-MM-DD HH:MM:SS`; `None` for anything else.
fn common_timestamp(s: &[u8]) -> Option<i64> {
    if s.len() != 10 && s.len() != 19 {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        s[r].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let days = days_since_1970(digits(0..4)?, digits(5..7)?, digits(8..10)?)?;
    let mut seconds = days * 86_400;
    if s.len() == 19 {
        if !matches!(s[10], b'T' | b' ') || s[13] != b':' || s[16] != b':' {
            return None;
        }
        let (h, m, sec) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
        if h > 23 || m > 59 || sec > 59 {
            return None;
        }
        seconds += i64::from(h * 3600 + m * 60 + sec);
    }
    Some(seconds * 1_000_000)
}

impl ScalarUDFImpl for TextTimestamp {
    fn name(&self) -> &str {
        if self.date { "__date" } else { "__timestamp" }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.target())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let array = string_arg(&args, self.name())?;
        let text = array.as_string::<i32>();
        let mut values: Vec<Option<i64>> = Vec::with_capacity(text.len());
        let mut others = Vec::new();
        for (i, v) in text.iter().enumerate() {
            let common = |v: &str| match self.date {
                true if v.len() == 10 => common_timestamp(v.as_bytes()).map(|t| t / 86_400_000_000),
                true => None,
                false => common_timestamp(v.as_bytes()),
            };
            values.push(match v.map(common) {
                Some(Some(t)) => Some(t),
                Some(None) => {
                    others.push(i as u32);
                    None
                }
                None => None,
            });
        }
        if !others.is_empty() {
            // The other forms as Arrow reads them (NULL where it cannot).
            let picked = arrow::compute::take(
                &array,
                &arrow::array::UInt32Array::from(others.clone()),
                None,
            )?;
            let options = arrow::compute::CastOptions {
                safe: true,
                ..Default::default()
            };
            let cast = arrow::compute::cast_with_options(&picked, &self.target(), &options)?;
            for (j, &i) in others.iter().enumerate() {
                values[i as usize] = cast.is_valid(j).then(|| match self.date {
                    true => i64::from(cast.as_primitive::<arrow::datatypes::Date32Type>().value(j)),
                    false => {
                        (cast.as_primitive::<arrow::datatypes::TimestampMicrosecondType>()).value(j)
                    }
                });
            }
        }
        Ok(ColumnarValue::Array(if self.date {
            let days = values.into_iter().map(|v| v.map(|d| d as i32));
            Arc::new(arrow::array::Date32Array::from_iter(days))
        } else {
            Arc::new(arrow::array::TimestampMicrosecondArray::from(values))
        }))
    }
}

/// The aggregate functions, ready to register: `__cell_set` and `__group_counts` are
/// internal (plans of `count(DISTINCT …)`), registered so that a plan sent to a cluster
/// finds them by name.
pub fn udafs() -> Vec<datafusion::logical_expr::AggregateUDF> {
    vec![
        crate::functions::cellsets::cell_set(),
        crate::functions::cellsets::group_counts(),
    ]
}

/// The functions, ready to register; `key` is the pseudonymisation key of the run (`None`
/// on a cluster: `pseudonym` then fails).
/// `__distinct_key`, `__cell_lanes` (plans of `count(DISTINCT …)`), `__timestamp`,
/// `__local_timestamp`, `__local_time_problem` and the [`formats`] (source typing) are
/// internal, registered so that a plan sent to a cluster finds them by name.
pub fn udfs(key: Option<&[u8]>) -> Vec<ScalarUDF> {
    let text = || Signature::exact(vec![DataType::Utf8], Volatility::Immutable);
    let mut all = vec![
        ScalarUDF::new_from_impl(DistinctKey::default()),
        crate::functions::cellsets::cell_lanes(),
        ScalarUDF::new_from_impl(TextTimestamp::default()),
        ScalarUDF::new_from_impl(TextTimestamp::date()),
        ScalarUDF::new_from_impl(local_time::LocalTime::instant()),
        ScalarUDF::new_from_impl(local_time::LocalTime::problem()),
        ScalarUDF::new_from_impl(ToChar::new()),
        ScalarUDF::new_from_impl(HetuProblem { signature: text() }),
        ScalarUDF::new_from_impl(Pseudonym {
            signature: text(),
            key: key.map(<[u8]>::to_vec),
        }),
        ScalarUDF::new_from_impl(HetuDerived {
            signature: Signature::any(1, Volatility::Immutable),
            part: HetuPart::BirthDate,
        }),
        ScalarUDF::new_from_impl(HetuDerived {
            signature: Signature::any(1, Volatility::Immutable),
            part: HetuPart::BirthYear,
        }),
        ScalarUDF::new_from_impl(HetuDerived {
            signature: Signature::any(1, Volatility::Immutable),
            part: HetuPart::Sex,
        }),
        ScalarUDF::new_from_impl(HetuDerived {
            signature: Signature::any(2, Volatility::Immutable),
            part: HetuPart::Age,
        }),
    ];
    all.extend(formats::udfs());
    all.extend(calendar::udfs());
    all
}

#[cfg(test)]
mod tests;

/// The key of a value in an exact distinct count (internal to the planner, see
/// `plan::distinct_counts`): a 128-bit number, equal for equal values. Whole numbers,
/// dates, times, and text or bytes of up to 15 bytes map to it one to one; longer text and
/// bytes and other values map through the 128-bit XXH3 hash (two different values share a
/// key with a probability of about n²/2¹²⁸ for n values: 3·10⁻²⁵ for ten million).
/// Grouping on a fixed-width number is several times faster and smaller than on text.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DistinctKey {
    signature: Signature,
}

impl Default for DistinctKey {
    fn default() -> Self {
        DistinctKey {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

/// Bit 125 marks hashed keys; exact keys stay below it.
const HASHED: i128 = 1 << 125;
const KEY_MASK: i128 = HASHED - 1;

fn short_text_key(b: &[u8]) -> i128 {
    // Length in the low byte, the bytes above it: one to one for up to 15 bytes.
    let mut k: u128 = b.len() as u128;
    for (i, &c) in b.iter().enumerate() {
        k |= (c as u128) << (8 * (i + 1));
    }
    (k & KEY_MASK as u128) as i128
}

fn text_key(s: &[u8]) -> i128 {
    if s.len() <= 15 && (s.len() < 15 || s[14] < 0x20) {
        short_text_key(s)
    } else {
        (xxhash_rust::xxh3::xxh3_128(s) as i128 & KEY_MASK) | HASHED
    }
}

impl ScalarUDFImpl for DistinctKey {
    fn name(&self) -> &str {
        "__distinct_key"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Decimal128(38, 0))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return exec_err!("__distinct_key takes one argument");
        };
        let keys = value_keys(&arg.to_array(args.number_rows)?)?;
        Ok(ColumnarValue::Array(Arc::new(
            keys.with_precision_and_scale(38, 0)?,
        )))
    }
}

/// The key of each value of `a`: NULL for NULL only (plans filter NULL values before they
/// compute keys).
pub(crate) fn value_keys(a: &arrow::array::ArrayRef) -> Result<arrow::array::Decimal128Array> {
    use arrow::array::Decimal128Array;
    let t = a.data_type().clone();
    let keys: Decimal128Array = if matches!(t, DataType::UInt64) {
        // Above `i64::MAX` a cast to Int64 would give NULL: NULL only for NULL.
        a.as_primitive::<arrow::datatypes::UInt64Type>()
            .iter()
            .map(|v| v.map(|v| v as i128))
            .collect()
    } else if t.is_integer() || t.is_temporal() || matches!(t, DataType::Boolean) {
        let a = arrow::compute::cast(a, &DataType::Int64)?;
        a.as_primitive::<arrow::datatypes::Int64Type>()
            .iter()
            .map(|v| v.map(|v| v as i128))
            .collect()
    } else if t.is_floating() {
        let a = arrow::compute::cast(a, &DataType::Float64)?;
        a.as_primitive::<arrow::datatypes::Float64Type>()
            .iter()
            .map(|v| {
                // -0.0 and 0.0 are one value, as are all NaNs.
                v.map(|v| {
                    let v = if v == 0.0 {
                        0.0
                    } else if v.is_nan() {
                        f64::NAN
                    } else {
                        v
                    };
                    v.to_bits() as i128
                })
            })
            .collect()
    } else if matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
        let a = arrow::compute::cast(a, &DataType::Utf8)?;
        a.as_string::<i32>()
            .iter()
            .map(|v| v.map(|s| text_key(s.as_bytes())))
            .collect()
    } else if matches!(
        t,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    ) {
        // Keyed like text's bytes: a column has one type, so bytes never meet text. (Through
        // a text form, bytes that are not UTF-8 would become NULL and drop out of the count.)
        let a = arrow::compute::cast(a, &DataType::Binary)?;
        a.as_binary::<i32>()
            .iter()
            .map(|v| v.map(text_key))
            .collect()
    } else {
        // Anything else by its text form.
        let a = arrow::compute::cast(a, &DataType::Utf8)?;
        a.as_string::<i32>()
            .iter()
            .map(|v| {
                v.map(|s| (xxhash_rust::xxh3::xxh3_128(s.as_bytes()) as i128 & KEY_MASK) | HASHED)
            })
            .collect()
    };
    Ok(keys)
}

#[cfg(test)]
mod distinct_key_tests;
