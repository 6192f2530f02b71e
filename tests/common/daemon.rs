//! The daemon over loopback for the tests: the real `valtava serve` on a store with the
//! example data, started by the test and stopped when dropped, and its HTTP API.
#![allow(dead_code)] // each test file uses its part

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{copy_dir, root};

pub const KEY: &str = "daemon-test-key-0123456789abcdef";
pub const RUN_TOKEN: &str = "run-token-0123456789abcdef";
pub const READ_TOKEN: &str = "read-token-0123456789abcdef";

/// A store with the shipped example inbox and reference data, and a token file `tokens.yaml`
/// holding `tokens`.
pub fn store_with_tokens(tokens: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    for sub in ["inbox", "reference"] {
        copy_dir(&root().join("examples/store").join(sub), &store.join(sub));
    }
    std::fs::write(dir.path().join("tokens.yaml"), tokens).unwrap();
    dir
}

pub struct Daemon {
    pub child: Child,
    pub base: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `valtava serve` on the store of `dir` (from [`store_with_tokens`]) with `extra`
/// arguments; `--lines lines` and `--settle 0` unless `extra` gives its own.
pub fn start(dir: &Path, extra: &[&str]) -> Daemon {
    let mut c = Command::new(env!("CARGO_BIN_EXE_valtava"));
    c.current_dir(root())
        .args(["serve", "--store"])
        .arg(dir.join("store"))
        .args(if extra.contains(&"--lines") {
            &[][..]
        } else {
            &["--lines", "lines"][..]
        })
        .args(["--listen", "127.0.0.1:0", "--tokens"])
        .arg(dir.join("tokens.yaml"))
        .args(["--poll", "0.3"])
        .args(if extra.contains(&"--settle") {
            &[][..]
        } else {
            &["--settle", "0"][..]
        })
        .args(extra)
        .env("VALTAVA_PSEUDONYM_KEY", KEY)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("daemon.log"))
                .unwrap(),
        ));
    let mut child = c.spawn().expect("the daemon starts");
    let stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
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

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut r = r.expect("the daemon answers");
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    Answer {
        status: r.status().as_u16(),
        headers,
        body: r.body_mut().read_to_string().unwrap_or_default(),
    }
}

/// A GET with the `read` token (operational endpoints need it; public ones ignore it).
pub fn get(d: &Daemon, path: &str) -> Answer {
    answer(
        agent()
            .get(&format!("{}{path}", d.base))
            .header("Authorization", &format!("Bearer {READ_TOKEN}"))
            .call(),
    )
}

/// A POST of a JSON `body`, with `token` if any.
pub fn post(d: &Daemon, path: &str, token: Option<&str>, body: &str) -> Answer {
    let mut req = agent()
        .post(&format!("{}{path}", d.base))
        .header("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    answer(req.send(body))
}

/// Waits until the job has ended and returns it (its run is under `run`).
pub fn wait_job(d: &Daemon, id: &str, limit: Duration) -> Value {
    let until = Instant::now() + limit;
    loop {
        let a = get(d, &format!("/api/runs/{id}"));
        assert_eq!(a.status, 200, "{}", a.body);
        let v = a.json();
        let status = v["run"]["status"].as_str().unwrap().to_string();
        if status == "succeeded" || status == "failed" {
            return v;
        }
        assert!(Instant::now() < until, "job {id} still {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
