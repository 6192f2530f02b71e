//! The input of `rai`: one extract of RAI assessments per county (`<county>.csv`, the
//! submitter is the file's name), one row per assessment, rows spread over the counties by
//! population and over each county's municipalities. Each client has one to three
//! assessments in the half-year, mostly in one service type, some in both; only the latest
//! per service type counts, so a few of a client's assessments share a day: then the later
//! one's id is longer (numerically larger, often smaller as text), which the line's
//! tie-break must read as a number. `bad_share` of the rows are bad in one of the eleven
//! ways the line catches.
//!
//! Why a module of its own: the client with several assessments and the ids built to test
//! the tie-break are this line's alone, and generate.rs is near the house's size limit.

use std::io::Write;
use std::path::Path;

use chrono::{Datelike, Duration, NaiveDate};

use super::henkilosto::per_county;
use super::{COUNTIES, Places, Request, Rng, birth, hetu, io, writer};

const HEADER: &str = "arviointi_id;hetu;kunta;yksikko_id;palvelumuoto;arviointi_pvm;cps;adlh;maple";

/// The first and last day of a half-year `YYYY-Hn` (parsed as the line's parameter is).
fn half_year(period: &str) -> Result<(NaiveDate, NaiveDate), String> {
    use crate::line::params::{ParamValue, parse_value};
    match parse_value(crate::line::spec::ParamKind::HalfYear, period) {
        Ok(ParamValue::Period { start, end, .. }) => Ok((start, end)),
        _ => Err("the period of rai is a half-year, YYYY-H1 or YYYY-H2".into()),
    }
}

fn day(rng: &mut Rng, from: NaiveDate, to: NaiveDate) -> NaiveDate {
    from + Duration::days(rng.below(((to - from).num_days() + 1).max(1) as u64) as i64)
}

/// Assessment ids: running numbers from 1 (their length grows: 1, 2, … digits), and for a
/// client's second assessment on the same day a "late" id one digit longer than any running
/// one, starting with 1: numerically larger than every running id, as text smaller than
/// most.
struct Ids {
    next: u64,
    width: usize,
}

impl Ids {
    /// Ids for `rows` rows: the clients cut short at a county's end use at most two more
    /// each, so running ids stay below 10^width and a late id (width + 1 digits) is unique.
    fn new(rows: u64) -> Self {
        Self {
            next: 0,
            width: (rows + 100).to_string().len(),
        }
    }
    fn running(&mut self) -> String {
        self.next += 1;
        self.next.to_string()
    }
    fn late(&mut self) -> String {
        self.next += 1;
        format!("1{:0w$}", self.next, w = self.width)
    }
}

/// CPS, ADL-H and MAPLe of one assessment: related, and higher in 24-hour care.
fn scores(rng: &mut Rng, round_the_clock: bool) -> [u64; 3] {
    let shift = u64::from(round_the_clock);
    let cps = (rng.weighted(&[3.0, 4.0, 4.0, 3.0, 2.0, 1.0, 0.5]) as u64 + shift).min(6);
    let adlh = (cps + rng.below(5) + shift).saturating_sub(2).min(6);
    let maple = (1 + (cps + adlh) / 3 + rng.below(3))
        .saturating_sub(1)
        .clamp(1, 5);
    [cps, adlh, maple]
}

/// Makes an assessment row bad in one of the ways the line's rules catch; `previous` is the
/// id of the row before it in the file.
fn spoil(rng: &mut Rng, f: &mut [String; 9], previous: &str, first: NaiveDate, last: NaiveDate) {
    match rng.below(11) {
        0 if !previous.is_empty() => f[0] = previous.to_string(), // repeated id
        0 | 1 => f[1] = "010190-1234".into(),                     // invalid hetu
        2 => f[1] = String::new(),                                // hetu missing
        3 => f[2] = "999".into(),                                 // unknown municipality
        4 => f[4] = "omaishoito".into(),                          // unknown service type
        5 if rng.f64() < 0.5 => f[5] = (first - Duration::days(1)).to_string(), // before
        5 => f[5] = (last + Duration::days(1 + rng.below(60) as i64)).to_string(), // after
        6 => f[5] = format!("{}-02-30", first.year()),            // no such date
        7 => f[6] = "7".into(),                                   // CPS 7
        8 => f[7] = "7".into(),                                   // ADL-H 7
        9 => f[8] = "0".into(),                                   // MAPLe 0
        _ => f[6] = "kolme".into(),                               // text in a number
    }
}

/// One client's assessments (one to three; a tenth of clients in both service types), each
/// `[id, hetu, kunta, unit, service type, date, cps, adlh, maple]`.
fn client(
    rng: &mut Rng,
    ids: &mut Ids,
    area: &str,
    kunta: &str,
    (first, last): (NaiveDate, NaiveDate),
) -> Vec<[String; 9]> {
    let born = birth(rng, first.year() - 100, first.year() - 65);
    let temporary = rng.f64() < 0.02;
    let person = hetu(rng, born, temporary);
    let forms: &[&str] = match rng.weighted(&[6.0, 3.0, 1.0]) {
        0 => &["kotihoito"],
        1 => &["ymparivuorokautinen"],
        _ => &["kotihoito", "ymparivuorokautinen"],
    };
    let mut out: Vec<[String; 9]> = Vec::new();
    for _ in 0..1 + rng.weighted(&[5.0, 4.0, 2.0]) {
        let form = *rng.pick(forms);
        let unit = format!(
            "{area}-{}{:02}",
            &form[..2].to_uppercase(),
            1 + rng.below(6)
        );
        // About one in twenty repeat assessments is on the day of the one before.
        let (id, date) = match out.last() {
            Some(prev) if prev[4] == form && rng.f64() < 0.05 => (ids.late(), prev[5].clone()),
            _ => (ids.running(), day(rng, first, last).to_string()),
        };
        let [cps, adlh, maple] = scores(rng, form == "ymparivuorokautinen");
        out.push([
            id,
            person.clone(),
            kunta.to_string(),
            unit,
            form.to_string(),
            date,
            cps.to_string(),
            adlh.to_string(),
            maple.to_string(),
        ]);
    }
    out
}

/// Writes one extract per county with rows; returns the files written.
pub(super) fn rai(
    r: &Request,
    places: &Places,
    rng: &mut Rng,
    dir: &Path,
) -> Result<Vec<String>, String> {
    let days = half_year(r.period)?;
    let mut ids = Ids::new(r.rows);
    let mut files = Vec::new();
    for (c, ((area, _), n)) in COUNTIES.iter().zip(per_county(r.rows)).enumerate() {
        if n == 0 || places.by_county[c].is_empty() {
            continue;
        }
        let name = format!("{area}.csv");
        let mut w = writer(dir, &name)?;
        writeln!(w, "{HEADER}").map_err(io)?;
        let (mut written, mut previous) = (0, String::new());
        while written < n {
            let kunta = rng.pick(&places.by_county[c]).clone();
            for mut f in client(rng, &mut ids, area, &kunta, days) {
                if written == n {
                    break;
                }
                let id = f[0].clone();
                if rng.f64() < r.bad_share {
                    spoil(rng, &mut f, &previous, days.0, days.1);
                }
                writeln!(w, "{}", f.join(";")).map_err(io)?;
                (written, previous) = (written + 1, id);
            }
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
    fn assessments_are_spread_by_population_with_same_day_ties_and_a_share_of_bad_rows() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for dir in [&a, &b] {
            let r = Request {
                line: "rai",
                period: "2025-H2",
                rows: 5000,
                seed: 3,
                bad_share: 0.1,
                out: dir.path(),
            };
            assert!(!generate(&r).unwrap().is_empty());
        }
        let read = |d: &tempfile::TempDir, c: &str| {
            std::fs::read_to_string(d.path().join(format!("inbox/rai/2025-H2/{c}.csv")))
                .unwrap_or_default()
        };
        assert_eq!(read(&a, "90"), read(&b, "90"));
        let (first, last) = half_year("2025-H2").unwrap();
        let (mut rows, mut bad, mut late) = (0, 0, 0);
        for (c, _) in COUNTIES {
            for row in read(&a, c).lines().skip(1) {
                let f: Vec<&str> = row.split(';').collect();
                assert_eq!(f.len(), 9, "{row}");
                rows += 1;
                late += usize::from(f[0].len() == 5 && f[0].starts_with('1'));
                let score = |i: usize, lo: u64, hi: u64| {
                    f[i].parse::<u64>().is_ok_and(|v| (lo..=hi).contains(&v))
                };
                let good = crate::functions::hetu_problem(f[1]).is_none()
                    && f[2] != "999"
                    && ["kotihoito", "ymparivuorokautinen"].contains(&f[4])
                    && f[5]
                        .parse::<NaiveDate>()
                        .is_ok_and(|d| first <= d && d <= last)
                    && score(6, 0, 6)
                    && score(7, 0, 6)
                    && score(8, 1, 5);
                bad += usize::from(!good);
            }
        }
        assert_eq!(rows, 5000);
        // Repeated ids are bad too but not seen here: the other ten kinds are about 9 %.
        assert!((300..700).contains(&bad), "{bad} bad rows");
        assert!(late > 0, "no same-day repeat");
        let r = Request {
            line: "rai",
            period: "2025-Q1",
            rows: 1,
            seed: 1,
            bad_share: 0.0,
            out: a.path(),
        };
        assert!(generate(&r).unwrap_err().contains("half-year"));
    }
}
