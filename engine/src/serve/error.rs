//! The daemon's errors, apart from the runs it starts (whose failures are the run's):
//!
//! - [`ServeError`]: what stops the daemon at start (the lines folder, the token file, the
//!   listening address, the jobs left in the store) and what a handler fails with reading
//!   the store (releases, a dataset's tables) before it answers. It fails no run, so it
//!   carries no run code: a handler answers it as an `ApiError`.
//! - [`ApiError`]: every error answer of the HTTP API, with its HTTP status and its stable
//!   code string (`not-found`, `bad-params`, …); it answers through `serve::problem`, so a
//!   handler returns `Result<_, ApiError>`. The statuses, codes and messages are the API's
//!   contract (the OpenAPI document and `tests/daemon.rs`).
//! - [`PxError`]: every error answer of the PxWeb API (`/api/v2/…`), with its status and
//!   stable code like `ApiError`, but answered as the Problem object PxWeb API 2.0
//!   specifies (`application/problem+json`, [`PxProblem`]), which its clients read.
//! - `no_route` and `wrong_method`: the router's fallbacks, so that a path or method no
//!   route takes answers with a code like every other error.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use utoipa::ToSchema;

use crate::serve::problem;

/// Why the daemon cannot start, or a handler cannot read what it answers from.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The lines folder could not be listed.
    #[error("cannot read lines folder {dir}: {source}")]
    LinesFolder {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The lines folder holds no line that loads.
    #[error("no valid line files in {dir}")]
    NoLines { dir: PathBuf },
    /// The token file could not be read.
    #[error("cannot read token file {path}: {source}")]
    TokenFileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The token file is not a token file (YAML, or its keys).
    #[error("token file {path}: {source}")]
    TokenFileParse {
        path: PathBuf,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// A token shorter than 16 characters.
    #[error("token file {path}: token `{name}` is shorter than 16 characters")]
    ShortToken { path: PathBuf, name: String },
    /// A `sha256` that is not 64 hex digits.
    #[error("token file {path}: sha256 of `{name}` is not 64 hex digits")]
    BadDigest { path: PathBuf, name: String },
    /// Both or neither of `token` and `sha256`.
    #[error("token file {path}: `{name}` needs exactly one of `token` and `sha256`")]
    TokenOrDigest { path: PathBuf, name: String },
    /// A token an attacker would try first.
    #[error(
        "token file {path}: the token of `{name}` is a well-known weak one; make a long random one (e.g. `openssl rand -hex 32`)"
    )]
    WeakToken { path: PathBuf, name: String },
    /// An upload token that names no submitter.
    #[error(
        "token file {path}: upload token `{name}` names no `submitters` (whose files it uploads, e.g. county codes)"
    )]
    NoSubmitters { path: PathBuf, name: String },
    /// A submitter name that is not letters and digits.
    #[error(
        "token file {path}: submitter `{submitter}` of `{name}` is not letters and digits only"
    )]
    BadSubmitter {
        path: PathBuf,
        name: String,
        submitter: String,
    },
    /// A role that is not one of `roles`.
    #[error("token file {path}: unknown role `{role}` of `{name}` (roles: {roles})")]
    UnknownRole {
        path: PathBuf,
        name: String,
        role: String,
        roles: String,
    },
    /// The jobs a previous daemon left could not be listed.
    #[error("cannot list daemon/jobs: {0}")]
    ListJobs(#[source] object_store::Error),
    /// The address could not be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The listening socket's address could not be read.
    #[error("{0}")]
    LocalAddr(#[source] std::io::Error),
    /// A line's releases could not be listed.
    #[error("{0}")]
    Releases(#[source] crate::publish::PublishError),
    /// A release's Parquet file could not be opened.
    #[error("{path}: {source}")]
    ReleaseFile {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A release's Parquet file could not be read.
    #[error("{path}: {source}")]
    ReleaseBatch {
        path: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    /// The releases' tables could not be put together.
    #[error("{0}")]
    Table(#[source] arrow::error::ArrowError),
    /// A release's object could not be read from the store.
    #[error("{path}: {source}")]
    ReleaseObject {
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// A series larger than the daemon serves.
    #[error("the series of `{dataset}` has more than {max} rows")]
    SeriesTooLarge { dataset: String, max: usize },
    /// A decoding task ended abnormally.
    #[error("a decoding task ended abnormally: {0}")]
    Decode(String),
}

/// The body of every error answer, `{"error": {"code", "message"}}`: the schema `Error` of
/// the OpenAPI document, and its reusable response `Problem` (see [`utoipa::ToResponse`]
/// below), which `serve::problem` builds.
#[derive(Debug, serde::Serialize, ToSchema)]
#[schema(as = Error)]
pub(in crate::serve) struct Problem {
    #[schema(inline)]
    pub(in crate::serve) error: ProblemDetail,
}

/// What went wrong: a stable code and a message for people.
#[derive(Debug, serde::Serialize, ToSchema)]
pub(in crate::serve) struct ProblemDetail {
    /// The stable code (`not-found`, `bad-params`, `unauthorized`, …; see `ApiError::code`).
    pub(in crate::serve) code: String,
    /// What could not be done, for people.
    pub(in crate::serve) message: String,
}

/// `#/components/responses/Problem`: an error answer, `Error` as `application/json`; the
/// paths name it with `(status = …, response = Problem)`.
impl<'r> utoipa::ToResponse<'r> for Problem {
    fn response() -> (
        &'r str,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    ) {
        (
            "Problem",
            utoipa::openapi::ResponseBuilder::new()
                .description("An error")
                .content(
                    "application/json",
                    utoipa::openapi::Content::new(Some(utoipa::openapi::Ref::from_schema_name(
                        <Problem as ToSchema>::name(),
                    ))),
                )
                .into(),
        )
    }
}

/// An error answer of the API: its status ([`ApiError::status`]), its stable code
/// ([`ApiError::code`]) and its message (`Display`), answered as
/// `{"error": {"code", "message"}}` ([`Problem`]) by `serve::problem`. Server-side causes
/// are logged where they happen; the answer names only what could not be done.
#[derive(Debug, thiserror::Error)]
pub(in crate::serve) enum ApiError {
    /// More requests at once than `max_requests` (503, with `Retry-After`).
    #[error("too many requests at once; try again shortly")]
    Busy,
    /// No bearer token (401).
    #[error("a bearer token is required")]
    NoToken,
    /// A token that is not in the token file (401).
    #[error("the token is not valid")]
    BadToken,
    /// A token without the role or the line (403).
    #[error("the token does not allow this")]
    Forbidden,
    /// A body that paused too long (408).
    #[error("the body paused longer than {seconds} s")]
    BodyTimeout { seconds: u64 },
    /// A body that could not be read (400).
    #[error("the body could not be read")]
    BadBody,
    /// A body larger than allowed (413).
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// No such line (404).
    #[error("no line `{0}`")]
    NoLine(String),
    /// No such dataset (404).
    #[error("no dataset `{0}`")]
    NoDataset(String),
    /// No such run, or one the caller may not see (404).
    #[error("no run `{0}`")]
    NoRun(String),
    /// A run that has not written its quality report yet (404).
    #[error("run `{0}` has no quality report yet")]
    QualityNotYet(String),
    /// A run that wrote no quality report (404).
    #[error("run `{0}` wrote no quality report")]
    NoQuality(String),
    /// A dataset whose line has no run with a quality report yet (404).
    #[error("`{0}` has no run with a quality report yet")]
    NoDatasetQuality(String),
    /// No current release of a dataset for the periods asked (404).
    #[error("`{0}` has no published release for the periods asked")]
    NotPublished(String),
    /// A filter that is not a dimension of the dataset (400).
    #[error(
        "`{filter}` is not a dimension of `{dataset}`; filter by {dimensions}, area, period or format"
    )]
    BadFilter {
        filter: String,
        dataset: String,
        dimensions: String,
    },
    /// A format other than csv or json (400).
    #[error("format `{0}`: use csv or json")]
    BadFormat(String),
    /// A catalog search longer than a search may be (400).
    #[error("the search `q` is longer than {max} characters")]
    BadQuery { max: usize },
    /// A query string that is not UTF-8 or not what the path takes (400; `serve::extract::Q`).
    #[error("the query string cannot be read: {0}")]
    BadQueryString(String),
    /// A path parameter that is not UTF-8 or not what the path takes (400;
    /// `serve::extract::P`).
    #[error("the path cannot be read: {0}")]
    BadPath(String),
    /// A path no route takes (404; the router's fallback).
    #[error("no such path")]
    NoRoute,
    /// A method the path does not answer (405, with `Allow`).
    #[error("the path does not answer this method")]
    MethodNotAllowed,
    /// A route whose path parameters do not fit its handler: a bug, logged (500).
    #[error("cannot read the path's parameters")]
    PathParams,
    /// A run request that is not `{"params": {…}}` (400).
    #[error("expected {{\"params\": {{\"name\": \"value\"}}}}: {0}")]
    BadRequest(#[source] serde_json::Error),
    /// Parameters the line does not take (400; the message of the parameter check).
    #[error("{0}")]
    BadParams(String),
    /// The daemon is stopping and starts no runs (503).
    #[error("the daemon is stopping")]
    Stopping,
    /// A file or period name that is not plain (400).
    #[error("file and period names are letters, digits, `.`, `_` and `-`, not starting with `.`")]
    BadName,
    /// A file not named for one of the token's submitters (403).
    #[error(
        "token `{token}` uploads for {submitters}: a file's name starts with one of them and `.`, `_` or `-`"
    )]
    NotYourFile { token: String, submitters: String },
    /// A file no source of the line reads (422).
    #[error("`{file}` is not read by any source of `{line}`; sources read {expected}")]
    NoSource {
        file: String,
        line: String,
        expected: String,
    },
    /// The releases could not be listed (500).
    #[error("cannot read releases")]
    ReadReleases,
    /// A dataset's releases could not be read (500).
    #[error("cannot read the dataset")]
    ReadDataset,
    /// A quality report that is not JSON (500).
    #[error("the quality report cannot be read")]
    ReadQuality,
    /// An upload that could not be stored (500).
    #[error("cannot store the file")]
    StoreUpload,
    /// A dataset that could not be filtered (500).
    #[error("cannot filter")]
    Filter,
    /// A dataset that could not be written as CSV (500).
    #[error("cannot write CSV")]
    WriteCsv,
    /// A dataset whose labels could not be made (500).
    #[error("cannot label the dataset")]
    Label,
    /// A dataset that could not be written as JSON-stat (500).
    #[error("cannot write JSON-stat")]
    WriteJsonStat,
    /// A series larger than the daemon serves whole (413).
    #[error("the series has more than {max} rows: ask for some periods (`period=`)")]
    SeriesTooLarge { max: usize },
    /// No release of a line, period and run (404).
    #[error("no release `{0}`")]
    NoRelease(String),
    /// A release status or note that is refused (400).
    #[error("{0}")]
    BadLabel(String),
    /// A release's status could not be written (500).
    #[error("cannot write the release's status")]
    WriteStatus,
    /// The daemon was started without `--assets` (404).
    #[error("the daemon was started without --assets (Chart.js)")]
    NoAssets,
    /// The assets folder has no Chart.js (404).
    #[error("chart.umd.js not found")]
    NoChart,
}

impl ApiError {
    /// The HTTP status of the answer.
    pub(in crate::serve) fn status(&self) -> StatusCode {
        match self {
            ApiError::Busy | ApiError::Stopping => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NoToken | ApiError::BadToken => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::NotYourFile { .. } => StatusCode::FORBIDDEN,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::BadBody
            | ApiError::BadFilter { .. }
            | ApiError::BadFormat(_)
            | ApiError::BadQuery { .. }
            | ApiError::BadQueryString(_)
            | ApiError::BadPath(_)
            | ApiError::BadRequest(_)
            | ApiError::BadParams(_)
            | ApiError::BadLabel(_)
            | ApiError::BadName => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } | ApiError::SeriesTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::NoLine(_)
            | ApiError::NoDataset(_)
            | ApiError::NoRun(_)
            | ApiError::QualityNotYet(_)
            | ApiError::NoQuality(_)
            | ApiError::NoDatasetQuality(_)
            | ApiError::NotPublished(_)
            | ApiError::NoRelease(_)
            | ApiError::NoRoute
            | ApiError::NoAssets
            | ApiError::NoChart => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NoSource { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::ReadReleases
            | ApiError::ReadDataset
            | ApiError::ReadQuality
            | ApiError::StoreUpload
            | ApiError::WriteStatus
            | ApiError::Filter
            | ApiError::WriteCsv
            | ApiError::Label
            | ApiError::WriteJsonStat
            | ApiError::PathParams => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code of the answer (`error.code`).
    pub(in crate::serve) fn code(&self) -> &'static str {
        match self {
            ApiError::Busy => "busy",
            ApiError::NoToken | ApiError::BadToken => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::BodyTimeout { .. } => "body-timeout",
            ApiError::BadBody => "bad-body",
            ApiError::TooLarge { .. } | ApiError::SeriesTooLarge { .. } => "too-large",
            ApiError::NoLine(_)
            | ApiError::NoDataset(_)
            | ApiError::NoRun(_)
            | ApiError::QualityNotYet(_)
            | ApiError::NoQuality(_)
            | ApiError::NoRelease(_)
            | ApiError::NoDatasetQuality(_)
            | ApiError::NoRoute => "not-found",
            ApiError::MethodNotAllowed => "method-not-allowed",
            ApiError::NotPublished(_) => "not-published",
            ApiError::BadFilter { .. } => "bad-filter",
            ApiError::BadFormat(_) => "bad-format",
            ApiError::BadQuery { .. } | ApiError::BadQueryString(_) => "bad-query",
            ApiError::BadPath(_) => "bad-path",
            ApiError::BadRequest(_) => "bad-request",
            ApiError::BadParams(_) => "bad-params",
            ApiError::BadLabel(_) => "bad-label",
            ApiError::Stopping => "stopping",
            ApiError::BadName => "bad-name",
            ApiError::NotYourFile { .. } => "not-your-file",
            ApiError::NoSource { .. } => "no-source",
            ApiError::ReadReleases
            | ApiError::ReadDataset
            | ApiError::ReadQuality
            | ApiError::StoreUpload
            | ApiError::WriteStatus => "store",
            ApiError::Filter
            | ApiError::WriteCsv
            | ApiError::Label
            | ApiError::WriteJsonStat
            | ApiError::PathParams => "engine",
            ApiError::NoAssets | ApiError::NoChart => "no-assets",
        }
    }
}

impl ApiError {
    /// The answer to a series that could not be read: too large, or the store's or the
    /// engine's fault (logged, not told).
    pub(in crate::serve) fn from_series(e: ServeError) -> ApiError {
        match e {
            ServeError::SeriesTooLarge { max, .. } => ApiError::SeriesTooLarge { max },
            e => {
                tracing::error!("{e}");
                ApiError::ReadDataset
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = problem(self.status(), self.code(), self.to_string());
        if matches!(self, ApiError::Busy) {
            // Busy for a moment only: a client may try again after a second.
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// The answer to a path no route takes: `not-found` as problem JSON (axum's own is an empty
/// 404, which a client cannot tell from a missing dataset), in the PxWeb API's shape under
/// `/api/v2`, whose clients read that.
pub(in crate::serve) async fn no_route(uri: Uri) -> Response {
    unrouted(&uri, ApiError::NoRoute)
}

/// The answer to a method a path does not answer: `method-not-allowed` (405; axum adds the
/// `Allow` header), as [`no_route`] answers.
pub(in crate::serve) async fn wrong_method(uri: Uri) -> Response {
    unrouted(&uri, ApiError::MethodNotAllowed)
}

fn unrouted(uri: &Uri, e: ApiError) -> Response {
    let path = uri.path();
    if path == "/api/v2" || path.starts_with("/api/v2/") {
        PxError::Body(e).into_response()
    } else {
        e.into_response()
    }
}

/// The body of a PxWeb API error answer: the `Problem` of PxWeb API 2.0 (RFC 7807,
/// `application/problem+json`), with the stable code also as a member of its own.
#[derive(Debug, serde::Serialize, ToSchema)]
pub(in crate::serve) struct PxProblem {
    /// `urn:valtava:problem:<code>`: the kind of problem, by its stable code.
    #[serde(rename = "type")]
    pub(in crate::serve) kind: String,
    /// The HTTP status's name (`Bad Request`, `Not Found`, …).
    pub(in crate::serve) title: String,
    /// The HTTP status.
    pub(in crate::serve) status: u16,
    /// What could not be done, for people.
    pub(in crate::serve) detail: String,
    /// The stable code (`bad-selection`, `not-found`, …; see `PxError::code`).
    pub(in crate::serve) code: String,
}

/// `#/components/responses/PxProblem`: a PxWeb API error answer, `PxProblem` as
/// `application/problem+json`.
impl<'r> utoipa::ToResponse<'r> for PxProblem {
    fn response() -> (
        &'r str,
        utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
    ) {
        (
            "PxProblem",
            utoipa::openapi::ResponseBuilder::new()
                .description("A PxWeb API error (RFC 7807)")
                .content(
                    "application/problem+json",
                    utoipa::openapi::Content::new(Some(utoipa::openapi::Ref::from_schema_name(
                        <PxProblem as ToSchema>::name(),
                    ))),
                )
                .into(),
        )
    }
}

/// An error answer of the PxWeb API: its status ([`PxError::status`]), its stable code
/// ([`PxError::code`]) and its message (`Display`), answered as a [`PxProblem`]. Messages
/// repeat at most a few characters of the request (`pxweb::clip`); server-side causes are
/// logged where they happen.
#[derive(Debug, thiserror::Error)]
pub(in crate::serve) enum PxError {
    /// A language other than fi, sv and en (400).
    #[error("language `{0}`: use fi, sv or en")]
    BadLanguage(String),
    /// An output format the API does not write (400).
    #[error("output format `{0}`: use json-stat2, csv, xlsx or px")]
    BadFormat(String),
    /// A query parameter or body that is not what the path takes (400).
    #[error("{0}")]
    BadRequest(String),
    /// A selection of an unknown variable or code, an expression that is none, or more
    /// codes than allowed (400).
    #[error("{0}")]
    BadSelection(String),
    /// A selection of more cells than `maxDataCells` (403, as the specification answers it).
    #[error("the selection has {cells} cells; at most {limit} may be asked at once")]
    TooManyCells { cells: u64, limit: usize },
    /// No such table (404).
    #[error("no table `{0}`")]
    NoTable(String),
    /// No such code list (404).
    #[error("no codelist `{0}`")]
    NoCodelist(String),
    /// A table without a current release (404).
    #[error("table `{0}` has no published release")]
    NotPublished(String),
    /// What the rest of the API answers the same way: a body that could not be read (400,
    /// 408, 413), a path or method no route takes (404, 405), a route whose parameters do
    /// not fit its handler (500).
    #[error("{0}")]
    Body(ApiError),
    /// The table's releases could not be read (500).
    #[error("cannot read the table")]
    ReadTable,
    /// The table's labels could not be made (500).
    #[error("cannot label the table")]
    Label,
    /// An answer that could not be written (500).
    #[error("cannot write {0}")]
    Write(&'static str),
}

impl PxError {
    /// The HTTP status of the answer.
    pub(in crate::serve) fn status(&self) -> StatusCode {
        match self {
            PxError::BadLanguage(_)
            | PxError::BadFormat(_)
            | PxError::BadRequest(_)
            | PxError::BadSelection(_) => StatusCode::BAD_REQUEST,
            PxError::TooManyCells { .. } => StatusCode::FORBIDDEN,
            PxError::NoTable(_) | PxError::NoCodelist(_) | PxError::NotPublished(_) => {
                StatusCode::NOT_FOUND
            }
            PxError::Body(e) => e.status(),
            PxError::ReadTable | PxError::Label | PxError::Write(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The stable code of the answer.
    pub(in crate::serve) fn code(&self) -> &'static str {
        match self {
            PxError::BadLanguage(_) => "bad-language",
            PxError::BadFormat(_) => "bad-format",
            PxError::BadRequest(_) => "bad-request",
            PxError::BadSelection(_) => "bad-selection",
            PxError::TooManyCells { .. } => "too-many-cells",
            PxError::NoTable(_) | PxError::NoCodelist(_) => "not-found",
            PxError::NotPublished(_) => "not-published",
            PxError::Body(e) => e.code(),
            PxError::ReadTable => "store",
            PxError::Label | PxError::Write(_) => "engine",
        }
    }
}

impl IntoResponse for PxError {
    fn into_response(self) -> Response {
        let status = self.status();
        let answer = PxProblem {
            kind: format!("urn:valtava:problem:{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code().to_string(),
        };
        let body = serde_json::to_value(&answer).unwrap_or_default();
        let axum::Json(body) = crate::serve::scrubbed(body);
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}
