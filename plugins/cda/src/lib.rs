//! The HL7 CDA R2 source parser of Valtava.
//!
//! Rows come from paths declared in the line. A path that starts with `/` is read from the
//! document's header, below the `ClinicalDocument` root (`/recordTarget/patientRole/id/@extension`,
//! `/custodian/assignedCustodian/representedCustodianOrganization/name`); other paths are
//! read from each *entry* that carries the line's `templateId` (`code/@code`,
//! `value/@value`). Without a template, each document is one row of header fields. A path
//! ends in `@attribute` or, without one, takes the element's text; the first match counts.
//! Namespaces are ignored (local names match).
//!
//! Documents are streamed: the reader keeps only the current element path, the header
//! values it looks for, and the subtree of the clinical statement it is inside
//! (`observation`, `act`, `substanceAdministration`, …) — never the whole document as a tree.
//! A row's number is the line where its entry starts.
//!
//! ```yaml
//! source:
//!   format: cda
//!   location: kanta/cda/*.xml
//!   options:
//!     template: 2.16.840.1.113883.10.20.22.4.27   # vital sign observation
//!     fields:
//!       potilas: /recordTarget/patientRole/id/@extension
//!       koodi: code/@code
//!       arvo: value/@value
//! ```

use std::sync::Arc;

use indexmap::IndexMap;
use quick_xml::events::{BytesStart, Event};
use schemars::JsonSchema;
use serde::Deserialize;
use valtava_plugin::{
    ParseRequest, ParseStream, ParsedBatch, Parser, SourceObject, TextBatchBuilder, typed_options,
};

/// Options of the `cda` format.
#[derive(Debug, Clone, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CdaOptions {
    /// The templateId `root` of the entries that become rows (e.g.
    /// `2.16.840.1.113883.10.20.22.4.27`); without it, one row per document.
    #[serde(default)]
    pub template: Option<String>,
    /// Where each declared column comes from, by column name: `/header/path/@attr` or
    /// `entry/relative/path` (text) .
    pub fields: IndexMap<String, String>,
}

/// Elements that hold one clinical statement: their subtrees are kept while they are open.
const STATEMENTS: &[&str] = &[
    "observation",
    "act",
    "substanceAdministration",
    "supply",
    "procedure",
    "encounter",
    "organizer",
    "observationMedia",
    "regionOfInterest",
];

#[derive(Debug, Clone)]
struct Path {
    absolute: bool,
    steps: Vec<String>,
    attribute: Option<String>,
}

/// What kind of XML error the reader met, without its text (which quotes element names
/// from the document).
fn xml_kind(e: &quick_xml::Error) -> String {
    match e {
        quick_xml::Error::Syntax(s) => s.to_string(),
        quick_xml::Error::IllFormed(_) => "mismatched or unclosed element".into(),
        quick_xml::Error::Encoding(_) => "not valid text in its encoding".into(),
        quick_xml::Error::Io(_) => "read error".into(),
        _ => "malformed".into(),
    }
}

fn compile(p: &str) -> Result<Path, String> {
    let absolute = p.starts_with('/');
    let mut steps: Vec<String> = p
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let attribute = match steps.last() {
        Some(s) if s.starts_with('@') => steps.pop().map(|a| a[1..].to_string()),
        _ => None,
    };
    if steps.is_empty() {
        return Err(format!("path `{p}` names no element"));
    }
    Ok(Path {
        absolute,
        steps,
        attribute,
    })
}

#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<usize>,
    line: u64,
}

fn local(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    s.rsplit(':').next().unwrap_or(&s).to_string()
}

fn attributes(e: &BytesStart) -> Vec<(String, String)> {
    e.attributes()
        .flatten()
        .map(|a| {
            (
                local(a.key.as_ref()),
                a.unescape_value()
                    .map(|v| v.into_owned())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// The value of a relative path in a captured subtree.
fn lookup(arena: &[Node], at: usize, steps: &[String], attribute: Option<&str>) -> Option<String> {
    let node = &arena[at];
    match steps.split_first() {
        None => match attribute {
            Some(a) => node
                .attrs
                .iter()
                .find(|(k, _)| k == a)
                .map(|(_, v)| v.clone()),
            None => Some(node.text.trim().to_string()).filter(|t| !t.is_empty()),
        },
        Some((first, rest)) => node
            .children
            .iter()
            .filter(|&&c| arena[c].name == *first)
            .find_map(|&c| lookup(arena, c, rest, attribute)),
    }
}

struct Frame {
    name: String,
    node: Option<usize>,
}

/// Parses one document into rows of the requested columns.
fn read(
    bytes: &[u8],
    options: &CdaOptions,
    request: &ParseRequest,
) -> Result<Vec<ParsedBatch>, String> {
    let mut paths = Vec::new();
    for c in &request.columns {
        let p = options
            .fields
            .get(c)
            .ok_or_else(|| format!("no path for column `{c}` in `fields`"))?;
        paths.push(compile(p)?);
    }
    let mut header: Vec<Option<String>> = vec![None; paths.len()];
    let mut rows: Vec<(u64, Vec<Option<String>>)> = Vec::new();
    let mut arena: Vec<Node> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut reader = quick_xml::Reader::from_reader(bytes);
    let mut line = 1u64;
    let mut seen = 0usize;
    let mut buf = Vec::new();
    let mut root_seen = false;
    loop {
        let pos = reader.buffer_position() as usize;
        line += bytes[seen.min(bytes.len())..pos.min(bytes.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        seen = pos;
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("line {line}: not well-formed XML ({})", xml_kind(&e)))?;
        let (start, empty) = match &event {
            Event::Start(e) => (Some(e.clone()), false),
            Event::Empty(e) => (Some(e.clone()), true),
            _ => (None, false),
        };
        if let Some(e) = start {
            let name = local(e.name().as_ref());
            if stack.is_empty() {
                if root_seen || name != "ClinicalDocument" {
                    return Err(format!(
                        "line {line}: the root element is not `ClinicalDocument`"
                    ));
                }
                root_seen = true;
            }
            let attrs = attributes(&e);
            // Header fields: the element path below the root.
            let depth_path: Vec<&str> = stack
                .iter()
                .skip(1)
                .map(|f| f.name.as_str())
                .chain(std::iter::once(name.as_str()))
                .collect();
            if !stack.is_empty() {
                for (i, p) in paths.iter().enumerate() {
                    if p.absolute
                        && header[i].is_none()
                        && p.steps
                            .iter()
                            .map(String::as_str)
                            .eq(depth_path.iter().copied())
                        && let Some(a) = &p.attribute
                    {
                        header[i] = attrs.iter().find(|(k, _)| k == a).map(|(_, v)| v.clone());
                    }
                }
            }
            let parent = stack.last().and_then(|f| f.node);
            let node = if parent.is_some() || STATEMENTS.contains(&name.as_str()) {
                arena.push(Node {
                    name: name.clone(),
                    attrs,
                    text: String::new(),
                    children: Vec::new(),
                    line,
                });
                let id = arena.len() - 1;
                if let Some(p) = parent {
                    arena[p].children.push(id);
                }
                Some(id)
            } else {
                None
            };
            stack.push(Frame { name, node });
            if !empty {
                continue;
            }
        }
        match event {
            Event::Text(t) => {
                let text = t.decode().map(|s| s.into_owned()).unwrap_or_default();
                if let Some(Frame { node: Some(n), .. }) = stack.last() {
                    arena[*n].text.push_str(&text);
                }
                let depth_path: Vec<&str> = stack.iter().skip(1).map(|f| f.name.as_str()).collect();
                for (i, p) in paths.iter().enumerate() {
                    if p.absolute
                        && p.attribute.is_none()
                        && header[i].is_none()
                        && p.steps
                            .iter()
                            .map(String::as_str)
                            .eq(depth_path.iter().copied())
                    {
                        let t = text.trim();
                        if !t.is_empty() {
                            header[i] = Some(t.to_string());
                        }
                    }
                }
            }
            Event::End(_) | Event::Empty(_) => {
                let Some(frame) = stack.pop() else { break };
                if let (Some(n), Some(t)) = (frame.node, &options.template) {
                    let matches = STATEMENTS.contains(&arena[n].name.as_str())
                        && arena[n].children.iter().any(|&c| {
                            arena[c].name == "templateId"
                                && arena[c].attrs.iter().any(|(k, v)| k == "root" && v == t)
                        });
                    if matches {
                        let values = paths
                            .iter()
                            .map(|p| {
                                if p.absolute {
                                    None
                                } else {
                                    lookup(&arena, n, &p.steps, p.attribute.as_deref())
                                }
                            })
                            .collect();
                        rows.push((arena[n].line, values));
                    }
                }
                // Outside every statement nothing is kept.
                if stack.last().and_then(|f| f.node).is_none() {
                    arena.clear();
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !root_seen {
        return Err("no ClinicalDocument element".into());
    }
    if options.template.is_none() {
        rows.push((1, vec![None; paths.len()]));
    }
    let mut builder = TextBatchBuilder::new(request.columns.clone());
    for (line, mut values) in rows {
        for (i, p) in paths.iter().enumerate() {
            if p.absolute {
                values[i] = header[i].clone();
            }
        }
        builder.push_row(line, values.iter().map(|v| v.as_deref()));
    }
    Ok(vec![builder.finish().map_err(|e| e.to_string())?])
}

/// The `cda` parser.
#[derive(Debug, Default)]
pub struct CdaParser;

impl Parser for CdaParser {
    fn format(&self) -> &'static str {
        "cda"
    }

    fn options_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<CdaOptions>()
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), String> {
        let o = typed_options::<CdaOptions>(options)?;
        for p in o.fields.values() {
            compile(p)?;
        }
        Ok(())
    }

    fn parse(&self, object: SourceObject, request: ParseRequest) -> ParseStream {
        valtava_plugin::whole_object(object, request, |bytes, request| {
            let options = typed_options::<CdaOptions>(&request.options)?;
            read(&bytes, &options, request)
        })
    }
}

/// The parser as a registry entry.
pub fn parser() -> Arc<dyn Parser> {
    Arc::new(CdaParser)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};

    fn rows(
        file: &str,
        template: Option<&str>,
        fields: &[(&str, &str)],
    ) -> Vec<Vec<Option<String>>> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/ccda-examples")
            .join(file);
        let bytes = std::fs::read(path).unwrap();
        let options = CdaOptions {
            template: template.map(String::from),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let request = ParseRequest {
            columns: fields.iter().map(|(k, _)| k.to_string()).collect(),
            types: vec![],
            options: serde_json::Value::Null,
            batch_size: 1000,
            base_dir: None,
        };
        let parsed = read(&bytes, &options, &request).unwrap();
        let b = &parsed[0].batch;
        (0..b.num_rows())
            .map(|r| {
                (0..fields.len() + 1)
                    .map(|c| {
                        let a =
                            arrow::compute::cast(b.column(c), &arrow::datatypes::DataType::Utf8)
                                .unwrap();
                        let a = a.as_string::<i32>();
                        a.is_valid(r).then(|| a.value(r).to_string())
                    })
                    .collect()
            })
            .collect()
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn header_of_a_ccd_taken_by_hand() {
        // CCD.xml lines 27–32, 42, 144, 256–257.
        let r = rows(
            "CCD.xml",
            None,
            &[
                ("potilas", "/recordTarget/patientRole/id/@extension"),
                ("laatija", "/author/assignedAuthor/id/@extension"),
                (
                    "rekisterinpitaja",
                    "/custodian/assignedCustodian/representedCustodianOrganization/name",
                ),
                ("aika", "/effectiveTime/@value"),
                ("asiakirja", "/code/@code"),
            ],
        );
        assert_eq!(
            r,
            vec![vec![
                s("98765432"),
                s("5555555555"),
                s("Good Health HIE"),
                s("20141015103026-0500"),
                s("34133-9"),
                s("1")
            ]]
        );
    }

    #[test]
    fn vital_sign_entries_by_template() {
        // CCD.xml lines 876–907: the first two vital-sign observations (template …4.27).
        let r = rows(
            "CCD.xml",
            Some("2.16.840.1.113883.10.20.22.4.27"),
            &[
                ("potilas", "/recordTarget/patientRole/id/@extension"),
                ("koodi", "code/@code"),
                ("arvo", "value/@value"),
                ("yksikko", "value/@unit"),
                ("aika", "effectiveTime/@value"),
            ],
        );
        assert_eq!(r.len(), 9);
        assert_eq!(
            r[0],
            vec![
                s("98765432"),
                s("8480-6"),
                s("120"),
                s("mm[Hg]"),
                s("20141001103026-0500"),
                s("876")
            ]
        );
        assert_eq!(r[1][1..4], [s("8462-4"), s("80"), s("mm[Hg]")]);
    }

    #[test]
    fn every_example_document_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/ccda-examples");
        let mut n = 0;
        for f in std::fs::read_dir(dir).unwrap() {
            let f = f.unwrap().file_name().to_string_lossy().to_string();
            if f.ends_with(".xml") {
                let r = rows(&f, None, &[("asiakirja", "/code/@code")]);
                assert!(r[0][0].is_some(), "{f}");
                n += 1;
            }
        }
        assert!(n >= 10);
    }

    #[test]
    fn not_a_cda_document() {
        let request = ParseRequest {
            columns: vec!["x".into()],
            types: vec![],
            options: serde_json::Value::Null,
            batch_size: 10,
            base_dir: None,
        };
        let options = CdaOptions {
            template: None,
            fields: [("x".to_string(), "/code/@code".to_string())]
                .into_iter()
                .collect(),
        };
        let e = read(b"<html>\n<body/></html>", &options, &request).unwrap_err();
        assert!(e.contains("not `ClinicalDocument`"), "{e}");
        let e = read(
            b"<ClinicalDocument>\n<code></ClinicalDocument>",
            &options,
            &request,
        )
        .unwrap_err();
        assert!(e.contains("line 2") && e.contains("XML"), "{e}");
    }
}
