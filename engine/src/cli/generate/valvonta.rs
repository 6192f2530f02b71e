//! The input of `valvonta`: one snapshot of the supervision authority's case register at
//! the end of the quarter (`asiat.csv`), `--rows` cases spread over the counties by
//! population. Like a real register it holds every case opened before the quarter's end:
//! about half opened in the quarter, the rest over the year before — of which some were
//! resolved before the quarter (the line filters them, they are not errors), some in it,
//! and some are still open. Preliminary statements (`ennakko`) are quick, permits and
//! complaints slow. `bad_share` of the rows are bad in one of the ways the line's rules
//! (or its source) quarantine.

use std::io::Write;
use std::path::Path;

use chrono::{Duration, NaiveDate};

use super::{COUNTIES, Request, Rng, io, writer};

const HEADER: &str =
    "asia_id;viranomainen;asiatyyppi;hyvinvointialue;vireille_pvm;ratkaisu_pvm;toimenpide";

/// Case types with weights and the longest processing time in days.
const TYPES: [(&str, f64, u64); 5] = [
    ("kantelu", 5.0, 300),
    ("ilmoitus", 3.0, 200),
    ("omavalvonta", 2.0, 150),
    ("lupa", 2.0, 240),
    ("ennakko", 1.0, 40),
];

const MEASURES: [(&str, f64); 5] = [
    ("ei_toimenpiteita", 5.0),
    ("ohjaus", 3.0),
    ("huomautus", 2.0),
    ("maarays", 1.0),
    ("uhkasakko", 0.3),
];

const AUTHORITIES: [&str; 2] = ["Valvira", "Lupa- ja valvontavirasto"];

/// Writes the snapshot of `r.period` (a quarter) into `dir`.
pub(super) fn valvonta(r: &Request, rng: &mut Rng, dir: &Path) -> Result<Vec<String>, String> {
    let (first, last) = super::henkilosto::quarter(r.period, "valvonta")?;
    let weights: Vec<f64> = COUNTIES.iter().map(|(_, w)| *w).collect();
    let type_weights: Vec<f64> = TYPES.iter().map(|t| t.1).collect();
    let measure_weights: Vec<f64> = MEASURES.iter().map(|m| m.1).collect();
    let mut w = writer(dir, "asiat.csv")?;
    writeln!(w, "{HEADER}").map_err(io)?;
    let before = first - Duration::days(365);
    for i in 1..=r.rows {
        let county = COUNTIES[rng.weighted(&weights)].0;
        let (kind, _, longest) = TYPES[rng.weighted(&type_weights)];
        let opened = if rng.f64() < 0.5 {
            day(rng, first, last)
        } else {
            day(rng, before, first - Duration::days(1))
        };
        let resolved = opened + Duration::days(3 + rng.below(longest) as i64);
        let measure = MEASURES[rng.weighted(&measure_weights)].0;
        let done = resolved <= last;
        let mut f = [
            format!("V{i:09}"),
            rng.pick(&AUTHORITIES).to_string(),
            kind.to_string(),
            county.to_string(),
            opened.to_string(),
            if done {
                resolved.to_string()
            } else {
                String::new()
            },
            if done {
                measure.to_string()
            } else {
                String::new()
            },
        ];
        if rng.f64() < r.bad_share {
            spoil(rng, &mut f, i, last);
        }
        writeln!(w, "{}", f.join(";")).map_err(io)?;
    }
    w.flush().map_err(io)?;
    Ok(vec![dir.join("asiat.csv").display().to_string()])
}

/// A day from `from` to `to`, both included.
fn day(rng: &mut Rng, from: NaiveDate, to: NaiveDate) -> NaiveDate {
    from + Duration::days(rng.below((to - from).num_days() as u64 + 1) as i64)
}

/// Makes case `i` bad in one of the ways the line quarantines.
fn spoil(rng: &mut Rng, f: &mut [String; 7], i: u64, last: NaiveDate) {
    match rng.below(9) {
        0 if i > 1 => f[0] = format!("V{:09}", i - 1), // repeated id
        0 | 1 => f[2] = "valitus".into(),              // unknown case type
        2 => f[3] = "99".into(),                       // unknown county
        3 => f[4] = (last + Duration::days(3)).to_string(), // opened after the snapshot
        4 => {
            // resolved before it was opened
            f[5] = (last - Duration::days(40)).to_string();
            f[4] = (last - Duration::days(20)).to_string();
            f[6] = "ohjaus".into();
        }
        5 => {
            // resolved after the snapshot
            f[5] = (last + Duration::days(2)).to_string();
            f[6] = "ohjaus".into();
        }
        6 => {
            f[6] = if f[5].is_empty() {
                "huomautus".into()
            } else {
                String::new()
            }
        } // measure iff resolved
        7 => f[4] = "2025-02-30".into(), // not a date
        _ => {
            // unknown measure
            f[5] = last.to_string();
            f[6] = "sakko".into();
        }
    }
}
