use super::*;
use arrow::array::{Array, AsArray};
use valtava_plugin::ParseError;

/// Parses `bytes` as one stored object through the parser's stream (the way the engine
/// reads it), with the given limits and batch size.
fn parse(
    bytes: Vec<u8>,
    template: Option<&str>,
    fields: &[(&str, &str)],
    limits: Limits,
    batch_size: usize,
) -> Result<Vec<ParsedBatch>, ParseError> {
    use futures::StreamExt;
    use object_store::ObjectStoreExt;
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let path = object_store::path::Path::from("inbox/doc.xml");
    let size = bytes.len() as u64;
    futures::executor::block_on(store.put(&path, bytes.into())).unwrap();
    let object = SourceObject {
        store,
        path,
        size,
        name: "inbox/doc.xml".into(),
    };
    let fields_json: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    let request = ParseRequest {
        columns: fields.iter().map(|(k, _)| k.to_string()).collect(),
        types: vec![],
        options: serde_json::json!({ "template": template, "fields": fields_json }),
        batch_size,
        base_dir: None,
        limits,
    };
    let stream = CdaParser.parse(object, request);
    futures::executor::block_on(stream.collect::<Vec<_>>())
        .into_iter()
        .collect()
}

/// The rows of parsed batches as text, the row number last.
fn table(batches: &[ParsedBatch]) -> Vec<Vec<Option<String>>> {
    let mut rows = Vec::new();
    for p in batches {
        let b = &p.batch;
        for r in 0..b.num_rows() {
            rows.push(
                (0..b.num_columns())
                    .map(|c| {
                        let a =
                            arrow::compute::cast(b.column(c), &arrow::datatypes::DataType::Utf8)
                                .unwrap();
                        let a = a.as_string::<i32>();
                        a.is_valid(r).then(|| a.value(r).to_string())
                    })
                    .collect(),
            );
        }
    }
    rows
}

fn example(file: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/ccda-examples")
        .join(file);
    std::fs::read(path).unwrap()
}

fn try_rows(
    bytes: Vec<u8>,
    template: Option<&str>,
    fields: &[(&str, &str)],
    limits: Limits,
) -> Result<Vec<Vec<Option<String>>>, ParseError> {
    parse(bytes, template, fields, limits, 1000).map(|b| table(&b))
}

fn rows(file: &str, template: Option<&str>, fields: &[(&str, &str)]) -> Vec<Vec<Option<String>>> {
    try_rows(example(file), template, fields, Limits::default()).unwrap()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// The setting a stop names, or a panic naming what came instead.
fn limit_setting(r: Result<Vec<Vec<Option<String>>>, ParseError>) -> (&'static str, String) {
    match r {
        Err(e) => match &e {
            ParseError::Limit { setting, .. } => (*setting, e.to_string()),
            _ => panic!("not a limit: {e}"),
        },
        Ok(r) => panic!("parsed {} rows", r.len()),
    }
}

#[test]
fn header_of_a_ccd_taken_by_hand() {
    // CCD.xml lines 27–32, 42, 144, 256–257.
    let r = rows(
        "CCD.xml",
        None,
        &[
            ("potilas", "/recordTarget/patientRole/id/@extension"),
            ("laatija", "/author/assignedAuthor/id/@extension"),
            (
                "rekisterinpitaja",
                "/custodian/assignedCustodian/representedCustodianOrganization/name",
            ),
            ("aika", "/effectiveTime/@value"),
            ("asiakirja", "/code/@code"),
        ],
    );
    assert_eq!(
        r,
        vec![vec![
            s("98765432"),
            s("5555555555"),
            s("Good Health HIE"),
            s("20141015103026-0500"),
            s("34133-9"),
            s("1")
        ]]
    );
}

#[test]
fn vital_sign_entries_by_template() {
    // CCD.xml lines 876–907: the first two vital-sign observations (template …4.27).
    let r = rows(
        "CCD.xml",
        Some("2.16.840.1.113883.10.20.22.4.27"),
        &[
            ("potilas", "/recordTarget/patientRole/id/@extension"),
            ("koodi", "code/@code"),
            ("arvo", "value/@value"),
            ("yksikko", "value/@unit"),
            ("aika", "effectiveTime/@value"),
        ],
    );
    assert_eq!(r.len(), 9);
    assert_eq!(
        r[0],
        vec![
            s("98765432"),
            s("8480-6"),
            s("120"),
            s("mm[Hg]"),
            s("20141001103026-0500"),
            s("876")
        ]
    );
    assert_eq!(r[1][1..4], [s("8462-4"), s("80"), s("mm[Hg]")]);
}

/// Rows go out in batches of the request's size as their entries close, each with the
/// header values found in the first pass.
#[test]
fn entries_come_in_batches_of_the_requested_size() {
    let fields = [
        ("potilas", "/recordTarget/patientRole/id/@extension"),
        ("koodi", "code/@code"),
    ];
    let template = Some("2.16.840.1.113883.10.20.22.4.27");
    let batches = parse(example("CCD.xml"), template, &fields, Limits::default(), 4).unwrap();
    let sizes: Vec<usize> = batches.iter().map(|b| b.batch.num_rows()).collect();
    assert_eq!(sizes, [4, 4, 1]);
    let whole = try_rows(example("CCD.xml"), template, &fields, Limits::default()).unwrap();
    assert_eq!(table(&batches), whole);
    assert!(whole.iter().all(|r| r[0] == s("98765432")));
}

#[test]
fn every_example_document_parses() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/ccda-examples");
    let mut n = 0;
    for f in std::fs::read_dir(dir).unwrap() {
        let f = f.unwrap().file_name().to_string_lossy().to_string();
        if f.ends_with(".xml") {
            let r = rows(&f, None, &[("asiakirja", "/code/@code")]);
            assert!(r[0][0].is_some(), "{f}");
            n += 1;
        }
    }
    assert!(n >= 10);
}

#[test]
fn not_a_cda_document() {
    let fields = [("x", "/code/@code")];
    let e = try_rows(
        b"<html>\n<body/></html>".to_vec(),
        None,
        &fields,
        Limits::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not `ClinicalDocument`"), "{e}");
    let e = try_rows(
        b"<ClinicalDocument>\n<code></ClinicalDocument>".to_vec(),
        None,
        &fields,
        Limits::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("line 2") && e.contains("XML"), "{e}");
    let e = try_rows(
        b"<ClinicalDocument>\n<code code=\"1\">".to_vec(),
        None,
        &fields,
        Limits::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("ends inside an element"), "{e}");
}

/// Header text is read whole: with its references resolved, not cut at the first one;
/// an entity a DTD would declare is not expanded.
#[test]
fn header_text_resolves_references_but_not_declared_entities() {
    let doc = "<!DOCTYPE ClinicalDocument [<!ENTITY x \"expanded\">]>\n\
                   <ClinicalDocument><title>A &amp; B &#67; &x;</title></ClinicalDocument>";
    let r = try_rows(
        doc.as_bytes().to_vec(),
        None,
        &[("otsikko", "/title")],
        Limits::default(),
    )
    .unwrap();
    assert_eq!(r, vec![vec![s("A & B C &x;"), s("1")]]);
}

/// A document of entries below `levels` elements that match no path, with one vital
/// sign; its deepest element (the entry's `templateId`) is `levels + 4` deep.
fn nested_entry(levels: usize) -> Vec<u8> {
    let mut doc = String::from(
        "<ClinicalDocument>\n<recordTarget><patientRole><id extension=\"P1\"/>\
             </patientRole></recordTarget>\n<component>",
    );
    doc.push_str(&"<x>".repeat(levels));
    doc.push_str("\n<observation><templateId root=\"T\"/><code code=\"C1\"/></observation>\n");
    doc.push_str(&"</x>".repeat(levels));
    doc.push_str("</component></ClinicalDocument>\n");
    doc.into_bytes()
}

const ENTRY_FIELDS: [(&str, &str); 2] = [
    ("potilas", "/recordTarget/patientRole/id/@extension"),
    ("koodi", "code/@code"),
];

/// A million nested elements (a few megabytes) stop at the depth limit, at once: not
/// after a walk whose every step is as long as the path.
#[test]
fn a_document_nested_a_million_deep_stops_at_the_depth_limit() {
    let n = 1_000_000;
    let mut doc = String::with_capacity(7 * n + 64);
    doc.push_str("<ClinicalDocument>");
    doc.push_str(&"<a>".repeat(n));
    doc.push_str(&"</a>".repeat(n));
    doc.push_str("</ClinicalDocument>");
    for template in [None, Some("T")] {
        let (setting, message) = limit_setting(try_rows(
            doc.clone().into_bytes(),
            template,
            &ENTRY_FIELDS,
            Limits::default(),
        ));
        assert_eq!(setting, "depth");
        assert!(
            message.contains("100 levels") && message.contains("line 1"),
            "{message}"
        );
    }
}

/// Elements that match no path may nest up to the limit: the entry below them is read.
#[test]
fn nesting_up_to_the_depth_limit_parses() {
    let doc = nested_entry(50);
    let want = vec![vec![s("P1"), s("C1"), s("4")]];
    let r = try_rows(doc.clone(), Some("T"), &ENTRY_FIELDS, Limits::default()).unwrap();
    assert_eq!(r, want);
    let limits = |depth| Limits {
        depth,
        ..Limits::default()
    };
    // The deepest element, the entry's templateId, is 54 levels deep.
    let r = try_rows(doc.clone(), Some("T"), &ENTRY_FIELDS, limits(54)).unwrap();
    assert_eq!(r, want);
    let (setting, message) = limit_setting(try_rows(doc, Some("T"), &ENTRY_FIELDS, limits(53)));
    assert_eq!(setting, "depth");
    assert!(message.contains("line 4"), "{message}");
}

/// Text, an attribute value or a statement larger than the record limit stops the
/// document; the error names the line and the setting, never the content.
#[test]
fn kept_text_attributes_and_statements_are_bounded_and_never_quoted() {
    let marker = "131052-308T";
    let long = format!("{marker}{}", "x".repeat(2000));
    let limits = Limits {
        record_bytes: 1024,
        ..Limits::default()
    };
    let fields = [("otsikko", "/title"), ("arvo", "value")];
    let entry = |inner: &str| {
        format!(
            "<ClinicalDocument>\n<title>Otsikko</title>\n<component>\n\
                 <observation><templateId root=\"T\"/>\n{inner}\n</observation>\n\
                 </component></ClinicalDocument>"
        )
    };
    let documents = [
        // A header value.
        format!("<ClinicalDocument>\n<title>{long}</title></ClinicalDocument>"),
        // An entry's element text.
        entry(&format!("<value>{long}</value>")),
        // An attribute value in an entry.
        entry(&format!("<value unit=\"{long}\">1</value>")),
        // A statement of many small elements, none too long by itself.
        entry(&format!(
            "<value>1</value>{}",
            "<text>131052-308T</text>".repeat(100)
        )),
    ];
    for (i, doc) in documents.iter().enumerate() {
        let (setting, message) = limit_setting(try_rows(
            doc.clone().into_bytes(),
            Some("T"),
            &fields,
            limits,
        ));
        assert_eq!(setting, "record_kib", "{i}: {message}");
        assert!(message.contains("line "), "{i}: {message}");
        assert!(!message.contains(marker), "{i}: {message}");
    }
    // Under the limit the same entry is read.
    let r = try_rows(
        entry("<value>131052-308T</value>").into_bytes(),
        Some("T"),
        &fields,
        limits,
    )
    .unwrap();
    assert_eq!(r, vec![vec![s("Otsikko"), s("131052-308T"), s("4")]]);
}

/// A row whose values are each under the record limit but together over it (a header
/// value repeated beside an entry's value, or one header path named by two columns)
/// stops the document with a `record_kib` limit that names the row's line and quotes
/// nothing; under the limit the same rows are read unchanged.
#[test]
fn a_row_longer_than_a_record_stops_the_document_and_is_never_quoted() {
    let marker = "131052-308T";
    let long = |c: &str| format!("{marker}{}", c.repeat(3000));
    let doc = format!(
        "<ClinicalDocument>\n<title>{}</title>\n<component>\n\
             <observation><templateId root=\"T\"/>\n<value>{}</value>\n</observation>\n\
             </component></ClinicalDocument>",
        long("x"),
        long("y")
    );
    let limits = |kib: usize| Limits {
        record_bytes: kib * 1024,
        ..Limits::default()
    };
    let entry_fields = [("otsikko", "/title"), ("arvo", "value")];
    let header_fields = [("otsikko", "/title"), ("toinen", "/title")];
    let cases = [
        (Some("T"), &entry_fields, "line 4"),
        (None, &header_fields, "line 1"),
    ];
    for (template, fields, line) in cases {
        let (setting, message) = limit_setting(try_rows(
            doc.clone().into_bytes(),
            template,
            fields,
            limits(4),
        ));
        assert_eq!(setting, "record_kib", "{message}");
        assert!(
            message.contains("4 KiB") && message.contains(line),
            "{message}"
        );
        assert!(
            !message.contains(marker) && !message.contains("xxx") && !message.contains("yyy"),
            "{message}"
        );
    }
    // Under the limit the same rows are read.
    let r = try_rows(
        doc.clone().into_bytes(),
        Some("T"),
        &entry_fields,
        limits(8),
    )
    .unwrap();
    assert_eq!(r, vec![vec![s(&long("x")), s(&long("y")), s("4")]]);
    let r = try_rows(doc.into_bytes(), None, &header_fields, limits(8)).unwrap();
    assert_eq!(r, vec![vec![s(&long("x")), s(&long("x")), s("1")]]);
}

/// A batch goes out once it holds more than `BATCH_BYTES` of text, before it has
/// `batch_size` rows: rows that repeat a 1 MiB header value make batches of 64 rows.
#[test]
fn a_batch_goes_out_once_it_holds_more_than_64_mib_of_text() {
    let entries =
        "<observation><templateId root=\"T\"/><code code=\"C\"/></observation>\n".repeat(70);
    let doc = format!(
        "<ClinicalDocument>\n<title>{}</title>\n<component>\n{entries}</component>\
             </ClinicalDocument>",
        "x".repeat(1 << 20)
    );
    let fields = [("otsikko", "/title"), ("koodi", "code/@code")];
    let batches = parse(
        doc.into_bytes(),
        Some("T"),
        &fields,
        Limits::default(),
        1000,
    )
    .unwrap();
    let sizes: Vec<usize> = batches.iter().map(|b| b.batch.num_rows()).collect();
    // Each row holds 1 MiB and one byte of text: 64 rows are just over 64 MiB.
    assert_eq!(sizes, [64, 6]);
}

mod predicates;
