//! `valtava run`: runs one line once (reads its sources, validates, harmonises, aggregates
//! and publishes), for a period by hand, in a scheduler of its own or in CI; the daemon
//! (`valtava serve`) runs lines the same way. The run itself is [`crate::run::run`]; this
//! file turns the flags into its options and prints its report. A range of periods
//! (`--param period=2025-01..2025-06`) is run period by period by `cli/range.rs`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::publish::revision::{ReleaseRequest, ReleaseStatus};
use crate::run::{RunError, RunOptions, RunReport};

use super::DiagFormat;
use super::common::{
    error, key_and_store, key_value, memory_limit, print_diags, read_source, runtime,
};

/// The flags of `valtava run` (its help text is the `Run` command's, in `cli/mod.rs`).
#[derive(clap::Args, Clone)]
pub(super) struct Args {
    pub(super) line: PathBuf,
    /// The store: a folder or a URL (file://, memory://).
    #[arg(long, default_value = "./valtava-data", env = "VALTAVA_STORE")]
    store: String,
    /// A parameter of the line, `NAME=VALUE` (repeatable).
    #[arg(long = "param", value_parser = key_value)]
    pub(super) params: Vec<(String, String)>,
    /// Read a source from elsewhere, `STEP=LOCATION` (repeatable).
    #[arg(long = "source", value_parser = key_value)]
    sources: Vec<(String, String)>,
    /// File holding the pseudonymisation key (otherwise VALTAVA_PSEUDONYM_KEY).
    #[arg(long)]
    pseudonym_key_file: Option<PathBuf>,
    /// Rows per record batch.
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Print the run report as JSON on standard output.
    #[arg(long)]
    pub(super) json: bool,
    /// Also send the run's OpenLineage events to this endpoint (http://host:port/api/v1/lineage).
    #[arg(long, env = "VALTAVA_LINEAGE_URL")]
    lineage_url: Option<String>,
    /// Where the steps' plans run: `local`, or `ballista://HOST:PORT` for a Ballista
    /// cluster (`valtava cluster`; needs a build with `--features ballista`).
    #[arg(long, env = "VALTAVA_ENGINE", default_value = "local")]
    engine: String,
    /// Stop the run after this many seconds (default: the line's `limits.run_minutes`,
    /// 120 minutes without it).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    deadline_seconds: Option<u64>,
    /// The status of the release: `preliminary` (to be revised) or `final` (default: the
    /// line's `release_status`, or `final`).
    #[arg(long, value_enum)]
    status: Option<ReleaseStatus>,
    /// A revision note the release carries (what changed and why; at most 500 characters,
    /// no personal data).
    #[arg(long)]
    note: Option<String>,
    /// With a range of periods: go on with the next period after one fails (without it,
    /// the first failure stops the range).
    #[arg(long)]
    pub(super) keep_going: bool,
}

/// Runs the line and prints its report; exit 2 for a usage error (key, store), 1 if the
/// line is invalid or the run fails.
pub(super) fn run(args: Args) -> ExitCode {
    if let Some(periods) = super::range::periods(&args.params) {
        return super::range::run(args, periods);
    }
    let json = args.json;
    let (line, opts) = match options(args) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    // On a worker thread, not this one: the run's last phase (sorting and writing the
    // quarantine) then reuses the memory the steps freed on the workers, instead of
    // growing this thread's own heap beside theirs (PROFILE.md, twelfth round).
    let ran = runtime.block_on(async move {
        tokio::spawn(async move { crate::run::run(&line, opts).await }).await
    });
    match ran {
        Ok(r) => report(r, json),
        Err(e) => {
            error(format!("the run stopped unexpectedly: {e}"));
            ExitCode::from(1)
        }
    }
}

/// The line file and the run's options from the flags.
pub(super) fn options(args: Args) -> Result<(PathBuf, RunOptions), ExitCode> {
    let (key, store) = key_and_store(args.pseudonym_key_file.as_ref(), &args.store)?;
    let release = ReleaseRequest::new(args.status, args.note).map_err(|e| {
        error(e.to_string());
        ExitCode::from(2)
    })?;
    let opts = RunOptions {
        store,
        params: args.params,
        sources: args.sources.into_iter().collect(),
        key,
        batch_size: args.batch_size as usize,
        progress: std::io::stderr().is_terminal(),
        capture: Default::default(),
        lineage_url: args.lineage_url,
        engine: Some(args.engine),
        deadline: args.deadline_seconds.map(std::time::Duration::from_secs),
        recorder: crate::artefacts::recorder(),
        memory_limit: memory_limit()?,
        release,
    };
    Ok((args.line, opts))
}

/// Prints the run's report (a table, or JSON with `--json`) and its failure.
pub(super) fn report(ran: Result<RunReport, RunError>, json: bool) -> ExitCode {
    match ran {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", super::report::summary(&report));
            }
            ExitCode::SUCCESS
        }
        Err(RunError::Invalid(d)) => {
            print_diags(&d, DiagFormat::Human, &read_source);
            ExitCode::from(1)
        }
        Err(RunError::Failed(f, report)) => {
            if let Some(r) = &report {
                if json {
                    println!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
                } else {
                    print!("{}", super::report::summary(r));
                }
            }
            eprintln!("error[{}]: {}", f.code, crate::redact::scrub(&f.message));
            ExitCode::from(1)
        }
    }
}
