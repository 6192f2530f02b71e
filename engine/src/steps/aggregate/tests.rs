//! Distinct counts, medians and roll-ups planned by `super::distinct` against
//! DataFusion's own aggregates; the totals' codes of a declared area and of the other
//! dimensions.

use std::sync::Arc;

use arrow::array::{Float64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::logical_expr::{Expr, GroupingSet, LogicalPlan, LogicalPlanBuilder, col, lit};
use datafusion::prelude::{SessionConfig, SessionContext};

use super::distinct::{distinct_counts, medians, rolled_up};
use crate::plan::SPILL_MERGE_FAN_IN;
use crate::plan::expr::tests::text_rows;

/// Groups of every size from 0 to 9 values (odd and even counts, repeated values,
/// negatives, NULLs), in two dimensions.
fn table() -> Arc<MemTable> {
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut x = Vec::new();
    let mut seed = 7u64;
    for g in 0..40usize {
        for i in 0..g % 10 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            a.push(format!("a{}", g % 3));
            // Some cells have a NULL member; values repeat within and across cells.
            b.push((g % 7 != 0).then(|| format!("b{}", g % 13)));
            x.push(match (seed >> 33) % 7 {
                0 => None,
                r => Some(r as f64 * 1.5 - 4.0 + (i % 2) as f64),
            });
        }
    }
    // Values in one cell (also a NULL member), in two cells that share one member,
    // in a cell with a NULL member and one without.
    for (va, vb, v) in [
        ("a0", Some("b1"), 100.0),
        ("a0", Some("b1"), 100.0),
        ("a0", Some("b1"), 101.0),
        ("a0", Some("b2"), 101.0),
        ("a1", Some("b3"), 102.0),
        ("a2", Some("b3"), 102.0),
        ("a1", None, 103.0),
        ("a1", Some("b3"), 103.0),
        ("a2", None, 104.0),
        ("a2", None, 104.0),
    ] {
        a.push(va.to_string());
        b.push(vb.map(str::to_string));
        x.push(Some(v));
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Utf8, false),
        Field::new("b", DataType::Utf8, true),
        Field::new("x", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(a)),
            Arc::new(StringArray::from(b)),
            Arc::new(Float64Array::from(x)),
        ],
    )
    .unwrap();
    Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())
}

/// Rows of `plan` as text, sorted.
async fn rows(ctx: &SessionContext, plan: LogicalPlan) -> Vec<String> {
    let batches = ctx
        .execute_logical_plan(plan)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    text_rows(batches)
}

/// Medians and distinct counts per group of `dims` (per grouping set when `totals`)
/// against DataFusion's own.
async fn compare(dims: &[&str], totals: bool) {
    use datafusion::functions_aggregate::expr_fn::{count_distinct, grouping, median};
    let ctx = SessionContext::new();
    let scan = || LogicalPlanBuilder::scan("t", provider_as_source(table()), None).unwrap();
    let names: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    let x = col("x");
    let keys = || dims.iter().map(|d| col(*d)).collect::<Vec<_>>();
    let flags = || {
        dims.iter()
            .map(|d| col(format!("g{d}")))
            .collect::<Vec<_>>()
    };
    let mut aggs = vec![
        median(x.clone()).alias("m"),
        count_distinct(x.clone()).alias("d"),
    ];
    let group = if totals {
        aggs.extend(
            dims.iter()
                .map(|d| grouping(col(*d)).alias(format!("g{d}"))),
        );
        vec![Expr::GroupingSet(GroupingSet::Cube(keys()))]
    } else {
        keys()
    };
    let reference = scan().aggregate(group, aggs).unwrap();
    let mut out = keys();
    if totals {
        out.extend(flags());
    }
    let project = |b: LogicalPlanBuilder, m: &str| {
        let mut e = out.clone();
        e.push(col(m));
        b.project(e).unwrap().build().unwrap()
    };
    let mine_cols = |alias: &str| {
        let mut e: Vec<Expr> = dims
            .iter()
            .map(|d| col(format!("{alias}_d_{d}")).alias(*d))
            .collect();
        if totals {
            e.extend(
                dims.iter()
                    .map(|d| col(format!("{alias}_g_{d}")).alias(format!("g{d}"))),
            );
        }
        e.push(col(alias).alias(if alias == "md" { "m" } else { "d" }));
        e
    };
    let mine = medians(scan(), &names, totals, &x, "md").unwrap();
    let mine = LogicalPlanBuilder::from(mine)
        .project(mine_cols("md"))
        .unwrap()
        .build()
        .unwrap();
    // Groups whose values are all NULL have no pairs: DataFusion gives them NULL.
    let want: Vec<String> = rows(&ctx, project(reference.clone(), "m"))
        .await
        .into_iter()
        .filter(|r| !r.ends_with("|∅"))
        .collect();
    assert!(
        want.len() > 5 || (dims.is_empty() && want.len() == 1),
        "{want:?}"
    );
    assert_eq!(rows(&ctx, mine).await, want);

    let mine = distinct_counts(scan(), &names, totals, &x, "dc").unwrap();
    let mine = LogicalPlanBuilder::from(mine)
        .project(mine_cols("dc"))
        .unwrap()
        .build()
        .unwrap();
    let want: Vec<String> = rows(&ctx, project(reference, "d"))
        .await
        .into_iter()
        .filter(|r| !r.ends_with("|0"))
        .collect();
    assert_eq!(rows(&ctx, mine).await, want);
}

/// Distinct counts whose groupings spill under a small memory limit (their states
/// written, sorted and merged), and without a limit skip the partial grouping of mostly
/// distinct values (each row's own state), equal DataFusion's own.
#[tokio::test]
async fn distinct_counts_that_spill_equal_datafusion() {
    use datafusion::execution::memory_pool::FairSpillPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::functions_aggregate::expr_fn::{count_distinct, grouping};
    use datafusion::physical_plan::ExecutionPlan;
    let n = 150_000usize;
    let mut seed = 11u64;
    let mut next = |m: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % m
    };
    let (mut a, mut b, mut x) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let v = next(n as u64 / 2);
        // Values keep to one `a` mostly; `b` varies (and is sometimes NULL).
        a.push(format!("a{}", (v + u64::from(next(10) == 0)) % 4));
        b.push((next(9) != 0).then(|| format!("b{}", next(3))));
        x.push((next(50) != 0).then(|| format!("hetu-{v:06}")));
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Utf8, false),
        Field::new("b", DataType::Utf8, true),
        Field::new("x", DataType::Utf8, true),
    ]));
    let batches: Vec<RecordBatch> = (0..n)
        .step_by(4096)
        .map(|from| {
            let to = (from + 4096).min(n);
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(a[from..to].to_vec())),
                    Arc::new(StringArray::from(b[from..to].to_vec())),
                    Arc::new(StringArray::from(x[from..to].to_vec())),
                ],
            )
            .unwrap()
        })
        .collect();
    let table = Arc::new(MemTable::try_new(schema, vec![batches]).unwrap());
    let scan = || LogicalPlanBuilder::scan("t", provider_as_source(table.clone()), None).unwrap();
    let dims = ["a".to_string(), "b".to_string()];
    let keys = || vec![col("a"), col("b")];

    let reference = scan()
        .aggregate(
            vec![Expr::GroupingSet(GroupingSet::Cube(keys()))],
            vec![
                count_distinct(col("x")).alias("d"),
                grouping(col("a")).alias("ga"),
                grouping(col("b")).alias("gb"),
            ],
        )
        .unwrap()
        .project(vec![col("a"), col("b"), col("ga"), col("gb"), col("d")])
        .unwrap()
        .build()
        .unwrap();
    let want: Vec<String> = rows(&SessionContext::new(), reference)
        .await
        .into_iter()
        .filter(|r| !r.ends_with("|0"))
        .collect();
    assert!(want.len() > 20, "{want:?}");

    // Runs the plan in a session with `pool` bytes, if any; its rows and metrics.
    type Metrics = datafusion::physical_plan::metrics::MetricsSet;
    fn total(p: &Arc<dyn ExecutionPlan>, metric: &dyn Fn(Metrics) -> Option<usize>) -> usize {
        let own = p.metrics().and_then(metric).unwrap_or(0);
        own + p.children().iter().map(|c| total(c, metric)).sum::<usize>()
    }
    let run = |pool: Option<usize>, fan_in: usize| {
        let mut config = SessionConfig::new()
            .with_target_partitions(2)
            .with_batch_size(512);
        config
            .options_mut()
            .execution
            .skip_partial_aggregation_probe_rows_threshold = 2000;
        // The sort that numbers the few cells keeps its merge reserve within the pool
        // (10 MB by default, more than the whole pool here).
        config.options_mut().execution.sort_spill_reservation_bytes = 256 << 10;
        // A step's inputs are streams without statistics, so its joins keep the build
        // side the planner gives them (the few cells); the table here has statistics.
        config.options_mut().optimizer.join_reordering = false;
        let mut runtime = RuntimeEnvBuilder::new().with_max_spill_merge_fan_in(fan_in);
        if let Some(bytes) = pool {
            runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(bytes)));
        }
        let ctx = SessionContext::new_with_config_rt(config, runtime.build_arc().unwrap());
        let mine = distinct_counts(scan(), &dims, true, &col("x"), "dc").unwrap();
        let mine = LogicalPlanBuilder::from(mine)
            .project(vec![
                col("dc_d_a"),
                col("dc_d_b"),
                col("dc_g_a"),
                col("dc_g_b"),
                col("dc"),
            ])
            .unwrap()
            .build()
            .unwrap();
        async move {
            let physical = ctx
                .execute_logical_plan(mine)
                .await
                .unwrap()
                .create_physical_plan()
                .await
                .unwrap();
            let batches = datafusion::physical_plan::collect(physical.clone(), ctx.task_ctx())
                .await
                .unwrap();
            let spills = total(&physical, &|m| m.spill_count());
            let skipped = total(&physical, &|m| {
                m.sum_by_name("skipped_aggregation_rows")
                    .map(|v| v.as_usize())
            });
            (text_rows(batches), spills, skipped)
        }
    };
    let (limited, spills, _) = run(Some(3 << 20), SPILL_MERGE_FAN_IN).await;
    assert!(spills > 0, "no grouping spilled");
    assert_eq!(limited, want);
    // Runs merged two at a time, in rounds (as a long run's many runs are, 16 at a time).
    // A round writes its merged runs to a new spill file: more spills than at once.
    let (rounds, more_spills, _) = run(Some(3 << 20), 2).await;
    assert!(
        more_spills > spills,
        "{more_spills} spills: no merge in rounds"
    );
    assert_eq!(rounds, want);
    let (unlimited, _, skipped) = run(None, 0).await;
    assert!(skipped > 0, "no partial grouping was skipped");
    assert_eq!(unlimited, want);
}

/// Counts, sums (also filtered, also of decimals), least and greatest values rolled up
/// from cells equal the same aggregates over the rows in every grouping set, with their
/// types; other aggregates are not rolled up.
#[tokio::test]
async fn aggregates_rolled_up_from_cells_equal_the_cube_over_rows() {
    use datafusion::functions_aggregate::expr_fn::{avg, count, grouping, max, min, sum};
    use datafusion::logical_expr::ExprFunctionExt;
    let ctx = SessionContext::new();
    let scan = || LogicalPlanBuilder::scan("t", provider_as_source(table()), None).unwrap();
    let keys = vec![col("a"), col("b")];
    let dec = Expr::Cast(datafusion::logical_expr::Cast::new(
        Box::new(col("x")),
        DataType::Decimal128(10, 2),
    ));
    let aggs = vec![
        count(lit(1u8)).alias("n"),
        count(col("x")).alias("nx"),
        sum(col("x")).alias("s"),
        sum(dec).alias("sd"),
        sum(col("x"))
            .filter(col("x").gt(lit(0.0)))
            .build()
            .unwrap()
            .alias("sp"),
        min(col("x")).alias("lo"),
        max(col("x")).alias("hi"),
    ];
    let cube = || vec![Expr::GroupingSet(GroupingSet::Cube(keys.clone()))];
    let flags = || {
        vec![
            grouping(col("a")).alias("ga"),
            grouping(col("b")).alias("gb"),
        ]
    };
    let mut direct = aggs.clone();
    direct.extend(flags());
    let direct = scan().aggregate(cube(), direct).unwrap().build().unwrap();
    let (fine, mut totals) = rolled_up(&aggs, &keys, scan()).unwrap().unwrap();
    totals.extend(flags());
    let rolled = fine.aggregate(cube(), totals).unwrap().build().unwrap();
    let types = |p: &LogicalPlan| {
        p.schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(types(&rolled), types(&direct));
    let want = rows(&ctx, direct).await;
    assert!(want.len() > 30, "{want:?}");
    assert_eq!(rows(&ctx, rolled).await, want);
    assert!(
        rolled_up(&[avg(col("x")).alias("m")], &keys, scan())
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn medians_and_distinct_counts_equal_datafusion_per_group() {
    compare(&["a", "b"], false).await;
}

#[tokio::test]
async fn medians_and_distinct_counts_equal_datafusion_per_grouping_set() {
    compare(&["a", "b"], true).await;
}

/// One dimension with NULL members: a NULL member is a cell of its own.
#[tokio::test]
async fn medians_and_distinct_counts_by_one_dimension_with_nulls() {
    compare(&["b"], false).await;
    compare(&["b"], true).await;
}

/// Without dimensions: one group, all rows.
#[tokio::test]
async fn medians_and_distinct_counts_of_all_rows() {
    compare(&[], false).await;
}

/// A dimension with more values than its lane of a cell's number holds (15 bits each for
/// eight dimensions) is an error that names it, not a wrong count.
#[tokio::test]
async fn too_many_values_of_a_dimension_is_an_error_that_names_it() {
    let ctx = SessionContext::new();
    ctx.sql(
        "CREATE TABLE t AS SELECT v AS a, 1 AS b, 1 AS c, 1 AS d, 1 AS e, 1 AS f, 1 AS g, \
         1 AS h, v AS x FROM (SELECT unnest(generate_series(1, 32768)) AS v)",
    )
    .await
    .unwrap()
    .collect()
    .await
    .unwrap();
    let dims: Vec<String> = "abcdefgh".chars().map(String::from).collect();
    let count = |rows: i64| {
        let ctx = ctx.clone();
        let dims = dims.clone();
        async move {
            let scan = ctx
                .table("t")
                .await
                .unwrap()
                .filter(col("a").lt_eq(lit(rows)))
                .unwrap()
                .into_unoptimized_plan();
            let plan = distinct_counts(
                LogicalPlanBuilder::from(scan),
                &dims,
                false,
                &col("x"),
                "dc",
            )
            .unwrap();
            ctx.execute_logical_plan(plan)
                .await
                .unwrap()
                .collect()
                .await
        }
    };
    // 32 767 values fit (codes 0 to 32 766); one more does not.
    let fits: usize = count(32_767)
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(fits, 32_767);
    let err = count(32_768).await.unwrap_err().to_string();
    assert!(
        err.contains("over 8 dimensions takes at most 32767 distinct values in each; `a`"),
        "{err}"
    );
}

/// A line whose aggregate `a` groups by `hyvinvointialue` and `laji` with totals (the
/// aggregate's `area:` line given by `area`, empty for none), published by `p` with the
/// aggregate's dimensions and by `q` with `laji` only.
fn area_line(area: &str) -> String {
    format!(
        "line: t\ntitle: t\nsteps:\n\
         \x20 s:\n    source:\n      format: csv\n      location: x.csv\n\
         \x20     columns: {{ hyvinvointialue: string, laji: string, n: integer }}\n\
         \x20 a:\n    aggregate:\n      input: s\n      by: [hyvinvointialue, laji]\n\
         \x20     totals: true\n{area}\
         \x20     measures: {{ summa: sum(n) }}\n\
         \x20 p:\n    publish: {{ input: a, dataset: alueet, formats: [csv], disclosure: {{ min_count: 1 }} }}\n\
         \x20 q:\n    publish: {{ input: a, dataset: lajit, formats: [csv], dimensions: [laji], disclosure: {{ min_count: 1 }} }}\n"
    )
}

/// The line planned over empty inputs, or its diagnostics.
fn area_checked(area: &str) -> Result<crate::plan::check::Checked, Vec<crate::diag::Diagnostic>> {
    let (line, _) =
        crate::line::load::load_text("t.yaml", std::path::Path::new("."), area_line(area))?;
    let params = crate::plan::check::bind_params(&line, None).unwrap();
    let values = crate::line::params::expression_values(&params);
    crate::plan::check::plan_all(line, vec![], &values, b"k")
}

/// The rows of aggregate `a` over three input rows, as text (`hyvinvointialue|laji|summa`),
/// sorted.
async fn area_totals(area: &str) -> Vec<String> {
    use arrow::array::{ArrayRef, UInt64Array};
    use std::collections::BTreeMap;
    let checked = area_checked(area).unwrap();
    let source = checked.plans["s"].output.clone();
    let input = [["01", "A", "1"], ["01", "B", "2"], ["02", "A", "4"]];
    let columns: Vec<ArrayRef> = source
        .fields()
        .iter()
        .map(|f| {
            let a: ArrayRef = match f.name().as_str() {
                crate::plan::OBJECT_COLUMN => Arc::new(StringArray::from(vec!["x.csv"; 3])),
                crate::plan::ROW_COLUMN => Arc::new(UInt64Array::from_iter_values(1..=3)),
                name => {
                    let i = ["hyvinvointialue", "laji", "n"]
                        .iter()
                        .position(|c| *c == name)
                        .unwrap();
                    Arc::new(StringArray::from_iter_values(input.iter().map(|r| r[i])))
                }
            };
            arrow::compute::cast(&a, f.data_type()).unwrap()
        })
        .collect();
    let batch = RecordBatch::try_new(source.clone(), columns).unwrap();
    let table = MemTable::try_new(source, vec![vec![batch]]).unwrap();
    let mut inputs: crate::plan::Inputs = BTreeMap::new();
    inputs.insert("s".into(), (Arc::new(table), checked.plans["s"].info()));
    let ctx = crate::plan::session(Some(b"k"), 1);
    let params = crate::plan::check::bind_params(&checked.line, None).unwrap();
    let codesets = BTreeMap::new();
    let planner = crate::plan::Planner {
        line: &checked.line,
        state: ctx.state(),
        params: crate::line::params::expression_values(&params),
        codesets: &codesets,
        unique_filter: None,
    };
    let plan = planner.plan_step("a", &inputs).unwrap();
    rows(&ctx, plan.plan).await
}

fn sorted(rows: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
    v.sort();
    v
}

/// The declared area's total is `SSS`, the whole country, and another dimension's `YHT`;
/// the plan carries the area to publish (kept where the published dimensions name it).
#[tokio::test]
async fn the_declared_area_totals_to_the_whole_country() {
    let area = "      area: hyvinvointialue\n";
    let checked = area_checked(area).unwrap();
    assert_eq!(checked.plans["a"].area.as_deref(), Some("hyvinvointialue"));
    assert_eq!(checked.plans["p"].area.as_deref(), Some("hyvinvointialue"));
    assert_eq!(checked.plans["q"].area, None);
    assert_eq!(
        area_totals(area).await,
        sorted(&[
            "01|A|1",
            "01|B|2",
            "01|YHT|3",
            "02|A|4",
            "02|YHT|4",
            "SSS|A|5",
            "SSS|B|2",
            "SSS|YHT|7",
        ])
    );
}

/// Nothing is guessed from a name: without `area:`, a dimension called `hyvinvointialue`
/// totals to `YHT` like any other, and no step has an area.
#[tokio::test]
async fn without_area_no_dimension_is_the_area() {
    let checked = area_checked("").unwrap();
    assert!(checked.plans.values().all(|p| p.area.is_none()));
    assert_eq!(
        area_totals("").await,
        sorted(&[
            "01|A|1",
            "01|B|2",
            "01|YHT|3",
            "02|A|4",
            "02|YHT|4",
            "YHT|A|5",
            "YHT|B|2",
            "YHT|YHT|7",
        ])
    );
}

/// `area:` naming a column that is not one of the dimensions is V201, placed at the name,
/// with the dimension it likely meant.
#[test]
fn an_area_that_is_not_a_dimension_is_an_error() {
    let Err(d) = area_checked("      area: hyvinvointialu\n") else {
        panic!("planned")
    };
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].code, crate::diag::Code::V201);
    assert!(
        d[0].message.contains("`hyvinvointialu`"),
        "{}",
        d[0].message
    );
    assert_eq!((d[0].line, d[0].col), (14, 13), "{d:?}");
    assert_eq!(
        d[0].hint.as_deref(),
        Some("did you mean `hyvinvointialue`?")
    );
    // An input column that is not grouped by is no area either.
    let Err(d) = area_checked("      area: n\n") else {
        panic!("planned")
    };
    assert_eq!(d[0].code, crate::diag::Code::V201, "{d:?}");
}
