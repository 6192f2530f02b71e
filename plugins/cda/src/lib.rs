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
//! A step may select among elements of one name by a *predicate* on a value below it:
//! `observation[code/@code='kunta']/value/@code`, `id[@root='1.2.246.21']/@extension`.
//! The predicate's path is child element names, optionally ending in `@attribute` (or just
//! `@attribute`, the element's own); its value (the first match, as for any path) must equal
//! the quoted literal, compared with the document's value unescaped (`&amp;` is `&`); the
//! literal itself is taken as written. CDA documents list coded facts as sibling
//! `observation`s told apart only by their `code`, so without a predicate a path could name
//! only the first. The first element in document order that passes gives the value. An
//! entry path may test several steps; a header path one step, because it is followed while
//! streaming: when an element of its tested step opens, the reader keeps, until it closes,
//! only the first value of the predicate's path and the first value of the rest of the path
//! inside it (each at most `limits.record_kib`), and decides at the close, since the tested
//! child may come after the value (see `header.rs`). One such element is open per path at a
//! time, so many elements that fail cost constant work per event each.
//!
//! Documents are streamed: the reader keeps only the open elements, how far each header path
//! matches them, the header values it looks for, and the subtree of the clinical statement it
//! is inside (`observation`, `act`, `substanceAdministration`, …) — never the whole document
//! as a tree. A row's number is the line where its entry starts. When rows come from entries
//! and some columns from the header, a first pass reads the header values (it stops once all
//! are found, usually at the end of the header), so that every entry's row is whole when it
//! is handed over; rows go out in batches of the request's `batch_size` as their entries
//! close (a batch goes out sooner once it holds 64 MiB of text), so a document's rows are
//! never all held at once.
//!
//! Every document is assumed hostile: what one may make the reader hold or do is bounded by
//! the line's `limits:`, and a document that reaches a bound is stopped with an error that
//! names the setting and the line, never content.
//!
//! - `limits.object_mib`: the document is read whole into memory, and no larger.
//! - `limits.depth`: elements nest at most this deep. The work per XML event does not grow
//!   with the depth either: a header path is followed by counting how many of its leading
//!   steps the open elements match, not by comparing the whole element path at every event.
//! - `limits.record_kib`: the text of an element the reader keeps (a header value, text
//!   inside a clinical statement), an attribute value it keeps (as written), and all that
//!   one clinical statement's subtree holds (names, attributes, text and each element's own
//!   bookkeeping); for a header path with a predicate, each of the two values its open
//!   element keeps. Text the reader does not keep (a narrative block, an embedded PDF) is
//!   skipped in place without being copied, so it only counts toward `object_mib`. It also
//!   bounds each row's values together: header values are repeated in every entry's row,
//!   so a small document could otherwise make rows many times its size.
//!
//! Events are read from the document's bytes in place (no read buffer that could grow).
//! Attribute keys are not checked for duplicates: that check compares each key with every
//! earlier one of the tag, quadratic in a hostile tag of many attributes (the first of equal
//! keys counts). A DTD (`<!DOCTYPE … [<!ENTITY …>]>`) is never read: quick_xml does not
//! expand the entities it declares (no "billion laughs"), and a reference to one stays in the
//! text as written. Character references and XML's five predefined entities are resolved.
//!
//! ```yaml
//! source:
//!   format: cda
//!   location: kanta/cda/*.xml
//!   options:
//!     template: 2.16.840.1.113883.10.20.22.4.27   # vital sign observation
//!     fields:
//!       potilas: "/recordTarget/patientRole/id[@root='1.2.246.21']/@extension"
//!       koodi: code/@code
//!       arvo: value/@value
//! ```

use std::sync::Arc;

use indexmap::IndexMap;
use quick_xml::events::{BytesRef, BytesStart, Event};
use schemars::JsonSchema;
use serde::Deserialize;
use valtava_plugin::{
    Limits, ParseRequest, ParseStream, ParsedBatch, Parser, SourceObject, Stop, TextBatchBuilder,
    typed_options,
};

use header::Candidate;
use path::{Path, Predicate, Step, compile};

mod header;
mod path;

/// Options of the `cda` format.
#[derive(Debug, Clone, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CdaOptions {
    /// The templateId `root` of the entries that become rows (e.g.
    /// `2.16.840.1.113883.10.20.22.4.27`); without it, one row per document.
    #[serde(default)]
    pub template: Option<String>,
    /// Where each declared column comes from, by column name: `/header/path/@attr` or
    /// `entry/relative/path` (text). A step may carry one predicate that selects the
    /// element by a value below it: `name[child/path/@attr='value']`, `name[@attr='value']`
    /// or `name[child='text']` (single or double quotes; the value compared unescaped).
    /// The first element that passes counts. A header path may carry a predicate on one
    /// step only; an entry path on several.
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

/// The compiled path of each requested column, in column order.
fn column_paths(options: &CdaOptions, request: &ParseRequest) -> Result<Vec<Path>, String> {
    request
        .columns
        .iter()
        .map(|c| {
            let p = options
                .fields
                .get(c)
                .ok_or_else(|| format!("no path for column `{c}` in `fields`"))?;
            compile(p).map_err(|e| format!("field `{c}`: {e}"))
        })
        .collect()
}

#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<usize>,
    line: u64,
}

/// What one kept element costs besides its names, values and text: the node itself and its
/// place in its parent's children. Counted so that a statement of many empty elements is
/// bounded as well as one of long text.
const NODE_BYTES: usize = std::mem::size_of::<Node>() + std::mem::size_of::<usize>();

/// A name without its namespace prefix.
fn local_bytes(name: &[u8]) -> &[u8] {
    name.rsplit(|&b| b == b':').next().unwrap_or(name)
}

fn local(name: &[u8]) -> String {
    String::from_utf8_lossy(local_bytes(name)).into_owned()
}

fn is_statement(name: &[u8]) -> bool {
    STATEMENTS.iter().any(|s| s.as_bytes() == name)
}

/// The stop for a kept value longer than `limits.record_kib`: names what and where, never
/// the value.
fn too_long(what: &str, limit: usize, line: u64) -> Stop {
    Stop::Limit {
        setting: "record_kib",
        message: format!(
            "{what} is longer than {} (line {line})",
            valtava_plugin::size_text(limit)
        ),
    }
}

/// Most text one batch may hold before it is handed over, whatever `batch_size` says: rows
/// may each be as long as `limits.record_kib` (header values repeat in every entry's row), so
/// a batch bounded by rows alone could hold `batch_size` times that, tens of GiB at the
/// defaults, and two batches may wait for the reader at once. A string column of a batch also
/// cannot hold more than 2 GiB of text.
const BATCH_BYTES: usize = 64 << 20;

/// The text bytes of a row (its values together), refusing a row longer than `limit`: a
/// header value is repeated in every entry's row and a path may be named by several columns,
/// so a row can be many times longer than any value it holds. The stop names the row's line
/// and the bound, never a value.
fn row_bytes(values: &[Option<String>], limit: usize, line: u64) -> Result<usize, Stop> {
    let bytes = values
        .iter()
        .flatten()
        .fold(0usize, |sum, v| sum.saturating_add(v.len()));
    if bytes > limit {
        return Err(too_long("a row (its values together)", limit, line));
    }
    Ok(bytes)
}

/// The attributes of a start tag, without duplicate checks (see the module doc); each value
/// as written at most `limit` bytes.
fn checked_attributes(
    e: &BytesStart<'_>,
    limit: usize,
    line: u64,
) -> Result<Vec<(String, String)>, Stop> {
    let mut attrs = e.attributes();
    attrs.with_checks(false);
    let mut kept = Vec::new();
    for a in attrs.flatten() {
        if a.value.len() > limit {
            return Err(too_long("an attribute value", limit, line));
        }
        kept.push((
            local(a.key.as_ref()),
            a.unescape_value()
                .map(|v| v.into_owned())
                .unwrap_or_default(),
        ));
    }
    Ok(kept)
}

/// The value of the first attribute named `name` (local name) of a start tag, at most
/// `limit` bytes as written.
fn attribute(
    e: &BytesStart<'_>,
    name: &str,
    limit: usize,
    line: u64,
) -> Result<Option<String>, Stop> {
    let mut attrs = e.attributes();
    attrs.with_checks(false);
    for a in attrs.flatten() {
        if local_bytes(a.key.as_ref()) == name.as_bytes() {
            if a.value.len() > limit {
                return Err(too_long("an attribute value", limit, line));
            }
            return Ok(Some(
                a.unescape_value()
                    .map(|v| v.into_owned())
                    .unwrap_or_default(),
            ));
        }
    }
    Ok(None)
}

/// The text a reference stands for: a character reference or one of XML's five predefined
/// entities. Any other entity would be declared in a DTD, which is never read: it stays as
/// written.
fn reference(r: &BytesRef<'_>) -> String {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        return c.to_string();
    }
    let name = r.decode().unwrap_or_default();
    match quick_xml::escape::resolve_predefined_entity(&name) {
        Some(s) => s.to_string(),
        None => format!("&{name};"),
    }
}

/// The value of a relative path in a captured subtree: the first match in document order,
/// each step's predicate tested on the element it names.
fn lookup(arena: &[Node], at: usize, steps: &[Step], attribute: Option<&str>) -> Option<String> {
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
            .filter(|&&c| arena[c].name == first.name)
            .filter(|&&c| first.test.as_ref().is_none_or(|t| passes(arena, c, t)))
            .find_map(|&c| lookup(arena, c, rest, attribute)),
    }
}

/// Whether kept node `at` passes predicate `t`: the first value of its path equals the
/// literal.
fn passes(arena: &[Node], at: usize, t: &Predicate) -> bool {
    lookup(arena, at, &t.steps, t.attribute.as_deref()).as_deref() == Some(t.literal.as_str())
}

/// What one pass through a document is for.
#[derive(Debug, Clone, Copy)]
enum Pass<'a> {
    /// The header values only: stops as soon as all are found.
    Header,
    /// The header values of the whole document (no template: the document is one row).
    Document,
    /// The entries that carry this template, one row each; the header values come from an
    /// earlier pass.
    Entries(&'a str),
}

/// One pass through a document. The work per event is bounded by the number of columns,
/// not by how deep the document nests: a header path is followed by `matched`, the number
/// of its leading steps that the open elements below the root match, which only the
/// elements at that depth can raise or lower.
struct Walk<'a> {
    paths: &'a [Path],
    pass: Pass<'a>,
    limits: Limits,
    /// Line of the event being read.
    line: u64,
    /// The open elements, each with its node in `arena` while inside a clinical statement.
    stack: Vec<Option<usize>>,
    root_seen: bool,
    /// Per path: how many leading steps match the open elements below the root (header
    /// paths only; entry paths stay at 0).
    matched: Vec<usize>,
    /// Per path: the text gathered so far of the open element a header path names.
    reading: Vec<Option<String>>,
    /// Per path: the header value found (the first match counts).
    header: Vec<Option<String>>,
    /// Per path: the open candidate of its tested step (header paths with a predicate).
    cands: Vec<Option<Candidate>>,
    /// Header paths without a value yet.
    missing: usize,
    /// The subtree of the clinical statement the reader is inside.
    arena: Vec<Node>,
    /// Bytes `arena` holds, against `limits.record_bytes`.
    held: usize,
}

impl<'a> Walk<'a> {
    fn new(paths: &'a [Path], pass: Pass<'a>, limits: Limits) -> Self {
        Self {
            paths,
            pass,
            limits,
            line: 1,
            stack: Vec::new(),
            root_seen: false,
            matched: vec![0; paths.len()],
            reading: vec![None; paths.len()],
            header: vec![None; paths.len()],
            cands: vec![None; paths.len()],
            missing: paths.iter().filter(|p| p.absolute).count(),
            arena: Vec::new(),
            held: 0,
        }
    }

    fn reads_header(&self) -> bool {
        matches!(self.pass, Pass::Header | Pass::Document)
    }

    /// Reads `bytes`, handing each entry's line and values (header columns empty) to
    /// `on_row`, which answers whether to go on.
    fn run<F>(&mut self, bytes: &[u8], on_row: &mut F) -> Result<(), Stop>
    where
        F: FnMut(u64, Vec<Option<String>>) -> Result<bool, Stop>,
    {
        let mut reader = quick_xml::Reader::from_reader(bytes);
        let mut seen = 0usize;
        loop {
            let pos = (reader.buffer_position() as usize).min(bytes.len());
            self.line += bytes[seen.min(pos)..pos]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            seen = pos;
            let line = self.line;
            let event = reader.read_event().map_err(|e| {
                Stop::Invalid(format!(
                    "line {line}: not well-formed XML ({})",
                    xml_kind(&e)
                ))
            })?;
            let go_on = match event {
                Event::Start(e) => {
                    self.start(&e)?;
                    true
                }
                Event::Empty(e) => {
                    self.start(&e)?;
                    self.end(on_row)?
                }
                Event::End(_) => self.end(on_row)?,
                Event::Text(t) => {
                    if self.wants_text() {
                        self.text(&t.decode().unwrap_or_default())?;
                    }
                    true
                }
                Event::CData(t) => {
                    if self.wants_text() {
                        self.text(&t.decode().unwrap_or_default())?;
                    }
                    true
                }
                Event::GeneralRef(r) => {
                    if self.wants_text() {
                        self.text(&reference(&r))?;
                    }
                    true
                }
                Event::Eof => break,
                _ => true,
            };
            if !go_on || (matches!(self.pass, Pass::Header) && self.missing == 0) {
                return Ok(());
            }
        }
        if !self.root_seen {
            return Err("no ClinicalDocument element".into());
        }
        if !self.stack.is_empty() {
            return Err(format!(
                "line {}: the document ends inside an element (not well-formed XML)",
                self.line
            )
            .into());
        }
        Ok(())
    }

    /// An element opens: the root is checked, the depth bounded, header paths followed and,
    /// inside a clinical statement, the element kept.
    fn start(&mut self, e: &BytesStart<'_>) -> Result<(), Stop> {
        let name = local_bytes(e.name().into_inner());
        if self.stack.len() >= self.limits.depth {
            return Err(Stop::Limit {
                setting: "depth",
                message: format!(
                    "elements nest deeper than {} levels (line {})",
                    self.limits.depth, self.line
                ),
            });
        }
        if self.stack.is_empty() {
            if self.root_seen || name != b"ClinicalDocument".as_slice() {
                return Err(format!(
                    "line {}: the root element is not `ClinicalDocument`",
                    self.line
                )
                .into());
            }
            self.root_seen = true;
        } else if self.reads_header() {
            self.follow_header(e, name)?;
        }
        let parent = self.stack.last().copied().flatten();
        let node = match self.pass {
            Pass::Entries(_) if parent.is_some() || is_statement(name) => {
                Some(self.keep(e, name, parent)?)
            }
            _ => None,
        };
        self.stack.push(node);
        Ok(())
    }

    /// Keeps an element of a clinical statement in `arena`, below `parent`.
    fn keep(
        &mut self,
        e: &BytesStart<'_>,
        name: &[u8],
        parent: Option<usize>,
    ) -> Result<usize, Stop> {
        let attrs = checked_attributes(e, self.limits.record_bytes, self.line)?;
        let name = String::from_utf8_lossy(name).into_owned();
        let bytes =
            NODE_BYTES + name.len() + attrs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        self.hold(bytes)?;
        self.arena.push(Node {
            name,
            attrs,
            text: String::new(),
            children: Vec::new(),
            line: self.line,
        });
        let id = self.arena.len() - 1;
        if let Some(p) = parent {
            self.arena[p].children.push(id);
        }
        Ok(id)
    }

    /// Counts `bytes` more in the kept statement, refusing a statement that would hold more
    /// than `limits.record_bytes`.
    fn hold(&mut self, bytes: usize) -> Result<(), Stop> {
        self.held += bytes;
        if self.held > self.limits.record_bytes {
            let start = self.arena.first().map_or(self.line, |n| n.line);
            return Err(Stop::Limit {
                setting: "record_kib",
                message: format!(
                    "the clinical statement that starts at line {start} holds more than {} \
                     (line {})",
                    valtava_plugin::size_text(self.limits.record_bytes),
                    self.line
                ),
            });
        }
        Ok(())
    }

    /// Whether text here is kept: inside a clinical statement, a header element read or
    /// one a predicate tests.
    fn wants_text(&self) -> bool {
        matches!(self.stack.last(), Some(Some(_))) || self.reads_header_text()
    }

    /// Text directly inside the current element: gathered for the header paths and
    /// predicates that name it and kept in its node inside a clinical statement.
    fn text(&mut self, text: &str) -> Result<(), Stop> {
        let limit = self.limits.record_bytes;
        let line = self.line;
        self.header_text(text)?;
        if let Some(&Some(n)) = self.stack.last() {
            if self.arena[n].text.len() + text.len() > limit {
                return Err(too_long("an element's text", limit, line));
            }
            self.hold(text.len())?;
            self.arena[n].text.push_str(text);
        }
        Ok(())
    }

    /// An element closes: header paths it matched step back (a header element read ends
    /// with its text); a clinical statement that carries the template becomes a row.
    /// Answers whether to go on.
    fn end<F>(&mut self, on_row: &mut F) -> Result<bool, Stop>
    where
        F: FnMut(u64, Vec<Option<String>>) -> Result<bool, Stop>,
    {
        // quick_xml checks that every end has its start.
        let Some(node) = self.stack.pop() else {
            return Ok(true);
        };
        if self.reads_header() {
            self.close_header(self.stack.len());
        }
        if let (Some(n), Pass::Entries(template)) = (node, self.pass)
            && self.is_entry(n, template)
        {
            let values: Vec<Option<String>> = self
                .paths
                .iter()
                .map(|p| {
                    if p.absolute {
                        None
                    } else {
                        lookup(&self.arena, n, &p.steps, p.attribute.as_deref())
                    }
                })
                .collect();
            if !on_row(self.arena[n].line, values)? {
                return Ok(false);
            }
        }
        // Outside every statement nothing is kept.
        if self.stack.last().copied().flatten().is_none() {
            self.arena.clear();
            self.held = 0;
        }
        Ok(true)
    }

    /// Whether kept node `n` is a clinical statement that carries `template`.
    fn is_entry(&self, n: usize, template: &str) -> bool {
        let node = &self.arena[n];
        is_statement(node.name.as_bytes())
            && node.children.iter().any(|&c| {
                let c = &self.arena[c];
                c.name == "templateId" && c.attrs.iter().any(|(k, v)| k == "root" && v == template)
            })
    }
}

/// Parses one document into rows of the requested columns, handed to `emit` in batches of
/// `request.batch_size` rows, or fewer once a batch holds more than [`BATCH_BYTES`] of text
/// (at least one batch, empty if no entry matched). A row longer than `limits.record_kib`
/// stops the document.
fn read(
    bytes: &[u8],
    options: &CdaOptions,
    request: &ParseRequest,
    emit: &mut dyn FnMut(ParsedBatch) -> bool,
) -> Result<(), Stop> {
    let paths = column_paths(options, request)?;
    let limits = request.limits;
    let finish = |b: &mut TextBatchBuilder| b.finish().map_err(|e| Stop::Invalid(e.to_string()));
    let mut builder = TextBatchBuilder::new(request.columns.clone());
    let Some(template) = options.template.as_deref() else {
        let mut walk = Walk::new(&paths, Pass::Document, limits);
        walk.run(bytes, &mut |_, _| Ok(true))?;
        row_bytes(&walk.header, limits.record_bytes, 1)?;
        builder.push_row(1, walk.header.iter().map(|v| v.as_deref()));
        emit(finish(&mut builder)?);
        return Ok(());
    };
    let mut header = vec![None; paths.len()];
    if paths.iter().any(|p| p.absolute) {
        let mut walk = Walk::new(&paths, Pass::Header, limits);
        walk.run(bytes, &mut |_, _| Ok(true))?;
        header = walk.header;
    }
    let batch_size = request.batch_size.max(1);
    let mut emitted = false;
    // Text bytes of the rows in `builder`, against `BATCH_BYTES`.
    let mut held = 0usize;
    let mut walk = Walk::new(&paths, Pass::Entries(template), limits);
    walk.run(bytes, &mut |line, mut values: Vec<Option<String>>| {
        for (value, found) in values.iter_mut().zip(&header) {
            if found.is_some() {
                value.clone_from(found);
            }
        }
        held += row_bytes(&values, limits.record_bytes, line)?;
        builder.push_row(line, values.iter().map(|v| v.as_deref()));
        if builder.len() < batch_size && held <= BATCH_BYTES {
            return Ok(true);
        }
        held = 0;
        emitted = true;
        Ok(emit(finish(&mut builder)?))
    })?;
    if !emitted || !builder.is_empty() {
        emit(finish(&mut builder)?);
    }
    Ok(())
}

/// The `cda` parser.
#[derive(Debug, Default)]
pub struct CdaParser;

impl Parser for CdaParser {
    fn format(&self) -> &'static str {
        "cda"
    }

    fn parses_ahead(&self) -> bool {
        true
    }

    fn options_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<CdaOptions>()
    }

    fn check_options(&self, options: &serde_json::Value) -> Result<(), String> {
        let o = typed_options::<CdaOptions>(options)?;
        for (name, p) in &o.fields {
            compile(p).map_err(|e| format!("field `{name}`: {e}"))?;
        }
        Ok(())
    }

    fn parse(&self, object: SourceObject, request: ParseRequest) -> ParseStream {
        valtava_plugin::whole_object_streamed(object, request, |bytes, request, emit| {
            let options = typed_options::<CdaOptions>(&request.options)?;
            read(&bytes, &options, request, emit)
        })
    }
}

/// The parser as a registry entry.
pub fn parser() -> Arc<dyn Parser> {
    Arc::new(CdaParser)
}

#[cfg(test)]
mod tests;
