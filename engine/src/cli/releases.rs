//! `valtava releases`: the releases of a line in a store (periods, runs, datasets, the
//! current one marked), so that an operator sees what has been published without listing
//! the store by hand. The releases are read by [`crate::publish::releases`].

use std::process::ExitCode;

use super::common::{current_runtime, error};

/// Prints the releases of `line` as a table or JSON; exit 1 if there are none or the store
/// cannot be read.
pub(super) fn run(line: &str, store: &str, json: bool) -> ExitCode {
    let runtime = match current_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = crate::store::open(store)
        .map_err(crate::publish::PublishError::from)
        .and_then(|s| runtime.block_on(crate::publish::releases::list(&s, line)));
    match result {
        Ok(r) if r.is_empty() => {
            eprintln!("no releases of `{line}` in {store}");
            ExitCode::from(1)
        }
        Ok(r) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                print!("{}", crate::publish::releases::render(&r));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            error(&e);
            ExitCode::from(1)
        }
    }
}
