//! The `valvonta` line in the daemon: it reads the releases of the lines it supervises, runs
//! by itself after they publish, and its funnel plot shows on the reporting page. (A file of
//! its own: `tests/daemon.rs` is past the length of one file; both use the daemon helpers of
//! `tests/common/daemon.rs`.)

mod common;
use common::daemon::{
    Daemon, READ_TOKEN, RUN_TOKEN, get, post, start, store_with_tokens, wait_job,
};
use common::root;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A store with the shipped example inbox and reference data, and a token file.
fn setup() -> tempfile::TempDir {
    store_with_tokens(&format!(
        "tokens:\n  - {{ name: operaattori, token: {RUN_TOKEN}, roles: [run] }}\n  - {{ name: valvoja, token: {READ_TOKEN}, roles: [read] }}\n"
    ))
}

/// A GET with the `read` token that answers 200: its JSON body.
fn get_json(d: &Daemon, path: &str) -> Value {
    let a = get(d, path);
    assert_eq!(a.status, 200, "{path}: {}", a.body);
    a.json()
}

/// Asks for runs of `line` over `period` (one period or a range `A..B`); the jobs' ids.
fn run(d: &Daemon, line: &str, period: &str) -> Vec<String> {
    let a = post(
        d,
        &format!("/api/lines/{line}/runs"),
        Some(RUN_TOKEN),
        &format!(r#"{{"params": {{"period": "{period}"}}}}"#),
    );
    let v = a.json();
    assert_eq!(a.status, 202, "{line} {period}: {v}");
    match v["jobs"].as_array() {
        Some(jobs) => jobs
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_string())
            .collect(),
        None => vec![v["id"].as_str().unwrap().to_string()],
    }
}

/// `valtava generate <line> --period <period>` into the store, in place of the example inbox
/// of the line.
fn generate(store: &Path, line: &str, period: &str, rows: &str) {
    let inbox = store.join("inbox").join(line);
    if inbox.exists() {
        std::fs::remove_dir_all(&inbox).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_valtava"))
        .args([
            "generate", line, "--period", period, "--rows", rows, "--out",
        ])
        .arg(store)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The rows of the published CSV `dataset` of the current release of `line`'s `period`, by
/// column name.
fn published_rows(
    store: &Path,
    line: &str,
    period: &str,
    dataset: &str,
) -> Vec<Vec<(String, String)>> {
    let pointer = store.join(format!("releases/{line}/{period}/latest.json"));
    let p: Value = serde_json::from_slice(&std::fs::read(&pointer).unwrap()).unwrap();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(store.join(p["manifest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let csv = manifest["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["path"].as_str())
        .find(|p| p.ends_with(&format!("{dataset}.csv")))
        .unwrap_or_else(|| panic!("no {dataset}.csv in {manifest}"));
    let text = std::fs::read_to_string(store.join(csv)).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(String::from))
                .collect()
        })
        .collect()
}

fn field<'a>(row: &'a [(String, String)], name: &str) -> &'a str {
    row.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no column {name} in {row:?}"))
}

/// `valvonta` reads the releases of ensihoito, hoitoonpaasy and henkilostomitoitus: run for
/// the quarter's months and the quarter through the API, they publish, and the daemon runs
/// valvonta for 2025-Q1 by itself (trigger `release`) after them. Its funnel plot
/// (`tests/web/funnel.mjs`) shows one point per county with a class that is the published
/// `luokka`, the limit curves, no axe-core violation, and a screenshot
/// `target/web/valvonta_poikkeamat_funnel.png`.
#[test]
fn valvonta_runs_after_the_lines_it_reads_and_its_funnel_plot_shows() {
    let dir = setup();
    let store = dir.path().join("store");
    assert!(
        store.join("inbox/valvonta/2025-Q1").is_dir(),
        "the example inbox examples/store/inbox/valvonta/2025-Q1"
    );
    generate(&store, "ensihoito", "2025-Q1", "3000");
    generate(&store, "hoitoonpaasy", "2025-Q1", "3000");
    generate(&store, "henkilostomitoitus", "2025-Q1", "3000");
    let d = start(dir.path(), &[]);
    let line = get_json(&d, "/api/lines/valvonta");
    for upstream in ["ensihoito", "hoitoonpaasy", "henkilostomitoitus"] {
        assert!(
            (line["after"].as_array().unwrap().iter()).any(|a| a == upstream),
            "{line}"
        );
    }

    let mut jobs = run(&d, "ensihoito", "2025-01..2025-03");
    jobs.extend(run(&d, "hoitoonpaasy", "2025-01..2025-03"));
    jobs.extend(run(&d, "henkilostomitoitus", "2025-Q1"));
    assert_eq!(jobs.len(), 7, "{jobs:?}");
    let mut last = String::new();
    for id in &jobs {
        let done = wait_job(&d, id, Duration::from_secs(180))["run"].clone();
        assert_eq!(done["status"], "succeeded", "{done}");
        last = last.max(done["finished"].as_str().unwrap().to_string());
    }

    // A run of valvonta for 2025-Q1 the daemon queued on a release, started after the
    // last upstream run ended, has published.
    let until = Instant::now() + Duration::from_secs(240);
    let own = loop {
        let runs = get_json(&d, "/api/runs?line=valvonta");
        let done = (runs["runs"].as_array().unwrap().iter())
            .filter(|j| j["trigger"] == "release" && j["params"]["period"] == "2025-Q1")
            .map(|j| {
                get_json(&d, &format!("/api/runs/{}", j["id"].as_str().unwrap()))["run"].clone()
            })
            .find(|r| {
                r["status"] == "succeeded"
                    && r["started"].as_str().is_some_and(|s| s >= last.as_str())
            });
        if let Some(r) = done {
            break r;
        }
        assert!(
            Instant::now() < until,
            "valvonta did not publish 2025-Q1 after {last}: {runs}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(own["trigger"], "release", "{own}");
    assert!(store.join("releases/valvonta/2025-Q1/latest.json").exists());
    let rows = published_rows(&store, "valvonta", "2025-Q1", "valvonta_poikkeamat");
    assert!(!rows.is_empty());

    let shots = root().join("target/web");
    let out = Command::new("node")
        .arg(root().join("tests/web/funnel.mjs"))
        .arg(&d.base)
        .arg(&shots)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the funnel plot: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(v["errors"], serde_json::json!([]), "{v}");
    assert_eq!(v["violations"], serde_json::json!([]), "{v}");
    let choices = v["choices"].as_array().unwrap();
    // Every indicator has a plot.
    for indicator in [
        "ensihoito_kuljetettu",
        "hoitoonpaasy_yli_90",
        "mitoitus_alle_065",
    ] {
        assert!(
            choices
                .iter()
                .any(|c| c["picks"]["indikaattori"] == indicator),
            "{indicator}: {v}"
        );
    }
    // Each point drawn is a published row of its indicator and county, with its count and
    // share, and its class is the published `luokka`.
    for c in choices {
        let indicator = c["picks"]["indikaattori"].as_str().unwrap();
        for p in c["points"].as_array().unwrap() {
            let area = p["area"].as_str().unwrap();
            let same = |row: &&Vec<(String, String)>| {
                let num = |k: &str| field(row, k).parse::<f64>().ok();
                field(row, "indikaattori") == indicator
                    && field(row, "hyvinvointialue") == area
                    && num("n") == p["n"].as_f64()
                    && num("osuus") == p["share"].as_f64()
            };
            let row = rows
                .iter()
                .find(same)
                .unwrap_or_else(|| panic!("{indicator} {area}: {p} not published"));
            assert_eq!(
                field(row, "luokka"),
                p["class"].as_str().unwrap(),
                "{indicator} {area}: {p}"
            );
        }
    }
    let png = std::fs::read(shots.join("valvonta_poikkeamat_funnel.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}
