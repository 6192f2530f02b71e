//! Diagnostics: every problem found in a line file, with a stable code and its place.
//!
//! Codes are stable: tools and documentation refer to them. They are grouped by range:
//! `V0xx` the file's form (YAML, keys, types), `V1xx` the line's structure (steps, inputs,
//! names), `V2xx` expressions and columns, `V3xx` parameters and code sets.

use std::fmt::Write as _;

use serde::Serialize;

/// A place in a line file: 1-based line and column, and the byte offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
    pub offset: usize,
}

/// A stable diagnostic code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Code {
    /// The file is not valid YAML.
    V001,
    /// A key that this place does not know.
    V002,
    /// A value of the wrong type or form.
    V003,
    /// A required key is missing.
    V004,
    /// A key is given twice in one map.
    V005,
    /// The line file cannot be read.
    V006,
    /// A step gives no kind, or more than one.
    V101,
    /// A step names an input that is not a step.
    V102,
    /// The steps form a cycle.
    V103,
    /// A name is used twice (rule ids, output columns).
    V104,
    /// A step is of a kind that cannot be an input here (e.g. reading a publish step).
    V105,
    /// An unknown source format.
    V106,
    /// Invalid parser options.
    V107,
    /// An invalid name (line, dataset).
    V108,
    /// A time zone that the tz database does not know (`timezone`).
    V109,
    /// A source gives both forms (`format`/`location` and `release`), or neither.
    V110,
    /// A release source reads a dataset that no line checked with it publishes (a warning
    /// when one file is checked alone: its publisher may be elsewhere).
    V111,
    /// Lines read each other's datasets in a cycle, or a line reads its own dataset of the
    /// run's period (`periods: current` or `all`).
    V112,
    /// An expression names a column the input does not have.
    V201,
    /// An expression's types do not fit together.
    V202,
    /// An expression is not valid SQL.
    V203,
    /// A measure is not an aggregate (or an aggregate is used where it cannot be).
    V204,
    /// Any other planning error of an expression or query.
    V205,
    /// A personal column would be published unaggregated.
    V206,
    /// A column handled as an identity code (a `hetu` rule, `pseudonymise`) is not declared
    /// `personal`, so nothing would protect it.
    V207,
    /// A published column has a name a served table gives a column of its own: the period
    /// `jakso`, a measure's status `status_<measure>`, or `tiedot`, the dimension of the
    /// measures.
    V208,
    /// A column's `format` does not fit its type (`finnish` is for `decimal` and `integer`,
    /// `hl7` for `date` and `timestamp`, neither for a `local` column).
    V209,
    /// Disclosure control is switched off (`disclosure: { off: … }`) for a dataset that
    /// derives from personal columns or counts persons: its small counts could recognise one.
    V210,
    /// An unknown parameter.
    V301,
    /// A parameter value of the wrong form.
    V302,
    /// An unknown code set.
    V303,
    /// A code set cannot be read or lacks a column.
    V304,
    /// A code set is not the pinned version or file.
    V305,
    /// A location names a part of a parameter (`{period.months}`, `{period.quarters}`)
    /// that the parameter's kind does not have (an error), or that is the value itself or
    /// that only some of its values have (a warning).
    V306,
    /// A release source's `periods` that the line's `period` parameter cannot give: any but
    /// `all` without a period parameter, `sub` of a month.
    V307,
    /// A working-day calendar that cannot be used: `working_days` in a line without
    /// `calendar:`, or holidays whose keys are not ISO dates.
    V308,
}

impl Code {
    /// A short name of the code, for people.
    pub fn name(self) -> &'static str {
        match self {
            Code::V001 => "yaml-syntax",
            Code::V002 => "unknown-key",
            Code::V003 => "wrong-type",
            Code::V004 => "missing-key",
            Code::V005 => "duplicate-key",
            Code::V006 => "unreadable-file",
            Code::V101 => "step-kind",
            Code::V102 => "unknown-input",
            Code::V103 => "cycle",
            Code::V104 => "duplicate-name",
            Code::V105 => "bad-input-kind",
            Code::V106 => "unknown-format",
            Code::V107 => "bad-options",
            Code::V108 => "bad-name",
            Code::V109 => "unknown-timezone",
            Code::V110 => "source-form",
            Code::V111 => "unknown-dataset",
            Code::V112 => "line-cycle",
            Code::V201 => "unknown-column",
            Code::V202 => "type-mismatch",
            Code::V203 => "expression-syntax",
            Code::V204 => "not-aggregate",
            Code::V205 => "plan-error",
            Code::V206 => "personal-published",
            Code::V207 => "undeclared-personal",
            Code::V208 => "reserved-column",
            Code::V209 => "column-format",
            Code::V210 => "disclosure-off-personal",
            Code::V301 => "unknown-parameter",
            Code::V302 => "bad-parameter-value",
            Code::V303 => "unknown-codeset",
            Code::V304 => "bad-codeset",
            Code::V305 => "codeset-changed",
            Code::V306 => "period-part",
            Code::V307 => "release-periods",
            Code::V308 => "calendar",
        }
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warning,
}

/// One problem in a line file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub code: Code,
    pub name: &'static str,
    pub level: Level,
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(code: Code, file: &str, at: Pos, message: impl Into<String>) -> Self {
        Self {
            code,
            name: code.name(),
            level: Level::Error,
            file: file.to_string(),
            line: at.line.max(1),
            col: at.col.max(1),
            message: message.into(),
            hint: None,
        }
    }

    pub fn warning(code: Code, file: &str, at: Pos, message: impl Into<String>) -> Self {
        Self {
            level: Level::Warning,
            ..Self::error(code, file, at, message)
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Renders for a terminal: the place, the message, the source line with a caret.
    pub fn render(&self, source: Option<&str>) -> String {
        let mut out = String::new();
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        let _ = writeln!(
            out,
            "{level}[{:?}/{}]: {}",
            self.code, self.name, self.message
        );
        let _ = writeln!(out, "  --> {}:{}:{}", self.file, self.line, self.col);
        if let Some(text) = source.and_then(|s| s.lines().nth(self.line as usize - 1)) {
            let num = self.line.to_string();
            let pad = " ".repeat(num.len());
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{num} | {text}");
            // Columns count characters; tabs keep their width under the caret.
            let lead: String = text
                .chars()
                .take(self.col as usize - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let _ = writeln!(out, "{pad} | {lead}^");
        }
        if let Some(h) = &self.hint {
            let _ = writeln!(out, "  = help: {h}");
        }
        out
    }
}

/// The place of `needle` inside a value written at `at` in `text` (the file's text):
/// inside a quoted scalar the value starts after the quote. Without `needle`, or when it
/// is not found on that line, the start of the value.
pub fn locate_in(text: &str, at: Pos, needle: &str) -> Pos {
    let mut at = at;
    let Some(line) = text.lines().nth(at.line.saturating_sub(1) as usize) else {
        return at;
    };
    let start = line
        .char_indices()
        .nth(at.col.saturating_sub(1) as usize)
        .map_or(line.len(), |(i, _)| i);
    let rest = &line[start..];
    let quoted = rest.starts_with('"') || rest.starts_with('\'');
    match rest.find(needle).filter(|_| !needle.is_empty()) {
        Some(i) => at.col += rest[..i].chars().count() as u32,
        None if quoted => at.col += 1,
        None => {}
    }
    at
}

/// The closest candidate to `word`, if it is close enough to be a likely misspelling.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// The closest candidate to `word`, if it is close enough to be a likely misspelling.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(word, c);
        if score > 0.75 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}

/// A suggestion for serde's "unknown field `x`, expected one of `a`, `b`" messages.
pub fn suggest_field(message: &str) -> Option<String> {
    let word = message.strip_prefix("unknown field `")?.split('`').next()?;
    let options: Vec<&str> = message
        .split("expected one of ")
        .nth(1)?
        .split(", ")
        .map(|s| s.trim().trim_matches('`'))
        .collect();
    did_you_mean(word, options)
}

/// Sorts diagnostics by place, then code, and drops exact repeats.
pub fn sort(diags: &mut Vec<Diagnostic>) {
    diags.sort_by(|a, b| {
        (&a.file, a.line, a.col, a.code, &a.message)
            .cmp(&(&b.file, b.line, b.col, b.code, &b.message))
    });
    diags.dedup();
}

/// Run failure codes: stable, documented in the README, matched by line tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunCode {
    /// `R001`: a parameter is unknown, missing or of the wrong form.
    Param,
    /// `R002`: the line pseudonymises or holds personal columns and no key was given.
    Key,
    /// `R003`: a source object could not be read as declared.
    Source,
    /// `R004`: no object matches a source's location.
    NoInput,
    /// `R005`: a rule of severity `fail` was broken.
    RuleFail,
    /// `R006`: a step rejected more than its `max_reject_share`.
    RejectShare,
    /// `R007`: rows are unaccounted for.
    Accounting,
    /// `R008`: writing to the store failed.
    Write,
    /// `R009`: the query engine failed.
    Engine,
    /// `R010`: an object reached a reader limit (`limits:`); it is quarantined whole and
    /// the run goes on. Used in quarantine reasons, not as a run failure.
    Limit,
    /// `R011`: the run took longer than its deadline (`limits.run_minutes`).
    Deadline,
}

impl RunCode {
    /// The code as written in reports, logs and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            RunCode::Param => "R001",
            RunCode::Key => "R002",
            RunCode::Source => "R003",
            RunCode::NoInput => "R004",
            RunCode::RuleFail => "R005",
            RunCode::RejectShare => "R006",
            RunCode::Accounting => "R007",
            RunCode::Write => "R008",
            RunCode::Engine => "R009",
            RunCode::Limit => "R010",
            RunCode::Deadline => "R011",
        }
    }
}

impl std::fmt::Display for RunCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_points_at_the_column() {
        let d = Diagnostic::error(
            Code::V201,
            "l.yaml",
            Pos {
                line: 2,
                col: 9,
                offset: 0,
            },
            "unknown column `kuukasi`",
        )
        .with_hint("did you mean `kuukausi`?");
        let r = d.render(Some("a: 1\nexpr: \"kuukasi > 1\"\n"));
        assert!(r.contains("--> l.yaml:2:9"), "{r}");
        assert!(
            r.contains("2 | expr: \"kuukasi > 1\"\n  |         ^"),
            "{r}"
        );
        assert!(r.contains("help: did you mean `kuukausi`?"));
    }

    #[test]
    fn suggestions_only_when_close() {
        assert_eq!(
            did_you_mean("kuukasi", ["kuukausi", "hetu"]).as_deref(),
            Some("did you mean `kuukausi`?")
        );
        assert_eq!(did_you_mean("zzz", ["kuukausi", "hetu"]), None);
    }
}
