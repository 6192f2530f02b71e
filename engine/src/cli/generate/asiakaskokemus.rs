//! The input of `asiakaskokemus`: anonymous survey answers, one file per county
//! (`<county>.csv`, the submitter is the file's name), one row per respondent, no identity
//! codes. Rows are spread over the counties by population and over the forms of service;
//! each question is answered 1–5, `9` (cannot say) or not at all. One cell is made small on
//! purpose whatever the size: the family care of the smallest county has only three
//! answers 1–5 to question k3 (the others say 9 or nothing), so that its share is
//! suppressed alone. `bad_share` of the rows are bad in one of the ways the line
//! quarantines.

use std::io::Write;
use std::path::Path;

use chrono::{Duration, NaiveDate};

use super::henkilosto::per_county;
use super::{COUNTIES, Places, Request, Rng, io, writer};

const HEADER: &str = "vastaus_id;kunta;palvelumuoto;vastauspvm;k1;k2;k3;k4;k5;suosittelu";

const FORMS: [&str; 3] = ["kotihoito", "ymparivuorokautinen", "omaishoito"];
const FORM_WEIGHTS: [f64; 3] = [0.55, 0.3, 0.15];

/// Answers to a question and their weights: mostly positive, some cannot say or skip.
const ANSWERS: [&str; 7] = ["1", "2", "3", "4", "5", "9", ""];
const ANSWER_WEIGHTS: [f64; 7] = [1.0, 2.0, 3.0, 6.0, 6.0, 1.0, 1.0];

/// Recommendations 0–10 or none, and their weights.
const RECOMMENDATION_WEIGHTS: [f64; 12] =
    [1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 9.0, 3.0];

/// The county whose family care answers question k3 1–5 only three times.
const RARE: &str = "21";

/// The year `YYYY` (parsed as the line's parameter is): its first day.
fn year(period: &str, line: &str) -> Result<NaiveDate, String> {
    match crate::line::params::parse_value(crate::line::spec::ParamKind::Year, period) {
        Ok(crate::line::params::ParamValue::Period { start, .. }) => Ok(start),
        _ => Err(format!("the period of {line} is a year, YYYY")),
    }
}

/// One good answer row's fields; `rare` counts the k3 answers 1–5 of the rare cell so far.
fn answer(
    rng: &mut Rng,
    area: &str,
    kunta: &str,
    first: NaiveDate,
    rare: &mut u32,
) -> [String; 10] {
    let form = FORMS[rng.weighted(&FORM_WEIGHTS)];
    let day = first + Duration::days(rng.below(365) as i64);
    let mut f: [String; 10] = Default::default();
    f[1] = kunta.to_string();
    f[2] = form.to_string();
    f[3] = day.to_string();
    for a in &mut f[4..9] {
        *a = ANSWERS[rng.weighted(&ANSWER_WEIGHTS)].to_string();
    }
    if area == RARE && form == "omaishoito" {
        if *rare < 3 {
            f[6] = "4".into();
            *rare += 1;
        } else {
            f[6] = rng.pick(&["9", "9", ""]).to_string();
        }
    }
    let r = rng.weighted(&RECOMMENDATION_WEIGHTS);
    f[9] = if r == 11 {
        String::new()
    } else {
        r.to_string()
    };
    f
}

/// Makes an answer row bad in one of the ways the line catches; `i` is its number in its
/// county's file.
fn spoil(rng: &mut Rng, f: &mut [String; 10], area: &str, i: u64, first: NaiveDate) {
    match rng.below(9) {
        0 if i > 1 => f[0] = format!("{area}-{:07}", i - 1), // duplicate id
        0 | 1 => f[1] = "999".into(),                        // unknown municipality
        2 => f[2] = "laitoshoito".into(),                    // unknown form of service
        3 => f[3] = (first - Duration::days(1)).to_string(), // outside the year
        4 => f[4] = "6".into(),                              // answer out of range
        5 => f[9] = "11".into(),                             // recommendation out of range
        6 => f[5] = "hyvä".into(),                           // answer not a number
        7 => f[3] = first.format("%Y-02-30").to_string(),    // no such date
        _ => f[1] = String::new(),                           // municipality missing
    }
}

/// Writes one file of answers per county with rows; returns the files written.
pub(super) fn asiakaskokemus(
    r: &Request,
    places: &Places,
    rng: &mut Rng,
    dir: &Path,
) -> Result<Vec<String>, String> {
    let first = year(r.period, r.line)?;
    let mut files = Vec::new();
    for (c, ((area, _), n)) in COUNTIES.iter().zip(per_county(r.rows)).enumerate() {
        if n == 0 || places.by_county[c].is_empty() {
            continue;
        }
        let name = format!("{area}.csv");
        let mut w = writer(dir, &name)?;
        writeln!(w, "{HEADER}").map_err(io)?;
        let mut rare = 0;
        for i in 1..=n {
            let kunta = rng.pick(&places.by_county[c]).clone();
            let mut f = answer(rng, area, &kunta, first, &mut rare);
            f[0] = format!("{area}-{i:07}");
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

    /// Deterministic, every county's file, and the rare cell has three answers 1–5 to k3.
    #[test]
    fn answers_are_deterministic_with_one_rarely_answered_question() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for dir in [&a, &b] {
            let r = Request {
                line: "asiakaskokemus",
                period: "2025",
                rows: 20_000,
                seed: 3,
                bad_share: 0.0,
                out: dir.path(),
            };
            assert_eq!(generate(&r).unwrap().len(), COUNTIES.len());
        }
        let read = |d: &tempfile::TempDir, c: &str| {
            std::fs::read_to_string(d.path().join(format!("inbox/asiakaskokemus/2025/{c}.csv")))
                .unwrap()
        };
        assert_eq!(read(&a, "90"), read(&b, "90"));
        let text = read(&a, RARE);
        let family: Vec<Vec<&str>> = (text.lines().skip(1))
            .map(|l| l.split(';').collect::<Vec<_>>())
            .filter(|f| f[2] == "omaishoito")
            .collect();
        assert!(family.len() >= 5, "{}", family.len());
        let answered = family
            .iter()
            .filter(|f| ("1"..="5").contains(&f[6]))
            .count();
        assert_eq!(answered, 3);
    }
}
