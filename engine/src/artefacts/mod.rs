//! What a run leaves behind for people and other systems, written from its report: the
//! OpenLineage events, the quality report (JSON and HTML) and the catalog of lines and
//! datasets. Nothing here changes what is published. What fails here is one
//! [`ArtefactError`].

pub mod catalog;
mod error;
pub mod lineage;
pub mod quality;
pub mod trend;

pub use error::ArtefactError;

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::line::load::Line;
use crate::plan::history::History;
use crate::run::accounting::StepQuality;
use crate::run::record::{Recorder, RunInfo};
use crate::run::{RunIoError, RunReport};

/// The artefacts every run leaves: OpenLineage events and the quality report.
pub struct Artefacts;

impl Recorder for Artefacts {
    fn start_event(&self, run: &RunInfo<'_>, time: &str) -> Value {
        lineage::start(run, time)
    }

    fn end_event(&self, run: &RunInfo<'_>, time: &str, report: &RunReport) -> Value {
        lineage::finish(run, time, report)
    }

    fn quality(
        &self,
        line: &Line,
        report: &RunReport,
        steps: &BTreeMap<String, StepQuality>,
        history: &History,
    ) -> Result<(Value, String), RunIoError> {
        let q = quality::report(line, report, steps, history);
        let json = serde_json::to_value(&q).map_err(RunIoError::QualityJson)?;
        Ok((json, quality::html(&q)))
    }

    fn send<'a>(&'a self, url: &'a str, event: &'a Value) -> BoxFuture<'a, Result<(), RunIoError>> {
        Box::pin(async move {
            lineage::send(url, event)
                .await
                .map_err(|e| RunIoError::LineageSend(e.into()))
        })
    }
}

/// The recorder the commands and the daemon give their runs.
pub fn recorder() -> std::sync::Arc<dyn Recorder> {
    std::sync::Arc::new(Artefacts)
}
