//! Where a release source's rows are: the current release of each chosen period of the
//! line that publishes the dataset (`publish::releases::current_of_dataset`), as the paths
//! of their Parquet objects. The source reader reads them like any Parquet source, adding
//! each row's period ([`crate::plan::PERIOD_COLUMN`]); the run records them as its inputs,
//! so a changed upstream release changes the fingerprint of the release this run makes.

use std::collections::{BTreeMap, BTreeSet};

use tracing::{info, warn};

use super::report::{RunCode, RunFailure, fail};
use crate::line::spec::{ParamKind, ReleaseSourceSpec};

/// The Parquet objects of the releases a release source reads, one per period, oldest
/// first; none is R004 (for `current` and `previous`: that period has no current release).
pub(super) async fn release_locations(
    store: &crate::store::Store,
    fill: &BTreeMap<String, String>,
    step: &str,
    spec: &ReleaseSourceSpec,
) -> Result<Vec<String>, RunFailure> {
    let dataset = spec.dataset.value.as_str();
    let found = crate::publish::releases::current_of_dataset(store, dataset)
        .await
        .map_err(|e| fail(e.code(), format!("source `{step}`: {e}")))?;
    let (line, current) = found.unwrap_or_default();
    let run = (fill.get(crate::line::release::PERIOD_PARAM))
        .and_then(|t| crate::line::params::parse_value(ParamKind::Period, t).ok());
    let available: BTreeSet<String> = current.keys().cloned().collect();
    let chosen = crate::line::release::choose(spec.periods.value, run.as_ref(), &available);
    for p in &chosen.missing {
        warn!(source = %step, dataset, period = %p, "no current release of this period; skipped");
    }
    if chosen.read.is_empty() {
        let wanted = match chosen.missing.as_slice() {
            [] => String::new(),
            some => format!(" of {}", some.join(", ")),
        };
        return Err(fail(
            RunCode::NoInput,
            format!(
                "source `{step}`: no current release{wanted} of dataset `{dataset}` (periods: {}) in store {}",
                spec.periods.value.describe(),
                store.url
            ),
        ));
    }
    info!(source = %step, dataset, line = %line, periods = ?chosen.read, "reading releases");
    Ok(chosen
        .read
        .iter()
        .map(|p| crate::store::layout::release_file(&line, p, &current[p], dataset, "parquet"))
        .collect())
}

/// The releases a release source would read: the line that publishes the dataset, the
/// chosen periods that have a current release with its run id (oldest first), and the
/// periods it wanted that have none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    pub line: String,
    pub read: Vec<(String, String)>,
    pub missing: Vec<String>,
}

/// What a release source reads for a run with the parameters `fill` (`valtava plan`, the
/// lineage events); `None` when no line of the store has released the dataset.
pub async fn reading(
    store: &crate::store::Store,
    fill: &BTreeMap<String, String>,
    spec: &ReleaseSourceSpec,
) -> Result<Option<Reading>, crate::publish::PublishError> {
    let found = crate::publish::releases::current_of_dataset(store, &spec.dataset.value).await?;
    let Some((line, current)) = found else {
        return Ok(None);
    };
    let run = (fill.get(crate::line::release::PERIOD_PARAM))
        .and_then(|t| crate::line::params::parse_value(ParamKind::Period, t).ok());
    let available: BTreeSet<String> = current.keys().cloned().collect();
    let chosen = crate::line::release::choose(spec.periods.value, run.as_ref(), &available);
    let read = (chosen.read.into_iter())
        .map(|p| {
            let run = current[&p].clone();
            (p, run)
        })
        .collect();
    Ok(Some(Reading {
        line,
        read,
        missing: chosen.missing,
    }))
}

/// For each release source of `line`, the releases it reads named as the publishing
/// line's lineage events name their outputs (`releases/<line>/<period>/<run>/<dataset>`);
/// none for a source whose releases are not found (reading it then fails the run).
pub(super) async fn read_names(
    store: &crate::store::Store,
    fill: &BTreeMap<String, String>,
    line: &crate::line::load::Line,
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (name, step) in &line.spec.steps {
        let Some(r) = step.source.as_ref().and_then(|s| s.release.as_ref()) else {
            continue;
        };
        let Ok(Some(found)) = reading(store, fill, r).await else {
            continue;
        };
        let names = (found.read.iter())
            .map(|(p, run)| {
                let release = crate::store::layout::release(&found.line, p, run);
                format!("{release}/{}", r.dataset.value)
            })
            .collect();
        out.insert(name.value.clone(), names);
    }
    out
}

/// The period of a release object's path (`releases/<line>/<period>/<run>/<file>`).
pub(super) fn period_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(crate::store::layout::RELEASES)?;
    rest.trim_start_matches('/').split('/').nth(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_object_names_its_period() {
        let path = crate::store::layout::release_file("l", "2025-03", "r1", "d", "parquet");
        assert_eq!(period_of(&path), Some("2025-03"));
        assert_eq!(period_of("inbox/l/2025-03/a.csv"), None);
    }
}
