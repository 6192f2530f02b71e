//! The `totals` rule on small workbooks: a whole group rejected or passed, the tolerance's
//! boundary, missing and repeated totals rows, groups by object and by column, and the
//! placed errors of a rule that cannot be planned.

use crate::steps::validate::testing::*;

const COLUMNS: &str = "{ alue: string, luokka: string, kulut: decimal, tuotot: integer }";

fn rule(extra: &str) -> String {
    format!(
        "{{ id: yht, totals: {{ code: luokka, total: YHT, columns: [kulut, tuotot]{extra} }} }}"
    )
}

/// Rows of one county: classes `P1`, `P2` and the totals row `YHT`.
fn county<'a>(
    alue: &'a str,
    kulut: [&'a str; 3],
    tuotot: [&'a str; 3],
) -> Vec<Vec<Option<&'a str>>> {
    ["P1", "P2", "YHT"]
        .iter()
        .zip(kulut.iter().zip(tuotot.iter()))
        .map(|(c, (k, t))| vec![Some(alue), Some(*c), Some(*k), Some(*t)])
        .collect()
}

fn none(n: usize) -> Vec<Option<String>> {
    vec![None; n]
}

fn objects(n: usize, name: &'static str) -> Vec<&'static str> {
    vec![name; n]
}

fn run(rule: &str, rows: &[Vec<Option<&str>>], objs: &[&str]) -> Vec<Option<String>> {
    eval_objects(COLUMNS, rule, rows, Some(objs), Some(1 << 20), 2)
        .unwrap_or_else(|e| panic!("{rule}: {e}"))
}

#[test]
fn a_matching_object_passes_and_a_mismatching_one_is_rejected_whole() {
    let mut rows = county("01", ["100.5", "200.5", "301"], ["10", "20", "30"]);
    rows.extend(county("02", ["100", "200", "300"], ["10", "20", "31"]));
    let objs = [objects(3, "01.xlsx"), objects(3, "02.xlsx")].concat();
    let got = run(&rule(""), &rows, &objs);
    assert_eq!(got[..3].to_vec(), none(3));
    let reason =
        "totals-mismatch: the YHT row of this object does not equal the sum of its rows in tuotot";
    for r in &got[3..] {
        assert_eq!(r.as_deref(), Some(reason));
    }
}

#[test]
fn tolerance_is_inclusive() {
    let rows = county("01", ["100.5", "200", "301.5"], ["10", "20", "29"]);
    let objs = objects(3, "01.xlsx");
    // Off by 1 in both columns: within a tolerance of 1, outside one of 0.5.
    assert_eq!(run(&rule(", tolerance: 1"), &rows, &objs), none(3));
    let got = run(&rule(", tolerance: 0.5"), &rows, &objs);
    let reason = "totals-mismatch: the YHT row of this object does not equal the sum of its rows in kulut, tuotot";
    assert_eq!(got, vec![Some(reason.to_string()); 3]);
    // Without a tolerance, exact sums pass.
    let exact = county("01", ["1.5", "2", "3.5"], ["1", "2", "3"]);
    assert_eq!(run(&rule(""), &exact, &objs), none(3));
}

#[test]
fn a_missing_or_repeated_totals_row_rejects_the_object() {
    let mut rows = county("01", ["1", "2", "3"], ["1", "2", "3"]);
    rows[2][1] = Some("P3");
    let mut twice = county("02", ["1", "2", "3"], ["1", "2", "3"]);
    twice.push(vec![Some("02"), Some("YHT"), Some("3"), Some("3")]);
    rows.extend(twice);
    let objs = [objects(3, "01.xlsx"), objects(4, "02.xlsx")].concat();
    let got = run(&rule(""), &rows, &objs);
    for r in &got[..3] {
        assert_eq!(
            r.as_deref(),
            Some("totals-mismatch: this object has no YHT row")
        );
    }
    for r in &got[3..] {
        assert_eq!(
            r.as_deref(),
            Some("totals-mismatch: this object has more than one YHT row")
        );
    }
}

#[test]
fn missing_values_count_as_zero_but_not_on_the_totals_row() {
    let mut rows = county("01", ["1", "2", "3"], ["1", "2", "1"]);
    rows[1][3] = None;
    let mut bad = county("02", ["1", "2", "3"], ["1", "2", "3"]);
    bad[2][2] = None;
    rows.extend(bad);
    let objs = [objects(3, "01.xlsx"), objects(3, "02.xlsx")].concat();
    let got = run(&rule(""), &rows, &objs);
    assert_eq!(got[..3].to_vec(), none(3));
    assert!(got[3..].iter().all(|r| r
        .as_deref()
        .is_some_and(|r| r.ends_with("rows in kulut"))));
}

#[test]
fn groups_by_a_column_in_one_object() {
    let mut rows = county("01", ["1", "2", "3"], ["1", "2", "3"]);
    rows.extend(county("02", ["1", "2", "4"], ["1", "2", "3"]));
    let objs = objects(6, "kaikki.xlsx");
    let got = run(&rule(", group: alue"), &rows, &objs);
    assert_eq!(got[..3].to_vec(), none(3));
    let reason = "totals-mismatch: the YHT row of this alue group does not equal the sum of its rows in kulut";
    assert_eq!(&got[3..], &vec![Some(reason.to_string()); 3][..]);
    // By object, the six rows have two totals rows.
    assert!(run(&rule(""), &rows, &objs).iter().all(Option::is_some));
}

#[test]
fn a_rule_that_cannot_be_planned_is_placed() {
    let rows = county("01", ["1", "2", "3"], ["1", "2", "3"]);
    let cases = [
        ("{ id: yht, totals: { code: luokk, total: YHT, columns: [kulut] } }", "V201"),
        ("{ id: yht, totals: { code: luokka, total: YHT, columns: [kulut], group: aluee } }", "V201"),
        ("{ id: yht, totals: { code: luokka, total: YHT, columns: [alue] } }", "V202"),
        ("{ id: yht, totals: { code: luokka, total: YHT, columns: [] } }", "V004"),
        ("{ id: yht, totals: { code: luokka, total: YHT, columns: [kulut], tolerance: -1 } }", "V003"),
    ];
    for (rule, code) in cases {
        let e = eval(COLUMNS, rule, &rows).unwrap_err();
        assert!(e.contains(code), "{rule}: {e}");
    }
}

/// Integer columns are summed without wrapping: rows whose 64-bit sum would wrap around to
/// the totals row's value do not make a matching workbook.
#[test]
fn integer_sums_do_not_wrap_to_the_total() {
    let rows = county(
        "01",
        ["1", "2", "3"],
        ["9223372036854775807", "2", "-9223372036854775807"],
    );
    let got = run(&rule(""), &rows, &objects(3, "01.xlsx"));
    assert!(got.iter().all(|r| r.as_deref().is_some_and(|r| r.starts_with("totals-mismatch"))), "{got:?}");
}
