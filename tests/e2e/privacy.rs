//! Protection of persons: personal data tracked through the plans, harmonisation with keyed
//! pseudonyms, the key and identity codes kept out of every output and log (also against a
//! hostile submitter), no run without a key, and suppressed cells that an attacker cannot
//! recover from the published tables.

use super::*;

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
    let store = example_store();
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
