//! The lines of the second milestone at volume: generated input of 100 000 rows (CDA: 10 000
//! documents, one per file) through the line, every published cell against the independent
//! computation from the raw files, and every row accounted for.

use super::*;
use crate::lines::{assert_csv_matches_independent, independent};

/// Generates `rows` of `line`'s input for `period` into a new store and runs the line on it;
/// returns the store and the run's JSON report, whose rows add up (read = passed on or
/// quarantined or filtered, step by step, is checked by the run itself; here: something
/// was quarantined and nothing failed).
pub(crate) fn generated_run(
    line: &str,
    period: &str,
    rows: &str,
) -> (tempfile::TempDir, serde_json::Value) {
    let store = tempfile::tempdir().unwrap();
    let report = generate_and_run(store.path(), line, period, rows, "7", "0.03");
    assert_eq!(report["status"], "succeeded", "{report}");
    for (step, r) in report["steps"].as_object().unwrap() {
        let (i, o) = (
            r["rows_in"].as_u64().unwrap(),
            r["rows_out"].as_u64().unwrap(),
        );
        let (q, f) = (
            r["rows_quarantined"].as_u64().unwrap(),
            r["rows_filtered"].as_u64().unwrap(),
        );
        if r["kind"] == "source" || r["kind"] == "validate" || r["kind"] == "harmonise" {
            assert_eq!(i, o + q + f, "{line}: step {step} loses rows: {r}");
        }
    }
    (store, report)
}

#[test]
fn henkilosto_at_100_000_rows_matches_an_independent_computation() {
    let (store, report) = generated_run("henkilosto", "2025-Q1", "100000");
    assert_eq!(
        report["steps"]["tyosuhteet"]["rows_in"], 100_000,
        "{report}"
    );
    let release = latest_release(store.path(), "henkilosto", "2025-Q1");
    let expected = independent(&["henkilosto", store.path().to_str().unwrap()]);
    let csv = release.join("henkilosto_neljannes.csv");
    assert_csv_matches_independent("henkilosto", &csv, &expected, 3);
}

#[test]
fn sosiaalihuolto_at_10_000_documents_matches_an_independent_computation() {
    let (store, report) = generated_run("sosiaalihuolto", "2025-H1", "10000");
    assert_eq!(report["steps"]["asiakirjat"]["rows_in"], 10_000, "{report}");
    let release = latest_release(store.path(), "sosiaalihuolto", "2025-H1");
    for dataset in ["lastensuojeluilmoitukset", "palvelutarpeen_arvioinnit"] {
        let s = store.path().to_str().unwrap();
        let expected = independent(&["sosiaalihuolto", dataset, s, "2025-H1"]);
        let csv = release.join(format!("{dataset}.csv"));
        assert_csv_matches_independent(dataset, &csv, &expected, 2);
    }
}

/// A year of county finance is 22 workbooks × 13 rows by definition (LINES.md): the
/// generator's year, with spoiled rows and workbooks, against the computation from the
/// workbooks read with openpyxl.
#[test]
fn talous_on_a_generated_year_matches_an_independent_computation() {
    let (store, report) = generated_run("talous", "2025", "286");
    assert!(
        report["steps"]["talous"]["rows_in"].as_u64().unwrap() >= 286,
        "{report}"
    );
    let release = latest_release(store.path(), "talous", "2025");
    let expected = independent(&["talous", store.path().to_str().unwrap()]);
    let csv = release.join("talous_vuosi.csv");
    assert_csv_matches_independent("talous", &csv, &expected, 3);
}
