//! `valtava serve`: Valtava as a daemon: lines run on their schedule and when data arrive in
//! their inboxes, with an HTTP API for runs and uploads, the indicator API and the reporting
//! page. This is where production runs; the daemon itself is [`crate::serve`], and this file
//! only turns the flags into its options.

use std::path::PathBuf;
use std::process::ExitCode;

use super::common::{error, key_and_store, memory_limit, runtime, seconds};

/// The flags of `valtava serve` (its help text is the `Serve` command's, in `cli/mod.rs`).
#[derive(clap::Args)]
pub(super) struct Args {
    /// The store: a folder or a URL (file://, memory://).
    #[arg(long, default_value = "./valtava-data", env = "VALTAVA_STORE")]
    store: String,
    /// The folder of line files to run.
    #[arg(long, default_value = "lines")]
    lines: PathBuf,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Token file for the write endpoints (without one, writes are refused).
    #[arg(long, env = "VALTAVA_TOKENS")]
    tokens: Option<PathBuf>,
    /// File holding the pseudonymisation key (otherwise VALTAVA_PSEUDONYM_KEY).
    #[arg(long)]
    pseudonym_key_file: Option<PathBuf>,
    /// Seconds between listings of the inboxes.
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    poll: f64,
    /// Runs at once.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// The largest upload, in MiB.
    #[arg(long, default_value_t = 512)]
    max_upload_mib: usize,
    /// Seconds a running run may go on after SIGTERM.
    #[arg(long, default_value_t = 30.0, value_parser = seconds)]
    grace: f64,
    /// Folder with Chart.js's `chart.umd.js` for the reporting page
    /// (`npm ci --prefix engine/web` puts it in engine/web/node_modules/chart.js/dist).
    #[arg(long, env = "VALTAVA_ASSETS")]
    assets: Option<PathBuf>,
    /// Where runs execute their plans: `local` or `ballista://HOST:PORT`.
    #[arg(long, env = "VALTAVA_ENGINE", default_value = "local")]
    engine: String,
    /// Requests handled at once; more are answered 503 (`/healthz` always answers).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    max_requests: u32,
    /// Seconds an inbox object must stay unchanged before its arrival starts a run (a
    /// file still being copied is not read half-way).
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    settle: f64,
    /// Stop a run after this many seconds (default: each line's `limits.run_minutes`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    deadline_seconds: Option<u64>,
    /// A job interrupted (daemon stopped or crashed during it) this many times is
    /// marked failed at the next start instead of being run again.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,
}

/// Serves until SIGTERM; exit 2 for a usage error (engine, key, store), 1 if the daemon
/// cannot start or fails.
pub(super) fn run(args: Args) -> ExitCode {
    let opts = match options(args) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(crate::serve::serve(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error(&e);
            ExitCode::from(1)
        }
    }
}

/// The daemon's options from the flags; the engine, the key and the store are refused now,
/// not at each run.
fn options(args: Args) -> Result<crate::serve::ServeOptions, ExitCode> {
    // Refused now, not at each run.
    if let Some(problem) = crate::run::engine_problem(&args.engine) {
        error(&problem);
        return Err(ExitCode::from(2));
    }
    let (key, store) = key_and_store(args.pseudonym_key_file.as_ref(), &args.store)?;
    let assets = args.assets.or_else(|| {
        let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web/node_modules/chart.js/dist");
        d.join("chart.umd.js").exists().then_some(d)
    });
    Ok(crate::serve::ServeOptions {
        store,
        lines_dir: args.lines,
        listen: args.listen,
        tokens: args.tokens,
        key,
        poll: std::time::Duration::from_secs_f64(args.poll.max(0.1)),
        workers: args.workers,
        max_upload: args.max_upload_mib.saturating_mul(1 << 20),
        grace: std::time::Duration::from_secs_f64(args.grace),
        assets,
        engine: Some(args.engine),
        max_requests: args.max_requests as usize,
        settle: std::time::Duration::from_secs_f64(args.settle),
        deadline: args.deadline_seconds.map(std::time::Duration::from_secs),
        max_attempts: args.max_attempts,
        memory_limit: memory_limit()?,
    })
}
