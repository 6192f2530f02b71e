//! `valtava run LINE --param period=FIRST..LAST`: one run per period, in order.
//!
//! Backfills and corrections rerun many periods. Each period is an ordinary run with its
//! own release; a period whose current release was made from the same line, parameters,
//! code sets and input objects ([`crate::run::inputs::unchanged`]) is not run again. The
//! first failure stops the range unless `--keep-going`; the summary names every period
//! and what happened to it, and the exit code is 1 when any failed.

use std::fmt::Write as _;
use std::process::ExitCode;

use serde::Serialize;

use super::common::{error, runtime};
use super::run::{Args, options};
use crate::run::RunError;

/// The periods of a `period` parameter that is a range; `None` when it is not one.
pub(super) fn periods(params: &[(String, String)]) -> Option<Result<Vec<String>, String>> {
    let (_, value) = params.iter().find(|(k, _)| k == "period")?;
    crate::line::params::range(crate::line::spec::ParamKind::Period, value)
        .map(|r| r.map_err(|e| e.to_string()))
}

/// What became of one period of the range.
#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
enum Outcome {
    /// Run and released.
    Published { run_id: String, rows: u64 },
    /// Its current release was made from the same inputs: not run again.
    Unchanged { run_id: String },
    /// The run failed.
    Failed { code: String, message: String },
    /// Not run: an earlier period failed.
    Skipped,
}

#[derive(Debug, Serialize)]
struct PeriodOutcome {
    period: String,
    #[serde(flatten)]
    outcome: Outcome,
}

/// Runs each period of the range and prints one summary.
pub(super) fn run(args: Args, periods: Result<Vec<String>, String>) -> ExitCode {
    let periods = match periods {
        Ok(p) => p,
        Err(e) => {
            error(format!("--param period: {e}"));
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut outcomes: Vec<PeriodOutcome> = Vec::new();
    let mut failed = false;
    for period in periods {
        if failed && !args.keep_going {
            outcomes.push(PeriodOutcome {
                period,
                outcome: Outcome::Skipped,
            });
            continue;
        }
        let mut one = args.clone();
        for (k, v) in one.params.iter_mut() {
            if k == "period" {
                *v = period.clone();
            }
        }
        let (line, opts) = match options(one) {
            Ok(v) => v,
            Err(code) => return code,
        };
        let outcome = runtime.block_on(async move {
            tokio::spawn(async move { one_period(&line, opts).await })
                .await
                .unwrap_or_else(|e| Outcome::Failed {
                    code: crate::run::RunCode::Engine.as_str().to_string(),
                    message: format!("the run stopped unexpectedly: {e}"),
                })
        });
        failed |= matches!(outcome, Outcome::Failed { .. });
        eprintln!("{period}: {}", outcome_word(&outcome));
        outcomes.push(PeriodOutcome { period, outcome });
    }
    if args.json {
        let doc = serde_json::json!({ "periods": outcomes });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print!("{}", summary(&outcomes));
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// One period: not run when unchanged, otherwise run.
async fn one_period(line: &std::path::Path, opts: crate::run::RunOptions) -> Outcome {
    match crate::run::inputs::unchanged(line, &opts).await {
        Ok(Some(run_id)) => return Outcome::Unchanged { run_id },
        Ok(None) => {}
        // The run says the same, with its report.
        Err(_) => {}
    }
    match crate::run::run(line, opts).await {
        Ok(report) => Outcome::Published {
            rows: report.datasets.iter().map(|d| d.rows).sum(),
            run_id: report.run_id,
        },
        Err(RunError::Failed(f, _)) => Outcome::Failed {
            code: f.code.as_str().to_string(),
            message: crate::redact::scrub(&f.message).into_owned(),
        },
        Err(RunError::Invalid(d)) => Outcome::Failed {
            code: d
                .first()
                .map(|d| format!("{:?}", d.code))
                .unwrap_or_default(),
            message: d.first().map(|d| d.message.clone()).unwrap_or_default(),
        },
    }
}

fn outcome_word(o: &Outcome) -> &'static str {
    match o {
        Outcome::Published { .. } => "published",
        Outcome::Unchanged { .. } => "unchanged",
        Outcome::Failed { .. } => "failed",
        Outcome::Skipped => "skipped",
    }
}

/// The summary table of a range.
fn summary(outcomes: &[PeriodOutcome]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<10} {:<40} detail",
        "period", "outcome", "run"
    );
    for p in outcomes {
        let (run, detail) = match &p.outcome {
            Outcome::Published { run_id, rows } => (run_id.as_str(), format!("{rows} rows")),
            Outcome::Unchanged { run_id } => (run_id.as_str(), "same inputs and line".into()),
            Outcome::Failed { code, message } => ("", format!("[{code}] {message}")),
            Outcome::Skipped => ("", "an earlier period failed".into()),
        };
        let _ = writeln!(
            out,
            "{:<10} {:<10} {:<40} {detail}",
            p.period,
            outcome_word(&p.outcome),
            run
        );
    }
    let count = |w: &str| {
        outcomes
            .iter()
            .filter(|p| outcome_word(&p.outcome) == w)
            .count()
    };
    let _ = writeln!(
        out,
        "{} periods: {} published, {} unchanged, {} failed, {} skipped",
        outcomes.len(),
        count("published"),
        count("unchanged"),
        count("failed"),
        count("skipped")
    );
    out
}
