//! The `valvonta` line in the daemon: it reads the releases of the lines it supervises, runs
//! by itself after they publish, and its funnel plot shows on the reporting page. (A file of
//! its own: `tests/daemon.rs` is past the length of one file; the daemon helpers here follow
//! it exactly.)

mod common;
use common::{copy_dir, root};

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const KEY: &str = "daemon-test-key-0123456789abcdef";
const RUN_TOKEN: &str = "run-token-0123456789abcdef";
const READ_TOKEN: &str = "read-token-0123456789abcdef";

/// A store with the shipped example inbox and reference data, and a token file.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    for sub in ["inbox", "reference"] {
        copy_dir(&root().join("examples/store").join(sub), &store.join(sub));
    }
    std::fs::write(
        dir.path().join("tokens.yaml"),
        format!(
            "tokens:\n  - {{ name: operaattori, token: {RUN_TOKEN}, roles: [run] }}\n  - {{ name: valvoja, token: {READ_TOKEN}, roles: [read] }}\n"
        ),
    )
    .unwrap();
    dir
}

struct Daemon {
    child: Child,
    base: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> Daemon {
    let mut child = Command::new(env!("CARGO_BIN_EXE_valtava"))
        .current_dir(root())
        .args(["serve", "--store"])
        .arg(dir.join("store"))
        .args(["--lines", "lines", "--listen", "127.0.0.1:0", "--tokens"])
        .arg(dir.join("tokens.yaml"))
        .args(["--poll", "0.3", "--settle", "0"])
        .env("VALTAVA_PSEUDONYM_KEY", KEY)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("daemon.log"))
                .unwrap(),
        ))
        .spawn()
        .expect("the daemon starts");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| {
            panic!(
                "no address: {first:?}; log: {}",
                std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
            )
        })
        .to_string();
    Daemon { child, base }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// The status and JSON body of an answer.
fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut r = r.expect("the daemon answers");
    let body = r.body_mut().read_to_string().unwrap_or_default();
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (r.status().as_u16(), v)
}

/// A GET with the `read` token.
fn get(d: &Daemon, path: &str) -> Value {
    let (status, v) = answer(
        agent()
            .get(&format!("{}{path}", d.base))
            .header("Authorization", &format!("Bearer {READ_TOKEN}"))
            .call(),
    );
    assert_eq!(status, 200, "{path}: {v}");
    v
}

/// Asks for runs of `line` over `period` (one period or a range `A..B`); the jobs' ids.
fn run(d: &Daemon, line: &str, period: &str) -> Vec<String> {
    let (status, v) = answer(
        agent()
            .post(&format!("{}/api/lines/{line}/runs", d.base))
            .header("Content-Type", "application/json")
            .header("Authorization", &format!("Bearer {RUN_TOKEN}"))
            .send(&format!(r#"{{"params": {{"period": "{period}"}}}}"#)),
    );
    assert_eq!(status, 202, "{line} {period}: {v}");
    match v["jobs"].as_array() {
        Some(jobs) => jobs
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_string())
            .collect(),
        None => vec![v["id"].as_str().unwrap().to_string()],
    }
}

/// Waits until the job has ended and returns its run.
fn wait_job(d: &Daemon, id: &str, limit: Duration) -> Value {
    let until = Instant::now() + limit;
    loop {
        let v = get(d, &format!("/api/runs/{id}"));
        let status = v["run"]["status"].as_str().unwrap().to_string();
        if status == "succeeded" || status == "failed" {
            return v["run"].clone();
        }
        assert!(Instant::now() < until, "job {id} still {status}");
        std::thread::sleep(Duration::from_millis(100));
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
    let d = start(dir.path());
    let line = get(&d, "/api/lines/valvonta");
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
        let done = wait_job(&d, id, Duration::from_secs(180));
        assert_eq!(done["status"], "succeeded", "{done}");
        last = last.max(done["finished"].as_str().unwrap().to_string());
    }

    // A run of valvonta for 2025-Q1 the daemon queued on a release, started after the
    // last upstream run ended, has published.
    let until = Instant::now() + Duration::from_secs(240);
    let own = loop {
        let runs = get(&d, "/api/runs?line=valvonta");
        let done = (runs["runs"].as_array().unwrap().iter())
            .filter(|j| j["trigger"] == "release" && j["params"]["period"] == "2025-Q1")
            .map(|j| get(&d, &format!("/api/runs/{}", j["id"].as_str().unwrap()))["run"].clone())
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
