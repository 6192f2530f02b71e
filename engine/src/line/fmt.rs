//! `valtava fmt`: one canonical layout for line files, comments kept.
//!
//! Indentation becomes two spaces a level (block scalars keep their inner layout), trailing
//! spaces go, runs of blank lines become one, the file ends in one newline, and the
//! `yaml-language-server` schema comment leads. Formatting never changes what a line means:
//! the result is parsed and compared with the original, and a file whose meaning would
//! change is left alone with an error. Formatting a formatted file changes nothing.

use crate::line::LineError;

fn block_scalar_start(content: &str) -> bool {
    let code = match content.find(" #") {
        Some(i) => &content[..i],
        None => content,
    };
    let t = code.trim_end();
    ["|", "|-", "|+", ">", ">-", ">+"]
        .iter()
        .any(|m| t.ends_with(&format!(": {m}")) || t.ends_with(&format!("- {m}")) || t == *m)
}

/// How many spaces a line starts with.
fn indent_of(l: &str) -> usize {
    l.len() - l.trim_start_matches(' ').len()
}

/// The state of the layout while it walks a file's lines.
#[derive(Default)]
struct Layout {
    out: Vec<String>,
    /// (original indent, depth, a sequence written at its key's indent)
    stack: Vec<(usize, usize, bool)>,
    opens: Option<usize>,
    /// (owner indent, new base, first inner indent)
    block: Option<(usize, usize, Option<usize>)>,
    pending_comments: Vec<String>,
}

/// The canonical layout of a line file's text (not yet checked for meaning).
pub fn layout(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let mut state = Layout::default();
    for raw in text.lines() {
        state.line(raw.trim_end());
    }
    let mut out = state.out;
    for c in state.pending_comments.drain(..) {
        out.push(c);
    }
    tidy(out)
}

impl Layout {
    /// Lays out one line, its trailing spaces gone.
    fn line(&mut self, line: &str) {
        if self.block_line(line) {
            return;
        }
        if line.is_empty() {
            if self.out.last().is_some_and(|l| !l.is_empty()) || !self.pending_comments.is_empty() {
                self.pending_comments.push(String::new());
            }
            return;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') {
            self.pending_comments.push(trimmed.to_string());
            return;
        }
        let ind = indent_of(line);
        let dash =
            trimmed.starts_with('-') && (trimmed.len() == 1 || trimmed[1..].starts_with(' '));
        let depth = self.depth(ind, dash);
        let pad = " ".repeat(depth * 2);
        for c in self.pending_comments.drain(..) {
            self.out.push(if c.is_empty() {
                String::new()
            } else {
                format!("{pad}{c}")
            });
        }
        let (text, item_column) = if dash {
            let rest = trimmed[1..].trim_start();
            (
                if rest.is_empty() {
                    "-".to_string()
                } else {
                    format!("- {rest}")
                },
                Some(ind + (trimmed.len() - rest.len())),
            )
        } else {
            (trimmed.to_string(), None)
        };
        self.out.push(format!("{pad}{text}"));
        if let Some(col) = item_column {
            // The item's own keys stand after the dash: one level deeper.
            self.stack.push((col, depth + 1, false));
        }
        let code = text.split(" #").next().unwrap_or_default().trim_end();
        self.opens = code.ends_with(':').then_some(item_column.unwrap_or(ind));
        let trimmed = text.as_str();
        if block_scalar_start(trimmed) {
            // Content of a list item's block scalar sits under the item's text.
            let extra = if trimmed.starts_with("- ") { 2 } else { 0 };
            self.block = Some((ind, depth * 2 + 2 + extra, None));
        }
    }

    /// Whether `line` is inside the open block scalar (and so was copied, re-indented).
    fn block_line(&mut self, line: &str) -> bool {
        if let Some((owner, base, first)) = self.block {
            if line.is_empty() {
                self.out.push(String::new());
                return true;
            }
            let ind = indent_of(line);
            if ind > owner {
                let first = first.unwrap_or(ind);
                self.block = Some((owner, base, Some(first)));
                self.out.push(format!(
                    "{}{}",
                    " ".repeat(base + ind.saturating_sub(first)),
                    line.trim_start()
                ));
                return true;
            }
            self.block = None;
        }
        false
    }

    /// The depth of a line at indent `ind` (`dash`: a list item), closing and opening levels.
    fn depth(&mut self, ind: usize, dash: bool) -> usize {
        while self
            .stack
            .last()
            .is_some_and(|(i, _, seq)| *i > ind || (*i == ind && *seq && !dash))
        {
            self.stack.pop();
        }
        match self.stack.last() {
            // `key:` followed by `- item` at the same indent: the items are its children.
            Some((i, d, false)) if *i == ind && dash && self.opens == Some(ind) => {
                let d = d + 1;
                self.stack.push((ind, d, true));
                d
            }
            Some((i, d, _)) if *i == ind => *d,
            Some((_, d, _)) => {
                let d = d + 1;
                self.stack.push((ind, d, false));
                d
            }
            None => {
                self.stack.push((ind, 0, false));
                0
            }
        }
    }
}

/// One blank line at most, none at either end, the schema comment first; ends in a newline.
fn tidy(out: Vec<String>) -> String {
    let mut tidy: Vec<String> = Vec::new();
    for l in out {
        if l.is_empty() && tidy.last().is_none_or(|p: &String| p.is_empty()) {
            continue;
        }
        tidy.push(l);
    }
    while tidy.last().is_some_and(|l| l.is_empty()) {
        tidy.pop();
    }
    // The schema comment leads.
    if let Some(i) = tidy
        .iter()
        .position(|l| l.trim_start().starts_with("# yaml-language-server:"))
        && (i > 0 || tidy[0].starts_with(' '))
    {
        let c = tidy.remove(i).trim_start().to_string();
        tidy.insert(0, c);
    }
    let mut s = tidy.join("\n");
    s.push('\n');
    s
}

fn meaning(file: &str, text: &str) -> Result<serde_json::Value, LineError> {
    let spec = crate::line::load::parse(file, text).map_err(|d| LineError::Parse(Box::new(d)))?;
    serde_json::to_value(&spec).map_err(LineError::Meaning)
}

/// The formatted text, checked to mean the same as the original.
pub fn format(file: &str, text: &str) -> Result<String, LineError> {
    let before = meaning(file, text)?;
    let formatted = layout(text);
    let after = meaning(file, &formatted).map_err(|e| LineError::WouldBreak(Box::new(e)))?;
    if before != after {
        return Err(LineError::WouldChange {
            file: file.to_string(),
        });
    }
    Ok(formatted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSY: &str = "line: t   \r\ntitle: t\n\n\n# steps below\nsteps:\n    a:\n        # the source\n        source:\n            format: csv\n            location: a.csv\n            columns:\n                x: string\n    v:\n        validate:\n            input: a\n            rules:\n            -   id: r\n                expr: \"x <> ''\"\n    b:\n        sql:\n            inputs: [a]\n            query: |\n                SELECT x\n                  FROM a\n\n\n";

    #[test]
    fn canonical_indentation_keeps_comments_and_block_scalars() {
        let f = format("t.yaml", MESSY).unwrap();
        assert_eq!(
            f,
            "line: t\ntitle: t\n\n# steps below\nsteps:\n  a:\n    # the source\n    source:\n      format: csv\n      location: a.csv\n      columns:\n        x: string\n  v:\n    validate:\n      input: a\n      rules:\n        - id: r\n          expr: \"x <> ''\"\n  b:\n    sql:\n      inputs: [a]\n      query: |\n        SELECT x\n          FROM a\n"
        );
        assert_eq!(format("t.yaml", &f).unwrap(), f, "not idempotent");
    }

    #[test]
    fn a_file_whose_meaning_would_change_is_left_alone() {
        assert!(format("t.yaml", "line: [").is_err());
    }
}
