//! The run's hook for what it leaves for people besides its release: lineage events at its
//! start and end and the quality report. The run decides when and where they are written
//! (and that a failure to write one fails the run or only warns); a [`Recorder`] decides
//! what they say. [`crate::artefacts::Artefacts`] is the one the commands and the daemon
//! pass in, so the run never depends on the artefacts written from it.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::line::load::Line;
use crate::plan::StepPlan;
use crate::plan::history::History;
use crate::run::accounting::StepQuality;
use crate::run::{RunIoError, RunReport};

/// Everything an event needs to know of the run.
pub struct RunInfo<'a> {
    pub line: &'a Line,
    pub plans: &'a BTreeMap<String, StepPlan>,
    pub store_url: &'a str,
    pub run_id: &'a str,
    pub sources: BTreeMap<String, String>,
    /// For each release source, the published releases it reads, named as the publishing
    /// line's lineage events name their outputs (`releases/<line>/<period>/<run>/<dataset>`).
    pub releases: BTreeMap<String, Vec<String>>,
    pub params: &'a BTreeMap<String, String>,
    /// The list placeholders of locations (`period.months` → each month of the period).
    pub parts: &'a BTreeMap<String, Vec<String>>,
}

/// Builds the artefacts of a run from what the run knows.
pub trait Recorder: Send + Sync {
    /// The lineage event of the run's start, at `time` (RFC 3339).
    fn start_event(&self, run: &RunInfo<'_>, time: &str) -> Value;
    /// The lineage event of the run's end, with its report.
    fn end_event(&self, run: &RunInfo<'_>, time: &str, report: &RunReport) -> Value;
    /// The quality report (JSON) and its self-contained page (HTML), from what each step
    /// counted and what the line's earlier periods counted; an error is
    /// [`RunIoError::QualityJson`].
    fn quality(
        &self,
        line: &Line,
        report: &RunReport,
        steps: &BTreeMap<String, StepQuality>,
        history: &History,
    ) -> Result<(Value, String), RunIoError>;
    /// Sends a lineage event to an OpenLineage endpoint; an error is
    /// [`RunIoError::LineageSend`].
    fn send<'a>(&'a self, url: &'a str, event: &'a Value) -> BoxFuture<'a, Result<(), RunIoError>>;
}
