//! What runs leave in the store: a release per run (identical bytes when rerun, nothing
//! shared by runs started together), a deadline that publishes nothing, and the leftovers of
//! killed runs (work files, scratch folders, release prefixes) collected by `gc` and at the
//! next run's start.

use std::collections::BTreeSet;

use super::*;

#[test]
fn reruns_publish_identical_bytes() {
    let store = store_with_inbox();
    let a = run_mini(store.path(), &[]);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let b = run_mini(store.path(), &[]);
    assert_eq!(a.status.code(), Some(0));
    assert_eq!(b.status.code(), Some(0));
    let ra: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let rb: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap();
    assert_ne!(ra["run_id"], rb["run_id"]);
    for ext in ["parquet", "csv"] {
        let fa = std::fs::read(store.path().join(format!(
            "releases/mini/2025-01/{}/mini_kuukausi.{ext}",
            ra["run_id"].as_str().unwrap()
        )))
        .unwrap();
        let fb = std::fs::read(store.path().join(format!(
            "releases/mini/2025-01/{}/mini_kuukausi.{ext}",
            rb["run_id"].as_str().unwrap()
        )))
        .unwrap();
        assert_eq!(fa, fb, "{ext}");
    }
    // The pointer follows the newest run.
    assert!(
        latest_release(store.path(), "mini", "2025-01").ends_with(rb["run_id"].as_str().unwrap())
    );
}

/// The work files of a killed cluster run (copies of step inputs) are removed at the next
/// run's start: a stale lease, or none and nothing recent. A run still renewing its lease,
/// or one that has only just started, is left alone.
#[test]
fn work_files_of_killed_runs_are_removed_at_the_next_start() {
    let store = store_with_inbox();
    let work = store.path().join("work");
    let ago =
        |minutes: u64| std::time::SystemTime::now() - std::time::Duration::from_secs(minutes * 60);
    let put = |rel: &str, when: std::time::SystemTime| {
        let p = work.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"x").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(when)
            .unwrap();
    };
    put("tapettu/vaihe/0.parquet", ago(30));
    put("tapettu/_lease", ago(20));
    put("vanha/vaihe/0.parquet", ago(120));
    put("kaynnissa/vaihe/0.parquet", ago(60));
    put("kaynnissa/_lease", ago(1));
    put("alkanut/vaihe/0.parquet", ago(2));
    let out = run_mini(store.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let left: BTreeSet<String> = std::fs::read_dir(&work)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| std::fs::read_dir(e.path()).is_ok_and(|mut d| d.next().is_some()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        ["alkanut", "kaynnissa"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        "{}",
        text(&out.stderr)
    );
}

/// Two runs of one line started at once never share a file: each has its own run id (a
/// random part), report, lineage, quarantine and release, and both are whole.
#[test]
fn two_runs_started_together_never_share_a_file() {
    let store = store_with_inbox();
    let mut children: Vec<_> = (0..2)
        .map(|_| {
            mini(store.path(), &[])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let reports: Vec<serde_json::Value> = children
        .drain(..)
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let ids: BTreeSet<&str> = reports
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    for id in &ids {
        assert!(store.path().join(format!("runs/mini/{id}.json")).exists());
        assert!(
            store
                .path()
                .join(format!("lineage/mini/{id}/2-complete.json"))
                .exists()
        );
        let release = store.path().join(format!("releases/mini/2025-01/{id}"));
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(release.join("_manifest.json")).unwrap())
                .unwrap();
        for o in manifest["objects"].as_array().unwrap() {
            assert!(o["path"].as_str().unwrap().contains(id), "{o}");
            assert!(store.path().join(o["path"].as_str().unwrap()).exists());
        }
    }
    // Nothing of either run is left running.
    assert!(files_under(&store.path().join("running")).is_empty());
}

/// A line whose source program takes `seconds`: a run that can be killed, or stopped by
/// its deadline, while it reads.
fn slow_line(dir: &Path, seconds: u32) -> PathBuf {
    let file = dir.join("hidas.yaml");
    std::fs::write(
        &file,
        format!(
            "line: hidas\ntitle: Hidas\nsteps:\n  rivit:\n    source: {{ format: external, location: inbox/*.txt, options: {{ command: [sleep, \"{seconds}\"], timeout_seconds: 600 }}, columns: {{ a: string }} }}\n  maara:\n    aggregate: {{ input: rivit, by: [a], measures: {{ rivit: count(*) }} }}\n  julkaisu:\n    publish: {{ input: maara, dataset: hidas, formats: [csv], disclosure: {{ min_count: 1 }} }}\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("store/inbox")).unwrap();
    std::fs::write(dir.join("store/inbox/a.txt"), "x\n").unwrap();
    file
}

/// A run past its deadline fails with R011 and publishes nothing (failed before: no run had
/// a time limit).
#[test]
fn a_run_past_its_deadline_fails_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let line = slow_line(dir.path(), 30);
    let started = std::time::Instant::now();
    let out = run(&[
        "run",
        line.to_str().unwrap(),
        "--store",
        dir.path().join("store").to_str().unwrap(),
        "--deadline-seconds",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("R011"), "{}", text(&out.stderr));
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(files_under(&dir.path().join("store/releases")).is_empty());
}

/// Waits for a run of the slow line to have started (its lease and scratch folder exist),
/// kills it with SIGKILL and leaves what it would have left while publishing: an object of
/// its release without a manifest. Returns the run's release prefix in the store.
#[cfg(target_os = "linux")]
fn kill_during_a_run(dir: &Path, line: &Path, tmp: &Path) -> PathBuf {
    let store = dir.join("store");
    let mut child = bin()
        .args([
            "run",
            line.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
        ])
        .env("TMPDIR", tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let lease = loop {
        let leases = files_under(&store.join("running"));
        let scratch = std::fs::read_dir(tmp).unwrap().count();
        if let (Some(l), true) = (leases.first(), scratch > 0) {
            break l.clone();
        }
        assert!(std::time::Instant::now() < until, "the run did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(lease).unwrap()).unwrap();
    let prefix = store.join(info["prefixes"][0].as_str().unwrap());
    std::fs::create_dir_all(&prefix).unwrap();
    std::fs::write(prefix.join("hidas.csv"), "a,rivit\n").unwrap();
    assert_eq!(
        std::fs::read_dir(tmp).unwrap().count(),
        1,
        "the scratch folder is left"
    );
    prefix
}

/// What a run killed with SIGKILL leaves — its scratch folder, its release prefix without a
/// manifest — is removed by `valtava gc` (which says so) and at the next start of a run.
/// Failed before: scratch folders stayed a day, release prefixes for ever.
#[test]
#[cfg(target_os = "linux")]
fn a_killed_runs_leftovers_are_collected() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let line = slow_line(dir.path(), 20);
    let store = dir.path().join("store");
    let prefix = kill_during_a_run(dir.path(), &line, tmp.path());
    let out = bin()
        .args(["gc", "--store", store.to_str().unwrap()])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let collected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        collected["runs"].as_array().unwrap().len(),
        1,
        "{collected}"
    );
    assert_eq!(
        collected["scratch"].as_array().unwrap().len(),
        1,
        "{collected}"
    );
    assert!(!prefix.exists());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    assert!(files_under(&store.join("running")).is_empty());

    // Killed again; this time the next run collects, and publishes.
    let prefix = kill_during_a_run(dir.path(), &line, tmp.path());
    let fast = slow_line(dir.path(), 0);
    let out = bin()
        .args([
            "run",
            fast.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
        ])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!prefix.exists());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}
