//! `valtava gc`: removes what killed runs left behind in a store (scratch folders of gone
//! processes, release prefixes that never got a manifest, partial quarantines, cluster work
//! files), so that a crash costs no space for good. The collection is
//! [`crate::run::gc`]; this prints what it removed as JSON.

use std::process::ExitCode;

use super::common::{error, runtime};

/// Collects the leftovers of `store`; exit 1 if the store cannot be opened.
pub(super) fn run(store: &str) -> ExitCode {
    let store = match crate::store::open(store) {
        Ok(s) => s,
        Err(e) => {
            error(&e);
            return ExitCode::from(1);
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let collected = runtime.block_on(crate::run::gc::collect(&store));
    match serde_json::to_string_pretty(&collected) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error(e.to_string());
            ExitCode::from(1)
        }
    }
}
