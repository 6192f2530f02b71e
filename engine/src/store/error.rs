//! The store's one error type (one per layer, issue 28): what failed in opening a store,
//! resolving a location, listing objects or flushing them to disk, kept as a value with its
//! underlying error and the run code it fails a run with, instead of a formatted string, so
//! callers can tell failures apart while the message stays the one the store always wrote.

use crate::diag::RunCode;

/// What failed in the store layer. Each message is the one the store always wrote.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A store URL of a scheme the engine does not open.
    #[error(
        "unsupported store scheme `{scheme}://` in `{url}`; use a folder path, file://, s3:// or memory://"
    )]
    UnsupportedScheme { scheme: String, url: String },
    /// An `s3://` URL without a bucket.
    #[error("`{url}` names no bucket; use s3://bucket/prefix")]
    NoBucket { url: String },
    /// The S3 client could not be built.
    #[error("cannot open `{url}`: {source}")]
    OpenS3 {
        url: String,
        #[source]
        source: object_store::Error,
    },
    /// A local store's folder could not be made.
    #[error("cannot create store folder `{dir}`: {source}")]
    CreateFolder {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    /// A local store's folder could not be opened.
    #[error("cannot open store folder `{dir}`: {source}")]
    OpenFolder {
        dir: String,
        #[source]
        source: object_store::Error,
    },
    /// A folder under a path being made durable could not be listed.
    #[error("{source}")]
    ReadFolder {
        #[source]
        source: std::io::Error,
    },
    /// A file or folder could not be flushed to disk (only the kind of the failure is
    /// told, as before).
    #[error("cannot flush `{path}` to disk: {}", .source.kind())]
    Flush {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A local location without a file name.
    #[error("`{url}` names no file")]
    NoFile { url: String },
    /// A location URL of a scheme the engine does not read.
    #[error("unsupported location scheme `{scheme}://`")]
    UnsupportedLocation { scheme: String },
    /// A location's glob does not parse.
    #[error("bad pattern `{pattern}`: {source}")]
    BadPattern {
        pattern: String,
        #[source]
        source: globset::Error,
    },
    /// The objects matching a location could not be listed.
    #[error("cannot list `{pattern}`: {source}")]
    List {
        pattern: String,
        #[source]
        source: object_store::Error,
    },
    /// The one object a location names could not be read.
    #[error("cannot read `{pattern}`: {source}")]
    Read {
        pattern: String,
        #[source]
        source: object_store::Error,
    },
}

impl StoreError {
    /// The stable run code this error fails a run with: making a store's folder and
    /// flushing what was written are writes (`R008`); opening a store and finding or
    /// reading its objects are reading a source (`R003`).
    pub fn code(&self) -> RunCode {
        match self {
            StoreError::CreateFolder { .. }
            | StoreError::ReadFolder { .. }
            | StoreError::Flush { .. } => RunCode::Write,
            StoreError::UnsupportedScheme { .. }
            | StoreError::NoBucket { .. }
            | StoreError::OpenS3 { .. }
            | StoreError::OpenFolder { .. }
            | StoreError::NoFile { .. }
            | StoreError::UnsupportedLocation { .. }
            | StoreError::BadPattern { .. }
            | StoreError::List { .. }
            | StoreError::Read { .. } => RunCode::Source,
        }
    }
}
