//! `valtava graph`: the line's steps as DOT or Mermaid, byte-stable for reviewers.

use std::fmt::Write as _;

use crate::line::load::Line;

fn kind(line: &Line, step: &str) -> &'static str {
    crate::line::load::step(&line.spec, step)
        .kinds()
        .first()
        .map(|k| k.as_str())
        .unwrap_or("?")
}

/// The release sources: step → (dataset, periods as written).
fn releases(line: &Line) -> Vec<(String, String, String)> {
    (line.dag.order.iter())
        .filter_map(|s| {
            let src = crate::line::load::step(&line.spec, s).source.as_ref()?;
            let r = src.release.as_ref()?;
            Some((
                s.clone(),
                r.dataset.value.clone(),
                r.periods.value.describe(),
            ))
        })
        .collect()
}

/// What a source step reads, as one line of its node: `release: dataset (periods)`.
fn reads(line: &Line, step: &str) -> Option<String> {
    (releases(line).into_iter())
        .find(|(s, _, _)| s == step)
        .map(|(_, d, p)| format!("release: {d} ({p})"))
}

/// The published datasets the line's release sources read, once each.
fn datasets(line: &Line) -> Vec<String> {
    let mut d: Vec<String> = releases(line).into_iter().map(|(_, d, _)| d).collect();
    d.sort();
    d.dedup();
    d
}

fn edges(line: &Line) -> Vec<(String, String)> {
    let mut e: Vec<(String, String)> = line
        .dag
        .order
        .iter()
        .flat_map(|s| {
            crate::line::load::step(&line.spec, s)
                .inputs()
                .into_iter()
                .map(move |i| (i.value.clone(), s.clone()))
        })
        .collect();
    e.sort();
    e.dedup();
    e
}

/// Graphviz DOT.
pub fn dot(line: &Line) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", line.spec.line.value);
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(
        out,
        "  node [shape=box, style=rounded, fontname=\"Helvetica\"];"
    );
    for s in &line.dag.order {
        let k = kind(line, s);
        let shape = match k {
            "source" => ", shape=cylinder",
            "publish" => ", shape=folder",
            _ => "",
        };
        let extra = reads(line, s)
            .map(|r| format!("\\n{r}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  \"{s}\" [label=\"{s}\\n({k}){extra}\"{shape}];");
    }
    for d in datasets(line) {
        let _ = writeln!(
            out,
            "  \"release:{d}\" [label=\"{d}\\n(published dataset)\", shape=note, style=dashed];"
        );
    }
    for (s, d, _) in releases(line) {
        let _ = writeln!(out, "  \"release:{d}\" -> \"{s}\" [style=dashed];");
    }
    for (a, b) in edges(line) {
        let _ = writeln!(out, "  \"{a}\" -> \"{b}\";");
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart.
pub fn mermaid(line: &Line) -> String {
    let mut out = String::from("flowchart LR\n");
    for s in &line.dag.order {
        let k = kind(line, s);
        let (open, close) = match k {
            "source" => ("[(", ")]"),
            "publish" => ("[/", "/]"),
            _ => ("(", ")"),
        };
        let extra = reads(line, s)
            .map(|r| format!("<br/>{r}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {s}{open}\"{s}<br/><i>{k}</i>{extra}\"{close}");
    }
    for d in datasets(line) {
        let _ = writeln!(out, "  release_{d}[[\"{d}<br/><i>published dataset</i>\"]]");
    }
    for (s, d, _) in releases(line) {
        let _ = writeln!(out, "  release_{d} -.-> {s}");
    }
    for (a, b) in edges(line) {
        let _ = writeln!(out, "  {a} --> {b}");
    }
    out
}

/// `valtava graph`: prints the steps of `line` as DOT or Mermaid; exit 1 if the line does
/// not load.
pub(super) fn run(line: &std::path::Path, format: super::GraphFormat) -> std::process::ExitCode {
    match crate::line::load::load(line) {
        Ok((l, _)) => {
            print!(
                "{}",
                match format {
                    super::GraphFormat::Dot => dot(&l),
                    super::GraphFormat::Mermaid => mermaid(&l),
                }
            );
            std::process::ExitCode::SUCCESS
        }
        Err(d) => {
            super::common::print_diags(&d, super::DiagFormat::Human, &super::common::read_source);
            std::process::ExitCode::from(1)
        }
    }
}
