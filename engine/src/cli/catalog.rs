//! `valtava catalog`: a static catalog (catalog.json, index.html) of lines, datasets,
//! columns, rules, owners, legal bases, schedules and column lineage, for the people who use
//! the published data and never read a line file. The catalog itself is built by
//! [`crate::artefacts::catalog`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::DiagFormat;
use super::common::{error, print_diags, read_source};

/// Writes the catalog of `lines` into `out` and prints its page; exit 1 if a line is
/// invalid or the folder cannot be written.
pub(super) fn run(lines: &[PathBuf], out: &Path) -> ExitCode {
    match crate::artefacts::catalog::build(lines) {
        Ok(c) => match crate::artefacts::catalog::write(&c, out) {
            Ok(()) => {
                println!("{}", out.join("index.html").display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                error(&e);
                ExitCode::from(1)
            }
        },
        Err(d) => {
            print_diags(&d, DiagFormat::Human, &read_source);
            ExitCode::from(1)
        }
    }
}
