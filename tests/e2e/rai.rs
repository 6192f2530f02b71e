//! The `rai` line: each client's latest RAI assessment of the half-year per service type
//! (ties of dates broken by the numerically larger id), by county × service type ×
//! half-year. Its own module because both its runs — the shipped example and 100 000
//! generated assessments — check the same "latest per client" selection against the
//! independent computation from the raw CSV (`tests/independent.py rai`).

use super::*;
use crate::lines::{assert_csv_matches_independent, compare_with_independent, independent};
use crate::volume::generated_run;

/// The example holds clients with several assessments, two same-day ties whose ids differ
/// in length (text order would choose the other one), a small suppressed county and bad
/// rows of every kind the rules catch.
#[test]
fn rai_matches_an_independent_computation() {
    compare_with_independent("rai", "2025-H1", 3);
}

#[test]
fn rai_at_100_000_rows_matches_an_independent_computation() {
    let (store, report) = generated_run("rai", "2025-H1", "100000");
    assert_eq!(
        report["steps"]["arvioinnit"]["rows_in"], 100_000,
        "{report}"
    );
    // Clients have one to three assessments per service type: the latest ones are fewer.
    let latest = report["steps"]["viimeisimmat"]["rows_out"]
        .as_u64()
        .unwrap();
    let passed = report["steps"]["yhtenaistetty"]["rows_out"]
        .as_u64()
        .unwrap();
    assert!(latest > 0 && latest < passed, "{latest} of {passed}");
    let release = latest_release(store.path(), "rai", "2025-H1");
    let expected = independent(&["rai", store.path().to_str().unwrap()]);
    let csv = release.join("rai_puolivuosi.csv");
    assert_csv_matches_independent("rai", &csv, &expected, 3);
}
