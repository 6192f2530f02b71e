//! The engine's house, checked: its layers import only downwards, no source file is over
//! 800 lines and no function outside tests over 80 (ARCHITECTURE.md). Read from the source
//! text, so a change that breaks the shape fails here with the place, not in a review.

use super::*;

/// The engine's top-level modules, lowest layer first; a module may use those before it.
const LAYERS: &[&[&str]] = &[
    &["diag", "functions", "store", "parsers"],
    &["redact"],
    &["line"],
    &["plan"],
    &["steps"],
    &["publish"],
    &["run"],
    &["artefacts"],
    &["serve"],
    &["cli"],
];

/// Uses against the layers, each with its reason. The one left: a rule kind is one file
/// under `steps/validate/rules/` — its wire type and what it does — so the line model
/// names the rules' wire types there (ARCHITECTURE.md, "Layers").
const EXCEPTIONS: &[(&str, &str)] = &[("line", "steps")];

/// Functions over 80 lines that stay, and why. None today.
const LONG_FUNCTIONS: &[&str] = &[];

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                out.push((p, text));
            }
        }
    }
    out.sort();
    out
}

/// A file's code: without its inline test module, comment lines blanked (so line numbers
/// stay); `None` for a file of tests (`tests.rs`, `*_tests.rs`, or `testing.rs`: helpers
/// shared by test modules).
fn code_of(path: &Path, text: &str) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if name == "tests.rs" || name == "testing.rs" || name.ends_with("_tests.rs") {
        return None;
    }
    let mut end = text.len();
    for (i, _) in text.match_indices("#[cfg(test)]\nmod ") {
        let line = text[i..].lines().nth(1).unwrap_or("");
        if line.trim_end().ends_with('{') {
            end = i;
            break;
        }
    }
    Some(
        text[..end]
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("//") {
                    ""
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

#[test]
fn layers_import_only_downwards() {
    let src = root().join("engine/src");
    let mut wrong = Vec::new();
    for (path, text) in sources(&src) {
        let rel = path.strip_prefix(&src).unwrap();
        let top = rel
            .iter()
            .next()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(".rs");
        let Some(mine) = layer_of(top) else {
            assert!(
                ["lib", "main"].contains(&top),
                "{}: module `{top}` is in no layer of LAYERS",
                rel.display()
            );
            continue;
        };
        let Some(code) = code_of(&path, &text) else {
            continue;
        };
        for (i, _) in code.match_indices("crate::") {
            let used: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let Some(theirs) = layer_of(&used) else {
                continue;
            };
            if theirs > mine && !EXCEPTIONS.contains(&(top, used.as_str())) {
                wrong.push(format!("{} uses crate::{used}", rel.display()));
            }
        }
    }
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "uses of a higher layer:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_file_over_800_lines_and_no_function_over_80() {
    let mut big = Vec::new();
    for dir in ["engine/src", "plugins"] {
        for (path, text) in sources(&root().join(dir)) {
            let rel = path.strip_prefix(root()).unwrap().display().to_string();
            let lines = text.lines().count();
            if lines > 800 {
                big.push(format!("{rel}: {lines} lines"));
            }
            let Some(code) = code_of(&path, &text) else {
                continue;
            };
            for (name, start, len) in long_functions(&code) {
                if !LONG_FUNCTIONS.contains(&name.as_str()) {
                    big.push(format!("{rel}:{start}: fn {name} has {len} lines"));
                }
            }
        }
    }
    assert!(big.is_empty(), "too long:\n{}", big.join("\n"));
}

/// Functions of more than 80 lines (rustfmt layout: from the `fn` line to the closing brace
/// at the same indentation): name, first line, length.
fn long_functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        let indent = &l[..l.len() - t.len()];
        let t = ["pub(crate) ", "pub(super) ", "pub "]
            .iter()
            .fold(t, |t, p| t.strip_prefix(p).unwrap_or(t));
        let t = ["async ", "const ", "unsafe "]
            .iter()
            .fold(t, |t, p| t.strip_prefix(p).unwrap_or(t));
        let Some(rest) = t.strip_prefix("fn ") else {
            continue;
        };
        if l.trim_end().ends_with(';') {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = format!("{indent}}}");
        if let Some(end) = lines[i..].iter().position(|x| *x == close)
            && end + 1 > 80
        {
            out.push((name, i + 1, end + 1));
        }
    }
    out
}
