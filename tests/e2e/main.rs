//! End-to-end tests: the real `valtava` binary on real files.
//!
//! Every test runs the built binary (`CARGO_BIN_EXE_valtava`) from the repository's root on
//! the test lines (`tests/lines`), the shipped lines (`lines/`), the test inbox
//! (`tests/data`) or the example data (`examples/store`), and reads back what the run left:
//! exit codes, diagnostics, reports, releases, quarantine, lineage and logs. Published files
//! and events are also read by independent programs (`tests/*.py`).
//!
//! One test binary (one link), one module per subject:
//!
//! - `asiakaskokemus`: the client-experience line, its shares suppressed alone;
//! - `check`: checking line files and their diagnostics;
//! - `cli`: the other commands (`graph`, `schema`, `plan`, `diff`, `catalog`, `releases`,
//!   `show`, `test`, `fmt`), usage errors and help;
//! - `house`: the engine's layers, file and function sizes (ARCHITECTURE.md);
//! - `lines`: each shipped line's published numbers against an independent computation;
//! - `local_time`: local times read as instants across the changes of the clocks;
//! - `outputs`: published files and lineage events as other tools read them;
//! - `periods`: checks across periods and submitters (`submitters`, `change`), the trend;
//! - `privacy`: personal-data lineage, pseudonyms and the key, suppression, redaction;
//! - `rai`: the `rai` line (each client's latest RAI assessment) on the example and at volume;
//! - `run`: a run's accounting of every row, quarantine, the quality report, failures;
//! - `sources`: source formats and locations, hostile objects;
//! - `valvonta`: the valvonta line's two datasets, the funnel plot from other lines' releases;
//! - `storage`: releases per run, concurrent runs, deadlines, leftovers of killed runs;
//! - `volume`: the second milestone's lines on generated input of national size.
//!
//! The helpers here are shared by several subjects (the modules `use super::*`); a helper
//! one subject uses lives in that subject's module.

#[path = "../common/mod.rs"]
mod common;
use common::{copy_dir, root};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod asiakaskokemus;
mod check;
mod cli;
mod house;
mod lines;
mod local_time;
mod outputs;
mod periods;
mod privacy;
mod rai;
mod release_sources;
mod run;
mod sources;
mod storage;
mod submitters;
mod valvonta;
mod volume;

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

/// A temporary store holding the shipped examples' inbox and reference data.
fn example_store() -> tempfile::TempDir {
    let store = tempfile::tempdir().unwrap();
    for part in ["inbox", "reference"] {
        copy_dir(
            &root().join("examples/store").join(part),
            &store.path().join(part),
        );
    }
    store
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

/// Copies of the mini line in `dir` reading `{period.months}` (a month's months: the month
/// itself) and `{period.quarters}` of a `period` parameter (which a month lacks).
fn period_part_lines(dir: &Path) -> (PathBuf, PathBuf) {
    let months = line_copy(
        dir,
        "tests/lines/mini.yaml",
        "kuukaudet.yaml",
        &[(
            "location: mini/{period}/",
            "location: mini/{period.months}/",
        )],
    );
    let quarters = line_copy(
        dir,
        "tests/lines/mini.yaml",
        "neljannekset.yaml",
        &[
            (
                "location: mini/{period}/",
                "location: mini/{period.quarters}/",
            ),
            ("period: { kind: month }", "period: { kind: period }"),
        ],
    );
    (months, quarters)
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

/// The record batches of the Parquet files under `dir` (a run's quarantine), file by file.
fn parquet_batches(dir: &Path) -> Vec<arrow::record_batch::RecordBatch> {
    let mut out = Vec::new();
    for f in files_under(dir) {
        let file = std::fs::File::open(&f).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            out.push(b.unwrap());
        }
    }
    out
}

/// The column `name` of a batch, cast to text.
fn text_column(b: &arrow::record_batch::RecordBatch, name: &str) -> arrow::array::ArrayRef {
    arrow::compute::cast(
        b.column_by_name(name).unwrap(),
        &arrow::datatypes::DataType::Utf8,
    )
    .unwrap()
}

fn read_quarantine(dir: &Path) -> Vec<(u64, String, String, Option<String>)> {
    use arrow::array::{Array, AsArray};
    let mut out = Vec::new();
    for b in parquet_batches(dir) {
        let text = |c: &str| text_column(&b, c);
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
    out.sort();
    out
}

/// `valtava generate <line> --period <period> --rows <rows> --seed <seed> --bad-share <bad>`
/// into `store`, then the shipped line run on it with the demo key; both exit 0, and the
/// run's JSON report.
fn generate_and_run(
    store: &Path,
    line: &str,
    period: &str,
    rows: &str,
    seed: &str,
    bad_share: &str,
) -> serde_json::Value {
    let s = store.to_str().unwrap();
    generate_input(
        store,
        line,
        period,
        rows,
        &["--seed", seed, "--bad-share", bad_share],
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
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `valtava generate LINE` for `period` into `store`, with `more` flags (a seed, a share
/// of bad rows); the command must succeed.
fn generate_input(store: &Path, line: &str, period: &str, rows: &str, more: &[&str]) {
    let s = store.to_str().unwrap();
    let mut args = vec![
        "generate", line, "--period", period, "--rows", rows, "--out", s,
    ];
    args.extend_from_slice(more);
    let made = run(&args);
    assert_eq!(
        made.status.code(),
        Some(0),
        "{line}: {}",
        text(&made.stderr)
    );
}

/// The missions of the shipped `ensihoito` example (`examples/store/inbox/ensihoito/2025-03`)
/// whose alarm or arrival time is no one instant of Finnish time — in the hour the clocks
/// skip in spring or show twice in autumn — computed with chrono-tz: the line reads those
/// times as local ones and quarantines such a mission when it reads it. (missions, times)
fn ensihoito_example_unclear_times() -> (u64, u64) {
    use chrono::TimeZone;
    let dir = root().join("examples/store/inbox/ensihoito/2025-03");
    let (mut missions, mut times) = (0, 0);
    for f in files_under(&dir) {
        let text = std::fs::read_to_string(f).unwrap();
        for row in text.lines().skip(1) {
            let fields: Vec<&str> = row.trim_end_matches('\r').split(';').collect();
            if fields.len() != 9 {
                continue; // unreadable: counted as such
            }
            let unclear = fields[3..5]
                .iter()
                .filter(|t| {
                    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").is_ok_and(|t| {
                        chrono_tz::Europe::Helsinki
                            .from_local_datetime(&t)
                            .single()
                            .is_none()
                    })
                })
                .count() as u64;
            missions += u64::from(unclear > 0);
            times += unclear;
        }
    }
    (missions, times)
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
