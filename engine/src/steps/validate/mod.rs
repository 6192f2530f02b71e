//! The validate step: rules that check each row or the whole dataset. Each rule kind is one
//! file under `rules/` (what the line file says and what the kind does); `plan.rs` orders
//! the phases of a validate step's plan. A row rule compiles to a vectorised DataFusion
//! expression that yields the reason of a violation, or null; a dataset rule to a check the
//! run evaluates when the step has seen every row.

mod plan;
pub mod rules;
pub mod seen;

pub use rules::{CHECKS, category, check_count};

#[cfg(test)]
mod tests {
    //! Each check with rows that pass and rows that break it, run through the real planner
    //! and DataFusion.
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, UInt64Array};
    use arrow::datatypes::DataType;
    use datafusion::datasource::{MemTable, TableProvider};
    use datafusion::prelude::SessionContext;

    use crate::plan::{InputInfo, Planner};

    fn line_text(columns: &str, rule: &str) -> String {
        let codes = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/reference/kunta_hyvinvointialue_2023.csv");
        format!(
            "line: t\ntitle: t\nparams: {{ period: {{ kind: month, default: \"2025-03\" }} }}\n\
             codesets: {{ kunnat: {{ path: \"{}\", key: kunta }} }}\n\
             steps:\n  s: {{ source: {{ format: csv, location: x.csv, columns: {columns} }} }}\n\
             \x20 muut: {{ source: {{ format: csv, location: y.csv, columns: {{ avain: string }} }} }}\n\
             \x20 v: {{ validate: {{ input: s, rules: [{rule}] }} }}\n",
            codes.display()
        )
    }

    fn typed(schema: &arrow::datatypes::Schema, rows: &[Vec<Option<&str>>]) -> RecordBatch {
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            let a: ArrayRef = match f.name().as_str() {
                "_object" => Arc::new(StringArray::from(vec!["x.csv"; rows.len()])),
                "_row" => Arc::new(UInt64Array::from_iter_values(1..=rows.len() as u64)),
                _ => {
                    let text = StringArray::from(rows.iter().map(|r| r[i]).collect::<Vec<_>>());
                    arrow::compute::cast(&text, f.data_type()).unwrap()
                }
            };
            arrays.push(a);
        }
        RecordBatch::try_new(Arc::new(schema.clone()), arrays).unwrap()
    }

    /// The reason of each row (in row order), or the diagnostics when the rule is invalid.
    fn eval(
        columns: &str,
        rule: &str,
        rows: &[Vec<Option<&str>>],
    ) -> Result<Vec<Option<String>>, String> {
        eval_with(columns, rule, rows, Some(1 << 20), 1)
    }

    /// `eval` with a unique rule's first-pass filter of `unique_filter` bytes (`None`: the
    /// grouping a cluster uses), the rows in `partitions` partitions read at once.
    fn eval_with(
        columns: &str,
        rule: &str,
        rows: &[Vec<Option<&str>>],
        unique_filter: Option<usize>,
        partitions: usize,
    ) -> Result<Vec<Option<String>>, String> {
        let text = line_text(columns, rule);
        let (line, _) = crate::line::load::load_text("t.yaml", std::path::Path::new("."), text)
            .map_err(|d| format!("{d:?}"))?;
        let params = crate::plan::check::bind_params(&line, None).unwrap();
        let values = crate::line::params::expression_values(&params);
        let checked = crate::plan::check::plan_all(line, vec![], &values, b"k").map_err(|d| {
            d.iter()
                .map(|d| format!("{:?} {}", d.code, d.message))
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let src = &checked.plans["s"].output;
        let batch = typed(src, rows);
        let others = typed(
            &checked.plans["muut"].output,
            &[vec![Some("a")], vec![Some("b")]],
        );
        let mut inputs: BTreeMap<String, (Arc<dyn TableProvider>, InputInfo)> = BTreeMap::new();
        for (name, b) in [("s", batch), ("muut", others)] {
            let schema = b.schema();
            // Every `partitions`-th slice of 7 rows in one partition: repeats meet across them.
            let mut parts = vec![Vec::new(); partitions];
            for (i, start) in (0..b.num_rows()).step_by(7).enumerate() {
                parts[i % partitions].push(b.slice(start, 7.min(b.num_rows() - start)));
            }
            let t = MemTable::try_new(schema.clone(), parts).unwrap();
            // What is known of the step's output (its personal columns) comes with it.
            let info = InputInfo {
                schema,
                ..checked.plans[name].info()
            };
            inputs.insert(name.into(), (Arc::new(t), info));
        }
        let tables = checked
            .codesets
            .iter()
            .map(|(k, v)| (k.clone(), v.table.clone()))
            .collect();
        let ctx = crate::plan::session(Some(b"k"), partitions);
        let planner = Planner {
            line: &checked.line,
            state: ctx.state(),
            params: values,
            codesets: &tables,
            unique_filter,
        };
        let plan = planner
            .plan_step("v", &inputs)
            .map_err(|d| format!("{d:?}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let batches = rt
            .block_on(async {
                SessionContext::new_with_state(ctx.state())
                    .execute_logical_plan(plan.plan.clone())
                    .await?
                    .collect()
                    .await
            })
            .map_err(|e| e.to_string())?;
        // Once the rows are out, nothing is held in the pool, though the step's plan (and a
        // unique rule's filter in it) still exists: the filter went back after its pass.
        let held = ctx.state().runtime_env().memory_pool.reserved();
        if held != 0 {
            return Err(format!("{held} bytes still reserved after the step's rows"));
        }
        drop(plan);
        let mut out: Vec<(u64, Option<String>)> = Vec::new();
        for b in batches {
            let rowno = b
                .column_by_name("_row")
                .unwrap()
                .as_primitive::<arrow::datatypes::UInt64Type>()
                .clone();
            let reason =
                arrow::compute::cast(b.column_by_name("__r0").unwrap(), &DataType::Utf8).unwrap();
            let reason = reason.as_string::<i32>();
            for i in 0..b.num_rows() {
                out.push((
                    rowno.value(i),
                    reason.is_valid(i).then(|| reason.value(i).to_string()),
                ));
            }
        }
        out.sort();
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }

    /// Which rows (1-based) break the rule.
    fn broken(columns: &str, rule: &str, rows: &[Vec<Option<&str>>]) -> Vec<usize> {
        eval(columns, rule, rows)
            .unwrap_or_else(|e| panic!("{rule}: {e}"))
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_some())
            .map(|(i, _)| i + 1)
            .collect()
    }

    fn one(v: Option<&str>) -> Vec<Option<&str>> {
        vec![v]
    }

    #[test]
    fn required() {
        let rows = vec![
            vec![Some("x"), None],
            vec![None, Some("y")],
            vec![Some("x"), Some("y")],
        ];
        assert_eq!(
            broken(
                "{ a: string, b: string }",
                "{ id: r, required: [a, b] }",
                &rows
            ),
            vec![1, 2]
        );
        assert_eq!(
            broken("{ a: string, b: string }", "{ id: r, required: a }", &rows),
            vec![2]
        );
    }

    #[test]
    fn unique_single_and_composite() {
        let rows = vec![
            vec![Some("1"), Some("a")],
            vec![Some("2"), Some("a")],
            vec![Some("1"), Some("b")],
            vec![Some("1"), Some("a")],
            vec![None, Some("a")],
            vec![None, Some("a")],
        ];
        assert_eq!(
            broken("{ k: string, m: string }", "{ id: r, unique: k }", &rows),
            vec![3, 4]
        );
        let reasons = eval(
            "{ k: string, m: string }",
            "{ id: r, unique: [k, m] }",
            &rows,
        )
        .unwrap();
        assert_eq!(reasons.iter().filter(|r| r.is_some()).count(), 1);
        assert_eq!(
            reasons[3].as_deref(),
            Some("duplicate `k`, `m`; first at row 1")
        );
    }

    /// The first pass's filter may flag keys that were not seen (here a filter of one word
    /// flags most of them) and the partitions test it at once; the reasons are those of the
    /// exact grouping a cluster uses, row for row.
    #[test]
    fn unique_is_exact_whatever_the_filter_flags() {
        let ids: Vec<String> = (0..3000)
            .map(|i| format!("T{}", (i * 7919) % 2500))
            .collect();
        let rows: Vec<Vec<Option<&str>>> = ids
            .iter()
            .enumerate()
            .map(|(i, k)| vec![(i % 97 != 0).then_some(k.as_str()), Some(["a", "b"][i % 2])])
            .collect();
        for rule in ["{ id: r, unique: k }", "{ id: r, unique: [k, m] }"] {
            let exact = eval_with("{ k: string, m: string }", rule, &rows, None, 2).unwrap();
            let broken = exact.iter().filter(|r| r.is_some()).count();
            assert!(broken > 100, "{rule}: {broken}");
            for (filter, partitions) in [(8, 2), (8, 1), (1 << 20, 2)] {
                let got = eval_with(
                    "{ k: string, m: string }",
                    rule,
                    &rows,
                    Some(filter),
                    partitions,
                )
                .unwrap();
                assert_eq!(
                    got, exact,
                    "{rule}, filter {filter}, {partitions} partitions"
                );
            }
        }
    }

    /// Two unique rules in one step: each filter's pass ends before the other's begins (the
    /// outer join builds its side first), each filter goes back to the pool, and the first
    /// rule's reasons are the exact grouping's.
    #[test]
    fn two_unique_rules_each_give_their_filter_back() {
        let rows: Vec<Vec<Option<&str>>> = (0..500)
            .map(|i| {
                vec![
                    Some(["K1", "K2", "K3", "K4", "K5"][i % 5]),
                    Some(["a", "b", "c"][i % 3]),
                ]
            })
            .collect();
        let rules = "{ id: r, unique: k }, { id: s, unique: [k, m] }";
        let exact = eval_with("{ k: string, m: string }", rules, &rows, None, 2).unwrap();
        assert_eq!(exact.iter().filter(|r| r.is_some()).count(), 495);
        for partitions in [1, 2] {
            let got = eval_with(
                "{ k: string, m: string }",
                rules,
                &rows,
                Some(1 << 16),
                partitions,
            )
            .unwrap();
            assert_eq!(got, exact, "{partitions} partitions");
        }
    }

    #[test]
    fn accepted_values() {
        let rows = vec![one(Some("A")), one(Some("E")), one(None)];
        assert_eq!(
            broken(
                "{ u: string }",
                "{ id: r, values: { column: u, values: [A, B] } }",
                &rows
            ),
            vec![2]
        );
    }

    #[test]
    fn in_codeset() {
        let rows = vec![one(Some("091")), one(Some("999")), one(Some("91"))];
        assert_eq!(
            broken(
                "{ kunta: string }",
                "{ id: r, in_codeset: { column: kunta, codeset: kunnat } }",
                &rows
            ),
            vec![2, 3]
        );
    }

    #[test]
    fn range_of_numbers_dates_and_timestamps() {
        let rows = vec![
            one(Some("0")),
            one(Some("-1")),
            one(Some("5.5")),
            one(Some("6")),
        ];
        assert_eq!(
            broken(
                "{ n: decimal }",
                "{ id: r, range: { column: n, min: 0, max: 5.5 } }",
                &rows
            ),
            vec![2, 4]
        );
        let days = vec![
            one(Some("2024-12-31")),
            one(Some("2025-01-01")),
            one(Some("2026-01-01")),
        ];
        assert_eq!(
            broken(
                "{ d: date }",
                "{ id: r, range: { column: d, min: 2025-01-01, max: 2025-12-31 } }",
                &days
            ),
            vec![1, 3]
        );
        let times = vec![
            one(Some("2025-01-01T00:00:00")),
            one(Some("2025-01-01T23:59:59")),
        ];
        assert_eq!(
            broken(
                "{ t: timestamp }",
                "{ id: r, range: { column: t, max: \"2025-01-01T12:00:00\" } }",
                &times
            ),
            vec![2]
        );
        let e = eval(
            "{ d: date }",
            "{ id: r, range: { column: d, min: eilen } }",
            &days,
        )
        .unwrap_err();
        assert!(e.contains("V202"), "{e}");
    }

    #[test]
    fn regex_matches_whole_values() {
        let rows = vec![
            one(Some("703")),
            one(Some("7030")),
            one(Some("7a3")),
            one(None),
        ];
        assert_eq!(
            broken(
                "{ c: string }",
                "{ id: r, regex: { column: c, pattern: \"[0-9]{3}\" } }",
                &rows
            ),
            vec![2, 3]
        );
        let e = eval(
            "{ c: string }",
            "{ id: r, regex: { column: c, pattern: \"[0-9\" } }",
            &rows,
        )
        .unwrap_err();
        assert!(e.contains("V203"), "{e}");
    }

    #[test]
    fn identity_codes_with_and_without_temporary_ones() {
        let rows = vec![
            one(Some("131052-308T")),
            one(Some("131052-308U")),
            one(Some("020516C903K")),
            one(None),
        ];
        assert_eq!(
            broken(
                "{ h: { type: string, personal: true } }",
                "{ id: r, hetu: h }",
                &rows
            ),
            vec![2]
        );
        assert_eq!(
            broken(
                "{ h: { type: string, personal: true } }",
                "{ id: r, hetu: h, temporary: false }",
                &rows
            ),
            vec![2, 3]
        );
    }

    #[test]
    fn order_of_dates() {
        let rows = vec![
            vec![Some("2025-01-01"), Some("2025-01-02"), Some("2025-01-03")],
            vec![Some("2025-01-02"), Some("2025-01-01"), Some("2025-01-03")],
            vec![Some("2025-01-01"), Some("2025-01-04"), Some("2025-01-03")],
            vec![Some("2025-01-01"), None, Some("2025-01-03")],
        ];
        let reasons = eval(
            "{ a: date, b: date, c: date }",
            "{ id: r, order: [a, b, c] }",
            &rows,
        )
        .unwrap();
        assert_eq!(reasons[0], None);
        assert_eq!(reasons[1].as_deref(), Some("`a` is after `b`"));
        assert_eq!(reasons[2].as_deref(), Some("`b` is after `c`"));
        assert_eq!(reasons[3], None);
    }

    #[test]
    fn expressions_and_conditions() {
        let rows = vec![
            vec![Some("1"), Some("A")],
            vec![Some("-1"), Some("A")],
            vec![Some("-1"), Some("B")],
            vec![None, Some("A")],
        ];
        assert_eq!(
            broken(
                "{ n: integer, k: string }",
                "{ id: r, expr: \"n >= 0\" }",
                &rows
            ),
            vec![2, 3]
        );
        assert_eq!(
            broken(
                "{ n: integer, k: string }",
                "{ id: r, expr: \"n >= 0\", when: \"k = 'A'\" }",
                &rows
            ),
            vec![2]
        );
        let e = eval(
            "{ n: integer, k: string }",
            "{ id: r, expr: \"n + 1\" }",
            &rows,
        )
        .unwrap_err();
        assert!(e.contains("V202"), "{e}");
    }

    #[test]
    fn period() {
        let rows = vec![
            one(Some("2025-03-01T00:00:00")),
            one(Some("2025-02-28T23:59:59")),
            one(Some("2025-03-31T23:59:59")),
            one(Some("2025-04-01T00:00:00")),
        ];
        assert_eq!(
            broken("{ t: timestamp }", "{ id: r, in_period: t }", &rows),
            vec![2, 4]
        );
    }

    #[test]
    fn relationship_to_another_step() {
        let rows = vec![one(Some("a")), one(Some("c")), one(None), one(Some("b"))];
        assert_eq!(
            broken(
                "{ k: string }",
                "{ id: r, exists_in: { column: k, step: muut, key: avain } }",
                &rows
            ),
            vec![2]
        );
        let e = eval(
            "{ k: string }",
            "{ id: r, exists_in: { column: k, step: muut, key: avian } }",
            &rows,
        )
        .unwrap_err();
        assert!(e.contains("avian"), "{e}");
    }

    #[test]
    fn dataset_checks() {
        use crate::plan::StepPlan;
        use crate::run::accounting::StepQuality;
        let text = line_text(
            "{ d: date, h: string }",
            "{ id: a, rows: { min: 3 }, severity: fail }, { id: b, null_share: { column: h, max: 0.4 }, severity: warn }, { id: c, fresh: d, severity: warn }",
        );
        let (line, _) =
            crate::line::load::load_text("t.yaml", std::path::Path::new("."), text).unwrap();
        let params = crate::plan::check::bind_params(&line, None).unwrap();
        let checked = crate::plan::check::plan_all(
            line,
            vec![],
            &crate::line::params::expression_values(&params),
            b"k",
        )
        .unwrap();
        let plan: &StepPlan = &checked.plans["v"];
        assert_eq!(plan.dataset_checks.len(), 3);
        assert_eq!(
            format!("{:?}", plan.dataset_checks[0].rule),
            "CountBounds { min: Some(3), max: None }"
        );
        let batch = typed(
            &checked.plans["s"].output,
            &[
                vec![Some("2025-02-10"), None],
                vec![Some("2025-02-11"), Some("x")],
            ],
        );
        let q = crate::run::quarantine::Quarantine::new(std::env::temp_dir(), "t".into(), None);
        let mut quality = StepQuality::default();
        crate::run::quarantine::tap(&batch, plan, &mut quality, &q, "v").unwrap();
        let failure = crate::run::quarantine::finish_dataset_checks(plan, 2, &mut quality);
        assert_eq!(failure.map(|f| f.0).as_deref(), Some("a"));
        assert!(!quality.dataset["b"].passed, "{:?}", quality.dataset["b"]);
        assert!(
            !quality.dataset["c"].passed,
            "stale data: {:?}",
            quality.dataset["c"]
        );
        assert_eq!(quality.violations.len(), 3);
        // Fresh data in the period, enough rows, few nulls: all pass.
        let batch = typed(
            &checked.plans["s"].output,
            &[
                vec![Some("2025-03-10"), Some("y")],
                vec![Some("2025-03-11"), Some("x")],
                vec![None, Some("z")],
            ],
        );
        let mut quality = StepQuality::default();
        crate::run::quarantine::tap(&batch, plan, &mut quality, &q, "v").unwrap();
        assert_eq!(
            crate::run::quarantine::finish_dataset_checks(plan, 3, &mut quality),
            None
        );
        assert!(
            quality.dataset.values().all(|o| o.passed),
            "{:?}",
            quality.dataset
        );
    }

    /// The `submitters` rule names each expected submitter that sent no rows: listed, or
    /// every code of a code set; a step without a submitter column cannot have the rule.
    #[test]
    fn submitters_names_each_missing_one() {
        use crate::run::accounting::StepQuality;
        let checked = |rule: &str| {
            let text = line_text("{ h: string }", rule).replace(
                "validate: { input: s,",
                "validate: { input: s, submitter: h,",
            );
            let (line, _) =
                crate::line::load::load_text("t.yaml", std::path::Path::new("."), text).unwrap();
            let params = crate::plan::check::bind_params(&line, None).unwrap();
            crate::plan::check::plan_all(
                line,
                vec![],
                &crate::line::params::expression_values(&params),
                b"k",
            )
        };
        let q = crate::run::quarantine::Quarantine::new(std::env::temp_dir(), "t".into(), None);
        let outcome = |rule: &str, rows: &[Vec<Option<&str>>]| {
            let checked = checked(rule).unwrap();
            let plan = &checked.plans["v"];
            let batch = typed(&checked.plans["s"].output, rows);
            let mut quality = StepQuality::default();
            crate::run::quarantine::tap(&batch, plan, &mut quality, &q, "v").unwrap();
            let failure = crate::run::quarantine::finish_dataset_checks(
                plan,
                rows.len() as u64,
                &mut quality,
            );
            (failure, quality.dataset["s"].clone())
        };
        let rule =
            "{ id: s, submitters: { expected: [pirkanmaa, uusimaa, lappi] }, severity: fail }";
        let (failure, o) = outcome(rule, &[vec![Some("uusimaa")], vec![Some("uusimaa")]]);
        assert!(!o.passed);
        assert_eq!(o.observed, "missing 2: lappi, pirkanmaa");
        assert_eq!(failure.map(|f| f.0).as_deref(), Some("s"));
        let (failure, o) = outcome(
            rule,
            &[
                vec![Some("lappi")],
                vec![Some("uusimaa")],
                vec![Some("pirkanmaa")],
            ],
        );
        assert!(o.passed, "{o:?}");
        assert_eq!(failure, None);
        // Every municipality of the code set is expected; one sent rows.
        let (_, o) = outcome(
            "{ id: s, submitters: { codeset: kunnat }, severity: warn }",
            &[vec![Some("091")]],
        );
        assert!(!o.passed);
        assert!(o.observed.starts_with("missing "), "{}", o.observed);
        assert!(!o.observed.contains("091"), "{}", o.observed);
        assert!(o.observed.contains("049"), "{}", o.observed);
        // Without a submitter column the rule cannot be planned.
        let text = line_text("{ h: string }", rule);
        let (line, _) =
            crate::line::load::load_text("t.yaml", std::path::Path::new("."), text).unwrap();
        let params = crate::plan::check::bind_params(&line, None).unwrap();
        let d = crate::plan::check::plan_all(
            line,
            vec![],
            &crate::line::params::expression_values(&params),
            b"k",
        )
        .err()
        .expect("refused");
        assert!(
            d.iter().any(|d| d.message.contains("`submitter` column")),
            "{d:?}"
        );
    }
}
