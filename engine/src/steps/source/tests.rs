//! The source step's plan: declared types, and a rule column for a value that is missing
//! where required or does not read as its type.

use crate::steps::testing::checked;
use arrow::datatypes::DataType;

#[test]
fn declared_columns_are_typed_and_checked() {
    let c = checked(
        "{ n: integer, d: date, t: { type: string, required: true } }",
        "",
    )
    .unwrap();
    let s = &c.plans["s"];
    let ty = |n: &str| s.output.field_with_name(n).unwrap().data_type().clone();
    assert_eq!(ty("n"), DataType::Int64);
    assert_eq!(ty("d"), DataType::Date32);
    assert_eq!(ty("t"), DataType::Utf8);
    // One rule column per typed or required column; every one rejects its row.
    assert_eq!(s.rules.len(), 3, "{:?}", s.rules);
    assert!(
        s.rules
            .iter()
            .all(|r| r.severity == crate::line::spec::Severity::Reject)
    );
}

/// A timestamp declared `local` is an instant of the line's zone (Finnish time by default)
/// and has a rule of its own for a time that is no one instant; one without `local` is read
/// as the clock shows it.
#[test]
fn local_times_are_instants_of_the_lines_zone_with_a_rule_of_their_own() {
    use arrow::datatypes::TimeUnit;
    let c = checked(
        "{ a: { type: timestamp, required: true, local: true }, b: timestamp }",
        "",
    )
    .unwrap();
    let s = &c.plans["s"];
    let ty = |n: &str| s.output.field_with_name(n).unwrap().data_type().clone();
    assert_eq!(
        ty("a"),
        DataType::Timestamp(TimeUnit::Microsecond, Some("Europe/Helsinki".into()))
    );
    assert_eq!(ty("b"), DataType::Timestamp(TimeUnit::Microsecond, None));
    let ids: Vec<&str> = s.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["required-a", "type-a", "local-time-a", "type-b"]);
}

/// Columns declared with a `format` are read in it, a value that does not read is named by
/// the column and the format (never the value), a blank one is empty; a derived
/// `working_days` gets the line's holidays from its `calendar`.
#[test]
fn formatted_columns_and_working_days_run_through_the_engine() {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use datafusion::datasource::{MemTable, TableProvider};
    use datafusion::prelude::SessionContext;

    use crate::plan::{InputInfo, Planner};
    let holidays = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference/arkipyhat.csv");
    let text = format!(
        "line: t\ntitle: t\ncodesets: {{ arkipyhat: {{ path: \"{}\", key: pvm }} }}\n\
         calendar: {{ holidays: arkipyhat }}\nsteps:\n  s: {{ source: {{ format: csv, location: x.csv, \
         columns: {{ e: {{ type: decimal, format: finnish }}, a: {{ type: date, format: hl7 }}, \
         b: {{ type: timestamp, format: hl7 }} }} }} }}\n  h:\n    harmonise:\n      input: s\n      \
         derive: {{ wd: \"working_days(a, CAST(b AS DATE))\", kk: \"add_months(a, 3)\" }}\n",
        holidays.display()
    );
    let (line, _) =
        crate::line::load::load_text("t.yaml", std::path::Path::new("."), text).unwrap();
    let checked = crate::plan::check::plan_all(line, vec![], &BTreeMap::new(), b"k").unwrap();
    let spec = checked.line.spec.steps["s"].source.as_ref().unwrap();
    let raw = crate::plan::raw_source_schema(spec);
    let rows = [
        vec![
            Some("1\u{a0}234,5"),
            Some("20250417"),
            Some("202504220900+0300"),
        ],
        vec![Some("\u{2212}12,5"), Some("20251130"), Some("202512311200")],
        vec![Some("12,5,3"), Some("20250230"), Some("20251231")],
        vec![Some(" "), None, None],
    ];
    let batch = crate::steps::validate::testing::typed(&raw, &rows);
    let tables = (checked.codesets.iter())
        .map(|(k, v)| (k.clone(), v.table.clone()))
        .collect();
    let ctx = crate::plan::session(Some(b"k"), 1);
    let planner = Planner {
        line: &checked.line,
        state: ctx.state(),
        params: BTreeMap::new(),
        codesets: &tables,
        unique_filter: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let run = |name: &str, input: &str, b: arrow::record_batch::RecordBatch, info: InputInfo| {
        let mut inputs: BTreeMap<String, (Arc<dyn TableProvider>, InputInfo)> = BTreeMap::new();
        let t = MemTable::try_new(b.schema(), vec![vec![b]]).unwrap();
        inputs.insert(input.into(), (Arc::new(t), info));
        let plan = planner.plan_step(name, &inputs).unwrap();
        let out = rt.block_on(async {
            SessionContext::new_with_state(ctx.state())
                .execute_logical_plan(plan.plan.clone())
                .await?
                .collect()
                .await
        });
        let out = out.unwrap();
        arrow::compute::concat_batches(&out[0].schema(), &out).unwrap()
    };
    let s = run("s", "s", batch, InputInfo::raw(raw.clone()));
    let text = |b: &arrow::record_batch::RecordBatch, c: &str| -> Vec<String> {
        let a = b.column_by_name(c).unwrap();
        (0..b.num_rows())
            .map(|r| arrow::util::display::array_value_to_string(a, r).unwrap())
            .collect()
    };
    assert_eq!(text(&s, "e"), ["1234.5", "-12.5", "", ""]);
    assert_eq!(text(&s, "a"), ["2025-04-17", "2025-11-30", "", ""]);
    assert_eq!(
        text(&s, "b"),
        ["2025-04-22T06:00:00", "2025-12-31T12:00:00", "", ""]
    );
    // The type rules: row 3's values do not read; row 4's blank text is empty.
    let reasons: Vec<String> = ["__r0t", "__r1t", "__r2t"]
        .iter()
        .flat_map(|c| text(&s, c))
        .filter(|r| !r.is_empty())
        .collect();
    assert_eq!(
        reasons,
        [
            "column `e`: not a decimal in the `finnish` format",
            "column `a`: not a date in the `hl7` format",
            "column `b`: not a timestamp in the `hl7` format",
        ]
    );
    // The step's output without its rule columns, as the next step reads it.
    let output = checked.plans["s"].output.clone();
    let columns = (output.fields().iter())
        .map(|f| s.column_by_name(f.name()).unwrap().clone())
        .collect();
    let s = arrow::record_batch::RecordBatch::try_new(output.clone(), columns).unwrap();
    let info = InputInfo {
        schema: output,
        ..checked.plans["s"].info()
    };
    let h = run("h", "s", s, info);
    // Easter 2025 (Good Friday, Easter Monday) between 17 and 22 April: one working day;
    // December 2025 has 23 weekdays, three of them Christmas holidays.
    assert_eq!(text(&h, "wd"), ["1", "20", "", ""]);
    assert_eq!(text(&h, "kk"), ["2025-07-17", "2026-02-28", "", ""]);
}

/// `working_days` in a line without a `calendar` is placed at the call (V308).
#[test]
fn working_days_without_a_calendar_is_placed() {
    let d = crate::steps::testing::checked(
        "{ a: date, b: date }",
        "  h:\n    harmonise:\n      input: s\n      derive: { n: \"working_days(a, b)\" }\n",
    )
    .err()
    .expect("refused");
    assert_eq!(crate::steps::testing::codes(&d), ["V308"], "{d:?}");
}

/// `working_days` written with a third argument is refused (V308): the holidays are the
/// line's `calendar`, never a list the expression's author chooses.
#[test]
fn working_days_with_holidays_of_its_own_is_refused() {
    let d = crate::steps::testing::checked(
        "{ a: date, b: date }",
        "  h:\n    harmonise:\n      input: s\n      derive: { n: \"working_days(a, b, '2025-01-02')\" }\n",
    )
    .err()
    .expect("refused");
    assert_eq!(crate::steps::testing::codes(&d), ["V308"], "{d:?}");
}

/// A `sql` step's `working_days` is planned like an expression's: without a `calendar`,
/// or with holidays of its own, it is refused when the line is checked (V308), not at run
/// time.
#[test]
fn working_days_in_a_query_is_given_the_calendar_or_refused() {
    for query in [
        "SELECT working_days(a, b) AS n FROM s",
        "SELECT working_days(a, b, '2025-01-02') AS n FROM s",
        "SELECT n FROM (SELECT working_days(a, b) AS n FROM s) t",
    ] {
        let d = crate::steps::testing::checked(
            "{ a: date, b: date }",
            &format!("  q:\n    sql:\n      inputs: [s]\n      query: \"{query}\"\n"),
        )
        .err()
        .expect("refused");
        assert_eq!(crate::steps::testing::codes(&d), ["V308"], "{query}: {d:?}");
    }
}
