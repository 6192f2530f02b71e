//! Valtava's own SQL functions, vectorised over Arrow arrays.
//!
//! - `hetu_problem(text)`: null for a valid Finnish personal identity code, otherwise what
//!   is wrong with it (never the code itself). Rules in `DOMAIN.md`: 11 characters,
//!   an existing date, a century sign, individual number 002–999 (900–999 temporary and
//!   valid), check character.
//! - `pseudonym(text)`: the keyed pseudonym of an identifier, HMAC-SHA-256 over all its
//!   characters, as 64 hex digits. The key is given at run time and never stored.

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

/// Keyed pseudonym of an identifier, as lower-case hex.
pub fn pseudonym(key: &[u8], identifier: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(identifier.as_bytes());
    hex::encode(mac.finalize().into_bytes())
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

/// `pseudonym(text) -> text`, with the run's key.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Pseudonym {
    signature: Signature,
    key: Vec<u8>,
}

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
        let array = string_arg(&args, "pseudonym")?;
        let input = array.as_string::<i32>();
        let mut out = StringBuilder::with_capacity(input.len(), input.len() * 64);
        for v in input.iter() {
            out.append_option(v.map(|s| pseudonym(&self.key, s)));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// The functions, ready to register; `key` is the pseudonymisation key of the run.
pub fn udfs(key: &[u8]) -> Vec<ScalarUDF> {
    let text = || Signature::exact(vec![DataType::Utf8], Volatility::Immutable);
    vec![
        ScalarUDF::new_from_impl(HetuProblem { signature: text() }),
        ScalarUDF::new_from_impl(Pseudonym {
            signature: text(),
            key: key.to_vec(),
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_examples() {
        for ok in [
            "131052-308T",
            "131052+308T",
            "010195+433X",
            "010197-100P",
            "010114A173M",
            "290296-7808",
            "290200A248A",
            "010594Y9032",
            "020516C903K",
        ] {
            assert_eq!(hetu_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("131052-308U", "check"),
            ("131052/308T", "century"),
            ("310252-308Y", "date"),
            ("131052-000V", "individual"),
            ("290200-101P", "date"),
            ("131052-308", "11"),
            ("13105A-308T", "DDMMYY"),
        ] {
            let p = hetu_problem(bad).unwrap_or_else(|| panic!("{bad} passed"));
            assert!(p.contains(why), "{bad}: {p}");
        }
    }

    #[test]
    fn pseudonyms_are_stable_per_key_and_differ_across_keys() {
        assert_eq!(
            pseudonym(b"k1", "131052-308T"),
            pseudonym(b"k1", "131052-308T")
        );
        assert_ne!(
            pseudonym(b"k1", "131052-308T"),
            pseudonym(b"k2", "131052-308T")
        );
        // The century sign is part of the identity.
        assert_ne!(
            pseudonym(b"k1", "010190-999K"),
            pseudonym(b"k1", "010190Y999K")
        );
        assert_eq!(pseudonym(b"k1", "x").len(), 64);
    }
}
