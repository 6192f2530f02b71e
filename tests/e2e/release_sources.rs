//! Release sources: a line reading another line's current published releases exactly as
//! the public reads them (suppressed cells empty, with their status), every cell it
//! publishes against an independent computation from the published CSV; no release is
//! R004; lines reading each other's datasets are a cycle that `valtava check` finds.

use super::*;

const JONOT: &str = "tests/lines/jonot-koko-maa.yaml";

fn run_line(store: &Path, line: &str, period: &str) -> Output {
    run(&[
        "run",
        line,
        "--param",
        &format!("period={period}"),
        "--store",
        store.to_str().unwrap(),
        "--pseudonym-key-file",
        "examples/demo-pseudonym.key",
        "--json",
    ])
}

/// Per area, from the published CSV of `hoitoonpaasy_kuukausi`: the sum of `kaynnit` over
/// the professions (no `YHT` rows, no suppressed cells), how many, and the doctors' share.
const INDEPENDENT: &str = r#"
import csv, json, math, sys
out, rows = {}, 0
for r in csv.DictReader(open(sys.argv[1], encoding="utf-8")):
    rows += 1
    if r["ammattiryhma"] == "YHT" or r["status"] == "suppressed" or r["kaynnit"] == "":
        continue
    a = out.setdefault(r["hyvinvointialue"], [0, 0, 0])
    a[0] += int(r["kaynnit"]); a[1] += 1
    a[2] += int(r["kaynnit"]) if r["ammattiryhma"] == "laakari" else 0
for k, a in out.items():
    v = 100.0 * a[2] / a[0]
    a[2] = math.floor(v * 10 + 0.5) / 10
print(json.dumps({"rows": rows, "areas": out}))
"#;

#[test]
fn a_release_source_reads_what_the_public_reads() {
    let store = example_store();
    let up = run_line(store.path(), "lines/hoitoonpaasy.yaml", "2025-03");
    assert_eq!(up.status.code(), Some(0), "{}", text(&up.stderr));
    let published =
        latest_release(store.path(), "hoitoonpaasy", "2025-03").join("hoitoonpaasy_kuukausi.csv");
    let py = Command::new("python3")
        .args(["-c", INDEPENDENT, published.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", text(&py.stderr));
    let expected: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    let areas = expected["areas"].as_object().unwrap();
    assert!(areas.len() >= 3, "{expected}");
    // The suppressed cells are there to be skipped.
    assert!(
        std::fs::read_to_string(&published)
            .unwrap()
            .contains(",suppressed")
    );

    let out = run_line(store.path(), JONOT, "2025-03");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Every published row was read, none lost or quarantined.
    assert_eq!(
        report["steps"]["jonot"]["rows_in"], expected["rows"],
        "{report}"
    );
    assert_eq!(report["steps"]["jonot"]["rows_quarantined"], 0, "{report}");
    let csv = std::fs::read_to_string(
        latest_release(store.path(), "jonot_koko_maa", "2025-03").join("jonot_alueittain.csv"),
    )
    .unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut seen = 0;
    for l in lines {
        let cells: Vec<&str> = l.split(',').collect();
        let area = cells[col("hyvinvointialue")];
        let want = &areas[area];
        assert_eq!(cells[col("kuukausi")], "2025-03", "{l}");
        assert_eq!(cells[col("kaynnit")], want[0].to_string(), "{area}: {l}");
        assert_eq!(cells[col("ryhmat")], want[1].to_string(), "{area}: {l}");
        let share: f64 = cells[col("laakari_osuus")].parse().unwrap();
        assert!(
            (share - want[2].as_f64().unwrap()).abs() < 1e-9,
            "{area}: {l} vs {want}"
        );
        seen += 1;
    }
    assert_eq!(seen, areas.len(), "{csv}");
    // The release's manifest names the release it read, so a new upstream release
    // changes what this one was made of.
    let manifest = std::fs::read_to_string(
        latest_release(store.path(), "jonot_koko_maa", "2025-03").join("_manifest.json"),
    )
    .unwrap();
    assert!(
        manifest.contains("releases/hoitoonpaasy/2025-03/"),
        "{manifest}"
    );
}

#[test]
fn a_period_without_a_release_fails_r004() {
    let store = example_store();
    let out = run_line(store.path(), JONOT, "2025-03");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("R004") && err.contains("hoitoonpaasy_kuukausi"),
        "{err}"
    );
    // With the upstream released for another period, still none for this one.
    let up = run_line(store.path(), "lines/hoitoonpaasy.yaml", "2025-03");
    assert_eq!(up.status.code(), Some(0), "{}", text(&up.stderr));
    let out = run_line(store.path(), JONOT, "2025-04");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("R004"), "{}", text(&out.stderr));
}

/// A line `name` that publishes `publishes` from the current release of `reads`.
fn reader(dir: &Path, name: &str, publishes: &str, reads: &str) -> String {
    let text = format!(
        "line: {name}\ntitle: T\nparams:\n  period: {{ kind: month }}\nsteps:\n  \
         luettu:\n    source:\n      release: {{ dataset: {reads}, periods: current }}\n      \
         columns: {{ alue: string, n: integer }}\n  \
         summat:\n    aggregate: {{ input: luettu, by: [alue], measures: {{ n: sum(n) }} }}\n  \
         julkaisu:\n    publish: {{ input: summat, dataset: {publishes}, disclosure: {{ min_count: 1, count: n }} }}\n"
    );
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, text).unwrap();
    file.display().to_string()
}

#[test]
fn lines_reading_each_other_are_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let a = reader(dir.path(), "a", "a_data", "b_data");
    let b = reader(dir.path(), "b", "b_data", "a_data");
    let out = run(&["check", "--format", "json", &a, &b]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<(&str, &str)> = (d.as_array().unwrap().iter())
        .map(|d| (d["code"].as_str().unwrap(), d["file"].as_str().unwrap()))
        .collect();
    assert_eq!(codes, [("V112", a.as_str()), ("V112", b.as_str())], "{d}");
    // Alone, a file cannot know who publishes what it reads: a warning, and valid.
    let alone = run(&["check", "--format", "json", &a]);
    assert_eq!(alone.status.code(), Some(0), "{}", text(&alone.stderr));
    let d: serde_json::Value = serde_json::from_slice(&alone.stdout).unwrap();
    assert_eq!(
        (d[0]["code"].as_str(), d[0]["level"].as_str()),
        (Some("V111"), Some("warning"))
    );
    // Together with a line that reads nothing back, no cycle.
    let c = reader(dir.path(), "c", "c_data", "a_data");
    let out = run(&["check", "--format", "json", &a, &c]);
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{d}");
    assert_eq!(d.as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d[0]["code"], "V111", "{d}");
}

/// `valtava plan --store` names the releases a release source would read, and the run's
/// lineage events name its input as the publishing line's events name their output.
#[test]
fn plan_and_lineage_name_the_releases_a_release_source_reads() {
    let store = example_store();
    let up = run_line(store.path(), "lines/hoitoonpaasy.yaml", "2025-03");
    assert_eq!(up.status.code(), Some(0), "{}", text(&up.stderr));
    let up: serde_json::Value = serde_json::from_slice(&up.stdout).unwrap();
    let up_run = up["run_id"].as_str().unwrap();
    let s = store.path().to_str().unwrap();
    let plan = run(&[
        "plan",
        JONOT,
        "--store",
        s,
        "--param",
        "period=2025-03",
        "--format",
        "json",
    ]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stderr));
    let steps: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let release = &steps[0]["release"];
    assert_eq!(release["dataset"], "hoitoonpaasy_kuukausi", "{steps}");
    assert_eq!(release["periods"], "current");
    assert_eq!(
        release["releases"],
        serde_json::json!([{ "period": "2025-03", "run_id": up_run, "line": "hoitoonpaasy" }])
    );
    let later = run(&["plan", JONOT, "--store", s, "--param", "period=2025-04"]);
    assert!(text(&later.stdout).contains("no current release of 2025-04"));

    let out = run_line(store.path(), JONOT, "2025-03");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let event = |line: &str, run: &str| -> serde_json::Value {
        let path = store
            .path()
            .join(format!("lineage/{line}/{run}/1-start.json"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let published = &event("hoitoonpaasy", up_run)["outputs"][0];
    let start = event("jonot_koko_maa", report["run_id"].as_str().unwrap());
    let input = &start["inputs"][0];
    assert_eq!(input["name"], published["name"], "{start}");
    assert_eq!(input["namespace"], published["namespace"]);
    let lineage = &start["outputs"][0]["facets"]["columnLineage"]["fields"]["kaynnit"];
    assert_eq!(
        lineage["inputFields"][0]["name"], published["name"],
        "{lineage}"
    );
}
