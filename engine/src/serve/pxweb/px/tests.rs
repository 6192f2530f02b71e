use std::collections::BTreeMap;

use super::*;
use crate::serve::pxweb::data::cube;
use crate::serve::pxweb::model::{Role, sample};
use crate::serve::pxweb::selection::everything;

/// A PX file read back as a reader reads it: each keyword (with its subkey) and its
/// values, and the data cells.
struct Parsed {
    keys: BTreeMap<String, Vec<String>>,
    data: Vec<String>,
}

fn parse(text: &str) -> Parsed {
    let mut keys = BTreeMap::new();
    let mut data = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let (key, after) = split_outside_quotes(rest, '=');
        let (value, next) = split_outside_quotes(after, ';');
        if key.trim() == "DATA" {
            data = (value.split_whitespace())
                .map(|t| t.trim_matches('"').to_string())
                .collect();
        } else {
            assert!(
                keys.insert(key.trim().to_string(), values(value)).is_none(),
                "{key} twice"
            );
        }
        rest = next.trim_start();
    }
    Parsed { keys, data }
}

/// `text` split at the first `at` outside quotes.
fn split_outside_quotes(text: &str, at: char) -> (&str, &str) {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == at && !quoted {
            return (&text[..i], &text[i + c.len_utf8()..]);
        }
    }
    (text, "")
}

/// Values between commas: quoted parts (adjacent ones joined, as the parts of a long
/// text are) or bare words.
fn values(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let part: String = chars.by_ref().take_while(|&d| d != '"').collect();
                current.get_or_insert_with(String::new).push_str(&part);
            }
            ',' => out.push(current.take().unwrap_or_default()),
            c if c.is_whitespace() => {}
            c => current.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(current);
    out
}

#[test]
fn a_px_file_reads_back_to_its_cells_codes_and_labels() {
    let m = sample();
    let all = everything(&m);
    let cells = cube(&m, &all);
    let text = write(&m, &all, &cells);
    let px = parse(&text);
    let key = |k: &str| {
        px.keys
            .get(k)
            .unwrap_or_else(|| panic!("no {k} in\n{text}"))
    };
    assert_eq!(key("CODEPAGE"), &["utf-8"]);
    assert_eq!(key("MATRIX"), &["testi"]);
    assert_eq!(key("STUB"), &["Muuttuja jakso", "Muuttuja alue"]);
    assert_eq!(key("HEADING"), &["Tiedot"]);
    assert_eq!(key("CONTVARIABLE"), &["Tiedot"]);
    assert_eq!(
        key("VALUES(\"Muuttuja alue\")"),
        &["Nimi 01", "Nimi SSS", "Nimi 02"]
    );
    assert_eq!(key("CODES(\"Muuttuja alue\")"), &["01", "SSS", "02"]);
    assert_eq!(key("CODES(\"Tiedot\")"), &["n", "osuus"]);
    assert_eq!(key("VARIABLECODE(\"Muuttuja alue\")"), &["alue"]);
    assert_eq!(
        key("TIMEVAL(\"Muuttuja jakso\")"),
        &["TLIST(M1)", "202501", "202502", "202503"]
    );
    assert_eq!(key("DECIMALS"), &["3"]);
    assert_eq!(key("SHOWDECIMALS"), &["0"]);
    assert_eq!(key("PRECISION(\"Tiedot\",\"Mittari osuus\")"), &["3"]);
    assert_eq!(key("UNITS(\"Mittari n\")"), &["lkm"]);
    assert_eq!(key("LAST-UPDATED(\"Mittari n\")"), &["20250402 08:30"]);
    assert_eq!(key("SOURCE"), &["THL"]);
    assert!(key("NOTE")[0].contains("'..' = salattu"));
    // Every cell in order: the published numbers exactly, the symbols where there are none.
    assert_eq!(px.data.len(), 18);
    assert_eq!(
        &px.data[..8],
        ["10", "0.5", "20", "0.25", ".", ".", "..", ".."]
    );
    assert_eq!(&px.data[16..], ["5", "..."]);
    let numbers: Vec<f64> = px.data.iter().filter_map(|t| t.parse().ok()).collect();
    assert_eq!(numbers, [10.0, 0.5, 20.0, 0.25, 30.0, 0.125, 40.0, 5.0]);
    assert!(text.lines().all(|l| l.chars().count() <= 256));
}

#[test]
fn long_and_awkward_texts_keep_to_the_format() {
    let mut m = sample();
    m.label = format!("{}\"lainaus\"; loppu", "pitkä otsikko ".repeat(40));
    m.variables[1].texts[0] = "Uusimaa; \"itä\"\nrivi".into();
    let all = everything(&m);
    let cells = cube(&m, &all);
    let text = write(&m, &all, &cells);
    assert!(
        text.lines().all(|l| l.chars().count() <= 256),
        "a line over 256 characters"
    );
    let px = parse(&text);
    assert_eq!(px.keys["TITLE"], [clean(&m.label)]);
    assert!(px.keys["TITLE"][0].ends_with("'lainaus', loppu"));
    assert_eq!(
        px.keys["VALUES(\"Muuttuja alue\")"][0],
        "Uusimaa, 'itä' rivi"
    );
    assert_eq!(px.data.len(), cells.len());
}

#[test]
fn timeval_only_for_periods_of_one_kind() {
    let v = Variable {
        code: "jakso".into(),
        label: "Jakso".into(),
        role: Role::Time,
        values: ["2024", "2025-Q1", "2025-Q4", "2025-13", "2025-03"]
            .map(String::from)
            .to_vec(),
        texts: Vec::new(),
        codelist: None,
    };
    assert_eq!(timeval(&v, &[0]), Some(("A1", vec!["2024".to_string()])));
    assert_eq!(
        timeval(&v, &[1, 2]),
        Some(("Q1", vec!["20251".to_string(), "20254".to_string()]))
    );
    assert_eq!(timeval(&v, &[4]), Some(("M1", vec!["202503".to_string()])));
    assert_eq!(timeval(&v, &[0, 1]), None);
    assert_eq!(timeval(&v, &[3]), None);
}

#[test]
fn periods_have_their_time_values() {
    assert_eq!(time_of("2025"), Some(("A1", "2025".to_string())));
    assert_eq!(time_of("2025-H2"), Some(("H1", "20252".to_string())));
    assert_eq!(time_of("2025-Q3"), Some(("Q1", "20253".to_string())));
    assert_eq!(time_of("2025-03"), Some(("M1", "202503".to_string())));
    assert_eq!(time_of("2025-H3"), None);
}
