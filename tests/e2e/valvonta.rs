//! `valvonta`: the case register's quarterly figures and the funnel plot of data-driven
//! supervision, each cell against an independent computation (tests/independent.py): the
//! first from the raw CSV, the second from the published CSV files of the three other lines'
//! current releases — what the public reads, so the line is checked on the same footing.

use super::*;
use crate::lines::independent;

fn run_line(store: &Path, line: &str, period: &str) {
    let out = run(&[
        "run",
        line,
        "--param",
        &format!("period={period}"),
        "--store",
        store.to_str().unwrap(),
        "--pseudonym-key-file",
        "examples/demo-pseudonym.key",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{line} {period}: {}",
        text(&out.stderr)
    );
}

fn generate(store: &Path, line: &str, period: &str, rows: &str) {
    generate_input(
        store,
        line,
        period,
        rows,
        &["--seed", "7", "--bad-share", "0.02"],
    );
}

/// Generates and publishes what `valvonta` reads for 2025-Q1: ensihoito and hoitoonpaasy
/// for each month of the quarter, henkilostomitoitus for the quarter.
pub(crate) fn publish_upstream(store: &Path) {
    generate(store, "ensihoito", "2025-Q1", "3000");
    generate(store, "hoitoonpaasy", "2025-Q1", "3000");
    generate(store, "henkilostomitoitus", "2025-Q1", "4000");
    for month in ["2025-01", "2025-02", "2025-03"] {
        run_line(store, "lines/ensihoito.yaml", month);
        run_line(store, "lines/hoitoonpaasy.yaml", month);
    }
    run_line(store, "lines/henkilostomitoitus.yaml", "2025-Q1");
}

/// Every cell of a published CSV equals the independent computation (numbers within 1e-9,
/// texts equal, an empty cell where it gives null), and the CSV has exactly its cells.
/// Returns the header and the rows.
fn assert_cells(
    what: &str,
    csv: &Path,
    expected: &serde_json::Map<String, serde_json::Value>,
    dims: usize,
) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for l in lines {
        let cells: Vec<String> = l.split(',').map(str::to_string).collect();
        let key = cells[..dims].join("|");
        let want = (expected.get(&key)).unwrap_or_else(|| panic!("{what}: {key} not expected"));
        if cells.last().map(String::as_str) != Some("suppressed") {
            for (i, name) in header.iter().enumerate().skip(dims) {
                let (got, w) = (&cells[i], &want[name.as_str()]);
                match w {
                    serde_json::Value::Null if name != "status" => {
                        assert_eq!(got, "", "{what} {key} {name}")
                    }
                    serde_json::Value::Number(n) => {
                        let g: f64 = (got.parse())
                            .unwrap_or_else(|_| panic!("{what} {key} {name}: `{got}`"));
                        let n = n.as_f64().unwrap();
                        assert!((g - n).abs() < 1e-9, "{what} {key} {name}: {g} vs {n}");
                    }
                    serde_json::Value::String(s) => assert_eq!(got, s, "{what} {key} {name}"),
                    _ => {}
                }
            }
        }
        rows.push(cells);
    }
    let keys: std::collections::BTreeSet<String> =
        rows.iter().map(|c| c[..dims].join("|")).collect();
    assert_eq!(keys.len(), expected.len(), "{what}: the cells differ");
    (header, rows)
}

#[test]
fn valvonta_matches_an_independent_computation() {
    // The example store has the other lines' input for 2025-03 and 2025-Q1 only: the
    // funnel plot reads the one month (`sub`) and warns of the two without a release.
    let store = example_store();
    run_line(store.path(), "lines/ensihoito.yaml", "2025-03");
    run_line(store.path(), "lines/hoitoonpaasy.yaml", "2025-03");
    run_line(store.path(), "lines/henkilostomitoitus.yaml", "2025-Q1");
    run_line(store.path(), "lines/valvonta.yaml", "2025-Q1");
    let release = latest_release(store.path(), "valvonta", "2025-Q1");
    let expected = independent(&["valvonta"]);
    let (_, rows) = assert_cells(
        "valvonta",
        &release.join("valvonta_neljannes.csv"),
        &expected,
        3,
    );
    let suppressed = |r: &&Vec<String>| r.last().unwrap() == "suppressed";
    assert!(rows.iter().any(|r| suppressed(&r)));
    assert!(rows.iter().filter(|r| !suppressed(r)).count() >= 10);
}

/// Generated input: 100 000 cases of the register, and the other lines' releases; both
/// datasets against the independent computations.
#[test]
fn valvonta_places_a_deviating_county_on_the_funnel_plot() {
    let store = tempfile::tempdir().unwrap();
    publish_upstream(store.path());
    generate(store.path(), "valvonta", "2025-Q1", "100000");
    run_line(store.path(), "lines/valvonta.yaml", "2025-Q1");
    let release = latest_release(store.path(), "valvonta", "2025-Q1");
    let s = store.path().to_str().unwrap();
    let cases = independent(&["valvonta", s, "2025-Q1"]);
    let csv = release.join("valvonta_neljannes.csv");
    assert_cells("valvonta at 100 000 cases", &csv, &cases, 3);
    let expected = independent(&["valvonta-poikkeamat", s, "2025-Q1"]);
    let csv = release.join("valvonta_poikkeamat.csv");
    let (header, rows) = assert_cells("poikkeamat", &csv, &expected, 3);
    let luokka = header.iter().position(|h| h == "luokka").unwrap();
    let class = |ind: &str, area: &str, month: &str| {
        let r = (rows.iter())
            .find(|r| r[0] == ind && r[1] == area && r[2] == month)
            .unwrap_or_else(|| panic!("{ind} {area} {month}"));
        r[luokka].clone()
    };
    // Kanta-Häme (05) transports clearly fewer of its missions in the generator: a deviation
    // in every month; most counties are within the limits.
    for month in ["2025-01", "2025-02", "2025-03"] {
        assert_eq!(class("ensihoito_kuljetettu", "05", month), "poikkeama");
    }
    assert!(rows.iter().any(|r| r[luokka] == "normaali"));
    assert!(
        rows.iter()
            .any(|r| r[0] == "mitoitus_alle_065" && r[2] == "2025-Q1")
    );
    assert!(rows.iter().all(|r| r[1] != "SSS"));
}
