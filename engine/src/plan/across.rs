//! What only lines checked together show (`valtava check a.yaml b.yaml …`): a release
//! source reading a dataset that none of them publishes (V111), and lines that read each
//! other's datasets in a cycle (V112). A line reading its own dataset is judged by the
//! loader (`line::release::check_release`).

use std::collections::BTreeMap;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::diag::{Code, Diagnostic};
use crate::line::load::Line;
use crate::line::spec::ReleaseSourceSpec;

/// Every release source of a line, by step name.
fn release_sources(line: &Line) -> impl Iterator<Item = (&str, &ReleaseSourceSpec)> {
    (line.spec.steps.iter())
        .filter_map(|(n, s)| Some((n.value.as_str(), s.source.as_ref()?.release.as_ref()?)))
}

/// The line that publishes each dataset, of `lines`.
fn publishers<'a>(lines: &[&'a Line]) -> BTreeMap<&'a str, &'a str> {
    let mut out = BTreeMap::new();
    for l in lines {
        for p in l.spec.steps.values().filter_map(|s| s.publish.as_ref()) {
            out.entry(p.dataset.value.as_str())
                .or_insert(l.spec.line.value.as_str());
        }
    }
    out
}

/// The release sources' problems across `lines`. With `together` false (one file checked)
/// a dataset no line publishes may be published elsewhere: a warning.
pub fn release_diagnostics(lines: &[&Line], together: bool) -> Vec<Diagnostic> {
    let publisher = publishers(lines);
    let mut diags = Vec::new();
    let mut graph: DiGraph<&str, ()> = DiGraph::new();
    let mut nodes: BTreeMap<&str, NodeIndex> = BTreeMap::new();
    for l in lines {
        let name = l.spec.line.value.as_str();
        nodes.entry(name).or_insert_with(|| graph.add_node(name));
    }
    for l in lines {
        let me = l.spec.line.value.as_str();
        for (step, r) in release_sources(l) {
            let dataset = r.dataset.value.as_str();
            match publisher.get(dataset) {
                Some(&by) if by != me => {
                    graph.add_edge(nodes[by], nodes[me], ());
                }
                Some(_) => {}
                None => {
                    let message = format!(
                        "source `{step}` reads dataset `{dataset}`, which no line checked here publishes"
                    );
                    diags.push(if together {
                        Diagnostic::error(Code::V111, &l.file, r.dataset.at, message)
                            .with_hint("check the line that publishes it together with this one")
                    } else {
                        Diagnostic::warning(Code::V111, &l.file, r.dataset.at, message)
                            .with_hint("checked alone, its publisher cannot be known: check the lines together")
                    });
                }
            }
        }
    }
    diags.extend(cycles(lines, &graph, &nodes, &publisher));
    diags
}

/// An error at each release source that reads a dataset of a line in its own cycle.
fn cycles(
    lines: &[&Line],
    graph: &DiGraph<&str, ()>,
    nodes: &BTreeMap<&str, NodeIndex>,
    publisher: &BTreeMap<&str, &str>,
) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for scc in tarjan_scc(graph).into_iter().filter(|c| c.len() > 1) {
        let mut names: Vec<&str> = scc.iter().map(|n| graph[*n]).collect();
        names.sort();
        for l in lines
            .iter()
            .filter(|l| names.contains(&l.spec.line.value.as_str()))
        {
            for (step, r) in release_sources(l) {
                let Some(by) = publisher.get(r.dataset.value.as_str()) else {
                    continue;
                };
                if *by == l.spec.line.value || !names.contains(by) || !nodes.contains_key(by) {
                    continue;
                }
                diags.push(
                    Diagnostic::error(
                        Code::V112,
                        &l.file,
                        r.dataset.at,
                        format!(
                            "source `{step}` reads `{}` of line `{by}`, and the lines {} read each other's datasets in a cycle",
                            r.dataset.value,
                            names.join(" → ")
                        ),
                    )
                    .with_hint("a line may read what other lines publish only if none of them reads it back"),
                );
            }
        }
    }
    diags
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn line(file: &str, name: &str, publishes: &str, reads: &str) -> Line {
        let text = format!(
            "line: {name}\ntitle: T\nparams:\n  period: {{ kind: month }}\nsteps:\n  \
             r:\n    source:\n      release: {{ dataset: {reads}, periods: current }}\n      \
             columns: {{ alue: string, n: integer }}\n  \
             a:\n    aggregate: {{ input: r, by: [alue], measures: {{ n: sum(n) }} }}\n  \
             p:\n    publish: {{ input: a, dataset: {publishes}, disclosure: {{ min_count: 0, count: n }} }}\n"
        );
        crate::line::load::load_text(file, Path::new("."), text)
            .map(|(l, _)| l)
            .unwrap_or_else(|d| panic!("{d:?}"))
    }

    #[test]
    fn lines_reading_each_other_form_a_cycle() {
        let a = line("a.yaml", "a", "da", "db");
        let b = line("b.yaml", "b", "db", "dc");
        let c = line("c.yaml", "c", "dc", "da");
        let d = release_diagnostics(&[&a, &b, &c], true);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d.iter().all(|d| d.code == Code::V112), "{d:?}");
        // Without the line closing it, no cycle; the dataset no line publishes is an error
        // when checked together, a warning alone.
        let d = release_diagnostics(&[&a, &b], true);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].code, d[0].file.as_str()), (Code::V111, "b.yaml"));
        let alone = release_diagnostics(&[&a], false);
        assert_eq!(alone[0].level, crate::diag::Level::Warning);
    }
}
