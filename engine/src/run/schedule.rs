//! The scheduler over the line's graph.
//!
//! Before any task starts, `plumb` gives every step an [`Output`]: a channel when one step
//! reads it, a spill file when several do (or one scans it more than once: an SQL query, a
//! rate's population, a plan with two scans of it), the release for a publish step, and
//! nothing otherwise; only the columns the consumers read are spilled (`columns_read`). Then
//! [`schedule`] starts every source's reader (`source.rs`) and every step (`step.rs`) as a
//! task of one set, in topological order, so independent branches run at the same time; the
//! first failure aborts the rest and is the one reported.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::report::{RunCode, RunFailure, fail};
use super::source::read_source;
use super::step::run_step;
use super::streams::{
    ChannelPartition, Output, SpillPartition, SpillTable, narrowed, narrowed_plan, stream_table,
};
use super::{Counters, Shared};
use crate::line::spec::StepKind;
use crate::plan::InputInfo;

/// Runs the line: every source's reader and every step as a task of one set, each step
/// reading its inputs and writing its output as `plumb` arranged them; the first failure
/// stops the rest.
pub(super) async fn schedule(
    shared: Arc<Shared>,
    scratch: &std::path::Path,
) -> Result<(), RunFailure> {
    let order = shared.line.dag.order.clone();
    // Inputs each step will read, as providers, created before any task starts.
    let mut providers: BTreeMap<String, crate::plan::Inputs> = BTreeMap::new();
    let (mut outputs, mut narrow) = plumb(&shared, &order, scratch, &mut providers)?;
    let mut tasks = tokio::task::JoinSet::new();
    for s in &order {
        let shared = shared.clone();
        let mut inputs = providers.remove(s).unwrap_or_default();
        let output = outputs.remove(s).unwrap_or(Output::Drain);
        let shape = narrow.remove(s).unwrap_or_default();
        let name = s.clone();
        let spec = crate::line::load::step(&shared.line.spec, s);
        if let Some(src) = &spec.source {
            let (tx, rx) = mpsc::channel(4);
            let schema = crate::plan::raw_source_schema(src);
            let part = ChannelPartition {
                schema: schema.clone(),
                rx: Mutex::new(Some(rx)),
                counter: None,
            };
            inputs.insert(name.clone(), (stream_table(part)?, InputInfo::raw(schema)));
            let reader_shared = shared.clone();
            let reader_name = name.clone();
            tasks.spawn(async move { read_source(reader_shared, reader_name, tx).await });
        }
        tasks.spawn(async move {
            let t = Instant::now();
            let r = run_step(shared.clone(), name.clone(), inputs, output, shape).await;
            if let Ok(mut timings) = shared.timings.lock() {
                timings.insert(name, t.elapsed().as_secs_f64());
            }
            r
        });
    }
    let mut first: Option<RunFailure> = None;
    while let Some(res) = tasks.join_next().await {
        let r = match res {
            Ok(r) => r,
            Err(e) => Err(fail(
                RunCode::Engine,
                format!("a step task ended abnormally: {e}"),
            )),
        };
        if let Err(f) = r {
            // Keep the root cause: later errors are mostly consumers of the failed step.
            if first.is_none() {
                first = Some(f);
                tasks.abort_all();
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// What the run needs of a step's output, by step.
type Narrowed = BTreeMap<String, Shape>;

/// Each step's checked plan with its scans' projections (`None` where they could not be made).
type Optimised = BTreeMap<String, Option<datafusion::logical_expr::LogicalPlan>>;

/// What the run needs of a step's output, when not every column of every row.
#[derive(Debug, Default)]
pub(super) struct Shape {
    /// The only columns its plan is to compute ([`narrowing`]).
    pub(super) keep: Option<Vec<String>>,
    /// The only columns read of the rows it passes on: the others are needed only for the
    /// rows it quarantines ([`passed_read`], [`crate::plan::defer`]).
    pub(super) read: Option<Vec<String>>,
}

/// Where each step's output goes (a channel to its one consumer, a spill file for several
/// or for one that scans it more than once, the release, or nowhere), and the providers
/// through which its consumers read it, added to `providers`; with the columns each step
/// whose plan may be narrowed keeps ([`narrowing`]).
fn plumb(
    shared: &Shared,
    order: &[String],
    scratch: &std::path::Path,
    providers: &mut BTreeMap<String, crate::plan::Inputs>,
) -> Result<(BTreeMap<String, Output>, Narrowed), RunFailure> {
    let mut outputs: BTreeMap<String, Output> = BTreeMap::new();
    let mut narrow = BTreeMap::new();
    let optimised = optimised(shared, order);
    for s in order {
        let consumers = shared.line.dag.consumers(s);
        let full = &shared.check_plans[s];
        let read = columns_read(shared, &optimised, s, &consumers);
        let keep = narrowing(shared, s, &consumers, read.as_deref());
        let narrowed_step;
        let plan = match &keep {
            Some(keep) => {
                narrowed_step = narrowed_plan(full.clone(), keep)?;
                &narrowed_step
            }
            None => full,
        };
        let passed = passed_read(shared, s, &consumers, read.as_deref());
        narrow.insert(s.clone(), Shape { keep, read: passed });
        let info = plan.info();
        // An SQL query, or a rate's population, may be scanned more than once: such inputs
        // are spilled, not streamed.
        let read_by_sql = consumers.iter().any(|c| {
            let spec = crate::line::load::step(&shared.line.spec, c);
            spec.sql.is_some()
                || spec
                    .aggregate
                    .as_ref()
                    .is_some_and(|a| a.rates.values().any(|r| r.population.value == *s))
                || scans(&shared.check_plans[c].plan, s) > 1
        });
        let output = match consumers.len() {
            0 if plan.kind == StepKind::Publish => Output::Publish,
            0 => Output::Drain,
            1 if !read_by_sql => {
                let (tx, rx) = mpsc::channel(4);
                let c = &consumers[0];
                let part = ChannelPartition {
                    schema: plan.output.clone(),
                    rx: Mutex::new(Some(rx)),
                    counter: main_input(shared, c, s),
                };
                providers
                    .entry(c.clone())
                    .or_default()
                    .insert(s.clone(), (stream_table(part)?, info));
                Output::Channel(tx)
            }
            _ => spill(
                shared,
                s,
                &consumers,
                (plan, info),
                read,
                scratch,
                providers,
            )?,
        };
        outputs.insert(s.clone(), output);
    }
    Ok((outputs, narrow))
}

/// Each step's checked plan with the columns its scans read (`crate::plan::scans`; not
/// sources: no step's plan scans theirs).
fn optimised(shared: &Shared, order: &[String]) -> Optimised {
    (order.iter())
        .filter(|s| (crate::line::load::step(&shared.line.spec, s).source).is_none())
        .map(|s| {
            let plan = &shared.check_plans[s].plan;
            (
                s.clone(),
                crate::plan::scans::projected(&shared.state, plan).ok(),
            )
        })
        .collect()
}

/// Step `s`'s output to a spill file its `consumers` read once it is complete, each in as
/// many partitions as the session runs: only the columns they read (`read`, all when
/// `None`) are written and read back.
fn spill(
    shared: &Shared,
    s: &str,
    consumers: &[String],
    (plan, info): (&crate::plan::StepPlan, InputInfo),
    read: Option<Vec<String>>,
    scratch: &std::path::Path,
    providers: &mut BTreeMap<String, crate::plan::Inputs>,
) -> Result<Output, RunFailure> {
    let path = scratch.join(format!("{s}.arrow"));
    let (tx, rx) = watch::channel(None);
    let schema = Arc::new(narrowed(&plan.output, read.as_deref())?.0);
    let parts = shared.state.config().target_partitions().max(1);
    for c in consumers {
        let partitions = (0..parts).map(|part| SpillPartition {
            schema: schema.clone(),
            projection: None,
            path: path.clone(),
            ready: rx.clone(),
            part,
            parts,
            counter: main_input(shared, c, s),
            counted: Default::default(),
        });
        providers.entry(c.clone()).or_default().insert(
            s.to_string(),
            (Arc::new(SpillTable::new(partitions)?) as _, info.clone()),
        );
    }
    Ok(Output::Spill(path, tx, read))
}

/// The plan of step `step` when the run may read its rows in part: it has consumers, no
/// dataset checks (which read its columns) and is not captured (which keeps its rows
/// whole). `None` otherwise.
fn read_in_part<'s>(
    shared: &'s Shared,
    step: &str,
    consumers: &[String],
) -> Option<&'s crate::plan::StepPlan> {
    let plan = &shared.check_plans[step];
    (!consumers.is_empty() && plan.dataset_checks.is_empty() && !shared.capture.contains(step))
        .then_some(plan)
}

/// The columns step `step` keeps when its consumers read only some (and its submitter):
/// its plan is then narrowed to them (`step.rs`), so that a column no later step reads is
/// never computed (a pseudonym, a derived value). Only for a step that sends every row it
/// computes on unchanged: one with rules quarantines rows whole, one with dataset checks
/// reads its columns, a captured step keeps its rows whole, and a publish step has no
/// consumers.
fn narrowing(
    shared: &Shared,
    step: &str,
    consumers: &[String],
    read: Option<&[String]>,
) -> Option<Vec<String>> {
    let plan = read_in_part(shared, step, consumers).filter(|p| p.rules.is_empty())?;
    let read = read?;
    let keep: Vec<String> = (plan.output.fields().iter())
        .map(|f| f.name())
        .filter(|n| read.contains(n) || plan.submitter.as_ref() == Some(n))
        .cloned()
        .collect();
    (keep.len() < plan.output.fields().len()).then_some(keep)
}

/// The columns the run reads of the rows step `step` passes on, when not all, for a step
/// that quarantines rows: its consumers' columns, its submitter and its metrics. `None`
/// (all) for a step with dataset checks or captured, whose rows are read whole.
fn passed_read(
    shared: &Shared,
    step: &str,
    consumers: &[String],
    read: Option<&[String]>,
) -> Option<Vec<String>> {
    let plan = read_in_part(shared, step, consumers).filter(|p| !p.rules.is_empty())?;
    let mut read = read?.to_vec();
    read.extend(plan.submitter.iter().cloned());
    read.extend(plan.metrics.iter().map(|(c, _)| c.clone()));
    Some(read)
}

/// The counters of `consumer` when `producer` is one of its main inputs.
fn main_input(shared: &Shared, consumer: &str, producer: &str) -> Option<Arc<Counters>> {
    let spec = crate::line::load::step(&shared.line.spec, consumer);
    spec.main_inputs()
        .iter()
        .any(|i| i.value == producer)
        .then(|| shared.counters[consumer].clone())
}

/// The columns of step `table`'s output that the plans of `consumers` read, in output
/// order, when not all: the projections of their scans of it (`crate::plan::scans`).
/// `None` when a plan reads every column or its projections could not be made (then every
/// column is kept).
fn columns_read(
    shared: &Shared,
    optimised: &Optimised,
    table: &str,
    consumers: &[String],
) -> Option<Vec<String>> {
    let output = &shared.check_plans.get(table)?.output;
    let mut names = std::collections::BTreeSet::new();
    for c in consumers {
        let plan = optimised.get(c)?.as_ref()?;
        names.extend(crate::plan::scans::columns_scanned(plan, table)?);
    }
    let cols: Vec<String> = output
        .fields()
        .iter()
        .filter(|f| names.contains(f.name()))
        .map(|f| f.name().clone())
        .collect();
    (!cols.is_empty() && cols.len() < output.fields().len() && cols.len() == names.len())
        .then_some(cols)
}

/// How many times `plan` scans the table `table` (a step that finds duplicates reads its
/// input twice).
fn scans(plan: &datafusion::logical_expr::LogicalPlan, table: &str) -> usize {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut n = 0;
    let _ = plan.apply_with_subqueries(|p| {
        if let datafusion::logical_expr::LogicalPlan::TableScan(t) = p
            && t.table_name.table() == table
        {
            n += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    });
    n
}
