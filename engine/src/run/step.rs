//! Running one step.
//!
//! [`run_step`] plans the step again, now over its streaming inputs (`planned`), places the
//! plan here or on the cluster (`engine.rs`), executes it and writes its batches where its
//! output goes (`write_output`): each batch passes `tapped`, which applies the step's rules
//! (`quarantine::tap`: rejected rows to the quarantine, counts, a broken `fail` rule is
//! R005) before it is sent on; after the last, `finish_step` evaluates the dataset checks. A
//! publish step's table is collected whole for disclosure control and written to the
//! release (`published`, `write_jsonstat`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::RecordBatch;
use datafusion::common::DataFusionError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{SendableRecordBatchStream, execute_stream};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use tracing::debug;

use super::engine::{placed, pseudonymises, runs_here};
use super::report::{DatasetReport, RunCode, RunFailure, fail};
use super::streams::{Output, narrowed, narrowed_plan};
use super::{Counters, Shared};
use crate::plan::{Planner, StepPlan};

/// Runs step `name`: plans it over its `inputs`, executes the plan (here or on the cluster)
/// and writes its batches where its output goes.
pub(super) async fn run_step(
    shared: Arc<Shared>,
    name: String,
    inputs: crate::plan::Inputs,
    output: Output,
    shape: super::schedule::Shape,
) -> Result<(), RunFailure> {
    let (plan, logical, state) = planned(&shared, &name, &inputs, &shape).await?;
    let ctx = SessionContext::new_with_state(state);
    let physical = ctx
        .state()
        .create_physical_plan(&logical)
        .await
        .map_err(|e| fail(RunCode::Engine, format!("step `{name}`: {e}")))?;
    debug!(
        step = %name,
        "physical plan:\n{}",
        datafusion::physical_plan::displayable(physical.as_ref()).indent(false)
    );
    let executed = physical.clone();
    let stream = execute_stream(physical, ctx.task_ctx())
        .map_err(|e| fail(RunCode::Engine, format!("step `{name}`: {e}")))?;
    let counters = shared.counters[&name].clone();
    let mut stream = stream;
    let engine_err = |e: DataFusionError| {
        let msg = e.to_string();
        let code = if msg.contains("R003") || msg.contains("source `") {
            RunCode::Source
        } else {
            RunCode::Engine
        };
        fail(
            code,
            format!(
                "step `{name}`: {}",
                msg.trim_start_matches("Execution error: ")
            ),
        )
    };
    let result = write_output(
        &shared,
        &name,
        &plan,
        &counters,
        &mut stream,
        engine_err,
        output,
    )
    .await;
    // What each operator did (rows, time, spills): where a slow step spends its time.
    debug!(
        step = %name,
        "executed plan:\n{}",
        datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(executed.as_ref())
            .indent(false)
    );
    result
}

/// The plan of step `name` over its `inputs` (its costly columns computed only for the
/// rows that need them, `crate::plan::defer`, and narrowed to the columns the run needs:
/// see `schedule.rs`), placed here or on the cluster: the step's plan, the logical plan to
/// execute and the session that executes it.
async fn planned(
    shared: &Shared,
    name: &str,
    inputs: &crate::plan::Inputs,
    shape: &super::schedule::Shape,
) -> Result<
    (
        StepPlan,
        datafusion::logical_expr::LogicalPlan,
        datafusion::execution::SessionState,
    ),
    RunFailure,
> {
    let is_source = crate::line::load::step(&shared.line.spec, name)
        .source
        .is_some();
    let here = shared.cluster.is_none() || runs_here(inputs, is_source);
    let planner = Planner {
        line: &shared.line,
        state: shared.state.clone(),
        params: shared.params.clone(),
        codesets: &shared.codesets,
        unique_filter: here.then(|| crate::plan::FilterSize {
            max: crate::plan::filter_bytes(shared.memory_limit),
            input_bytes: source_bytes(&shared.line.dag.upstream(name), &shared.source_bytes),
        }),
    };
    let plan = planner.plan_step(name, inputs).map_err(|d| {
        fail(
            RunCode::Engine,
            d.iter()
                .map(|d| d.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let plan = crate::plan::defer::deferred(plan, shape.read.as_deref(), &shared.state)
        .map_err(|e| fail(RunCode::Engine, format!("step `{name}`: {e}")))?;
    let plan = match &shape.keep {
        Some(keep) => narrowed_plan(plan, keep)?,
        None => plan,
    };
    let here = here || pseudonymises(&plan.plan);
    if shared.cluster.is_some() {
        debug!(step = %name, engine = if here { "local" } else { "cluster" }, "step placed");
    }
    let (logical, state) = placed(shared, name, plan.plan.clone(), here).await?;
    Ok((plan, logical, state))
}

/// The byte counters a unique rule's filter of a step with `upstream` steps is sized from:
/// those of its sources when every step upstream is a source, so that its rows are theirs
/// (a join, an unnest or an SQL step between could multiply them beyond their bytes); none
/// otherwise, and the filter keeps its largest size.
fn source_bytes(
    upstream: &std::collections::BTreeSet<String>,
    counters: &std::collections::BTreeMap<String, Arc<std::sync::atomic::AtomicU64>>,
) -> Vec<Arc<std::sync::atomic::AtomicU64>> {
    (upstream.iter())
        .map(|s| counters.get(s).cloned())
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default()
}

/// Sends a step's batches where its output goes, each through [`tapped`], and evaluates its
/// dataset checks after the last; a publish step's table goes to [`published`].
async fn write_output(
    shared: &Shared,
    name: &str,
    plan: &StepPlan,
    counters: &Counters,
    stream: &mut SendableRecordBatchStream,
    engine_err: impl Fn(DataFusionError) -> RunFailure,
    output: Output,
) -> Result<(), RunFailure> {
    match output {
        Output::Publish => published(shared, name, plan, counters, stream, engine_err).await,
        Output::Channel(tx) => {
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(&engine_err)?;
                let passed = tapped(shared, name, plan, counters, &batch)?;
                if passed.num_rows() > 0 && tx.send(Ok(passed)).await.is_err() {
                    return Ok(());
                }
            }
            finish_step(shared, name, plan, counters)
        }
        Output::Spill(path, ready, read) => {
            let result = async {
                let (schema, cols) = narrowed(&plan.output, read.as_deref())?;
                let mut w = super::spill::Writer::create(&path, &schema)
                    .map_err(|e| fail(RunCode::Write, format!("{}: {e}", path.display())))?;
                while let Some(batch) = stream.next().await {
                    let batch = batch.map_err(&engine_err)?;
                    let passed = tapped(shared, name, plan, counters, &batch)?;
                    let passed = match &cols {
                        Some(cols) => passed
                            .project(cols)
                            .map_err(|e| fail(RunCode::Engine, e.to_string()))?,
                        None => passed,
                    };
                    w.write(&passed)
                        .map_err(|e| fail(RunCode::Write, e.to_string()))?;
                }
                finish_step(shared, name, plan, counters)?;
                w.finish().map_err(|e| fail(RunCode::Write, e.to_string()))
            }
            .await;
            let outcome = match &result {
                Ok(written) => Ok(written.clone()),
                Err(_) => Err(crate::run::RunIoError::ProducerFailed),
            };
            ready.send_replace(Some(outcome));
            result.map(|_| ())
        }
        Output::Drain => {
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(&engine_err)?;
                tapped(shared, name, plan, counters, &batch)?;
            }
            finish_step(shared, name, plan, counters)
        }
    }
}

/// Publishes a step's table: collected whole for disclosure control
/// ([`crate::publish::protect`]), its columns described, written as JSON-stat when asked
/// ([`write_jsonstat`]) and in the release's other formats, and listed in the report.
async fn published(
    shared: &Shared,
    name: &str,
    plan: &StepPlan,
    counters: &Counters,
    stream: &mut SendableRecordBatchStream,
    engine_err: impl Fn(DataFusionError) -> RunFailure,
) -> Result<(), RunFailure> {
    let step = crate::line::load::step(&shared.line.spec, name);
    let p = step
        .publish
        .as_ref()
        .ok_or_else(|| fail(RunCode::Engine, "not a publish step"))?;
    let formats: Vec<_> = p.formats.iter().map(|f| f.value).collect();
    let schema = plan.output.clone();
    // Disclosure control needs the whole table; a published table is aggregated,
    // so it is small.
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        batches.push(batch.map_err(&engine_err)?);
    }
    let (table, suppressed) = crate::publish::protect(
        &batches,
        schema.clone(),
        &plan.dimensions,
        plan.disclosure.as_ref(),
    )
    .map_err(|e| fail(RunCode::Engine, format!("step `{name}`: {e}")))?;
    debug!(step = %name, suppressed, "disclosure control applied");
    counters
        .rows_out
        .fetch_add(table.num_rows() as u64, Ordering::Relaxed);
    let rows = table.num_rows() as u64;
    // Column descriptions and units travel in the Parquet file's Arrow schema.
    let described = Arc::new(crate::publish::describe_columns(&schema, p));
    let table = RecordBatch::try_new(described.clone(), table.columns().to_vec())
        .map_err(|e| fail(RunCode::Engine, e.to_string()))?;
    if formats.contains(&crate::line::spec::PublishFormat::Jsonstat) {
        write_jsonstat(shared, name, p, plan, &table).await?;
    }
    let one = Box::pin(RecordBatchStreamAdapter::new(
        described.clone(),
        futures::stream::iter(vec![Ok(table)]),
    ));
    crate::publish::write_stream_styled(
        &shared.store.inner,
        &shared.release_prefix,
        &p.dataset,
        &formats,
        p.csv,
        described,
        one,
        |_| Ok(()),
    )
    .await
    .map_err(|e| fail(RunCode::Write, format!("step `{name}`: {e}")))?;
    if let Ok(mut d) = shared.datasets.lock() {
        d.push(DatasetReport {
            dataset: p.dataset.value.clone(),
            step: name.to_string(),
            rows,
            area: plan.area.clone(),
            disclosure: crate::run::report::DisclosureNote::of(p),
        });
    }
    Ok(())
}

/// Writes a publish step's table as a JSON-stat dataset beside the release's other formats,
/// after validating it: an invalid dataset fails the step.
async fn write_jsonstat(
    shared: &Shared,
    name: &str,
    p: &crate::line::spec::PublishSpec,
    plan: &StepPlan,
    table: &RecordBatch,
) -> Result<(), RunFailure> {
    let meta = crate::publish::jsonstat_meta(
        &shared.line,
        p,
        &plan.dimensions,
        plan.area.as_deref(),
        &shared.codesets,
    )
    .map_err(|e| fail(RunCode::Engine, format!("step `{name}`: {e}")))?;
    let doc = crate::publish::jsonstat::dataset(table, &meta)
        .map_err(|e| fail(RunCode::Engine, format!("step `{name}`: {e}")))?;
    let errors: Vec<String> = crate::publish::jsonstat::validate(&doc)
        .into_iter()
        .filter(|i| i.error)
        .map(|i| format!("{}: {}", i.code, i.message))
        .collect();
    if !errors.is_empty() {
        return Err(fail(
            RunCode::Engine,
            format!(
                "step `{name}`: the JSON-stat dataset is invalid: {}",
                errors.join("; ")
            ),
        ));
    }
    let path = format!(
        "{}/{}.jsonstat.json",
        shared.release_prefix, p.dataset.value
    );
    crate::publish::put_json(&shared.store.inner, &path, &doc)
        .await
        .map_err(|e| fail(e.code(), e))?;
    Ok(())
}

fn tapped(
    shared: &Shared,
    name: &str,
    plan: &StepPlan,
    counters: &Counters,
    batch: &RecordBatch,
) -> Result<RecordBatch, RunFailure> {
    let mut quality = counters
        .quality
        .lock()
        .map_err(|_| fail(RunCode::Engine, "quality lock poisoned"))?;
    let outcome = crate::run::quarantine::tap(batch, plan, &mut quality, &shared.quarantine, name)?;
    drop(quality);
    counters
        .quarantined
        .fetch_add(outcome.rejected as u64, Ordering::Relaxed);
    counters
        .filtered
        .fetch_add(outcome.filtered as u64, Ordering::Relaxed);
    counters
        .rows_out
        .fetch_add(outcome.passed.num_rows() as u64, Ordering::Relaxed);
    if shared.capture.contains(name)
        && let Ok(mut c) = shared.captured.lock()
    {
        c.entry(name.to_string())
            .or_default()
            .push(outcome.passed.clone());
    }
    if let Some((rule, reason)) = outcome.failure {
        return Err(fail(
            RunCode::RuleFail,
            format!("step `{name}`: rule `{rule}` (severity fail) is broken: {reason}"),
        ));
    }
    Ok(outcome.passed)
}

/// Evaluates a step's dataset checks after its last row.
fn finish_step(
    shared: &Shared,
    name: &str,
    plan: &StepPlan,
    counters: &Counters,
) -> Result<(), RunFailure> {
    if plan.dataset_checks.is_empty() {
        return Ok(());
    }
    let rows = counters.rows_in.load(Ordering::Relaxed) - counters.filtered.load(Ordering::Relaxed);
    let mut quality = counters
        .quality
        .lock()
        .map_err(|_| fail(RunCode::Engine, "quality lock poisoned"))?;
    match crate::run::quarantine::finish_dataset_checks(
        name,
        plan,
        rows,
        &mut quality,
        &shared.history,
    ) {
        Some((rule, what)) => Err(fail(
            RunCode::RuleFail,
            format!("step `{name}`: dataset check `{rule}` (severity fail) is broken: {what}"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    /// A rule over a source's rows is sized from that source's bytes; one over rows a
    /// harmonise or SQL step made (which may multiply them) keeps the largest filter.
    #[test]
    fn a_filter_is_sized_from_sources_only_when_every_step_upstream_is_one() {
        let counters: BTreeMap<String, Arc<AtomicU64>> = ["a", "b"]
            .map(|s| (s.to_string(), Arc::new(AtomicU64::new(1))))
            .into();
        let names = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let sized = |up: &[&str]| super::source_bytes(&names(up), &counters);
        let got = sized(&["a", "b"]);
        assert_eq!(got.len(), 2);
        assert!(Arc::ptr_eq(&got[0], &counters["a"]) && Arc::ptr_eq(&got[1], &counters["b"]));
        assert!(sized(&["a", "harmonised"]).is_empty());
        assert!(sized(&[]).is_empty());
    }
}
