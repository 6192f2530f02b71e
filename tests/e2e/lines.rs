//! Each shipped line's published numbers: the example line's counts on the shipped data,
//! every published cell of every line against an independent computation
//! (`tests/independent.py`), and generated input (`valtava generate`) through every line.

use super::*;

#[test]
fn the_example_line_runs_on_the_shipped_data() {
    let store = example_store();
    let out = run(&[
        "run",
        "lines/ensihoito.yaml",
        "--param",
        "period=2025-03",
        "--store",
        store.path().to_str().unwrap(),
        "--pseudonym-key-file",
        "examples/demo-pseudonym.key",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The example generator writes 180 valid missions, 12 special rows of which 10 are bad
    // (4 unreadable, 6 breaking rules) and 2 valid (a quoted field, a long response).
    assert_eq!(report["steps"]["tehtavat"]["rows_in"], 192);
    assert_eq!(report["steps"]["tehtavat"]["rows_quarantined"], 4);
    assert_eq!(report["steps"]["tarkistettu"]["rows_quarantined"], 6);
    assert_eq!(
        report["steps"]["tarkistettu"]["violations"]["tavoittamisaika-yli-3h"],
        1
    );
    let csv = std::fs::read_to_string(
        latest_release(store.path(), "ensihoito", "2025-03").join("ensihoito_kuukausi.csv"),
    )
    .unwrap();
    let total = csv.lines().find(|l| l.starts_with("SSS,YHT,YHT,")).unwrap();
    assert!(total.starts_with("SSS,YHT,YHT,182,"), "{total}");
}

/// Runs a shipped line on the shipped example data and compares every published cell with
/// an independent computation (tests/independent.py).
fn compare_with_independent(line: &str, period: &str, dims: usize) {
    let store = example_store();
    let out = run(&[
        "run",
        &format!("lines/{line}.yaml"),
        "--param",
        &format!("period={period}"),
        "--store",
        store.path().to_str().unwrap(),
        "--pseudonym-key-file",
        "examples/demo-pseudonym.key",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let py = Command::new("python3")
        .arg(root().join("tests/independent.py"))
        .arg(line)
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", text(&py.stderr));
    let expected: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    let expected = expected.as_object().unwrap();
    let dataset = std::fs::read_dir(latest_release(store.path(), line, period))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "csv"))
        .unwrap();
    let csv = std::fs::read_to_string(dataset).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let mut published = 0;
    let mut keys = std::collections::BTreeSet::new();
    for l in lines {
        let cells: Vec<&str> = l.split(',').collect();
        let key = cells[..dims].join("|");
        let want = expected
            .get(&key)
            .unwrap_or_else(|| panic!("{line}: {key} is not in the independent result"));
        keys.insert(key.clone());
        if cells.last() == Some(&"suppressed") {
            continue;
        }
        for (i, name) in header.iter().enumerate().skip(dims) {
            if *name == "status" {
                continue;
            }
            let got: f64 = cells[i]
                .parse()
                .unwrap_or_else(|_| panic!("{line} {key} {name}: `{}`", cells[i]));
            let w = want[*name].as_f64().unwrap();
            assert!(
                (got - w).abs() < 1e-9,
                "{line} {key} {name}: published {got}, independent {w}"
            );
        }
        published += 1;
    }
    assert_eq!(keys.len(), expected.len(), "{line}: the cube differs");
    assert!(published >= 3, "{line}: only {published} cells published");
}

#[test]
fn hoitoonpaasy_matches_an_independent_duckdb_query() {
    compare_with_independent("hoitoonpaasy", "2025-03", 3);
}

#[test]
fn henkilostomitoitus_matches_an_independent_computation() {
    compare_with_independent("henkilostomitoitus", "2025-Q1", 2);
}

#[test]
fn rokotukset_matches_an_independent_computation_from_the_fhir_files() {
    compare_with_independent("rokotukset", "2025", 3);
}

#[test]
fn diabetes_matches_an_independent_computation_from_the_fhir_files() {
    compare_with_independent("diabetes", "2025", 2);
}

#[test]
fn ensihoito_matches_an_independent_computation() {
    compare_with_independent("ensihoito", "2025-03", 3);
}

#[test]
fn generated_input_runs_through_every_line() {
    for (line, period) in [
        ("ensihoito", "2025-03"),
        ("hoitoonpaasy", "2025-03"),
        ("henkilostomitoitus", "2025-Q1"),
        ("rokotukset", "2025"),
        ("diabetes", "2025"),
    ] {
        let store = tempfile::tempdir().unwrap();
        let s = store.path().to_str().unwrap();
        let made = run(&[
            "generate",
            line,
            "--period",
            period,
            "--rows",
            "2000",
            "--seed",
            "42",
            "--bad-share",
            "0.05",
            "--out",
            s,
        ]);
        assert_eq!(
            made.status.code(),
            Some(0),
            "{line}: {}",
            text(&made.stderr)
        );
        let out = run(&[
            "run",
            &format!("lines/{line}.yaml"),
            "--param",
            &format!("period={period}"),
            "--store",
            s,
            "--pseudonym-key-file",
            "examples/demo-pseudonym.key",
            "--json",
        ]);
        assert_eq!(out.status.code(), Some(0), "{line}: {}", text(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let quarantined: u64 = report["steps"]
            .as_object()
            .unwrap()
            .values()
            .map(|s| s["rows_quarantined"].as_u64().unwrap())
            .sum();
        let rows_in: u64 = report["steps"]
            .as_object()
            .unwrap()
            .values()
            .filter(|s| s["kind"] == "source")
            .map(|s| s["rows_in"].as_u64().unwrap())
            .sum();
        // About 5 % bad rows end in quarantine (FHIR lines: broken patients only).
        assert!(
            quarantined > 0 && (quarantined as f64) < 0.2 * rows_in as f64,
            "{line}: {quarantined} of {rows_in}"
        );
        assert_eq!(report["datasets"].as_array().unwrap().len(), 1, "{line}");
    }
    assert_eq!(
        run(&[
            "generate",
            "tuntematon",
            "--period",
            "2025",
            "--out",
            "/tmp/x"
        ])
        .status
        .code(),
        Some(1)
    );
}
