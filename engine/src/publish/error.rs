//! Publishing's one error type (one per layer, issue 28): what failed in writing datasets
//! and documents, protecting and labelling tables, releasing, and reading releases back,
//! kept as a value with its underlying error and the run code it fails a run with, instead
//! of a formatted string, so callers can tell failures apart while the message stays the one
//! publishing always wrote. A store error under a release is carried whole.

use crate::diag::RunCode;
use crate::store::StoreError;

/// What failed in the publish layer. Each message is the one publishing always wrote (for
/// an underlying error, its own message alone unless a context was given).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The store failed under a release (making what was written durable).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stream of batches being written failed.
    #[error("{0}")]
    Stream(#[source] datafusion::error::DataFusionError),
    /// The caller's check of a batch being written refused it (`on_batch`).
    #[error("{0}")]
    Batch(String),
    /// A batch could not be encoded for writing (CSV, decimal commas).
    #[error("{0}")]
    Encode(#[source] arrow::error::ArrowError),
    /// A Parquet file could not be written.
    #[error("{0}")]
    Parquet(#[source] parquet::errors::ParquetError),
    /// A written object's bytes could not be sent to the store.
    #[error("{0}")]
    Upload(#[source] std::io::Error),
    /// A document could not be turned into JSON.
    #[error("{0}")]
    Json(#[source] serde_json::Error),
    /// A JSON document could not be put in the store.
    #[error("cannot write {path}: {source}")]
    Put {
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// The objects of a release could not be listed or read back to describe them.
    #[error("{0}")]
    Describe(#[source] object_store::Error),
    /// A table named a column it does not have.
    #[error("no column {name}")]
    NoColumn { name: String },
    /// A table could not be assembled or computed on (concatenated, cast, masked).
    #[error("{0}")]
    Table(#[source] arrow::error::ArrowError),
    /// A JSON-stat cube would describe more cells than a dataset may.
    #[error("the cube of {dimensions} dimensions has more than {max} cells", max = crate::publish::jsonstat::MAX_CELLS)]
    TooManyCells { dimensions: usize },
    /// A publish step labels a dimension from a code set the line does not load.
    #[error("unknown code set `{name}`")]
    UnknownCodeset { name: String },
    /// A code set table lacks its key column.
    #[error("code set has no column `{key}`")]
    CodesetNoKey { key: String },
    /// A code set's table was being written while its labels were read.
    #[error("{0}")]
    CodesetBusy(#[source] tokio::sync::TryLockError),
    /// The releases of a line could not be listed.
    #[error("cannot list releases of `{line}`: {source}")]
    ListReleases {
        line: String,
        #[source]
        source: object_store::Error,
    },
    /// The releases of the store could not be listed.
    #[error("cannot list releases: {source}")]
    ListAllReleases {
        #[source]
        source: object_store::Error,
    },
    /// No current release publishes the dataset asked for.
    #[error("no published dataset `{dataset}` in {store}")]
    NoDataset { dataset: String, store: String },
    /// A published object could not be read back.
    #[error("{0}")]
    ReadObject(#[source] object_store::Error),
    /// A published Parquet file could not be read back.
    #[error("{0}")]
    ReadParquet(#[source] parquet::errors::ParquetError),
    /// A published table could not be read back or shown.
    #[error("{0}")]
    ReadTable(#[source] arrow::error::ArrowError),
    /// Two rows of a table for one cell of its cube (the dimensions do not identify a row).
    #[error("two rows of the table have the same codes in all {dimensions} dimensions")]
    DuplicateCell { dimensions: usize },
    /// A release's revision note was refused.
    #[error("the revision note is refused: {reason}")]
    BadNote { reason: String },
}

impl PublishError {
    /// The stable run code this error fails a run with, as the run's callers choose it:
    /// writing datasets, documents and releases (and reading a release back to list it in
    /// its manifest) is `R008`; protecting, labelling and shaping a table is the engine's
    /// `R009`; reading published releases is reading a source (`R003`), and a dataset with
    /// no release is no input (`R004`). A store error keeps its own code.
    pub fn code(&self) -> RunCode {
        match self {
            PublishError::Store(e) => e.code(),
            PublishError::Stream(_)
            | PublishError::Batch(_)
            | PublishError::Encode(_)
            | PublishError::Parquet(_)
            | PublishError::Upload(_)
            | PublishError::Json(_)
            | PublishError::Put { .. }
            | PublishError::Describe(_) => RunCode::Write,
            PublishError::NoColumn { .. }
            | PublishError::Table(_)
            | PublishError::TooManyCells { .. }
            | PublishError::DuplicateCell { .. }
            | PublishError::UnknownCodeset { .. }
            | PublishError::CodesetNoKey { .. }
            | PublishError::CodesetBusy(_) => RunCode::Engine,
            PublishError::ListReleases { .. }
            | PublishError::ListAllReleases { .. }
            | PublishError::ReadObject(_)
            | PublishError::ReadParquet(_)
            | PublishError::ReadTable(_) => RunCode::Source,
            PublishError::NoDataset { .. } => RunCode::NoInput,
            PublishError::BadNote { .. } => RunCode::Param,
        }
    }
}
