//! `valtava fmt`: one canonical layout for line files, comments kept.
//!
//! Indentation becomes two spaces a level (block scalars keep their inner layout), trailing
//! spaces go, runs of blank lines become one, the file ends in one newline, and the
//! `yaml-language-server` schema comment leads. Formatting never changes what a line means:
//! the result is parsed and compared with the original, and a file whose meaning would
//! change is left alone with an error. Formatting a formatted file changes nothing.

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

/// The canonical layout of a line file's text (not yet checked for meaning).
pub fn layout(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = Vec::new();
    // (original indent, depth, a sequence written at its key's indent)
    let mut stack: Vec<(usize, usize, bool)> = Vec::new();
    let mut opens: Option<usize> = None;
    let mut block: Option<(usize, usize, Option<usize>)> = None; // (owner indent, new base, first inner indent)
    let mut pending_comments: Vec<String> = Vec::new();
    let indent_of = |l: &str| l.len() - l.trim_start_matches(' ').len();
    for raw in &lines {
        let line = raw.trim_end();
        if let Some((owner, base, first)) = block {
            if line.is_empty() {
                out.push(String::new());
                continue;
            }
            let ind = indent_of(line);
            if ind > owner {
                let first = first.unwrap_or(ind);
                block = Some((owner, base, Some(first)));
                out.push(format!(
                    "{}{}",
                    " ".repeat(base + ind.saturating_sub(first)),
                    line.trim_start()
                ));
                continue;
            }
            block = None;
        }
        if line.is_empty() {
            if out.last().is_some_and(|l| !l.is_empty()) || !pending_comments.is_empty() {
                pending_comments.push(String::new());
            }
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') {
            pending_comments.push(trimmed.to_string());
            continue;
        }
        let ind = indent_of(line);
        let dash =
            trimmed.starts_with('-') && (trimmed.len() == 1 || trimmed[1..].starts_with(' '));
        while stack
            .last()
            .is_some_and(|(i, _, seq)| *i > ind || (*i == ind && *seq && !dash))
        {
            stack.pop();
        }
        let depth = match stack.last() {
            // `key:` followed by `- item` at the same indent: the items are its children.
            Some((i, d, false)) if *i == ind && dash && opens == Some(ind) => {
                let d = d + 1;
                stack.push((ind, d, true));
                d
            }
            Some((i, d, _)) if *i == ind => *d,
            Some((_, d, _)) => {
                let d = d + 1;
                stack.push((ind, d, false));
                d
            }
            None => {
                stack.push((ind, 0, false));
                0
            }
        };
        let pad = " ".repeat(depth * 2);
        for c in pending_comments.drain(..) {
            out.push(if c.is_empty() {
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
        out.push(format!("{pad}{text}"));
        if let Some(col) = item_column {
            // The item's own keys stand after the dash: one level deeper.
            stack.push((col, depth + 1, false));
        }
        let code = text.split(" #").next().unwrap_or_default().trim_end();
        opens = code.ends_with(':').then_some(item_column.unwrap_or(ind));
        let trimmed = text.as_str();
        if block_scalar_start(trimmed) {
            // Content of a list item's block scalar sits under the item's text.
            let extra = if trimmed.starts_with("- ") { 2 } else { 0 };
            block = Some((ind, depth * 2 + 2 + extra, None));
        }
    }
    for c in pending_comments.drain(..) {
        out.push(c);
    }
    // One blank line at most, none at either end.
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

fn meaning(file: &str, text: &str) -> Result<serde_json::Value, String> {
    let spec = crate::line::load::parse(file, text)
        .map_err(|d| format!("{}:{}:{}: {}", d.file, d.line, d.col, d.message))?;
    serde_json::to_value(&spec).map_err(|e| e.to_string())
}

/// The formatted text, checked to mean the same as the original.
pub fn format(file: &str, text: &str) -> Result<String, String> {
    let before = meaning(file, text)?;
    let formatted = layout(text);
    let after = meaning(file, &formatted)
        .map_err(|e| format!("formatting would break the file, left alone: {e}"))?;
    if before != after {
        return Err(format!(
            "{file}: formatting would change the line's meaning, left alone"
        ));
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
