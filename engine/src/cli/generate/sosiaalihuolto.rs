//! The input of `sosiaalihuolto`: one HL7 CDA R2 document per file
//! (`<id>.xml`, namespace `urn:hl7-org:v3`), as the Kanta archive hands out social-welfare
//! client documents: child-welfare notifications (`LSILM`, with `arvioitu` when assessed)
//! and service-need assessments (`PTA`, with `valmistunut` when completed), received on
//! days of the half-year, in municipalities drawn by county population. Some children have
//! several documents; `bad_share` of the documents are bad in one of the twelve ways the
//! line catches (identity code invalid or missing, 18 or over, unknown municipality,
//! received outside the half-year or not at all or on no real day, a date before receipt,
//! a repeated id, another document kind, a date element of the other kind).
//!
//! Why one file per document and a module of its own: that is the archive's form (and the
//! line's `location`), so 10 000 documents are 10 000 small files; each is written whole
//! with one system call, which keeps large requests quick.

use std::fmt::Write as _;
use std::path::Path;

use chrono::{Datelike, Duration, NaiveDate};

use super::{COUNTIES, Places, Request, Rng, hetu, io};

const ELEMENTS: &str = "urn:valtava:sosiaalihuolto-tietosisalto";

/// One document before it is written.
struct Doc {
    id: String,
    seq: u64,
    laji: &'static str,
    hetu: Option<String>,
    born: NaiveDate,
    county: usize,
    kunta: String,
    /// HL7 TS as written (a spoiled one may name no day); `None`: the element is absent.
    received: Option<String>,
    arvioitu: Option<NaiveDate>,
    valmistunut: Option<NaiveDate>,
}

/// The first and last day of a half-year `YYYY-Hn` (parsed as the line's parameter is).
fn half_year(period: &str) -> Result<(NaiveDate, NaiveDate), String> {
    use crate::line::params::{ParamValue, parse_value};
    match parse_value(crate::line::spec::ParamKind::HalfYear, period) {
        Ok(ParamValue::Period { start, end, .. }) => Ok((start, end)),
        _ => Err("the period of sosiaalihuolto is a half-year, YYYY-H1 or YYYY-H2".into()),
    }
}

fn ts(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

fn day(rng: &mut Rng, from: NaiveDate, to: NaiveDate) -> NaiveDate {
    from + Duration::days(rng.below(((to - from).num_days() + 1).max(1) as u64) as i64)
}

/// The organisation (custodian) OID of a county; synthetic.
fn organisation(county: usize) -> String {
    format!("1.2.246.10.9900{}00.10.0", COUNTIES[county].0)
}

/// A child with the place of its documents.
#[derive(Clone)]
struct Child {
    hetu: String,
    born: NaiveDate,
    county: usize,
    kunta: String,
}

/// A good document: a new child, or (one in four) the previous document's child again.
fn regular(
    rng: &mut Rng,
    places: &Places,
    seq: u64,
    days: (NaiveDate, NaiveDate),
    last: Option<&Child>,
) -> (Doc, Child) {
    let received = day(rng, days.0, days.1);
    let child = match last {
        Some(c) if rng.f64() < 0.25 => c.clone(),
        _ => {
            let born = received - Duration::days(20 + rng.below(17 * 365 - 40) as i64);
            let county = rng.weighted(&places.weights);
            let kunta = rng.pick(&places.by_county[county]).clone();
            let temporary = rng.below(50) == 0;
            let hetu = hetu(rng, born, temporary);
            Child {
                hetu,
                born,
                county,
                kunta,
            }
        }
    };
    let laji = if rng.f64() < 0.65 { "LSILM" } else { "PTA" };
    let arvioitu = (laji == "LSILM" && rng.f64() < 0.9)
        .then(|| received + Duration::days(rng.below(16) as i64));
    let valmistunut = (laji == "PTA" && rng.f64() < 0.8)
        .then(|| received + Duration::days(7 + rng.below(119) as i64));
    let doc = Doc {
        id: format!("SH-{}-{seq:07}", days.0.year()),
        seq,
        laji,
        hetu: Some(child.hetu.clone()),
        born: child.born,
        county: child.county,
        kunta: child.kunta.clone(),
        received: Some(ts(received)),
        arvioitu,
        valmistunut,
    };
    (doc, child)
}

/// Makes a document bad in one of the ways the line catches.
fn spoil(rng: &mut Rng, d: &mut Doc, first: NaiveDate) {
    let received = d
        .received
        .as_deref()
        .and_then(|t| NaiveDate::parse_from_str(t, "%Y%m%d").ok());
    let received = received.unwrap_or(first);
    match rng.below(12) {
        0 => d.hetu = Some("131052-308U".into()), // check character
        1 => {
            // 18 or over on the day of receipt
            d.born = received - Duration::days(18 * 366 + rng.below(300) as i64);
            d.hetu = Some(hetu(rng, d.born, false));
        }
        2 => d.kunta = "999".into(), // unknown municipality
        3 => d.received = Some(ts(first - Duration::days(1 + rng.below(30) as i64))), // outside
        4 => {
            d.laji = "LSILM";
            (d.arvioitu, d.valmistunut) = (Some(received - Duration::days(3)), None);
        }
        5 if d.seq > 1 => d.id = format!("SH-{}-{:07}", first.year(), d.seq - 1), // repeated id
        5 | 6 => d.laji = "SHASIAK", // another document kind
        7 => d.received = None,
        8 => d.received = Some(format!("{}0230", first.year())), // no such day
        9 => {
            d.laji = "PTA";
            (d.arvioitu, d.valmistunut) = (None, Some(received - Duration::days(1)));
        }
        10 => d.hetu = None,
        _ => {
            // a date element of the other kind
            d.laji = "PTA";
            (d.arvioitu, d.valmistunut) = (Some(received), None);
        }
    }
}

fn observation(x: &mut String, name: &str, value: &str) {
    let v = if name == "kunta" {
        format!(r#"<value xsi:type="CD" code="{value}" codeSystem="urn:oid:1.2.246.537.6.21"/>"#)
    } else {
        format!(r#"<value xsi:type="TS" value="{value}"/>"#)
    };
    let _ = write!(
        x,
        "          <entry>\n            <observation classCode=\"OBS\" moodCode=\"EVN\">\n              \
         <code code=\"{name}\" codeSystem=\"{ELEMENTS}\"/>\n              {v}\n            \
         </observation>\n          </entry>\n"
    );
}

/// The document as CDA R2 XML.
fn xml(d: &Doc) -> String {
    let org = organisation(d.county);
    let title = match d.laji {
        "LSILM" => "Lastensuojeluilmoitus",
        "PTA" => "Palvelutarpeen arviointi",
        _ => "Sosiaalihuollon asiakaskertomus",
    };
    let created = d.received.clone().unwrap_or_else(|| ts(d.born));
    let created = format!(
        "{}{:02}{:02}00+0200",
        &created[..created.len().min(8)],
        8 + d.seq % 9,
        d.seq % 60
    );
    let mut x = String::with_capacity(3000);
    let _ = write!(
        x,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <realmCode code="FI"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="1.2.246.777.11.2023.1"/>
  <id root="{org}.2025" extension="{id}"/>
  <code code="{laji}" codeSystem="1.2.246.537.6.1263" displayName="{title}"/>
  <title>{title}</title>
  <effectiveTime value="{created}"/>
  <confidentialityCode code="5" codeSystem="1.2.246.537.5.40153"/>
  <languageCode code="fi-FI"/>
  <recordTarget>
    <patientRole>
      <id root="{org}.1" extension="AS{seq:07}"/>
"#,
        id = d.id,
        laji = d.laji,
        seq = d.seq,
    );
    if let Some(h) = &d.hetu {
        let _ = writeln!(x, r#"      <id root="1.2.246.21" extension="{h}"/>"#);
    }
    let _ = write!(
        x,
        r#"      <patient><birthTime value="{born}"/></patient>
    </patientRole>
  </recordTarget>
  <author>
    <time value="{created}"/>
    <assignedAuthor><id root="1.2.246.537.26" extension="{author}"/><representedOrganization><id root="{org}"/></representedOrganization></assignedAuthor>
  </author>
  <custodian>
    <assignedCustodian><representedCustodianOrganization><id root="{org}"/><name>Hyvinvointialue {county}</name></representedCustodianOrganization></assignedCustodian>
  </custodian>
  <component>
    <structuredBody>
      <component>
        <section>
          <title>{title}</title>
          <text>Synteettinen aineisto.</text>
"#,
        born = ts(d.born),
        author = 100_000_000 + d.seq % 97,
        county = COUNTIES[d.county].0,
    );
    observation(&mut x, "kunta", &d.kunta);
    if let Some(r) = &d.received {
        observation(&mut x, "vastaanotettu", r);
    }
    if let Some(a) = d.arvioitu {
        observation(&mut x, "arvioitu", &ts(a));
    }
    if let Some(v) = d.valmistunut {
        observation(&mut x, "valmistunut", &ts(v));
    }
    x.push_str("        </section>\n      </component>\n    </structuredBody>\n  </component>\n</ClinicalDocument>\n");
    x
}

/// Writes `r.rows` documents, one per file; returns the files written.
pub(super) fn sosiaalihuolto(
    r: &Request,
    places: &Places,
    rng: &mut Rng,
    dir: &Path,
) -> Result<Vec<String>, String> {
    let days = half_year(r.period)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files = Vec::with_capacity(r.rows as usize);
    let mut last: Option<Child> = None;
    for seq in 1..=r.rows {
        let (mut d, child) = regular(rng, places, seq, days, last.as_ref());
        if rng.f64() < r.bad_share {
            spoil(rng, &mut d, days.0);
        }
        let path = dir.join(format!("sh-{seq:07}.xml"));
        std::fs::write(&path, xml(&d)).map_err(io)?;
        files.push(path.display().to_string());
        last = Some(child);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::super::generate;
    use super::*;

    /// What a generated file says: (id, kind, hetu, kunta, received, assessed, completed).
    fn fields(x: &str) -> [Option<String>; 7] {
        let attr = |after: &str, name: &str| -> Option<String> {
            let rest = &x[x.find(after)? + after.len()..];
            let v = rest.find(&format!("{name}=\""))? + name.len() + 2;
            Some(rest[v..v + rest[v..].find('"')?].to_string())
        };
        [
            attr("<id root=\"1.2.246.10.", "extension"),
            attr("<templateId", "code"),
            attr("root=\"1.2.246.21\"", "extension"),
            attr("code=\"kunta\"", "code"),
            attr("code=\"vastaanotettu\"", "value"),
            attr("code=\"arvioitu\"", "value"),
            attr("code=\"valmistunut\"", "value"),
        ]
    }

    /// Whether a document passes every rule of the line (the id's uniqueness apart).
    fn good(f: &[Option<String>; 7], first: NaiveDate, last: NaiveDate) -> bool {
        let date =
            |v: &Option<String>| v.as_deref().map(|t| NaiveDate::parse_from_str(t, "%Y%m%d"));
        let (Some(Ok(received)), Some(h), Some(kind)) = (date(&f[4]), &f[2], f[1].as_deref())
        else {
            return false;
        };
        let (assessed, completed) = (
            date(&f[5]).map(|d| d.unwrap()),
            date(&f[6]).map(|d| d.unwrap()),
        );
        let age = crate::functions::hetu_birth_date(h)
            .and_then(|b| crate::functions::age_on(b, received));
        matches!(kind, "LSILM" | "PTA")
            && crate::functions::hetu_problem(h).is_none()
            && age.is_some_and(|a| a < 18)
            && f[3].as_deref() != Some("999")
            && (first..=last).contains(&received)
            && assessed.is_none_or(|a| a >= received && kind == "LSILM")
            && completed.is_none_or(|c| c >= received && kind == "PTA")
    }

    #[test]
    fn documents_are_one_per_file_deterministic_and_bad_ones_a_share() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for dir in [&a, &b] {
            let r = Request {
                line: "sosiaalihuolto",
                period: "2025-H2",
                rows: 3000,
                seed: 7,
                bad_share: 0.1,
                out: dir.path(),
            };
            assert_eq!(generate(&r).unwrap().len(), 3000);
        }
        let read = |d: &tempfile::TempDir, n: u64| {
            std::fs::read_to_string(
                d.path()
                    .join(format!("inbox/sosiaalihuolto/2025-H2/sh-{n:07}.xml")),
            )
            .unwrap()
        };
        assert_eq!(read(&a, 1234), read(&b, 1234));
        let (first, last) = half_year("2025-H2").unwrap();
        let (mut bad, mut ids) = (0, std::collections::BTreeSet::new());
        for n in 1..=3000 {
            let x = read(&a, n);
            assert!(x.contains("<ClinicalDocument xmlns=\"urn:hl7-org:v3\""));
            let f = fields(&x);
            let repeated = !ids.insert(f[0].clone().unwrap());
            bad += usize::from(repeated || !good(&f, first, last));
        }
        assert!((200..400).contains(&bad), "{bad} bad documents");
        let r = Request {
            line: "sosiaalihuolto",
            period: "2025-03",
            rows: 1,
            seed: 1,
            bad_share: 0.0,
            out: a.path(),
        };
        assert!(generate(&r).unwrap_err().contains("half-year"));
    }
}
