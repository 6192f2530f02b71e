//! Paths whose steps select an element by a predicate on a value below it.

use super::*;

/// The one row of a document read without a template (one row per document).
fn one_row(doc: &str, fields: &[(&str, &str)]) -> Vec<Option<String>> {
    let r = try_rows(doc.as_bytes().to_vec(), None, fields, Limits::default()).unwrap();
    assert_eq!(r.len(), 1);
    r.into_iter().next().unwrap()
}

/// A social-care document: its coded facts are sibling observations told apart by `code`,
/// in either order of `code` and `value`.
const SOSIAALIHUOLTO: &str = "<ClinicalDocument xmlns=\"urn:hl7-org:v3\">\n\
    <code code=\"SOS\"/><id extension=\"A-1\"/>\n\
    <recordTarget><patientRole><id root=\"1.2.3\" extension=\"X-9\"/>\
    <id root=\"1.2.246.21\" extension=\"010101-123N\"/></patientRole></recordTarget>\n\
    <component><structuredBody><component><section>\n\
    <entry><observation><code code=\"muu\"/><value code=\"M\" value=\"1\"/></observation></entry>\n\
    <entry><observation><value code=\"091\"/><code code=\"kunta\"/></observation></entry>\n\
    <entry><observation><code code=\"vastaanotettu\"/><value value=\"20240102\"/></observation>\
    </entry>\n\
    </section></component></structuredBody></component>\n\
    </ClinicalDocument>\n";

const OBSERVATION: &str = "/component/structuredBody/component/section/entry/observation";

fn field(test: &str, rest: &str) -> String {
    format!("{OBSERVATION}[{test}]{rest}")
}

#[test]
fn a_predicate_selects_among_sibling_observations() {
    let kunta = field("code/@code='kunta'", "/value/@code");
    let aika = field("code/@code=\"vastaanotettu\"", "/value/@value");
    let muu = field("code/@code = 'muu'", "/value/@value");
    let r = one_row(
        SOSIAALIHUOLTO,
        &[
            ("tyyppi", "/code/@code"),
            ("asiakirja_id", "/id/@extension"),
            (
                "hetu",
                "/recordTarget/patientRole/id[@root='1.2.246.21']/@extension",
            ),
            ("kunta", kunta.as_str()),
            ("vastaanotettu", aika.as_str()),
            ("muu", muu.as_str()),
        ],
    );
    assert_eq!(
        r,
        vec![
            s("SOS"),
            s("A-1"),
            s("010101-123N"),
            s("091"),
            s("20240102"),
            s("1"),
            s("1")
        ]
    );
}

/// No element passes, or the one that passes lacks the rest of the path: no value.
#[test]
fn no_passing_element_gives_null() {
    let r = one_row(
        SOSIAALIHUOLTO,
        &[
            (
                "puuttuu",
                field("code/@code='puuttuu'", "/value/@code").as_str(),
            ),
            (
                "ei_arvoa",
                field("code/@code='kunta'", "/value/@value").as_str(),
            ),
            (
                "hetu",
                "/recordTarget/patientRole/id[@root='9.9']/@extension",
            ),
            ("tyyppi", "/code/@code"),
        ],
    );
    assert_eq!(r, vec![None, None, None, s("SOS"), s("1")]);
}

/// The first element in document order that passes and has the rest of the path counts;
/// one that passes without it does not stop the search.
#[test]
fn the_first_passing_element_wins() {
    let doc = "<ClinicalDocument><component><structuredBody><component><section>\n\
        <entry><observation><code code=\"kunta\"/></observation></entry>\n\
        <entry><observation><value code=\"091\"/><code code=\"kunta\"/></observation></entry>\n\
        <entry><observation><code code=\"kunta\"/><value code=\"092\"/></observation></entry>\n\
        </section></component></structuredBody></component></ClinicalDocument>";
    let kunta = field("code/@code='kunta'", "/value/@code");
    let r = one_row(doc, &[("kunta", kunta.as_str())]);
    assert_eq!(r, vec![s("091"), s("1")]);
}

/// A predicate on the path's last element step: its attribute or its text is the value;
/// a predicate may test a child's text (trimmed) that comes after the value.
#[test]
fn a_predicate_on_the_last_step() {
    let doc = "<ClinicalDocument>\n\
        <title lang=\"sv\">Rubrik</title><title lang=\"fi\">Otsikko</title>\n\
        <author><function>kirjaaja</function><name>A</name></author>\n\
        <author><name>B</name><function> laatija </function></author>\n\
        <component><structuredBody><component><section><entry>\
        <observation moodCode=\"INT\"><code code=\"muu\"/></observation>\
        <observation moodCode=\"EVN\"><code code=\"kunta\"/></observation>\
        </entry></section></component></structuredBody></component>\n\
        </ClinicalDocument>";
    let r = one_row(
        doc,
        &[
            ("otsikko", "/title[@lang='fi']"),
            ("laatija", "/author[function='laatija']/name"),
            ("tapa", field("code/@code='kunta'", "/@moodCode").as_str()),
        ],
    );
    assert_eq!(r, vec![s("Otsikko"), s("B"), s("EVN"), s("1")]);
}

/// The literal is compared with the document's value unescaped, in attributes and text,
/// in header and entry paths.
#[test]
fn a_literal_is_compared_with_the_unescaped_value() {
    let doc = "<ClinicalDocument>\n\
        <author><name>A &amp; B</name><id extension=\"1\"/></author>\n\
        <component><structuredBody><component><section><entry>\
        <observation><templateId root=\"T\"/><code code=\"x\"/>\
        <entryRelationship><observation><code code=\"O&apos;Brien &amp; co\"/>\
        <value value=\"2\"/></observation></entryRelationship>\
        </observation></entry></section></component></structuredBody></component>\n\
        </ClinicalDocument>";
    let koodi = field(
        "entryRelationship/observation/code/@code=\"O'Brien & co\"",
        "/entryRelationship/observation/value/@value",
    );
    let r = one_row(
        doc,
        &[
            ("laatija", "/author[name='A & B']/id/@extension"),
            ("koodi", koodi.as_str()),
        ],
    );
    assert_eq!(r, vec![s("1"), s("2"), s("1")]);
    let entry = [
        ("laatija", "/author[name='A & B']/id/@extension"),
        (
            "arvo",
            "entryRelationship/observation[code/@code=\"O'Brien & co\"]/value/@value",
        ),
    ];
    let r = try_rows(
        doc.as_bytes().to_vec(),
        Some("T"),
        &entry,
        Limits::default(),
    )
    .unwrap();
    assert_eq!(r, vec![vec![s("1"), s("2"), s("3")]]);
}

/// Entry paths are looked up in the kept statement: several steps may carry a predicate.
#[test]
fn entry_paths_may_test_several_steps() {
    let doc = "<ClinicalDocument><component>\n\
        <observation><templateId root=\"T\"/><code code=\"A\"/>\
        <entryRelationship><observation><value value=\"1\"/><code code=\"x\"/></observation>\
        </entryRelationship>\
        <entryRelationship><observation><code code=\"y\"/><value value=\"2\"/>\
        <participant><id root=\"q\" extension=\"e0\"/><id root=\"r\" extension=\"e1\"/>\
        </participant></observation></entryRelationship>\
        </observation>\n</component></ClinicalDocument>";
    let fields = [
        (
            "x",
            "entryRelationship/observation[code/@code='x']/value/@value",
        ),
        (
            "y",
            "entryRelationship/observation[code/@code='y']/value/@value",
        ),
        (
            "osallinen",
            "entryRelationship/observation[code/@code='y']/participant/id[@root='r']/@extension",
        ),
        (
            "ei",
            "entryRelationship/observation[code/@code='z']/value/@value",
        ),
    ];
    let r = try_rows(
        doc.as_bytes().to_vec(),
        Some("T"),
        &fields,
        Limits::default(),
    )
    .unwrap();
    assert_eq!(r, vec![vec![s("1"), s("2"), s("e1"), None, s("2")]]);
}

/// A malformed path is an option error that names the field, never a panic; well-formed
/// predicates pass.
#[test]
fn malformed_predicates_are_option_errors() {
    let check =
        |path: &str| CdaParser.check_options(&serde_json::json!({ "fields": { "kunta": path } }));
    let bad = [
        ("/a/observation[code/@code='x'/value", "not closed"),
        ("/a/observation[code/@code='x", "not closed"),
        ("/a/observation[code", "not closed"),
        ("/a/observation[code/@code=x]/value", "quotes"),
        ("/a/observation[='x']/value", "empty path"),
        ("/a/observation[ = 'x']/value", "empty path"),
        ("/a/observation[code]/value", "`[path='value']`"),
        ("/a/id[@root='1'][@x='2']/@extension", "only one predicate"),
        ("/a[@x='1']/id[@root='1']/@extension", "one step only"),
        ("/a/id]/@extension", "without `[`"),
        ("/a/id[@root='1']x/@extension", "must end its step"),
        ("/a/[@root='1']/@extension", "must follow an element name"),
        ("/a/id/@root[.='1']", "must follow an element name"),
        (
            "/a/observation[code//@code='x']/value",
            "not child element names",
        ),
        ("/a/observation[@='x']/value", "not child element names"),
        ("/a/observation[@a/b='x']/value", "not child element names"),
        ("/a/@root/b", "can only end the path"),
        ("/a/sdtc:raceCode/@code", "write `raceCode`"),
    ];
    for (path, what) in bad {
        let e = check(path).unwrap_err();
        assert!(
            e.contains("field `kunta`") && e.contains(what),
            "{path}: {e}"
        );
    }
    for path in [
        "/a/observation[code/@code='x']/value/@code",
        "/a/id[ @root = \"1.2.246.21\" ]/@extension",
        "/a/title[@lang='fi']",
        "/a/b[c='x/y]z']/d",
        "a/b[@x='1']/c[d/@y='2']/@z",
    ] {
        assert_eq!(check(path), Ok(()), "{path}");
    }
}

/// 50 000 observations that fail the predicate, each with a value attribute of almost a
/// record, read in one linear pass within the record limit: each is decided as it closes
/// and dropped; the one that passes, last, gives the value.
#[test]
fn many_failing_candidates_stay_within_limits() {
    let n = 50_000;
    let big = "9".repeat(500);
    let failing = format!(
        "<entry><observation><value value=\"{big}\"/><code code=\"muu\"/></observation></entry>\n"
    );
    let mut doc = String::with_capacity(n * failing.len() + 512);
    doc.push_str("<ClinicalDocument><component><structuredBody><component><section>\n");
    for _ in 0..n {
        doc.push_str(&failing);
    }
    doc.push_str(
        "<entry><observation><value value=\"20240102\"/><code code=\"vastaanotettu\"/>\
         </observation></entry>\n\
         </section></component></structuredBody></component></ClinicalDocument>",
    );
    let limits = Limits {
        record_bytes: 1024,
        ..Limits::default()
    };
    let fields = [
        (
            "vastaanotettu",
            field("code/@code='vastaanotettu'", "/value/@value"),
        ),
        ("tekstina", field("code/@code='vastaanotettu'", "/value")),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = try_rows(doc.into_bytes(), None, &fields, limits).unwrap();
    assert_eq!(r, vec![vec![s("20240102"), None, s("1")]]);
}
