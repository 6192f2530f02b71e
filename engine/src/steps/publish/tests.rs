//! The publish step's plan: a personal column never reaches a published table, and the
//! deciding count of disclosure control is a measure of the table.

use crate::steps::testing::{checked, codes};

const SOURCE: &str = "{ hetu: { type: string, personal: true }, alue: string }";

#[test]
fn a_personal_column_is_not_published() {
    let d = checked(
        SOURCE,
        "  p:\n    publish: { input: s, dataset: x, formats: [csv], disclosure: { min_count: 5, count: hetu } }\n",
    )
    .err()
    .expect("refused");
    assert!(codes(&d).iter().any(|c| c == "V206"), "{d:?}");
}

#[test]
fn counts_of_persons_are_published_with_disclosure_control() {
    let c = checked(
        SOURCE,
        "  a:\n    aggregate: { input: s, by: [alue], measures: { henkilot: count(DISTINCT hetu) } }\n\
         \x20 p:\n    publish: { input: a, dataset: x, formats: [csv], disclosure: { min_count: 5, count: henkilot } }\n",
    )
    .unwrap();
    let p = &c.plans["p"];
    assert!(p.personal.is_empty(), "{:?}", p.personal);
    let d = p.disclosure.as_ref().expect("disclosure control");
    assert_eq!(d.counts.first().map(String::as_str), Some("henkilot"));
    assert_eq!(d.min_count, 5);
}

/// The steps of a line that publishes `alue`, `m` and a column `column` made by SQL, with
/// `dimensions` when given.
fn with_column(column: &str, dimensions: &str) -> String {
    format!(
        "  a:\n    aggregate: {{ input: s, by: [alue], measures: {{ m: count(*) }} }}\n\
         \x20 b:\n    sql: {{ inputs: [a], query: \"SELECT alue, m, 'x' AS {column} FROM a\" }}\n\
         \x20 p:\n    publish: {{ input: b, dataset: x, formats: [csv]{dimensions}, disclosure: {{ min_count: 1, count: m }} }}\n"
    )
}

/// A published column named as a served table's own — the period `jakso` the daemon's
/// series puts first, a measure's status `status_<measure>`, JSON-stat's dimension of the
/// measures `tiedot` — is refused with V208 (before: published, and colliding with the
/// daemon's column in every answer), placed where the publish step lists it.
#[test]
fn a_column_named_as_a_served_tables_own_is_refused() {
    // The names as the daemon and JSON-stat make them.
    let status = crate::publish::jsonstat::measure_status_column("m");
    for column in ["jakso", status.as_str(), crate::publish::jsonstat::METRIC] {
        let d = checked("{ alue: string }", &with_column(column, ""))
            .err()
            .unwrap_or_else(|| panic!("{column} refused"));
        assert_eq!(codes(&d), ["V208"], "{column}: {d:?}");
        assert!(d[0].message.contains(&format!("`{column}`")), "{d:?}");
    }
    // Listed among the dimensions, the diagnostic points at the list (after `input: b` on
    // the same line), not at the input.
    let at_input = checked("{ alue: string }", &with_column("jakso", ""))
        .err()
        .expect("refused");
    let steps = with_column("jakso", ", dimensions: [alue, jakso]");
    let at_list = checked("{ alue: string }", &steps).err().expect("refused");
    assert_eq!(codes(&at_list), ["V208"], "{at_list:?}");
    assert_eq!(at_list[0].line, at_input[0].line);
    assert!(at_list[0].col > at_input[0].col, "{at_list:?} {at_input:?}");
    // Names that only begin alike are published.
    for column in ["kausi", "jaksot", "statusx", "tiedot_muu"] {
        assert!(
            checked("{ alue: string }", &with_column(column, "")).is_ok(),
            "{column}"
        );
    }
}

/// A finance table: no personal column anywhere, published with disclosure control `off`.
const FINANCE: &str = "{ alue: string, kulut: decimal }";

fn finance(disclosure: &str) -> String {
    format!(
        "  a:\n    aggregate: {{ input: s, by: [alue], measures: {{ kulut_yht: sum(kulut), n: count(*) }} }}\n\
         \x20 p:\n    publish: {{ input: a, dataset: x, formats: [csv], disclosure: {disclosure} }}\n"
    )
}

/// Switched off with a reason: nothing decides suppression (small counts are published as
/// they are, without a status column) and the reason is what the engine says of it.
#[test]
fn disclosure_off_publishes_without_suppression() {
    let c = checked(
        FINANCE,
        &finance("{ off: { fi: Ei henkilöitä., en: No persons. } }"),
    )
    .unwrap();
    let p = &c.plans["p"];
    assert!(p.disclosure.is_none(), "{:?}", p.disclosure);
    assert!(
        p.output
            .field_with_name(crate::plan::STATUS_COLUMN)
            .is_err()
    );
    let spec = c.line.spec.steps["p"].publish.as_ref().unwrap();
    assert_eq!(
        spec.disclosure_off_note().as_deref(),
        Some("off: Ei henkilöitä.")
    );
    let explained = crate::plan::explain::steps(&c);
    let step = explained.iter().find(|s| s.name == "p").unwrap();
    assert_eq!(step.disclosure.as_deref(), Some("off: Ei henkilöitä."));
}

/// Off is refused (V210) for a dataset that counts persons or whose rows come from
/// personal columns, whatever the reason says.
#[test]
fn disclosure_off_is_refused_where_there_are_persons() {
    let counting = "  a:\n    aggregate: { input: s, by: [alue], measures: { henkilot: count(DISTINCT hetu) } }\n\
         \x20 p:\n    publish: { input: a, dataset: x, formats: [csv], disclosure: { off: Ei henkilöitä. } }\n";
    let d = checked(SOURCE, counting).err().expect("refused");
    assert!(codes(&d).iter().any(|c| c == "V210"), "{d:?}");
    assert!(d.iter().any(|d| d.message.contains("henkilot")), "{d:?}");
    let rows = counting.replace("henkilot: count(DISTINCT hetu)", "n: count(*)");
    let d = checked(SOURCE, &rows).err().expect("refused");
    assert_eq!(codes(&d), ["V210"], "{d:?}");
    assert!(d[0].message.contains("s.hetu"), "{d:?}");
}

/// Off stands alone and says why.
#[test]
fn disclosure_off_with_a_threshold_or_without_a_reason_is_refused() {
    for (disclosure, code) in [
        ("{ off: Ei henkilöitä., min_count: 5 }", "V003"),
        ("{ off: Ei henkilöitä., count: n }", "V003"),
        ("{ off: Ei henkilöitä., persons: [n] }", "V003"),
        ("{ off: \" \" }", "V004"),
        ("{ off: { fi: Ei henkilöitä., en: \"\" } }", "V004"),
    ] {
        let d = checked(FINANCE, &finance(disclosure))
            .err()
            .unwrap_or_else(|| panic!("{disclosure} refused"));
        assert_eq!(codes(&d), [code], "{disclosure}: {d:?}");
    }
}

/// A table with a count `n`, a count `k` of answers and a share `osuus` over them, and a
/// text column `teksti`, published by `alue` with `disclosure`.
fn answers(disclosure: &str) -> String {
    format!(
        "  a:\n    aggregate: {{ input: s, by: [alue], measures: {{ n: count(*), k: count(kulut), osuus: avg(kulut) }} }}\n\
         \x20 b:\n    sql: {{ inputs: [a], query: \"SELECT alue, n, k, osuus, 'x' AS teksti FROM a\" }}\n\
         \x20 p:\n    publish: {{ input: b, dataset: x, formats: [csv], dimensions: [alue], disclosure: {disclosure} }}\n"
    )
}

/// A measure decided by a count of its own gets a status column of its own, and an
/// unpublished deciding count reaches disclosure control under a name no published schema
/// has (before: `measures` and `unpublished` were unknown keys).
#[test]
fn a_measure_decided_by_its_own_count_has_its_own_status() {
    let c = checked(
        FINANCE,
        &answers("{ count: n, measures: { osuus: k }, unpublished: [k] }"),
    )
    .unwrap();
    let p = &c.plans["p"];
    let d = p.disclosure.as_ref().expect("disclosure control");
    let deciding = format!("{}k", crate::plan::DECIDING_PREFIX);
    assert_eq!(d.own, [("osuus".to_string(), deciding.clone())]);
    assert_eq!(d.unpublished, ["k"]);
    let names: Vec<&str> = p
        .output
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(
        names,
        ["alue", "n", "osuus", "teksti", "status", "status_osuus"]
    );
    assert!(p.plan.schema().has_column_with_unqualified_name(&deciding));
    // Published, the count has a status of its own too.
    let c = checked(FINANCE, &answers("{ count: n, measures: { osuus: k } }")).unwrap();
    let p = &c.plans["p"];
    assert_eq!(
        p.disclosure.as_ref().unwrap().own,
        [("osuus".to_string(), "k".to_string())]
    );
    assert!(p.output.field_with_name("status_k").is_ok());
    assert!(p.output.field_with_name("k").is_ok());
}

/// Each wrong use is refused with its code, placed at the name.
#[test]
fn measures_decided_by_their_own_counts_are_checked() {
    for (disclosure, code) in [
        ("{ count: n, measures: { puuttuu: k } }", "V201"),
        ("{ count: n, measures: { osuus: puuttuu } }", "V201"),
        ("{ count: n, measures: { osuus: teksti } }", "V202"),
        ("{ count: n, measures: { alue: k } }", "V003"),
        (
            "{ count: n, measures: { osuus: k }, unpublished: [n] }",
            "V003",
        ),
        (
            "{ count: n, measures: { osuus: k }, unpublished: [puuttuu] }",
            "V201",
        ),
    ] {
        let d = checked(FINANCE, &answers(disclosure))
            .err()
            .unwrap_or_else(|| panic!("{disclosure} refused"));
        assert_eq!(codes(&d), [code], "{disclosure}: {d:?}");
        assert!(d[0].line > 0, "{disclosure}: {d:?}");
    }
    let d = checked(
        FINANCE,
        &finance("{ off: Ei henkilöitä., measures: { kulut_yht: n } }"),
    )
    .err()
    .expect("refused");
    assert_eq!(codes(&d), ["V003"], "{d:?}");
}
