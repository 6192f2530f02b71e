//! The streaming row number against DataFusion's own window over the same rows: keys that
//! run across batch boundaries, NULL keys, float keys (NaN, both zeros), no partition at all, the `= 1` filter of a
//! "latest row" query; and a window it must leave alone.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, UInt64Type};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};

/// 3 000 rows in batches of 37 over two partitions: 40 × 3 key pairs (some text keys NULL),
/// `o` with ties, `id` unique so every ordering below is total.
fn table() -> Arc<MemTable> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("k1", DataType::Utf8, true),
        Field::new("k2", DataType::Int64, false),
        Field::new("o", DataType::Int64, false),
        Field::new("f", DataType::Float64, true),
    ]));
    let mut seed = 11u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    let mut parts = vec![Vec::new(), Vec::new()];
    for b in 0..82 {
        let ids: Vec<i64> = (0..37).map(|i| b * 37 + i).collect();
        let k1: Vec<Option<String>> = ids
            .iter()
            .map(|_| match next() % 41 {
                40 => None,
                k => Some(format!("h{k}")),
            })
            .collect();
        let k2: Vec<i64> = ids.iter().map(|_| (next() % 3) as i64).collect();
        let o: Vec<i64> = ids.iter().map(|_| (next() % 5) as i64).collect();
        // Float keys that compare in surprising ways: NaN, both zeros, NULL.
        let f: Vec<Option<f64>> = ids
            .iter()
            .map(|_| [Some(f64::NAN), Some(0.0), Some(-0.0), Some(1.5), None][next() as usize % 5])
            .collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(k1)),
                Arc::new(Int64Array::from(k2)),
                Arc::new(Int64Array::from(o)),
                Arc::new(Float64Array::from(f)),
            ],
        )
        .expect("the columns match the schema");
        parts[(b % 2) as usize].push(batch);
    }
    Arc::new(MemTable::try_new(schema, parts).expect("the batches match the schema"))
}

/// DataFusion's session, with small batches so sorted runs of one key cross batch
/// boundaries.
fn datafusion() -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(2)
        .with_batch_size(16);
    with_table(SessionContext::new_with_config(config))
}

fn with_table(ctx: SessionContext) -> SessionContext {
    ctx.register_table("t", table()).expect("registers");
    ctx
}

async fn rows(ctx: &SessionContext, sql: &str) -> Vec<(i64, u64)> {
    let batches = ctx
        .sql(sql)
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    let mut out = Vec::new();
    for b in batches {
        let id = b.column(0).as_primitive::<Int64Type>();
        let n = b.column(1).as_primitive::<UInt64Type>();
        assert_eq!(n.null_count(), 0);
        out.extend((0..b.num_rows()).map(|i| (id.value(i), n.value(i))));
    }
    out.sort_unstable();
    out
}

async fn physical(ctx: &SessionContext, sql: &str) -> String {
    let plan = ctx
        .sql(sql)
        .await
        .expect("plans")
        .create_physical_plan()
        .await
        .expect("physical plan");
    datafusion::physical_plan::displayable(plan.as_ref())
        .indent(true)
        .to_string()
}

/// Valtava's session (the rule installed) with small batches.
fn valtava() -> SessionContext {
    let ctx = crate::plan::session(Some(b"k"), 2);
    let state = ctx.state();
    let config = state.config().clone().with_batch_size(16);
    let state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
        .with_config(config)
        .build();
    with_table(SessionContext::new_with_state(state))
}

const QUERIES: [&str; 4] = [
    "SELECT id, row_number() OVER (PARTITION BY k1, k2 ORDER BY o DESC, id) AS n FROM t",
    "SELECT id, n FROM (SELECT id, row_number() OVER (PARTITION BY k2, k1 ORDER BY o, id DESC) \
     AS n FROM t) WHERE n = 1",
    "SELECT id, row_number() OVER (ORDER BY o, id) AS n FROM t",
    "SELECT id, row_number() OVER (PARTITION BY f ORDER BY id) AS n FROM t",
];

#[tokio::test]
async fn numbers_rows_as_datafusion_does() {
    for sql in QUERIES {
        let ours = valtava();
        assert!(
            physical(&ours, sql).await.contains("RowNumberExec"),
            "the rule replaces the window in {sql}"
        );
        let theirs = datafusion();
        assert!(!physical(&theirs, sql).await.contains("RowNumberExec"));
        let expected = rows(&theirs, sql).await;
        assert!(expected.len() > 100, "{sql} returns rows");
        assert_eq!(rows(&ours, sql).await, expected, "{sql}");
    }
}

#[tokio::test]
async fn leaves_other_windows_alone() {
    let sql = "SELECT id, row_number() OVER (PARTITION BY k1 ORDER BY o, id) AS n, \
               rank() OVER (PARTITION BY k1 ORDER BY o, id) AS r FROM t";
    let plan = physical(&valtava(), sql).await;
    assert!(plan.contains("BoundedWindowAggExec"), "{plan}");
    assert!(!plan.contains("RowNumberExec"), "{plan}");
}
