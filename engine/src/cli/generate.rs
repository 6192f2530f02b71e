//! `valtava generate`: realistic synthetic input of any size for every national line.
//!
//! Deterministic for a seed. Counties are drawn by (synthetic) population, municipalities
//! within them from the 2023 reference; identity codes are valid (check character, real
//! dates, both century signs); times follow the day (more missions in the afternoon) and
//! the season (more in winter); a chosen share of rows is bad in one of the ways the lines'
//! rules catch. FHIR resources follow the Finnish base profiles (identity code identifier,
//! municipality-code extension). Output goes to `<out>/inbox/<line>/<period>/`, ready for
//! `valtava run --store <out>`; rows are written as they are made, so size is not limited
//! by memory. The monthly lines (`ensihoito`, `hoitoonpaasy`) also take a longer period —
//! a quarter, half-year (`2025-H1`) or year — and write each of its months' folders,
//! `--rows` rows each, as a line reading `{period.months}` expects them.
//! `henkilosto` and `rai` write one extract per county (`<county>.csv`), `sosiaalihuolto`
//! one CDA R2 document per file for a half-year, `talous` one workbook per county and year
//! (`<county>.xlsx`, whole years: `--rows` asks for the years that hold that many rows); see
//! their modules. `valvonta` writes one case-register snapshot per quarter. Ensihoito's
//! missions are transported with 60 % probability, in Kanta-Häme (`05`) with 35 % (counties
//! differ; the same draws, so the rows of every other county are as before).

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::Path;

use chrono::{Datelike, Duration, NaiveDate};

mod asiakaskokemus;
mod henkilosto;
mod rai;
mod sosiaalihuolto;
mod talous;
mod valvonta;

/// SplitMix64: small, fast and deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.f64() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

const CHECK: &[u8; 31] = b"0123456789ABCDEFHJKLMNPRSTUVWXY";

/// A valid personal identity code for a birth date; `temporary` draws 900–999.
pub fn hetu(rng: &mut Rng, born: NaiveDate, temporary: bool) -> String {
    let year = born.year();
    let sign = match year {
        1800..=1899 => '+',
        1900..=1999 => *rng.pick(&['-', '-', '-', 'Y']),
        _ => *rng.pick(&['A', 'A', 'A', 'B']),
    };
    let individual = if temporary {
        900 + rng.below(100)
    } else {
        2 + rng.below(898)
    };
    let (d, m, y) = (born.day(), born.month(), (year % 100) as u32);
    let number = (d as u64 * 10_000 + m as u64 * 100 + y as u64) * 1000 + individual;
    format!(
        "{d:02}{m:02}{y:02}{sign}{individual:03}{}",
        CHECK[(number % 31) as usize] as char
    )
}

/// Synthetic population weights of the counties (same as the example reference).
pub const COUNTIES: [(&str, f64); 22] = [
    ("01", 99_000.0),
    ("02", 201_000.0),
    ("03", 131_000.0),
    ("04", 277_000.0),
    ("05", 169_000.0),
    ("06", 198_000.0),
    ("07", 166_000.0),
    ("08", 158_000.0),
    ("09", 200_000.0),
    ("10", 193_000.0),
    ("11", 528_000.0),
    ("12", 163_000.0),
    ("13", 276_000.0),
    ("14", 190_000.0),
    ("15", 175_000.0),
    ("16", 193_000.0),
    ("17", 418_000.0),
    ("18", 69_000.0),
    ("19", 176_000.0),
    ("20", 170_000.0),
    ("21", 67_000.0),
    ("90", 674_000.0),
];

struct Places {
    by_county: Vec<Vec<String>>,
    weights: Vec<f64>,
}

impl Places {
    fn load() -> Result<Self, String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/reference/kunta_hyvinvointialue_2023.csv");
        let path = if path.exists() {
            path
        } else {
            Path::new("../shared/reference/kunta_hyvinvointialue_2023.csv").to_path_buf()
        };
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut by_county = vec![Vec::new(); COUNTIES.len()];
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            if let (Some(k), Some(c)) = (f.first(), f.get(2))
                && let Some(i) = COUNTIES.iter().position(|(code, _)| code == c)
            {
                by_county[i].push(k.to_string());
            }
        }
        let weights = COUNTIES
            .iter()
            .zip(&by_county)
            .map(|((_, w), k)| if k.is_empty() { 0.0 } else { *w })
            .collect();
        Ok(Self { by_county, weights })
    }
    fn municipality(&self, rng: &mut Rng) -> String {
        let c = rng.weighted(&self.weights);
        rng.pick(&self.by_county[c]).clone()
    }
}

/// What to make.
pub struct Request<'a> {
    pub line: &'a str,
    pub period: &'a str,
    pub rows: u64,
    pub seed: u64,
    pub bad_share: f64,
    pub out: &'a Path,
}

fn writer(dir: &Path, name: &str) -> Result<BufWriter<std::fs::File>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(name);
    Ok(BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?,
    ))
}

fn io(e: std::io::Error) -> String {
    e.to_string()
}

fn month_start(period: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d")
        .map_err(|_| format!("`{period}` is not a month YYYY-MM"))
}

/// Writes the input of one line; returns the files written.
pub fn generate(r: &Request) -> Result<Vec<String>, String> {
    let places = Places::load()?;
    let mut rng = Rng::new(r.seed);
    let dir = r.out.join("inbox").join(r.line).join(r.period);
    match r.line {
        "ensihoito" | "hoitoonpaasy" => by_month(r, &places),
        "henkilostomitoitus" => henkilostomitoitus(r, &places, &mut rng, &dir),
        "henkilosto" => henkilosto::henkilosto(r, &mut rng, &dir),
        "talous" => talous::talous(r, &mut rng),
        "valvonta" => valvonta::valvonta(r, &mut rng, &dir),
        "rokotukset" | "diabetes" => fhir(r, &places, &mut rng, &dir),
        "sosiaalihuolto" => sosiaalihuolto::sosiaalihuolto(r, &places, &mut rng, &dir),
        "rai" => rai::rai(r, &places, &mut rng, &dir),
        "asiakaskokemus" => asiakaskokemus::asiakaskokemus(r, &places, &mut rng, &dir),
        other => Err(format!(
            "no generator for `{other}`; lines: ensihoito, hoitoonpaasy, henkilostomitoitus, henkilosto, rokotukset, diabetes, sosiaalihuolto, talous, valvonta, rai, asiakaskokemus"
        )),
    }
}

/// The input of a monthly line for each month of `r.period` (a month, quarter, half-year
/// or year), in the month's folder: the first month with `r.seed`, each next one with the
/// next seed, and the ids numbered on across the months so that they stay unique.
fn by_month(r: &Request, places: &Places) -> Result<Vec<String>, String> {
    use crate::line::params::{PeriodPart, parse_value};
    let months = parse_value(crate::line::spec::ParamKind::Period, r.period)
        .ok()
        .and_then(|p| p.part(PeriodPart::Months))
        .ok_or_else(|| {
            format!(
                "`{}` is not a period of months: YYYY-MM, YYYY-Qn, YYYY-Hn or YYYY",
                r.period
            )
        })?;
    let mut files = Vec::new();
    for (i, month) in months.iter().enumerate() {
        let one = Request {
            period: month,
            seed: r.seed.wrapping_add(i as u64),
            ..*r
        };
        let mut rng = Rng::new(one.seed);
        let dir = r.out.join("inbox").join(r.line).join(month);
        let first = i as u64 * r.rows;
        let made = match r.line {
            "ensihoito" => ensihoito(&one, places, &mut rng, &dir, first)?,
            _ => hoitoonpaasy(&one, places, &mut rng, &dir, first)?,
        };
        for f in made {
            if !files.contains(&f) {
                files.push(f);
            }
        }
    }
    Ok(files)
}

/// `valtava generate`: writes the input and prints the files written; exit 2 for a share of
/// bad rows outside 0–1, 1 if the input cannot be made.
pub(super) fn run(
    line: &str,
    period: &str,
    rows: u64,
    seed: u64,
    bad_share: f64,
    out: &Path,
) -> std::process::ExitCode {
    if !(0.0..=1.0).contains(&bad_share) {
        super::common::error("--bad-share is a share from 0 to 1");
        return std::process::ExitCode::from(2);
    }
    let request = Request {
        line,
        period,
        rows,
        seed,
        bad_share,
        out,
    };
    match generate(&request) {
        Ok(files) => {
            print_written(&files);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            super::common::error(&e);
            std::process::ExitCode::from(1)
        }
    }
}

/// The files written, one a line; past a hundred (a document per file), each folder once
/// with its count instead.
fn print_written(files: &[String]) {
    if files.len() <= 100 {
        files.iter().for_each(|f| println!("{f}"));
        return;
    }
    let mut folders: std::collections::BTreeMap<&str, usize> = Default::default();
    for f in files {
        *folders
            .entry(f.rsplit_once('/').map_or("", |(d, _)| d))
            .or_default() += 1;
    }
    for (folder, n) in folders {
        println!("{folder}/ ({n} files)");
    }
}

fn birth(rng: &mut Rng, from: i32, to: i32) -> NaiveDate {
    let y = from + rng.below((to - from + 1) as u64) as i32;
    NaiveDate::from_ymd_opt(y, 1 + rng.below(12) as u32, 1 + rng.below(28) as u32)
        .unwrap_or_default()
}

/// One month of missions, numbered from `first + 1`.
fn ensihoito(
    r: &Request,
    places: &Places,
    rng: &mut Rng,
    dir: &Path,
    first: u64,
) -> Result<Vec<String>, String> {
    let start = month_start(r.period)?;
    let days = (start
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(start)
        - start)
        .num_days();
    write_population(r, start)?;
    let mut w = writer(dir, "tehtavat.csv")?;
    writeln!(w, "tehtava_id;hetu;kunta;halytys_aika;kohteessa_aika;kiireellisyys;tehtavakoodi;riskialue;kuljetettu").map_err(io)?;
    // More missions in the afternoon and evening.
    let hours: Vec<f64> = (0..24).map(|h| if (8..22).contains(&h) { 3.0 } else { 1.0 } + if (14..20).contains(&h) { 1.0 } else { 0.0 }).collect();
    let mut line = String::with_capacity(160);
    for i in first + 1..=first + r.rows {
        line.clear();
        let (mut fields, t0) = mission(i, start, days, &hours, places, rng);
        if rng.f64() < r.bad_share {
            spoil_mission(rng, &mut fields, start, t0);
        }
        let _ = write!(line, "{}", fields.join(";"));
        writeln!(w, "{line}").map_err(io)?;
    }
    w.flush().map_err(io)?;
    Ok(vec![
        dir.join("tehtavat.csv").display().to_string(),
        r.out
            .join("reference/vaesto/vaesto_synthetic.csv")
            .display()
            .to_string(),
    ])
}

/// Writes the population reference for the per-1 000 rates of ensihoito.
fn write_population(r: &Request, start: NaiveDate) -> Result<(), String> {
    let mut pop = writer(&r.out.join("reference/vaesto"), "vaesto_synthetic.csv")?;
    writeln!(pop, "hyvinvointialue;vuosi;vaesto").map_err(io)?;
    for (c, w) in COUNTIES {
        writeln!(pop, "{c};{};{}", start.year(), w as u64).map_err(io)?;
    }
    Ok(())
}

/// The fields of mission `i` (a good row) and its alarm time.
fn mission(
    i: u64,
    start: NaiveDate,
    days: i64,
    hours: &[f64],
    places: &Places,
    rng: &mut Rng,
) -> ([String; 9], chrono::NaiveDateTime) {
    let t0 = start.and_hms_opt(0, 0, 0).unwrap_or_default()
        + Duration::days(rng.below(days as u64) as i64)
        + Duration::hours(rng.weighted(hours) as i64)
        + Duration::seconds(rng.below(3600) as i64);
    let urgency = ["A", "B", "C", "D"][rng.weighted(&[1.0, 3.0, 4.0, 2.0])];
    let base = match urgency {
        "A" => 7.0,
        "B" => 10.0,
        "C" => 14.0,
        _ => 20.0,
    };
    let minutes = (base * (0.4 + rng.f64() * 1.6) + rng.f64() * 10.0) as i64;
    let arrived = rng.f64() > 0.04;
    let identified = rng.f64() > 0.1;
    let born = birth(rng, 1925, 2024);
    let temporary = rng.f64() < 0.01;
    let h = if identified {
        hetu(rng, born, temporary)
    } else {
        String::new()
    };
    let t1 = if arrived {
        (t0 + Duration::minutes(minutes))
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    } else {
        String::new()
    };
    // Realistic variation between counties: Kanta-Häme (`05`) transports clearly fewer
    // (35 %, else 60 %), a deviation the funnel plot of `valvonta` finds.
    let kunta = places.municipality(rng);
    let carried = if places.by_county[4].contains(&kunta) {
        0.35
    } else {
        0.6
    };
    let fields = [
        format!("E{i:09}"),
        h,
        kunta,
        t0.format("%Y-%m-%dT%H:%M:%S").to_string(),
        t1,
        urgency.to_string(),
        rng.pick(&["700", "703", "704", "706", "745", "774", "781", "793"])
            .to_string(),
        rng.pick(&["1", "1", "2", "3", "4"]).to_string(),
        (if rng.f64() < carried { "1" } else { "0" }).to_string(),
    ];
    (fields, t0)
}

/// Makes a mission row bad in one of the ways the line's rules catch.
fn spoil_mission(
    rng: &mut Rng,
    fields: &mut [String; 9],
    start: NaiveDate,
    t0: chrono::NaiveDateTime,
) {
    match rng.below(6) {
        0 => fields[1] = "131052-308U".into(), // check character
        1 => fields[2] = "999".into(),         // unknown municipality
        2 => fields[5] = "E".into(),           // urgency
        3 => {
            fields[3] = (start - Duration::days(1))
                .format("%Y-%m-%dT12:00:00")
                .to_string()
        } // outside the period
        4 => fields[8] = "kyllä".into(),       // not 0/1
        _ => {
            fields[4] = (t0 - Duration::minutes(5))
                .format("%Y-%m-%dT%H:%M:%S")
                .to_string()
        } // before the alarm
    }
}

/// One month of visits, numbered from `first + 1`.
fn hoitoonpaasy(
    r: &Request,
    places: &Places,
    rng: &mut Rng,
    dir: &Path,
    first: u64,
) -> Result<Vec<String>, String> {
    let start = month_start(r.period)?;
    let days = (start
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(start)
        - start)
        .num_days();
    let mut w = writer(dir, "avohilmo.csv")?;
    writeln!(w, "kaynti_id;hetu;kunta;yhteydenotto_pvm;hoidon_tarve_pvm;kaynti_pvm;kiireellisyys;ammattiryhma").map_err(io)?;
    let waits = [0, 1, 2, 3, 5, 7, 8, 10, 12, 14, 15, 20, 30, 45, 60, 95, 120];
    for i in first + 1..=first + r.rows {
        let visit = start + Duration::days(rng.below(days as u64) as i64);
        let need = visit - Duration::days(*rng.pick(&waits));
        let contact = need - Duration::days(rng.below(3) as i64);
        let born = birth(rng, 1930, 2024);
        let mut f = [
            format!("K{i:09}"),
            hetu(rng, born, false),
            places.municipality(rng),
            contact.to_string(),
            need.to_string(),
            visit.to_string(),
            (if rng.f64() < 0.8 {
                "kiireeton"
            } else {
                "kiireellinen"
            })
            .to_string(),
            ["laakari", "hoitaja", "muu"][rng.weighted(&[3.0, 5.0, 1.0])].to_string(),
        ];
        if rng.f64() < r.bad_share {
            match rng.below(4) {
                0 => f[3] = (need + Duration::days(3)).to_string(),
                1 => f[2] = "999".into(),
                2 => f[7] = "kirurgi".into(),
                _ => f[5] = (start - Duration::days(2)).to_string(),
            }
        }
        writeln!(w, "{}", f.join(";")).map_err(io)?;
    }
    w.flush().map_err(io)?;
    Ok(vec![dir.join("avohilmo.csv").display().to_string()])
}

fn henkilostomitoitus(
    r: &Request,
    places: &Places,
    rng: &mut Rng,
    dir: &Path,
) -> Result<Vec<String>, String> {
    let (first, last) = henkilosto::quarter(r.period, r.line)?;
    // ISO weeks whose Thursday lies in the quarter.
    let mut weeks = Vec::new();
    let mut d = first;
    while d <= last {
        if d.weekday() == chrono::Weekday::Thu {
            let iso = d.iso_week();
            weeks.push(format!("{}-W{:02}", iso.year(), iso.week()));
        }
        d += Duration::days(1);
    }
    let units = (r.rows / weeks.len().max(1) as u64).max(1);
    let mut w = writer(dir, "yksikot.csv")?;
    writeln!(w, "yksikko_id;kunta;viikko;asiakkaat;valiton_tyoaika_h").map_err(io)?;
    for u in 1..=units {
        let kunta = places.municipality(rng);
        let clients = 10 + rng.below(40);
        let level = 0.5 + rng.f64() * 0.35;
        for week in &weeks {
            let mut hours = format!(
                "{:.1}",
                clients as f64 * (level + rng.f64() * 0.1 - 0.05) * 38.25
            );
            let mut c = clients.to_string();
            if rng.f64() < r.bad_share {
                match rng.below(2) {
                    0 => c = "0".into(),
                    _ => hours = "-1".into(),
                }
            }
            writeln!(w, "Y{u:06};{kunta};{week};{c};{hours}").map_err(io)?;
        }
    }
    w.flush().map_err(io)?;
    Ok(vec![dir.join("yksikot.csv").display().to_string()])
}

const MUNICIPALITY_EXT: &str =
    "https://hl7.fi/fhir/finnish-base-profiles/StructureDefinition/municipality-code";

/// The vaccines of rokotukset, each with the codings it may be recorded with.
const VACCINES: [(&str, &[(&str, &str)]); 6] = [
    (
        "MPR",
        &[
            ("http://hl7.org/fhir/sid/cvx", "03"),
            ("urn:oid:1.2.246.537.6.32.2007", "J07BD52"),
        ],
    ),
    (
        "DTaP-IPV-Hib",
        &[
            ("http://hl7.org/fhir/sid/cvx", "120"),
            ("urn:oid:1.2.246.537.6.32.2007", "J07CA06"),
        ],
    ),
    ("PCV", &[("http://hl7.org/fhir/sid/cvx", "133")]),
    (
        "HPV",
        &[
            ("http://hl7.org/fhir/sid/cvx", "165"),
            ("urn:oid:1.2.246.537.6.32.2007", "J07BM03"),
        ],
    ),
    ("INFLUENSSA", &[("http://hl7.org/fhir/sid/cvx", "140")]),
    ("COVID-19", &[("http://hl7.org/fhir/sid/cvx", "208")]),
];

/// A buffered output file.
type Out = BufWriter<std::fs::File>;

fn fhir(r: &Request, places: &Places, rng: &mut Rng, dir: &Path) -> Result<Vec<String>, String> {
    let year: i32 = r
        .period
        .parse()
        .map_err(|_| format!("the period of {} is a year", r.line))?;
    let mut pw = writer(dir, "Patient.000.ndjson")?;
    let (mut iw, mut cw, mut ow) = match r.line {
        "rokotukset" => (Some(writer(dir, "Immunization.000.ndjson")?), None, None),
        _ => (
            None,
            Some(writer(dir, "Condition.000.ndjson")?),
            Some(writer(dir, "Observation.000.ndjson")?),
        ),
    };
    let mut n_events = 0u64;
    for i in 1..=r.rows {
        let born = if r.line == "rokotukset" {
            birth(rng, year - 18, year)
        } else {
            birth(rng, 1935, year - 18)
        };
        let id = format!("p{i:09}");
        let patient = patient(rng, places, born, &id);
        if rng.f64() < r.bad_share {
            writeln!(
                pw,
                "{{\"resourceType\": \"Patient\", \"id\": \"{id}\", broken"
            )
            .map_err(io)?;
            continue;
        }
        writeln!(pw, "{patient}").map_err(io)?;
        if let Some(w) = iw.as_mut() {
            immunizations(w, rng, born, &id, &mut n_events)?;
        }
        if let (Some(c), Some(o)) = (cw.as_mut(), ow.as_mut())
            && rng.f64() < 0.5
        {
            diabetes_events(c, o, rng, (i, &id), year, &mut n_events)?;
        }
    }
    pw.flush().map_err(io)?;
    for w in [iw.as_mut(), cw.as_mut(), ow.as_mut()]
        .into_iter()
        .flatten()
    {
        w.flush().map_err(io)?;
    }
    Ok(vec![dir.display().to_string()])
}

/// The Patient resource `id`, born on `born`, mostly with a home municipality.
fn patient(rng: &mut Rng, places: &Places, born: NaiveDate, id: &str) -> serde_json::Value {
    let mut patient = serde_json::json!({
        "resourceType": "Patient", "id": id,
        "meta": { "profile": ["https://hl7.fi/fhir/finnish-base-profiles/StructureDefinition/fi-base-patient"] },
        "identifier": [{ "system": "urn:oid:1.2.246.21", "value": hetu(rng, born, false) }],
        "birthDate": born.to_string(),
    });
    if rng.f64() > 0.03 {
        patient["extension"] = serde_json::json!([{ "url": MUNICIPALITY_EXT, "valueCoding": { "system": "urn:oid:1.2.246.537.6.21", "version": "2003", "code": places.municipality(rng) } }]);
    }
    patient
}

/// Writes the Immunizations of patient `id` (most vaccines, a few not done).
fn immunizations(
    w: &mut Out,
    rng: &mut Rng,
    born: NaiveDate,
    id: &str,
    n_events: &mut u64,
) -> Result<(), String> {
    for (_, codes) in &VACCINES {
        if rng.f64() < 0.8 {
            let (system, code) = rng.pick(codes);
            *n_events += 1;
            let n_events = *n_events;
            let when = born + Duration::days(30 + rng.below(365 * 12) as i64);
            let status = if rng.f64() < 0.05 {
                "not-done"
            } else {
                "completed"
            };
            writeln!(w, "{}", serde_json::json!({
                "resourceType": "Immunization", "id": format!("i{n_events:010}"), "status": status,
                "vaccineCode": { "coding": [{ "system": system, "code": code }] },
                "patient": { "reference": format!("Patient/{id}") },
                "occurrenceDateTime": format!("{when}T10:00:00+02:00"),
            })).map_err(io)?;
        }
    }
    Ok(())
}

/// Writes the diabetes Condition of patient `(i, id)` and a few of its Observations.
fn diabetes_events(
    c: &mut Out,
    o: &mut Out,
    rng: &mut Rng,
    (i, id): (u64, &str),
    year: i32,
    n_events: &mut u64,
) -> Result<(), String> {
    let coding = rng.pick(&[
        ("urn:oid:1.2.246.537.6.1.1999", "E11.9"),
        ("urn:oid:1.2.246.537.6.1.1999", "E10.9"),
        ("http://snomed.info/sct", "44054006"),
    ]);
    writeln!(c, "{}", serde_json::json!({
        "resourceType": "Condition", "id": format!("c{i:09}"),
        "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active" }] },
        "code": { "coding": [{ "system": coding.0, "code": coding.1 }] },
        "subject": { "reference": format!("Patient/{id}") },
    })).map_err(io)?;
    for k in 0..rng.below(4) {
        *n_events += 1;
        let n_events = *n_events;
        let day = NaiveDate::from_ymd_opt(year, 1, 1).unwrap_or_default()
            + Duration::days(rng.below(365) as i64);
        let (code, system, value) = if rng.f64() < 0.5 {
            (
                "4548-4",
                "http://loinc.org",
                serde_json::json!(((5.5 + rng.f64() * 4.0) * 10.0).round() / 10.0),
            )
        } else {
            (
                "59261-8",
                "http://loinc.org",
                serde_json::json!(38 + rng.below(45)),
            )
        };
        writeln!(
            o,
            "{}",
            serde_json::json!({
                "resourceType": "Observation", "id": format!("o{n_events:010}"), "status": "final",
                "code": { "coding": [{ "system": system, "code": code }] },
                "subject": { "reference": format!("Patient/{id}") },
                "effectiveDateTime": format!("{day}T08:{k:02}:00+02:00"),
                "valueQuantity": { "value": value },
            })
        )
        .map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_codes_are_valid_and_the_generator_is_deterministic() {
        let mut rng = Rng::new(7);
        for _ in 0..2000 {
            let born = birth(&mut rng, 1850, 2030);
            let temporary = rng.f64() < 0.5;
            let h = hetu(&mut rng, born, temporary);
            assert_eq!(crate::functions::hetu_problem(&h), None, "{h}");
            assert_eq!(crate::functions::hetu_birth_date(&h), Some(born), "{h}");
        }
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for (dir, seed) in [(&a, 1), (&b, 1)] {
            generate(&Request {
                line: "ensihoito",
                period: "2025-01",
                rows: 500,
                seed,
                bad_share: 0.1,
                out: dir.path(),
            })
            .unwrap();
        }
        let read = |d: &tempfile::TempDir| {
            std::fs::read(d.path().join("inbox/ensihoito/2025-01/tehtavat.csv")).unwrap()
        };
        assert_eq!(read(&a), read(&b));
        let c = tempfile::tempdir().unwrap();
        generate(&Request {
            line: "ensihoito",
            period: "2025-01",
            rows: 500,
            seed: 2,
            bad_share: 0.1,
            out: c.path(),
        })
        .unwrap();
        assert_ne!(read(&a), read(&c));
        assert_eq!(String::from_utf8(read(&a)).unwrap().lines().count(), 501);
    }

    #[test]
    fn a_half_year_is_written_month_by_month() {
        let out = tempfile::tempdir().unwrap();
        let files = generate(&Request {
            line: "ensihoito",
            period: "2025-H1",
            rows: 50,
            seed: 3,
            bad_share: 0.0,
            out: out.path(),
        })
        .unwrap();
        assert_eq!(files.len(), 7, "six months and the population: {files:?}");
        let mut ids = std::collections::BTreeSet::new();
        for m in 1..=6 {
            let text = std::fs::read_to_string(
                out.path()
                    .join(format!("inbox/ensihoito/2025-{m:02}/tehtavat.csv")),
            )
            .unwrap();
            for row in text.lines().skip(1) {
                let f: Vec<&str> = row.split(';').collect();
                assert!(ids.insert(f[0].to_string()), "{} twice", f[0]);
                assert!(f[3].starts_with(&format!("2025-{m:02}-")), "{row}");
            }
        }
        assert_eq!(ids.len(), 300);
        assert!(!out.path().join("inbox/ensihoito/2025-07").exists());
        assert!(!out.path().join("inbox/ensihoito/2025-H1").exists());
        for bad in ["2025-H3", "2025-W01"] {
            let r = Request {
                line: "hoitoonpaasy",
                period: bad,
                rows: 1,
                seed: 1,
                bad_share: 0.0,
                out: out.path(),
            };
            assert!(generate(&r).unwrap_err().contains("not a period of months"));
        }
    }
}
