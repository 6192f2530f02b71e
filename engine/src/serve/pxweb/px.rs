//! PX files (PC-Axis; the PX file format of Statistics Sweden, AXIS-VERSION 2013), in
//! UTF-8 (`CODEPAGE="utf-8"`).
//!
//! The period and the dimensions are the stub, the contents variable the heading and the
//! `CONTVARIABLE`, so units, precision, update time and contact are given per measure.
//! Each variable has its labels (`VALUES`), codes (`CODES`) and code (`VARIABLECODE`); the
//! periods have `TIMEVAL` when they are all years, half-years (`H1`, `20251`), quarters or
//! months. `DATA` holds one record per stub row; a cell without a figure is its symbol in
//! quotes (`".."` suppressed, `"..."` not in the period's release, `"."` no figure), which
//! `NOTE` explains. Texts lose what the format cannot hold (`"` and `;`), and no line is longer
//! than [`LINE`] characters (the format allows 256).

use crate::serve::pxweb::metadata::legend;
use crate::serve::pxweb::model::{Cell, Model, Variable};
use crate::serve::pxweb::output::cell_text;

/// The longest line written.
const LINE: usize = 200;

/// The table as a PX file.
pub(super) fn write(model: &Model, selection: &[Vec<usize>], cells: &[Cell]) -> String {
    let mut out = String::new();
    let (stub, heading) = selection.split_at(selection.len().saturating_sub(1));
    let names: Vec<String> = model.variables.iter().map(|v| clean(&v.label)).collect();
    let decimals: Vec<u32> = (heading.iter().flatten())
        .map(|&m| model.measures[m].decimals)
        .collect();
    let shown = decimals.iter().copied().min().unwrap_or(0);
    quoted(&mut out, "AXIS-VERSION", &["2013".to_string()]);
    quoted(&mut out, "CODEPAGE", &["utf-8".to_string()]);
    quoted(&mut out, "LANGUAGE", &[model.lang.code().to_string()]);
    let most = decimals.iter().copied().max().unwrap_or(0);
    bare(&mut out, "DECIMALS", &most.to_string());
    bare(&mut out, "SHOWDECIMALS", &shown.to_string());
    quoted(&mut out, "MATRIX", std::slice::from_ref(&model.id));
    quoted(&mut out, "SUBJECT-CODE", std::slice::from_ref(&model.line));
    quoted(&mut out, "SUBJECT-AREA", std::slice::from_ref(&model.title));
    quoted(&mut out, "TITLE", std::slice::from_ref(&model.label));
    quoted(&mut out, "CONTENTS", std::slice::from_ref(&model.label));
    quoted(&mut out, "STUB", &names[..stub.len()]);
    quoted(&mut out, "HEADING", &names[stub.len()..]);
    quoted(&mut out, "CONTVARIABLE", &names[stub.len()..]);
    let chosen = || model.variables.iter().zip(selection).zip(&names);
    for ((v, s), name) in chosen() {
        quoted(&mut out, &format!("VALUES(\"{name}\")"), &texts(v, s));
    }
    if let Some((unit, periods)) = stub.first().and_then(|s| timeval(&model.variables[0], s)) {
        let head = format!("TIMEVAL(\"{}\")=TLIST({unit}),", names[0]);
        list(&mut out, &head, &periods);
    }
    for ((v, s), name) in chosen() {
        let codes: Vec<String> = s.iter().map(|&i| v.values[i].clone()).collect();
        quoted(&mut out, &format!("CODES(\"{name}\")"), &codes);
    }
    for ((v, _), name) in chosen() {
        quoted(
            &mut out,
            &format!("VARIABLECODE(\"{name}\")"),
            std::slice::from_ref(&v.code),
        );
    }
    contents(&mut out, model, heading, &names, shown);
    if let Some(source) = &model.source {
        quoted(&mut out, "SOURCE", std::slice::from_ref(source));
    }
    quoted(&mut out, "NOTE", &[legend(model.lang, true).join("#")]);
    data(&mut out, cells, heading.first().map_or(0, Vec::len));
    out
}

/// The keywords given per measure: `PRECISION` of those with more decimals than shown,
/// `UNITS`, `LAST-UPDATED` and `CONTACT`.
fn contents(out: &mut String, model: &Model, heading: &[Vec<usize>], names: &[String], shown: u32) {
    let (Some(measures), Some(contvar)) = (heading.first(), names.last()) else {
        return;
    };
    let labels = texts(model.contents(), measures);
    let updated = (model.updated.as_deref())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y%m%d %H:%M")
                .to_string()
        });
    for (&m, label) in measures.iter().zip(&labels) {
        let d = model.measures[m].decimals;
        if d > shown {
            bare(
                out,
                &format!("PRECISION(\"{contvar}\",\"{label}\")"),
                &d.to_string(),
            );
        }
    }
    for (&m, label) in measures.iter().zip(&labels) {
        let unit = model.measures[m].unit.clone().unwrap_or_default();
        quoted(out, &format!("UNITS(\"{label}\")"), &[unit]);
        if let Some(t) = &updated {
            quoted(
                out,
                &format!("LAST-UPDATED(\"{label}\")"),
                std::slice::from_ref(t),
            );
        }
        if let Some(c) = &model.contact {
            quoted(
                out,
                &format!("CONTACT(\"{label}\")"),
                std::slice::from_ref(c),
            );
        }
    }
}

/// The labels of a variable's chosen codes, cleaned and each different (a label two codes
/// share gets its code).
fn texts(v: &Variable, chosen: &[usize]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    chosen
        .iter()
        .map(|&i| {
            let t = clean(&v.texts[i]);
            if seen.insert(t.clone()) {
                t
            } else {
                let t = format!("{t} ({})", clean(&v.values[i]));
                seen.insert(t.clone());
                t
            }
        })
        .collect()
}

/// The `TIMEVAL` of the chosen periods: `A1` (years, `2025`), `Q1` (quarters, `2025-Q1` →
/// `20251`) or `M1` (months, `2025-03` → `202503`), when all are of one kind.
fn timeval(v: &Variable, chosen: &[usize]) -> Option<(&'static str, Vec<String>)> {
    let mut unit = None;
    let mut out = Vec::new();
    for &i in chosen {
        let (u, t) = time_of(&v.values[i])?;
        if unit.is_some_and(|x| x != u) {
            return None;
        }
        unit = Some(u);
        out.push(t);
    }
    unit.map(|u| (u, out))
}

/// A period's `TIMEVAL` unit and value.
fn time_of(period: &str) -> Option<(&'static str, String)> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let year = period.get(..4).filter(|y| digits(y))?;
    let rest = &period[4..];
    if rest.is_empty() {
        return Some(("A1", year.to_string()));
    }
    if let Some(q) = rest.strip_prefix("-Q")
        && matches!(q, "1" | "2" | "3" | "4")
    {
        return Some(("Q1", format!("{year}{q}")));
    }
    if let Some(h) = rest.strip_prefix("-H")
        && matches!(h, "1" | "2")
    {
        return Some(("H1", format!("{year}{h}")));
    }
    let month = rest
        .strip_prefix('-')
        .filter(|m| m.len() == 2 && digits(m))?;
    matches!(month.parse::<u8>(), Ok(1..=12)).then(|| ("M1", format!("{year}{month}")))
}

/// A text as the format can hold it: no `"` (a value's delimiter), no `;` (a keyword's
/// end), no line breaks.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            ';' => ',',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// `KEYWORD=value;` unquoted (numbers).
fn bare(out: &mut String, head: &str, value: &str) {
    out.push_str(head);
    out.push('=');
    out.push_str(value);
    out.push_str(";\n");
}

/// `KEYWORD="a","b",…;` with the values cleaned.
fn quoted(out: &mut String, head: &str, values: &[String]) {
    let values: Vec<String> = values.iter().map(String::as_str).map(clean).collect();
    list(out, &format!("{head}="), &values);
}

/// `head"a","b",…;`: values quoted, a line broken after a comma before it grows past
/// [`LINE`], a text longer than a line split into quoted parts on lines of their own
/// (which readers join).
fn list(out: &mut String, head: &str, values: &[String]) {
    out.push_str(head);
    let mut width = head.chars().count();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
            width += 1;
        }
        let chars: Vec<char> = v.chars().collect();
        let parts: Vec<String> = if chars.is_empty() {
            vec![String::new()]
        } else {
            chars.chunks(LINE - 2).map(|c| c.iter().collect()).collect()
        };
        for (j, part) in parts.iter().enumerate() {
            let piece = part.chars().count() + 2;
            if j > 0 || (i > 0 && width + piece > LINE) {
                out.push('\n');
                width = 0;
            }
            out.push('"');
            out.push_str(part);
            out.push('"');
            width += piece;
        }
    }
    out.push_str(";\n");
}

/// `DATA=`: one record per stub row, `per_row` cells each, separated by spaces; symbols
/// in quotes.
fn data(out: &mut String, cells: &[Cell], per_row: usize) {
    out.push_str("DATA=\n");
    for row in cells.chunks(per_row.max(1)) {
        let mut width = 0;
        for c in row {
            let text = match c.symbol() {
                Some(s) => format!("\"{s}\""),
                None => cell_text(*c),
            };
            if width > 0 && width + text.len() + 1 > LINE {
                out.push('\n');
                width = 0;
            }
            out.push_str(&text);
            out.push(' ');
            width += text.len() + 1;
        }
        out.push('\n');
    }
    out.push_str(";\n");
}

#[cfg(test)]
mod tests;
