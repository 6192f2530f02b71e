//! The input of `henkilosto`: one HR extract per county (`<county>.csv`, the submitter is
//! the file's name), one row per employment. Rows are spread over the counties by
//! population; some persons hold two employments; a few employments lie outside the
//! quarter (the line filters them, they are not errors); `bad_share` of the rows are bad in
//! one of the ways the line's rules quarantine.

use std::io::Write;
use std::path::Path;

use chrono::{Datelike, Duration, NaiveDate};

use super::{COUNTIES, Request, Rng, birth, hetu, io, writer};

const HEADER: &str =
    "tyosuhde_id;hetu;hyvinvointialue;ammattikoodi;alkupvm;loppupvm;tyoaikaprosentti";

/// Occupation codes (classification 2010, 5 digits) with weights: every group of the line
/// and some others (which map to `muut`).
const CODES: [(&str, f64); 17] = [
    ("22110", 2.0),
    ("22120", 2.0),
    ("22121", 2.0),
    ("22210", 4.0),
    ("22220", 4.0),
    ("32210", 4.0),
    ("32211", 4.0),
    ("32220", 4.0),
    ("53210", 4.0),
    ("53211", 4.0),
    ("53220", 4.0),
    ("26350", 2.0),
    ("34120", 2.0),
    ("41100", 1.0),
    ("96290", 1.0),
    ("24110", 1.0),
    ("33440", 1.0),
];

const PERCENTS: [&str; 8] = ["100", "100", "100", "80", "60", "50", "93.33", "75.5"];

/// The first and last day of a quarter `YYYY-Qn` (parsed as the line's parameter is).
pub(super) fn quarter(period: &str, line: &str) -> Result<(NaiveDate, NaiveDate), String> {
    match crate::line::params::parse_value(crate::line::spec::ParamKind::Quarter, period) {
        Ok(crate::line::params::ParamValue::Period { start, end, .. }) => Ok((start, end)),
        _ => Err(format!("the period of {line} is a quarter, YYYY-Qn")),
    }
}

/// How many of `rows` fall to each county, by population (cumulative rounding: they sum
/// to `rows`). Also the `rai` and `asiakaskokemus` generators'.
pub(super) fn per_county(rows: u64) -> Vec<u64> {
    let total: f64 = COUNTIES.iter().map(|(_, w)| w).sum();
    let mut cum = 0.0;
    let mut done = 0u64;
    COUNTIES
        .iter()
        .map(|(_, w)| {
            cum += w;
            let upto = (cum / total * rows as f64).round() as u64;
            let n = upto.saturating_sub(done);
            done = upto.max(done);
            n
        })
        .collect()
}

fn day(rng: &mut Rng, from: NaiveDate, to: NaiveDate) -> NaiveDate {
    from + Duration::days(rng.below(((to - from).num_days() + 1).max(1) as u64) as i64)
}

/// Start and end (empty: ongoing) of a good employment: mostly valid throughout the
/// quarter, some ending or starting in it, a few only inside it or outside it.
fn span(rng: &mut Rng, first: NaiveDate, last: NaiveDate) -> (NaiveDate, String) {
    let long_ago = first - Duration::days(15 * 365);
    let before = first - Duration::days(1);
    match rng.weighted(&[6.0, 2.0, 2.0, 1.0, 0.4]) {
        0 => {
            let start = day(rng, long_ago, before);
            let end = if rng.f64() < 0.2 {
                day(rng, last, last + Duration::days(640)).to_string()
            } else {
                String::new()
            };
            (start, end)
        }
        1 => (
            day(rng, long_ago, before),
            day(rng, first, last).to_string(),
        ),
        2 => (day(rng, first + Duration::days(1), last), String::new()),
        3 => {
            let start = day(rng, first, last - Duration::days(31));
            (start, day(rng, start, last).to_string())
        }
        // Outside the quarter: filtered (counted), not quarantined.
        _ if rng.f64() < 0.5 => {
            let start = day(rng, long_ago, before - Duration::days(400));
            (start, day(rng, start, before).to_string())
        }
        _ => (
            day(rng, last + Duration::days(1), last + Duration::days(90)),
            String::new(),
        ),
    }
}

/// Makes an employment row bad in one of the ways the line's rules catch; `i` is the row's
/// number in its county file.
fn spoil(rng: &mut Rng, f: &mut [String; 7], area: &str, i: u64, first: NaiveDate) {
    match rng.below(11) {
        0 if i > 1 => f[0] = format!("{area}-{:07}", i - 1), // duplicate id
        0 | 1 => f[1] = "010190-1234".into(),                // invalid hetu
        2 => f[2] = "99".into(),                             // unknown county
        3 => f[3] = f[3][..4].to_string(),                   // code not 5 digits
        4 => f[3] = format!("{}A{}", &f[3][..2], &f[3][3..]), // code not digits
        5 => f[6] = "0".into(),                              // percent 0
        6 => f[6] = "120".into(),                            // percent > 100
        7 => {
            // ends before it starts
            f[4] = (first + Duration::days(59)).to_string();
            f[5] = (first + Duration::days(31)).to_string();
        }
        8 => f[4] = format!("{}-02-30", first.year()), // no such date
        9 => f[1] = String::new(),                     // hetu missing
        _ => f[6] = "sata".into(),                     // percent not a number
    }
}

/// Writes one extract per county with rows; returns the files written.
pub(super) fn henkilosto(r: &Request, rng: &mut Rng, dir: &Path) -> Result<Vec<String>, String> {
    let (first, last) = quarter(r.period, r.line)?;
    let weights: Vec<f64> = CODES.iter().map(|(_, w)| *w).collect();
    let mut files = Vec::new();
    for ((area, _), n) in COUNTIES.iter().zip(per_county(r.rows)) {
        if n == 0 {
            continue;
        }
        let name = format!("{area}.csv");
        let mut w = writer(dir, &name)?;
        writeln!(w, "{HEADER}").map_err(io)?;
        let mut person = String::new();
        for i in 1..=n {
            // About one employment in seven is the previous person's second one.
            if i == 1 || rng.f64() >= 0.15 {
                let born = birth(rng, first.year() - 67, first.year() - 18);
                person = hetu(rng, born, false);
            }
            let (start, end) = span(rng, first, last);
            let mut f = [
                format!("{area}-{i:07}"),
                person.clone(),
                area.to_string(),
                CODES[rng.weighted(&weights)].0.to_string(),
                start.to_string(),
                end,
                rng.pick(&PERCENTS).to_string(),
            ];
            if rng.f64() < r.bad_share {
                spoil(rng, &mut f, area, i, first);
            }
            writeln!(w, "{}", f.join(";")).map_err(io)?;
        }
        w.flush().map_err(io)?;
        files.push(dir.join(name).display().to_string());
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::super::generate;
    use super::*;

    #[test]
    fn counties_get_rows_by_population_and_bad_rows_are_a_share() {
        assert_eq!(per_county(12_345).iter().sum::<u64>(), 12_345);
        assert_eq!(per_county(0).iter().sum::<u64>(), 0);
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for dir in [&a, &b] {
            let r = Request {
                line: "henkilosto",
                period: "2025-Q2",
                rows: 5000,
                seed: 9,
                bad_share: 0.1,
                out: dir.path(),
            };
            assert_eq!(generate(&r).unwrap().len(), COUNTIES.len());
        }
        let read = |d: &tempfile::TempDir, c: &str| {
            std::fs::read_to_string(d.path().join(format!("inbox/henkilosto/2025-Q2/{c}.csv")))
                .unwrap()
        };
        assert_eq!(read(&a, "90"), read(&b, "90"));
        let (mut rows, mut bad) = (0, 0);
        for (c, _) in COUNTIES {
            let text = read(&a, c);
            assert_eq!(text.lines().next(), Some(HEADER));
            for row in text.lines().skip(1) {
                let f: Vec<&str> = row.split(';').collect();
                assert_eq!(f.len(), 7, "{row}");
                rows += 1;
                let good = crate::functions::hetu_problem(f[1]).is_none()
                    && f[2] == c
                    && f[3].len() == 5
                    && f[3].bytes().all(|b| b.is_ascii_digit())
                    && f[4].parse::<NaiveDate>().is_ok()
                    && f[6].parse::<f64>().is_ok_and(|p| p > 0.0 && p <= 100.0)
                    && (f[5].is_empty() || f[5] >= f[4]);
                bad += usize::from(!good);
            }
        }
        assert_eq!(rows, 5000);
        assert!((300..700).contains(&bad), "{bad} bad rows");
        let r = Request {
            line: "henkilosto",
            period: "2025-03",
            rows: 1,
            seed: 1,
            bad_share: 0.0,
            out: a.path(),
        };
        assert!(generate(&r).unwrap_err().contains("quarter"));
    }
}
