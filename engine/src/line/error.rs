//! The line layer's one error type, [`LineError`]: what went wrong reading a code-set file,
//! parsing a parameter value or formatting a line file, each with the run code it fails a
//! run with. Problems *in* a line file are [`crate::diag::Diagnostic`]s with their own
//! `V…` code; this type is for the functions beneath them, whose message a diagnostic or
//! the command line then carries.

use std::path::PathBuf;

use crate::diag::Diagnostic;
use crate::diag::RunCode;

/// Why reading a code set, parsing a parameter or formatting a line failed. The messages
/// are those the callers (diagnostics, the command line) show.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A CSV code set is not UTF-8.
    #[error("{path} is not UTF-8")]
    NotUtf8 { path: PathBuf },
    /// A CSV code set has no header row.
    #[error("{path} is empty")]
    Empty { path: PathBuf },
    /// A CSV code set could not be parsed.
    #[error("{path}: {source}")]
    Csv {
        path: PathBuf,
        #[source]
        source: arrow::error::ArrowError,
    },
    /// A JSON code set's problem, named with its file.
    #[error("{path}: {source}")]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<LineError>,
    },
    /// A JSON code set is not JSON.
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// A JSON code set is none of the formats read.
    #[error(
        "a JSON code set is a FHIR CodeSystem or ConceptMap, or THL code server JSON with `conceptCodes`"
    )]
    UnknownJson,
    /// A FHIR CodeSystem without concepts.
    #[error("the CodeSystem has no `concept`")]
    NoConcept,
    /// A FHIR ConceptMap without groups.
    #[error("the ConceptMap has no `group`")]
    NoGroup,
    /// THL code server JSON whose codes are not a list.
    #[error("`conceptCodes` is not a list")]
    ConceptCodesNotList,
    /// A code set declared CSV read as JSON.
    #[error("a CSV code set is not JSON")]
    CsvNotJson,
    /// The table of a code set could not be built.
    #[error("{0}")]
    Table(#[source] arrow::error::ArrowError),
    /// A parameter value not of its kind's form (`expected` says which).
    #[error("`{text}` is not {expected}")]
    BadValue {
        text: String,
        expected: &'static str,
    },
    /// A line file that does not parse (its first diagnostic).
    #[error("{}:{}:{}: {}", .0.file, .0.line, .0.col, .0.message)]
    Parse(Box<Diagnostic>),
    /// A line's meaning could not be compared (its spec as JSON).
    #[error("{0}")]
    Meaning(#[source] serde_json::Error),
    /// The formatted text would not parse.
    #[error("formatting would break the file, left alone: {0}")]
    WouldBreak(#[source] Box<LineError>),
    /// The formatted text would mean something else.
    #[error("{file}: formatting would change the line's meaning, left alone")]
    WouldChange { file: String },
}

impl LineError {
    /// The run code this error fails a run with: a bad parameter value is `R001`, a code
    /// set or line file that cannot be read as declared `R003`, a table the query engine's
    /// arrays could not hold `R009`.
    pub fn code(&self) -> RunCode {
        match self {
            LineError::BadValue { .. } => RunCode::Param,
            LineError::Table(_) => RunCode::Engine,
            LineError::InFile { source, .. } | LineError::WouldBreak(source) => source.code(),
            LineError::Read { .. }
            | LineError::NotUtf8 { .. }
            | LineError::Empty { .. }
            | LineError::Csv { .. }
            | LineError::NotJson(_)
            | LineError::UnknownJson
            | LineError::NoConcept
            | LineError::NoGroup
            | LineError::ConceptCodesNotList
            | LineError::CsvNotJson
            | LineError::Parse(_)
            | LineError::Meaning(_)
            | LineError::WouldChange { .. } => RunCode::Source,
        }
    }
}
