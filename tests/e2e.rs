//! End-to-end tests: the real `valtava` binary on real files.

mod common;
use common::{copy_dir, root};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_valtava"));
    c.current_dir(root());
    c.env_remove("VALTAVA_PSEUDONYM_KEY")
        .env_remove("VALTAVA_STORE")
        .env("RUST_LOG", "info");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const KEY: &str = "e2e-test-key-0123456789abcdef";

/// A temporary store holding the test inbox.
fn store_with_inbox() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("tests/data"), dir.path());
    dir
}

/// A copy of a test line in `dir`, its code-set path made absolute, with replacements.
fn line_copy(dir: &Path, line: &str, name: &str, replacements: &[(&str, &str)]) -> PathBuf {
    let shared = root()
        .join("../shared/reference/kunta_hyvinvointialue_2023.csv")
        .canonicalize()
        .unwrap();
    let mut text = std::fs::read_to_string(root().join(line)).unwrap().replace(
        "../../../shared/reference/kunta_hyvinvointialue_2023.csv",
        shared.to_str().unwrap(),
    );
    for (from, to) in replacements {
        assert!(text.contains(from), "{from}");
        text = text.replace(from, to);
    }
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(files_under(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// The mini line's run command on `store` with the test key.
fn mini(store: &Path, extra: &[&str]) -> Command {
    let s = store.to_str().unwrap();
    let mut args = vec![
        "run",
        "tests/lines/mini.yaml",
        "--store",
        s,
        "--param",
        "period=2025-01",
        "--json",
    ];
    args.extend_from_slice(extra);
    let mut c = bin();
    c.args(&args).env("VALTAVA_PSEUDONYM_KEY", KEY);
    c
}

fn run_mini(store: &Path, extra: &[&str]) -> Output {
    mini(store, extra).output().unwrap()
}

fn latest_release(store: &Path, line: &str, period: &str) -> PathBuf {
    let p: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.join(format!("releases/{line}/{period}/latest.json"))).unwrap(),
    )
    .unwrap();
    let manifest = p["manifest"].as_str().unwrap();
    store.join(manifest).parent().unwrap().to_path_buf()
}

#[test]
fn broken_line_files_give_their_expected_diagnostics() {
    let dir = root().join("tests/lines/broken");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "only {} broken line files", files.len());
    let mut codes = BTreeSet::new();
    for f in files {
        let rel = f
            .strip_prefix(root())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let expected = std::fs::read_to_string(f.with_extension("expected"))
            .unwrap()
            .trim()
            .to_string();
        let out = run(&["check", "--format", "json", &rel]);
        assert_eq!(out.status.code(), Some(1), "{rel}: {}", text(&out.stderr));
        let diags: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{rel}: {e}: {}", text(&out.stdout)));
        let got: Vec<String> = diags
            .as_array()
            .unwrap()
            .iter()
            .map(|d| format!("{} {}:{}", d["code"].as_str().unwrap(), d["line"], d["col"]))
            .collect();
        assert_eq!(got.join(" | "), expected, "{rel}");
        for d in diags.as_array().unwrap() {
            assert_eq!(d["file"].as_str().unwrap(), rel);
            assert!(!d["message"].as_str().unwrap().is_empty());
            codes.insert(d["code"].as_str().unwrap().to_string());
        }
        // The human rendering names the place and shows the line with a caret.
        let human = run(&["check", &rel]);
        assert_eq!(human.status.code(), Some(1));
        let err = text(&human.stderr);
        let first = &diags[0];
        assert!(
            err.contains(&format!("--> {rel}:{}:{}", first["line"], first["col"])),
            "{err}"
        );
        assert!(err.contains(" | ") && err.contains('^'), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // Every kind the issue names is covered.
    for c in [
        "V001", "V002", "V003", "V005", "V102", "V103", "V104", "V201", "V202", "V301",
    ] {
        assert!(codes.contains(c), "no broken file exercises {c}");
    }
}

#[test]
fn shipped_and_test_lines_are_valid() {
    let mut lines: Vec<String> = std::fs::read_dir(root().join("lines"))
        .unwrap()
        .map(|e| format!("lines/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    lines.sort();
    lines.push("tests/lines/mini.yaml".into());
    let mut args = vec!["check"];
    args.extend(lines.iter().map(String::as_str));
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json = run(&["check", "--format", "json", "tests/lines/mini.yaml"]);
    assert_eq!(text(&json.stdout).trim(), "[]");
}

/// Personal data is tracked through the plans: every shape in `tests/lines/broken` that
/// publishes something derived from `hetu` (or makes it a submitter) is refused with V206 and
/// the path back to the declared column; the shapes in `tests/lines/privacy-ok` (join key
/// dropped, generalisers, distinct counts, filters) pass.
#[test]
fn personal_data_lineage_refuses_every_derived_shape_and_allows_generalised_ones() {
    let dir = root().join("tests/lines/broken");
    let mut refused: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.to_string_lossy().contains("-personal-") && p.extension().is_some_and(|e| e == "yaml")
        })
        .collect();
    refused.sort();
    assert!(
        refused.len() >= 12,
        "only {} personal shapes",
        refused.len()
    );
    for f in &refused {
        let rel = f
            .strip_prefix(root())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let out = run(&["check", "--format", "json", &rel]);
        assert_eq!(out.status.code(), Some(1), "{rel}");
        let diags: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let d = &diags[0];
        assert_eq!(d["code"], "V206", "{rel}: {d}");
        let message = d["message"].as_str().unwrap();
        assert!(
            message.contains(" ← ") && message.ends_with("(personal)"),
            "{rel}: no path in {message}"
        );
    }
    let ok = root().join("tests/lines/privacy-ok");
    let mut allowed: Vec<String> = std::fs::read_dir(&ok)
        .unwrap()
        .map(|e| {
            format!(
                "tests/lines/privacy-ok/{}",
                e.unwrap().file_name().to_string_lossy()
            )
        })
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    allowed.sort();
    assert!(allowed.len() >= 5);
    let mut args = vec!["check"];
    args.extend(allowed.iter().map(String::as_str));
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Counts of persons, however written, decide disclosure with the first count.
    let plan = run(&["plan", "tests/lines/privacy-ok/09-person-counts.yaml"]);
    let plan = text(&plan.stdout);
    for want in [
        "disclosure tehtavat, potilaat < 5 suppressed",
        "disclosure tehtavat, potilaat_a, potilaat_b, potilaat_c < 5 suppressed",
    ] {
        assert!(plan.contains(want), "{want}\n{plan}");
    }
    // Also when an sql step counts them.
    let sql = run(&["plan", "tests/lines/privacy-ok/08-sql-generalised.yaml"]);
    assert!(
        text(&sql.stdout).contains("disclosure lkm, potilaat < 5 suppressed"),
        "{}",
        text(&sql.stdout)
    );
}

#[test]
fn two_files_of_one_line_name_fail_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let shipped_text =
        std::fs::read_to_string(root().join("lines/henkilostomitoitus.yaml")).unwrap();
    let copy = dir.path().join("kopio.yaml");
    // The copy's code sets are read from the shipped line's folder.
    let shipped = root().join("lines").canonicalize().unwrap();
    std::fs::write(
        &copy,
        shipped_text.replace("path: ", &format!("path: {}/", shipped.display())),
    )
    .unwrap();
    let copy = copy.display().to_string();
    let alone = run(&["check", &copy]);
    assert_eq!(alone.status.code(), Some(0), "{}", text(&alone.stderr));
    let out = run(&[
        "check",
        "--format",
        "json",
        "lines/henkilostomitoitus.yaml",
        &copy,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d.as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d[0]["code"], "V104");
    assert_eq!(d[0]["file"], copy.as_str());
    assert!(
        d[0]["message"]
            .as_str()
            .unwrap()
            .contains("also defined in lines/henkilostomitoitus.yaml"),
        "{d}"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["check"]).status.code(), Some(2));
    assert_eq!(
        run(&["check", "--format", "xml", "lines/ensihoito.yaml"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&["run", "tests/lines/mini.yaml", "--param", "period"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    let missing = run(&["check", "tests/lines/does-not-exist.yaml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("V006"));
}

#[test]
fn every_command_has_help_with_an_example() {
    for c in ["check", "graph", "schema", "run"] {
        let out = run(&[c, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        assert!(text(&out.stdout).contains("Examples:"), "{c}");
    }
}

#[test]
fn graph_output_is_byte_stable() {
    for (format, golden) in [
        ("dot", "tests/golden/mini.dot"),
        ("mermaid", "tests/golden/mini.mmd"),
    ] {
        let a = run(&["graph", "--format", format, "tests/lines/mini.yaml"]);
        let b = run(&["graph", "--format", format, "tests/lines/mini.yaml"]);
        assert_eq!(a.status.code(), Some(0));
        assert_eq!(a.stdout, b.stdout);
        let expected = std::fs::read_to_string(root().join(golden)).unwrap();
        assert_eq!(text(&a.stdout), expected, "{golden} differs");
    }
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let out = run(&["schema"]);
    let committed = std::fs::read_to_string(root().join("schemas/line.schema.json")).unwrap();
    assert_eq!(text(&out.stdout), committed);
    let schema: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert!(schema["properties"]["steps"].is_object());
    assert!(schema["$defs"]["StepSpec"]["properties"]["source"].is_object());
    let line = std::fs::read_to_string(root().join("lines/ensihoito.yaml")).unwrap();
    assert!(line.starts_with("# yaml-language-server: $schema=../schemas/line.schema.json"));
}

#[test]
fn mini_line_runs_end_to_end_and_accounts_for_every_row() {
    let store = store_with_inbox();
    let out = run_mini(store.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = &report["steps"];
    // 14 data rows: 3 cannot be read as declared, 5 break rules, 6 are aggregated.
    assert_eq!(steps["rivit"]["rows_in"], 14);
    assert_eq!(steps["rivit"]["rows_quarantined"], 3);
    assert_eq!(steps["tarkistettu"]["rows_in"], 11);
    assert_eq!(steps["tarkistettu"]["rows_quarantined"], 5);
    assert_eq!(steps["yhtenaistetty"]["rows_out"], 6);
    for rule in [
        "id-uniikki",
        "hetu-oikea",
        "kunta-tunnettu",
        "arvo-positiivinen",
        "pvm-jaksolla",
    ] {
        assert_eq!(steps["tarkistettu"]["violations"][rule], 1, "{rule}");
    }
    assert!(report["steps"]["julkaisu"]["seconds"].is_number());
    assert_eq!(report["params"]["period"], "2025-01");
    assert_eq!(report["line_hash"].as_str().unwrap().len(), 64);

    // The published table, computed by hand from the input. A suppressed cell loses every
    // column that is not a dimension. 04 has 2 rows (< 3); 90 must go too, or 04 would be
    // SSS − 90 = 6 − 4.
    let release = latest_release(store.path(), "mini", "2025-01");
    let csv = std::fs::read_to_string(release.join("mini_kuukausi.csv")).unwrap();
    assert_eq!(
        csv,
        "hyvinvointialue,kuukausi,rivit,summa,jakso,status\n\
         04,2025-01,,,,suppressed\n\
         04,YHT,,,,suppressed\n\
         90,2025-01,,,,suppressed\n\
         90,YHT,,,,suppressed\n\
         SSS,2025-01,6,46,2025-01,\n\
         SSS,YHT,6,46,2025-01,\n"
    );

    // The manifest lists every dataset object with its checksum.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(release.join("_manifest.json")).unwrap()).unwrap();
    let objects = manifest["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 2);
    for o in objects {
        use sha2::Digest;
        let bytes = std::fs::read(store.path().join(o["path"].as_str().unwrap())).unwrap();
        assert_eq!(
            o["sha256"].as_str().unwrap(),
            hex::encode(sha2::Sha256::digest(&bytes))
        );
        assert_eq!(o["bytes"], bytes.len());
    }
    assert_eq!(
        manifest["codesets"]["kunnat"]["sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );

    // Quarantine: every rejected row with its object, row number and reason.
    let qdir = store.path().join(format!(
        "quarantine/mini/2025-01/{}",
        report["run_id"].as_str().unwrap()
    ));
    let mut rejected = Vec::new();
    for f in files_under(&qdir) {
        let file = std::fs::File::open(&f).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            let b = b.unwrap();
            use arrow::array::AsArray;
            let rows = b
                .column_by_name("_row")
                .unwrap()
                .as_primitive::<arrow::datatypes::UInt64Type>()
                .clone();
            let objs = arrow::compute::cast(
                b.column_by_name("_object").unwrap(),
                &arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            let rules = arrow::compute::cast(
                b.column_by_name("_rules").unwrap(),
                &arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            for i in 0..b.num_rows() {
                rejected.push((
                    rows.value(i),
                    objs.as_string::<i32>().value(i).to_string(),
                    rules.as_string::<i32>().value(i).to_string(),
                ));
            }
        }
    }
    rejected.sort();
    let expected: Vec<(u64, &str)> = vec![
        (8, "hetu-oikea"),
        (9, "id-uniikki"),
        (10, "kunta-tunnettu"),
        (11, "arvo-positiivinen"),
        (12, "pvm-jaksolla"),
        (13, "parse"),
        (14, "type-pvm"),
        (15, "required-id"),
    ];
    assert_eq!(rejected.len(), expected.len(), "{rejected:?}");
    for ((row, obj, rules), (erow, erule)) in rejected.iter().zip(expected) {
        assert_eq!((*row, rules.as_str()), (erow, erule));
        assert_eq!(obj, "mini/2025-01/a.csv");
    }
    // 6 aggregated + 8 quarantined = 14 input rows.
    assert_eq!(6 + rejected.len(), 14);
}

#[test]
fn identity_codes_never_reach_outputs_or_logs() {
    let store = store_with_inbox();
    let out = run_mini(store.path(), &["--log-format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let input = std::fs::read_to_string(root().join("tests/data/mini/2025-01/a.csv")).unwrap();
    let codes: Vec<&str> = input
        .lines()
        .skip(1)
        .filter_map(|l| l.split(';').nth(1))
        .filter(|h| h.len() == 11)
        .collect();
    assert_eq!(codes.len(), 3);
    let mut checked = 0;
    for f in files_under(store.path()) {
        let rel = f.strip_prefix(store.path()).unwrap();
        if root().join("tests/data").join(rel).exists() {
            continue; // the inbox itself
        }
        let bytes = std::fs::read(&f).unwrap();
        for c in &codes {
            assert!(
                !bytes.windows(c.len()).any(|w| w == c.as_bytes()),
                "{c} found in {}",
                f.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} files written");
    for c in &codes {
        assert!(!text(&out.stderr).contains(c) && !text(&out.stdout).contains(c));
    }
}

/// `RUST_LOG=valtava::memory=debug` logs the process's resident memory beside the memory
/// pool's; without it nothing is sampled.
#[test]
fn the_memory_log_reports_resident_and_pool_memory() {
    let store = store_with_inbox();
    let records = |filter: &str| -> Vec<serde_json::Value> {
        let out = mini(store.path(), &["--log-format", "json"])
            .env("VALTAVA_MEMORY_LIMIT", "64M")
            .env("RUST_LOG", filter)
            .output()
            .unwrap();
        assert_succeeded(&out);
        text(&out.stderr)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["target"] == "valtava::memory")
            .collect()
    };
    let logged = records("info,valtava::memory=debug");
    assert!(!logged.is_empty(), "no memory record");
    for r in &logged {
        let f = &r["fields"];
        assert!(f["rss_mib"].as_u64().is_some_and(|m| m > 0), "{r}");
        assert!(f["pool_mib"].as_u64().is_some_and(|m| m <= 64), "{r}");
        assert!(f["top"].is_string(), "{r}");
    }
    assert!(records("info").is_empty());
}

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

#[test]
fn runs_refuse_bad_parameters_and_a_missing_key() {
    let store = store_with_inbox();
    let s = store.path().to_str().unwrap();
    let no_key = run(&[
        "run",
        "tests/lines/mini.yaml",
        "--store",
        s,
        "--param",
        "period=2025-01",
    ]);
    assert_eq!(no_key.status.code(), Some(1));
    assert!(
        text(&no_key.stderr).contains("R002"),
        "{}",
        text(&no_key.stderr)
    );
    for (param, needle) in [
        ("perod=2025-01", "did you mean `period`"),
        ("period=2025-13", "is not a month"),
        ("period=tammikuu", "YYYY-MM"),
    ] {
        let out = bin()
            .args([
                "run",
                "tests/lines/mini.yaml",
                "--store",
                s,
                "--param",
                param,
            ])
            .env("VALTAVA_PSEUDONYM_KEY", KEY)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{param}");
        let err = text(&out.stderr);
        assert!(
            err.contains("R001") && err.contains(needle),
            "{param}: {err}"
        );
    }
    let missing = bin()
        .args(["run", "tests/lines/mini.yaml", "--store", s])
        .env("VALTAVA_PSEUDONYM_KEY", KEY)
        .output()
        .unwrap();
    assert!(text(&missing.stderr).contains("parameter `period` is required"));
    let empty = bin()
        .args([
            "run",
            "tests/lines/mini.yaml",
            "--store",
            s,
            "--param",
            "period=2030-01",
        ])
        .env("VALTAVA_PSEUDONYM_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(empty.status.code(), Some(1));
    assert!(
        text(&empty.stderr).contains("R004"),
        "{}",
        text(&empty.stderr)
    );
    assert!(
        !store
            .path()
            .join("releases/mini/2030-01/latest.json")
            .exists()
    );
}

#[test]
fn source_override_reads_another_location() {
    let store = store_with_inbox();
    let other = store.path().join("muualla");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(
        root().join("tests/data/mini/2025-01/a.csv"),
        other.join("x.csv"),
    )
    .unwrap();
    std::fs::remove_dir_all(store.path().join("mini")).unwrap();
    let out = run_mini(store.path(), &["--source", "rivit=muualla/*.csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["steps"]["rivit"]["rows_in"], 14);
    let bad = run_mini(store.path(), &["--source", "rivi=muualla/*.csv"]);
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn too_many_rejects_fail_the_run_and_publish_nothing() {
    let store = store_with_inbox();
    let file = line_copy(
        store.path(),
        "tests/lines/mini.yaml",
        "strict.yaml",
        &[(
            "      input: rivit\n",
            "      input: rivit\n      max_reject_share: 0.1\n",
        )],
    );
    let out = bin()
        .args([
            "run",
            file.to_str().unwrap(),
            "--store",
            store.path().to_str().unwrap(),
            "--param",
            "period=2025-01",
        ])
        .env("VALTAVA_PSEUDONYM_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("R006") && err.contains("rejected 5 of 11"),
        "{err}"
    );
    assert!(
        !store
            .path()
            .join("releases/mini/2025-01/latest.json")
            .exists()
    );
    assert!(
        files_under(&store.path().join("releases")).is_empty(),
        "a failed run left release objects"
    );
    // The failed run is still reported.
    let reports: Vec<PathBuf> = files_under(&store.path().join("runs/mini"))
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains(".quality."))
        .collect();
    assert_eq!(reports.len(), 1);
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&reports[0]).unwrap()).unwrap();
    assert_eq!(r["status"], "failed");
    assert_eq!(r["error"]["code"], "R006");
}

#[test]
fn the_example_line_runs_on_the_shipped_data() {
    let store = tempfile::tempdir().unwrap();
    copy_dir(
        &root().join("examples/store/inbox"),
        &store.path().join("inbox"),
    );
    copy_dir(
        &root().join("examples/store/reference"),
        &store.path().join("reference"),
    );
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

#[test]
fn published_files_are_read_by_pyarrow_and_duckdb() {
    let store = store_with_inbox();
    let out = run_mini(store.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let release = latest_release(store.path(), "mini", "2025-01");
    let py = Command::new("python3")
        .arg(root().join("tests/read_release.py"))
        .arg(&release)
        .arg("mini_kuukausi")
        .output()
        .expect("python3 runs (tests/run-all.sh installs tests/requirements.txt)");
    assert!(
        py.status.success(),
        "pyarrow/duckdb could not read the release (pip install -r tests/requirements.txt): {}",
        text(&py.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(
        seen["columns"],
        serde_json::json!([
            "hyvinvointialue",
            "kuukausi",
            "rivit",
            "summa",
            "jakso",
            "status"
        ])
    );
    assert_eq!(seen["rows"], 6);
    assert_eq!(seen["compression"], "ZSTD");
    assert_eq!(seen["duckdb_parquet_rows"], 6);
    let rows = seen["pyarrow"].as_array().unwrap();
    let country = rows
        .iter()
        .find(|r| r["hyvinvointialue"] == "SSS" && r["kuukausi"] == "2025-01")
        .unwrap();
    assert_eq!(country["rivit"], 6);
    assert_eq!(country["summa"], 46);
    let suppressed = rows
        .iter()
        .find(|r| r["hyvinvointialue"] == "04" && r["kuukausi"] == "YHT")
        .unwrap();
    assert!(suppressed["rivit"].is_null());
    assert_eq!(suppressed["status"], "suppressed");
    // DuckDB reads the CSV to the same cells as the Parquet file.
    let csv = seen["duckdb_csv"].as_array().unwrap();
    assert_eq!(csv.len(), 6);
    assert_eq!(
        csv[4],
        serde_json::json!(["SSS", "2025-01", "6", "46", "2025-01", null])
    );
}

fn write_format_inputs(dir: &Path) {
    use std::sync::Arc;
    std::fs::create_dir_all(dir).unwrap();
    // windows-1252: ä is 0xE4, Ä is 0xC4.
    std::fs::write(
        dir.join("latin.csv"),
        b"nimi;n\r\nHyvink\xe4\xe4;1\r\n\xc4\xe4nekoski;2\r\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("a.ndjson"),
        "{\"nimi\": \"Hyvinkää\", \"n\": 3}\n{\"nimi\": \"Oulu\", \"n\": -1}\n{\"nimi\": \"rikki\"\n",
    )
    .unwrap();
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("n", arrow::datatypes::DataType::Int64, false),
        arrow::datatypes::Field::new("nimi", arrow::datatypes::DataType::Utf8, false),
    ]));
    let batch = arrow::record_batch::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(arrow::array::Int64Array::from(vec![4, 5])),
            Arc::new(arrow::array::StringArray::from(vec!["Oulu", "Hyvinkää"])),
        ],
    )
    .unwrap();
    let file = std::fs::File::create(dir.join("b.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn csv_ndjson_and_parquet_sources_and_a_step_read_twice() {
    let store = tempfile::tempdir().unwrap();
    write_format_inputs(&store.path().join("formats"));
    let out = run(&[
        "run",
        "tests/lines/formats.yaml",
        "--store",
        store.path().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = &report["steps"];
    assert_eq!(steps["latin"]["rows_out"], 2);
    assert_eq!(steps["json"]["rows_in"], 3);
    assert_eq!(steps["json"]["rows_quarantined"], 1);
    assert_eq!(steps["pq"]["rows_out"], 2);
    assert_eq!(steps["tarkistettu"]["rows_in"], 6);
    assert_eq!(steps["tarkistettu"]["rows_out"], 5);
    // Computed once, read by both aggregates in full.
    assert_eq!(steps["nimittain"]["rows_in"], 5);
    assert_eq!(steps["lahteittain"]["rows_in"], 5);
    let release = store.path().join(format!(
        "releases/formats/all/{}",
        report["run_id"].as_str().unwrap()
    ));
    assert_eq!(
        std::fs::read_to_string(release.join("nimet.csv")).unwrap(),
        "nimi;rivit;summa;puolikas\nHyvinkää;3;9;1,5\nOulu;1;4;2,0\nÄänekoski;1;2;1,0\n"
    );
    // Column descriptions travel in the Parquet file.
    let file = std::fs::File::open(release.join("nimet.parquet")).unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let field = reader.schema().field_with_name("rivit").unwrap().clone();
    assert_eq!(
        field.metadata().get("description").map(String::as_str),
        Some("Rivejä")
    );
    assert_eq!(
        field.metadata().get("description_en").map(String::as_str),
        Some("Rows")
    );
    assert_eq!(
        field.metadata().get("unit").map(String::as_str),
        Some("lkm")
    );
    assert_eq!(
        std::fs::read_to_string(release.join("lahteet.csv")).unwrap(),
        "lahde,rivit\nCSV,2\nNDJSON,1\nPARQUET,2\n"
    );
    // A URL location outside the store.
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::rename(
        store.path().join("formats/b.parquet"),
        elsewhere.path().join("c.parquet"),
    )
    .unwrap();
    let url = format!("pq=file://{}/*.parquet", elsewhere.path().display());
    let out = run(&[
        "run",
        "tests/lines/formats.yaml",
        "--store",
        store.path().to_str().unwrap(),
        "--source",
        &url,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["steps"]["pq"]["rows_out"], 2);
}

#[test]
fn damaged_line_files_never_crash_check() {
    // Every prefix of real line files, cut at many points, is either valid or reported.
    for line in [
        "lines/ensihoito.yaml",
        "tests/lines/mini.yaml",
        "tests/lines/formats.yaml",
    ] {
        let source = std::fs::read_to_string(root().join(line)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let step = (source.len() / 40).max(1);
        let cuts: Vec<usize> = (0..source.len())
            .step_by(step)
            .filter(|&i| source.is_char_boundary(i))
            .collect();
        for cut in cuts {
            let f = dir.path().join("cut.yaml");
            let mut text_cut = source[..cut].to_string();
            // Also damage indentation in the middle of the file.
            text_cut.push_str("\n  : ]\n");
            std::fs::write(&f, &text_cut).unwrap();
            let out = run(&["check", "--format", "json", f.to_str().unwrap()]);
            let code = out.status.code();
            assert!(
                code == Some(0) || code == Some(1),
                "{line} cut at {cut}: {code:?} {}",
                text(&out.stderr)
            );
            assert!(
                !text(&out.stderr).contains("panicked"),
                "{line} cut at {cut}"
            );
            if code == Some(1) {
                let diags: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                assert!(!diags.as_array().unwrap().is_empty());
            }
        }
    }
}

fn read_quarantine(dir: &Path) -> Vec<(u64, String, String, Option<String>)> {
    use arrow::array::{Array, AsArray};
    let mut out = Vec::new();
    for f in files_under(dir) {
        let file = std::fs::File::open(&f).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            let b = b.unwrap();
            let text = |c: &str| {
                arrow::compute::cast(
                    b.column_by_name(c).unwrap(),
                    &arrow::datatypes::DataType::Utf8,
                )
                .unwrap()
            };
            let rows = b
                .column_by_name("_row")
                .unwrap()
                .as_primitive::<arrow::datatypes::UInt64Type>()
                .clone();
            let (rules, reasons, hetu) = (
                text("_rules"),
                text("_reasons"),
                b.column_by_name("hetu").map(|_| text("hetu")),
            );
            for i in 0..b.num_rows() {
                let h = hetu.as_ref().and_then(|h| {
                    h.is_valid(i)
                        .then(|| h.as_string::<i32>().value(i).to_string())
                });
                out.push((
                    rows.value(i),
                    rules.as_string::<i32>().value(i).to_string(),
                    reasons.as_string::<i32>().value(i).to_string(),
                    h,
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_kind_of_bad_row_is_accounted_for() {
    let store = store_with_inbox();
    let out = bin()
        .args([
            "run",
            "tests/lines/rules.yaml",
            "--store",
            store.path().to_str().unwrap(),
            "--param",
            "period=2025-03",
            "--json",
        ])
        .env("VALTAVA_PSEUDONYM_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let input =
        std::fs::read_to_string(root().join("tests/data/saannot/2025-03/kaynnit.csv")).unwrap();
    let input_rows = input.lines().skip(1).count() as u64;

    // Published basis rows: the whole-country total of the published count.
    let release = latest_release(store.path(), "saannot", "2025-03");
    let csv = std::fs::read_to_string(release.join("maarat.csv")).unwrap();
    let basis: u64 = csv.lines().find(|l| l.starts_with("SSS,")).unwrap()[4..]
        .parse()
        .unwrap();
    let run_id = report["run_id"].as_str().unwrap();
    let quarantined = read_quarantine(
        &store
            .path()
            .join(format!("quarantine/saannot/2025-03/{run_id}")),
    );
    let filtered = report["steps"]["tarkistettu"]["rows_filtered"]
        .as_u64()
        .unwrap();
    assert_eq!(filtered, 1);
    assert_eq!(
        basis + quarantined.len() as u64 + filtered,
        input_rows,
        "{csv} {quarantined:?}"
    );
    assert_eq!(basis, 3);

    // Each bad row (line number in the file) with the rules it broke.
    let expected: Vec<(u64, &str)> = vec![
        (5, "id-uniikki"),
        (6, "hetu-oikea"),
        (7, "hetu-oikea"),
        (8, "kunta-tunnettu"),
        (9, "kunta-annettu"),
        (10, "tyyppi-sallittu"),
        (11, "arvo-rajoissa"),
        (12, "koodi-muoto"),
        (13, "ajat-jarjestyksessa"),
        (14, "yksikko-tunnettu"),
        (15, "alku-jaksolla"),
        (17, "parse"),
        (18, "type-arvo"),
        (19, "required-id"),
        (20, "hetu-oikea,kunta-tunnettu"),
    ];
    let got: Vec<(u64, &str)> = quarantined
        .iter()
        .map(|(r, ids, _, _)| (*r, ids.as_str()))
        .collect();
    assert_eq!(got, expected);
    for (row, _, reasons, hetu) in &quarantined {
        assert!(!reasons.is_empty(), "row {row} has no reason");
        if let Some(h) = hetu {
            assert_eq!(h.len(), 64, "row {row}: hetu not pseudonymised: {h}");
        }
    }
    let (_, _, two, _) = quarantined.iter().find(|q| q.0 == 20).unwrap();
    // Both reasons, neither quoting the row's values (municipality 999).
    assert!(
        two.contains("check character")
            && two.contains("code set `kunnat`")
            && !two.contains("999"),
        "{two}"
    );

    // Warnings are counted, rows kept; dataset checks pass.
    let v = &report["steps"]["tarkistettu"]["violations"];
    assert_eq!(v["arvo-ei-nolla"], 1);
    assert_eq!(v["hetu-oikea"], 3);
    assert!(
        v.get("riveja").is_none() && v.get("tuore").is_none() && v.get("hetu-puuttuu").is_none(),
        "{v}"
    );

    // The quality report: per rule, per category, per submitter; JSON and HTML.
    let qpath = report["quality"][0].as_str().unwrap();
    let q: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.path().join(qpath)).unwrap()).unwrap();
    let rule = |id: &str| {
        q["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(rule("hetu-oikea")["violations"], 3);
    assert_eq!(rule("hetu-oikea")["category"], "conformance");
    assert_eq!(rule("ajat-jarjestyksessa")["category"], "plausibility");
    assert_eq!(rule("kunta-annettu")["category"], "completeness");
    let share = rule("hetu-oikea")["share"].as_f64().unwrap();
    assert!((share - 3.0 / 15.0).abs() < 1e-9, "{share}");
    assert_eq!(rule("riveja")["dataset"]["passed"], true);
    let subs = &q["submitters"]["tarkistettu"];
    assert_eq!(subs["999"]["rows"], 2);
    assert_eq!(subs["999"]["rejected"], 2);
    assert_eq!(subs["999"]["violations"]["kunta-tunnettu"], 2);
    assert_eq!(subs["(tyhjä)"]["violations"]["kunta-annettu"], 1);
    let cats = &q["categories"];
    let total: u64 = q["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["violations"].as_u64().unwrap())
        .sum();
    assert_eq!(
        cats["conformance"].as_u64().unwrap()
            + cats["completeness"].as_u64().unwrap()
            + cats["plausibility"].as_u64().unwrap(),
        total
    );
    let html =
        std::fs::read_to_string(store.path().join(report["quality"][1].as_str().unwrap())).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    for id in ["id-uniikki", "yksikko-tunnettu", "tuore", "999"] {
        assert!(html.contains(id), "{id} missing from the HTML report");
    }
    assert!(
        !html.contains("<script") && !html.contains("http"),
        "the page must work offline"
    );
}

#[test]
fn a_fail_rule_stops_the_run_and_nothing_is_published() {
    let store = store_with_inbox();
    let file = line_copy(
        store.path(),
        "tests/lines/rules.yaml",
        "fail.yaml",
        &[(
            "{ id: koodi-muoto, regex",
            "{ id: koodi-muoto, severity: fail, regex",
        )],
    );
    let out = bin()
        .args([
            "run",
            file.to_str().unwrap(),
            "--store",
            store.path().to_str().unwrap(),
            "--param",
            "period=2025-03",
        ])
        .env("VALTAVA_PSEUDONYM_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        // The reason names the column and the pattern, never the value (`a01`).
        err.contains("R005")
            && err.contains("koodi-muoto")
            && err.contains("`koodi` does not match")
            && !err.contains("a01"),
        "{err}"
    );
    assert!(files_under(&store.path().join("releases")).is_empty());
}

fn hmac_hex(key: &str, value: &str) -> String {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn run_harmonise(store: &Path, key: &str) -> serde_json::Value {
    let out = bin()
        .args([
            "run",
            "tests/lines/harmonise.yaml",
            "--store",
            store.to_str().unwrap(),
            "--json",
        ])
        .env("VALTAVA_PSEUDONYM_KEY", key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn harmonisation_maps_derives_casts_and_pseudonymises() {
    let store = store_with_inbox();
    let report = run_harmonise(store.path(), KEY);
    let h = &report["steps"]["yhtenaistetty"];
    // Row 2 has `7,0`, which is not a decimal: quarantined with the reason.
    assert_eq!(h["rows_in"], 4);
    assert_eq!(h["rows_quarantined"], 1);
    assert_eq!(h["violations"]["cast-arvo"], 1);
    // How each passed row was mapped, by equivalence.
    assert_eq!(
        h["mappings"]["map-target"],
        serde_json::json!({"equal": 1, "wider": 1, "unmapped": 1})
    );
    assert_eq!(
        h["mappings"]["map-display"],
        serde_json::json!({"mapped": 2, "unmapped": 1})
    );
    assert_eq!(
        h["mappings"]["map-hyvinvointialue"],
        serde_json::json!({"mapped": 3})
    );
    // Versions of the code sets used.
    assert_eq!(report["codesets"]["rokotteet"]["version"], "1.0.0");
    assert_eq!(report["codesets"]["tilat"]["version"], "2");
    assert_eq!(report["codesets"]["luokat"]["rows"], 2);
    assert_eq!(
        report["codesets"]["kunnat"]["sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );

    // Worked by hand: 901 is county 01 until 2024 and 02 from 2025 (a merger); ages on the
    // event date; sex from the individual number; IFCC = (NGSP − 2.15) × 10.929.
    let csv = std::fs::read_to_string(
        latest_release(store.path(), "yhtenaistys", "all").join("rivit.csv"),
    )
    .unwrap();
    assert_eq!(
        csv,
        "id,hyvinvointialue,rokoteryhma,tila_nimi,ika,sukupuoli,syntymavuosi,ifcc\n\
         1,01,MPR,Aktiivinen,71,2,1952,47.5\n\
         3,02,,-1,,,,63.9\n\
         4,90,MPR,Aktiivinen,130,1,1895,31.1\n"
    );

    // The quarantined row carries the keyed pseudonym of its identity code, nothing else.
    let run_id = report["run_id"].as_str().unwrap();
    let q = read_quarantine(
        &store
            .path()
            .join(format!("quarantine/yhtenaistys/all/{run_id}")),
    );
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].1, "cast-arvo");
    assert!(
        q[0].2.contains("column `arvo`: not a decimal") && !q[0].2.contains("7,0"),
        "{}",
        q[0].2
    );
    let expected = hmac_hex(KEY, "010114A173M");
    assert_eq!(q[0].3.as_deref(), Some(expected.as_str()));

    // Stable under one key, unlinkable across keys.
    let again = run_harmonise(store.path(), KEY);
    let q2 = read_quarantine(&store.path().join(format!(
        "quarantine/yhtenaistys/all/{}",
        again["run_id"].as_str().unwrap()
    )));
    assert_eq!(q2[0].3, q[0].3);
    let other = run_harmonise(store.path(), "another-key-0123456789");
    let q3 = read_quarantine(&store.path().join(format!(
        "quarantine/yhtenaistys/all/{}",
        other["run_id"].as_str().unwrap()
    )));
    assert_ne!(q3[0].3, q[0].3);
    assert_eq!(
        q3[0].3.as_deref(),
        Some(hmac_hex("another-key-0123456789", "010114A173M").as_str())
    );
}

#[test]
fn pinned_code_sets_refuse_other_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("lines")).unwrap();
    copy_dir(&root().join("tests/codesets"), &dir.path().join("codesets"));
    let line = std::fs::read_to_string(root().join("tests/lines/harmonise.yaml"))
        .unwrap()
        .replace("version: \"1.0.0\"", "version: \"2.0.0\"")
        .replace(
            "{ path: ../codesets/kunnat_muutos.csv, key: kunta }",
            "{ path: ../codesets/kunnat_muutos.csv, key: kunta, sha256: \"00\" }",
        );
    let file = dir.path().join("lines/pinned.yaml");
    std::fs::write(&file, line).unwrap();
    let out = run(&["check", "--format", "json", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let diags: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let msgs: Vec<String> = diags
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{} {}", d["code"], d["message"]))
        .collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs.iter()
            .any(|m| m.contains("V305") && m.contains("has changed")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("V305") && m.contains("is version 1.0.0, not 2.0.0")),
        "{msgs:?}"
    );
}

#[test]
fn the_key_never_appears_in_outputs_or_logs() {
    let store = store_with_inbox();
    let out = bin()
        .args([
            "run",
            "tests/lines/harmonise.yaml",
            "--store",
            store.path().to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .env("VALTAVA_PSEUDONYM_KEY", KEY)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains(KEY) && !text(&out.stdout).contains(KEY));
    let input = std::fs::read_to_string(root().join("tests/data/yhtenaistys/a.csv")).unwrap();
    let codes: Vec<&str> = input
        .lines()
        .skip(1)
        .filter_map(|l| l.split(';').nth(1))
        .filter(|h| h.len() == 11)
        .collect();
    assert_eq!(codes.len(), 3);
    for f in files_under(store.path()) {
        if root()
            .join("tests/data")
            .join(f.strip_prefix(store.path()).unwrap())
            .exists()
        {
            continue;
        }
        let bytes = std::fs::read(&f).unwrap();
        for needle in codes.iter().copied().chain([KEY]) {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} in {}",
                f.display()
            );
        }
    }
    for c in &codes {
        assert!(!text(&out.stderr).contains(c));
    }
}

#[test]
fn a_line_that_pseudonymises_refuses_to_run_without_a_key() {
    let store = store_with_inbox();
    let out = run(&[
        "run",
        "tests/lines/harmonise.yaml",
        "--store",
        store.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("R002"));
    assert!(
        files_under(&store.path().join("runs")).is_empty(),
        "nothing may run without the key"
    );
    let short = bin()
        .args([
            "run",
            "tests/lines/harmonise.yaml",
            "--store",
            store.path().to_str().unwrap(),
        ])
        .env("VALTAVA_PSEUDONYM_KEY", "short")
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(2));
}

fn attack(csv: &Path, count: &str, min: &str, dims: &[&str]) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(root().join("tests/attack_suppression.py"))
        .arg(csv)
        .arg(count)
        .arg(min)
        .args(dims)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn no_suppressed_cell_can_be_recovered_from_published_tables() {
    // The adversary is not blind: on a table with primary suppression only, it recovers.
    let dir = tempfile::tempdir().unwrap();
    let weak = dir.path().join("weak.csv");
    std::fs::write(
        &weak,
        "alue,luokka,n\n01,A,\n01,B,10\n01,YHT,12\n02,A,7\n02,B,9\n02,YHT,16\nSSS,A,9\nSSS,B,19\nSSS,YHT,28\n",
    )
    .unwrap();
    let found = attack(&weak, "n", "5", &["alue", "luokka"]);
    assert_eq!(found["recovered"], serde_json::json!([["01", "A", "2"]]));
    let ones = dir.path().join("ones.csv");
    std::fs::write(&ones, "alue,n\n01,\n02,\n03,30\nSSS,32\n").unwrap();
    let found = attack(&ones, "n", "5", &["alue"]);
    assert_eq!(found["recovered"].as_array().unwrap().len(), 2, "{found}");

    // What the engine publishes withstands it.
    let store = tempfile::tempdir().unwrap();
    copy_dir(
        &root().join("examples/store/inbox"),
        &store.path().join("inbox"),
    );
    copy_dir(
        &root().join("examples/store/reference"),
        &store.path().join("reference"),
    );
    // Åland (91): eight missions of two patients — enough missions, too few persons.
    let aland: String = (0..8)
        .map(|i| {
            let hetu = if i % 2 == 0 {
                "070790-563J"
            } else {
                "170506A5421"
            };
            format!(
                "TA{i:03};{hetu};478;2025-03-1{}T10:00:00;2025-03-1{}T10:20:00;D;703;4;1\n",
                i % 9,
                i % 9
            )
        })
        .collect();
    std::fs::write(
        store.path().join("inbox/ensihoito/2025-03/ahvenanmaa.csv"),
        format!("tehtava_id;hetu;kunta;halytys_aika;kohteessa_aika;kiireellisyys;tehtavakoodi;riskialue;kuljetettu\n{aland}"),
    )
    .unwrap();
    let out = run(&[
        "run",
        "lines/ensihoito.yaml",
        "--param",
        "period=2025-03",
        "--store",
        store.path().to_str().unwrap(),
        "--pseudonym-key-file",
        "examples/demo-pseudonym.key",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let csv = latest_release(store.path(), "ensihoito", "2025-03").join("ensihoito_kuukausi.csv");
    // Every deciding count: the missions and the distinct patients.
    let result = attack(
        &csv,
        "tehtavat,potilaat",
        "5",
        &["hyvinvointialue", "kuukausi", "kiireellisyys"],
    );
    assert!(result["suppressed"].as_u64().unwrap() > 5, "{result}");
    assert_eq!(result["recovered"], serde_json::json!([]), "{result}");
    assert_eq!(result["bounded_small"], serde_json::json!([]), "{result}");
    assert_eq!(result["published_small"], serde_json::json!([]), "{result}");
    // The Åland cells were decided by their two patients (eight missions would pass).
    let published = std::fs::read_to_string(&csv).unwrap();
    let aland_rows: Vec<&str> = published.lines().filter(|l| l.starts_with("91,")).collect();
    assert!(!aland_rows.is_empty(), "{published}");
    assert!(
        aland_rows.iter().all(|l| l.ends_with(",suppressed")),
        "{aland_rows:?}"
    );
    // Every measure of a suppressed cell is empty.
    let text_csv = std::fs::read_to_string(&csv).unwrap();
    for line in text_csv.lines().filter(|l| l.ends_with(",suppressed")) {
        assert!(line.split(',').skip(3).take(5).all(str::is_empty), "{line}");
    }

    let mini = store_with_inbox();
    assert_eq!(run_mini(mini.path(), &[]).status.code(), Some(0));
    let csv = latest_release(mini.path(), "mini", "2025-01").join("mini_kuukausi.csv");
    let result = attack(&csv, "rivit", "3", &["hyvinvointialue", "kuukausi"]);
    assert_eq!(result["recovered"], serde_json::json!([]), "{result}");
}

#[test]
fn json_stat_passes_the_schema_and_reads_in_pyjstat() {
    let store = tempfile::tempdir().unwrap();
    copy_dir(
        &root().join("examples/store/inbox"),
        &store.path().join("inbox"),
    );
    copy_dir(
        &root().join("examples/store/reference"),
        &store.path().join("reference"),
    );
    let out = run(&[
        "run",
        "lines/ensihoito.yaml",
        "--param",
        "period=2025-03",
        "--store",
        store.path().to_str().unwrap(),
        "--pseudonym-key-file",
        "examples/demo-pseudonym.key",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let release = latest_release(store.path(), "ensihoito", "2025-03");
    let py = Command::new("python3")
        .arg(root().join("tests/read_jsonstat.py"))
        .arg(release.join("ensihoito_kuukausi.jsonstat.json"))
        .arg(root().join("../shared/conformance/jsonstat/schemas"))
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", text(&py.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(seen["schema_errors"], serde_json::json!([]));
    assert_eq!(
        seen["id_columns"],
        serde_json::json!([
            "hyvinvointialue",
            "kuukausi",
            "kiireellisyys",
            "tiedot",
            "value"
        ])
    );
    // The CSV and the JSON-stat file say the same, cell by cell.
    let csv = std::fs::read_to_string(release.join("ensihoito_kuukausi.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let records = seen["records"].as_array().unwrap();
    let mut compared = 0;
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        for (i, measure) in header.iter().enumerate().skip(3).take(5) {
            let r = records
                .iter()
                .find(|r| {
                    r["hyvinvointialue"] == cells[0]
                        && r["kuukausi"] == cells[1]
                        && r["kiireellisyys"] == cells[2]
                        && r["tiedot"] == *measure
                })
                .unwrap_or_else(|| panic!("{line} {measure}"));
            match cells[i] {
                "" => assert!(r["value"].is_null(), "{line} {measure}"),
                v => assert_eq!(
                    r["value"].as_f64().unwrap(),
                    v.parse::<f64>().unwrap(),
                    "{line} {measure}"
                ),
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 60 * 5);
    // Rates use the population of the area; the whole country's is the sum of the areas.
    let population: std::collections::BTreeMap<String, f64> = std::fs::read_to_string(
        root().join("examples/store/reference/vaesto/vaesto_synthetic.csv"),
    )
    .unwrap()
    .lines()
    .skip(1)
    .map(|l| {
        let p: Vec<&str> = l.split(';').collect();
        (p[0].to_string(), p[2].parse().unwrap())
    })
    .collect();
    let total: f64 = population.values().sum();
    let value = |area: &str, m: &str| {
        records
            .iter()
            .find(|r| {
                r["hyvinvointialue"] == area
                    && r["kuukausi"] == "YHT"
                    && r["kiireellisyys"] == "YHT"
                    && r["tiedot"] == m
            })
            .unwrap()["value"]
            .as_f64()
    };
    let n = value("SSS", "tehtavat").unwrap();
    assert_eq!(n, 182.0);
    assert_eq!(
        value("SSS", "tehtavat_per_1000"),
        Some((10000.0 * n / total).round() / 10.0)
    );
    let hki = value("90", "tehtavat").unwrap();
    assert_eq!(
        value("90", "tehtavat_per_1000"),
        Some((10000.0 * hki / population["90"]).round() / 10.0)
    );
    // Labels from the code set, in three languages.
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(release.join("ensihoito_kuukausi.jsonstat.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        doc["dimension"]["hyvinvointialue"]["category"]["label"]["90"],
        "Helsingin kaupunki"
    );
    assert_eq!(
        doc["extension"]["labels"]["sv"]["hyvinvointialue"]["category"]["90"],
        "Helsingfors stad"
    );
    assert_eq!(
        doc["extension"]["labels"]["en"]["hyvinvointialue"]["category"]["SSS"],
        "Whole country"
    );
    let status = doc["status"].as_object().unwrap();
    assert!(status.values().all(|s| s == "suppressed") && !status.is_empty());
}

#[test]
fn releases_and_show_read_back_what_was_published() {
    let store = store_with_inbox();
    let s = store.path().to_str().unwrap();
    let empty = run(&["releases", "mini", "--store", s]);
    assert_eq!(empty.status.code(), Some(1));
    assert!(text(&empty.stderr).contains("no releases"));
    let a: serde_json::Value = serde_json::from_slice(&run_mini(store.path(), &[]).stdout).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let b: serde_json::Value = serde_json::from_slice(&run_mini(store.path(), &[]).stdout).unwrap();
    let out = run(&["releases", "mini", "--store", s, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["run_id"], a["run_id"]);
    assert_eq!(list[0]["current"], false);
    assert_eq!(list[1]["run_id"], b["run_id"]);
    assert_eq!(list[1]["current"], true);
    assert_eq!(
        list[1]["datasets"],
        serde_json::json!([["mini_kuukausi", 6]])
    );
    let table = text(&run(&["releases", "mini", "--store", s]).stdout);
    assert!(
        table.contains(b["run_id"].as_str().unwrap()) && table.contains('*'),
        "{table}"
    );

    let shown = run(&["show", "mini_kuukausi", "--store", s]);
    assert_eq!(shown.status.code(), Some(0), "{}", text(&shown.stderr));
    let t = text(&shown.stdout);
    assert!(t.contains("mini_kuukausi · period 2025-01 · 6 rows"), "{t}");
    assert!(t.contains(b["run_id"].as_str().unwrap()), "{t}");
    assert!(
        t.contains("| SSS             | 2025-01  | 6     | 46    |"),
        "{t}"
    );
    assert!(t.contains("suppressed"), "{t}");
    let limited = text(&run(&["show", "mini_kuukausi", "--store", s, "--limit", "2"]).stdout);
    assert!(limited.contains("… 4 more rows"), "{limited}");
    let missing = run(&["show", "ei_ole", "--store", s]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no published dataset `ei_ole`"));
}

#[test]
fn spreadsheets_and_external_parser_programs() {
    let store = store_with_inbox();
    let out = bin()
        .args([
            "run",
            "tests/lines/plugins.yaml",
            "--store",
            store.path().to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // b.txt makes the program fail: the whole object is quarantined with its message.
    assert_eq!(report["steps"]["yksikot"]["objects"], 2);
    assert_eq!(report["steps"]["yksikot"]["rows_out"], 3);
    assert_eq!(report["steps"]["yksikot"]["rows_quarantined"], 1);
    let q = read_quarantine(&store.path().join(format!(
        "quarantine/liitannaiset/all/{}",
        report["run_id"].as_str().unwrap()
    )));
    let object_reject = q
        .iter()
        .find(|r| r.0 == 0)
        .expect("the failed object is quarantined");
    // The program's message may quote the data: it goes to the log, not into the reason.
    assert!(
        object_reject.2.contains("exited with")
            && !object_reject.2.contains("line 2: expected 15 characters"),
        "{q:?}"
    );
    assert!(
        text(&out.stderr).contains("line 2: expected 15 characters, found 5"),
        "{}",
        text(&out.stderr)
    );
    // The spreadsheet: three data rows, one spreadsheet error at row 7.
    assert_eq!(report["steps"]["talous"]["rows_out"], 3);
    assert_eq!(report["steps"]["talous"]["rows_quarantined"], 1);
    assert!(
        q.iter().any(|r| r.0 == 7 && r.2.contains("#DIV/0!")),
        "{q:?}"
    );
    let release = store.path().join(format!(
        "releases/liitannaiset/all/{}",
        report["run_id"].as_str().unwrap()
    ));
    assert_eq!(
        std::fs::read_to_string(release.join("yksikot.csv")).unwrap(),
        "kunta,yksikot,asiakkaat\n091,1,12\n092,1,8\n837,1,21\nSSS,3,41\n"
    );
    assert_eq!(
        std::fs::read_to_string(release.join("talous.csv")).unwrap(),
        "tili,rivit,euroa\n3000,1,1250000.5\n3100,1,42.0\n4000,1,\n"
    );
}

#[test]
fn fhir_bulk_ndjson_and_bundles_through_view_definitions() {
    let shared = root().join("../shared/data").canonicalize().unwrap();
    let store = tempfile::tempdir().unwrap();
    let immunizations = format!(
        "rokotukset=file://{}/fhir-bulk/10-patients/Immunization.*.ndjson",
        shared.display()
    );
    let observations = format!(
        "havainnot=file://{}/fhir-fi-examples/*.json",
        shared.display()
    );
    let out = run(&[
        "run",
        "tests/lines/fhir.yaml",
        "--store",
        store.path().to_str().unwrap(),
        "--source",
        &immunizations,
        "--source",
        &observations,
        "--json",
    ]);
    // The line has a personal column, so it needs a key.
    assert_eq!(out.status.code(), Some(1));
    let out = bin()
        .args([
            "run",
            "tests/lines/fhir.yaml",
            "--store",
            store.path().to_str().unwrap(),
            "--source",
            &immunizations,
            "--source",
            &observations,
            "--json",
        ])
        .env("VALTAVA_PSEUDONYM_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // Independently: count immunizations by status and CVX code straight from the JSON.
    let mut expected: std::collections::BTreeMap<
        (String, String),
        (u64, std::collections::BTreeSet<String>),
    > = Default::default();
    let ndjson =
        std::fs::read_to_string(shared.join("fhir-bulk/10-patients/Immunization.000.ndjson"))
            .unwrap();
    for line in ndjson.lines().filter(|l| !l.trim().is_empty()) {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        for c in r["vaccineCode"]["coding"].as_array().unwrap() {
            if c["system"] == "http://hl7.org/fhir/sid/cvx" {
                let e = expected
                    .entry((
                        r["status"].as_str().unwrap().to_string(),
                        c["code"].as_str().unwrap().to_string(),
                    ))
                    .or_default();
                e.0 += 1;
                e.1.insert(r["patient"]["reference"].as_str().unwrap().to_string());
            }
        }
    }
    let release = store.path().join(format!(
        "releases/fhir_testi/all/{}",
        report["run_id"].as_str().unwrap()
    ));
    let csv = std::fs::read_to_string(release.join("rokotukset.csv")).unwrap();
    let mut got = std::collections::BTreeMap::new();
    for l in csv.lines().skip(1) {
        let p: Vec<&str> = l.split(',').collect();
        got.insert(
            (p[0].to_string(), p[1].to_string()),
            (p[2].parse::<u64>().unwrap(), p[3].parse::<usize>().unwrap()),
        );
    }
    let want: std::collections::BTreeMap<(String, String), (u64, usize)> = expected
        .into_iter()
        .map(|(k, (n, p))| (k, (n, p.len())))
        .collect();
    assert!(want.len() > 3, "{want:?}");
    assert_eq!(got, want);

    // Observations from single resources and from Bundles' entries.
    let mut observations = 0u64;
    for f in std::fs::read_dir(shared.join("fhir-fi-examples")).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        if doc["resourceType"] == "Observation" {
            observations += 1;
        }
        for e in doc["entry"].as_array().into_iter().flatten() {
            if e["resource"]["resourceType"] == "Observation" {
                observations += 1;
            }
        }
    }
    assert!(observations > 100);
    assert_eq!(report["steps"]["havainnot"]["rows_out"], observations);
    let csv = std::fs::read_to_string(release.join("havainnot.csv")).unwrap();
    let total: u64 = csv
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, observations);
}

/// Runs a shipped line on the shipped example data and compares every published cell with
/// an independent computation (tests/independent.py).
fn compare_with_independent(line: &str, period: &str, dims: usize) {
    let store = tempfile::tempdir().unwrap();
    copy_dir(
        &root().join("examples/store/inbox"),
        &store.path().join("inbox"),
    );
    copy_dir(
        &root().join("examples/store/reference"),
        &store.path().join("reference"),
    );
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

#[test]
fn plan_shows_schemas_rules_and_data_without_running() {
    let store = store_with_inbox();
    let out = run(&[
        "plan",
        "tests/lines/mini.yaml",
        "--store",
        store.path().to_str().unwrap(),
        "--param",
        "period=2025-01",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let steps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rivit = &steps[0];
    assert_eq!(rivit["name"], "rivit");
    assert_eq!(rivit["data"]["objects"], 1);
    assert_eq!(rivit["data"]["rows"], 14);
    let hetu = rivit["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "hetu")
        .unwrap();
    assert_eq!(hetu["personal"], true);
    let pvm = rivit["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "pvm")
        .unwrap();
    assert_eq!(pvm["type"], "date");
    let validate = steps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "tarkistettu")
        .unwrap();
    assert!(
        validate["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "hetu-oikea (reject)")
    );
    // Nothing was run.
    assert!(!store.path().join("runs").exists() && !store.path().join("releases").exists());
    let a = run(&["plan", "lines/ensihoito.yaml"]);
    let b = run(&["plan", "lines/ensihoito.yaml"]);
    assert_eq!(a.stdout, b.stdout);
    assert!(text(&a.stdout).contains("tavoittamisaika_mediaani"));
}

#[test]
fn diff_classifies_changes_and_names_the_datasets_they_affect() {
    let dir = tempfile::tempdir().unwrap();
    let old = std::fs::read_to_string(root().join("tests/lines/mini.yaml")).unwrap();
    let new = old
        .replace(
            "        - { id: hetu-oikea, hetu: hetu }\n",
            "        - { id: hetu-oikea, hetu: hetu, temporary: false }\n",
        )
        .replace(
            "        - { id: arvo-positiivinen, expr: \"arvo >= 0\" }\n",
            "",
        )
        .replace(
            "        summa: sum(arvo)\n",
            "        summa: sum(arvo)\n        suurin: max(arvo)\n",
        )
        .replace("owner: THL\n", "owner: THL\nschedule: \"0 6 1 * *\"\n")
        .replace(
            "        kuukausi: \"to_char(pvm, '%Y-%m')\"",
            "        kuukausi: \"to_char(pvm, '%Y-%m-01')\"",
        );
    let (a, b) = (dir.path().join("old.yaml"), dir.path().join("new.yaml"));
    std::fs::write(&a, &old).unwrap();
    std::fs::write(&b, &new).unwrap();
    let out = run(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let md = text(&out.stdout);
    for row in [
        "| `(line)` | schedule | `schedule`: nothing → 0 6 1 * * |  |",
        "| `tarkistettu` | rule | rule `arvo-positiivinen` removed | `mini_kuukausi` |",
        "| `tarkistettu` | rule | rule `hetu-oikea` changed | `mini_kuukausi` |",
        "| `summat` | output schema | `aggregate.measures.suurin` added: max(arvo) | `mini_kuukausi` |",
        "| `yhtenaistetty` | logic | `harmonise.derive.kuukausi`: to_char(pvm, '%Y-%m') → to_char(pvm, '%Y-%m-01') | `mini_kuukausi` |",
    ] {
        assert!(md.contains(row), "missing {row}\n{md}");
    }
    assert!(
        md.starts_with("### `mini`: 5 change(s); published datasets affected: `mini_kuukausi`"),
        "{md}"
    );
    assert_eq!(
        run(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]).stdout,
        out.stdout
    );
    let same = run(&["diff", a.to_str().unwrap(), a.to_str().unwrap()]);
    assert!(text(&same.stdout).contains("no changes that matter"));
    // Against git: the committed line files equal the working tree in a clean checkout.
    let git = run(&["diff", "--git", "HEAD", "tests/lines/mini.yaml"]);
    assert_eq!(git.status.code(), Some(0), "{}", text(&git.stderr));
    assert!(
        text(&git.stdout).contains("### `mini`"),
        "{}",
        text(&git.stdout)
    );
    assert_eq!(run(&["diff", a.to_str().unwrap()]).status.code(), Some(2));
}

fn validate_openlineage(files: &[PathBuf]) -> Vec<String> {
    let out = Command::new("python3")
        .arg(root().join("tests/validate_openlineage.py"))
        .arg(root().join("../shared/conformance/openlineage/spec"))
        .args(files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn runs_emit_openlineage_events_that_pass_the_specification() {
    let store = store_with_inbox();
    let out = run_mini(store.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dir = store.path().join(format!(
        "lineage/mini/{}",
        report["run_id"].as_str().unwrap()
    ));
    let (start, end) = (dir.join("1-start.json"), dir.join("2-complete.json"));
    assert_eq!(
        validate_openlineage(&[start.clone(), end.clone()]),
        Vec::<String>::new()
    );
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&start).unwrap()).unwrap();
    let e: serde_json::Value = serde_json::from_slice(&std::fs::read(&end).unwrap()).unwrap();
    assert_eq!(s["eventType"], "START");
    assert_eq!(e["eventType"], "COMPLETE");
    assert_eq!(s["run"]["runId"], e["run"]["runId"]);
    assert_eq!(e["job"]["name"], "mini");
    assert_eq!(
        e["inputs"][0]["inputFacets"]["dataQualityMetrics"]["rowCount"],
        14
    );
    let assertions = e["inputs"][0]["inputFacets"]["dataQualityAssertions"]["assertions"]
        .as_array()
        .unwrap();
    assert!(
        assertions
            .iter()
            .any(|a| a["assertion"] == "hetu-oikea" && a["success"] == false)
    );
    let lineage = &e["outputs"][0]["facets"]["columnLineage"]["fields"];
    let fields = |c: &str| -> Vec<String> {
        lineage[c]["inputFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(fields("summa"), vec!["arvo"]);
    assert_eq!(fields("hyvinvointialue"), vec!["kunta", "pvm"]);

    // A broken event does not pass: the validator can fail.
    let mut broken = e.clone();
    broken["eventType"] = serde_json::json!("SOMETIMES");
    broken["run"]["runId"] = serde_json::json!(42);
    let bad = store.path().join("bad.json");
    std::fs::write(&bad, serde_json::to_vec(&broken).unwrap()).unwrap();
    assert!(!validate_openlineage(&[bad]).is_empty());

    // A failed run ends with FAIL and its error message.
    let file = line_copy(
        store.path(),
        "tests/lines/mini.yaml",
        "strict.yaml",
        &[(
            "      input: rivit\n",
            "      input: rivit\n      max_reject_share: 0.1\n",
        )],
    );
    let failed = bin()
        .args([
            "run",
            file.to_str().unwrap(),
            "--store",
            store.path().to_str().unwrap(),
            "--param",
            "period=2025-01",
            "--json",
        ])
        .env("VALTAVA_PSEUDONYM_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_slice(&failed.stdout).unwrap();
    let fail = store.path().join(format!(
        "lineage/mini/{}/2-fail.json",
        r["run_id"].as_str().unwrap()
    ));
    assert_eq!(
        validate_openlineage(std::slice::from_ref(&fail)),
        Vec::<String>::new()
    );
    let f: serde_json::Value = serde_json::from_slice(&std::fs::read(&fail).unwrap()).unwrap();
    assert_eq!(f["eventType"], "FAIL");
    assert!(
        f["run"]["facets"]["errorMessage"]["message"]
            .as_str()
            .unwrap()
            .contains("R006")
    );
}

#[test]
fn catalog_describes_every_line_dataset_and_column() {
    let out_a = tempfile::tempdir().unwrap();
    let out_b = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = std::fs::read_dir(root().join("lines"))
        .unwrap()
        .map(|e| format!("lines/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    lines.sort();
    for out in [&out_a, &out_b] {
        let mut args = vec!["catalog".to_string()];
        args.extend(lines.iter().cloned());
        args.extend([
            "--out".to_string(),
            out.path().to_str().unwrap().to_string(),
        ]);
        let r = bin().args(&args).output().unwrap();
        assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    }
    let a = std::fs::read(out_a.path().join("catalog.json")).unwrap();
    assert_eq!(
        a,
        std::fs::read(out_b.path().join("catalog.json")).unwrap(),
        "the catalog is not deterministic"
    );
    let c: serde_json::Value = serde_json::from_slice(&a).unwrap();
    let names: Vec<&str> = c["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "diabetes",
            "ensihoito",
            "henkilostomitoitus",
            "hoitoonpaasy",
            "rokotukset"
        ]
    );
    for l in c["lines"].as_array().unwrap() {
        for key in ["owner", "contact", "legal_basis", "schedule", "purpose"] {
            assert!(!l[key].is_null(), "{} lacks {key}", l["line"]);
        }
        assert!(
            l["title"]["sv"].is_string() && l["title"]["en"].is_string(),
            "{}",
            l["line"]
        );
        assert!(!l["codesets"].as_array().unwrap().is_empty());
        for d in l["datasets"].as_array().unwrap() {
            for col in d["columns"].as_array().unwrap() {
                if col["name"] != "status" {
                    assert!(
                        col["description"].is_string() || col["description"].is_object(),
                        "{} {} has no description",
                        d["dataset"],
                        col["name"]
                    );
                }
            }
        }
    }
    let ensihoito = c["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["line"] == "ensihoito")
        .unwrap();
    let columns = ensihoito["datasets"][0]["columns"].as_array().unwrap();
    let col = |n: &str| columns.iter().find(|c| c["name"] == n).unwrap();
    assert_eq!(
        col("tavoittamisaika_mediaani")["lineage"],
        serde_json::json!(["tehtavat.halytys_aika", "tehtavat.kohteessa_aika"])
    );
    assert_eq!(
        col("tehtavat_per_1000")["lineage"],
        serde_json::json!(["vaesto.vaesto"])
    );
    assert_eq!(col("tavoittamisaika_mediaani")["unit"], "min");
    assert!(
        ensihoito["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == "hetu-oikea" && r["category"] == "conformance")
    );
    let html = std::fs::read_to_string(out_a.path().join("index.html")).unwrap();
    for n in &names {
        assert!(html.contains(&format!("id=\"{n}\"")), "{n}");
    }
    assert!(
        html.contains("ensihoito_kuukausi")
            && html.contains("552/2019")
            && !html.contains("<script")
    );
}

/// A code set's validity window checked against timestamps: its last day lasts until the
/// following midnight (`tests/lines/tests/voimassaolo.test.yaml`).
#[test]
fn code_set_windows_against_timestamps_end_at_midnight() {
    let out = run(&["test", "tests/lines/tests/voimassaolo.test.yaml"]);
    assert_succeeded(&out);
    assert!(text(&out.stdout).contains("1 passed, 0 failed"));
}

/// The command exited 0 (else its output is shown).
fn assert_succeeded(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn line_tests_run_from_yaml_and_report_junit() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let out = run(&[
        "test",
        "lines/tests/ensihoito.test.yaml",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_succeeded(&out);
    assert!(text(&out.stdout).contains("5 passed, 0 failed"));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuite name=\"ensihoito\" tests=\"5\" failures=\"0\""),
        "{xml}"
    );
    // A test that expects the wrong thing fails, with the difference in the report.
    let wrong = std::fs::read_to_string(root().join("lines/tests/ensihoito.test.yaml"))
        .unwrap()
        .replace(
            "line: ../ensihoito.yaml",
            &format!("line: {}", root().join("lines/ensihoito.yaml").display()),
        )
        .replace("tavoittamisaika_min: \"9\"", "tavoittamisaika_min: \"10\"");
    let file = dir.path().join("wrong.test.yaml");
    std::fs::write(&file, wrong).unwrap();
    let out = run(&[
        "test",
        file.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("4 passed, 1 failed"),
        "{}",
        text(&out.stdout)
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("failures=\"1\"") && xml.contains("tavoittamisaika_min=10"),
        "{xml}"
    );
}

#[test]
fn fmt_makes_line_files_canonical_and_keeps_their_meaning() {
    // The shipped files are formatted.
    let mut args = vec!["fmt".to_string(), "--check".to_string()];
    for dir in ["lines", "tests/lines"] {
        let mut files: Vec<String> = std::fs::read_dir(root().join(dir))
            .unwrap()
            .map(|e| format!("{dir}/{}", e.unwrap().file_name().to_string_lossy()))
            .filter(|p| p.ends_with(".yaml"))
            .collect();
        files.sort();
        args.extend(files);
    }
    let out = bin().args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    // A copy with trailing spaces, CRLF line ends, stray blank lines and the schema comment
    // moved down is put back.
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(root().join("lines/hoitoonpaasy.yaml")).unwrap();
    let mut lines: Vec<&str> = original.lines().collect();
    let schema = lines.remove(0);
    lines.insert(2, schema);
    let messy: String = lines
        .iter()
        .map(|l| {
            if l.is_empty() {
                "\r\n\r\n\r\n".to_string()
            } else {
                format!("{l}   \r\n")
            }
        })
        .collect();
    let shared = root().join("../shared").canonicalize().unwrap();
    let fix_paths = |s: &str| s.replace("../../shared", shared.to_str().unwrap());
    let file = dir.path().join("messy.yaml");
    std::fs::write(&file, fix_paths(&messy)).unwrap();
    let f = file.to_str().unwrap();
    assert_eq!(run(&["fmt", "--check", f]).status.code(), Some(1));
    assert_eq!(run(&["fmt", f]).status.code(), Some(0));
    let once = std::fs::read_to_string(&file).unwrap();
    assert_eq!(once, fix_paths(&original));
    assert_eq!(run(&["fmt", "--check", f]).status.code(), Some(0));
    assert_eq!(run(&["check", f]).status.code(), Some(0));
    // A file that does not parse is left alone.
    std::fs::write(&file, "line: [\n").unwrap();
    assert_eq!(run(&["fmt", f]).status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "line: [\n");
}

#[test]
fn lineage_events_are_sent_to_an_http_endpoint() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let collector = std::thread::spawn(move || {
        let mut received = Vec::new();
        for _ in 0..2 {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            // Read the head, then as many body bytes as Content-Length says.
            loop {
                let n = s.read(&mut chunk).unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(i) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= i + 4 + len || n == 0 {
                        received.push(text);
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            s.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
        }
        received
    });
    let store = store_with_inbox();
    let url = format!("http://127.0.0.1:{port}/api/v1/lineage");
    let out = run_mini(store.path(), &["--lineage-url", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let received = collector.join().unwrap();
    assert_eq!(received.len(), 2);
    assert!(
        received[0].starts_with("POST /api/v1/lineage HTTP/1.1")
            && received[0].contains("\"eventType\":\"START\"")
    );
    assert!(received[1].contains("\"eventType\":\"COMPLETE\""));
    // An endpoint that is down does not fail the run.
    let out = run_mini(
        store.path(),
        &["--lineage-url", "http://127.0.0.1:9/api/v1/lineage"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot send the lineage"));
}

#[test]
fn plan_counts_parquet_rows_exactly_from_footers() {
    let store = tempfile::tempdir().unwrap();
    write_format_inputs(&store.path().join("formats"));
    let out = run(&[
        "plan",
        "tests/lines/formats.yaml",
        "--store",
        store.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let steps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pq = steps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "pq")
        .unwrap();
    assert_eq!(pq["data"]["rows"], 2);
    assert_eq!(pq["data"]["exact"], true);
    assert_eq!(pq["data"]["objects"], 1);
    assert!(pq["data"]["bytes"].as_u64().unwrap() > 0);
}

/// The redaction policy against a hostile submitter: identity codes in every place a text
/// could pick them up — a CSV without its header row, every rule kind on `hetu` (and a
/// `map` over it), a code typed into a free-text column and into the file name, a failing
/// external parser that prints the code on its standard error, a failing `fail` rule — never
/// reach a file the run writes outside the inbox, the log or standard output.
#[test]
fn hostile_submissions_leave_no_identity_code_in_any_text() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let kunnat = root()
        .join("../shared/reference/kunta_hyvinvointialue_2023.csv")
        .canonicalize()
        .unwrap()
        .display()
        .to_string();
    // Valid, invalid-check-character and temporary codes; every one must stay out of texts.
    let codes = [
        "131052-308T",
        "010101A123N",
        "280264-051U",
        "311299-9999",
        "150350+9201",
    ];
    let inbox = store.join("inbox/vihamielinen/2025-03");
    std::fs::create_dir_all(&inbox).unwrap();
    let mut rows = String::from("id;hetu;kunta;huomio\n");
    for (i, c) in codes.iter().enumerate() {
        rows.push_str(&format!("r{i};{c};091;potilas {c} soitti\n"));
    }
    rows.push_str(&format!("r9;{};{};x\n", codes[0], codes[1]));
    std::fs::write(inbox.join(format!("{}.csv", codes[2])), &rows).unwrap();
    let headerless = store.join("inbox/otsikoton/2025-03");
    std::fs::create_dir_all(&headerless).unwrap();
    std::fs::write(
        headerless.join("a.csv"),
        rows.lines().skip(1).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let line = format!(
        r#"line: vihamielinen
title: t
params: {{ period: {{ kind: month }} }}
codesets: {{ kunnat: {{ path: {kunnat}, key: kunta }} }}
steps:
  muut:
    source: {{ format: csv, location: "inbox/vihamielinen/{{period}}/*.csv", options: {{ delimiter: ";" }}, columns: {{ hetu: string }} }}
  rivit:
    source:
      format: csv
      location: "inbox/{{{{SOURCE}}}}/{{period}}/*.csv"
      options: {{ delimiter: ";" }}
      columns: {{ id: string, hetu: {{ type: string, personal: true }}, kunta: string, huomio: string }}
  tarkistettu:
    validate:
      input: rivit
      max_reject_share: 1.0
      rules:
        - {{ id: oikea, hetu: hetu, temporary: false }}
        - {{ id: arvot, values: {{ column: hetu, values: [a, b] }} }}
        - {{ id: muoto, regex: {{ column: hetu, pattern: "[0-9]{{6}}-[0-9]{{3}}[A-Z]" }} }}
        - {{ id: koodisto, in_codeset: {{ column: hetu, codeset: kunnat }} }}
        - {{ id: loytyy, exists_in: {{ column: hetu, step: muut }} }}
        - {{ id: yksi, unique: hetu }}
        - {{ id: ehto, expr: "hetu <> '131052-308T'" }}
        - {{ id: kunta, in_codeset: {{ column: kunta, codeset: kunnat }} }}
        {{{{FAIL}}}}
  yhtenaistetty:
    harmonise:
      input: tarkistettu
      map: [{{ column: hetu, codeset: kunnat, to: hyvinvointialue }}]
      pseudonymise: [hetu]
  maarat:
    aggregate: {{ input: yhtenaistetty, by: [kunta], measures: {{ n: count(*) }} }}
  julkaisu:
    publish: {{ input: maarat, dataset: maarat, formats: [csv], disclosure: {{ min_count: 1 }} }}
"#
    );
    let variants = [
        ("kaikki", "vihamielinen", "", Some(0)),
        ("otsikoton", "otsikoton", "", Some(1)),
        (
            "fail",
            "vihamielinen",
            "- { id: pysayta, expr: \"hetu IS NULL\", severity: fail }",
            Some(1),
        ),
    ];
    let mut logs = String::new();
    for (name, source, fail, code) in variants {
        let file = store.join(format!("{name}.yaml"));
        std::fs::write(
            &file,
            line.replace("{{SOURCE}}", source).replace("{{FAIL}}", fail),
        )
        .unwrap();
        let out = bin()
            .args([
                "run",
                file.to_str().unwrap(),
                "--store",
                store.to_str().unwrap(),
            ])
            .args(["--param", "period=2025-03", "--json"])
            .env("VALTAVA_PSEUDONYM_KEY", KEY)
            .env("RUST_LOG", "valtava=debug")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), code, "{name}: {}", text(&out.stderr));
        logs.push_str(&text(&out.stderr));
        logs.push_str(&text(&out.stdout));
    }
    // The headerless file failed with a placed error that names no content.
    assert!(
        logs.contains("the row read as the header has 4 field(s)"),
        "{logs}"
    );
    let external = store.join("inbox/ulkoinen");
    std::fs::create_dir_all(&external).unwrap();
    std::fs::write(external.join("a.txt"), codes[0]).unwrap();
    let ext = store.join("ulkoinen.yaml");
    std::fs::write(
        &ext,
            "line: ulkoinen\ntitle: t\nsteps:\n  a:\n    source:\n      format: external\n      location: inbox/ulkoinen/*.txt\n      options: { command: [sh, -c, \"echo virhe rivilla: $(cat) >&2; exit 2\"] }\n      columns: { x: string }\n  b:\n    validate: { input: a, rules: [], max_reject_share: 0.5 }\n"
    )
    .unwrap();
    let out = bin()
        .args([
            "run",
            ext.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
        ])
        .env("VALTAVA_PSEUDONYM_KEY", KEY)
        .output()
        .unwrap();
    // The object that failed whole counts as all rejected: the run fails.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("R006"), "{}", text(&out.stderr));
    logs.push_str(&text(&out.stderr));
    // The program's message reached the log, scrubbed.
    assert!(logs.contains("virhe rivilla: pseudonym:"), "{logs}");
    let checked = common::assert_no_code_written(store, &codes);
    assert!(checked >= 8, "only {checked} files written");
    for c in codes {
        assert!(!logs.contains(c), "{c} in the log or output: {logs}");
    }
}

/// What weakens the protection of persons is classed `privacy` and listed before anything
/// else (before the change, a lowered threshold read as "output schema" and a removed
/// identity-code rule as an ordinary "rule").
#[test]
fn diff_lists_what_weakens_privacy_first() {
    let dir = tempfile::tempdir().unwrap();
    let old = std::fs::read_to_string(root().join("lines/ensihoito.yaml")).unwrap();
    let mut new = old.clone();
    for (from, to) in [
        (
            "disclosure: { min_count: 5, count: tehtavat }",
            "disclosure: { min_count: 3, count: tehtavat }",
        ),
        ("        - { id: hetu-oikea, hetu: hetu }\n", ""),
        ("      pseudonymise: [hetu]\n", ""),
        (
            "hetu: { type: string, personal: true, description:",
            "hetu: { type: string, description:",
        ),
        (
            "        potilaat: count(DISTINCT hetu)\n",
            "        potilaat: count(hetu)\n",
        ),
        ("schedule: \"0 6 5 * *\"", "schedule: \"0 7 5 * *\""),
    ] {
        assert!(new.contains(from), "{from}");
        new = new.replace(from, to);
    }
    let (a, b) = (dir.path().join("old.yaml"), dir.path().join("new.yaml"));
    std::fs::write(&a, &old).unwrap();
    std::fs::write(&b, &new).unwrap();
    let out = run(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let md = text(&out.stdout);
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| `")).collect();
    let expected = [
        "| `julkaisu` | privacy | disclosure threshold lowered: min_count 5 → 3 | `ensihoito_kuukausi` |",
        "| `kuukausittain` | privacy | count of persons `potilaat` removed (it decided disclosure) | `ensihoito_kuukausi` |",
        "| `tarkistettu` | privacy | identity-code rule `hetu-oikea` removed | `ensihoito_kuukausi` |",
        "| `tehtavat` | privacy | `personal` dropped from column `hetu` | `ensihoito_kuukausi` |",
        "| `yhtenaistetty` | privacy | pseudonymisation of `hetu` removed | `ensihoito_kuukausi` |",
    ];
    assert_eq!(&rows[..expected.len()], &expected, "{md}");
    assert!(
        rows[expected.len()..]
            .iter()
            .all(|r| !r.contains("| privacy |"))
            && rows.iter().any(|r| r.contains("| schedule |")),
        "{md}"
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

/// A store holding the hostile line's good and hostile submissions for 2025.
fn hostile_store() -> tempfile::TempDir {
    let store = tempfile::tempdir().unwrap();
    let inbox = store.path().join("inbox/vihamielinen/2025");
    let out = Command::new("python3")
        .arg(root().join("tests/make_hostile.py"))
        .arg(&inbox)
        .arg("091")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    store
}

/// The spreadsheet bomb (cells A1 and XFD1048576: 15.8 GB read densely) and a document
/// nested a million deep (hours of quadratic work) end in bounded memory and time: the
/// bomb costs the cells it holds, the deep document is quarantined whole with R010 naming
/// the limit, and the good submissions are published. Failed before: the bomb took the
/// machine's memory, the document the run's time.
#[test]
#[cfg(target_os = "linux")]
fn hostile_objects_end_in_bounded_memory_and_time() {
    let store = hostile_store();
    let m = common::measured(
        bin().args([
            "run",
            "tests/lines/hostile.yaml",
            "--store",
            store.path().to_str().unwrap(),
            "--param",
            "period=2025",
            "--json",
        ]),
        std::time::Duration::from_secs(60),
    );
    assert_eq!(m.code, Some(0), "{}", text(&m.stderr));
    assert!(
        m.elapsed < std::time::Duration::from_secs(10),
        "{:?}",
        m.elapsed
    );
    assert!(m.peak_bytes < 256 << 20, "peak {} MiB", m.peak_bytes >> 20);
    let report: serde_json::Value = serde_json::from_slice(&m.stdout).unwrap();
    assert_eq!(report["steps"]["asiakirjat"]["rows_out"], 1);
    assert_eq!(report["steps"]["asiakirjat"]["rows_quarantined"], 1);
    let q = read_quarantine(&store.path().join(format!(
        "quarantine/vihamielinen/2025/{}",
        report["run_id"].as_str().unwrap()
    )));
    let deep = q
        .iter()
        .find(|r| r.0 == 0)
        .expect("the deep document is quarantined");
    assert!(
        deep.2.contains("R010")
            && deep.2.contains("limits.depth")
            && deep.2.contains("091_syva.xml"),
        "{deep:?}"
    );
    let release = latest_release(store.path(), "vihamielinen", "2025");
    let tilit = std::fs::read_to_string(release.join("tilit.csv")).unwrap();
    // Both workbooks' rows; the bomb's far cell is a row of its own with no declared value.
    assert!(tilit.contains("3000,2,25.0"), "{tilit}");
    assert_eq!(
        std::fs::read_to_string(release.join("organisaatiot.csv")).unwrap(),
        "organisaatio,asiakirjat\nTestisairaala,1\n"
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

/// `--source STEP=/data/x.csv` and `file:///data/x.csv` read that one file (failed before:
/// the first was looked for inside the store, the second could not create a folder named
/// like the file).
#[test]
fn a_source_given_as_a_file_path_or_file_url_reads_that_file() {
    let store = store_with_inbox();
    let file = store.path().join("mini/2025-01/a.csv");
    let elsewhere = tempfile::tempdir().unwrap();
    for source in [
        format!("rivit={}", file.display()),
        format!("rivit=file://{}", file.display()),
    ] {
        let out = mini(elsewhere.path(), &["--source", &source])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{source}: {}",
            text(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["steps"]["rivit"]["objects"], 1, "{source}");
        assert!(report["steps"]["rivit"]["rows_in"].as_u64().unwrap() > 0);
    }
    // A file that is not there is no input, not a folder made in its name.
    let gone = format!("rivit={}", elsewhere.path().join("ei/ole.csv").display());
    let out = mini(elsewhere.path(), &["--source", &gone])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!elsewhere.path().join("ei").exists());
}
