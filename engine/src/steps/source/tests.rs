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
