//! One redaction policy for every text the engine writes: the last line of defence.
//!
//! Texts are built so that they never quote a value of a personal column or raw row
//! content (rule reasons name the column and what was wrong; parser errors name the object,
//! row, column and what was wrong). Still, a submitter can put an identity code where no
//! one expects it — in a free-text column, a file name, an external program's message. So
//! every text the engine writes (logs, errors, rule reasons, run and quality reports,
//! lineage events, API answers) passes [`scrub`]: anything shaped like a Finnish personal
//! identity code (`DDMMYY`, a century sign, three digits, a check character) is replaced
//! by its keyed pseudonym, the same one the run writes into its data, so the text stays
//! useful for following up one row while it names no one. Before a key is known (e.g. in
//! `valtava check`), the code is replaced by a fixed marker.

use std::borrow::Cow;
use std::io::Write;
use std::sync::{LazyLock, RwLock};

use regex::Regex;

/// What stands for an identity code when no pseudonymisation key is known.
pub const MARKER: &str = "[henkilötunnus]";

/// Identity-code shaped: six digits, a century sign, three digits, a check character,
/// not inside a longer word or number.
static SHAPE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i-u)\b[0-9]{6}[-+A-FU-Y][0-9]{3}[0-9A-Y]\b").expect("the pattern is valid")
});

static KEY: RwLock<Option<Vec<u8>>> = RwLock::new(None);

/// Sets the pseudonymisation key the scrubber uses from now on (the run's or the daemon's).
pub fn set_key(key: &[u8]) {
    if let Ok(mut k) = KEY.write() {
        *k = Some(key.to_vec());
    }
}

/// `text` with every identity-code shaped substring replaced by its pseudonym.
pub fn scrub(text: &str) -> Cow<'_, str> {
    if !SHAPE.is_match(text) {
        return Cow::Borrowed(text);
    }
    let key = KEY.read().ok().and_then(|k| k.clone());
    SHAPE.replace_all(text, |c: &regex::Captures<'_>| match &key {
        Some(k) => format!("pseudonym:{}", crate::functions::pseudonym(k, &c[0])),
        None => MARKER.to_string(),
    })
}

/// [`scrub`] into an owned string.
pub fn scrubbed(text: impl AsRef<str>) -> String {
    scrub(text.as_ref()).into_owned()
}

/// A JSON value with every string in it scrubbed (keys too).
pub fn scrub_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            if let Cow::Owned(o) = scrub(s) {
                *s = o;
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(scrub_json),
        serde_json::Value::Object(o) => {
            let owned: Vec<(String, serde_json::Value)> = std::mem::take(o).into_iter().collect();
            for (k, mut v) in owned {
                scrub_json(&mut v);
                o.insert(scrubbed(&k), v);
            }
        }
        _ => {}
    }
}

/// A log writer that scrubs what goes through it: the log subscriber formats each event
/// into one buffer and writes it at once, so an identity code is never split between two
/// writes.
pub struct Scrubbing<W>(pub W);

impl<W: Write> Write for Scrubbing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(s) => self.0.write_all(scrub(s).as_bytes())?,
            Err(_) => self
                .0
                .write_all(scrub(&String::from_utf8_lossy(buf)).as_bytes())?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Standard error through the scrubber, for the log subscriber.
pub fn stderr() -> Scrubbing<std::io::Stderr> {
    Scrubbing(std::io::stderr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_of_every_century_are_replaced_and_other_numbers_kept() {
        for code in [
            "131052-308T",
            "010101A123N",
            "311299+9999",
            "020202Y002B",
            "150350u1234",
        ] {
            let text = format!("row 3: `{code}` is not valid; 12345678901 and 2025-03 stay");
            let out = scrub(&text);
            assert!(!out.contains(code), "{out}");
            assert!(out.contains("12345678901 and 2025-03 stay"), "{out}");
        }
        // Not shaped like a code: a longer number, a date, a word around it.
        for keep in ["1310523308T1", "x131052-308T", "2025-03-05", "131052-30"] {
            assert_eq!(scrub(keep), keep);
        }
    }

    #[test]
    fn with_a_key_the_code_becomes_its_pseudonym() {
        // The key is process-wide; this is the only test that sets it.
        set_key(b"test-key");
        let out = scrub("kunta 091, hetu 131052-308T.");
        let p = crate::functions::pseudonym(b"test-key", "131052-308T");
        assert_eq!(out, format!("kunta 091, hetu pseudonym:{p}."));
    }

    #[test]
    fn json_strings_and_keys_are_scrubbed() {
        let mut v = serde_json::json!({"error": "bad 131052-308T", "131052-308T": [1, "a"]});
        scrub_json(&mut v);
        let text = v.to_string();
        assert!(!text.contains("131052-308T"), "{text}");
    }

    #[test]
    fn the_log_writer_scrubs_each_write() {
        let mut w = Scrubbing(Vec::new());
        w.write_all(b"ERROR object a.csv: 131052-308T\n").unwrap();
        let out = String::from_utf8(w.0).unwrap();
        assert!(!out.contains("131052-308T") && out.starts_with("ERROR object a.csv: "));
    }
}
