//! The harmonise step's plan: what it makes of the columns (pseudonyms, derived, dropped
//! and renamed columns) and that a pseudonym stays personal.

use crate::steps::testing::{checked, codes};

const SOURCE: &str = "{ hetu: { type: string, personal: true }, kunta: string, n: integer }";

#[test]
fn pseudonymised_derived_dropped_and_renamed() {
    let c = checked(
        SOURCE,
        "  h:\n    harmonise:\n      input: s\n      derive: { kaksi: \"n * 2\" }\n\
         \x20     pseudonymise: [hetu]\n      drop: [n]\n      rename: { kunta: alue }\n",
    )
    .unwrap();
    let h = &c.plans["h"];
    // The object and row of each row ride along for quarantine and lineage.
    let names: Vec<&str> = (h.output.fields().iter())
        .map(|f| f.name().as_str())
        .filter(|n| ![crate::plan::OBJECT_COLUMN, crate::plan::ROW_COLUMN].contains(n))
        .collect();
    assert_eq!(names, ["hetu", "alue", "kaksi"]);
    assert!(h.pseudonymised.contains("hetu"), "{:?}", h.pseudonymised);
    // A pseudonym links one person's rows: still personal.
    assert!(h.personal.contains("hetu"), "{:?}", h.personal);
    assert!(!h.personal.contains("alue"));
}

#[test]
fn an_unknown_column_is_placed() {
    let d = checked(
        SOURCE,
        "  h:\n    harmonise:\n      input: s\n      derive: { x: \"kuntaa || 'a'\" }\n",
    )
    .err()
    .expect("refused");
    assert!(codes(&d).iter().any(|c| c == "V201"), "{d:?}");
}
