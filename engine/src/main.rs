//! The `valtava` command: the allocator, then the command line of [`valtava::cli`].
//!
//! Everything else (parsing, the commands, tuning the allocator's options) is in the
//! library, so that the binary holds only what must be set in the binary: the process's
//! global allocator.

use std::process::ExitCode;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    valtava::cli::main()
}
