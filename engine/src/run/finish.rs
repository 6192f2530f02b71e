//! The end of a run: what it writes after its steps.
//!
//! The quarantine: each step's local file of rejected rows, sorted by object and row in a
//! bounded amount of memory (spilling beyond it), written to
//! `quarantine/<line>/<period>/<run-id>/<step>.parquet`. The rows of captured steps (line
//! tests). The release, when the run succeeded and published something: the manifest and
//! the `latest.json` pointer, written by [`crate::publish::manifest`]. And the quality
//! report. A write that fails here fails the run; the first failure is the one kept.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::error::DataFusionError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{SendableRecordBatchStream, execute_stream};
use datafusion::prelude::SessionContext;
use tracing::debug;

use super::report::{RunCode, RunFailure, RunReport, fail};
use super::{Shared, record};
use crate::plan::{OBJECT_COLUMN, ROW_COLUMN};

/// Closes the quarantine and writes each step's file to the store, sorted
/// ([`write_sorted`]); the paths written.
pub(super) async fn write_quarantine(
    shared: &Shared,
    line_name: &str,
    period: &str,
    run_id: &str,
    failure: &mut Option<RunFailure>,
) -> Vec<String> {
    let quarantine_files = match shared.quarantine.close() {
        Ok(f) => f,
        Err(e) => {
            failure.get_or_insert(e);
            vec![]
        }
    };
    let mut quarantine_paths = Vec::new();
    for (step, file, rows) in &quarantine_files {
        let target = format!(
            "{}/{step}",
            crate::store::layout::quarantine(line_name, period, run_id)
        );
        match write_sorted(shared, file, &target).await {
            Ok(()) => {
                debug!(step = %step, rows, "quarantine written");
                quarantine_paths.push(format!("{target}.parquet"));
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    quarantine_paths
}

/// Writes the rows kept of the steps named in [`super::RunOptions::capture`] to
/// `captures/<line>/<run-id>/<step>.parquet`.
pub(super) async fn write_captures(
    shared: &Shared,
    line_name: &str,
    run_id: &str,
    failure: &mut Option<RunFailure>,
) {
    let captured = shared
        .captured
        .lock()
        .map(|mut c| std::mem::take(&mut *c))
        .unwrap_or_default();
    for step in &shared.capture {
        let schema = shared.check_plans.get(step).map(|p| p.output.clone());
        let (Some(schema), batches) = (schema, captured.get(step).cloned().unwrap_or_default())
        else {
            continue;
        };
        let stream = Box::pin(RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::iter(batches.into_iter().map(Ok)),
        ));
        let prefix = crate::store::layout::captures(line_name, run_id);
        if let Err(e) = crate::publish::write_stream(
            &shared.store.inner,
            &prefix,
            step,
            &[crate::line::spec::PublishFormat::Parquet],
            schema,
            stream,
            |_| Ok(()),
        )
        .await
        {
            failure.get_or_insert(fail(e.code(), e));
        }
    }
}

/// Releases what the run published: its manifest and then the pointer to it
/// ([`crate::publish::manifest::release`]); a failure is a `Write` failure.
pub(super) async fn release(
    shared: &Shared,
    report: &RunReport,
    period: &str,
) -> Result<(), RunFailure> {
    let inputs = shared.inputs.lock().map(|i| i.clone()).unwrap_or_default();
    let fingerprint = crate::run::inputs::fingerprint(
        &report.line_hash,
        &report.params,
        &report.codesets,
        &inputs,
    );
    let manifest = crate::publish::manifest::Manifest {
        line: &report.line,
        period,
        run_id: &report.run_id,
        released: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        label: &shared.label,
        line_hash: &report.line_hash,
        engine_version: &report.engine_version,
        params: &report.params,
        codesets: &report.codesets,
        datasets: &report.datasets,
        inputs: serde_json::to_value(&inputs).unwrap_or_default(),
        fingerprint,
        objects: Vec::new(),
    };
    crate::publish::manifest::release(&shared.store, &shared.release_prefix, manifest)
        .await
        .map_err(|e| fail(e.code(), e))
}

/// Writes the quality report, as JSON and as a page, from what each step counted, and
/// lists both in the run report.
pub(super) async fn write_quality(
    shared: &Shared,
    recorder: &dyn record::Recorder,
    report: &mut RunReport,
    line_name: &str,
    run_id: &str,
    failure: &mut Option<RunFailure>,
) {
    let qualities: BTreeMap<String, crate::run::accounting::StepQuality> = shared
        .counters
        .iter()
        .map(|(k, c)| {
            (
                k.clone(),
                c.quality.lock().map(|q| q.clone()).unwrap_or_default(),
            )
        })
        .collect();
    let history = &shared.history;
    let (quality, page) = match recorder.quality(&shared.line, report, &qualities, history) {
        Ok(q) => q,
        Err(e) => {
            failure.get_or_insert(fail(e.code(), e));
            return;
        }
    };
    let quality_json = crate::store::layout::quality_json(line_name, run_id);
    let quality_html = crate::store::layout::quality_html(line_name, run_id);
    match crate::publish::put_text_json(&shared.store.inner, &quality_json, &quality).await {
        Ok(()) => report.quality.push(quality_json),
        Err(e) => {
            failure.get_or_insert(fail(e.code(), e));
        }
    }
    let page = crate::redact::scrubbed(page);
    match object_store::ObjectStoreExt::put(
        shared.store.inner.as_ref(),
        &object_store::path::Path::from(quality_html.as_str()),
        page.into_bytes().into(),
    )
    .await
    {
        Ok(_) => report.quality.push(quality_html),
        Err(e) => {
            failure.get_or_insert(fail(RunCode::Write, e.to_string()));
        }
    }
}

/// The memory the sort of one quarantine file may hold before it spills (or the memory
/// limit, when that is smaller). The rejected rows grow with the data (1 % of 50 M rows is
/// half a million wide rows); with the run's steps done, the shared pool would let this
/// one sort hold them all. At 50 M rows a 64 MiB sort made the end of the run its
/// resident peak (≈ 330 MiB against ≈ 270 MiB with 24 MiB, PROFILE.md ninth round).
const QUARANTINE_SORT_MEMORY: usize = 24 << 20;

/// Rows of a batch in the quarantine's sort: small enough that a batch of wide rows (a few
/// KB each, as a FHIR resource's text) still fits the sort's memory.
const QUARANTINE_SORT_BATCH_ROWS: usize = 2048;

/// A session like `state` whose one partition's sort holds at most `bytes` and spills the
/// rest (a quarter of it kept for merging the spilled runs), in batches of
/// `QUARANTINE_SORT_BATCH_ROWS`.
fn bounded_state(
    state: &datafusion::execution::SessionState,
    bytes: usize,
) -> Result<datafusion::execution::SessionState, DataFusionError> {
    let mut config = state
        .config()
        .clone()
        .with_target_partitions(1)
        .with_batch_size(QUARANTINE_SORT_BATCH_ROWS);
    config.options_mut().execution.sort_spill_reservation_bytes = bytes / 4;
    let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(
            datafusion::execution::memory_pool::FairSpillPool::new(bytes),
        ))
        .build_arc()?;
    Ok(
        datafusion::execution::SessionStateBuilder::new_from_existing(state.clone())
            .with_config(config)
            .with_runtime_env(runtime)
            .build(),
    )
}

/// The rows of a local quarantine file sorted by object and row, by a sort that holds at
/// most `memory` bytes; also the plan, whose metrics tell whether it spilled.
async fn sorted_quarantine(
    state: &datafusion::execution::SessionState,
    file: &std::path::Path,
    memory: usize,
) -> Result<
    (
        SchemaRef,
        Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        SendableRecordBatchStream,
    ),
    DataFusionError,
> {
    let ctx = SessionContext::new_with_state(bounded_state(state, memory)?);
    let df = ctx
        .read_parquet(file.to_string_lossy().as_ref(), Default::default())
        .await?;
    // Sort by provenance where the step kept it, otherwise by every column, so the file's
    // bytes do not depend on the order in which parallel partitions finished.
    let names: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let keys: Vec<String> =
        if names.iter().any(|n| n == OBJECT_COLUMN) && names.iter().any(|n| n == ROW_COLUMN) {
            vec![OBJECT_COLUMN.into(), ROW_COLUMN.into()]
        } else {
            names
        };
    let df = df.sort(
        keys.iter()
            .map(|k| {
                datafusion::prelude::col(datafusion::common::Column::from_name(k.as_str()))
                    .sort(true, true)
            })
            .collect(),
    )?;
    let schema: SchemaRef = Arc::new(Schema::new(
        df.schema()
            .fields()
            .iter()
            .map(|f| Field::clone(f))
            .collect::<Vec<_>>(),
    ));
    let plan = df.create_physical_plan().await?;
    let stream = execute_stream(plan.clone(), ctx.task_ctx())?;
    Ok((schema, plan, stream))
}

/// Sorts a local quarantine file by object and row and writes it to the store; a failure
/// is a `Write` failure.
async fn write_sorted(
    shared: &Shared,
    file: &std::path::Path,
    target: &str,
) -> Result<(), RunFailure> {
    let memory = shared
        .memory_limit
        .unwrap_or(usize::MAX)
        .min(QUARANTINE_SORT_MEMORY);
    let (schema, _, stream) = sorted_quarantine(&shared.state, file, memory)
        .await
        .map_err(|e| fail(RunCode::Write, e))?;
    let (dir, name) = target.rsplit_once('/').unwrap_or(("", target));
    crate::publish::write_stream(
        &shared.store.inner,
        dir,
        name,
        &[crate::line::spec::PublishFormat::Parquet],
        schema,
        stream,
        |_| Ok(()),
    )
    .await
    .map_err(|e| fail(e.code(), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::run::quarantine::Quarantine;

    /// The quarantine's sort keeps within its memory: far more rejected rows than it may
    /// hold are spilled and merged, and every row comes out, by object and row.
    #[tokio::test]
    async fn quarantine_sort_spills_beyond_its_memory_and_keeps_every_row() {
        use datafusion::arrow::array::{AsArray, UInt64Array};
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::new(dir.path().to_path_buf(), "run".into(), None);
        let schema = Schema::new(vec![
            Field::new(OBJECT_COLUMN, arrow::datatypes::DataType::Utf8, true),
            Field::new(ROW_COLUMN, arrow::datatypes::DataType::UInt64, true),
        ]);
        // Objects and rows out of order: rows descending within objects given c, a, b.
        for object in ["inbox/c.csv", "inbox/a.csv", "inbox/b.csv"] {
            for chunk in (0..10u64).rev() {
                let rejects: Vec<valtava_plugin::RowReject> = (chunk * 10_000
                    ..(chunk + 1) * 10_000)
                    .rev()
                    .map(|row| valtava_plugin::RowReject {
                        row,
                        reason: format!("row {row} of {object}: too few fields"),
                    })
                    .collect();
                q.write_unparsed("lahde", &schema, object, &rejects)
                    .unwrap();
            }
        }
        let [(_, path, rows)] = q.close().unwrap().try_into().unwrap();
        assert_eq!(rows, 300_000);
        let state = crate::plan::session(Some(b"k"), 2).state();
        let (_, plan, mut stream) = sorted_quarantine(&state, &path, 8 << 20).await.unwrap();
        let mut seen = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.unwrap();
            assert!(batch.num_rows() <= QUARANTINE_SORT_BATCH_ROWS);
            let objects = arrow::compute::cast(
                batch.column_by_name(OBJECT_COLUMN).unwrap(),
                &arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            let objects = objects.as_string::<i32>();
            let rows = batch
                .column_by_name(ROW_COLUMN)
                .unwrap()
                .as_any()
                .downcast_ref::<UInt64Array>()
                .unwrap();
            seen.extend(
                objects
                    .iter()
                    .map(|o| o.unwrap().to_string())
                    .zip(rows.values().iter().copied()),
            );
        }
        let mut want = Vec::new();
        for object in ["inbox/a.csv", "inbox/b.csv", "inbox/c.csv"] {
            want.extend((0..100_000u64).map(|r| (object.to_string(), r)));
        }
        assert_eq!(seen.len(), want.len());
        assert!(seen == want, "not sorted by object and row");
        // It spilled: the rows did not fit in 8 MiB.
        fn spills(plan: &dyn datafusion::physical_plan::ExecutionPlan) -> usize {
            plan.metrics().and_then(|m| m.spill_count()).unwrap_or(0)
                + plan
                    .children()
                    .iter()
                    .map(|c| spills(c.as_ref()))
                    .sum::<usize>()
        }
        assert!(
            spills(plan.as_ref()) > 0,
            "the sort held every row in memory"
        );
    }
}
