//! Local times: a line whose alarm and arrival times are Finnish local time
//! (`tests/lines/kesaaika.yaml`), run on missions across both changes of the clocks in 2025.
//! Every published duration, month and clock time equals the one computed here with
//! chrono-tz, and every mission the line cannot place in time is in quarantine with its
//! rule and reason — under either policy for the hour the clocks show twice.

use super::*;

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Europe::Helsinki;

/// Missions as submitted: id, alarm, arrival.
const MISSIONS: &[(&str, &str, &str)] = &[
    // Spring: the clocks go from 03:00 to 04:00, so 02:55 → 04:05 is 10 minutes (not 70).
    ("K01", "2025-03-30T02:55:00", "2025-03-30T04:05:00"),
    // A time the clocks skipped.
    ("K02", "2025-03-30T03:30:00", "2025-03-30T04:10:00"),
    // Autumn: 03:00–03:59 is shown twice. The first 03:50 and the second 03:10; `earliest`
    // takes 03:10 as the first one, 40 minutes before the alarm.
    ("K03", "2025-10-26T03:50:00", "2025-10-26T03:10:00"),
    // Both in the repeated hour.
    ("K04", "2025-10-26T03:10:00", "2025-10-26T03:50:00"),
    // The first 03:50 and the second 03:10 with their offsets written: 20 minutes.
    (
        "K05",
        "2025-10-26T03:50:00+03:00",
        "2025-10-26T03:10:00+02:00",
    ),
    // Across the autumn change: 02:50 summer time to 04:05 winter time.
    ("K06", "2025-10-26T02:50:00", "2025-10-26T04:05:00"),
    // Ordinary winter and summer times.
    ("K07", "2025-01-15T10:00:00", "2025-01-15T10:12:00"),
    ("K08", "2025-07-01 12:00:00", "2025-07-01 12:31:30"),
    // Finnish midnights: 00:30 on 1 January 2025 is in 2025 (in UTC still 2024), 01:00 on
    // 1 January 2026 is not (in UTC still 2025), 00:30 on 1 November is in November.
    ("K09", "2025-01-01T00:30:00", "2025-01-01T00:41:00"),
    ("K10", "2026-01-01T01:00:00", "2026-01-01T01:10:00"),
    ("K11", "2025-11-01T00:30:00", "2025-11-01T00:45:00"),
    // An offset written in the text is taken as is.
    ("K12", "2025-03-30T02:55+02:00", "2025-03-30T04:05:00"),
];

/// The instant `text` names in Finnish time: a time shown twice is the earlier one
/// (`earliest`) or refused; `Err` with the code of the quarantine reason.
fn instant(text: &str, earliest: bool) -> Result<DateTime<Utc>, &'static str> {
    for f in ["%Y-%m-%dT%H:%M%:z", "%Y-%m-%dT%H:%M:%S%:z"] {
        if let Ok(t) = DateTime::parse_from_str(text, f) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    let naive = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .unwrap_or_else(|| panic!("{text}"));
    match Helsinki.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) if earliest => Ok(a.min(b).with_timezone(&Utc)),
        LocalResult::Ambiguous(..) => Err("ambiguous-local-time"),
        LocalResult::None => Err("nonexistent-local-time"),
    }
}

/// What the line must make of a mission.
#[derive(Debug, PartialEq)]
enum Fate {
    /// Published: whole minutes from alarm to arrival, the alarm's month and clock time in
    /// Finland.
    Published(String, String, String),
    /// Quarantined by these rules (`,`-separated), with the codes of the local-time reasons.
    Quarantined(String, Vec<&'static str>),
}

/// A mission's fate, from the line's rules and chrono-tz.
fn fate(alarm: &str, arrival: &str, earliest: bool) -> Fate {
    let (a, b) = match (instant(alarm, earliest), instant(arrival, earliest)) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            let (mut rules, mut why) = (Vec::new(), Vec::new());
            for (column, r) in [("alku", a), ("loppu", b)] {
                if let Err(code) = r {
                    rules.push(format!("local-time-{column}"));
                    why.push(code);
                }
            }
            return Fate::Quarantined(rules.join(","), why);
        }
    };
    let local = a.with_timezone(&Helsinki);
    if b < a {
        return Fate::Quarantined("ajat-jarjestyksessa".into(), vec![]);
    }
    if local.year() != 2025 {
        return Fate::Quarantined("alku-jaksolla".into(), vec![]);
    }
    Fate::Published(
        (b - a).num_seconds().div_euclid(60).to_string(),
        local.format("%Y-%m").to_string(),
        local.format("%Y-%m-%dT%H:%M").to_string(),
    )
}

/// Runs the line under an `ambiguous` policy; the report, and each mission's fate as the
/// run left it (from the published dataset and the quarantine).
fn run_with(policy: &str) -> (serde_json::Value, BTreeMap<String, Fate>) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let inbox = store.join("kesaaika/2025");
    std::fs::create_dir_all(&inbox).unwrap();
    let mut csv = String::from("id;alku;loppu\n");
    for (id, alarm, arrival) in MISSIONS {
        csv.push_str(&format!("{id};{alarm};{arrival}\n"));
    }
    std::fs::write(inbox.join("tehtavat.csv"), csv).unwrap();
    let to = format!("ambiguous: {policy}");
    let line = line_copy(
        dir.path(),
        "tests/lines/kesaaika.yaml",
        "kesaaika.yaml",
        &[("ambiguous: earliest", to.as_str())],
    );
    let s = store.to_str().unwrap();
    let args = [
        "run",
        line.to_str().unwrap(),
        "--store",
        s,
        "--param",
        "period=2025",
    ];
    let out = bin().args(args).arg("--json").output().unwrap();
    assert_succeeded(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut got = BTreeMap::new();
    let published = latest_release(&store, "kesaaika", "2025").join("kesaaika.csv");
    let published = std::fs::read_to_string(published).unwrap();
    let mut lines = published.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for l in lines {
        let cells: Vec<&str> = l.split(',').collect();
        let cell = |name: &str| cells[at(name)].to_string();
        let fate = Fate::Published(cell("minuutit"), cell("kuukausi"), cell("kello"));
        got.insert(cell("id"), fate);
    }
    let run_id = report["run_id"].as_str().unwrap();
    let quarantine = store.join(format!("quarantine/kesaaika/2025/{run_id}"));
    for (row, rules, reasons, _) in read_quarantine(&quarantine) {
        // The header is row 1.
        let (id, alarm, arrival) = MISSIONS[row as usize - 2];
        // A reason names the column and the zone, never the value.
        for value in [alarm, arrival] {
            assert!(!reasons.contains(&value[11..16]), "{id}: {reasons}");
        }
        let codes = reasons
            .split("; ")
            .filter_map(|r| r.split_once(':').map(|(code, _)| code))
            .filter(|code| code.ends_with("-local-time"))
            .map(|code| match code {
                "nonexistent-local-time" => "nonexistent-local-time",
                "ambiguous-local-time" => "ambiguous-local-time",
                other => panic!("{id}: {other}"),
            })
            .collect();
        got.insert(id.to_string(), Fate::Quarantined(rules, codes));
    }
    (report, got)
}

/// 02:55 → 04:05 on the night summer time starts is published as 10 minutes; 03:30 that
/// night is quarantined as a time that does not exist; the hour shown twice in October is
/// taken as summer time under `earliest` (an arrival at the second 03:10 after an alarm at
/// the first 03:50 then comes before it, and the order rule quarantines it) and quarantined
/// under `quarantine`; a time with its offset written is taken as written; the month and
/// the period are Finland's. Failed before: `local` and `timezone` were not keys of a line,
/// and timestamps were wall-clock values (70 minutes; 2026-01-01T01:00 in 2025 in UTC).
#[test]
fn local_times_are_instants_across_both_changes_of_the_clocks() {
    for (policy, earliest) in [("earliest", true), ("quarantine", false)] {
        let (report, got) = run_with(policy);
        let want: BTreeMap<String, Fate> = MISSIONS
            .iter()
            .map(|(id, alarm, arrival)| (id.to_string(), fate(alarm, arrival, earliest)))
            .collect();
        assert_eq!(got, want, "{policy}");
        // The run report counts the rows each rule quarantined, as for any rule.
        let steps = &report["steps"];
        let count = |rule: &str| {
            want.values()
                .filter(|f| matches!(f, Fate::Quarantined(r, _) if r.split(',').any(|x| x == rule)))
                .count() as u64
        };
        for (step, rule) in [
            ("tehtavat", "local-time-alku"),
            ("tehtavat", "local-time-loppu"),
            ("tarkistettu", "ajat-jarjestyksessa"),
            ("tarkistettu", "alku-jaksolla"),
        ] {
            let n = steps[step]["violations"][rule].as_u64().unwrap_or(0);
            assert_eq!(n, count(rule), "{policy}: {rule}");
        }
        let source_rejects = want
            .values()
            .filter(|f| matches!(f, Fate::Quarantined(r, _) if r.starts_with("local-time-")))
            .count() as u64;
        assert_eq!(steps["tehtavat"]["rows_in"], MISSIONS.len() as u64);
        assert_eq!(steps["tehtavat"]["rows_quarantined"], source_rejects);
        // No alarm in 2025 Finnish time is before the period's first (Finnish) midnight.
        let before = steps["tarkistettu"]["violations"]["alku-jakson-alusta"].as_u64();
        assert_eq!(before.unwrap_or(0), 0, "{policy}");
    }
    // The spring mission, with and without its offset written: 10 minutes.
    for id in ["K01", "K12"] {
        let (alarm, arrival) = MISSIONS
            .iter()
            .find(|m| m.0 == id)
            .map(|m| (m.1, m.2))
            .unwrap();
        assert_eq!(
            fate(alarm, arrival, true),
            Fate::Published("10".into(), "2025-03".into(), "2025-03-30T02:55".into())
        );
    }
}
