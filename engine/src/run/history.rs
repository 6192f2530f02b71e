//! The line's history, read before a run's steps start: for each of the
//! [`EARLIER_PERIODS`] periods before the run's, its current release (the run its
//! `latest.json` names) and the counts by submitter that run's quality report recorded.
//! The dataset checks (`change`) and the quality report's trend get them as plain data
//! ([`crate::plan::history`]): no step reads the store, and the steps stay below the run.
//!
//! A period without a current release is left out. One whose pointer or quality report
//! cannot be read is kept as [`Recorded::Unreadable`] with why: a check that needs it says
//! so instead of passing, and the run goes on.

use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::Deserialize;

use crate::line::load::Line;
use crate::line::params::ParamValue;
use crate::plan::history::{EARLIER_PERIODS, EarlierPeriod, History, Recorded, StepCounts};
use crate::store::Store;

/// What the history reads of a stored quality report (`artefacts::quality::QualityReport`):
/// per validate step, each submitter's rows and rejected rows.
#[derive(Deserialize)]
struct StoredQuality {
    #[serde(default)]
    submitters: StepCounts,
}

/// Whether the line counts anything by submitter: only then has it a history to read.
fn counts_submitters(line: &Line) -> bool {
    line.spec
        .steps
        .values()
        .any(|s| s.validate.as_ref().is_some_and(|v| v.submitter.is_some()))
}

/// The periods before `period`, nearest first: (how many back, the period's text).
fn earlier_periods(period: &ParamValue) -> Vec<(u32, String)> {
    let mut before =
        crate::line::release::periods_before(period, EARLIER_PERIODS).unwrap_or_default();
    before.reverse();
    (1..).zip(before).collect()
}

/// What the line's earlier periods counted, read from `store`; empty for a line without a
/// period parameter or without a submitter column.
pub(super) async fn load(store: &Store, line: &Line, period: Option<&ParamValue>) -> History {
    let Some(period) = period.filter(|_| counts_submitters(line)) else {
        return History::default();
    };
    let name = line.spec.line.value.as_str();
    let earlier = earlier_periods(period);
    let reads = earlier
        .iter()
        .map(|(back, text)| read_period(store, name, text, *back));
    let periods: Vec<EarlierPeriod> = futures::future::join_all(reads)
        .await
        .into_iter()
        .flatten()
        .collect();
    for p in &periods {
        if let Recorded::Unreadable(why) = &p.recorded {
            tracing::warn!(period = %p.period, "the counts of an earlier period cannot be read: {why}");
        }
    }
    History { periods }
}

/// One earlier period of line `line`; `None` when it has no current release.
async fn read_period(store: &Store, line: &str, period: &str, back: u32) -> Option<EarlierPeriod> {
    let pointer = crate::store::layout::release_pointer(line, period);
    let recorded = match read_json(store, &pointer).await {
        Ok(None) => return None,
        Ok(Some(doc)) => match doc.get("run_id").and_then(|r| r.as_str()) {
            Some(run) => counts_of(store, line, run).await,
            None => Recorded::Unreadable(format!("{pointer} names no run")),
        },
        Err(why) => Recorded::Unreadable(why),
    };
    Some(EarlierPeriod {
        period: period.to_string(),
        back,
        recorded,
    })
}

/// The counts by submitter that the quality report of run `run` recorded.
async fn counts_of(store: &Store, line: &str, run: &str) -> Recorded {
    let path = crate::store::layout::quality_json(line, run);
    match read_json(store, &path).await {
        Ok(Some(doc)) => match serde_json::from_value::<StoredQuality>(doc) {
            Ok(q) => Recorded::Counts {
                run_id: run.to_string(),
                steps: q.submitters,
            },
            Err(e) => Recorded::Unreadable(format!("{path}: {e}")),
        },
        Ok(None) => Recorded::Unreadable(format!("{path} is missing")),
        Err(why) => Recorded::Unreadable(why),
    }
}

/// A JSON document of the store: `None` when there is no such object, an error (as text)
/// when it cannot be read or is not JSON.
async fn read_json(store: &Store, path: &str) -> Result<Option<serde_json::Value>, String> {
    let got = match store.inner.get(&Path::from(path)).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(format!("{path}: {e}")),
    };
    let bytes = got.bytes().await.map_err(|e| format!("{path}: {e}"))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("{path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The history holds the earlier periods that have a current release, nearest first,
    /// with the counts their runs' quality reports recorded; a release whose quality
    /// report is missing is unreadable, never counted as nothing.
    #[tokio::test]
    async fn history_reads_the_current_releases_of_earlier_periods() {
        use crate::plan::history::{Before, SubmitterCounts};
        let store = crate::store::open("memory://").unwrap();
        let put = |path: String, doc: serde_json::Value| {
            let inner = store.inner.clone();
            async move {
                inner
                    .put(&Path::from(path), doc.to_string().into_bytes().into())
                    .await
                    .unwrap();
            }
        };
        let pointer = |run: &str| serde_json::json!({ "run_id": run, "manifest": "m" });
        put(
            crate::store::layout::release_pointer("l", "2025-02"),
            pointer("r2"),
        )
        .await;
        put(
            crate::store::layout::quality_json("l", "r2"),
            serde_json::json!({ "submitters": { "v": {
                "05": { "rows": 100, "rejected": 3, "violations": { "x": 3 } },
                "06": { "rows": 40, "rejected": 0, "violations": {} } } } }),
        )
        .await;
        put(
            crate::store::layout::release_pointer("l", "2024-12"),
            pointer("r0"),
        )
        .await;
        let text = "line: l\ntitle: t\nparams: { period: { kind: month } }\nsteps:\n  s: { source: { format: csv, location: x.csv, columns: { h: string } } }\n  v: { validate: { input: s, submitter: h, rules: [] } }\n";
        let (line, _) =
            crate::line::load::load_text("l.yaml", std::path::Path::new("."), text.into()).unwrap();
        let march =
            crate::line::params::parse_value(crate::line::spec::ParamKind::Month, "2025-03")
                .unwrap();
        let h = load(&store, &line, Some(&march)).await;
        let periods: Vec<(&str, u32)> = h
            .periods
            .iter()
            .map(|p| (p.period.as_str(), p.back))
            .collect();
        assert_eq!(periods, [("2025-02", 1), ("2024-12", 3)]);
        let Before::Counts(counts) = h.of_step(1, "v") else {
            panic!("{h:?}")
        };
        assert_eq!(
            counts["05"],
            SubmitterCounts {
                rows: 100,
                rejected: 3
            }
        );
        assert_eq!(h.of_step(1, "w"), Before::NoCounts);
        assert_eq!(h.of_step(2, "v"), Before::NoRelease);
        assert!(
            matches!(h.of_step(3, "v"), Before::Unreadable(why) if why.contains("r0.quality.json")),
            "{h:?}"
        );
        // Without a period there is nothing before it.
        assert_eq!(load(&store, &line, None).await, History::default());
    }
}
