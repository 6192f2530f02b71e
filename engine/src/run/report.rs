//! The run report and how a run fails.
//!
//! [`RunReport`] is what a run returns and writes to `runs/<line>/<run-id>.json`: per step
//! ([`StepReport`], built from the step's counters by `step_reports`) the rows in, out,
//! quarantined and filtered, the rules broken and each dataset check's outcome
//! ([`CheckReport`]: the submitters it names, as a warning or a failure); the published
//! datasets ([`DatasetReport`]); the release, the quarantine and the quality report. A run that fails
//! ends with a [`RunFailure`]: a stable [`RunCode`] (`R001`…`R011`, documented in the README
//! and matched by line tests) and a message, made by `fail`, which passes every message
//! through the scrubber. These types are re-exported from [`crate::run`], where the rest of
//! the engine names them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::{Counters, Shared};
use crate::line::spec::{Severity, StepKind};
use crate::plan::DatasetOutcome;

/// A step in the run report.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub kind: StepKind,
    pub inputs: Vec<String>,
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_quarantined: u64,
    /// Rows outside the step's declared filter.
    pub rows_filtered: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects: Option<u64>,
    /// Rows that broke each rule (all severities).
    pub violations: BTreeMap<String, u64>,
    /// Counts by value, e.g. rows per mapping equivalence.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub mappings: BTreeMap<String, BTreeMap<String, u64>>,
    /// The outcome of each dataset check, by rule id: a broken one is a warning or a
    /// failure by its severity, and names what it found (a missing submitter, a change of
    /// volume) with the numbers.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, CheckReport>,
    pub seconds: f64,
}

/// A dataset check in the run report: its outcome, and what it means for the run.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub level: CheckLevel,
    /// The rule's severity, `warn` or `fail`.
    pub severity: Severity,
    #[serde(flatten)]
    pub outcome: DatasetOutcome,
}

/// What a dataset check's outcome means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckLevel {
    Passed,
    /// Broken, severity `warn`: the run goes on.
    Warning,
    /// Broken, severity `fail`: the run fails (R005).
    Failure,
}

impl CheckLevel {
    /// The level of an outcome of a check of `severity`.
    pub fn of(severity: Severity, passed: bool) -> Self {
        match (passed, severity) {
            (true, _) => CheckLevel::Passed,
            (false, Severity::Fail) => CheckLevel::Failure,
            (false, _) => CheckLevel::Warning,
        }
    }

    /// The level as the reports write it.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckLevel::Passed => "passed",
            CheckLevel::Warning => "warning",
            CheckLevel::Failure => "failure",
        }
    }
}

/// A published dataset in the run report.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetReport {
    pub dataset: String,
    pub step: String,
    pub rows: u64,
    /// The dimension that is an area (the `area` its aggregate declared), so that the
    /// daemon's indicator API knows its area filter from the release's manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// Disclosure control switched off, with the line's reason (`{"off": …}`), or the
    /// measures decided by counts of their own (`{"measures": {…}, "unpublished": […]}`);
    /// absent otherwise, so the manifests of other datasets are as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disclosure: Option<DisclosureNote>,
}

/// What the release says of a dataset's disclosure control where it differs from the
/// default: off, or with measures decided by counts of their own.
#[derive(Debug, Clone, Serialize)]
pub struct DisclosureNote {
    /// Why no person can be recognised, as the line gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub off: Option<crate::line::spec::Text>,
    /// Each measure decided by a count of its own: `measure: count`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub measures: BTreeMap<String, String>,
    /// The deciding counts that are not published.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unpublished: Vec<String>,
}

impl DisclosureNote {
    /// The note of a publish step, if its disclosure control is not the default.
    pub fn of(p: &crate::line::spec::PublishSpec) -> Option<Self> {
        let d = p.disclosure.as_ref()?;
        let note = DisclosureNote {
            off: d.off.as_ref().map(|t| t.value.clone()),
            measures: (d.measures.iter())
                .map(|(m, c)| (m.value.clone(), c.value.clone()))
                .collect(),
            unpublished: d.unpublished.iter().map(|n| n.value.clone()).collect(),
        };
        (note.off.is_some() || !note.measures.is_empty()).then_some(note)
    }
}

/// The run report, written to `runs/<line>/<run-id>.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub line: String,
    pub line_file: String,
    pub line_hash: String,
    pub engine_version: String,
    pub params: BTreeMap<String, String>,
    pub status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunFailure>,
    pub started: String,
    pub seconds: f64,
    pub steps: BTreeMap<String, StepReport>,
    /// The steps in the order the line runs them.
    pub step_order: Vec<String>,
    pub codesets: BTreeMap<String, crate::line::codeset::CodesetUse>,
    pub datasets: Vec<DatasetReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    pub quarantine: Vec<String>,
    /// The quality report, as JSON and as HTML.
    pub quality: Vec<String>,
}

/// Why a run failed: a stable code and a message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RunFailure {
    pub code: RunCode,
    pub message: String,
}

impl std::fmt::Display for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.code, self.message)
    }
}

/// Run failure codes, defined with the other codes at the bottom so that every layer
/// can say which one its errors fail a run with.
pub use crate::diag::RunCode;

impl Serialize for RunCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Succeeded,
    Failed,
}

impl RunStatus {
    /// The status as written in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run failure; its message goes into the run report, the log, the lineage event and the
/// daemon's job, so it passes the scrubber here, where every failure is made.
pub(super) fn fail(code: RunCode, message: impl std::fmt::Display) -> RunFailure {
    let message = message.to_string();
    // The query engine quotes the values it fails on.
    let message = if code == RunCode::Engine {
        crate::redact::unquoted(&message)
    } else {
        message
    };
    RunFailure {
        code,
        message: crate::redact::scrubbed(message),
    }
}

/// What a run ends with.
#[derive(Debug)]
pub enum RunError {
    /// The line file is invalid.
    Invalid(Vec<crate::diag::Diagnostic>),
    /// The run failed; the report (when the run got that far) is in the store.
    Failed(RunFailure, Option<Box<RunReport>>),
}

/// Each step's part of the report, from its counters and timings, in the line's order.
pub(super) fn step_reports(shared: &Shared) -> BTreeMap<String, StepReport> {
    let timings = shared.timings.lock().map(|t| t.clone()).unwrap_or_default();
    shared
        .line
        .dag
        .order
        .iter()
        .map(|s| {
            let c = &shared.counters[s];
            let spec = crate::line::load::step(&shared.line.spec, s);
            let kind = spec.kinds()[0];
            (
                s.clone(),
                StepReport {
                    kind,
                    inputs: spec.inputs().iter().map(|i| i.value.clone()).collect(),
                    rows_in: c.rows_in.load(Ordering::Relaxed),
                    rows_out: c.rows_out.load(Ordering::Relaxed),
                    rows_quarantined: c.quarantined.load(Ordering::Relaxed),
                    rows_filtered: c.filtered.load(Ordering::Relaxed),
                    objects: (kind == StepKind::Source).then(|| c.objects.load(Ordering::Relaxed)),
                    violations: c
                        .quality
                        .lock()
                        .map(|q| q.violations.clone())
                        .unwrap_or_default(),
                    mappings: c
                        .quality
                        .lock()
                        .map(|q| q.metrics.clone())
                        .unwrap_or_default(),
                    checks: checks_of(shared, s, c),
                    seconds: timings.get(s).copied().unwrap_or_default(),
                },
            )
        })
        .collect()
}

/// The outcomes of step `step`'s dataset checks, with their severities, by rule id. The
/// submitters they name are values of the data (a file's name, a column): scrubbed, as
/// the report is also printed.
fn checks_of(shared: &Shared, step: &str, c: &Counters) -> BTreeMap<String, CheckReport> {
    let (Some(plan), Ok(q)) = (shared.check_plans.get(step), c.quality.lock()) else {
        return BTreeMap::new();
    };
    plan.dataset_checks
        .iter()
        .filter_map(|check| {
            let mut outcome = q.dataset.get(&check.id)?.clone();
            outcome.observed = crate::redact::scrubbed(&outcome.observed);
            for f in &mut outcome.findings {
                f.submitter = crate::redact::scrubbed(&f.submitter);
            }
            Some((
                check.id.clone(),
                CheckReport {
                    level: CheckLevel::of(check.severity, outcome.passed),
                    severity: check.severity,
                    outcome,
                },
            ))
        })
        .collect()
}
