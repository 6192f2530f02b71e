//! `valtava fmt`: line files formatted canonically (two-space indentation, comments kept),
//! so that reviews show changes, not layout; `--check` only reports the files that are not
//! formatted, for CI. The formatter itself is [`crate::line::fmt`].

use std::path::PathBuf;
use std::process::ExitCode;

use super::common::error;

/// Formats (or with `check` only checks) each file; exit 1 if a file is not formatted
/// (`check`) or cannot be read, formatted or written.
pub(super) fn run(files: &[PathBuf], check: bool) -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    for f in files {
        let name = f.display().to_string();
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                error(format!("{name}: {e}"));
                status = ExitCode::from(1);
                continue;
            }
        };
        match crate::line::fmt::format(&name, &text) {
            Ok(formatted) if formatted == text => {}
            Ok(formatted) => {
                if check {
                    println!("{name}: not formatted");
                    status = ExitCode::from(1);
                } else if let Err(e) = std::fs::write(f, formatted) {
                    error(format!("{name}: {e}"));
                    status = ExitCode::from(1);
                } else {
                    println!("{name}: formatted");
                }
            }
            Err(e) => {
                error(&e);
                status = ExitCode::from(1);
            }
        }
    }
    status
}
