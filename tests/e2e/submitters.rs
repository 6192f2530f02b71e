//! Checks across periods and submitters: the shipped `ensihoito` line with a rule that every
//! county submits (`submitters`) and one on each county's volume against the previous
//! period (`change`), run on generated input split into one file per county for two
//! months. A county missing from the second month and one whose volume doubled are named,
//! with their numbers, in the run report and in the quality report (JSON and HTML), which
//! also carries each county's trend. Every expectation is computed from the files.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

const MAX_RATIO: f64 = 1.5;

/// The shared reference folder, as an absolute path.
fn reference() -> PathBuf {
    root().join("../shared/reference").canonicalize().unwrap()
}

/// The codes of the wellbeing services counties: the first column of `hyvinvointialueet.csv`.
fn county_codes() -> BTreeSet<String> {
    let text = std::fs::read_to_string(reference().join("hyvinvointialueet.csv")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

/// Each municipality's county, from the reference the generator draws municipalities from.
fn county_of_municipality() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(reference().join("kunta_hyvinvointialue_2023.csv")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some((f.first()?.to_string(), f.get(2)?.to_string()))
        })
        .collect()
}

/// Generates `period` into `store` and splits the generated file into one file per county,
/// `<county>.csv`, as the counties would submit them.
fn generate_by_county(store: &Path, period: &str, seed: &str) -> PathBuf {
    let made = run(&[
        "generate",
        "ensihoito",
        "--period",
        period,
        "--rows",
        "3000",
        "--seed",
        seed,
        "--bad-share",
        "0",
        "--out",
        store.to_str().unwrap(),
    ]);
    assert_succeeded(&made);
    let dir = store.join(format!("inbox/ensihoito/{period}"));
    let all = std::fs::read_to_string(dir.join("tehtavat.csv")).unwrap();
    std::fs::remove_file(dir.join("tehtavat.csv")).unwrap();
    let mut lines = all.lines();
    let header = lines.next().unwrap();
    let counties = county_of_municipality();
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for l in lines {
        let kunta = l.split(';').nth(2).unwrap();
        let file = files
            .entry(counties[kunta].clone())
            .or_insert_with(|| format!("{header}\n"));
        file.push_str(l);
        file.push('\n');
    }
    for (county, text) in files {
        std::fs::write(dir.join(format!("{county}.csv")), text).unwrap();
    }
    dir
}

/// Whether a mission's two times each name one instant in Finnish time: a time the clocks
/// skipped or showed twice is quarantined when the source reads it, before the validate
/// step counts its submitter's rows.
fn one_instant_each(line: &str) -> bool {
    use chrono::TimeZone;
    line.split(';').skip(3).take(2).all(|t| {
        t.is_empty()
            || chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").is_ok_and(|n| {
                chrono_tz::Europe::Helsinki
                    .from_local_datetime(&n)
                    .single()
                    .is_some()
            })
    })
}

/// Each county's rows in a period's folder as the validate step sees them: the data lines
/// of `<county>.csv` whose times name instants.
fn rows_by_county(dir: &Path) -> BTreeMap<String, u64> {
    files_under(dir)
        .iter()
        .map(|f| {
            let county = f.file_stem().unwrap().to_str().unwrap().to_string();
            let text = std::fs::read_to_string(f).unwrap();
            let rows = text.lines().skip(1).filter(|l| one_instant_each(l)).count() as u64;
            (county, rows)
        })
        .collect()
}

/// The shipped line with the two rules on its validate step, its code sets found from a
/// temporary folder.
fn line_with_period_checks(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("lines/ensihoito.yaml"))
        .unwrap()
        .replace(
            "../../shared/reference/",
            &format!("{}/", reference().display()),
        );
    let first_rule = "        - { id: tehtava-id-yksilollinen, unique: tehtava_id }\n";
    assert!(text.contains(first_rule));
    let text = text.replace(
        first_rule,
        &format!(
            "{first_rule}        - {{ id: kaikki-alueet, severity: warn, submitters: {{ codeset: alueet }} }}\n\
             \x20       - id: maara-muuttui\n\
             \x20         severity: warn\n\
             \x20         change: {{ measure: rows, max_ratio: {MAX_RATIO}, against: previous }}\n"
        ),
    );
    let file = dir.join("ensihoito.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

/// Runs the line for `period`; the run report.
fn run_period(line: &Path, store: &Path, period: &str) -> serde_json::Value {
    let out = run(&[
        "run",
        line.to_str().unwrap(),
        "--param",
        &format!("period={period}"),
        "--store",
        store.to_str().unwrap(),
        "--pseudonym-key-file",
        "examples/demo-pseudonym.key",
        "--json",
    ]);
    assert_succeeded(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What the `change` rule should name, computed from the counts of two periods:
/// (county, what, rows now, rows before).
fn expected_changes(
    now: &BTreeMap<String, u64>,
    before: &BTreeMap<String, u64>,
) -> Vec<(String, String, u64, Option<u64>)> {
    let names: BTreeSet<&String> = now.keys().chain(before.keys()).collect();
    names
        .into_iter()
        .filter_map(|c| {
            let (n, p) = (
                now.get(c).copied().unwrap_or(0),
                before.get(c).copied().unwrap_or(0),
            );
            let what = if p == 0 {
                "new"
            } else if n == 0 {
                "missing"
            } else if n as f64 > p as f64 * MAX_RATIO {
                "increased"
            } else if (n as f64) * MAX_RATIO < p as f64 {
                "decreased"
            } else {
                return None;
            };
            Some((c.clone(), what.to_string(), n, (p > 0).then_some(p)))
        })
        .collect()
}

/// The findings of an outcome as (submitter, what, rows, previous).
fn findings(outcome: &serde_json::Value) -> Vec<(String, String, u64, Option<u64>)> {
    outcome["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["submitter"].as_str().unwrap().to_string(),
                        f["what"].as_str().unwrap().to_string(),
                        f["rows"].as_u64().unwrap(),
                        f["previous"].as_u64(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_missing_county_and_a_doubled_volume_are_named_in_both_reports() {
    let store = tempfile::tempdir().unwrap();
    let lines = tempfile::tempdir().unwrap();
    let line = line_with_period_checks(lines.path());
    let february = generate_by_county(store.path(), "2025-02", "11");
    let march = generate_by_county(store.path(), "2025-03", "12");
    let before = rows_by_county(&february);

    // March: the two largest counties that sent in both months; one sends nothing, the
    // other sends each mission twice (the copies under new ids).
    let mut both: Vec<(u64, String)> = rows_by_county(&march)
        .into_iter()
        .filter(|(c, _)| before.contains_key(c))
        .map(|(c, n)| (n, c))
        .collect();
    both.sort();
    let (_, doubled) = both.pop().unwrap();
    let (_, gone) = both.pop().unwrap();
    std::fs::remove_file(march.join(format!("{gone}.csv"))).unwrap();
    let file = march.join(format!("{doubled}.csv"));
    let text = std::fs::read_to_string(&file).unwrap();
    let copies: String = text
        .lines()
        .skip(1)
        .map(|l| {
            let (id, rest) = l.split_once(';').unwrap();
            format!("{id}b;{rest}\n")
        })
        .collect();
    std::fs::write(&file, format!("{text}{copies}")).unwrap();
    let now = rows_by_county(&march);
    assert!(
        now[&doubled] as f64 > before[&doubled] as f64 * MAX_RATIO,
        "the setup doubles {doubled}: {} then {}",
        before[&doubled],
        now[&doubled]
    );

    // February is the line's first period: nothing to compare with, not an error.
    let first = run_period(&line, store.path(), "2025-02");
    let change = &first["steps"]["tarkistettu"]["checks"]["maara-muuttui"];
    assert_eq!(change["passed"], true, "{change}");
    assert_eq!(change["level"], "passed");
    assert!(
        change["observed"].as_str().unwrap().contains("no release"),
        "{change}"
    );

    let report = run_period(&line, store.path(), "2025-03");
    assert_eq!(report["status"], "succeeded", "severity warn");
    let checks = &report["steps"]["tarkistettu"]["checks"];

    // Every county expected; those without a file are named, the one removed among them.
    let submitters = &checks["kaikki-alueet"];
    assert_eq!(submitters["passed"], false);
    assert_eq!(submitters["level"], "warning");
    assert_eq!(submitters["severity"], "warn");
    let missing: Vec<(String, String, u64, Option<u64>)> = county_codes()
        .into_iter()
        .filter(|c| !now.contains_key(c))
        .map(|c| {
            let previous = before.get(&c).copied();
            (c, "missing".to_string(), 0, previous)
        })
        .collect();
    assert_eq!(findings(submitters), missing);
    assert!(
        missing
            .iter()
            .any(|m| m.0 == gone && m.3 == Some(before[&gone]))
    );
    assert!(
        submitters["observed"].as_str().unwrap().contains(&gone),
        "{submitters}"
    );

    // Each county's volume against February, computed from the files.
    let change = &checks["maara-muuttui"];
    assert_eq!(change["passed"], false);
    assert_eq!(change["level"], "warning");
    let expected = expected_changes(&now, &before);
    assert_eq!(findings(change), expected);
    assert!(expected.contains(&(
        doubled.clone(),
        "increased".into(),
        now[&doubled],
        Some(before[&doubled])
    )));
    assert!(expected.contains(&(gone.clone(), "missing".into(), 0, Some(before[&gone]))));
    let doubled_finding = change["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["submitter"] == doubled.as_str())
        .unwrap();
    let ratio = doubled_finding["ratio"].as_f64().unwrap();
    assert!(
        (ratio - now[&doubled] as f64 / before[&doubled] as f64).abs() < 1e-9,
        "{doubled_finding}"
    );
    let observed = change["observed"].as_str().unwrap();
    assert!(
        observed.contains(&doubled) && observed.contains(&gone),
        "{observed}"
    );

    // The quality report says the same, and shows each county's trend.
    let q: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.path().join(report["quality"][0].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let rule = |id: &str| {
        q["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(rule("maara-muuttui")["level"], "warning");
    assert_eq!(findings(&rule("maara-muuttui")["dataset"]), expected);
    assert_eq!(findings(&rule("kaikki-alueet")["dataset"]), missing);
    let trend = &q["trend"]["tarkistettu"];
    assert_eq!(trend["periods"], serde_json::json!(["2025-02", "2025-03"]));
    let points = |county: &str| -> Vec<Option<u64>> {
        trend["submitters"][county]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["rows"].as_u64())
            .collect()
    };
    assert_eq!(
        points(doubled.as_str()),
        [Some(before[&doubled]), Some(now[&doubled])]
    );
    assert_eq!(points(gone.as_str()), [Some(before[&gone]), None]);
    let html =
        std::fs::read_to_string(store.path().join(report["quality"][1].as_str().unwrap())).unwrap();
    let named = html
        .split("Submitters named by the checks")
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .expect("a table of the submitters the checks name");
    for county in [&doubled, &gone] {
        assert!(
            named.contains(&format!("<td>{county}</td>")),
            "{county} not named: {named}"
        );
    }
    assert!(named.contains("varoitus / warning") && named.contains(&format!("×{ratio:.2}")));
    assert!(html.contains("<svg") && html.contains("role=\"img\"") && html.contains("<desc"));
    assert!(!html.contains("<script"), "no script on the page");

    // Determinism: the same inputs give the same checks and trend.
    let again = run_period(&line, store.path(), "2025-03");
    assert_eq!(again["steps"]["tarkistettu"]["checks"], *checks);
    let q2: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.path().join(again["quality"][0].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    assert_eq!(q2["trend"], q["trend"]);
    assert_eq!(q2["rules"], q["rules"]);
}
