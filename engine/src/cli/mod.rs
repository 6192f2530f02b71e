//! The command line: the whole `valtava` program, parsed with clap, one file per command.
//!
//! [`main`] is the program: it tunes the process's memory (`memory`), parses the arguments
//! into `Command` and hands each command to its own file, whose `run` does the command and
//! returns its exit status. `main.rs` only sets the allocator and calls [`main`]. What
//! several commands share (logs, diagnostics and errors on the terminal, the
//! pseudonymisation key and the store, the runtimes, the parsers of flag values) is in
//! `common`.
//!
//! The flags of most commands are declared here, in `Command`, so the whole command line
//! reads in one place; `run` and `serve`, with ten flags or more each, declare theirs beside
//! their code (`run::Args`, `serve::Args`).
//!
//! Some commands only the command line has keep their logic here too: comparing line files
//! (`diff`), generating example input (`generate`), drawing the step graph (`graph`),
//! running a line's tests (`linetest`) and the terminal summary of a run (`report`). The
//! pipeline itself lives in the other folders; these modules only call it.

mod diff;
mod generate;
mod graph;
mod linetest;
mod report;

mod catalog;
mod check;
#[cfg(feature = "ballista")]
mod cluster;
mod common;
mod fmt;
mod gc;
mod memory;
mod plan;
mod range;
mod releases;
mod run;
mod schema;
mod serve;
mod show;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[cfg(feature = "ballista")]
use cluster::ClusterCommand;
use common::{init_logs, key_value};

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
        after_help = "Examples:\n  valtava generate ensihoito --period 2025-03 --rows 1000000 --out /tmp/store\n  valtava generate rokotukset --period 2025 --rows 5000 --bad-share 0.01 --out /tmp/store\n  valtava generate henkilosto --period 2025-Q1 --rows 100000 --out /tmp/store\n  valtava generate sosiaalihuolto --period 2025-H1 --rows 10000 --out /tmp/store\n  valtava generate talous --period 2025 --rows 286 --bad-share 0.05 --out /tmp/store\n  valtava generate valvonta --period 2025-Q1 --rows 5000 --out /tmp/store\n  valtava generate rai --period 2025-H1 --rows 100000 --out /tmp/store\n  valtava generate asiakaskokemus --period 2025 --rows 100000 --out /tmp/store\n  valtava run lines/ensihoito.yaml --param period=2025-03 --store /tmp/store --pseudonym-key-file examples/demo-pseudonym.key"
    )]
    Generate {
        /// ensihoito, hoitoonpaasy, henkilostomitoitus, henkilosto, rokotukset, diabetes,
        /// sosiaalihuolto, talous, valvonta, rai or asiakaskokemus.
        line: String,
        /// The period, as the line's `period` parameter takes it.
        #[arg(long)]
        period: String,
        /// Rows (patients for the FHIR lines; unit-weeks for henkilostomitoitus; employments over
        /// all counties for henkilosto; cases for valvonta; assessments over all counties, 1–3 per client, for rai; answers over all counties for asiakaskokemus; documents, one file each, for sosiaalihuolto; for talous, whose year is 22 workbooks × 13 rows = 286
        /// by definition, the whole years from the period on that hold this many rows).
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
    Run(run::Args),
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
    Serve(serve::Args),
    /// Run a Ballista scheduler or executor that knows Valtava's functions, for
    /// `--engine ballista://HOST:PORT` (builds with `--features ballista`).
    #[cfg(feature = "ballista")]
    #[command(
        subcommand,
        after_help = "Examples:\n  valtava cluster scheduler --bind 10.0.0.5:50050\n  valtava cluster executor --scheduler 10.0.0.5:50050 --bind 10.0.0.6:50051 \\\n      --external-host worker-1.internal\n  valtava run lines/ensihoito.yaml --param period=2025-03 --store s3://thl-valtava/tuotanto \\\n      --engine ballista://10.0.0.5:50050 --pseudonym-key-file /etc/valtava/key\n\nThe cluster never holds the pseudonymisation key and never sees a clear identity code:\nsteps that read clear identity codes run where the run starts, and only their\npseudonymised outputs go to the cluster (a cluster process refuses to start with\nVALTAVA_PSEUDONYM_KEY set). Every process must reach the store: s3:// with AWS_*\nvariables, or a folder mounted at the same path everywhere. Bind to a private address:\nthe scheduler has no authentication."
    )]
    Cluster(ClusterCommand),
}

/// The `valtava` program: tunes the process's memory, parses the arguments and runs the
/// command; its exit status is the command's (2 for a usage error, from clap or the command).
pub fn main() -> ExitCode {
    memory::no_huge_pages();
    memory::prompt_purge();
    let cli = Cli::parse();
    init_logs(cli.log_format);
    match cli.command {
        Command::Check { lines, format } => check::run(&lines, format),
        Command::Graph { line, format } => graph::run(&line, format),
        Command::Plan {
            line,
            store,
            params,
            format,
        } => plan::run(&line, store, &params, format),
        Command::Diff { files, git } => diff::run(&files, git.as_deref()),
        Command::Catalog { lines, out } => catalog::run(&lines, &out),
        Command::Test { files, junit } => linetest::run(&files, junit.as_deref()),
        Command::Fmt { files, check } => fmt::run(&files, check),
        Command::Schema => schema::run(),
        Command::Releases { line, store, json } => releases::run(&line, &store, json),
        Command::Show {
            dataset,
            store,
            line,
            period,
            limit,
        } => show::run(&dataset, &store, line.as_deref(), period.as_deref(), limit),
        Command::Generate {
            line,
            period,
            rows,
            seed,
            bad_share,
            out,
        } => generate::run(&line, &period, rows, seed, bad_share, &out),
        Command::Gc { store } => gc::run(&store),
        Command::Serve(args) => serve::run(args),
        Command::Run(args) => run::run(args),
        #[cfg(feature = "ballista")]
        Command::Cluster(c) => cluster::run(c),
    }
}
