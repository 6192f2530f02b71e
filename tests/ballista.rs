//! Lines on a Ballista cluster: a scheduler and an executor (`valtava cluster …`, built
//! with `--features ballista`) on loopback, and `valtava run --engine ballista://…`
//! publishing exactly what a local run publishes.

mod common;
use common::s3::{BUCKET, start_s3};
use common::{copy_dir, free_port, free_port_pair, root, wait_for};

use std::io::{BufRead, BufReader};
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

/// A scheduler and an executor with the given environment (for S3).
fn start_cluster(env: &[(&str, String)]) -> Cluster {
    let logs = tempfile::tempdir().unwrap();
    let scheduler_port = free_port();
    let mut scheduler = Command::new(env!("CARGO_BIN_EXE_valtava"))
        .current_dir(root())
        .args([
            "cluster",
            "scheduler",
            "--bind",
            &format!("127.0.0.1:{scheduler_port}"),
        ])
        // The cluster refuses to start holding the pseudonymisation key (exit 2): one
        // exported in the shell that runs the tests is not the cluster's.
        .env_remove("VALTAVA_PSEUDONYM_KEY")
        .envs(env.iter().map(|(k, v)| (k, v)))
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
        ])
        .env_remove("VALTAVA_PSEUDONYM_KEY")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("VALTAVA_MEMORY_LIMIT", "512M")
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

/// Runs a line; a run that has not ended after three minutes is stopped and fails the test
/// (a stalled cluster job must not hang CI).
fn run_line(line: &str, period: &str, store: &Path, extra: &[&str]) -> Output {
    run_line_logging(line, period, store, extra, "warn")
}

/// [`run_line`] with the log levels of `RUST_LOG`.
fn run_line_logging(
    line: &str,
    period: &str,
    store: &Path,
    extra: &[&str],
    rust_log: &str,
) -> Output {
    let logs = tempfile::tempdir().unwrap();
    let (out, err) = (logs.path().join("out"), logs.path().join("err"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_valtava"))
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
        .env("RUST_LOG", rust_log)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{line}: the run did not end in 180 s\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    }
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
    let cluster = start_cluster(&[]);
    // The executor's memory pool is the engine's memory limit.
    let log = std::fs::read_to_string(&cluster.executor_log).unwrap();
    assert!(
        log.contains("Executor memory pool: 512.0 MiB"),
        "VALTAVA_MEMORY_LIMIT did not size the pool:\n{log}"
    );
    // A CSV line with every kind of rule, pseudonyms, code sets, a cube and rates; a FHIR
    // line whose source is parsed by the FHIR plugin; a line with a SQL step; a line
    // without personal data, run without a key.
    for (line, period, key) in [
        ("ensihoito", "2025-03", true),
        ("rokotukset", "2025", true),
        ("hoitoonpaasy", "2025-03", true),
        ("henkilostomitoitus", "2025-Q1", false),
    ] {
        let here = store();
        let there = store();
        let tasks_before = cluster.finished_tasks();
        let key_args: &[&str] = if key {
            &["--pseudonym-key-file", KEY_FILE]
        } else {
            &[]
        };
        let local = ok(&run_line(line, period, here.path(), key_args));
        let mut remote_args = key_args.to_vec();
        remote_args.extend(["--engine", cluster.engine.as_str()]);
        let remote = ok(&run_line(line, period, there.path(), &remote_args));
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

/// The cluster is no pseudonym oracle: it refuses to start with the key, its `pseudonym()`
/// fails (every run checks this before its first step), and the steps that read clear
/// identity codes run where the run starts — only pseudonymised data reaches the cluster.
#[test]
fn the_cluster_never_holds_the_key_nor_sees_clear_identity_codes() {
    let refused = Command::new(env!("CARGO_BIN_EXE_valtava"))
        .current_dir(root())
        .args(["cluster", "scheduler", "--bind", "127.0.0.1:0"])
        .env("VALTAVA_PSEUDONYM_KEY", "0123456789abcdef0123456789")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("must not hold the pseudonymisation key"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let cluster = start_cluster(&[]);
    let s = store();
    let out = run_line_logging(
        "ensihoito",
        "2025-03",
        s.path(),
        &[
            "--pseudonym-key-file",
            KEY_FILE,
            "--engine",
            &cluster.engine,
        ],
        "valtava=debug",
    );
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{log}");
    let placed = |step: &str| -> String {
        log.lines()
            .find(|l| l.contains("step placed") && l.contains(&format!("step={step} ")))
            .unwrap_or_else(|| panic!("{step} not placed:\n{log}"))
            .to_string()
    };
    // Sources, validation and pseudonymisation here; the aggregate and publish there.
    for step in ["tehtavat", "tarkistettu", "yhtenaistetty"] {
        assert!(
            placed(step).contains("engine=\"local\""),
            "{}",
            placed(step)
        );
    }
    for step in ["kuukausittain", "julkaisu"] {
        assert!(
            placed(step).contains("engine=\"cluster\""),
            "{}",
            placed(step)
        );
    }
}

#[test]
fn an_unreachable_scheduler_is_a_clear_error() {
    let s = store();
    let port = free_port();
    let out = run_line(
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
    let bad = run_line(
        "ensihoito",
        "2025-03",
        s.path(),
        &["--pseudonym-key-file", KEY_FILE, "--engine", "spark://x"],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("error[R001]"));
    // The daemon refuses an engine it cannot use when it starts.
    let serve = Command::new(env!("CARGO_BIN_EXE_valtava"))
        .current_dir(root())
        .args(["serve", "--store", s.path().to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--engine", "ballista://:50050"])
        .output()
        .unwrap();
    assert_eq!(serve.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&serve.stderr).contains("names no scheduler"),
        "{}",
        String::from_utf8_lossy(&serve.stderr)
    );
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

/// Stops the daemon when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The deployment of `examples/deployment/`: the daemon runs its lines on the cluster,
/// both read and write the S3 bucket, and what it publishes equals a local run.
#[test]
fn the_daemon_runs_lines_on_the_cluster_over_s3() {
    let s3 = start_s3();
    s3.create_bucket();
    let prefix = "tuotanto/";
    for sub in ["inbox", "reference"] {
        s3.upload(
            &root().join("examples/store").join(sub),
            &format!("{prefix}{sub}/"),
        );
    }
    let cluster = start_cluster(&s3.env());
    let dir = tempfile::tempdir().unwrap();
    let token = "operaattori-token-0123456789abcdef";
    std::fs::write(
        dir.path().join("tokens.yaml"),
        format!("tokens:\n  - {{ name: operaattori, token: {token}, roles: [run, read] }}\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_valtava"))
        .current_dir(root())
        .args(["serve", "--store", &format!("s3://{BUCKET}/tuotanto")])
        .args(["--lines", "lines", "--listen", "127.0.0.1:0", "--tokens"])
        .arg(dir.path().join("tokens.yaml"))
        .args([
            "--pseudonym-key-file",
            KEY_FILE,
            "--engine",
            &cluster.engine,
        ])
        .env_remove("VALTAVA_STORE")
        .envs(s3.env())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _daemon = Daemon(child);
    let base = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let tasks_before = cluster.finished_tasks();
    let mut r = agent
        .post(&format!("{base}/api/lines/ensihoito/runs"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(r#"{"params": {"period": "2025-03"}}"#)
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let job: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    let until = Instant::now() + Duration::from_secs(120);
    let run = loop {
        // Runs are operational: they need a `read` token.
        let mut a = agent
            .get(&format!("{base}/api/runs/{id}"))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&a.body_mut().read_to_string().unwrap()).unwrap();
        let status = v["run"]["status"].as_str().unwrap_or_default().to_string();
        if status == "succeeded" || status == "failed" {
            break v;
        }
        assert!(Instant::now() < until, "the job is still {status}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    assert!(
        cluster.finished_tasks() > tasks_before,
        "the executor ran no task"
    );

    // The release in the bucket equals a local run's.
    let here = store();
    ok(&run_line(
        "ensihoito",
        "2025-03",
        here.path(),
        &["--pseudonym-key-file", KEY_FILE],
    ));
    let pointer: serde_json::Value = serde_json::from_slice(
        &s3.get(&format!("{prefix}releases/ensihoito/2025-03/latest.json"))
            .unwrap(),
    )
    .unwrap();
    let run_id = pointer["run_id"].as_str().unwrap();
    let local = published(here.path(), "ensihoito", "2025-03");
    assert!(!local.is_empty());
    for (name, bytes) in &local {
        let remote = s3
            .get(&format!(
                "{prefix}releases/ensihoito/2025-03/{run_id}/{name}"
            ))
            .unwrap_or_else(|| panic!("{name} is not in the bucket"));
        assert!(&remote == bytes, "{name} differs");
    }
    // No work copies are left in the bucket.
    assert!(s3.list(&format!("{prefix}releases")).len() >= local.len());
    let left = s3.list(&format!("{prefix}work"));
    assert!(left.is_empty(), "work files left: {left:?}");
}
