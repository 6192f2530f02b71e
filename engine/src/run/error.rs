//! The errors of the run's dealings beyond its steps: the Ballista cluster, the spill files
//! that steps share, and the recorder of lineage events and the quality report.
//!
//! What a run writes itself (its lease, scratch folder, quarantine, release) fails it at
//! once with a [`RunFailure`](super::RunFailure) of its stable code; these errors are
//! handed to callers that decide (the CLI's `valtava cluster`, a step reading a spill file,
//! a warning for an unsent lineage event), so each says by [`RunIoError::code`] the code a
//! run fails with when it does. Their messages are those the run has always written.

use super::RunCode;

/// What the cluster, a spill file or the recorder failed with. The cluster's variants are
/// made only with the `ballista` feature.
#[derive(Debug, thiserror::Error)]
#[cfg_attr(not(feature = "ballista"), allow(dead_code))]
pub enum RunIoError {
    /// `--engine` is neither `local` nor `ballista://…`.
    #[error("unknown engine `{engine}`; use `local` or `ballista://HOST:PORT`")]
    UnknownEngine { engine: String },
    /// `ballista://…` without a usable host and port.
    #[error("`{engine}` names no scheduler; use ballista://HOST:PORT (port 50050 by default)")]
    NoScheduler { engine: String },
    /// The store is of a kind the cluster's processes cannot open.
    #[error(
        "a Ballista cluster cannot read a `{scheme}://` store; use an s3:// store or a folder the executors share"
    )]
    StoreScheme { scheme: String },
    /// The store's folder could not be made absolute for the cluster.
    #[error("store folder `{url}`: {source}")]
    StoreFolder {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// The session that submits plans to the scheduler could not be set up.
    #[error("engine `{engine}`: {source}")]
    Session {
        engine: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },
    /// The cluster computed a pseudonym: it holds a key.
    #[error(
        "the cluster computes pseudonyms: its scheduler or executors hold a pseudonymisation key; restart them without one"
    )]
    HoldsKey,
    /// The cluster's check query failed for another reason than the missing key.
    #[error("the cluster did not answer: {source}")]
    NoAnswer {
        #[source]
        source: datafusion::error::DataFusionError,
    },
    /// The query engine failed preparing a plan for the cluster or copying a table.
    #[error("{0}")]
    Engine(#[from] datafusion::error::DataFusionError),
    /// Writing a table's Parquet copy failed.
    #[error("{0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A table a step scans could not be copied where the cluster reads it.
    #[error("table `{table}` of step `{step}`: {source}")]
    Copy {
        table: String,
        step: String,
        #[source]
        source: Box<RunIoError>,
    },
    /// `valtava cluster executor --scheduler` is not `HOST:PORT`.
    #[error("--scheduler `{scheduler}`: use HOST:PORT")]
    SchedulerAddress { scheduler: String },
    /// A Ballista scheduler or executor process failed (a Ballista error; boxed, as
    /// Ballista is an optional dependency).
    #[error("{0}")]
    Ballista(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The step writing a spill file failed, so its readers fail too.
    #[error("the producing step failed")]
    ProducerFailed,
    /// The step writing a spill file ended without saying whether it finished.
    #[error("the writer ended before finishing")]
    WriterGone,
    /// The quality report could not be made JSON.
    #[error("{0}")]
    QualityJson(#[source] serde_json::Error),
    /// A lineage event could not be sent to its endpoint.
    #[error("{0}")]
    LineageSend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl RunIoError {
    /// The code a run fails with when this error fails it (the codes its callers pass).
    pub fn code(&self) -> RunCode {
        match self {
            RunIoError::UnknownEngine { .. }
            | RunIoError::NoScheduler { .. }
            | RunIoError::StoreScheme { .. }
            | RunIoError::StoreFolder { .. }
            | RunIoError::Session { .. }
            | RunIoError::SchedulerAddress { .. } => RunCode::Param,
            RunIoError::HoldsKey
            | RunIoError::NoAnswer { .. }
            | RunIoError::Engine(_)
            | RunIoError::Parquet(_)
            | RunIoError::Copy { .. }
            | RunIoError::Ballista(_)
            | RunIoError::ProducerFailed
            | RunIoError::WriterGone => RunCode::Engine,
            RunIoError::QualityJson(_) | RunIoError::LineageSend(_) => RunCode::Write,
        }
    }
}
