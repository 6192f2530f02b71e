//! The `valtava` command.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use valtava::diag::Diagnostic;
use valtava::run::{RunError, RunOptions};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "valtava", version, about = "Runs Finland's national social- and health-care data production lines.", long_about = None)]
struct Cli {
    /// Log format on standard error (levels from RUST_LOG, default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum DiagFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum PlanFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Dot,
    Mermaid,
}

#[derive(Subcommand)]
enum Command {
    /// Check line files without reading data: YAML, keys, types, steps, inputs, cycles,
    /// parameters, code sets, and every expression against its input's columns.
    #[command(
        after_help = "Examples:\n  valtava check lines/ensihoito.yaml\n  valtava check --format json lines/*.yaml\n\nExit status: 0 valid, 1 invalid, 2 usage error."
    )]
    Check {
        /// Line files.
        #[arg(required = true)]
        lines: Vec<PathBuf>,
        /// `human` (with the source line) or `json` (one array of diagnostics).
        #[arg(long, value_enum, default_value_t = DiagFormat::Human)]
        format: DiagFormat,
    },
    /// Print the steps of a line as a graph (stable output, for reviews).
    #[command(
        after_help = "Examples:\n  valtava graph lines/ensihoito.yaml | dot -Tsvg > ensihoito.svg\n  valtava graph --format mermaid lines/ensihoito.yaml"
    )]
    Graph {
        line: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Show what a line will do without running it: every step's output columns (types,
    /// personal flags) and rules, and how much data its sources would read.
    #[command(
        after_help = "Examples:\n  valtava plan lines/ensihoito.yaml\n  valtava plan lines/ensihoito.yaml --store examples/store --param period=2025-03\n  valtava plan --format json lines/ensihoito.yaml"
    )]
    Plan {
        line: PathBuf,
        /// Look for the sources' data in this store.
        #[arg(long, env = "VALTAVA_STORE")]
        store: Option<String>,
        /// Parameters for the sources' locations, `NAME=VALUE`.
        #[arg(long = "param", value_parser = key_value)]
        params: Vec<(String, String)>,
        /// `text` or `json`.
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
    },
    /// Show what a change to a line file does: steps added, removed and changed, each change
    /// classified and traced to the published datasets it affects (Markdown).
    #[command(
        after_help = "Examples:\n  valtava diff old/ensihoito.yaml lines/ensihoito.yaml\n  valtava diff --git main            # every line changed since main\n  valtava diff --git HEAD~1 lines/ensihoito.yaml"
    )]
    Diff {
        /// OLD and NEW line files; with --git, the line files to compare (default: all changed).
        files: Vec<PathBuf>,
        /// Compare the working tree with this git revision.
        #[arg(long)]
        git: Option<String>,
    },
    /// Write a static catalog (catalog.json, index.html) of lines, datasets, columns, rules,
    /// owners, legal bases, schedules and column lineage.
    #[command(after_help = "Examples:\n  valtava catalog lines/*.yaml --out target/catalog")]
    Catalog {
        #[arg(required = true)]
        lines: Vec<PathBuf>,
        #[arg(long, default_value = "catalog")]
        out: PathBuf,
    },
    /// Run the tests declared in YAML beside lines (fixture rows in, expected rows or
    /// quarantine out).
    #[command(
        after_help = "Examples:\n  valtava test lines/tests/*.test.yaml\n  valtava test lines/tests/ensihoito.test.yaml --junit target/junit.xml\n\nExit status: 0 all passed, 1 a test failed."
    )]
    Test {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also write JUnit XML here.
        #[arg(long)]
        junit: Option<PathBuf>,
    },
    /// Format line files canonically (two-space indentation, comments kept); with --check,
    /// only report the files that are not formatted.
    #[command(
        after_help = "Examples:\n  valtava fmt lines/*.yaml\n  valtava fmt --check lines/*.yaml   # in CI\n\nExit status: 0 formatted, 1 a file is not formatted (--check) or cannot be."
    )]
    Fmt {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        check: bool,
    },
    /// Print the JSON Schema of line files (as committed in schemas/line.schema.json).
    #[command(
        after_help = "Examples:\n  valtava schema > schemas/line.schema.json\n\nEditors pick it up from the first line of a line file:\n  # yaml-language-server: $schema=../schemas/line.schema.json"
    )]
    Schema,
    /// List the releases of a line: periods, runs, datasets; `*` marks the current one.
    #[command(
        after_help = "Examples:\n  valtava releases ensihoito --store examples/store\n  valtava releases ensihoito --json"
    )]
    Releases {
        /// The line's machine name.
        line: String,
        #[arg(long, default_value = "./valtava-data", env = "VALTAVA_STORE")]
        store: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a published dataset (its current release) as a table.
    #[command(
        after_help = "Examples:\n  valtava show ensihoito_kuukausi --store examples/store\n  valtava show ensihoito_kuukausi --period 2025-03 --limit 100"
    )]
    Show {
        /// The dataset's name.
        dataset: String,
        #[arg(long, default_value = "./valtava-data", env = "VALTAVA_STORE")]
        store: String,
        /// Only releases of this line.
        #[arg(long)]
        line: Option<String>,
        /// The period (default: the newest).
        #[arg(long)]
        period: Option<String>,
        /// Rows to print.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Write synthetic input for a line (deterministic for a seed) into a store folder.
    #[command(
        after_help = "Examples:\n  valtava generate ensihoito --period 2025-03 --rows 1000000 --out /tmp/store\n  valtava generate rokotukset --period 2025 --rows 5000 --bad-share 0.01 --out /tmp/store\n  valtava run lines/ensihoito.yaml --param period=2025-03 --store /tmp/store --pseudonym-key-file examples/demo-pseudonym.key"
    )]
    Generate {
        /// ensihoito, hoitoonpaasy, henkilostomitoitus, rokotukset or diabetes.
        line: String,
        /// The period, as the line's `period` parameter takes it.
        #[arg(long)]
        period: String,
        /// Rows (patients for the FHIR lines; unit-weeks for henkilostomitoitus).
        #[arg(long, default_value_t = 10_000)]
        rows: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Share of bad rows, 0–1.
        #[arg(long, default_value_t = 0.02)]
        bad_share: f64,
        /// The store folder to write into.
        #[arg(long, default_value = "./valtava-data")]
        out: PathBuf,
    },
    /// Run a line: read its sources, validate, harmonise, aggregate and publish.
    #[command(
        after_help = "Examples:\n  valtava run lines/ensihoito.yaml --param period=2025-03 --store examples/store \\\n      --pseudonym-key-file examples/demo-pseudonym.key\n  valtava run lines/ensihoito.yaml --param period=2025-03 \\\n      --source tehtavat=file:///srv/inbox/ensihoito/*.csv\n\nExit status: 0 published, 1 the run failed or the line is invalid, 2 usage error."
    )]
    Run {
        line: PathBuf,
        /// The store: a folder or a URL (file://, memory://).
        #[arg(long, default_value = "./valtava-data", env = "VALTAVA_STORE")]
        store: String,
        /// A parameter of the line, `NAME=VALUE` (repeatable).
        #[arg(long = "param", value_parser = key_value)]
        params: Vec<(String, String)>,
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
        json: bool,
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
    },
    /// Remove what killed runs left behind: scratch folders of gone processes, release
    /// prefixes that never got a manifest, partial quarantines, cluster work files.
    #[command(
        after_help = "Example:\n  valtava gc --store /srv/valtava\n\nPrints what it removed as JSON."
    )]
    Gc {
        /// The store: a folder or a URL (file://, s3://).
        #[arg(long, default_value = "./valtava-data", env = "VALTAVA_STORE")]
        store: String,
    },
    /// Run as a daemon: lines on their schedule and when data arrive, an HTTP API, the
    /// indicator API and the reporting page.
    #[command(
        after_help = "Examples:\n  valtava serve --store examples/store --lines lines --listen 127.0.0.1:8080 \\\n      --tokens tokens.yaml --pseudonym-key-file examples/demo-pseudonym.key \\\n      --assets engine/web/node_modules/chart.js/dist\n\nToken file (YAML): tokens: [{ name: pirkanmaa, sha256: <hex>, roles: [upload], lines: [ensihoito], submitters: [pirkanmaa] }]\nRoles: read (runs, quality reports, metrics), run (trigger runs), upload (put files\ninto inboxes; `submitters: [..]` names whose files: each file name starts with one),\nadmin (all). `token:` may\ngive the token itself instead of its sha256.\n\nSIGTERM: no new runs start; running ones get --grace seconds to finish. A run still\ngoing then is stopped; its previous release stays current and it runs again at the\nnext start."
    )]
    Serve {
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
    },
    /// Run a Ballista scheduler or executor that knows Valtava's functions, for
    /// `--engine ballista://HOST:PORT` (builds with `--features ballista`).
    #[cfg(feature = "ballista")]
    #[command(
        subcommand,
        after_help = "Examples:\n  valtava cluster scheduler --bind 10.0.0.5:50050\n  valtava cluster executor --scheduler 10.0.0.5:50050 --bind 10.0.0.6:50051 \\\n      --external-host worker-1.internal\n  valtava run lines/ensihoito.yaml --param period=2025-03 --store s3://thl-valtava/tuotanto \\\n      --engine ballista://10.0.0.5:50050 --pseudonym-key-file /etc/valtava/key\n\nThe cluster never holds the pseudonymisation key and never sees a clear identity code:\nsteps that read clear identity codes run where the run starts, and only their\npseudonymised outputs go to the cluster (a cluster process refuses to start with\nVALTAVA_PSEUDONYM_KEY set). Every process must reach the store: s3:// with AWS_*\nvariables, or a folder mounted at the same path everywhere. Bind to a private address:\nthe scheduler has no authentication."
    )]
    Cluster(ClusterCommand),
}

#[cfg(feature = "ballista")]
#[derive(clap::Subcommand)]
enum ClusterCommand {
    /// The scheduler: plans stages and hands tasks to executors.
    #[command(after_help = "Example:\n  valtava cluster scheduler --bind 127.0.0.1:50050")]
    Scheduler {
        /// Address for clients and executors (gRPC).
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: std::net::SocketAddr,
    },
    /// An executor: runs tasks and serves their results over Arrow Flight (on --bind) and
    /// gRPC (on the next port).
    #[command(
        after_help = "Example:\n  valtava cluster executor --scheduler 127.0.0.1:50050 --bind 127.0.0.1:50051"
    )]
    Executor {
        /// The scheduler, HOST:PORT.
        #[arg(long, default_value = "127.0.0.1:50050")]
        scheduler: String,
        /// Arrow Flight address; gRPC listens on the next port.
        #[arg(long, default_value = "127.0.0.1:50051")]
        bind: std::net::SocketAddr,
        /// The host name the scheduler and clients reach this executor at.
        #[arg(long)]
        external_host: Option<String>,
        /// Tasks at once (default: the cores).
        #[arg(long)]
        tasks: Option<usize>,
        /// Folder for shuffle files (default: a temporary folder).
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE"))
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,valtava=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(valtava::redact::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn print_diags(diags: &[Diagnostic], format: DiagFormat, sources: &dyn Fn(&str) -> Option<String>) {
    match format {
        DiagFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(diags).unwrap_or_default()
        ),
        DiagFormat::Human => {
            for d in diags {
                eprint!("{}", d.render(sources(&d.file).as_deref()));
            }
        }
    }
}

/// An error for the person at the terminal, through the scrubber like every text.
fn error(e: impl std::fmt::Display) {
    eprintln!("error: {}", valtava::redact::scrub(&e.to_string()));
}

fn read_source(file: &str) -> Option<String> {
    std::fs::read_to_string(file).ok()
}

/// The pseudonymisation key and the store of `run` and `serve`; usage errors exit 2.
fn key_and_store(
    key_file: Option<&PathBuf>,
    store: &str,
) -> Result<(Option<Vec<u8>>, valtava::store::Store), ExitCode> {
    let fail = |e: String| {
        error(&e);
        ExitCode::from(2)
    };
    let key = pseudonym_key(key_file).map_err(fail)?;
    let store = valtava::store::open(store).map_err(fail)?;
    Ok((key, store))
}

/// The multi-threaded runtime of `run` and `serve`.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(valtava::run::blocking_threads())
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::from(1)
        })
}

fn pseudonym_key(file: Option<&PathBuf>) -> Result<Option<Vec<u8>>, String> {
    let key = match file {
        Some(f) => {
            let bytes = std::fs::read(f)
                .map_err(|e| format!("cannot read the key file {}: {e}", f.display()))?;
            let text_len = bytes
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .map_or(0, |i| i + 1);
            bytes[..text_len].to_vec()
        }
        None => match std::env::var("VALTAVA_PSEUDONYM_KEY") {
            Ok(k) => k.into_bytes(),
            Err(_) => return Ok(None),
        },
    };
    if key.len() < 16 {
        return Err(
            "the pseudonymisation key is shorter than 16 bytes; use a long random key".into(),
        );
    }
    valtava::redact::set_key(&key);
    Ok(Some(key))
}

/// Turns transparent huge pages off for this process. mimalloc asks the kernel for them, and
/// the query engine allocates and frees large hash tables and buffers over and over: each
/// fresh 2 MiB page is cleared on first touch, which took a fifth of a large run's CPU time
/// (a 10 M row line ran 26.7 s instead of 29–33 s without them; `examples/benchmark`).
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of the calling process; no memory is
    // passed. A failure (an old kernel) leaves huge pages on, which is harmless.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// The allocator's purge delay in milliseconds; see [`prompt_purge`].
#[cfg(feature = "mimalloc")]
const PURGE_DELAY_MS: std::ffi::c_long = 5;

/// mimalloc's option number of the purge delay: `mi_option_purge_delay` follows
/// `mi_option_eager_commit_delay` in mimalloc 2's `mimalloc.h` (the Rust bindings name only
/// the options before it).
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t =
    libmimalloc_sys::mi_option_eager_commit_delay + 1;

/// Returns freed memory to the system 5 ms after it falls free instead of mimalloc's 10 ms.
/// The query engine frees and allocates hash tables, sorted runs and spill buffers from
/// several threads at once; with the longer delay the freed pages of one were still held
/// when the next was allocated. 50 M rows under a 512 MiB limit: 354 MiB against 410 MiB;
/// 10 M rows under 1 GiB: the same time (20.4–21.4 s against 19.3–22.1 s). Shorter delays
/// cost time (3 ms: +6 % at 10 M rows; 0 ms: +55 % at 50 M rows;
/// `examples/benchmark/PROFILE.md`). `MIMALLOC_PURGE_DELAY` still overrides it.
fn prompt_purge() {
    #[cfg(feature = "mimalloc")]
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option of the allocator, before any other thread runs
        // (mimalloc's option setter is not thread-safe); the option is read on each purge.
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
}

fn main() -> ExitCode {
    no_huge_pages();
    prompt_purge();
    let cli = Cli::parse();
    init_logs(cli.log_format);
    match cli.command {
        Command::Check { lines, format } => {
            let mut all = Vec::new();
            let mut valid = Vec::new();
            for l in &lines {
                match valtava::check::check(l) {
                    Ok(c) => {
                        all.extend(c.warnings);
                        valid.push(c.line);
                    }
                    Err(d) => all.extend(d),
                }
            }
            let shared = valtava::check::shared_names(&valid.iter().collect::<Vec<_>>());
            let ok = valid.len() - shared.len();
            all.extend(shared);
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
        Command::Graph { line, format } => match valtava::load::load(&line) {
            Ok((l, _)) => {
                print!(
                    "{}",
                    match format {
                        GraphFormat::Dot => valtava::graph::dot(&l),
                        GraphFormat::Mermaid => valtava::graph::mermaid(&l),
                    }
                );
                ExitCode::SUCCESS
            }
            Err(d) => {
                print_diags(&d, DiagFormat::Human, &read_source);
                ExitCode::from(1)
            }
        },
        Command::Plan {
            line,
            store,
            params,
            format,
        } => {
            let checked = match valtava::check::check(&line) {
                Ok(c) => c,
                Err(d) => {
                    print_diags(&d, DiagFormat::Human, &read_source);
                    return ExitCode::from(1);
                }
            };
            let mut steps = valtava::explain::steps(&checked);
            if let Some(store) = store {
                let values = match valtava::check::bind_params(&checked.line, Some(&params)) {
                    Ok(v) => v,
                    Err(e) => {
                        error(&e);
                        return ExitCode::from(2);
                    }
                };
                let fill: std::collections::BTreeMap<String, String> =
                    values.iter().map(|(k, v)| (k.clone(), v.text())).collect();
                let store = match valtava::store::open(&store) {
                    Ok(s) => s,
                    Err(e) => {
                        error(&e);
                        return ExitCode::from(2);
                    }
                };
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return ExitCode::from(1);
                };
                for s in steps.iter_mut() {
                    if let Some(src) = &checked.line.spec.steps[s.name.as_str()].source {
                        let location = valtava::store::fill(&src.location, &fill);
                        s.data = runtime.block_on(valtava::explain::estimate(
                            &store,
                            &location,
                            &src.format,
                        ));
                    }
                }
            }
            match format {
                PlanFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&steps).unwrap_or_default()
                ),
                PlanFormat::Text => print!(
                    "{}",
                    valtava::explain::render(&checked.line.spec.line, &steps)
                ),
            }
            ExitCode::SUCCESS
        }
        Command::Diff { files, git } => {
            let pairs: Vec<(String, String, String)> = match &git {
                Some(rev) => {
                    let files: Vec<String> = if files.is_empty() {
                        let out = std::process::Command::new("git")
                            .args(["diff", "--name-only", rev, "--", "lines"])
                            .output();
                        match out {
                            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                                .lines()
                                .filter(|l| l.ends_with(".yaml"))
                                .map(String::from)
                                .collect(),
                            Ok(o) => {
                                eprintln!(
                                    "error: git diff failed: {}",
                                    String::from_utf8_lossy(&o.stderr).trim()
                                );
                                return ExitCode::from(2);
                            }
                            Err(e) => {
                                eprintln!("error: cannot run git: {e}");
                                return ExitCode::from(2);
                            }
                        }
                    } else {
                        files.iter().map(|f| f.display().to_string()).collect()
                    };
                    let mut pairs = Vec::new();
                    for f in files {
                        let old = std::process::Command::new("git")
                            .args(["show", &format!("{rev}:{f}")])
                            .output();
                        let old = old
                            .ok()
                            .filter(|o| o.status.success())
                            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                            .unwrap_or_default();
                        let new = std::fs::read_to_string(&f).unwrap_or_default();
                        pairs.push((f, old, new));
                    }
                    pairs
                }
                None => {
                    let [old, new] = files.as_slice() else {
                        error("give OLD and NEW line files, or --git REV");
                        return ExitCode::from(2);
                    };
                    let read = |p: &PathBuf| std::fs::read_to_string(p);
                    match (read(old), read(new)) {
                        (Ok(a), Ok(b)) => vec![(new.display().to_string(), a, b)],
                        (Err(e), _) | (_, Err(e)) => {
                            error(&e);
                            return ExitCode::from(2);
                        }
                    }
                }
            };
            let mut status = ExitCode::SUCCESS;
            for (file, old, new) in pairs {
                let parse = |label: &str, text: &str| {
                    valtava::load::parse(&format!("{file} ({label})"), text)
                };
                let new_spec = if new.is_empty() {
                    None
                } else {
                    Some(parse("new", &new))
                };
                let old_spec = if old.is_empty() {
                    None
                } else {
                    Some(parse("old", &old))
                };
                match (old_spec, new_spec) {
                    (Some(Ok(a)), Some(Ok(b))) => print!(
                        "{}",
                        valtava::diff::markdown(&b.line, &valtava::diff::diff(&a, &b))
                    ),
                    (None, Some(Ok(b))) => {
                        println!("### `{}`: new line file `{file}`", b.line.value)
                    }
                    (Some(Ok(a)), None) => {
                        println!("### `{}`: line file `{file}` removed", a.line.value)
                    }
                    (Some(Err(d)), _) | (_, Some(Err(d))) => {
                        print_diags(&[d], DiagFormat::Human, &|_| None);
                        status = ExitCode::from(1);
                    }
                    (None, None) => {}
                }
            }
            status
        }
        Command::Catalog { lines, out } => match valtava::catalog::build(&lines) {
            Ok(c) => match valtava::catalog::write(&c, &out) {
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
        },
        Command::Test { files, junit } => {
            let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            else {
                return ExitCode::from(1);
            };
            let mut outcomes = Vec::new();
            let mut broken = false;
            for f in &files {
                match runtime.block_on(valtava::linetest::run_file(f, b"valtava-line-test-key")) {
                    Ok(o) => outcomes.extend(o),
                    Err(e) => {
                        error(&e);
                        broken = true;
                    }
                }
            }
            for o in &outcomes {
                match &o.failure {
                    None => println!("ok     {} / {}", o.suite, o.name),
                    Some(f) => println!(
                        "FAILED {} / {}\n       {}",
                        o.suite,
                        o.name,
                        f.replace('\n', "\n       ")
                    ),
                }
            }
            let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
            println!("{} passed, {failed} failed", outcomes.len() - failed);
            if let Some(path) = junit
                && let Err(e) = std::fs::write(&path, valtava::linetest::junit(&outcomes))
            {
                error(format!("{}: {e}", path.display()));
                return ExitCode::from(1);
            }
            if failed > 0 || broken {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Fmt { files, check } => {
            let mut status = ExitCode::SUCCESS;
            for f in &files {
                let name = f.display().to_string();
                let text = match std::fs::read_to_string(f) {
                    Ok(t) => t,
                    Err(e) => {
                        error(format!("{name}: {e}"));
                        status = ExitCode::from(1);
                        continue;
                    }
                };
                match valtava::fmt::format(&name, &text) {
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
        Command::Schema => {
            println!("{}", valtava::schema::line_schema_json());
            ExitCode::SUCCESS
        }
        Command::Generate {
            line,
            period,
            rows,
            seed,
            bad_share,
            out,
        } => {
            if !(0.0..=1.0).contains(&bad_share) {
                error("--bad-share is a share from 0 to 1");
                return ExitCode::from(2);
            }
            let request = valtava::generate::Request {
                line: &line,
                period: &period,
                rows,
                seed,
                bad_share,
                out: &out,
            };
            match valtava::generate::generate(&request) {
                Ok(files) => {
                    for f in files {
                        println!("{f}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    error(&e);
                    ExitCode::from(1)
                }
            }
        }
        Command::Releases { line, store, json } => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    error(&e);
                    return ExitCode::from(1);
                }
            };
            let result = valtava::store::open(&store)
                .and_then(|s| runtime.block_on(valtava::releases::list(&s, &line)));
            match result {
                Ok(r) if r.is_empty() => {
                    eprintln!("no releases of `{line}` in {store}");
                    ExitCode::from(1)
                }
                Ok(r) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                    } else {
                        print!("{}", valtava::releases::render(&r));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    error(&e);
                    ExitCode::from(1)
                }
            }
        }
        Command::Show {
            dataset,
            store,
            line,
            period,
            limit,
        } => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    error(&e);
                    return ExitCode::from(1);
                }
            };
            let result = valtava::store::open(&store).and_then(|s| {
                runtime.block_on(valtava::releases::show(
                    &s,
                    &dataset,
                    line.as_deref(),
                    period.as_deref(),
                    limit,
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
        Command::Gc { store } => {
            let store = match valtava::store::open(&store) {
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
            let collected = runtime.block_on(valtava::gc::collect(&store));
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
        Command::Serve {
            store,
            lines,
            listen,
            tokens,
            pseudonym_key_file,
            poll,
            workers,
            max_upload_mib,
            grace,
            assets,
            engine,
            max_requests,
            settle,
            deadline_seconds,
            max_attempts,
        } => {
            // Refused now, not at each run.
            if let Some(problem) = valtava::run::engine_problem(&engine) {
                error(&problem);
                return ExitCode::from(2);
            }
            let (key, store) = match key_and_store(pseudonym_key_file.as_ref(), &store) {
                Ok(v) => v,
                Err(code) => return code,
            };
            let assets = assets.or_else(|| {
                let d = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("web/node_modules/chart.js/dist");
                d.join("chart.umd.js").exists().then_some(d)
            });
            let opts = valtava::serve::ServeOptions {
                store,
                lines_dir: lines,
                listen,
                tokens,
                key,
                poll: std::time::Duration::from_secs_f64(poll.max(0.1)),
                workers,
                max_upload: max_upload_mib.saturating_mul(1 << 20),
                grace: std::time::Duration::from_secs_f64(grace),
                assets,
                engine: Some(engine),
                max_requests: max_requests as usize,
                settle: std::time::Duration::from_secs_f64(settle),
                deadline: deadline_seconds.map(std::time::Duration::from_secs),
                max_attempts,
            };
            let runtime = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            match runtime.block_on(valtava::serve::serve(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error(&e);
                    ExitCode::from(1)
                }
            }
        }
        Command::Run {
            line,
            store,
            params,
            sources,
            pseudonym_key_file,
            batch_size,
            json,
            lineage_url,
            engine,
            deadline_seconds,
        } => {
            let (key, store) = match key_and_store(pseudonym_key_file.as_ref(), &store) {
                Ok(v) => v,
                Err(code) => return code,
            };
            let opts = RunOptions {
                store,
                params,
                sources: sources.into_iter().collect(),
                key,
                batch_size: batch_size as usize,
                progress: std::io::stderr().is_terminal(),
                capture: Default::default(),
                lineage_url,
                engine: Some(engine),
                deadline: deadline_seconds.map(std::time::Duration::from_secs),
            };
            let runtime = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            // On a worker thread, not this one: the run's last phase (sorting and writing the
            // quarantine) then reuses the memory the steps freed on the workers, instead of
            // growing this thread's own heap beside theirs (PROFILE.md, twelfth round).
            let ran = runtime.block_on(async move {
                tokio::spawn(async move { valtava::run::run(&line, opts).await }).await
            });
            let ran = match ran {
                Ok(r) => r,
                Err(e) => {
                    error(format!("the run stopped unexpectedly: {e}"));
                    return ExitCode::from(1);
                }
            };
            match ran {
                Ok(report) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&report).unwrap_or_default()
                        );
                    } else {
                        print!("{}", valtava::report::summary(&report));
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
                            print!("{}", valtava::report::summary(r));
                        }
                    }
                    eprintln!("error[{}]: {}", f.code, valtava::redact::scrub(&f.message));
                    ExitCode::from(1)
                }
            }
        }
        #[cfg(feature = "ballista")]
        Command::Cluster(c) => cluster(c),
    }
}

/// `valtava cluster scheduler|executor`: runs until stopped.
#[cfg(feature = "ballista")]
fn cluster(c: ClusterCommand) -> ExitCode {
    // The cluster is reachable by whoever reaches its port: it must not be able to
    // pseudonymise (and so reverse pseudonyms by trying every identity code).
    if std::env::var_os("VALTAVA_PSEUDONYM_KEY").is_some() {
        error(
            "the cluster must not hold the pseudonymisation key: unset VALTAVA_PSEUDONYM_KEY for `valtava cluster` (identity codes are pseudonymised where the run starts)",
        );
        return ExitCode::from(2);
    }
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = match c {
        ClusterCommand::Scheduler { bind, .. } => {
            eprintln!("scheduler listening on {bind}");
            runtime.block_on(valtava::cluster::scheduler(bind))
        }
        ClusterCommand::Executor {
            scheduler,
            bind,
            external_host,
            tasks,
            work_dir,
            ..
        } => runtime.block_on(valtava::cluster::executor(
            valtava::cluster::ExecutorOptions {
                scheduler,
                bind,
                external_host,
                tasks,
                work_dir: work_dir.map(|d| d.to_string_lossy().into_owned()),
            },
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error(&e);
            ExitCode::from(1)
        }
    }
}

#[cfg(all(test, feature = "mimalloc"))]
mod tests {
    /// The allocator's purge delay is Valtava's unless the environment names one.
    #[test]
    fn the_purge_delay_is_set_unless_the_environment_sets_it() {
        super::prompt_purge();
        // SAFETY: reads one integer option of the allocator.
        let got = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        let want = std::env::var("MIMALLOC_PURGE_DELAY")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(super::PURGE_DELAY_MS);
        assert_eq!(got, want);
    }
}

/// A number of seconds given on the command line: finite, not negative, at most a year
/// (`inf` or `1e300` would panic when turned into a duration).
fn seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if v.is_finite() && (0.0..=31_536_000.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s} is not between 0 and 31536000 seconds"))
    }
}
