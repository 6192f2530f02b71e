//! What a run counts while rows stream, beside the row totals: per step, the rows that broke
//! each rule (overall and per submitter), the outcomes of dataset checks and the counted
//! values of metric columns. The run and quarantine fill these; the quality report in
//! [`crate::artefacts::quality`] reads them after the run. They live with the run so that
//! the run never depends on the artefacts written from it.

use std::collections::BTreeMap;

use serde::Serialize;

/// What a step's rules found, accumulated while rows stream.
#[derive(Debug, Default, Clone, Serialize)]
pub struct StepQuality {
    /// Rows that broke each rule (rows in scope only).
    pub violations: BTreeMap<String, u64>,
    /// The same by submitter, with each submitter's row count.
    pub by_submitter: BTreeMap<String, SubmitterQuality>,
    /// Outcomes of the dataset checks.
    pub dataset: BTreeMap<String, DatasetOutcome>,
    /// Counted values of metric columns, e.g. how many rows each mapping mapped as
    /// `equal`, `wider`, `narrower` or left `unmapped`.
    pub metrics: BTreeMap<String, BTreeMap<String, u64>>,
    /// Null counts of columns that a dataset check watches.
    #[serde(skip)]
    pub nulls: BTreeMap<String, u64>,
    /// Latest day (since the epoch) of columns that a freshness check watches.
    #[serde(skip)]
    pub latest: BTreeMap<String, i64>,
}

/// One submitter's rows and violations.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SubmitterQuality {
    pub rows: u64,
    pub rejected: u64,
    pub violations: BTreeMap<String, u64>,
}

/// The result of a dataset check.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DatasetOutcome {
    pub passed: bool,
    pub observed: String,
    pub expected: String,
}
