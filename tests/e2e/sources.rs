//! Sources: CSV (windows-1252), NDJSON and Parquet, spreadsheets and external parser
//! programs, FHIR bulk data and bundles, hostile objects in bounded memory and time, and
//! locations given with `--source` (another folder, a file path or `file://` URL).

use super::*;

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
