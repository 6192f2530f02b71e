//! The commands besides `check` and `run`: usage errors and help, `graph`, `schema`, `plan`,
//! `diff` (including what weakens privacy, listed first), `catalog`, `releases` and `show`,
//! `test` (line tests in YAML, JUnit) and `fmt`.

use super::*;

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
            "asiakaskokemus",
            "diabetes",
            "ensihoito",
            "henkilosto",
            "henkilostomitoitus",
            "hoitoonpaasy",
            "rai",
            "rokotukset",
            "sosiaalihuolto",
            "talous",
            "valvonta"
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
                // The engine's status columns (`status`, `status_<measure>`) are its own.
                if !col["name"].as_str().unwrap().starts_with("status") {
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

/// Every shipped line's tests beside it (`lines/tests/`) pass: the CDA and spreadsheet
/// lines' fixtures are written as documents and workbooks and read by their own parsers.
#[test]
fn every_shipped_line_test_passes() {
    let mut files: Vec<String> = std::fs::read_dir(root().join("lines/tests"))
        .unwrap()
        .map(|e| format!("lines/tests/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".test.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let mut args = vec!["test"];
    args.extend(files.iter().map(String::as_str));
    let out = run(&args);
    assert_succeeded(&out);
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("FAILED"), "{stdout}");
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
    let tests = std::fs::read_to_string(root().join("lines/tests/ensihoito.test.yaml")).unwrap();
    let n = tests.matches("\n  - name: ").count();
    assert!(
        text(&out.stdout).contains(&format!("{n} passed, 0 failed")),
        "{}",
        text(&out.stdout)
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(&format!(
            "<testsuite name=\"ensihoito\" tests=\"{n}\" failures=\"0\""
        )),
        "{xml}"
    );
    // A test that expects the wrong thing fails, with the difference in the report.
    let wrong = tests
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
        text(&out.stdout).contains(&format!("{} passed, 1 failed", n - 1)),
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

/// A release source shows what it reads in every tool: the graph's node and the published
/// dataset it depends on, the plan's periods, the catalog's entry, the diff's change.
#[test]
fn every_tool_shows_what_a_release_source_reads() {
    const JONOT: &str = "tests/lines/jonot-koko-maa.yaml";
    let dot = text(&run(&["graph", JONOT]).stdout);
    assert!(
        dot.contains("release: hoitoonpaasy_kuukausi (current)"),
        "{dot}"
    );
    assert!(
        dot.contains("\"release:hoitoonpaasy_kuukausi\" -> \"jonot\""),
        "{dot}"
    );
    let mmd = text(&run(&["graph", "--format", "mermaid", JONOT]).stdout);
    assert!(
        mmd.contains("release_hoitoonpaasy_kuukausi -.-> jonot"),
        "{mmd}"
    );

    let plan = run(&[
        "plan",
        JONOT,
        "--param",
        "period=2025-03",
        "--format",
        "json",
    ]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stderr));
    let steps: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(
        steps[0]["release"]["dataset"], "hoitoonpaasy_kuukausi",
        "{steps}"
    );
    assert_eq!(
        steps[0]["release"]["wanted"],
        serde_json::json!(["2025-03"])
    );
    let shown = text(&run(&["plan", JONOT, "--param", "period=2025-03"]).stdout);
    assert!(
        shown.contains("release: hoitoonpaasy_kuukausi (current)"),
        "{shown}"
    );

    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let r = run(&["catalog", JONOT, "--out", o]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    let cat: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("catalog.json")).unwrap()).unwrap();
    let source = cat.pointer("/lines/0/sources/0").unwrap();
    assert_eq!(
        source["release"],
        serde_json::json!({ "dataset": "hoitoonpaasy_kuukausi", "periods": "current" })
    );
    assert!(
        source.get("format").is_none() && source.get("location").is_none(),
        "{source}"
    );
    let html = std::fs::read_to_string(out.path().join("index.html")).unwrap();
    assert!(html.contains("release, periods current"), "{html}");

    let dir = tempfile::tempdir().unwrap();
    let old = std::fs::read_to_string(root().join(JONOT)).unwrap();
    let new = old.replace("periods: current", "periods: { last: 3 }");
    let (a, b) = (dir.path().join("old.yaml"), dir.path().join("new.yaml"));
    std::fs::write(&a, &old).unwrap();
    std::fs::write(&b, &new).unwrap();
    let md = text(&run(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]).stdout);
    let row = "| `jonot` | logic | `source.release`: hoitoonpaasy_kuukausi (current) → hoitoonpaasy_kuukausi (last: 3) | `jonot_alueittain` |";
    assert!(md.contains(row), "{md}");
}
