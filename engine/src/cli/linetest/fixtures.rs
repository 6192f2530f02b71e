//! Fixture rows of a test written as objects of the source's own format, so that a line
//! test goes through the same parser as a submission: CSV with the source's delimiter,
//! NDJSON for `ndjson`/`fhir`, a workbook for `xlsx` (the named sheet, the header on its
//! row, every value a text cell, as a submitter's spreadsheet may hold Finnish number
//! text), and for `cda` one document per row built from the source's field paths (each
//! path's elements created once, a predicate's element with the value it asks for), so a
//! test row `{ vastaanotettu: "20250417" }` becomes the entry the path
//! `…/observation[code/@code='vastaanotettu']/value/@value` reads.

use std::path::Path;

use crate::line::spec::SourceSpec;

use super::text;

/// Writes fixture rows of a source in its format; returns the store-relative path (a
/// folder's pattern for one document per row).
pub(super) fn fixture(
    dir: &Path,
    step: &str,
    src: &SourceSpec,
    rows: &[serde_json::Value],
) -> Result<String, String> {
    let folder = dir.join("fixtures").join(step);
    std::fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
    let option = |name: &str| {
        src.options
            .as_ref()
            .and_then(|o| o.value.get(name).cloned())
    };
    let names: Vec<&str> = src.columns.keys().map(|k| k.value.as_str()).collect();
    let value = |r: &serde_json::Value, n: &str| r.get(n).map(text).unwrap_or_default();
    let write = |file: &str, bytes: Vec<u8>| -> Result<String, String> {
        std::fs::write(folder.join(file), bytes).map_err(|e| e.to_string())?;
        Ok(format!("fixtures/{step}/{file}"))
    };
    match src.format.value.as_str() {
        "csv" => {
            let delimiter = option("delimiter")
                .and_then(|d| d.as_str().and_then(|d| d.chars().next()))
                .unwrap_or(',');
            let sep = delimiter.to_string();
            let mut out = names.join(&sep);
            out.push('\n');
            for r in rows {
                let fields: Vec<String> = (names.iter())
                    .map(|n| csv_field(&value(r, n), delimiter))
                    .collect();
                out.push_str(&fields.join(&sep));
                out.push('\n');
            }
            write("fixture.csv", out.into_bytes())
        }
        "ndjson" | "fhir" => {
            let out: String = rows.iter().map(|r| format!("{r}\n")).collect();
            write("fixture.ndjson", out.into_bytes())
        }
        "xlsx" => {
            let sheet = option("sheet").and_then(|s| s.as_str().map(String::from));
            let header = option("header_row").and_then(|h| h.as_u64()).unwrap_or(1);
            let cells: Vec<Vec<String>> = (rows.iter())
                .map(|r| names.iter().map(|n| value(r, n)).collect())
                .collect();
            write(
                "fixture.xlsx",
                workbook(sheet.as_deref(), header, &names, &cells)?,
            )
        }
        "cda" => {
            let fields = option("fields").unwrap_or_default();
            for (i, r) in rows.iter().enumerate() {
                let doc = cda_document(&fields, |n| Some(value(r, n)).filter(|v| !v.is_empty()))?;
                std::fs::write(folder.join(format!("{:06}.xml", i + 1)), doc)
                    .map_err(|e| e.to_string())?;
            }
            Ok(format!("fixtures/{step}/*.xml"))
        }
        other => Err(format!(
            "fixtures for `{other}` sources are not supported; give csv, ndjson, fhir, xlsx or cda rows"
        )),
    }
}

fn csv_field(s: &str, delimiter: char) -> String {
    if s.contains(delimiter) || s.contains('"') || s.contains('\n') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A workbook whose `sheet` (default `Sheet1`) holds the column names on row `header` and
/// the rows below it, every value a text cell.
fn workbook(
    sheet: Option<&str>,
    header: u64,
    names: &[&str],
    rows: &[Vec<String>],
) -> Result<Vec<u8>, String> {
    let err = |e: rust_xlsxwriter::XlsxError| format!("writing the workbook fixture: {e}");
    let mut book = rust_xlsxwriter::Workbook::new();
    let ws = book.add_worksheet();
    ws.set_name(sheet.unwrap_or("Sheet1")).map_err(err)?;
    let first = header.saturating_sub(1) as u32;
    for (c, n) in names.iter().enumerate() {
        ws.write_string(first, c as u16, *n).map_err(err)?;
    }
    for (r, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate().filter(|(_, v)| !v.is_empty()) {
            ws.write_string(first + 1 + r as u32, c as u16, v)
                .map_err(err)?;
        }
    }
    book.save_to_buffer().map_err(err)
}

/// An element of a fixture document: a step's name and predicate identify it among its
/// parent's children.
#[derive(Default)]
struct Element {
    name: String,
    predicate: Option<(String, String)>,
    attributes: Vec<(String, String)>,
    text: Option<String>,
    children: Vec<Element>,
}

impl Element {
    /// The child for `name[predicate]`, made (with the predicate's own value) if missing.
    fn child(&mut self, name: &str, predicate: Option<(String, String)>) -> &mut Element {
        let at = self
            .children
            .iter()
            .position(|c| c.name == name && c.predicate == predicate);
        let at = at.unwrap_or_else(|| {
            let mut e = Element {
                name: name.into(),
                ..Default::default()
            };
            if let Some((rel, literal)) = &predicate {
                e.set(rel, literal);
            }
            e.predicate = predicate;
            self.children.push(e);
            self.children.len() - 1
        });
        &mut self.children[at]
    }

    /// Sets the value a relative path (`a/b/@c`, `@c`, `a/b`) reads, making its elements.
    fn set(&mut self, rel: &str, value: &str) {
        let mut at = self;
        for step in rel.split('/') {
            if let Some(attr) = step.strip_prefix('@') {
                at.attributes.push((attr.into(), value.into()));
                return;
            }
            at = at.child(step, None);
        }
        at.text = Some(value.into());
    }

    fn write(&self, out: &mut String) {
        use quick_xml::escape::escape;
        out.push('<');
        out.push_str(&self.name);
        for (k, v) in &self.attributes {
            out.push_str(&format!(" {k}=\"{}\"", escape(v.as_str())));
        }
        if self.children.is_empty() && self.text.is_none() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        if let Some(t) = &self.text {
            out.push_str(&escape(t.as_str()));
        }
        self.children.iter().for_each(|c| c.write(out));
        out.push_str(&format!("</{}>", self.name));
    }
}

/// One step of a header path: an element name with its predicate (`[rel='literal']`).
fn step(s: &str) -> Result<(String, Option<(String, String)>), String> {
    let Some((name, rest)) = s.split_once('[') else {
        return Ok((s.to_string(), None));
    };
    let inner = rest
        .strip_suffix(']')
        .ok_or_else(|| format!("`{s}`: no closing `]`"))?;
    let (rel, literal) = inner
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: a predicate is `[path='value']`"))?;
    let literal = literal.trim();
    let quoted = |q: char| literal.strip_prefix(q).and_then(|l| l.strip_suffix(q));
    let literal = quoted('\'')
        .or_else(|| quoted('"'))
        .ok_or_else(|| format!("`{s}`: quote the value"))?;
    Ok((
        name.to_string(),
        Some((rel.trim().to_string(), literal.to_string())),
    ))
}

/// Splits a path at the `/`s outside predicates.
fn steps(path: &str) -> Vec<&str> {
    let (mut out, mut start, mut depth) = (Vec::new(), 0, 0usize);
    for (i, c) in path.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '/' if depth == 0 => {
                out.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&path[start..]);
    out
}

/// A CDA document holding `value(column)` where each header field path reads it.
fn cda_document(
    fields: &serde_json::Value,
    value: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut root = Element {
        name: "ClinicalDocument".into(),
        ..Default::default()
    };
    root.attributes
        .push(("xmlns".into(), "urn:hl7-org:v3".into()));
    for (column, path) in fields.as_object().into_iter().flatten() {
        let path = path.as_str().unwrap_or_default();
        let Some(path) = path.strip_prefix('/') else {
            return Err(format!(
                "fixtures for `cda` sources are documents of header fields; `{column}` reads from entries"
            ));
        };
        let Some(v) = value(column) else { continue };
        let parts = steps(path);
        let (last, elements) = parts.split_last().ok_or("an empty field path")?;
        let mut at = &mut root;
        for s in elements {
            let (name, predicate) = step(s)?;
            at = at.child(&name, predicate);
        }
        match last.strip_prefix('@') {
            Some(attr) => at.attributes.push((attr.into(), v)),
            None => {
                let (name, predicate) = step(last)?;
                at.child(&name, predicate).text = Some(v);
            }
        }
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    root.write(&mut out);
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_holds_each_field_where_its_path_reads_it() {
        let fields = serde_json::json!({
            "laji": "/code/@code",
            "hetu": "/recordTarget/patientRole/id[@root='1.2.246.21']/@extension",
            "kunta": "/component/structuredBody/component/section/entry/observation[code/@code='kunta']/value/@code",
            "pvm": "/component/structuredBody/component/section/entry/observation[code/@code='pvm']/value/@value",
            "nimi": "/title"
        });
        let doc = cda_document(&fields, |c| (c != "nimi").then(|| format!("<{c}>"))).unwrap();
        assert!(doc.contains(r#"<code code="&lt;laji&gt;"/>"#), "{doc}");
        assert!(
            doc.contains(r#"<id root="1.2.246.21" extension="&lt;hetu&gt;"/>"#),
            "{doc}"
        );
        // Two observations under one entry path, each with its own code and value.
        assert!(
            doc.contains(r#"<observation><code code="kunta"/><value code="&lt;kunta&gt;"/></observation><observation><code code="pvm"/><value value="&lt;pvm&gt;"/></observation>"#),
            "{doc}"
        );
        assert!(!doc.contains("title"), "{doc}");
        let entries = serde_json::json!({ "x": "value/@value" });
        assert!(cda_document(&entries, |_| Some("1".into())).is_err());
    }
}
