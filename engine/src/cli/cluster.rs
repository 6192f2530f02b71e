//! `valtava cluster scheduler|executor`: a Ballista scheduler or executor that knows
//! Valtava's functions, so that `--engine ballista://HOST:PORT` can spread a large line's
//! plans over several machines. Only in builds with `--features ballista` (the module is
//! left out otherwise); the cluster itself is [`crate::run::cluster`].

use std::path::PathBuf;
use std::process::ExitCode;

use super::common::{error, memory_limit, runtime};

#[derive(clap::Subcommand)]
pub(super) enum ClusterCommand {
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

/// `valtava cluster scheduler|executor`: runs until stopped.
pub(super) fn run(c: ClusterCommand) -> ExitCode {
    // The cluster is reachable by whoever reaches its port: it must not be able to
    // pseudonymise (and so reverse pseudonyms by trying every identity code).
    if std::env::var_os("VALTAVA_PSEUDONYM_KEY").is_some() {
        error(
            "the cluster must not hold the pseudonymisation key: unset VALTAVA_PSEUDONYM_KEY for `valtava cluster` (identity codes are pseudonymised where the run starts)",
        );
        return ExitCode::from(2);
    }
    let memory_limit = match memory_limit() {
        Ok(m) => m,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = match c {
        ClusterCommand::Scheduler { bind, .. } => {
            eprintln!("scheduler listening on {bind}");
            runtime.block_on(crate::run::cluster::scheduler(bind))
        }
        ClusterCommand::Executor {
            scheduler,
            bind,
            external_host,
            tasks,
            work_dir,
            ..
        } => runtime.block_on(crate::run::cluster::executor(
            crate::run::cluster::ExecutorOptions {
                scheduler,
                bind,
                external_host,
                tasks,
                work_dir: work_dir.map(|d| d.to_string_lossy().into_owned()),
                memory_limit,
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
