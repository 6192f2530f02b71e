//! `valtava catalog`: a static catalog of all lines, datasets and columns, generated from
//! the line files — the description of each line that the data production handbook asks
//! for (what data, which classifications, which checks, who owns it, on what legal basis,
//! when it publishes), with lineage down to source columns. JSON for programs, one HTML page
//! for people.

use quick_xml::escape::escape as esc;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::artefacts::ArtefactError;
use crate::line::spec::Text;

#[derive(Debug, Serialize)]
pub struct Catalog {
    pub engine_version: String,
    pub lines: Vec<LineEntry>,
}

#[derive(Debug, Serialize)]
pub struct LineEntry {
    pub line: String,
    pub file: String,
    pub title: Text,
    pub description: Option<Text>,
    pub purpose: Option<Text>,
    pub owner: Option<String>,
    pub contact: Option<String>,
    pub legal_basis: Option<String>,
    pub schedule: Option<String>,
    pub params: Vec<(String, String)>,
    pub codesets: Vec<CodesetEntry>,
    pub sources: Vec<SourceEntry>,
    pub rules: Vec<RuleEntry>,
    pub datasets: Vec<DatasetEntry>,
}

#[derive(Debug, Serialize)]
pub struct CodesetEntry {
    pub name: String,
    pub path: String,
    pub description: Option<String>,
    pub sha256: String,
    pub version: Option<String>,
    pub rows: usize,
}

#[derive(Debug, Serialize)]
pub struct SourceEntry {
    pub step: String,
    /// Empty for a release source, which reads `release` instead.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub format: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub location: String,
    /// What a release source reads: another line's (or this line's) published dataset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseEntry>,
    pub columns: Vec<ColumnEntry>,
}

/// The published dataset a release source reads, and which periods of it.
#[derive(Debug, Serialize)]
pub struct ReleaseEntry {
    pub dataset: String,
    /// As written in the line file: `current`, `previous`, `sub`, `all`, `last: n`.
    pub periods: String,
}

#[derive(Debug, Serialize)]
pub struct RuleEntry {
    pub step: String,
    pub id: String,
    pub description: Option<String>,
    pub category: String,
    pub severity: String,
}

#[derive(Debug, Serialize)]
pub struct ColumnEntry {
    pub name: String,
    pub r#type: String,
    pub description: Option<Text>,
    pub unit: Option<String>,
    pub personal: bool,
    /// Source columns it comes from, as `step.column`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lineage: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DatasetEntry {
    pub dataset: String,
    pub step: String,
    pub dimensions: Vec<String>,
    pub formats: Vec<String>,
    pub disclosure: Option<String>,
    /// Disclosure control switched off: the line's reason, in every language it gives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disclosure_off: Option<Text>,
    pub columns: Vec<ColumnEntry>,
}

fn lower<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Builds the catalog of the line files; an invalid file is an error naming it.
pub fn build(files: &[std::path::PathBuf]) -> Result<Catalog, Vec<crate::diag::Diagnostic>> {
    let mut lines = Vec::new();
    for f in files {
        let c = crate::plan::check::check(f)?;
        lines.push(line_entry(&c));
    }
    lines.sort_by(|a, b| a.line.cmp(&b.line));
    Ok(Catalog {
        engine_version: env!("CARGO_PKG_VERSION").into(),
        lines,
    })
}

/// The lineage of each step's output columns, as [`crate::artefacts::lineage::column_lineage`]
/// gives it.
type Lineage = BTreeMap<String, BTreeMap<String, BTreeSet<(String, String)>>>;

/// The catalog entry of one checked line (also what the daemon keeps of each line it serves
/// for `/api/catalog`, built once at load).
pub(crate) fn line_entry(c: &crate::plan::check::Checked) -> LineEntry {
    let spec = &c.line.spec;
    let lineage = crate::artefacts::lineage::column_lineage(&c.line, &c.plans);
    let mut sources = Vec::new();
    let mut rules = Vec::new();
    let mut datasets = Vec::new();
    for name in &c.line.dag.order {
        let step = crate::line::load::step(spec, name);
        if let Some(s) = &step.source {
            sources.push(source_entry(name, s));
        }
        if let Some(v) = &step.validate {
            for r in &v.rules {
                rules.push(RuleEntry {
                    step: name.clone(),
                    id: r.id.value.clone(),
                    description: r.description.clone(),
                    category: lower(&crate::steps::validate::category(r)),
                    severity: lower(&r.severity),
                });
            }
        }
        if let Some(p) = &step.publish {
            datasets.push(dataset_entry(c, &lineage, name, p));
        }
    }
    LineEntry {
        line: spec.line.value.clone(),
        file: c.line.file.clone(),
        title: spec.title.value.clone(),
        description: spec.description.clone(),
        purpose: spec.purpose.clone(),
        owner: spec.owner.clone(),
        contact: spec.contact.clone(),
        legal_basis: spec.legal_basis.clone(),
        schedule: spec.schedule.as_ref().map(|s| s.value.clone()),
        params: spec
            .params
            .iter()
            .map(|(k, v)| (k.value.clone(), lower(&v.kind.value)))
            .collect(),
        codesets: codeset_entries(c),
        sources,
        rules,
        datasets,
    }
}

/// The catalog entry of a source step: its format and location (or the releases it reads)
/// and declared columns.
fn source_entry(name: &str, s: &crate::line::spec::SourceSpec) -> SourceEntry {
    SourceEntry {
        step: name.to_string(),
        format: s.format.value.clone(),
        location: s.location.value.clone(),
        release: s.release.as_ref().map(|r| ReleaseEntry {
            dataset: r.dataset.value.clone(),
            periods: r.periods.value.describe(),
        }),
        columns: s
            .columns
            .iter()
            .map(|(k, v)| ColumnEntry {
                name: k.value.clone(),
                r#type: v.r#type.value.as_str().into(),
                description: v.description.clone(),
                unit: v.unit.clone(),
                personal: v.personal,
                lineage: vec![],
            })
            .collect(),
    }
}

/// The catalog entry of a published dataset: its columns with types and lineage.
fn dataset_entry(
    c: &crate::plan::check::Checked,
    lineage: &Lineage,
    name: &str,
    p: &crate::line::spec::PublishSpec,
) -> DatasetEntry {
    let plan = &c.plans[name];
    let columns = plan
        .output
        .fields()
        .iter()
        .map(|f| {
            let meta = p.columns.get(f.name().as_str());
            let mut from: Vec<String> = lineage
                .get(name)
                .and_then(|m| m.get(f.name()))
                .map(|s| s.iter().map(|(st, col)| format!("{st}.{col}")).collect())
                .unwrap_or_default();
            from.sort();
            ColumnEntry {
                name: f.name().clone(),
                r#type: crate::plan::explain::steps(c)
                    .iter()
                    .find(|s| s.name == name)
                    .and_then(|s| {
                        s.columns
                            .iter()
                            .find(|x| &x.name == f.name())
                            .map(|x| x.r#type.clone())
                    })
                    .unwrap_or_default(),
                description: meta.and_then(|m| m.description.clone()),
                unit: meta.and_then(|m| m.unit.clone()),
                personal: false,
                lineage: from,
            }
        })
        .collect();
    DatasetEntry {
        dataset: p.dataset.value.clone(),
        step: name.to_string(),
        dimensions: plan.dimensions.clone(),
        formats: p.formats.iter().map(|f| lower(&f.value)).collect(),
        disclosure: plan
            .disclosure
            .as_ref()
            .map(|d| {
                let mut text = format!(
                    "{} < {} suppressed, with secondary suppression",
                    d.counts.join(", "),
                    d.min_count
                );
                for (m, c) in &d.own {
                    let _ = match c.strip_prefix(crate::plan::DECIDING_PREFIX) {
                        Some(c) => write!(text, "; {m} by {c} (unpublished)"),
                        None => write!(text, "; {m} by {c}"),
                    };
                }
                text
            })
            .or_else(|| p.disclosure_off_note()),
        disclosure_off: p.disclosure_off().cloned(),
        columns,
    }
}

/// The code sets of a line with the version, row count and checksum they loaded with.
fn codeset_entries(c: &crate::plan::check::Checked) -> Vec<CodesetEntry> {
    c.line
        .spec
        .codesets
        .iter()
        .map(|(k, v)| {
            let loaded = &c.codesets[k.value.as_str()];
            CodesetEntry {
                name: k.value.clone(),
                path: v.path.value.clone(),
                description: v.description.clone(),
                sha256: loaded.sha256.clone(),
                version: loaded.version.clone(),
                rows: loaded.rows,
            }
        })
        .collect()
}

fn text(t: &Option<Text>) -> String {
    t.as_ref()
        .map(|t| esc(t.fi()).into_owned())
        .unwrap_or_default()
}

/// One HTML page, no scripts, no network.
pub fn html(c: &Catalog) -> String {
    let mut h = String::from(
        "<!DOCTYPE html>\n<html lang=\"fi\">\n<head>\n<meta charset=\"utf-8\">\n<title>Valtava – tietotuotantolinjojen luettelo</title>\n<style>\nbody{font-family:system-ui,sans-serif;margin:2rem;max-width:75rem;color:#1b1b1b}\ntable{border-collapse:collapse;width:100%;margin:.4rem 0 1rem}\nth,td{border-bottom:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}\ncode{font-size:.9em}.meta{color:#555}h2{margin-top:2.5rem}\n</style>\n</head>\n<body>\n<h1>Tietotuotantolinjat / Dataproduktionslinjer / Data production lines</h1>\n<ul>\n",
    );
    for l in &c.lines {
        let _ = writeln!(
            h,
            "<li><a href=\"#{0}\">{0}</a> — {1}</li>",
            esc(&l.line),
            esc(l.title.fi())
        );
    }
    h.push_str("</ul>\n");
    for l in &c.lines {
        line_header(&mut h, l);
        codesets_table(&mut h, l);
        sources_tables(&mut h, l);
        rules_table(&mut h, l);
        dataset_tables(&mut h, l);
    }
    h.push_str("</body>\n</html>\n");
    h
}

/// A line's heading, description and owner, legal basis, schedule and parameters.
fn line_header(h: &mut String, l: &LineEntry) {
    let _ = writeln!(
        h,
        "<h2 id=\"{}\">{} <code>{}</code></h2>",
        esc(&l.line),
        esc(l.title.fi()),
        esc(&l.line)
    );
    if let Text::Languages(t) = &l.title {
        let _ = writeln!(
            h,
            "<p class=\"meta\">{} · {}</p>",
            esc(t.sv.as_deref().unwrap_or("")),
            esc(t.en.as_deref().unwrap_or(""))
        );
    }
    let _ = writeln!(h, "<p>{}</p>", text(&l.description));
    let _ = writeln!(
        h,
        "<table><tr><th>omistaja</th><td>{}</td></tr><tr><th>yhteystieto</th><td>{}</td></tr><tr><th>oikeusperusta</th><td>{}</td></tr><tr><th>tarkoitus</th><td>{}</td></tr><tr><th>aikataulu</th><td><code>{}</code></td></tr><tr><th>parametrit</th><td>{}</td></tr><tr><th>tiedosto</th><td><code>{}</code></td></tr></table>",
        esc(l.owner.as_deref().unwrap_or("")),
        esc(l.contact.as_deref().unwrap_or("")),
        esc(l.legal_basis.as_deref().unwrap_or("")),
        text(&l.purpose),
        esc(l.schedule.as_deref().unwrap_or("")),
        l.params
            .iter()
            .map(|(k, v)| format!("{} ({})", esc(k), esc(v)))
            .collect::<Vec<_>>()
            .join(", "),
        esc(&l.file)
    );
}

/// The code sets of a line.
fn codesets_table(h: &mut String, l: &LineEntry) {
    h.push_str("<h3>Luokitukset / Code sets</h3>\n<table><tr><th>nimi</th><th>kuvaus</th><th>versio</th><th>rivejä</th><th>sha256</th></tr>\n");
    for cs in &l.codesets {
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td><code>{}…</code></td></tr>",
            esc(&cs.name),
            esc(cs.description.as_deref().unwrap_or("")),
            esc(cs.version.as_deref().unwrap_or("")),
            cs.rows,
            &cs.sha256[..12]
        );
    }
}

/// The sources of a line with their columns.
fn sources_tables(h: &mut String, l: &LineEntry) {
    h.push_str("</table>\n<h3>Lähteet / Sources</h3>\n");
    for s in &l.sources {
        let (format, location) = match &s.release {
            Some(r) => (format!("release, periods {}", r.periods), r.dataset.clone()),
            None => (s.format.clone(), s.location.clone()),
        };
        let _ = writeln!(
            h,
            "<p><code>{}</code> ({}) <code>{}</code></p>\n<table><tr><th>sarake</th><th>tyyppi</th><th>kuvaus</th><th>henkilötieto</th></tr>",
            esc(&s.step),
            esc(&format),
            esc(&location)
        );
        for col in &s.columns {
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&col.name),
                esc(&col.r#type),
                text(&col.description),
                if col.personal { "kyllä" } else { "" }
            );
        }
        h.push_str("</table>\n");
    }
}

/// The quality rules of a line.
fn rules_table(h: &mut String, l: &LineEntry) {
    h.push_str("<h3>Laatusäännöt / Rules</h3>\n<table><tr><th>vaihe</th><th>sääntö</th><th>kuvaus</th><th>luokka</th><th>vakavuus</th></tr>\n");
    for r in &l.rules {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.step),
            esc(&r.id),
            esc(r.description.as_deref().unwrap_or("")),
            esc(&r.category),
            esc(&r.severity)
        );
    }
    h.push_str("</table>\n");
}

/// The published datasets of a line with their columns and lineage.
fn dataset_tables(h: &mut String, l: &LineEntry) {
    for d in &l.datasets {
        let _ = writeln!(
            h,
            "<h3>Aineisto <code>{}</code></h3>\n<p class=\"meta\">ulottuvuudet {} · muodot {} · tietosuoja: {}</p>",
            esc(&d.dataset),
            esc(d.dimensions.join(", ")),
            esc(d.formats.join(", ")),
            esc(d.disclosure.as_deref().unwrap_or("ei"))
        );
        h.push_str("<table><tr><th>sarake</th><th>tyyppi</th><th>kuvaus</th><th>yksikkö</th><th>alkuperä</th></tr>\n");
        for col in &d.columns {
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&col.name),
                esc(&col.r#type),
                text(&col.description),
                esc(col.unit.as_deref().unwrap_or("")),
                col.lineage
                    .iter()
                    .map(|x| format!("<code>{}</code>", esc(x)))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        h.push_str("</table>\n");
    }
}

/// Writes `catalog.json` and `index.html` into `out`.
pub fn write(c: &Catalog, out: &Path) -> Result<(), ArtefactError> {
    std::fs::create_dir_all(out).map_err(|source| ArtefactError::Folder {
        path: out.to_path_buf(),
        source,
    })?;
    let json = serde_json::to_vec_pretty(c).map_err(ArtefactError::Json)?;
    std::fs::write(out.join("catalog.json"), json).map_err(ArtefactError::Io)?;
    std::fs::write(out.join("index.html"), html(c)).map_err(ArtefactError::Io)
}
