//! Lines on a Ballista cluster: a scheduler and an executor (`valtava cluster …`, built
//! with `--features ballista`) on loopback, and `valtava run --engine ballista://…`
//! publishing exactly what a local run publishes.

mod common;
use common::{copy_dir, root};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KEY_FILE: &str = "examples/demo-pseudonym.key";

/// The processes of a cluster, stopped when dropped.
struct Cluster {
    children: Vec<Child>,
    engine: String,
    executor_log: PathBuf,
    _logs: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Cluster {
    /// Tasks the executor has finished (from its log).
    fn finished_tasks(&self) -> usize {
        std::fs::read_to_string(&self.executor_log)
            .unwrap_or_default()
            .matches("Finished task")
            .count()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port whose next port is free too (an executor listens on both).
fn free_port_pair() -> u16 {
    loop {
        let p = free_port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

fn wait_for(port: u16, what: &str, child: &mut Child) {
    let until = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the {what} stopped: {status}");
        }
        assert!(Instant::now() < until, "the {what} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_cluster() -> Cluster {
    let logs = tempfile::tempdir().unwrap();
    let scheduler_port = free_port();
    let mut scheduler = Command::new(env!("CARGO_BIN_EXE_valtava"))
        .current_dir(root())
        .args([
            "cluster",
            "scheduler",
            "--bind",
            &format!("127.0.0.1:{scheduler_port}"),
            "--pseudonym-key-file",
            KEY_FILE,
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(scheduler_port, "scheduler", &mut scheduler);
    let flight = free_port_pair();
    let executor_log = logs.path().join("executor.log");
    let mut executor = Command::new(env!("CARGO_BIN_EXE_valtava"))
        .current_dir(root())
        .args([
            "cluster",
            "executor",
            "--scheduler",
            &format!("127.0.0.1:{scheduler_port}"),
            "--bind",
            &format!("127.0.0.1:{flight}"),
            "--tasks",
            "2",
            "--pseudonym-key-file",
            KEY_FILE,
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&executor_log).unwrap())
        .spawn()
        .unwrap();
    wait_for(flight + 1, "executor", &mut executor);
    Cluster {
        children: vec![scheduler, executor],
        engine: format!("ballista://127.0.0.1:{scheduler_port}"),
        executor_log,
        _logs: logs,
    }
}

fn store() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for sub in ["inbox", "reference"] {
        copy_dir(
            &root().join("examples/store").join(sub),
            &d.path().join(sub),
        );
    }
    d
}

fn run(line: &str, period: &str, store: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_valtava"))
        .current_dir(root())
        .args([
            "run",
            &format!("lines/{line}.yaml"),
            "--param",
            &format!("period={period}"),
            "--store",
            store.to_str().unwrap(),
            "--json",
        ])
        .args(extra)
        .env_remove("VALTAVA_STORE")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The published datasets of the current release (every file but the manifest, which
/// names the run), by file name.
fn published(store: &Path, line: &str, period: &str) -> Vec<(String, Vec<u8>)> {
    let pointer: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.join(format!("releases/{line}/{period}/latest.json"))).unwrap(),
    )
    .unwrap();
    let dir = store.join(format!(
        "releases/{line}/{period}/{}",
        pointer["run_id"].as_str().unwrap()
    ));
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .contains("manifest")
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn lines_on_a_ballista_cluster_publish_what_a_local_run_publishes() {
    let cluster = start_cluster();
    // A CSV line with every kind of rule, pseudonyms, code sets, a cube and rates; a FHIR
    // line whose source is parsed by the FHIR plugin; a line with a SQL step.
    for (line, period) in [
        ("ensihoito", "2025-03"),
        ("rokotukset", "2025"),
        ("hoitoonpaasy", "2025-03"),
    ] {
        let here = store();
        let there = store();
        let tasks_before = cluster.finished_tasks();
        let local = ok(&run(
            line,
            period,
            here.path(),
            &["--pseudonym-key-file", KEY_FILE],
        ));
        let remote = ok(&run(
            line,
            period,
            there.path(),
            &[
                "--pseudonym-key-file",
                KEY_FILE,
                "--engine",
                &cluster.engine,
            ],
        ));
        let a = published(here.path(), line, period);
        let b = published(there.path(), line, period);
        assert!(!a.is_empty());
        assert_eq!(
            a.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            b.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            "{line}"
        );
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            assert!(
                x == y,
                "{line}: {name} differs between the local and the cluster run"
            );
        }
        // The same rows were read, quarantined and published.
        for step in local["steps"].as_object().unwrap().keys() {
            for count in ["rows_in", "quarantined", "rows_out"] {
                assert_eq!(
                    local["steps"][step][count], remote["steps"][step][count],
                    "{line} {step} {count}"
                );
            }
        }
        // The steps' plans ran on the executor.
        assert!(
            cluster.finished_tasks() > tasks_before,
            "{line}: the executor ran no task"
        );
        // The work copies of the step inputs are gone.
        let work = there.path().join("work");
        let left: Vec<PathBuf> = walk(&work);
        assert!(left.is_empty(), "{line}: work files left: {left:?}");
    }
}

#[test]
fn a_cluster_with_another_pseudonym_key_is_refused() {
    let cluster = start_cluster();
    let keys = tempfile::tempdir().unwrap();
    let other = keys.path().join("other.key");
    std::fs::write(&other, "another-key-0123456789abcdef-0123").unwrap();
    let s = store();
    let out = run(
        "ensihoito",
        "2025-03",
        s.path(),
        &[
            "--pseudonym-key-file",
            other.to_str().unwrap(),
            "--engine",
            &cluster.engine,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error[R009]") && err.contains("another key"),
        "{err}"
    );
    assert!(!s.path().join("releases").exists() || walk(&s.path().join("releases")).is_empty());
}

#[test]
fn an_unreachable_scheduler_is_a_clear_error() {
    let s = store();
    let port = free_port();
    let out = run(
        "ensihoito",
        "2025-03",
        s.path(),
        &[
            "--pseudonym-key-file",
            KEY_FILE,
            "--engine",
            &format!("ballista://127.0.0.1:{port}"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error[R009]") && err.contains(&format!("ballista://127.0.0.1:{port}")),
        "{err}"
    );
    let bad = run(
        "ensihoito",
        "2025-03",
        s.path(),
        &["--pseudonym-key-file", KEY_FILE, "--engine", "spark://x"],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("error[R001]"));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}
