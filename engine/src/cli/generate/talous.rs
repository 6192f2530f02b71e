//! The input of `talous`: one Excel workbook per county and year
//! (`inbox/talous/<year>/<county>.xlsx`, sheet `Talous`), a header row, one row per service
//! class and a `YHT` row that is the sum of the rows above it, as a spreadsheet's `SUM`
//! gives it. Euros are numeric cells or text in Finnish format (`1 234 567,89`, groups by
//! space, no-break space or narrow no-break space; minus U+2212) or plain text.
//!
//! The data definition fixes the size of a year: 22 counties × (12 classes + YHT) = 286
//! rows. So `--rows N` cannot make one year larger; it asks for the years that hold N rows:
//! ⌈N / 286⌉ consecutive years from `--period` on, each in its own folder (ready for a range
//! run), with the population reference of every one of them. Every year is whole — a county
//! missing would be a finding of the line, not a size.
//!
//! `bad_share` spoils a class row with that probability, in one of the ways the line's row
//! rules catch (unknown class, negative euros, a second row of a class, text that is no
//! number), and a workbook with that probability in the way its workbook rule catches (the
//! `YHT` row 100 000 € off: the whole workbook is quarantined). The bytes depend only on the
//! seed: the document's creation time is fixed (the zip's times are fixed by the writer).

use std::path::{Path, PathBuf};

use chrono::Datelike;
use rust_xlsxwriter::{DocProperties, ExcelDateTime, Workbook, XlsxError};

use super::{COUNTIES, Request, Rng, io, writer};

/// The service classes (`reference/palveluluokat.csv`) and their euros per inhabitant a year.
const CLASSES: [(&str, i64); 12] = [
    ("P01", 420),
    ("P02", 210),
    ("P03", 1650),
    ("P04", 120),
    ("P05", 260),
    ("P06", 1150),
    ("P07", 480),
    ("P08", 520),
    ("P09", 230),
    ("P10", 190),
    ("P11", 140),
    ("P12", 380),
];

/// The rows of a year by definition: every county's class rows and its `YHT` row.
pub(super) const ROWS_PER_YEAR: u64 = (COUNTIES.len() * (CLASSES.len() + 1)) as u64;

const HEADER: [&str; 4] = [
    "hyvinvointialue",
    "palveluluokka",
    "toimintakulut",
    "toimintatuotot",
];

/// A euro amount of a row, in cents, or text that is no number.
#[derive(Debug, Clone, PartialEq)]
enum Euros {
    Cents(i64),
    NotANumber(&'static str),
}

impl Euros {
    fn cents(&self) -> i64 {
        match self {
            Euros::Cents(c) => *c,
            Euros::NotANumber(_) => 0,
        }
    }
}

/// A row of a county's workbook: class, expenses, income.
type Row = (String, Euros, Euros);

/// The first year of the period (`YYYY`, parsed as the line's parameter is).
fn first_year(period: &str) -> Result<i32, String> {
    match crate::line::params::parse_value(crate::line::spec::ParamKind::Year, period) {
        Ok(crate::line::params::ParamValue::Period { start, .. }) => Ok(start.year()),
        _ => Err("the period of talous is a year, YYYY".to_string()),
    }
}

/// `cents` as Finnish text: groups of three separated by `space`, a decimal comma.
fn finnish(cents: i64, space: char) -> String {
    let digits = (cents.unsigned_abs() / 100).to_string();
    let mut whole = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            whole.push(space);
        }
        whole.push(d);
    }
    let sign = if cents < 0 { "\u{2212}" } else { "" };
    format!("{sign}{whole},{:02}", cents.unsigned_abs() % 100)
}

/// The class rows of a county of `people` inhabitants, some spoiled; then the `YHT` row.
/// The `YHT` row sums the rows as written (text that is no number counts as nothing) and
/// is 100 000 € off when the workbook is spoiled.
fn county_rows(rng: &mut Rng, people: i64, bad_share: f64) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::with_capacity(CLASSES.len() + 1);
    for (i, (class, per)) in CLASSES.iter().enumerate() {
        let kulut = people * per * (85 + rng.below(31) as i64) + rng.below(100) as i64;
        let tuotot = kulut / 100 * (2 + rng.below(17) as i64) / 100 * 100 + rng.below(100) as i64;
        let mut row: Row = (class.to_string(), Euros::Cents(kulut), Euros::Cents(tuotot));
        if rng.f64() < bad_share {
            match rng.below(4) {
                0 => row.0 = "P99".into(),                     // unknown class
                1 => row.2 = Euros::Cents(-tuotot),            // negative income
                2 if i > 0 => row.0 = CLASSES[i - 1].0.into(), // the class's second row
                _ => {
                    // Expenses that are no number (the income 0: the row adds nothing).
                    row.1 = Euros::NotANumber("ei tiedossa");
                    row.2 = Euros::Cents(0);
                }
            }
        }
        rows.push(row);
    }
    let kulut: i64 = rows.iter().map(|r| r.1.cents()).sum();
    let mut tuotot: i64 = rows.iter().map(|r| r.2.cents()).sum();
    if rng.f64() < bad_share {
        tuotot += 10_000_000;
    }
    rows.push(("YHT".into(), Euros::Cents(kulut), Euros::Cents(tuotot)));
    rows
}

/// Writes a euro cell: a number, or text in one of the forms counties write.
fn write_euros(
    sheet: &mut rust_xlsxwriter::Worksheet,
    rng: &mut Rng,
    (row, col): (u32, u16),
    euros: &Euros,
) -> Result<(), XlsxError> {
    let cents = match euros {
        Euros::NotANumber(text) => return sheet.write_string(row, col, *text).map(|_| ()),
        Euros::Cents(c) => *c,
    };
    // A negative amount as Finnish text, with the minus sign U+2212.
    let form = if cents < 0 { 7 } else { rng.below(10) };
    match form {
        0..=4 => sheet.write_number(row, col, cents as f64 / 100.0),
        5 | 6 => sheet.write_string(row, col, finnish(cents, ' ')),
        7 => sheet.write_string(row, col, finnish(cents, '\u{a0}')),
        8 => sheet.write_string(row, col, finnish(cents, '\u{202f}')),
        _ => sheet.write_string(row, col, format!("{}.{:02}", cents / 100, cents % 100)),
    }
    .map(|_| ())
}

/// A county's workbook as bytes, with a fixed creation time.
fn workbook(rng: &mut Rng, area: &str, rows: &[Row], year: i32) -> Result<Vec<u8>, XlsxError> {
    let mut book = Workbook::new();
    let created = ExcelDateTime::from_ymd(year.clamp(1900, 9999) as u16, 1, 1)?;
    book.set_properties(
        &DocProperties::new()
            .set_author("Valtava generate (synthetic)")
            .set_creation_datetime(&created),
    );
    let sheet = book.add_worksheet();
    sheet.set_name("Talous")?;
    for (c, h) in HEADER.iter().enumerate() {
        sheet.write_string(0, c as u16, *h)?;
    }
    for (i, (class, kulut, tuotot)) in rows.iter().enumerate() {
        let r = i as u32 + 1;
        sheet.write_string(r, 0, area)?;
        sheet.write_string(r, 1, class)?;
        write_euros(sheet, rng, (r, 2), kulut)?;
        write_euros(sheet, rng, (r, 3), tuotot)?;
    }
    book.save_to_buffer()
}

/// Writes every county's workbook for each year the rows ask for, and the population
/// reference of those years; returns the files written.
pub(super) fn talous(r: &Request, rng: &mut Rng) -> Result<Vec<String>, String> {
    let first = first_year(r.period)?;
    let years = r.rows.max(1).div_ceil(ROWS_PER_YEAR) as i32;
    let mut files = Vec::new();
    for year in first..first + years {
        let dir = r.out.join("inbox/talous").join(year.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (area, people) in COUNTIES {
            let rows = county_rows(rng, people as i64, r.bad_share);
            let bytes = workbook(rng, area, &rows, year).map_err(|e| e.to_string())?;
            let path = dir.join(format!("{area}.xlsx"));
            std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            files.push(path.display().to_string());
        }
    }
    files.push(population(r.out, first, years)?.display().to_string());
    Ok(files)
}

/// The population reference of the years (the same synthetic counties every year).
fn population(out: &Path, first: i32, years: i32) -> Result<PathBuf, String> {
    use std::io::Write;
    let dir = out.join("reference/vaesto");
    let mut w = writer(&dir, "vaesto_synthetic.csv")?;
    writeln!(w, "hyvinvointialue;vuosi;vaesto").map_err(io)?;
    for year in first..first + years {
        for (c, people) in COUNTIES {
            writeln!(w, "{c};{year};{}", people as u64).map_err(io)?;
        }
    }
    w.flush().map_err(io)?;
    Ok(dir.join("vaesto_synthetic.csv"))
}

#[cfg(test)]
mod tests {
    use super::super::generate;
    use super::*;

    #[test]
    fn finnish_text_groups_thousands_with_a_decimal_comma() {
        assert_eq!(finnish(123_456_789, ' '), "1 234 567,89");
        assert_eq!(finnish(-1_250_000, '\u{a0}'), "\u{2212}12\u{a0}500,00");
        assert_eq!(finnish(5, ' '), "0,05");
    }

    #[test]
    fn the_totals_row_sums_the_rows_unless_the_workbook_is_spoiled() {
        let mut rng = Rng::new(3);
        for _ in 0..50 {
            let rows = county_rows(&mut rng, 100_000, 0.0);
            assert_eq!(rows.len(), CLASSES.len() + 1);
            let (parts, total) = rows.split_at(CLASSES.len());
            assert_eq!(total[0].0, "YHT");
            let sum = |f: fn(&Row) -> i64| parts.iter().map(f).sum::<i64>();
            assert_eq!(total[0].1.cents(), sum(|r| r.1.cents()));
            assert_eq!(total[0].2.cents(), sum(|r| r.2.cents()));
            assert!(parts.iter().all(|r| r.1.cents() > 0 && r.2.cents() >= 0));
        }
        let (mut off, mut bad) = (0, 0);
        for _ in 0..400 {
            let rows = county_rows(&mut rng, 100_000, 0.1);
            let (parts, total) = rows.split_at(CLASSES.len());
            let income: i64 = parts.iter().map(|r| r.2.cents()).sum();
            off += usize::from(total[0].2.cents() != income);
            bad += parts
                .iter()
                .enumerate()
                .filter(|(i, r)| {
                    r.0 != CLASSES[*i].0 || r.2.cents() < 0 || matches!(r.1, Euros::NotANumber(_))
                })
                .count();
        }
        assert!((20..70).contains(&off), "{off} workbooks off");
        assert!((300..700).contains(&bad), "{bad} bad rows");
    }

    #[test]
    fn rows_ask_for_whole_years_and_the_bytes_follow_the_seed() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for dir in [&a, &b] {
            let r = Request {
                line: "talous",
                period: "2025",
                rows: ROWS_PER_YEAR + 1,
                seed: 9,
                bad_share: 0.05,
                out: dir.path(),
            };
            // Two years of workbooks and the population reference.
            assert_eq!(generate(&r).unwrap().len(), 2 * COUNTIES.len() + 1);
        }
        for file in ["inbox/talous/2025/90.xlsx", "inbox/talous/2026/01.xlsx"] {
            let read = |d: &tempfile::TempDir| std::fs::read(d.path().join(file)).unwrap();
            assert_eq!(read(&a), read(&b), "{file}");
            assert_eq!(&read(&a)[..2], b"PK");
        }
        let pop = std::fs::read_to_string(a.path().join("reference/vaesto/vaesto_synthetic.csv"))
            .unwrap();
        assert_eq!(pop.lines().count(), 1 + 2 * COUNTIES.len());
        let r = Request {
            line: "talous",
            period: "2025-Q1",
            rows: 1,
            seed: 1,
            bad_share: 0.0,
            out: a.path(),
        };
        assert!(generate(&r).unwrap_err().contains("year"));
    }
}
