//! The run summary printed after a run.

use std::fmt::Write as _;

use crate::run::{CheckLevel, RunReport};

/// A table of steps and counts for the terminal.
pub fn summary(r: &RunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {}  line {}  {}  {:.2} s",
        r.run_id, r.line, r.status, r.seconds
    );
    let w = r.steps.keys().map(|k| k.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(
        out,
        "  {:<w$}  {:<9}  {:>10}  {:>10}  {:>11}  {:>8}",
        "step", "kind", "rows in", "rows out", "quarantined", "filtered"
    );
    for (name, s) in r
        .step_order
        .iter()
        .filter_map(|n| r.steps.get(n).map(|s| (n, s)))
    {
        let kind = serde_json::to_value(s.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {name:<w$}  {kind:<9}  {:>10}  {:>10}  {:>11}  {:>8}",
            s.rows_in, s.rows_out, s.rows_quarantined, s.rows_filtered
        );
    }
    for (name, s) in r
        .step_order
        .iter()
        .filter_map(|n| r.steps.get(n).map(|s| (n, s)))
    {
        for (id, c) in &s.checks {
            if c.level != CheckLevel::Passed {
                let _ = writeln!(
                    out,
                    "  {} {name}: check `{id}`: {}; expected {}",
                    c.level.as_str(),
                    c.outcome.observed,
                    c.outcome.expected
                );
            }
        }
    }
    for d in &r.datasets {
        let _ = writeln!(out, "  dataset {} ({} rows)", d.dataset, d.rows);
    }
    for q in &r.quality {
        let _ = writeln!(out, "  quality {q}");
    }
    if let Some(rel) = &r.release {
        let _ = writeln!(out, "  release {rel}");
    }
    for q in &r.quarantine {
        let _ = writeln!(out, "  quarantine {q}");
    }
    out
}
