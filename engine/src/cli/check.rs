//! `valtava check`: line files checked without reading data (YAML, keys, types, steps,
//! inputs, cycles, parameters, code sets, and every expression against its input's
//! columns), so that a mistake is found in review or CI instead of at the line's first run.

use std::path::PathBuf;
use std::process::ExitCode;

use super::DiagFormat;
use super::common::{print_diags, read_source};

/// Checks each file and that no two lines share a name; exit 1 if any file is invalid.
pub(super) fn run(lines: &[PathBuf], format: DiagFormat) -> ExitCode {
    let mut all = Vec::new();
    let mut valid = Vec::new();
    for l in lines {
        match crate::plan::check::check(l) {
            Ok(c) => {
                all.extend(c.warnings);
                valid.push(c.line);
            }
            Err(d) => all.extend(d),
        }
    }
    // What the lines show together: a line name two files give, release sources reading
    // datasets no line here publishes, lines reading each other in a cycle.
    let refs: Vec<_> = valid.iter().collect();
    let mut across = crate::plan::check::shared_names(&refs);
    across.extend(crate::plan::across::release_diagnostics(
        &refs,
        lines.len() > 1,
    ));
    let failing: std::collections::BTreeSet<&str> = (across.iter())
        .filter(|d| d.level == crate::diag::Level::Error)
        .map(|d| d.file.as_str())
        .collect();
    let ok = valid
        .iter()
        .filter(|l| !failing.contains(l.file.as_str()))
        .count();
    all.extend(across);
    print_diags(&all, format, &read_source);
    let failed = lines.len() - ok;
    if format == DiagFormat::Human {
        if failed == 0 {
            eprintln!("{} line file(s) valid", lines.len());
        } else {
            eprintln!("{failed} of {} line file(s) invalid", lines.len());
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
