use super::read::parse_piece;
use super::split::Cutter;
use super::*;
use arrow::array::{Array, AsArray};
use arrow::datatypes::UInt64Type;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use valtava_plugin::RowReject;

async fn parse(
    bytes: &[u8],
    columns: &[&str],
    options: serde_json::Value,
    batch_size: usize,
) -> (Vec<Vec<Option<String>>>, Vec<u64>, Vec<RowReject>) {
    let store = Arc::new(InMemory::new());
    let path = Path::from("t.csv");
    store
        .put(&path, PutPayload::from(bytes.to_vec()))
        .await
        .unwrap();
    let object = SourceObject {
        store,
        path,
        size: bytes.len() as u64,
        name: "t.csv".into(),
    };
    let request = ParseRequest {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        types: vec![],
        options,
        batch_size,
        base_dir: None,
        limits: Limits::default(),
    };
    let mut s = CsvParser.parse(object, request);
    let (mut rows, mut lines, mut rejects) = (vec![], vec![], vec![]);
    while let Some(b) = s.next().await {
        let b = b.unwrap();
        rejects.extend(b.rejects);
        let batch = b.batch;
        for r in 0..batch.num_rows() {
            rows.push(
                (0..columns.len())
                    .map(|c| {
                        let a = batch.column(c).as_string::<i32>();
                        a.is_valid(r).then(|| a.value(r).to_string())
                    })
                    .collect(),
            );
            lines.push(
                batch
                    .column(columns.len())
                    .as_primitive::<UInt64Type>()
                    .value(r),
            );
        }
    }
    (rows, lines, rejects)
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[tokio::test]
async fn semicolons_quotes_bom_and_header_order() {
    let data = "\u{feff}b;a\n\"x;1\";\"say \"\"hi\"\"\"\n\"multi\nline\";2\n;3";
    let (rows, lines, rejects) = parse(
        data.as_bytes(),
        &["a", "b"],
        serde_json::json!({"delimiter": ";"}),
        8192,
    )
    .await;
    assert!(rejects.is_empty());
    assert_eq!(
        rows,
        vec![
            vec![s("say \"hi\""), s("x;1")],
            vec![s("2"), s("multi\nline")],
            vec![s("3"), None],
        ]
    );
    assert_eq!(lines, vec![2, 3, 5]);
}

#[tokio::test]
async fn windows_1252_is_decoded() {
    let data = b"kunta;nimi\n091;Hyvink\xe4\xe4\n";
    let (rows, _, rejects) = parse(
        data,
        &["nimi"],
        serde_json::json!({"delimiter": ";", "encoding": "windows-1252"}),
        8192,
    )
    .await;
    assert!(rejects.is_empty());
    assert_eq!(rows, vec![vec![s("Hyvinkää")]]);
}

#[tokio::test]
async fn bad_rows_are_rejected_with_their_line() {
    let data = b"a,b\n1,2\n3\n4,5,6\n\xe4,7\n8,9\n";
    let (rows, lines, rejects) = parse(data, &["a", "b"], serde_json::Value::Null, 2).await;
    assert_eq!(rows, vec![vec![s("1"), s("2")], vec![s("8"), s("9")]]);
    assert_eq!(lines, vec![2, 6]);
    assert_eq!(
        rejects.iter().map(|r| r.row).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert!(
        rejects[0].reason.contains("expected 2 fields"),
        "{}",
        rejects[0].reason
    );
    assert!(
        rejects[2].reason.contains("not valid UTF-8"),
        "{}",
        rejects[2].reason
    );
}

#[tokio::test]
async fn missing_column_names_the_object() {
    let store = Arc::new(InMemory::new());
    let path = Path::from("t.csv");
    store
        .put(&path, PutPayload::from_static(b"a\n1\n"))
        .await
        .unwrap();
    let object = SourceObject {
        store,
        path,
        size: 4,
        name: "inbox/t.csv".into(),
    };
    let request = ParseRequest {
        columns: vec!["a".into(), "kunta".into()],
        types: vec![],
        options: serde_json::Value::Null,
        batch_size: 10,
        base_dir: None,
        limits: Limits::default(),
    };
    let err = CsvParser
        .parse(object, request)
        .next()
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("inbox/t.csv") && err.contains("`kunta`"),
        "{err}"
    );
}

#[tokio::test]
async fn headerless_null_values_and_batches() {
    let mut data = String::new();
    for i in 0..25 {
        data.push_str(&format!("{i},NA\r\n"));
    }
    let (rows, lines, _) = parse(
        data.as_bytes(),
        &["n", "m"],
        serde_json::json!({"header": false, "null_values": ["NA"]}),
        10,
    )
    .await;
    assert_eq!(rows.len(), 25);
    assert_eq!(rows[24], vec![s("24"), None]);
    assert_eq!(lines[0], 1);
    assert_eq!(lines[24], 25);
}

/// Rows, line numbers and rejects of pieces parsed one after another (as the driver
/// does, in order), or the first error.
type Outcome = Result<(Vec<Vec<Option<String>>>, Vec<u64>, Vec<RowReject>), String>;

fn parse_pieces(ctx: &Ctx, pieces: &[Piece]) -> Outcome {
    let mut layout = (!ctx.options.header).then(|| Layout {
        positions: (0..ctx.columns.len()).collect(),
        fields: ctx.columns.len(),
    });
    let (mut rows, mut lines, mut rejects) = (vec![], vec![], vec![]);
    for piece in pieces {
        let parsed = parse_piece(ctx, piece, layout.clone()).map_err(|e| e.to_string())?;
        if let Some(e) = parsed.stop {
            return Err(e.to_string());
        }
        layout = layout.or(parsed.layout);
        for b in parsed.batches {
            rejects.extend(b.rejects);
            let batch = b.batch;
            for r in 0..batch.num_rows() {
                rows.push(
                    (0..ctx.columns.len())
                        .map(|c| {
                            let a = batch.column(c).as_string::<i32>();
                            a.is_valid(r).then(|| a.value(r).to_string())
                        })
                        .collect(),
                );
                let line = batch.column(ctx.columns.len()).as_primitive::<UInt64Type>();
                lines.push(line.value(r));
            }
        }
    }
    if layout.is_none() {
        return Err("the object has no header row".into());
    }
    Ok((rows, lines, rejects))
}

/// Bytes from a small alphabet that exercises every state of the reader: delimiters,
/// quotes (opening, doubled, inside unquoted fields), `\n`, `\r`, a byte-order mark,
/// UTF-8 and invalid bytes.
fn random_csv(seed: &mut u64, header: bool) -> Vec<u8> {
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    const PARTS: [&[u8]; 14] = [
        b"a",
        b"bc",
        b";",
        b";",
        b"\"",
        b"\"",
        b"\"\"",
        b"\n",
        b"\n",
        b"\r",
        b"\r\n",
        b"\xef\xbb\xbf",
        b"\xc3\xa4",
        b"\xff",
    ];
    let mut out = Vec::new();
    if next() % 3 == 0 {
        out.extend_from_slice(b"\xef\xbb\xbf");
    }
    if header {
        out.extend_from_slice(b"a;b\n");
    }
    let n = next() % 120;
    for _ in 0..n {
        out.extend_from_slice(PARTS[(next() % PARTS.len() as u64) as usize]);
    }
    out
}

#[test]
fn pieces_parse_as_the_whole_object_does() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut cuts = 0;
    for case in 0..800 {
        let header = case % 2 == 0;
        let encoding = if case % 5 == 0 {
            Encoding::Windows1252
        } else {
            Encoding::Utf8
        };
        let bytes = random_csv(&mut seed, header);
        let ctx = Ctx {
            object: "t.csv".into(),
            columns: vec!["a".into(), "b".into()],
            options: CsvOptions {
                delimiter: ';',
                header,
                encoding,
                ..Default::default()
            },
            batch_size: 3,
            record_bytes: Limits::RECORD_BYTES,
        };
        let whole = parse_pieces(
            &ctx,
            &[Piece {
                parts: vec![Bytes::from(bytes.clone())],
                lines_before: 0,
            }],
        );
        for (size, chunk) in [(1, 1), (2, 3), (9, 4), (30, 7)] {
            let mut cutter = Cutter::new(&ctx.options, size);
            let mut pieces: Vec<Piece> = bytes
                .chunks(chunk)
                .filter_map(|c| cutter.push(Bytes::copy_from_slice(c)))
                .collect();
            pieces.push(cutter.finish());
            cuts += pieces.len() - 1;
            assert_eq!(
                pieces
                    .iter()
                    .flat_map(|p| p.parts.iter().flat_map(|b| b.to_vec()))
                    .collect::<Vec<u8>>(),
                bytes
            );
            assert_eq!(
                parse_pieces(&ctx, &pieces),
                whole,
                "case {case}, pieces of {size}, chunks of {chunk}: {:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
    // The cases did cut objects, many times.
    assert!(cuts > 10_000, "{cuts}");
}

/// Cuts `data`, arriving in chunks of `chunk` bytes, into pieces of at least `size`;
/// checks that every byte of every piece is the object's own byte in its own place in
/// the chunk it arrived in (not a copy), and returns the pieces.
fn cut_in_place(options: &CsvOptions, data: &[u8], size: usize, chunk: usize) -> Vec<Piece> {
    let object = Bytes::copy_from_slice(data);
    let base = object.as_ptr() as usize;
    let mut cutter = Cutter::new(options, size);
    let mut pieces: Vec<Piece> = (0..data.len())
        .step_by(chunk)
        .filter_map(|at| cutter.push(object.slice(at..(at + chunk).min(data.len()))))
        .collect();
    pieces.push(cutter.finish());
    let mut at = 0;
    for part in pieces.iter().flat_map(|p| &p.parts) {
        assert_eq!(part.as_ptr() as usize - base, at, "a part not in place");
        at += part.len();
    }
    assert_eq!(at, data.len());
    pieces
}

/// Pieces gathered from many small chunks (as an object store's HTTP body arrives) are
/// those chunks, cut at record ends: no byte is copied into a buffer of the piece's own.
#[test]
fn pieces_are_made_of_the_chunks_they_came_in() {
    let options = CsvOptions {
        delimiter: ';',
        ..Default::default()
    };
    let mut data = Vec::new();
    for i in 0..200_000 {
        data.extend_from_slice(format!("{i};nimi {i}\n").as_bytes());
    }
    let (size, chunk) = (256 << 10, 8 << 10);
    let pieces = cut_in_place(&options, &data, size, chunk);
    assert!(pieces.len() >= 8, "{} pieces", pieces.len());
    for p in &pieces[..pieces.len() - 1] {
        // Cut at the last record end in the chunk that made it long enough.
        assert!(
            p.len() >= size && p.len() < size + chunk + 64,
            "{}",
            p.len()
        );
        // Each ends with a whole record.
        assert_eq!(p.parts.last().and_then(|b| b.last()), Some(&b'\n'));
    }
}

/// A record longer than a piece (a long quoted text) is kept whole, in the chunks it
/// arrived in.
#[test]
fn a_record_longer_than_a_piece_stays_in_its_chunks() {
    let options = CsvOptions::default();
    let (size, chunk) = (4 << 10, 1 << 10);
    let mut record = b"1,\"".to_vec();
    record.extend(std::iter::repeat_n(b'x', 1 << 20));
    record.extend_from_slice(b"\"\n");
    let long = record.len();
    for i in 0..2000 {
        record.extend_from_slice(format!("{i},y\n").as_bytes());
    }
    let pieces = cut_in_place(&options, &record, size, chunk);
    // The first piece ends in the chunk where the long record ends, after the last
    // record end there; it is made of every chunk up to that one.
    assert!(pieces.len() > 2);
    assert!(pieces[0].len() >= long && pieces[0].len() < long + chunk);
    assert_eq!(pieces[0].parts.len(), long.div_ceil(chunk));
}

#[tokio::test]
async fn an_object_in_many_pieces_keeps_its_order() {
    let dir = std::env::temp_dir().join(format!("valtava-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Three megabytes: the local store hands them over in 1 MiB chunks, each a piece.
    let mut data = String::from("n;t\n");
    let mut i = 0;
    while data.len() < 3 << 20 {
        data.push_str(&format!("{i};\"x\n{i}\"\n"));
        i += 1;
    }
    std::fs::write(dir.join("t.csv"), &data).unwrap();
    let store: Arc<dyn object_store::ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&dir).unwrap());
    let object = SourceObject {
        store,
        path: Path::from("t.csv"),
        size: data.len() as u64,
        name: "t.csv".into(),
    };
    let request = ParseRequest {
        columns: vec!["n".into(), "t".into()],
        types: vec![],
        options: serde_json::json!({"delimiter": ";"}),
        batch_size: 1000,
        base_dir: None,
        limits: Limits::default(),
    };
    let mut s = parse_in_pieces(object, request, 1000);
    let mut expected = 0u64;
    while let Some(b) = s.next().await {
        let b = b.unwrap().batch;
        let n = b.column(0).as_string::<i32>();
        let t = b.column(1).as_string::<i32>();
        let line = b.column(2).as_primitive::<UInt64Type>();
        for r in 0..b.num_rows() {
            assert_eq!(n.value(r), expected.to_string());
            assert_eq!(t.value(r), format!("x\n{expected}"));
            assert_eq!(line.value(r), 2 + 2 * expected);
            expected += 1;
        }
    }
    assert_eq!(expected, i);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Parses `bytes` (columns `a` and `b`) with records of at most `limit` bytes: the values
/// of `a`, and the error that ended the stream, if one did.
async fn parse_limited(bytes: Vec<u8>, limit: usize) -> (Vec<String>, Option<ParseError>) {
    let store = Arc::new(InMemory::new());
    let path = Path::from("t.csv");
    let size = bytes.len() as u64;
    store.put(&path, PutPayload::from(bytes)).await.unwrap();
    let object = SourceObject {
        store,
        path,
        size,
        name: "t.csv".into(),
    };
    let request = ParseRequest {
        columns: vec!["a".into(), "b".into()],
        types: vec![],
        options: serde_json::Value::Null,
        batch_size: 1000,
        base_dir: None,
        limits: Limits {
            record_bytes: limit,
            ..Limits::default()
        },
    };
    let mut s = CsvParser.parse(object, request);
    let mut values = vec![];
    while let Some(b) = s.next().await {
        match b {
            Ok(b) => {
                let a = b.batch.column(0).as_string::<i32>();
                values.extend((0..a.len()).map(|r| a.value(r).to_string()));
            }
            Err(e) => {
                // The error ends the stream.
                assert!(s.next().await.is_none());
                return (values, Some(e));
            }
        }
    }
    (values, None)
}

/// A quoted field that is never closed would make the rest of the object one record: it
/// stops the object once longer than the limit, after the rows before it, and the error
/// names its line and the bound, not what it holds.
#[tokio::test]
async fn an_unclosed_quote_stops_the_object_after_the_rows_before_it() {
    let limit = 64 << 10;
    let mut data = b"a,b\n1,2\n3,4\n5,\"never closed SALAINEN-MERKKI ".to_vec();
    while data.len() < 8 << 20 {
        data.extend_from_slice(b"more text, \"\" and lines\n");
    }
    let (values, error) = parse_limited(data, limit).await;
    assert_eq!(values, ["1", "3"]);
    let error = error.expect("a limit error");
    let text = error.to_string();
    assert_eq!(error.limit_setting(), Some("record_kib"), "{text}");
    assert!(
        text.contains("t.csv") && text.contains("line 4") && text.contains("64 KiB"),
        "{text}"
    );
    assert!(!text.contains("SALAINEN"), "{text}");
}

/// A record as long as the limit is read; one byte more, and the object stops at it
/// (here found by the reader of a piece: the object arrives in one chunk).
#[tokio::test]
async fn a_record_as_long_as_the_limit_is_read_and_a_longer_one_is_not() {
    let limit = 64 << 10;
    let object = |len: usize| {
        // `2,"yy…y"` of `len` bytes, between two short records.
        let mut record = b"2,\"SALAINEN-MERKKI".to_vec();
        record.resize(len - 1, b'y');
        record.push(b'"');
        let mut data = b"a,b\r\n1,x\r\n".to_vec();
        data.extend(record);
        data.extend_from_slice(b"\r\n3,z\r\n");
        data
    };
    let (values, error) = parse_limited(object(limit), limit).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(values, ["1", "2", "3"]);
    let (values, error) = parse_limited(object(limit - 100), limit).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(values, ["1", "2", "3"]);
    let (values, error) = parse_limited(object(limit + 1), limit).await;
    assert_eq!(values, ["1"]);
    let error = error.expect("a limit error");
    let text = error.to_string();
    assert_eq!(error.limit_setting(), Some("record_kib"), "{text}");
    assert!(text.contains("line 3") && text.contains("64 KiB"), "{text}");
    assert!(!text.contains("SALAINEN"), "{text}");
}

/// The cutter refuses a record at the first chunk that makes it longer than the limit:
/// no more of it is held than the limit and a chunk. The records before it are a piece.
#[test]
fn the_cutter_refuses_a_long_record_as_it_arrives() {
    let (limit, chunk) = (64 << 10, 8 << 10);
    let mut data = b"a,b\n1,2\n3,\"".to_vec();
    data.resize(8 << 20, b'x');
    let mut cutter = Cutter::new(&CsvOptions::default(), PIECE);
    let mut refused = None;
    for c in data.chunks(chunk) {
        assert!(cutter.push(Bytes::copy_from_slice(c)).is_none());
        if let Some(line) = cutter.overlong(limit) {
            refused = Some(line);
            break;
        }
    }
    assert_eq!(refused, Some(3));
    assert!(
        cutter.pending_len <= limit + chunk + 8,
        "{}",
        cutter.pending_len
    );
    let before = cutter.ended().expect("the records before it");
    assert_eq!(before.len(), 8);
    assert_eq!(before.lines_before, 0);
    // A record as long as the limit, arriving in small chunks, is not refused.
    let mut data = b"a,b\n1,\"".to_vec();
    data.resize(4 + limit - 1, b'x');
    data.extend_from_slice(b"\"\r\n2,y\r\n");
    let mut cutter = Cutter::new(&CsvOptions::default(), PIECE);
    for c in data.chunks(1000) {
        assert!(cutter.push(Bytes::copy_from_slice(c)).is_none());
        assert_eq!(cutter.overlong(limit), None);
    }
}

#[test]
fn options_are_checked() {
    assert!(
        CsvParser
            .check_options(&serde_json::json!({"delimiter": "ä"}))
            .is_err()
    );
    assert!(
        CsvParser
            .check_options(&serde_json::json!({"delimiter": "\""}))
            .is_err()
    );
    assert!(
        CsvParser
            .check_options(&serde_json::json!({"delimitr": ";"}))
            .is_err()
    );
    assert!(
        CsvParser
            .check_options(&serde_json::json!({"delimiter": ";"}))
            .is_ok()
    );
}
