//! `valtava schema`: the JSON Schema of line files (as committed in
//! schemas/line.schema.json), so that editors complete and check line files as they are
//! written.

use std::process::ExitCode;

/// Prints the schema.
pub(super) fn run() -> ExitCode {
    println!("{}", crate::line::schema::line_schema_json());
    ExitCode::SUCCESS
}
