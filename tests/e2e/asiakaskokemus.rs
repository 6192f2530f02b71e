//! The `asiakaskokemus` line: every published cell against the independent computation
//! (`tests/independent.py`), including which shares are suppressed alone — a measure decided
//! by a count of its own (`disclosure: { measures: … }`) — on the shipped example and on
//! 100 000 generated answers. The deciding counts decide but are published nowhere.

use super::*;
use crate::lines::independent;

const LINE: &str = "asiakaskokemus";
const DATASET: &str = "asiakaskokemus_vuosi";
const DIMS: usize = 3;

/// The measures with a status of their own.
const OWN: [&str; 6] = [
    "k1_myonteinen_osuus",
    "k2_myonteinen_osuus",
    "k3_myonteinen_osuus",
    "k4_myonteinen_osuus",
    "k5_myonteinen_osuus",
    "suositteluindeksi",
];

/// Every row of the release's CSV against the independent cells: a row suppressed whole is
/// skipped (secondary suppression may hide more cells than the independent primary); in
/// every other row each measure equals the independent value, or is empty where that is
/// null, and each `status_<measure>` equals the independent one. The release has exactly
/// the independent cube. Returns the published rows with a measure suppressed alone.
fn assert_matches(release: &Path, expected: &serde_json::Map<String, serde_json::Value>) -> usize {
    let csv = std::fs::read_to_string(release.join(format!("{DATASET}.csv"))).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert!(
        !header.iter().any(|h| h.ends_with("_vastanneet")),
        "a deciding count is published: {header:?}"
    );
    for m in OWN {
        assert!(
            header.contains(&format!("status_{m}").as_str()),
            "{header:?}"
        );
    }
    let status = header.iter().position(|h| *h == "status").unwrap();
    let mut keys = std::collections::BTreeSet::new();
    let (mut published, mut alone) = (0, 0);
    for l in lines {
        let cells: Vec<&str> = l.split(',').collect();
        assert_eq!(cells.len(), header.len(), "{l}");
        let key = cells[..DIMS].join("|");
        let want = expected
            .get(&key)
            .unwrap_or_else(|| panic!("{key} is not in the independent result"));
        keys.insert(key.clone());
        if cells[status] == "suppressed" {
            continue;
        }
        assert_ne!(
            want["status"].as_str(),
            Some("suppressed"),
            "{key}: suppressed independently, published: {l}"
        );
        let mut any = false;
        for (i, name) in header.iter().enumerate().skip(DIMS) {
            let w = &want[*name];
            if *name == "status" {
                continue;
            } else if name.starts_with("status_") {
                let got = (!cells[i].is_empty()).then_some(cells[i]);
                assert_eq!(got, w.as_str(), "{key} {name}: {l}");
                any |= got.is_some();
            } else if cells[i].is_empty() {
                assert!(
                    w.is_null(),
                    "{key} {name}: published empty, independent {w}"
                );
            } else {
                let got: f64 = cells[i]
                    .parse()
                    .unwrap_or_else(|_| panic!("{key} {name}: `{}`", cells[i]));
                let w = w
                    .as_f64()
                    .unwrap_or_else(|| panic!("{key} {name}: published {got}, independent {w}"));
                assert!(
                    (got - w).abs() < 1e-9,
                    "{key} {name}: published {got}, independent {w}"
                );
            }
        }
        published += 1;
        alone += usize::from(any);
    }
    assert_eq!(keys.len(), expected.len(), "the cube differs");
    assert!(published >= 3, "only {published} cells published");
    alone
}

/// The example: Keski-Suomi's family care has 8 respondents, published, but only 3 answered
/// question k3 1–5 and fewer than 5 gave a recommendation: those two measures alone are
/// empty and marked (before: published, about fewer than five answers).
#[test]
fn asiakaskokemus_matches_an_independent_computation() {
    let store = example_store();
    let out = run(&[
        "run",
        "lines/asiakaskokemus.yaml",
        "--param",
        "period=2025",
        "--store",
        store.path().to_str().unwrap(),
        "--pseudonym-key-file",
        "examples/demo-pseudonym.key",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let release = latest_release(store.path(), LINE, "2025");
    let expected = independent(&[LINE]);
    let alone = assert_matches(&release, &expected);
    assert!(
        alone >= 2,
        "only {alone} cells with a measure suppressed alone"
    );
    let csv = std::fs::read_to_string(release.join(format!("{DATASET}.csv"))).unwrap();
    let row = csv
        .lines()
        .find(|l| l.starts_with("15,kotihoito,2025,"))
        .expect("Keski-Suomi's home care");
    assert!(row.starts_with("15,kotihoito,2025,30,"), "{row}");
    assert!(row.contains(",,"), "{row}");
    // The release's manifest records what decides each measure, and nothing publishes the
    // counts: not JSON-stat either.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(release.join("_manifest.json")).unwrap()).unwrap();
    let d = &manifest["datasets"][0]["disclosure"];
    assert_eq!(
        d["measures"]["k3_myonteinen_osuus"], "k3_vastanneet",
        "{manifest}"
    );
    assert_eq!(d["measures"]["suositteluindeksi"], "suosittelu_vastanneet");
    assert_eq!(d["unpublished"].as_array().map(Vec::len), Some(6), "{d}");
    let jsonstat =
        std::fs::read_to_string(release.join(format!("{DATASET}.jsonstat.json"))).unwrap();
    assert!(!jsonstat.contains("_vastanneet"));
    assert!(jsonstat.contains("\"suppressed\""));
}

#[test]
fn asiakaskokemus_at_100_000_rows_matches_an_independent_computation() {
    let (store, report) = crate::volume::generated_run(LINE, "2025", "100000");
    assert_eq!(
        report["steps"]["vastaukset"]["rows_in"], 100_000,
        "{report}"
    );
    let release = latest_release(store.path(), LINE, "2025");
    let expected = independent(&[LINE, store.path().to_str().unwrap()]);
    assert_matches(&release, &expected);
}
