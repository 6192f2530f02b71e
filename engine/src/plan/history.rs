//! What the earlier periods of a line counted, as plain data: each submitter's rows and
//! rejected rows in each validate step, as the quality report of a period's current release
//! recorded them. The run reads them from the store before its steps start
//! (`run/history.rs`) and hands them down, so that a dataset check can compare the period
//! with an earlier one (the `change` rule) and the quality report can show each submitter's
//! trend; nothing here reads the store, and a check stays a plain function of its inputs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How many earlier periods a run reads: a year of months.
pub const EARLIER_PERIODS: u32 = 12;

/// One submitter's counts in a validate step of one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitterCounts {
    /// Rows in scope (after the step's filter).
    pub rows: u64,
    /// Rows quarantined.
    #[serde(default)]
    pub rejected: u64,
}

/// Each validate step's counts by submitter (step → submitter → counts).
pub type StepCounts = BTreeMap<String, BTreeMap<String, SubmitterCounts>>;

/// What is known of an earlier period that has a current release.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// The counts of the run of its current release.
    Counts { run_id: String, steps: StepCounts },
    /// The release or its quality report could not be read: why. A check that needs the
    /// period says so rather than passing.
    Unreadable(String),
}

/// An earlier period with a current release.
#[derive(Debug, Clone, PartialEq)]
pub struct EarlierPeriod {
    /// The period as the line writes it (`2025-02`, `2025-Q1`, `2024`).
    pub period: String,
    /// How many periods before the run's: 1 is the previous one.
    pub back: u32,
    pub recorded: Recorded,
}

/// The earlier periods of a line that have a current release, nearest first, at most
/// [`EARLIER_PERIODS`] back; empty for a line's first period or a line without a period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub periods: Vec<EarlierPeriod>,
}

/// What a check finds of one earlier period of its step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Before<'a> {
    /// The period has no current release (or lies beyond what the run read).
    NoRelease,
    /// Its release's counts cannot be read: why.
    Unreadable(&'a str),
    /// Its release's quality report has no submitter counts of this step.
    NoCounts,
    /// Each submitter's counts.
    Counts(&'a BTreeMap<String, SubmitterCounts>),
}

impl History {
    /// The period `back` periods before the run's, if it has a current release.
    pub fn period(&self, back: u32) -> Option<&EarlierPeriod> {
        self.periods.iter().find(|p| p.back == back)
    }

    /// What step `step` counted `back` periods before the run's.
    pub fn of_step(&self, back: u32, step: &str) -> Before<'_> {
        match self.period(back).map(|p| &p.recorded) {
            None => Before::NoRelease,
            Some(Recorded::Unreadable(why)) => Before::Unreadable(why),
            Some(Recorded::Counts { steps, .. }) => match steps.get(step) {
                Some(counts) if !counts.is_empty() => Before::Counts(counts),
                _ => Before::NoCounts,
            },
        }
    }
}
