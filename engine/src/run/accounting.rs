//! What a run counts while rows stream, beside the row totals: per step, the rows that broke
//! each rule (overall and per submitter), the outcomes of dataset checks and the counted
//! values of metric columns. The run and quarantine fill these; the quality report in
//! [`crate::artefacts::quality`] reads them after the run. They live with the run so that
//! the run never depends on the artefacts written from it.
//!
//! Here too are the row totals themselves, a step's [`Counters`], and the check at the end
//! of a run that every row is accounted for (`account`): each row-preserving step passed,
//! quarantined or filtered every row it received, every consumer received what its
//! producer sent (R007), and no step rejected more than its `max_reject_share` (R006).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::Shared;
use super::report::{RunCode, RunFailure, fail};
use crate::line::spec::StepKind;

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
    /// What each dataset check folded the rows in scope into, by rule id.
    #[serde(skip)]
    pub checks: BTreeMap<String, Option<i64>>,
}

/// One submitter's rows and violations.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SubmitterQuality {
    pub rows: u64,
    pub rejected: u64,
    pub violations: BTreeMap<String, u64>,
}

/// The result of a dataset check (defined with the checks).
pub use crate::plan::DatasetOutcome;

/// Counts of one step.
#[derive(Debug, Default)]
pub struct Counters {
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    pub quarantined: AtomicU64,
    pub filtered: AtomicU64,
    pub objects: AtomicU64,
    /// Bytes of a source's objects that were read, and of those that failed whole (a
    /// parser's row-0 reject: the object could not be read at all).
    pub bytes_read: AtomicU64,
    pub bytes_failed: AtomicU64,
    pub quality: Mutex<crate::run::accounting::StepQuality>,
}

/// Checks that every row is accounted for, and the reject thresholds.
pub(super) fn account(shared: &Shared) -> Result<(), RunFailure> {
    let spec = &shared.line.spec;
    for s in &shared.line.dag.order {
        let c = &shared.counters[s];
        let (rin, rout, rq) = (
            c.rows_in.load(Ordering::Relaxed),
            c.rows_out.load(Ordering::Relaxed),
            c.quarantined.load(Ordering::Relaxed),
        );
        let step = crate::line::load::step(spec, s);
        let kind = step.kinds()[0];
        let rf = c.filtered.load(Ordering::Relaxed);
        if matches!(
            kind,
            StepKind::Source | StepKind::Validate | StepKind::Harmonise
        ) && rin != rout + rq + rf
        {
            return Err(fail(
                RunCode::Accounting,
                format!(
                    "step `{s}` received {rin} rows but passed {rout} and quarantined {rq}: {} rows unaccounted for",
                    rin as i128 - (rout + rq) as i128
                ),
            ));
        }
        for input in step.main_inputs() {
            let sent = shared.counters[input.value.as_str()]
                .rows_out
                .load(Ordering::Relaxed);
            if step.sql.is_none() && sent != rin {
                return Err(fail(
                    RunCode::Accounting,
                    format!("step `{input}` sent {sent} rows but `{s}` received {rin}"),
                ));
            }
        }
        if let Some(v) = &step.validate
            && let Some(max) = &v.max_reject_share
        {
            // An object that could not be read at all (a county's whole file) counts with
            // all its rows: as many as its bytes hold at the rate of the objects read.
            let lost = source_of(shared, s).map_or(0, |src| lost_rows(&shared.counters[&src]));
            let (rq, rin) = (rq + lost, rin + lost);
            let share = if rin > 0 { rq as f64 / rin as f64 } else { 0.0 };
            if share > max.value {
                return Err(fail(
                    RunCode::RejectShare,
                    format!(
                        "step `{s}` rejected {rq} of {rin} rows ({:.1} %{}), more than max_reject_share {:.1} %; nothing is published — see the quarantine",
                        share * 100.0,
                        if lost > 0 {
                            format!(", counting ≈ {lost} rows of objects that could not be read")
                        } else {
                            String::new()
                        },
                        max.value * 100.0
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The source a step's rows come from, following the first main input.
fn source_of(shared: &Shared, step: &str) -> Option<String> {
    let mut s = step.to_string();
    for _ in 0..shared.line.dag.order.len() {
        let spec = crate::line::load::step(&shared.line.spec, &s);
        if spec.source.is_some() {
            return Some(s);
        }
        s = spec.main_inputs().first()?.value.clone();
    }
    None
}

/// Rows a source lost with objects that failed whole, estimated from their size at the
/// bytes per row of the objects it read; all of a source's rows when nothing was read.
fn lost_rows(c: &Counters) -> u64 {
    let failed = c.bytes_failed.load(Ordering::Relaxed);
    if failed == 0 {
        return 0;
    }
    let read = c.bytes_read.load(Ordering::Relaxed).saturating_sub(failed);
    let rows = c.rows_out.load(Ordering::Relaxed);
    if read == 0 || rows == 0 {
        // Nothing readable to compare with: the failed objects are the whole input.
        return 1;
    }
    ((failed as f64) * rows as f64 / read as f64).ceil() as u64
}
