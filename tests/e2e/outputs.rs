//! Published files and lineage events as other tools read them: Parquet and CSV in pyarrow
//! and DuckDB, JSON-stat against its schema and in pyjstat, OpenLineage events against the
//! specification, and events sent to an HTTP endpoint.

use super::*;

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
            "ajanjakso",
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

#[test]
fn json_stat_passes_the_schema_and_reads_in_pyjstat() {
    let store = example_store();
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
    assert_eq!(n, 182.0 - ensihoito_example_unclear_times().0 as f64);
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
