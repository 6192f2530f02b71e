//! Lines against a real S3-compatible server: moto's server (from PyPI, installed by
//! tests/run-all.sh) on 127.0.0.1, started by the test.

mod common;
use common::s3::{BUCKET, S3, start_s3};
use common::{copy_dir, root};

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

const KEY_FILE: &str = "examples/demo-pseudonym.key";

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap()
}

/// The release `latest.json` names, checked object by object against its manifest.
fn current_release(s3: &S3, prefix: &str, period: &str) -> Option<(String, Value)> {
    let pointer = json(&s3.get(&format!("{prefix}releases/ensihoito/{period}/latest.json"))?);
    let manifest = json(
        &s3.get(&format!(
            "{prefix}{}",
            pointer["manifest"].as_str().unwrap()
        ))
        .unwrap(),
    );
    for o in manifest["objects"].as_array().unwrap() {
        let bytes = s3
            .get(&format!("{prefix}{}", o["path"].as_str().unwrap()))
            .unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            o["sha256"].as_str().unwrap()
        );
    }
    Some((pointer["run_id"].as_str().unwrap().to_string(), manifest))
}

#[test]
fn a_whole_line_runs_against_s3_with_atomic_releases() {
    let s3 = start_s3();
    s3.create_bucket();
    let store_url = format!("s3://{BUCKET}/tuotanto");
    let prefix = "tuotanto/";
    for sub in ["inbox", "reference"] {
        s3.upload(
            &root().join("examples/store").join(sub),
            &format!("{prefix}{sub}/"),
        );
    }
    let run = |period: &str| {
        s3.valtava(&[
            "run",
            "lines/ensihoito.yaml",
            "--param",
            &format!("period={period}"),
            "--store",
            &store_url,
            "--pseudonym-key-file",
            KEY_FILE,
            "--json",
        ])
    };

    // `plan` lists the objects in the bucket.
    let plan = ok(&s3.valtava(&[
        "plan",
        "lines/ensihoito.yaml",
        "--param",
        "period=2025-03",
        "--store",
        &store_url,
    ]));
    assert!(plan.contains("2 object"), "{plan}");

    let first: Value = serde_json::from_str(&ok(&run("2025-03"))).unwrap();
    let (run1, manifest) = current_release(&s3, prefix, "2025-03").unwrap();
    assert_eq!(first["run_id"], run1.as_str());
    // The same line run on a local folder publishes the same bytes.
    let local = tempfile::tempdir().unwrap();
    for sub in ["inbox", "reference"] {
        copy_dir(
            &root().join("examples/store").join(sub),
            &local.path().join(sub),
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_valtava"))
        .current_dir(root())
        .args([
            "run",
            "lines/ensihoito.yaml",
            "--param",
            "period=2025-03",
            "--store",
        ])
        .arg(local.path())
        .args(["--pseudonym-key-file", KEY_FILE, "--json"])
        .output()
        .unwrap();
    let local_report: Value = serde_json::from_str(&ok(&out)).unwrap();
    let local_run = local_report["run_id"].as_str().unwrap();
    let mut compared = 0;
    for o in manifest["objects"].as_array().unwrap() {
        let path = o["path"].as_str().unwrap();
        let name = path.rsplit('/').next().unwrap();
        let local_file = local
            .path()
            .join(format!("releases/ensihoito/2025-03/{local_run}/{name}"));
        assert_eq!(
            std::fs::read(&local_file).unwrap(),
            s3.get(&format!("{prefix}{path}")).unwrap(),
            "{name}"
        );
        compared += 1;
    }
    assert!(compared >= 3);
    // Quarantine, run report and lineage went to the bucket too.
    for q in first["quarantine"].as_array().unwrap() {
        assert!(
            s3.get(&format!("{prefix}{}", q.as_str().unwrap()))
                .is_some(),
            "{q}"
        );
    }
    assert!(
        s3.get(&format!("{prefix}runs/ensihoito/{run1}.json"))
            .is_some()
    );

    // A second run moves the pointer; a failed run of another period publishes nothing.
    std::thread::sleep(Duration::from_millis(5));
    let second: Value = serde_json::from_str(&ok(&run("2025-03"))).unwrap();
    let (run2, _) = current_release(&s3, prefix, "2025-03").unwrap();
    assert_eq!(second["run_id"], run2.as_str());
    assert_ne!(run1, run2);
    let failed = run("2025-04");
    assert!(!failed.status.success());
    assert!(current_release(&s3, prefix, "2025-04").is_none());
    assert_eq!(current_release(&s3, prefix, "2025-03").unwrap().0, run2);

    // Reading back: releases and show.
    let releases = ok(&s3.valtava(&["releases", "ensihoito", "--store", &store_url]));
    assert_eq!(
        releases
            .lines()
            .filter(|l| l.starts_with("2025-03"))
            .count(),
        2,
        "{releases}"
    );
    let current: Vec<&str> = releases.lines().filter(|l| l.contains(" * ")).collect();
    assert!(
        current.len() == 1 && current[0].contains(&run2),
        "{releases}"
    );
    let shown = ok(&s3.valtava(&[
        "show",
        "ensihoito_kuukausi",
        "--store",
        &store_url,
        "--limit",
        "1000",
    ]));
    assert!(shown.contains("SSS"), "{shown}");
}

#[test]
fn a_missing_bucket_is_a_clear_error() {
    let s3 = start_s3();
    let out = s3.valtava(&[
        "run",
        "lines/ensihoito.yaml",
        "--param",
        "period=2025-03",
        "--store",
        "s3://no-such-bucket/x",
        "--pseudonym-key-file",
        KEY_FILE,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // The first thing a run writes is its lease: the answer names the store and why.
    assert!(
        err.contains("s3://no-such-bucket/x") && err.contains("does not exist"),
        "{err}"
    );
    assert!(!err.contains("<?xml"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let out = s3.valtava(&["releases", "ensihoito", "--store", "s3:///x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("names no bucket"), "{err}");
}
