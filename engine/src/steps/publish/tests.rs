//! The publish step's plan: a personal column never reaches a published table, and the
//! deciding count of disclosure control is a measure of the table.

use crate::steps::testing::{checked, codes};

const SOURCE: &str = "{ hetu: { type: string, personal: true }, alue: string }";

#[test]
fn a_personal_column_is_not_published() {
    let d = checked(
        SOURCE,
        "  p:\n    publish: { input: s, dataset: x, formats: [csv], disclosure: { min_count: 5, count: hetu } }\n",
    )
    .err()
    .expect("refused");
    assert!(codes(&d).iter().any(|c| c == "V206"), "{d:?}");
}

#[test]
fn counts_of_persons_are_published_with_disclosure_control() {
    let c = checked(
        SOURCE,
        "  a:\n    aggregate: { input: s, by: [alue], measures: { henkilot: count(DISTINCT hetu) } }\n\
         \x20 p:\n    publish: { input: a, dataset: x, formats: [csv], disclosure: { min_count: 5, count: henkilot } }\n",
    )
    .unwrap();
    let p = &c.plans["p"];
    assert!(p.personal.is_empty(), "{:?}", p.personal);
    let d = p.disclosure.as_ref().expect("disclosure control");
    assert_eq!(d.counts.first().map(String::as_str), Some("henkilot"));
    assert_eq!(d.min_count, 5);
}
