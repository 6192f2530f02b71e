use super::*;
use serde_json::Value;

#[test]
fn views_from_files_and_errors_with_resource_and_path() {
    let dir = std::env::temp_dir().join(format!("valtava-fhir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("nimet.json"),
        r#"{"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}, {"name": "sukunimi", "path": "name.family"}]}]}"#,
    )
    .unwrap();
    let o = FhirOptions {
        view: None,
        view_file: Some("nimet.json".into()),
    };
    let v = o.view(Some(&dir)).unwrap();
    assert_eq!(v.columns, vec!["id", "sukunimi"]);
    let request = ParseRequest {
        columns: v.columns.clone(),
        types: vec![],
        options: Value::Null,
        batch_size: 10,
        base_dir: None,
        limits: Limits::default(),
    };
    let ndjson = b"{\"resourceType\": \"Patient\", \"id\": \"a\", \"name\": [{\"family\": \"X\"}]}\n{\"resourceType\": \"Patient\", \"id\": \"b\", \"name\": [{\"family\": \"Y\"}, {\"family\": \"Z\"}]}\nnot json\n";
    let parsed = read_all(ndjson, &v, &request);
    assert_eq!(parsed[0].batch.num_rows(), 1);
    let reasons: Vec<(u64, String)> = parsed[0]
        .rejects
        .iter()
        .map(|r| (r.row, r.reason.clone()))
        .collect();
    assert_eq!(reasons[0].0, 2);
    assert!(
        reasons[0].1.contains("Patient resource")
            && !reasons[0].1.contains("Patient/b")
            && reasons[0].1.contains("path `name.family`"),
        "{reasons:?}"
    );
    assert_eq!(reasons[1].0, 3);
    assert!(reasons[1].1.contains("not JSON"), "{reasons:?}");
    assert!(FhirOptions::default().view(None).is_err());

    // Many chunks on several threads: every row, in the object's order, numbered by
    // its line (blank lines counted), bad lines quarantined in place.
    let mut text = String::new();
    for i in 1..=40 {
        match i % 10 {
            0 => text.push_str("{broken\n"),
            5 => text.push('\n'),
            _ => text.push_str(&format!(
                "{{\"resourceType\": \"Patient\", \"id\": \"p{i}\", \"name\": [{{\"family\": \"F{i}\"}}]}}\n"
            )),
        }
    }
    let request = ParseRequest {
        batch_size: 3,
        ..request
    };
    let parsed = read_all(text.as_bytes(), &v, &request);
    let mut rows = Vec::new();
    let mut rejects = Vec::new();
    for p in &parsed {
        let ids = p
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        let nums = p
            .batch
            .column(2)
            .as_any()
            .downcast_ref::<arrow::array::UInt64Array>()
            .unwrap();
        for r in 0..p.batch.num_rows() {
            rows.push((nums.value(r), ids.value(r).to_string()));
        }
        rejects.extend(p.rejects.iter().map(|r| r.row));
    }
    let want: Vec<(u64, String)> = (1..=40u64)
        .filter(|i| i % 10 != 0 && i % 10 != 5)
        .map(|i| (i, format!("p{i}")))
        .collect();
    assert_eq!(rows, want);
    assert_eq!(rejects, vec![10, 20, 30, 40]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Hundreds of chunks through the workers' window come out whole and in order; a reader
/// that stops listening stops the workers (no more batches, no hang).
#[test]
fn many_chunks_in_order_and_a_stop_ends_the_work() {
    let v = FhirOptions {
        view: Some(serde_json::json!({"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]})),
        view_file: None,
    }
    .view(None)
    .unwrap();
    let request = ParseRequest {
        columns: v.columns.clone(),
        types: vec![],
        options: Value::Null,
        batch_size: 3,
        base_dir: None,
        limits: Limits::default(),
    };
    let text: String = (1..=2000)
        .map(|i| format!("{{\"resourceType\": \"Patient\", \"id\": \"p{i}\"}}\n"))
        .collect();
    let ids: Vec<String> = read_all(text.as_bytes(), &v, &request)
        .iter()
        .flat_map(|p| {
            let a = p
                .batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap()
                .clone();
            (0..arrow::array::Array::len(&a)).map(move |r| a.value(r).to_string())
        })
        .collect();
    assert_eq!(ids, (1..=2000).map(|i| format!("p{i}")).collect::<Vec<_>>());
    let mut emitted = 0;
    read(text.as_bytes(), &v, &request, &mut |_| {
        emitted += 1;
        emitted < 5
    })
    .unwrap();
    assert_eq!(emitted, 5);
}

fn read_all(bytes: &[u8], v: &view::View, request: &ParseRequest) -> Vec<ParsedBatch> {
    let mut out = Vec::new();
    read(bytes, v, request, &mut |b| {
        out.push(b);
        true
    })
    .unwrap();
    out
}

/// An identity code (a made-up hetu) that no message may quote.
const MARKER: &str = "131052-308T";

/// A view of Patient ids and a request for it, as the engine makes one (the view in
/// the options, the default limits).
fn ids_view() -> (view::View, ParseRequest) {
    let view = serde_json::json!({
        "resource": "Patient",
        "select": [{"column": [{"name": "id", "path": "id"}]}]
    });
    let v = view::compile(&view).unwrap();
    let request = ParseRequest {
        columns: v.columns.clone(),
        types: vec![],
        options: serde_json::json!({ "view": view }),
        batch_size: 100,
        base_dir: None,
        limits: Limits::default(),
    };
    (v, request)
}

fn patient(id: &str) -> String {
    format!("{{\"resourceType\": \"Patient\", \"id\": \"{id}\"}}")
}

/// The ids of the rows, in order.
fn ids(parsed: &[ParsedBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for p in parsed {
        let a = p
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        out.extend((0..arrow::array::Array::len(a)).map(|r| a.value(r).to_string()));
    }
    out
}

/// Parses `bytes` as one object through the parser's stream, as the engine does.
fn parse_object(
    bytes: Vec<u8>,
    request: ParseRequest,
) -> Vec<Result<ParsedBatch, valtava_plugin::ParseError>> {
    use futures::StreamExt;
    use object_store::ObjectStoreExt;
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let path = object_store::path::Path::from("kanta/Patient.ndjson");
    let size = bytes.len() as u64;
    futures::executor::block_on(store.put(&path, bytes.into())).unwrap();
    let object = SourceObject {
        store,
        path,
        size,
        name: "kanta/Patient.ndjson".into(),
    };
    futures::executor::block_on(FhirParser.parse(object, request).collect::<Vec<_>>())
}

/// A line longer than a record may be stops the object with a `record_kib` limit that
/// names the line by its number and quotes nothing of it; the lines before it are read,
/// the lines after it are not.
#[test]
fn a_line_longer_than_a_record_stops_the_object_after_the_lines_before_it() {
    let (_, mut request) = ids_view();
    request.limits.record_bytes = 4096;
    let long = format!(
        "{{\"resourceType\": \"Patient\", \"id\": \"{MARKER}\", \"identifier\": [{{\"value\": \"{MARKER}\"}}], \"note\": \"{}\"}}",
        "x".repeat(5000)
    );
    let text = format!(
        "{}\n{}\n{long}\n{}\n",
        patient("p1"),
        patient("p2"),
        patient("p4")
    );
    let got = parse_object(text.into_bytes(), request);
    let (last, batches) = got.split_last().unwrap();
    let batches: Vec<ParsedBatch> = batches
        .iter()
        .map(|b| b.as_ref().unwrap().clone())
        .collect();
    assert_eq!(ids(&batches), ["p1", "p2"]);
    let err = last.as_ref().expect_err("the stream ends with an error");
    assert!(
        matches!(
            err,
            valtava_plugin::ParseError::Limit { setting: "record_kib", message, .. }
                if message.contains("line 3")
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("kanta/Patient.ndjson") && text.contains("4 KiB"),
        "{text}"
    );
    assert!(!text.contains(MARKER) && !text.contains("xxxx"), "{text}");
}

/// A line nested 100 000 levels deep (closed or not) is rejected as a row before it is
/// parsed: no stack overflow, no panic, no content in the reason, and the lines around
/// it are read.
#[test]
fn a_line_nested_too_deep_is_rejected_without_being_parsed() {
    let (v, request) = ids_view();
    let n = 100_000;
    let closed = format!(
        "{{\"resourceType\": \"Patient\", \"id\": \"{MARKER}\", \"x\": {}{}}}",
        "[".repeat(n),
        "]".repeat(n)
    );
    let open = format!(
        "{{\"resourceType\": \"Patient\", \"id\": \"{MARKER}\", \"x\": {}",
        "[{\"a\": ".repeat(n)
    );
    let text = format!("{}\n{closed}\n{}\n{open}\n", patient("p1"), patient("p3"));
    let got = read_all(text.as_bytes(), &v, &request);
    assert_eq!(ids(&got), ["p1", "p3"]);
    let rejects: Vec<(u64, String)> = got
        .iter()
        .flat_map(|p| p.rejects.iter().map(|r| (r.row, r.reason.clone())))
        .collect();
    let reason = "JSON nests deeper than 100 levels".to_string();
    assert_eq!(rejects, [(2, reason.clone()), (4, reason)]);
}

/// The bracket count that spares most lines the nesting walk counts every `[` and `{` in
/// text of any length and no other byte: it adds up in byte-wide lanes, 255 bytes at a
/// time, so a count past a lane's 255 or a chunk's seam must come out whole.
#[test]
fn opening_brackets_are_counted_in_text_of_any_length() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut byte = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 256) as u8
    };
    for len in (0..2_000).step_by(7).chain([255, 256, 510, 511, 65_536]) {
        let text: Vec<u8> = (0..len).map(|_| byte()).collect();
        let expected = text.iter().filter(|&&b| b == b'{' || b == b'[').count();
        assert_eq!(opening_brackets(&text), expected, "{len} bytes");
    }
    for len in [254, 255, 256, 100_000] {
        assert_eq!(opening_brackets(&vec![b'['; len]), len);
        assert_eq!(opening_brackets(&vec![b'{'; len]), len);
    }
}

/// A whole document (a Bundle) nested 100 000 levels deep stops the object with a
/// `depth` limit, through the stream as the engine reads it; no panic.
#[test]
fn a_document_nested_too_deep_stops_the_object() {
    let (_, request) = ids_view();
    let n = 100_000;
    let bundle = format!(
        "{{\"resourceType\": \"Bundle\", \"entry\": [{{\"resource\": {{\"resourceType\": \"Patient\", \"id\": \"{MARKER}\", \"x\": {}{}}}}}]}}",
        "[".repeat(n),
        "]".repeat(n)
    );
    let got = parse_object(bundle.into_bytes(), request);
    assert_eq!(got.len(), 1);
    let err = got[0].as_ref().expect_err("an error");
    assert!(
        matches!(
            err,
            valtava_plugin::ParseError::Limit { setting: "depth", message, .. }
                if message == "the JSON document nests deeper than 103 levels"
        ),
        "{err}"
    );
    assert!(!err.to_string().contains(MARKER), "{err}");
}

/// `limits.depth` is the deepest a resource may nest, the resource itself the first
/// level: in a Bundle (three levels above its resources) or as a document of its own.
#[test]
fn limits_depth_is_the_deepest_a_resource_may_nest() {
    let (v, mut request) = ids_view();
    request.limits.depth = 5;
    // The resource, then `k` arrays inside it.
    let nested = |id: &str, k: usize| {
        format!(
            "{{\"resourceType\": \"Patient\", \"id\": \"{id}\", \"x\": {}{}}}",
            "[".repeat(k),
            "]".repeat(k)
        )
    };
    let bundle = |resources: &[String]| {
        let entries: Vec<String> = resources
            .iter()
            .map(|r| format!("{{\"resource\": {r}}}"))
            .collect();
        format!(
            "{{\"resourceType\": \"Bundle\", \"entry\": [{}]}}",
            entries.join(", ")
        )
    };
    let at_most = bundle(&[patient("p1"), nested("p2", 4)]);
    assert_eq!(
        ids(&read_all(at_most.as_bytes(), &v, &request)),
        ["p1", "p2"]
    );
    let deeper = bundle(&[patient("p1"), nested("p2", 5)]);
    let stop = read(deeper.as_bytes(), &v, &request, &mut |_| true).unwrap_err();
    assert_eq!(
        stop,
        Stop::Limit {
            setting: "depth",
            message: "the JSON document nests deeper than 8 levels".into()
        }
    );
    // One resource as the whole document: rejected as a row, not the object.
    let single = read_all(nested("p1", 5).as_bytes(), &v, &request);
    assert!(ids(&single).is_empty());
    assert_eq!(
        single[0].rejects,
        [valtava_plugin::RowReject {
            row: 1,
            reason: "JSON nests deeper than 5 levels".into()
        }]
    );
    // Brackets inside strings are text, not nesting.
    let text = format!(
        "{{\"resourceType\": \"Patient\", \"id\": \"p1\", \"note\": \"{}\\\"{}\"}}\n{}\n",
        "[".repeat(50),
        "{".repeat(50),
        patient("p2")
    );
    assert_eq!(ids(&read_all(text.as_bytes(), &v, &request)), ["p1", "p2"]);
}

/// A `repeat` path that reaches its own item again stops at the depth limit: the
/// resource is rejected, the thread's stack is not run down.
#[test]
fn a_repeat_that_never_runs_out_stops_at_the_depth() {
    let v = view::compile(&serde_json::json!({
        "resource": "Patient",
        "select": [{"repeat": ["$this"], "column": [{"name": "id", "path": "id"}]}]
    }))
    .unwrap();
    let err = v
        .rows_as_json(&serde_json::json!({"resourceType": "Patient", "id": "p1"}))
        .unwrap_err();
    assert_eq!(
        err,
        "Patient resource: `repeat` goes deeper than 100 levels"
    );
}

/// A view of Patients whose rows repeat the id in two columns beside each name's
/// family (`forEach`), and a request for it as the engine makes one.
/// One resource under the record bound can still ask for rows without end: a long id
/// repeated beside each of many names. Its rows are refused before they are built,
/// and the error names sizes only (failed before: 2 000 rows of 100 KB were built).
#[test]
fn a_resource_whose_rows_would_hold_too_much_is_refused() {
    let (mut v, _) = repeating_view();
    v.output_bytes = 1 << 20;
    let id = "x".repeat(100_000);
    let names = vec![serde_json::json!({"family": "A"}); 2000];
    let patient = serde_json::json!({"resourceType": "Patient", "id": id, "name": names});
    let err = v.rows_as_json(&patient).unwrap_err();
    assert!(err.contains("1 MiB"), "{err}");
    assert!(!err.contains("xxx"), "{err}");
    v.output_bytes = 1 << 30;
    assert_eq!(v.rows_as_json(&patient).unwrap().len(), 2000);
}

fn repeating_view() -> (view::View, ParseRequest) {
    let view = serde_json::json!({
        "resource": "Patient",
        "select": [
            {"column": [{"name": "id", "path": "id"}, {"name": "id2", "path": "id"}]},
            {"forEach": "name", "column": [{"name": "family", "path": "family"}]}
        ]
    });
    let v = view::compile(&view).unwrap();
    let request = ParseRequest {
        columns: v.columns.clone(),
        types: vec![],
        options: serde_json::json!({ "view": view }),
        batch_size: 100,
        base_dir: None,
        limits: Limits::default(),
    };
    (v, request)
}

/// A Patient with the given id and two names.
fn named(id: &str) -> String {
    format!(
        "{{\"resourceType\": \"Patient\", \"id\": \"{id}\", \"name\": [{{\"family\": \"A\"}}, {{\"family\": \"B\"}}]}}"
    )
}

/// A row longer than a record may be, from a line shorter than that (the row repeats
/// the line's id), stops the object with a `record_kib` limit that names the line (or
/// Bundle entry) and the row, and quotes nothing; under the limit the rows are read.
#[test]
fn a_row_longer_than_a_record_stops_the_object_and_is_never_quoted() {
    let (v, mut request) = repeating_view();
    request.limits.record_bytes = 4096;
    let id = format!("{MARKER}{}", "x".repeat(3000));
    assert!(named(&id).len() < 4096);
    let text = format!("{}\n{}\n", named("p1"), named(&id));
    let stop = read(text.as_bytes(), &v, &request, &mut |_| true).unwrap_err();
    let row_too_long = |place: &str| Stop::Limit {
        setting: "record_kib",
        message: format!(
            "row 1 of the resource at {place} is longer than 4 KiB (its values together)"
        ),
    };
    assert_eq!(stop, row_too_long("line 2"));
    // Through the stream, as the engine reads it: the object's error quotes nothing.
    let got = parse_object(text.clone().into_bytes(), request.clone());
    let err = got
        .last()
        .and_then(|r| r.as_ref().err())
        .expect("the stream ends with an error");
    assert_eq!(err.limit_setting(), Some("record_kib"), "{err}");
    let shown = err.to_string();
    assert!(
        !shown.contains(MARKER) && !shown.contains("xxxx"),
        "{shown}"
    );
    // In a Bundle the resource is named by its entry.
    let bundle = format!(
        "{{\"resourceType\": \"Bundle\", \"entry\": [{{\"resource\": {}}}, {{\"resource\": {}}}]}}",
        named("p1"),
        named(&id)
    );
    let stop = read(bundle.as_bytes(), &v, &request, &mut |_| true).unwrap_err();
    assert_eq!(stop, row_too_long("entry 2"));
    // Under the limit the same rows are read.
    request.limits.record_bytes = 8192;
    let got = read_all(text.as_bytes(), &v, &request);
    assert_eq!(ids(&got), ["p1", "p1", id.as_str(), id.as_str()]);
}

/// A batch is finished once it holds more than `BATCH_BYTES` of text, even amid one
/// resource's rows: a 1 MiB id repeated beside each of 70 names makes batches of 64
/// rows and 6, not one of 70.
#[test]
fn a_batch_is_finished_once_it_holds_more_than_64_mib_of_text() {
    let view = serde_json::json!({
        "resource": "Patient",
        "select": [
            {"column": [{"name": "id", "path": "id"}]},
            {"forEach": "name", "column": [{"name": "family", "path": "family"}]}
        ]
    });
    let v = view::compile(&view).unwrap();
    let request = ParseRequest {
        columns: v.columns.clone(),
        types: vec![],
        options: serde_json::json!({ "view": view }),
        batch_size: 100,
        base_dir: None,
        limits: Limits::default(),
    };
    let names = ["{\"family\": \"F\"}"; 70].join(", ");
    let line = format!(
        "{{\"resourceType\": \"Patient\", \"id\": \"{}\", \"name\": [{names}]}}\n",
        "x".repeat(1 << 20)
    );
    let got = read_all(line.as_bytes(), &v, &request);
    let sizes: Vec<usize> = got.iter().map(|p| p.batch.num_rows()).collect();
    // Each row holds 1 MiB and one byte of text: 64 rows are just over 64 MiB.
    assert_eq!(sizes, [64, 6]);
}

/// The row numbers and ids of parsed batches, and their rejects' row numbers.
fn numbered(parsed: &[ParsedBatch]) -> (Vec<(u64, String)>, Vec<u64>) {
    let mut rows = Vec::new();
    let mut rejects = Vec::new();
    for p in parsed {
        let nums = p
            .batch
            .column(p.batch.num_columns() - 1)
            .as_any()
            .downcast_ref::<arrow::array::UInt64Array>()
            .unwrap();
        let ids = ids(std::slice::from_ref(p));
        rows.extend((0..ids.len()).map(|r| nums.value(r)).zip(ids));
        rejects.extend(p.rejects.iter().map(|r| r.row));
    }
    (rows, rejects)
}

/// NDJSON larger than `limits.object_bytes` is read as it streams in, not refused: the
/// bound is for objects read whole (failed before: the object was refused with
/// `object_mib`). Every line comes out once, in order, with its number.
#[test]
fn ndjson_larger_than_an_object_may_be_streams() {
    let (_, mut request) = ids_view();
    request.limits.object_bytes = 1 << 20;
    request.batch_size = 1000;
    let n = 120_000;
    let mut text = String::new();
    for i in 1..=n {
        if i % 1000 == 0 {
            text.push_str("{broken\n");
        } else {
            text.push_str(&patient(&format!("p{i}")));
            text.push('\n');
        }
    }
    assert!(text.len() > lines::WINDOW_BYTES);
    let got = parse_object(text.into_bytes(), request);
    let parsed: Vec<ParsedBatch> = got.into_iter().map(Result::unwrap).collect();
    let (rows, rejects) = numbered(&parsed);
    let want: Vec<(u64, String)> = (1..=n as u64)
        .filter(|i| i % 1000 != 0)
        .map(|i| (i, format!("p{i}")))
        .collect();
    assert_eq!(rows, want);
    assert_eq!(rejects, (1..=120).map(|i| i * 1000).collect::<Vec<u64>>());
}

/// A Bundle written over many lines and larger than a window is still read whole as one
/// document (its second line is no resource), within `object_bytes`.
#[test]
fn a_large_bundle_over_many_lines_is_one_document() {
    let (_, request) = ids_view();
    let entries: Vec<String> = (1..=100_000)
        .map(|i| format!("    {{\"resource\": {}}}", patient(&format!("p{i}"))))
        .collect();
    let bundle = format!(
        "{{\n  \"resourceType\": \"Bundle\",\n  \"entry\": [\n{}\n  ]\n}}\n",
        entries.join(",\n")
    );
    assert!(bundle.len() > lines::WINDOW_BYTES);
    let got = parse_object(bundle.into_bytes(), request);
    let parsed: Vec<ParsedBatch> = got.into_iter().map(Result::unwrap).collect();
    let (rows, rejects) = numbered(&parsed);
    assert_eq!(rows.len(), 100_000);
    assert_eq!(rows[99_999], (100_000, "p100000".to_string()));
    assert!(rejects.is_empty());
}

/// Windows of a few lines through the workers: every line once, in order and numbered
/// (blank lines counted), whatever the chunks the object arrives in; a line longer than a
/// record stops the object after the lines before it, named by its number; a failed
/// input stops without reading its partial last line.
#[test]
fn windows_keep_the_lines_order_and_stop_at_a_line_too_long() {
    let (v, mut request) = ids_view();
    request.batch_size = 7;
    request.limits.record_bytes = 200;
    let mut text = String::new();
    for i in 1..=500 {
        match i % 50 {
            0 => text.push('\n'),
            7 => text.push_str("[1, 2\n"),
            _ => text.push_str(&format!("{}\n", patient(&format!("p{i}")))),
        }
    }
    let want: Vec<(u64, String)> = (1..=500u64)
        .filter(|i| i % 50 != 0 && i % 50 != 7)
        .map(|i| (i, format!("p{i}")))
        .collect();
    let run = |bytes: &[u8], chunk: usize, failed: bool| {
        let mut chunks = bytes.chunks(chunk).map(bytes::Bytes::copy_from_slice);
        let mut next = || match chunks.next() {
            Some(c) => lines::Next::Chunk(c),
            None if failed => lines::Next::Failed,
            None => lines::Next::End,
        };
        let mut out = Vec::new();
        let result = lines::read(Vec::new(), &mut next, &v, &request, 300, &mut |b| {
            out.push(b);
            true
        });
        (numbered(&out), result)
    };
    for chunk in [1, 13, 4096] {
        let ((rows, rejects), result) = run(text.as_bytes(), chunk, false);
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(rows, want, "chunks of {chunk}");
        assert_eq!(rejects, (0..10).map(|k| k * 50 + 7).collect::<Vec<u64>>());
    }
    // Line 301 is longer than a record: lines 1–300 are read, then the object stops.
    let long = format!("{{\"id\": \"{}\"}}", "x".repeat(300));
    let mut cut: Vec<String> = text.lines().map(String::from).collect();
    cut[300] = long;
    let cut = cut.join("\n");
    for (chunk, ended) in [(13, true), (4096, true), (13, false)] {
        // Without its line end (`ended`: false), the long line is the object's last.
        let bytes = if ended {
            cut.clone()
        } else {
            cut[..cut.find(&"x".repeat(300)).unwrap() + 300].to_string()
        };
        let ((rows, _), result) = run(bytes.as_bytes(), chunk, false);
        assert_eq!(rows, want[..want.iter().position(|r| r.0 > 300).unwrap()]);
        assert_eq!(
            result.unwrap_err(),
            Stop::Limit {
                setting: "record_kib",
                message: "line 301 is longer than 200 bytes".into()
            }
        );
    }
    // A failed input: what arrived whole is read, the partial last line is not.
    let part = &text.as_bytes()[..text.find("p123\"").unwrap()];
    let ((rows, _), result) = run(part, 13, true);
    assert!(result.is_ok());
    assert_eq!(rows.last().map(|r| r.0), Some(122));
}

/// The windows' buffers are filled again once evaluated, not allocated one a window: a
/// fresh buffer each time was memory the allocator never took back, and the process grew
/// by the size of the object (failed before: one buffer a window, 400 here).
#[test]
fn window_buffers_are_reused() {
    use std::sync::atomic::Ordering;
    let (v, request) = ids_view();
    let line = format!("{}\n", patient("p1"));
    let text = line.repeat(400 * 1024 / line.len());
    let mut chunks = text
        .as_bytes()
        .chunks(4096)
        .map(bytes::Bytes::copy_from_slice);
    let mut next = || chunks.next().map_or(lines::Next::End, lines::Next::Chunk);
    let before = lines::NEW_WINDOW_BUFFERS.load(Ordering::Relaxed);
    let mut rows = 0;
    lines::read(Vec::new(), &mut next, &v, &request, 1024, &mut |b| {
        rows += b.batch.num_rows();
        true
    })
    .unwrap();
    assert_eq!(rows, text.len() / line.len());
    let new = lines::NEW_WINDOW_BUFFERS.load(Ordering::Relaxed) - before;
    // About the windows on the way at once (the channel's, the workers', those ahead; a
    // test reading beside this one may add its own few to the shared count).
    assert!(
        new <= 100,
        "{new} buffers for {} windows",
        text.len() / 1024
    );
}

/// A Bundle larger than a window, written an entry a line, is one document: its second
/// line starts with `{` but its first line ends inside the entries (failed before: read as
/// NDJSON, every line rejected and no row read).
#[test]
fn a_large_bundle_with_an_entry_a_line_is_one_document() {
    let (v, request) = ids_view();
    let entries: Vec<String> = (1..=100_000)
        .map(|i| format!("{{\"resource\": {}}}", patient(&format!("p{i}"))))
        .collect();
    let bundle = format!(
        "{{\"resourceType\": \"Bundle\", \"type\": \"collection\", \"entry\": [\n{}\n]}}\n",
        entries.join(",\n")
    );
    assert!(bundle.len() > lines::WINDOW_BYTES);
    assert_eq!(
        numbered(&read_all(bundle.as_bytes(), &v, &request)).0.len(),
        100_000
    );
    let parsed: Vec<ParsedBatch> = parse_object(bundle.into_bytes(), request)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let (rows, rejects) = numbered(&parsed);
    assert_eq!(rows.len(), 100_000);
    assert_eq!(rows[99_999], (100_000, "p100000".to_string()));
    assert!(rejects.is_empty(), "{} rejects", rejects.len());
}

/// A key given twice is read once, its last value in its first place, as serde_json's
/// map read it (failed before: a choice element given twice had two values, and an
/// object was written with the key twice).
#[test]
fn a_key_given_twice_is_read_once() {
    let view = serde_json::json!({"resource": "Observation", "select": [{"column": [
        {"name": "v", "path": "value.ofType(string)"},
        {"name": "c", "path": "code | code", "collection": true}]}]});
    let v = view::compile(&view).unwrap();
    let r = json::Json::parse(
        r#"{"resourceType": "Observation", "valueString": "a", "valueString": "b", "code": {"text": "x", "text": "y"}}"#,
    )
    .unwrap();
    let rows = v.rows(&r).unwrap();
    assert_eq!(rows[0][0].to_value(), Value::from("b"));
    assert_eq!(rows[0][1].to_value(), serde_json::json!([{"text": "y"}]));
    assert_eq!(text_of(&rows[0][1]).as_deref(), Some(r#"[{"text":"y"}]"#));
}

/// A reader that stops listening stops the workers and the reader of a streamed object:
/// no batch after the last it took, no hang, and the rest of the object is not read.
#[test]
fn a_stop_ends_the_streamed_reading() {
    let (v, mut request) = ids_view();
    request.batch_size = 10;
    let text: String = (1..=20_000)
        .map(|i| format!("{}\n", patient(&format!("p{i}"))))
        .collect();
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(512).collect();
    let mut pulled = 0;
    let mut next = || match chunks.get(pulled) {
        Some(c) => {
            pulled += 1;
            lines::Next::Chunk(bytes::Bytes::copy_from_slice(c))
        }
        None => lines::Next::End,
    };
    let mut emitted = 0;
    lines::read(Vec::new(), &mut next, &v, &request, 1024, &mut |_| {
        emitted += 1;
        emitted < 3
    })
    .unwrap();
    assert_eq!(emitted, 3);
    assert!(
        pulled < chunks.len() / 10,
        "{pulled} of {} chunks read",
        chunks.len()
    );
}
