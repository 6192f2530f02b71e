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
