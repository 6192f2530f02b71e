//! The artefacts' one error type, [`ArtefactError`]: sending a lineage event or writing the
//! catalog failed. A run only warns of a lineage event it could not send, and `valtava
//! catalog` shows the message. None fails a run (the quality report's failure is the run's
//! `R008`), so these carry no run code.

use std::path::PathBuf;

/// Why an artefact could not be sent or written. The messages are those the run's warning
/// and the command line show.
#[derive(Debug, thiserror::Error)]
pub enum ArtefactError {
    /// A lineage endpoint that is not `http://…`.
    #[error("lineage URL `{url}`: only http:// is supported")]
    NotHttp { url: String },
    /// The endpoint did not accept a connection within the time allowed.
    #[error("{url}: connection timed out")]
    ConnectTimeout { url: String },
    /// The endpoint could not be connected to.
    #[error("{url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// The endpoint did not answer within the time allowed.
    #[error("{url}: no answer")]
    NoAnswer { url: String },
    /// Sending the request or reading the answer failed.
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// The endpoint answered with a status other than 2xx.
    #[error("{url} answered `{status_line}`")]
    Refused { url: String, status_line: String },
    /// An event or the catalog could not be encoded as JSON.
    #[error("{0}")]
    Json(#[source] serde_json::Error),
    /// The catalog's folder could not be made.
    #[error("{path}: {source}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
