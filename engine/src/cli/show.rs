//! `valtava show`: a published dataset (the current release of a period) as a table on the
//! terminal, to look at what was published without other tools. The release is read by
//! [`crate::publish::releases`].

use std::process::ExitCode;

use super::common::{current_runtime, error};

/// Prints up to `limit` rows of `dataset`; exit 1 if it cannot be found or read.
pub(super) fn run(
    dataset: &str,
    store: &str,
    line: Option<&str>,
    period: Option<&str>,
    limit: usize,
) -> ExitCode {
    let runtime = match current_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = crate::store::open(store)
        .map_err(crate::publish::PublishError::from)
        .and_then(|s| {
            runtime.block_on(crate::publish::releases::show(
                &s, dataset, line, period, limit,
            ))
        });
    match result {
        Ok(t) => {
            print!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error(&e);
            ExitCode::from(1)
        }
    }
}
