//! Tests of the catalog's search and lineage, over a catalog entry written out here (no line
//! file, code set or store); the quality summary's are beside it in `quality.rs`.

use super::*;
use crate::line::spec::LocalizedText;

fn three(fi: &str, sv: &str, en: &str) -> Text {
    Text::Languages(LocalizedText {
        fi: fi.into(),
        sv: Some(sv.into()),
        en: Some(en.into()),
    })
}

fn column(name: &str, description: Option<Text>, lineage: &[&str]) -> cat::ColumnEntry {
    cat::ColumnEntry {
        name: name.into(),
        r#type: "bigint".into(),
        description,
        unit: None,
        personal: false,
        lineage: lineage.iter().map(|s| s.to_string()).collect(),
    }
}

/// A line like `ensihoito`: one source with a personal column, one code set, one dataset.
fn sample() -> cat::LineEntry {
    let mut hetu = column("hetu", None, &[]);
    hetu.personal = true;
    hetu.r#type = "string".into();
    cat::LineEntry {
        line: "ensihoito".into(),
        file: "ensihoito.yaml".into(),
        title: three(
            "Ensihoidon tehtävät",
            "Prehospitala akutsjukvårdens uppdrag",
            "Emergency medical service missions",
        ),
        description: Some(Text::Plain("Tehtävät hyvinvointialueittain.".into())),
        purpose: None,
        owner: Some("THL".into()),
        contact: Some("ensihoito-tilasto@thl.fi".into()),
        legal_basis: Some(
            "Laki sosiaali- ja terveystietojen toissijaisesta käytöstä 552/2019".into(),
        ),
        schedule: Some("0 6 5 * *".into()),
        params: vec![("period".into(), "month".into())],
        codesets: vec![cat::CodesetEntry {
            name: "alueet".into(),
            path: "alueet.csv".into(),
            description: Some("Hyvinvointialueet".into()),
            sha256: "0".repeat(64),
            version: None,
            rows: 23,
        }],
        sources: vec![cat::SourceEntry {
            step: "tehtavat".into(),
            format: "csv".into(),
            location: "inbox/ensihoito/{period}/*.csv".into(),
            release: None,
            columns: vec![hetu, column("kunta", None, &[])],
        }],
        rules: vec![],
        datasets: vec![cat::DatasetEntry {
            dataset: "ensihoito_kuukausi".into(),
            step: "julkaisu".into(),
            dimensions: vec!["hyvinvointialue".into()],
            formats: vec!["csv".into()],
            disclosure: None,
            disclosure_off: None,
            columns: vec![
                column("hyvinvointialue", None, &["tehtavat.kunta"]),
                column(
                    "tavoittamisaika_mediaani",
                    Some(three(
                        "Tavoittamisajan mediaani",
                        "Median",
                        "Median response time",
                    )),
                    &[],
                ),
                column("potilaat", None, &["tehtavat.hetu"]),
                column("status", None, &[]),
            ],
        }],
    }
}

fn found(q: &str) -> Vec<CatalogMatch> {
    let needle = search_text(Some(q)).unwrap().unwrap().to_lowercase();
    matches(&sample(), &needle)
}

#[test]
fn a_column_an_owner_and_a_legal_basis_are_found_and_say_where() {
    // The column's name and its description in each language.
    let by_column = found("MEDIA");
    assert_eq!(by_column.len(), 4, "{by_column:?}");
    assert!(by_column.iter().all(
        |m| m.field == MatchField::Column && m.dataset.as_deref() == Some("ensihoito_kuukausi")
    ));
    assert!(
        by_column
            .iter()
            .any(|m| m.text == "tavoittamisaika_mediaani")
    );
    assert!(by_column.iter().any(|m| m.text == "Median response time"));
    assert_eq!(
        found("thl"),
        [CatalogMatch {
            field: MatchField::Owner,
            text: "THL".into(),
            dataset: None,
        }]
    );
    let law = found(" 552/2019 ");
    assert_eq!(law.len(), 1, "{law:?}");
    assert_eq!(law[0].field, MatchField::LegalBasis);
    // Case is ignored beyond ASCII, and a Swedish title is searched too.
    assert_eq!(found("TEHTÄVÄT")[0].field, MatchField::Title);
    assert_eq!(found("akutsjukvård")[0].field, MatchField::Title);
    assert_eq!(found("hyvinvointialueet")[0].field, MatchField::Codeset);
}

#[test]
fn a_search_that_matches_nothing_finds_no_line() {
    let c = sample();
    assert!(search([("ensihoito", &c)], Some("rokotus")).is_empty());
    // Wildcards and patterns are text, not patterns.
    assert!(search([("ensihoito", &c)], Some(".*")).is_empty());
    assert!(search([("ensihoito", &c)], Some("%")).is_empty());
    // Without a search, every line, with nothing matched.
    let all = search([("ensihoito", &c)], None);
    assert_eq!(all.len(), 1);
    assert!(all[0].matches.is_empty());
    let d = &all[0].datasets[0];
    assert_eq!(d.links.page, "/?dataset=ensihoito_kuukausi");
    assert_eq!(d.links.lineage, "/api/datasets/ensihoito_kuukausi/lineage");
    assert_eq!(d.columns[0].role, ColumnRole::Dimension);
    assert_eq!(d.columns[1].role, ColumnRole::Measure);
    assert_eq!(d.columns[3].role, ColumnRole::Status);
}

#[test]
fn a_long_or_odd_search_is_bounded() {
    let refused = search_text(Some("a".repeat(MAX_QUERY + 1).as_str())).unwrap_err();
    assert_eq!(refused.status(), axum::http::StatusCode::BAD_REQUEST);
    assert_eq!(refused.code(), "bad-query");
    // Counted in characters, not bytes: 200 `ä` (400 bytes) is a search.
    let long = "ä".repeat(MAX_QUERY);
    let kept = search_text(Some(long.as_str())).unwrap();
    assert_eq!(kept.as_deref(), Some(long.as_str()));
    // Blank is no search; surrounding space is not part of it.
    assert_eq!(search_text(Some(" \t ")).unwrap(), None);
    assert_eq!(search_text(None).unwrap(), None);
    // Markup and control characters are only text that matches nothing.
    let c = sample();
    for odd in [
        "<script>alert(1)</script>",
        "\u{0}\u{1b}[2J",
        "'; DROP TABLE x; --",
    ] {
        let q = search_text(Some(odd)).unwrap();
        assert!(
            search([("ensihoito", &c)], q.as_deref()).is_empty(),
            "{odd:?}"
        );
    }
}

#[test]
fn lineage_names_source_columns_and_whether_they_are_personal() {
    let c = sample();
    let l = lineage_of(&c, &c.datasets[0]);
    assert_eq!(
        (l.line.as_str(), l.step.as_str()),
        ("ensihoito", "julkaisu")
    );
    let potilaat = l.columns.iter().find(|x| x.column == "potilaat").unwrap();
    assert_eq!(
        potilaat.sources,
        [SourceColumn {
            step: "tehtavat".into(),
            column: "hetu".into(),
            kind: Some("string".into()),
            personal: true,
            location: Some("inbox/ensihoito/{period}/*.csv".into()),
        }]
    );
    let area = &l.columns[0];
    assert_eq!(area.role, ColumnRole::Dimension);
    assert!(!area.sources[0].personal);
    assert!(l.columns[1].sources.is_empty());
}
