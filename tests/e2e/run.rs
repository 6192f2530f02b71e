//! A run's accounting: every input row published, quarantined (with its object, row number
//! and rules) or filtered, the quality report, the memory log, refused parameters, and
//! failures (too many rejects, a `fail` rule) that publish nothing but are reported.

use super::*;

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
        "hyvinvointialue,kuukausi,rivit,summa,ajanjakso,status\n\
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

/// A memory limit that is not a size stops the command before anything runs (exit status
/// 2), instead of a run without its limit. Failed before: the planner read the variable
/// itself and ignored a value it could not parse.
#[test]
fn a_memory_limit_that_is_not_a_size_is_refused() {
    let store = store_with_inbox();
    for bad in ["lots", "512X", "-1G"] {
        let out = mini(store.path(), &[])
            .env("VALTAVA_MEMORY_LIMIT", bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("VALTAVA_MEMORY_LIMIT"),
            "{}",
            text(&out.stderr)
        );
        assert!(
            !store.path().join("releases").exists(),
            "{bad}: a release was written"
        );
    }
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

/// A location's `{period.months}` of a month reads the month's folder as `{period}` does;
/// `{period.quarters}` of a line whose period may be a month fails a month's run (R001)
/// before anything is read or written.
#[test]
fn a_part_of_the_period_is_read_or_refused_before_the_run() {
    let store = store_with_inbox();
    let s = store.path().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (months, quarters) = period_part_lines(dir.path());
    let rows_in = |out: &Output| {
        assert_succeeded(out);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["steps"]["rivit"]["rows_in"].as_u64().unwrap()
    };
    let plain = rows_in(&run_mini(store.path(), &[]));
    let by_month = bin()
        .args(["run", months.to_str().unwrap(), "--store", s])
        .args(["--param", "period=2025-01", "--json"])
        .env("VALTAVA_PSEUDONYM_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(rows_in(&by_month), plain);
    let out = bin()
        .args(["run", quarters.to_str().unwrap(), "--store", s])
        .args(["--param", "period=2025-01"])
        .env("VALTAVA_PSEUDONYM_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("R001") && err.contains("has no {period.quarters}"),
        "{err}"
    );
}

/// A column no later step reads is never computed: the mini line with a derived column
/// that cannot be computed (an identity code cast to a number) and that only its own step
/// has runs as the plain line does, its harmonise step's plan narrowed to the columns the
/// aggregate reads (a pseudonym nobody reads is not computed either). A step that
/// quarantines keeps its rows whole: with `unmapped: quarantine` the same line fails.
#[test]
fn a_column_no_later_step_reads_is_not_computed() {
    let store = store_with_inbox();
    let s = store.path().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let derive = (
        "kuukausi: \"to_char(pvm, '%Y-%m')\"",
        "kuukausi: \"to_char(pvm, '%Y-%m')\"\n        luku: \"CAST(hetu AS INT)\"",
    );
    let unread = line_copy(
        dir.path(),
        "tests/lines/mini.yaml",
        "unread.yaml",
        &[derive, ("on: pvm }", "on: pvm, unmapped: keep }")],
    );
    let quarantining = line_copy(
        dir.path(),
        "tests/lines/mini.yaml",
        "quarantining.yaml",
        &[derive, ("on: pvm }", "on: pvm, unmapped: quarantine }")],
    );
    let run_line = |line: &Path| {
        bin()
            .args(["run", line.to_str().unwrap(), "--store", s])
            .args(["--param", "period=2025-01", "--json"])
            .env("VALTAVA_PSEUDONYM_KEY", KEY)
            .output()
            .unwrap()
    };
    let plain = run_mini(store.path(), &[]);
    assert_succeeded(&plain);
    let expected =
        std::fs::read(latest_release(store.path(), "mini", "2025-01").join("mini_kuukausi.csv"));
    let out = run_line(&unread);
    assert_succeeded(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let plain: serde_json::Value = serde_json::from_slice(&plain.stdout).unwrap();
    assert_eq!(
        report["steps"]["summat"]["rows_in"],
        plain["steps"]["summat"]["rows_in"]
    );
    let published =
        std::fs::read(latest_release(store.path(), "mini", "2025-01").join("mini_kuukausi.csv"));
    assert_eq!(published.unwrap(), expected.unwrap());
    let out = run_line(&quarantining);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}
