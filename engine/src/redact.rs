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

/// Identity-code shaped: six digits, a century sign, three digits, a check character. Where
/// it stands is checked apart ([`standing_alone`]): the regex crate has no look-around.
static SHAPE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i-u)[0-9]{6}[-+A-FU-Y][0-9]{3}[0-9A-Y]").expect("the pattern is valid")
});

/// Whether a match stands alone: not preceded by a digit (it would be the end of a longer
/// number) and not followed by a letter or digit. Letters before it and `_` around it do
/// not shelter it (`lahete_131052-308T.csv`, `x131052-308T`); a pseudonym's 64 hex digits
/// never match, since every 11 of them are followed by another.
fn standing_alone(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_alphanumeric())
}

static KEY: RwLock<Option<Vec<u8>>> = RwLock::new(None);

/// Sets the pseudonymisation key the scrubber uses from now on (the run's or the daemon's).
pub fn set_key(key: &[u8]) {
    if let Ok(mut k) = KEY.write() {
        *k = Some(key.to_vec());
    }
}

/// `text` with every identity-code shaped substring replaced by its pseudonym.
pub fn scrub(text: &str) -> Cow<'_, str> {
    // A match that does not stand alone hides no other that would: a code starting inside
    // it is preceded by one of its digits.
    let mut found = SHAPE
        .find_iter(text)
        .filter(|m| standing_alone(text, m.start(), m.end()));
    let Some(first) = found.next() else {
        return Cow::Borrowed(text);
    };
    let key = KEY.read().ok().and_then(|k| k.clone());
    let mut out = String::with_capacity(text.len() + 64);
    let mut at = 0;
    for m in std::iter::once(first).chain(found) {
        out.push_str(&text[at..m.start()]);
        match &key {
            Some(k) => {
                out.push_str("pseudonym:");
                out.push_str(&crate::functions::pseudonym(k, m.as_str()));
            }
            None => out.push_str(MARKER),
        }
        at = m.end();
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// A query engine's error without the values it quotes: Arrow and DataFusion put the value
/// that failed in single quotes (`Cannot cast string '…' to value of Int32 type`), and a
/// value may be anything a row holds.
pub fn unquoted(text: &str) -> String {
    static QUOTED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"'[^'\n]*'").expect("the pattern is valid"));
    QUOTED.replace_all(text, "'…'").into_owned()
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
        // Not shaped like a code: a longer number, a date, letters after it.
        for keep in [
            "1310523308T1",
            "9131052-308T",
            "131052-308Tx",
            "2025-03-05",
            "131052-30",
        ] {
            assert_eq!(scrub(keep), keep);
        }
        // Letters or `_` before it, and codes side by side, do not shelter it.
        for hide in [
            "lahete_131052-308T.csv",
            "x131052-308T",
            "131052-308T;010101A123N",
        ] {
            let out = scrub(hide);
            assert!(
                !out.contains("131052-308T") && !out.contains("010101A123N"),
                "{out}"
            );
        }
        // A pseudonym is left as it is (scrubbing twice changes nothing).
        let p = crate::functions::pseudonym(b"k", "131052-308T");
        assert_eq!(scrub(&p), p.as_str());
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
    fn engine_errors_lose_the_values_they_quote() {
        let e = "Cast error: Cannot cast string 'x131052-308T' to value of Int32 type";
        assert_eq!(
            unquoted(e),
            "Cast error: Cannot cast string '…' to value of Int32 type"
        );
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
