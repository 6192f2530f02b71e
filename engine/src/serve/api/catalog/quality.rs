//! The quality summary of a published dataset (`/api/datasets/{id}/quality`): counts from
//! the quality report of the run that made the dataset's newest current release, over the
//! steps whose rows reach the dataset only.
//!
//! A line may read several sources (diabetes: patients, conditions and observations),
//! branch into several datasets, join and aggregate. One total of rows read, filtered and
//! used would add rows of different tables, and count rows a branch to another dataset
//! dropped; so the summary goes source by source: the rows each source read, and what it and
//! the validate and harmonise steps its rows pass before a join or an aggregate filtered
//! and quarantined, each step's counts beside them. Steps that check rows a `sql` or
//! `aggregate` step made (no one source's rows) are listed apart, with their own counts.
//!
//! The run is the one behind the release people are shown (its id is in the release), not
//! the line's latest run, which may have failed or be of another period; finding it needs
//! no look through the daemon's jobs. Counts only: never a row's content, nothing by
//! submitter.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::error;
use utoipa::ToSchema;

use crate::line::load::Line;
use crate::publish::releases::Release;
use crate::publish::revision::ReleaseStatus;
use crate::serve::error::{ApiError, Problem};
use crate::serve::extract::P;
use crate::serve::{AppState, scrubbed};

/// The quality summary of a dataset: counts from the quality report of the run behind its
/// newest current release, over the steps whose rows reach it. No rows, nothing by
/// submitter.
#[derive(Debug, Serialize, ToSchema)]
pub(in crate::serve) struct QualitySummary {
    /// The dataset's name.
    dataset: String,
    /// The line that publishes it.
    line: String,
    /// The run the counts are from: the one that made the dataset's newest current release.
    run_id: String,
    /// That release's period.
    period: String,
    /// When the release was made (RFC 3339, UTC).
    #[schema(format = DateTime)]
    released: Option<String>,
    /// `preliminary` or `final`.
    status: ReleaseStatus,
    /// Each source whose rows reach the dataset, in the line's order, with what was done to
    /// its rows on the way.
    sources: Vec<SourceQuality>,
    /// The steps on the way that check rows a `sql` or `aggregate` step made (a join, a
    /// sum: rows of no one source), in the line's order.
    derived: Vec<StepCounts>,
    /// Rows that broke each row rule of these steps (`reject` rules quarantine them, `warn`
    /// rules count them), for the rules that some row broke.
    reasons: Vec<ReasonCount>,
}

/// One source's rows on their way to the dataset: what its own checks and the validate and
/// harmonise steps its rows pass before a join or an aggregate did to them. When its rows
/// branch and meet again, a row is counted in each branch it passes.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub(in crate::serve) struct SourceQuality {
    /// The source step.
    source: String,
    /// Rows it read.
    rows_read: u64,
    /// Rows its filters and those of the steps after it left out on purpose.
    rows_filtered: u64,
    /// Rows it and the steps after it put in quarantine.
    rows_quarantined: u64,
    /// The source step, then each step after it, in the line's order.
    steps: Vec<StepCounts>,
}

/// The counts of a step that checks rows.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub(in crate::serve) struct StepCounts {
    /// The step.
    step: String,
    /// Rows it received (a source: rows it read).
    rows_in: u64,
    /// Rows its filter left out.
    rows_filtered: u64,
    /// Rows it quarantined.
    rows_quarantined: u64,
    /// Rows it passed on: those received, less those filtered and quarantined.
    rows_out: u64,
}

/// The rows that broke one rule.
#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub(in crate::serve) struct ReasonCount {
    /// The step whose rule it is.
    step: String,
    /// The rule's id: the reason code of its quarantined rows.
    rule: String,
    /// Its quality dimension (conformance, completeness, plausibility).
    category: String,
    /// `reject`, `warn` or `fail`.
    severity: String,
    /// Rows that broke it.
    rows: u64,
}

/// What the summary reads of a stored quality report (`artefacts::quality::QualityReport`).
#[derive(Debug, Default, Deserialize)]
struct StoredReport {
    #[serde(default)]
    steps: BTreeMap<String, StoredStep>,
    #[serde(default)]
    rules: Vec<StoredRule>,
}

#[derive(Debug, Default, Deserialize)]
struct StoredStep {
    #[serde(default)]
    rows_in: u64,
    #[serde(default)]
    rows_filtered: u64,
    #[serde(default)]
    rows_quarantined: u64,
}

#[derive(Debug, Deserialize)]
struct StoredRule {
    step: String,
    id: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    violations: u64,
    /// The outcome of a dataset check: a rule about the whole table, not rows.
    #[serde(default)]
    dataset: Option<serde::de::IgnoredAny>,
}

/// A step that checks rows on the way to a dataset, and the source whose rows it checks
/// (none for rows a `sql` or `aggregate` step made).
#[derive(Debug, PartialEq)]
struct Checking {
    step: String,
    source: Option<String>,
}

/// Whether a step checks rows (and so has counts in the quality report): a source, a
/// validate or a harmonise step.
fn checks_rows(line: &Line, step: &str) -> bool {
    let s = crate::line::load::step(&line.spec, step);
    s.source.is_some() || s.validate.is_some() || s.harmonise.is_some()
}

/// The source whose rows `step` checks: up its main input through validate and harmonise
/// steps to a source; none when the way leads to a `sql` or `aggregate` step.
fn source_of(line: &Line, step: &str) -> Option<String> {
    let mut at = step.to_string();
    // A line is acyclic: the way up is never longer than its steps.
    for _ in 0..=line.dag.order.len() {
        let s = crate::line::load::step(&line.spec, &at);
        if s.source.is_some() {
            return Some(at);
        }
        if s.validate.is_none() && s.harmonise.is_none() {
            return None;
        }
        at = s.main_inputs().first()?.value.clone();
    }
    None
}

/// The steps that check rows reaching the publish step `publish`, in the line's order,
/// each with its source: neither a branch to another dataset nor a source this one does not
/// read.
fn checking_steps(line: &Line, publish: &str) -> Vec<Checking> {
    let upstream = line.dag.upstream(publish);
    (line.dag.order.iter())
        .filter(|s| upstream.contains(*s) && checks_rows(line, s))
        .map(|s| Checking {
            step: s.clone(),
            source: source_of(line, s),
        })
        .collect()
}

/// The dataset's newest current release: the current release of the latest period among
/// those that hold it (periods of one line sort as text: `2025-03`, `2025Q1`, `2025`).
fn newest_current<'a>(releases: &'a [Release], dataset: &str) -> Option<&'a Release> {
    (releases.iter())
        .filter(|r| r.current && r.datasets.iter().any(|(d, _)| d == dataset))
        .max_by(|a, b| (&a.period, &a.released).cmp(&(&b.period, &b.released)))
}

/// A step's counts, or what is wrong with them: more rows filtered and quarantined than
/// received is no report of a finished run (the run checks that every row is accounted for).
fn step_counts(step: &str, s: &StoredStep) -> Result<StepCounts, String> {
    let out = (s.rows_in.checked_sub(s.rows_filtered))
        .and_then(|r| r.checked_sub(s.rows_quarantined))
        .ok_or_else(|| {
            format!(
                "step `{step}` filtered {} and quarantined {} of {} rows",
                s.rows_filtered, s.rows_quarantined, s.rows_in
            )
        })?;
    Ok(StepCounts {
        step: step.to_string(),
        rows_in: s.rows_in,
        rows_filtered: s.rows_filtered,
        rows_quarantined: s.rows_quarantined,
        rows_out: out,
    })
}

/// Adds a step's counts to its source's (which comes first: the steps are in the line's
/// order); a step whose source has no counts in the report goes with the derived ones.
fn add_to_source(
    sources: &mut Vec<SourceQuality>,
    derived: &mut Vec<StepCounts>,
    source: &str,
    c: StepCounts,
) {
    if let Some(q) = sources.iter_mut().find(|q| q.source == source) {
        q.rows_filtered += c.rows_filtered;
        q.rows_quarantined += c.rows_quarantined;
        q.steps.push(c);
    } else if c.step == source {
        sources.push(SourceQuality {
            source: source.to_string(),
            rows_read: c.rows_in,
            rows_filtered: c.rows_filtered,
            rows_quarantined: c.rows_quarantined,
            steps: vec![c],
        });
    } else {
        derived.push(c);
    }
}

/// The summary of `dataset` from the quality report of `release`'s run, over the steps in
/// `checking`; or what is wrong with the report.
fn summarise(
    dataset: &str,
    line: &str,
    release: &Release,
    report: StoredReport,
    checking: &[Checking],
) -> Result<QualitySummary, String> {
    let (mut sources, mut derived) = (Vec::new(), Vec::new());
    for c in checking {
        // A step the report lacks: the release was made by an earlier version of the line.
        let Some(s) = report.steps.get(&c.step) else {
            continue;
        };
        let counts = step_counts(&c.step, s)?;
        match &c.source {
            Some(source) => add_to_source(&mut sources, &mut derived, source, counts),
            None => derived.push(counts),
        }
    }
    let reasons = (report.rules.into_iter())
        .filter(|r| r.dataset.is_none() && r.violations > 0)
        .filter(|r| checking.iter().any(|c| c.step == r.step))
        .map(|r| ReasonCount {
            step: r.step,
            rule: r.id,
            category: r.category,
            severity: r.severity,
            rows: r.violations,
        })
        .collect();
    Ok(QualitySummary {
        dataset: dataset.to_string(),
        line: line.to_string(),
        run_id: release.run_id.clone(),
        period: release.period.clone(),
        released: release.released.clone(),
        status: release.status,
        sources,
        derived,
        reasons,
    })
}

#[utoipa::path(
    get,
    path = "/api/datasets/{id}/quality",
    tag = "catalog",
    summary = "The quality summary of a dataset",
    description = "Counts from the quality report of the run that made the dataset's newest current release, over the steps whose rows reach the dataset: per source, the rows it read and what it and the validate and harmonise steps after it filtered and quarantined (each step's counts beside); the steps that check joined or aggregated rows apart; and the rows that broke each rule (its id is the reason code). No rows and nothing by submitter.",
    params(("id" = String, Path, description = "The dataset's name")),
    responses(
        (status = 200, description = "The summary", body = QualitySummary),
        (status = 400, response = Problem),
        (status = 404, response = Problem),
        (status = 500, response = Problem),
    ),
)]
pub(in crate::serve) async fn get_dataset_quality(
    State(app): AppState,
    P(id): P<String>,
) -> Result<Response, ApiError> {
    let Some((e, d)) = super::find_dataset(&app, &id) else {
        return Err(ApiError::NoDataset(id));
    };
    let line = e.catalog.line.as_str();
    let releases = crate::publish::releases::list_cached(&app.store, line, &app.manifests)
        .await
        .map_err(|err| {
            error!("{err}");
            ApiError::ReadReleases
        })?;
    let Some(release) = newest_current(&releases, &id) else {
        return Err(ApiError::NoDatasetQuality(id));
    };
    let path = crate::store::layout::quality_json(line, &release.run_id);
    let Some(bytes) = app.get_bytes(&path).await else {
        return Err(ApiError::NoDatasetQuality(id));
    };
    let unreadable = |err: String| {
        error!("{path}: {err}");
        ApiError::ReadQuality
    };
    let report: StoredReport =
        serde_json::from_slice(&bytes).map_err(|err| unreadable(err.to_string()))?;
    let checking = checking_steps(&e.line, &d.step);
    let answer = summarise(&id, line, release, report, &checking).map_err(unreadable)?;
    Ok(scrubbed(json!(answer)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two sources joined into `x` (each checked on the way, the join checked after), a
    /// branch of the first into `y`, and a third source into `z`.
    const LINE: &str = "line: t\ntitle: t\nsteps:\n\
        \x20 a: { source: { format: csv, location: a.csv, columns: { k: string, n: integer } } }\n\
        \x20 b: { source: { format: csv, location: b.csv, columns: { k: string } } }\n\
        \x20 c: { source: { format: csv, location: c.csv, columns: { k: string, n: integer } } }\n\
        \x20 a_ok: { validate: { input: a, rules: [{ id: n-pos, expr: \"n >= 0\" }] } }\n\
        \x20 a_muu: { validate: { input: a, rules: [{ id: n-pieni, expr: \"n < 10\" }] } }\n\
        \x20 ab: { sql: { inputs: [a_ok, b], query: \"SELECT a_ok.k, a_ok.n FROM a_ok JOIN b ON a_ok.k = b.k\" } }\n\
        \x20 ab_ok: { validate: { input: ab, rules: [{ id: k-on, expr: \"k IS NOT NULL\" }] } }\n\
        \x20 summat: { aggregate: { input: ab_ok, by: [k], measures: { m: sum(n) } } }\n\
        \x20 px: { publish: { input: summat, dataset: x, formats: [csv], disclosure: { min_count: 1, count: m } } }\n\
        \x20 muut: { aggregate: { input: a_muu, by: [k], measures: { m: sum(n) } } }\n\
        \x20 py: { publish: { input: muut, dataset: y, formats: [csv], disclosure: { min_count: 1, count: m } } }\n\
        \x20 cc: { harmonise: { input: c, derive: { kk: \"upper(k)\" } } }\n\
        \x20 cs: { aggregate: { input: cc, by: [kk], measures: { m: sum(n) } } }\n\
        \x20 pz: { publish: { input: cs, dataset: z, formats: [csv], disclosure: { min_count: 1, count: m } } }\n";

    fn line() -> Line {
        crate::line::load::load_text("t.yaml", std::path::Path::new("."), LINE.into())
            .expect("loads")
            .0
    }

    fn checking(step: &str, source: Option<&str>) -> Checking {
        Checking {
            step: step.into(),
            source: source.map(String::from),
        }
    }

    fn release(period: &str, run: &str, current: bool, datasets: &[&str]) -> Release {
        Release {
            line: "t".into(),
            period: period.into(),
            run_id: run.into(),
            current,
            datasets: datasets.iter().map(|d| (d.to_string(), 1)).collect(),
            areas: BTreeMap::new(),
            released: None,
            status: ReleaseStatus::Final,
            note: None,
        }
    }

    /// Only the steps whose rows reach the dataset count, each with the source whose rows
    /// it checks (before: every step of the line).
    #[test]
    fn the_steps_counted_are_those_that_feed_the_dataset() {
        let l = line();
        assert_eq!(
            checking_steps(&l, "px"),
            [
                checking("a", Some("a")),
                checking("a_ok", Some("a")),
                checking("b", Some("b")),
                checking("ab_ok", None),
            ]
        );
        assert_eq!(
            checking_steps(&l, "py"),
            [checking("a", Some("a")), checking("a_muu", Some("a"))]
        );
        assert_eq!(
            checking_steps(&l, "pz"),
            [checking("c", Some("c")), checking("cc", Some("c"))]
        );
        assert!(checking_steps(&l, "ei_ole").is_empty());
    }

    fn report() -> StoredReport {
        serde_json::from_value(json!({
            "run_id": "r1",
            "steps": {
                "a": { "rows_in": 100, "rows_filtered": 0, "rows_checked": 100, "rows_quarantined": 2, "reject_share": 0.02 },
                "a_muu": { "rows_in": 98, "rows_filtered": 0, "rows_checked": 98, "rows_quarantined": 5, "reject_share": 0.05 },
                "a_ok": { "rows_in": 98, "rows_filtered": 3, "rows_checked": 95, "rows_quarantined": 4, "reject_share": 0.04 },
                "b": { "rows_in": 50, "rows_filtered": 0, "rows_checked": 50, "rows_quarantined": 0, "reject_share": 0.0 },
                "ab_ok": { "rows_in": 80, "rows_filtered": 0, "rows_checked": 80, "rows_quarantined": 1, "reject_share": 0.01 },
                "c": { "rows_in": 1000, "rows_filtered": 0, "rows_checked": 1000, "rows_quarantined": 10, "reject_share": 0.01 }
            },
            "rules": [
                { "step": "a", "id": "parse", "category": "conformance", "severity": "reject", "violations": 2, "share": 0.02 },
                { "step": "a_muu", "id": "n-pieni", "category": "plausibility", "severity": "reject", "violations": 5, "share": 0.05 },
                { "step": "a_ok", "id": "n-pos", "category": "plausibility", "severity": "reject", "violations": 4, "share": 0.04 },
                { "step": "a_ok", "id": "ei-osunut", "category": "conformance", "severity": "warn", "violations": 0, "share": 0.0 },
                { "step": "a_ok", "id": "ei-tyhja", "category": "completeness", "severity": "fail", "violations": 0, "share": 0.0,
                  "dataset": { "passed": true, "observed": "91", "expected": ">= 1" } },
                { "step": "ab_ok", "id": "k-on", "category": "completeness", "severity": "reject", "violations": 1, "share": 0.01 },
                { "step": "c", "id": "parse", "category": "conformance", "severity": "reject", "violations": 10, "share": 0.01 }
            ],
            "submitters": { "a_ok": { "pirkanmaa": { "rows": 98, "rejected": 4, "violations": {} } } }
        }))
        .unwrap()
    }

    fn counts(step: &str, rows_in: u64, filtered: u64, quarantined: u64) -> StepCounts {
        StepCounts {
            step: step.into(),
            rows_in,
            rows_filtered: filtered,
            rows_quarantined: quarantined,
            rows_out: rows_in - filtered - quarantined,
        }
    }

    /// Per source, in that source's rows: what was read, filtered and quarantined on the
    /// way to `x`, the join's check apart, and the rules of those steps only. Before, `x`
    /// read 1150 rows (every source, `c` too) and lost the branch to `y`'s 5 as well.
    #[test]
    fn the_summary_counts_each_source_on_its_way_to_the_dataset() {
        let l = line();
        let r = release("2025-03", "r1", true, &["x", "y", "z"]);
        let s = summarise("x", "t", &r, report(), &checking_steps(&l, "px")).unwrap();
        assert_eq!(
            s.sources,
            [
                SourceQuality {
                    source: "a".into(),
                    rows_read: 100,
                    rows_filtered: 3,
                    rows_quarantined: 6,
                    steps: vec![counts("a", 100, 0, 2), counts("a_ok", 98, 3, 4)],
                },
                SourceQuality {
                    source: "b".into(),
                    rows_read: 50,
                    rows_filtered: 0,
                    rows_quarantined: 0,
                    steps: vec![counts("b", 50, 0, 0)],
                },
            ]
        );
        // One chain: what was read, less what was left out, is what its last step passed.
        let a = &s.sources[0];
        assert_eq!(
            a.rows_read - a.rows_filtered - a.rows_quarantined,
            a.steps[1].rows_out
        );
        assert_eq!(s.derived, [counts("ab_ok", 80, 0, 1)]);
        let reasons: Vec<(&str, &str, u64)> = (s.reasons.iter())
            .map(|r| (r.step.as_str(), r.rule.as_str(), r.rows))
            .collect();
        assert_eq!(
            reasons,
            [
                ("a", "parse", 2),
                ("a_ok", "n-pos", 4),
                ("ab_ok", "k-on", 1)
            ]
        );
        assert_eq!((s.run_id.as_str(), s.period.as_str()), ("r1", "2025-03"));
        let text = json!(s).to_string();
        assert!(
            !text.contains("pirkanmaa") && !text.contains("submitter"),
            "{text}"
        );
    }

    /// Counts that do not add up are a report that cannot be read, not a summary with a
    /// negative hidden (before: `saturating_sub` answered 0).
    #[test]
    fn counts_that_do_not_add_up_are_refused() {
        let l = line();
        let mut bad = report();
        bad.steps.get_mut("a_ok").unwrap().rows_quarantined = 99;
        let r = release("2025-03", "r1", true, &["x"]);
        let e = summarise("x", "t", &r, bad, &checking_steps(&l, "px")).unwrap_err();
        assert!(e.contains("a_ok"), "{e}");
    }

    /// The run is the one behind the dataset's newest current release: not a release that
    /// is no longer current, nor the current one of a period that does not hold it.
    #[test]
    fn the_run_is_that_of_the_newest_current_release_holding_the_dataset() {
        let releases = [
            release("2025-01", "r0", true, &["x"]),
            release("2025-02", "r1", true, &["x", "y"]),
            release("2025-03", "r2", false, &["x"]),
            release("2025-03", "r3", true, &["y"]),
        ];
        let run = |d: &str| newest_current(&releases, d).map(|r| r.run_id.as_str());
        assert_eq!(run("x"), Some("r1"));
        assert_eq!(run("y"), Some("r3"));
        assert_eq!(run("z"), None);
    }
}
