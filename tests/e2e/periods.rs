//! Statistics over time: ranges of periods.

use super::*;

/// Generates a month of ensihoito missions into `store`.
fn month(store: &Path, period: &str, rows: &str, seed: &str) {
    generate_input(store, "ensihoito", period, rows, &["--seed", seed]);
}

/// `valtava run lines/ensihoito.yaml` on `store` with more flags; the report as JSON.
fn ensihoito(store: &Path, period: &str, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut args = vec![
        "run",
        "lines/ensihoito.yaml",
        "--store",
        store.to_str().unwrap(),
        "--param",
    ];
    let param = format!("period={period}");
    args.push(&param);
    args.extend_from_slice(&[
        "--pseudonym-key-file",
        "examples/demo-pseudonym.key",
        "--json",
    ]);
    args.extend_from_slice(extra);
    let out = run(&args);
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&out.stdout), text(&out.stderr)));
    (out.status.code(), doc)
}

/// The published files of a period's current release, by name.
fn published(store: &Path, period: &str) -> BTreeMap<String, Vec<u8>> {
    let folder = store.join("releases/ensihoito").join(period);
    let pointer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("latest.json")).unwrap()).unwrap();
    let release = folder.join(pointer["run_id"].as_str().unwrap());
    std::fs::read_dir(&release)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("csv" | "parquet")
            )
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

fn outcomes(doc: &serde_json::Value) -> Vec<String> {
    doc["periods"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc}"))
        .iter()
        .map(|p| p["outcome"].as_str().unwrap().to_string())
        .collect()
}

use std::collections::BTreeMap;

/// A six-month range publishes six releases byte for byte equal to six single runs; run
/// again it publishes nothing new, and after one month's input changes only that month.
/// (Failed before: a range was not a period, the run refused it.)
#[test]
fn a_range_publishes_what_single_runs_do_and_reruns_only_what_changed() {
    let months = [
        "2025-01", "2025-02", "2025-03", "2025-04", "2025-05", "2025-06",
    ];
    let a = tempfile::tempdir().unwrap();
    for (i, m) in months.iter().enumerate() {
        month(a.path(), m, "400", &format!("{}", 7 + i));
    }
    let b = tempfile::tempdir().unwrap();
    copy_dir(a.path(), b.path());

    let (code, doc) = ensihoito(a.path(), "2025-01..2025-06", &[]);
    assert_eq!(code, Some(0), "{doc}");
    assert_eq!(outcomes(&doc), vec!["published"; 6]);
    for m in months {
        let (code, report) = ensihoito(b.path(), m, &[]);
        assert_eq!(code, Some(0), "{report}");
        let (ranged, single) = (published(a.path(), m), published(b.path(), m));
        assert!(!ranged.is_empty());
        assert_eq!(
            ranged, single,
            "{m}: the range's release differs from a single run's"
        );
    }

    let (code, doc) = ensihoito(a.path(), "2025-01..2025-06", &[]);
    assert_eq!(code, Some(0), "{doc}");
    assert_eq!(outcomes(&doc), vec!["unchanged"; 6], "{doc}");
    let runs = |m: &str| {
        std::fs::read_dir(a.path().join("releases/ensihoito").join(m))
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .count()
    };
    assert!(months.iter().all(|m| runs(m) == 1));

    // March's submission is replaced: only March runs again.
    // (Only the inbox: the reference data a run also reads stay as they were.)
    let other = tempfile::tempdir().unwrap();
    month(other.path(), "2025-03", "300", "99");
    std::fs::remove_dir_all(a.path().join("inbox/ensihoito/2025-03")).unwrap();
    copy_dir(
        &other.path().join("inbox/ensihoito/2025-03"),
        &a.path().join("inbox/ensihoito/2025-03"),
    );
    let (code, doc) = ensihoito(a.path(), "2025-01..2025-06", &[]);
    assert_eq!(code, Some(0), "{doc}");
    let mut want = vec!["unchanged"; 6];
    want[2] = "published";
    assert_eq!(outcomes(&doc), want, "{doc}");
    assert_eq!(runs("2025-03"), 2);
}

/// A failed period stops the range (later ones are skipped, exit 1) unless `--keep-going`;
/// a range that is not one is a usage error.
#[test]
fn a_failed_period_stops_the_range_unless_asked_to_keep_going() {
    let store = tempfile::tempdir().unwrap();
    for (m, seed) in [("2025-01", "1"), ("2025-02", "2"), ("2025-04", "4")] {
        month(store.path(), m, "200", seed);
    }
    let (code, doc) = ensihoito(store.path(), "2025-01..2025-04", &[]);
    assert_eq!(code, Some(1), "{doc}");
    assert_eq!(
        outcomes(&doc),
        ["published", "published", "failed", "skipped"]
    );
    assert_eq!(doc["periods"][2]["code"], "R004", "{doc}");
    let (code, doc) = ensihoito(store.path(), "2025-01..2025-04", &["--keep-going"]);
    assert_eq!(code, Some(1), "{doc}");
    assert_eq!(
        outcomes(&doc),
        ["unchanged", "unchanged", "failed", "published"]
    );

    let out = run(&[
        "run",
        "lines/ensihoito.yaml",
        "--store",
        store.path().to_str().unwrap(),
        "--param",
        "period=2025-04..2025-01",
        "--pseudonym-key-file",
        "examples/demo-pseudonym.key",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not after its last"),
        "{}",
        text(&out.stderr)
    );
}
