//! Fuzzing of everything that reads what others send: the line loader and every parser.
//!
//! Every input is hostile. A line file comes from a person, a source object from a
//! submitter's system: either may be truncated, corrupted, nested a hundred thousand deep or
//! written to take the reader down. Whatever the bytes, reading them must end, with rows, row
//! rejects or an error, and never with a panic or a hang. The messages (errors and the reasons
//! of rejected rows) name places and bounds, never content: a source may hold identity codes.
//!
//! Each target takes the seeds of its corpus, applies a random list of mutations (bit flips,
//! byte replacements, truncation, a slice duplicated, random bytes, fragments of the formats'
//! syntax, nesting ten thousand deep, long runs of one byte, a quote left open) and reads the
//! result: a line file with [`valtava::line::load::load_text`] (its diagnostics rendered against the
//! text, as the CLI shows them), a source object with the format's parser over an in-memory
//! store, with small [`Limits`] so that the bounds are reached. Every case runs on a thread of
//! its own and fails if it has not ended within [`CASE_TIME`], or if it panicked: also when the
//! parser caught the panic and reported it as the object's error (the engine would quarantine
//! the object, yet the panic is a bug). The parsers whose seeds hold the synthetic identity
//! code [`MARKER`] (csv, ndjson, fhir, cda, xlsx) fail a case whose messages quote it. The
//! `external` format is not fuzzed: it hands the bytes to a program of the line's own.
//!
//! # The corpus
//!
//! `tests/fuzz/corpus/<target>/`, one folder per target (`line`, `csv`, `ndjson`, `fhir`,
//! `cda`, `xlsx`, `parquet`): small synthetic seeds, each file one input. A folder inside the
//! `xlsx` corpus is a workbook's parts: the harness packs them into a zip archive itself
//! (stored, with the right CRC-32s, so that a mutated part reaches the XML readers rather than
//! stopping at the archive's checksum), and mutates either one part or the packed archive.
//! `tests/data/talous/2025/talous.xlsx` is an `xlsx` seed too, and the `parquet` seeds are
//! written by the test (see [`parquet_seeds`]). Every seed is also read as it is, with every
//! request of its target, on each run.
//!
//! # Running it
//!
//! `cargo test --test fuzz` runs 64 mutated inputs per target (`VALTAVA_FUZZ_CASES`, default
//! 64, so that the usual test run stays quick); CI runs 3000 (`tests/run-all.sh`, about half a minute). Longer:
//!
//! ```text
//! VALTAVA_FUZZ_CASES=5000 cargo test --test fuzz
//! VALTAVA_FUZZ_CASES=20000 cargo test --release --test fuzz fuzz_cda   # one target
//! VALTAVA_FUZZ_SEED=7 cargo test --test fuzz                           # other inputs
//! ```
//!
//! The inputs are deterministic: each target's random generator is seeded from its name and
//! `VALTAVA_FUZZ_SEED` (default 0), so a failure in CI repeats on any machine with the same
//! settings. Proptest's own failure files are off (`failure_persistence: None`: they would
//! be written beside the sources, outside the corpus). Instead the shrunk failing input is
//! written to `target/tmp/fuzz/<target>.failing`; once the bug is fixed, copy it into the
//! target's corpus folder, where it is read on every run from then on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use arrow::datatypes::DataType;
use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value, json};
use valtava_plugin::{Limits, ParseRequest, ROW_COLUMN, SourceObject};

/// The synthetic identity code in the seeds, which no message may quote.
const MARKER: &str = "131052-308T";

/// Mutated inputs per target when `VALTAVA_FUZZ_CASES` is not set.
const DEFAULT_CASES: u32 = 64;

/// How long one input may take to read before its case fails as a hang (debug builds on
/// two cores read any of these inputs in well under a second).
const CASE_TIME: Duration = Duration::from_secs(20);

/// The largest input a mutation may make: a mutation that would grow it past this is skipped.
const MAX_INPUT: usize = 1 << 20;

/// Bounds small enough for mutated seeds to reach them: a long run of one byte passes the
/// record bound, nesting ten thousand deep passes the depth bound.
const LIMITS: Limits = Limits {
    record_bytes: 64 << 10,
    object_bytes: 8 << 20,
    cells: 100_000,
    depth: 64,
};

/// Rows per batch: small, so that the seeds' rows span several batches.
const BATCH_SIZE: usize = 3;

/// The object's name in the in-memory store.
const OBJECT: &str = "inbox/fuzz/input";

// ---------------------------------------------------------------------------------------
// The targets.

/// Line files: loading and rendering the diagnostics of any text ends without a panic.
#[test]
fn fuzz_line() {
    let seeds = corpus("line");
    assert!(
        !seeds.is_empty(),
        "no seeds in {}",
        corpus_dir("line").display()
    );
    // The seeds are valid lines: mutations start from files that reach every check.
    for seed in &seeds {
        let text = String::from_utf8(seed.bytes().to_vec()).expect("a line seed is UTF-8");
        if let Err(diags) =
            valtava::line::load::load_text(&seed.name, &corpus_dir("line"), text.clone())
        {
            let shown: Vec<String> = diags.iter().map(|d| d.render(Some(&text))).collect();
            panic!(
                "line seed `{}` does not load:\n{}",
                seed.name,
                shown.join("\n")
            );
        }
    }
    run("line", case(seeds.len(), 1), |case| {
        check_line(&seeds, &case)
    });
}

/// CSV, with each delimiter, encoding and header setting the seeds are written in.
#[test]
fn fuzz_csv() {
    let columns = ["id", "hetu", "kunta", "pvm", "arvo"];
    let target = Target {
        format: "csv",
        requests: vec![
            request(&columns, json!({})),
            request(&columns, json!({ "delimiter": ";" })),
            request(
                &columns,
                json!({ "delimiter": ";", "encoding": "windows-1252" }),
            ),
            request(&columns, json!({ "header": false })),
            request(
                &columns,
                json!({ "trim": true, "null_values": ["NA", "-"] }),
            ),
            request(&["hetu"], json!({ "quote": "'" })),
        ],
        never_quotes: true,
    };
    fuzz_parser(&target, corpus("csv"));
}

/// NDJSON lines, objects or not.
#[test]
fn fuzz_ndjson() {
    let target = Target {
        format: "ndjson",
        requests: vec![
            request(&["id", "hetu", "kunta", "arvo", "tiedot"], Value::Null),
            request(&["hetu"], json!({})),
        ],
        never_quotes: true,
    };
    fuzz_parser(&target, corpus("ndjson"));
}

/// FHIR NDJSON and Bundles through three views: columns, `where` and `forEachOrNull`, and
/// `repeat`.
#[test]
fn fuzz_fhir() {
    let hetu = "identifier.where(system = 'urn:oid:1.2.246.21').value.first()";
    let patients = json!({ "view": {
        "resource": "Patient",
        "select": [{ "column": [
            { "name": "id", "path": "getResourceKey()" },
            { "name": "hetu", "path": hetu },
            { "name": "sukunimi", "path": "name.family" },
            { "name": "syntynyt", "path": "birthDate" }
        ]}]
    }});
    let observations = json!({ "view": {
        "resource": "Observation",
        "where": [{ "path": "status = 'final'" }],
        "select": [
            { "column": [
                { "name": "id", "path": "getResourceKey()" },
                { "name": "potilas", "path": "subject.getReferenceKey(Patient)" },
                { "name": "arvo", "path": "valueQuantity.value" }
            ]},
            { "forEachOrNull": "code.coding", "column": [
                { "name": "jarjestelma", "path": "system" },
                { "name": "koodi", "path": "code" }
            ]}
        ]
    }});
    // `repeat` follows the data down: nested items are bounded by the depth limit.
    let answers = json!({ "view": {
        "resource": "QuestionnaireResponse",
        "select": [
            { "column": [{ "name": "id", "path": "getResourceKey()" }] },
            { "repeat": ["item"], "column": [
                { "name": "linkid", "path": "linkId" },
                { "name": "vastaus", "path": "answer.valueString.first()" }
            ]}
        ]
    }});
    let target = Target {
        format: "fhir",
        requests: vec![
            request(&["id", "hetu", "sukunimi", "syntynyt"], patients),
            request(
                &["id", "potilas", "arvo", "jarjestelma", "koodi"],
                observations,
            ),
            request(&["id", "linkid", "vastaus"], answers),
        ],
        never_quotes: true,
    };
    fuzz_parser(&target, corpus("fhir"));
}

/// CDA documents: header fields, and entries of a template.
#[test]
fn fuzz_cda() {
    let patient = "/recordTarget/patientRole/id/@extension";
    let header = json!({ "fields": {
        "potilas": patient,
        "otsikko": "/title",
        "asiakirja": "/code/@code",
        "hoitaja": "/custodian/assignedCustodian/representedCustodianOrganization/name"
    }});
    let vital_signs = json!({
        "template": "2.16.840.1.113883.10.20.22.4.27",
        "fields": {
            "potilas": patient,
            "koodi": "code/@code",
            "arvo": "value/@value",
            "yksikko": "value/@unit",
            "teksti": "text"
        }
    });
    let target = Target {
        format: "cda",
        requests: vec![
            request(&["potilas", "otsikko", "asiakirja", "hoitaja"], header),
            request(
                &["potilas", "koodi", "arvo", "yksikko", "teksti"],
                vital_signs,
            ),
        ],
        never_quotes: true,
    };
    fuzz_parser(&target, corpus("cda"));
}

/// Workbooks: a part mutated and packed, or the packed archive mutated.
#[test]
fn fuzz_xlsx() {
    let columns = ["tili", "euroa", "pvm"];
    let target = Target {
        format: "xlsx",
        requests: vec![
            request(
                &columns,
                json!({ "sheet": "Tuloslaskelma", "header_row": 2 }),
            ),
            request(&columns, json!({})),
            request(&["tili"], json!({ "header_row": 3 })),
        ],
        never_quotes: true,
    };
    let mut seeds = corpus("xlsx");
    // A workbook as a spreadsheet program writes it (deflated parts, a theme, document
    // properties); mutations of its bytes mostly reach the archive's reader.
    let talous = root().join("tests/data/talous/2025/talous.xlsx");
    if let Ok(bytes) = std::fs::read(&talous) {
        seeds.push(Seed {
            name: "tests/data/talous/2025/talous.xlsx".into(),
            content: Content::Bytes(bytes),
        });
    }
    fuzz_parser(&target, seeds);
}

/// Parquet files written by the test, plain and compressed.
#[test]
fn fuzz_parquet() {
    let target = Target {
        format: "parquet",
        requests: vec![
            request(&["id", "hetu", "arvo", "pvm"], Value::Null),
            request(&["arvo", "id"], json!({})),
            request(&["puuttuu"], Value::Null),
        ],
        // Parquet's messages come from the parquet crate, and the engine does not reword
        // them; only that reading ends is checked.
        never_quotes: false,
    };
    let mut seeds = corpus("parquet");
    seeds.extend(parquet_seeds());
    fuzz_parser(&target, seeds);
}

// ---------------------------------------------------------------------------------------
// Reading one input.

/// A parser under test: its format, the requests its seeds are read with (each case takes
/// one), and whether its messages are checked for [`MARKER`].
struct Target {
    format: &'static str,
    requests: Vec<ParseRequest>,
    never_quotes: bool,
}

/// A request for the declared `columns` (all text) with the parser's `options`.
fn request(columns: &[&str], options: Value) -> ParseRequest {
    ParseRequest {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        types: vec![DataType::Utf8; columns.len()],
        options,
        batch_size: BATCH_SIZE,
        base_dir: None,
        limits: LIMITS,
    }
}

/// Reads every seed as it is with every request, then mutated seeds.
fn fuzz_parser(target: &Target, seeds: Vec<Seed>) {
    record_panics();
    assert!(!seeds.is_empty(), "no seeds for {}", target.format);
    if target.never_quotes {
        assert!(
            seeds.iter().any(|s| s.contains(MARKER)),
            "no {} seed holds {MARKER}: the check of the messages would check nothing",
            target.format
        );
    }
    for seed in 0..seeds.len() {
        for request in 0..target.requests.len() {
            let plain = Case {
                seed,
                request,
                part: 0,
                mutations: Vec::new(),
            };
            if let Err(e) = check_parse(target, &seeds, &plain) {
                panic!("{e}");
            }
        }
    }
    run(
        target.format,
        case(seeds.len(), target.requests.len()),
        |case| check_parse(target, &seeds, &case),
    );
}

/// Dependencies that panic on hostile bytes where no option of theirs avoids it: the
/// engine reads every object through `valtava_plugin::guarded`, which turns the panic into
/// the object's error (the object is quarantined, the run goes on). Known:
/// - `parquet` 59 asserts on what a page or the footer declares: a bit-packed run's width
///   (`util/bit_util.rs`), buffer lengths (`util/push_buffers.rs`), column counts
///   (`file/metadata/mod.rs`), also in release builds;
/// - `arrow-buffer` 59, reached by the Parquet decoder, asserts that a validity bitmap is
///   as long as its page says (`util/bit_chunk_iterator.rs`).
const TOLERATED: &[&str] = &["/parquet-59.", "/arrow-buffer-59."];

/// The places of every panic met so far (recorded by a hook installed once).
static PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Records where each panic happens, then reports it as before.
fn record_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(at) = info.location()
                && let Ok(mut p) = PANICS.lock()
            {
                p.push(format!("{}:{}", at.file(), at.line()));
            }
            before(info)
        }));
    });
}

/// A panic met so far outside [`TOLERATED`], where there is one. Targets run at once, so
/// this may name another target's panic; any such panic fails the harness all the same.
fn untolerated_panic() -> Option<String> {
    let panics = PANICS.lock().map(|p| p.clone()).unwrap_or_default();
    if panics.is_empty() {
        return Some("an unknown place".into());
    }
    panics
        .into_iter()
        .find(|p| !TOLERATED.iter().any(|t| p.contains(t)))
}

/// Reads one case's input with its request: the read must end in time, without a panic
/// (also one caught and reported as an error), and (for a target that never quotes) without
/// a message that quotes [`MARKER`].
fn check_parse(target: &Target, seeds: &[Seed], case: &Case) -> Result<(), TestCaseError> {
    let seed = &seeds[case.seed];
    let bytes = seed.input(case);
    let (format, input) = (target.format, bytes.clone());
    let request = target.requests[case.request].clone();
    let messages = match within_time(move || parse_all(format, input, request)) {
        Ok(Ok(messages)) => messages,
        Ok(Err(why)) | Err(why) => return Err(failure(target.format, seed, &bytes, why)),
    };
    // The plugin API and the parsers that work on threads catch a panic and report it as
    // the object's error: the object is quarantined, yet a panic is still a bug — ours,
    // unless every panic met was in a dependency known to panic on hostile bytes.
    if let Some(m) = messages.iter().find(|m| m.contains("panic"))
        && let Some(place) = untolerated_panic()
    {
        let why = format!("the parser panicked at {place} (caught, reported as: {m})");
        return Err(failure(target.format, seed, &bytes, why));
    }
    if target.never_quotes
        && let Some(m) = messages.iter().find(|m| m.contains(MARKER))
    {
        let why = format!("a message quotes the content: {m}");
        return Err(failure(target.format, seed, &bytes, why));
    }
    Ok(())
}

/// Parses `bytes` as one object of `format` on a runtime of its own (the CSV parser parses
/// on the runtime's blocking threads), up to the end of the stream or its first error, as
/// the engine reads it. Returns the messages: the reasons of rejected rows, then the error.
/// Fails when a batch is not the declared columns followed by [`ROW_COLUMN`].
fn parse_all(
    format: &'static str,
    bytes: Vec<u8>,
    request: ParseRequest,
) -> Result<Vec<String>, String> {
    let parser = valtava::parsers::get(format).ok_or_else(|| format!("no parser `{format}`"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("no runtime: {e}"))?;
    runtime.block_on(async move {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = StorePath::from(OBJECT);
        let size = bytes.len() as u64;
        store
            .put(&path, bytes.into())
            .await
            .map_err(|e| format!("the in-memory store failed: {e}"))?;
        let object = SourceObject {
            store,
            path,
            size,
            name: OBJECT.to_string(),
        };
        let columns = request.columns.len();
        // Guarded as the engine reads it (see `TOLERATED`).
        let mut stream = valtava_plugin::guarded(parser.parse(object, request), OBJECT.into());
        let mut messages = Vec::new();
        while let Some(next) = stream.next().await {
            match next {
                Ok(parsed) => {
                    let batch = &parsed.batch;
                    if batch.num_columns() != columns + 1
                        || batch.schema().field(columns).name() != ROW_COLUMN
                    {
                        return Err(format!("a batch of another shape: {:?}", batch.schema()));
                    }
                    messages.extend(parsed.rejects.into_iter().map(|r| r.reason));
                }
                Err(e) => {
                    messages.push(e.to_string());
                    break;
                }
            }
        }
        Ok::<Vec<String>, String>(messages)
    })
}

/// Loads one case's line text and renders its diagnostics against it: loading must end in
/// time and without a panic, valid or not.
fn check_line(seeds: &[Seed], case: &Case) -> Result<(), TestCaseError> {
    let seed = &seeds[case.seed];
    let bytes = seed.input(case);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let dir = corpus_dir("line");
    within_time(move || load_and_render(&dir, text))
        .map(|_| ())
        .map_err(|why| failure("line", seed, &bytes, why))
}

/// Loads a line from its text and renders what it reports; returns the rendered length.
fn load_and_render(dir: &Path, text: String) -> usize {
    let diags = match valtava::line::load::load_text("fuzz.yaml", dir, text.clone()) {
        Ok((_, warnings)) => warnings,
        Err(errors) => errors,
    };
    diags.iter().map(|d| d.render(Some(&text)).len()).sum()
}

/// Runs `work` on a thread of its own: its result, or why there is none (it panicked, or
/// did not end within [`CASE_TIME`]; such a thread is left running).
fn within_time<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::Builder::new()
        .name("fuzz-case".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| format!("no thread: {e}"))?;
    match rx.recv_timeout(CASE_TIME) {
        Ok(value) => {
            let _ = worker.join();
            Ok(value)
        }
        Err(RecvTimeoutError::Timeout) => Err(format!(
            "did not end within {} s (a hang)",
            CASE_TIME.as_secs()
        )),
        Err(RecvTimeoutError::Disconnected) => Err(match worker.join() {
            Err(panic) => format!("panicked: {}", panic_message(&*panic)),
            Ok(()) => "ended without a result".into(),
        }),
    }
}

/// The message of a panic's payload.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

/// A failed case: keeps its input in `target/tmp/fuzz/<target>.failing` (the last failing
/// input of a run is the shrunk one) and says where.
fn failure(target: &str, seed: &Seed, input: &[u8], why: String) -> TestCaseError {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz");
    let file = dir.join(format!("{target}.failing"));
    let kept = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&file, input))
        .map_or_else(
            |e| format!("not kept: {e}"),
            |()| format!("kept in {}", file.display()),
        );
    TestCaseError::fail(format!(
        "{target}: seed `{}`, mutated: {why} (input of {} bytes {kept})",
        seed.name,
        input.len()
    ))
}

// ---------------------------------------------------------------------------------------
// Cases and the runner.

/// One input: a seed, the request it is read with (parsers only), the part of a workbook's
/// parts that is mutated (the packed archive when it is one past the last part), and the
/// mutations, applied in order.
#[derive(Debug, Clone)]
struct Case {
    seed: usize,
    request: usize,
    part: usize,
    mutations: Vec<Mutation>,
}

/// Cases over `seeds` seeds and `requests` requests, with one to five mutations each.
fn case(seeds: usize, requests: usize) -> impl Strategy<Value = Case> {
    (
        0..seeds,
        0..requests,
        any::<u16>(),
        proptest::collection::vec(mutation(), 1..6),
    )
        .prop_map(|(seed, request, part, mutations)| Case {
            seed,
            request,
            part: usize::from(part),
            mutations,
        })
}

/// Runs the cases of `strategy` through `test`: `VALTAVA_FUZZ_CASES` of them, from a
/// generator seeded by the target's name and `VALTAVA_FUZZ_SEED`. A failure is shrunk (at most
/// 64 steps or a minute: a hanging input takes [`CASE_TIME`] a step) and reported with the
/// smallest failing case found.
fn run<S: Strategy>(
    target: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let config = Config {
        cases: env_number("VALTAVA_FUZZ_CASES", u64::from(DEFAULT_CASES))
            .try_into()
            .expect("VALTAVA_FUZZ_CASES fits 32 bits"),
        max_shrink_iters: 64,
        max_shrink_time: 60_000,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng(target));
    if let Err(e) = runner.run(&strategy, test) {
        panic!("fuzz target `{target}`: {e}");
    }
}

/// The deterministic generator of a target: ChaCha seeded from `VALTAVA_FUZZ_SEED` and the
/// target's name, so that targets get different inputs and a run repeats exactly.
fn rng(target: &str) -> TestRng {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&env_number("VALTAVA_FUZZ_SEED", 0).to_le_bytes());
    for (b, t) in seed[8..].iter_mut().zip(target.bytes()) {
        *b = t;
    }
    TestRng::from_seed(RngAlgorithm::ChaCha, &seed)
}

/// A whole number from the environment, or `default` when the variable is not set.
fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not `{v}`")),
        Err(_) => default,
    }
}

// ---------------------------------------------------------------------------------------
// Mutations.

/// One change to an input. Places are taken modulo the input's length (a place for an
/// insertion modulo one more), so every mutation applies to any input.
#[derive(Debug, Clone)]
enum Mutation {
    /// One bit flipped.
    FlipBit { at: u32, bit: u8 },
    /// One byte replaced.
    Replace { at: u32, byte: u8 },
    /// The input cut short.
    Truncate { at: u32 },
    /// A slice of up to `len` bytes copied to another place.
    Duplicate { from: u32, len: u16, to: u32 },
    /// Random bytes inserted.
    Insert { at: u32, bytes: Vec<u8> },
    /// A fragment of one of the formats' syntax inserted.
    Token { at: u32, token: &'static str },
    /// An opening repeated `count` times: nesting (of JSON, XML or YAML) far past any bound.
    Nest {
        at: u32,
        open: &'static str,
        count: u32,
    },
    /// A run of one byte, up to past the record bound.
    Run { at: u32, byte: u8, len: u32 },
    /// A quote that is never closed.
    Quote { at: u32, quote: u8 },
}

/// Fragments of the formats' syntax: JSON and FHIR, CSV, XML and CDA, spreadsheet cells,
/// YAML, and text that readers stumble on.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\\",
    "\\u0000",
    "\\ud800",
    "1e999999",
    "-0",
    "null",
    "\"resourceType\": \"Bundle\", \"entry\": [{\"resource\": ",
    "\"item\": [",
    ";",
    "\r",
    "\n",
    "\r\n",
    "\"\"",
    "\u{feff}",
    "<",
    ">",
    "/>",
    "</a>",
    "<![CDATA[",
    "]]>",
    "<!--",
    "<?xml version=\"1.0\" encoding=\"UTF-16\"?>",
    "<!DOCTYPE a [<!ENTITY e \"&e;&e;\">]>",
    "&amp;",
    "&#0;",
    "&#x10FFFF;",
    "&e;",
    " a=\"1\" a=\"2\"",
    "<observation><templateId root=\"2.16.840.1.113883.10.20.22.4.27\"/>",
    "<c r=\"XFD1048576\"><v>1</v></c>",
    "<row r=\"1048576\">",
    " t=\"s\"",
    "<v>4294967295</v>",
    " t=\"e\"",
    " s=\"99\"",
    "&a ",
    "*a",
    "<<: *a",
    "!!binary ",
    "? ",
    "- ",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "\t",
    "|\n",
    ">-\n",
    "\0",
    "\u{fffd}",
    "\u{202e}",
];

/// Openings that nest when repeated.
const OPENERS: &[&str] = &[
    "[",
    "{",
    "{\"a\":",
    "[{\"item\":",
    "<a>",
    "<observation>",
    "- ",
    "{ a: ",
];

/// Bytes of the long runs.
const RUN_BYTES: &[u8] = &[
    b'a', b' ', b'\n', b'"', b',', b';', b'[', b'<', b'\\', 0, 0xff,
];

/// Quotes left open.
const QUOTES: &[u8] = b"\"'";

/// Any mutation; small changes are likelier than large ones.
fn mutation() -> impl Strategy<Value = Mutation> {
    use proptest::sample::select;
    prop_oneof![
        4 => (any::<u32>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        4 => (any::<u32>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Replace { at, byte }),
        1 => any::<u32>().prop_map(|at| Mutation::Truncate { at }),
        2 => (any::<u32>(), 1u16..4096, any::<u32>())
            .prop_map(|(from, len, to)| Mutation::Duplicate { from, len, to }),
        2 => (any::<u32>(), proptest::collection::vec(any::<u8>(), 1..32))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        3 => (any::<u32>(), select(TOKENS)).prop_map(|(at, token)| Mutation::Token { at, token }),
        1 => (any::<u32>(), select(OPENERS), prop_oneof![1u32..200, Just(10_000u32)])
            .prop_map(|(at, open, count)| Mutation::Nest { at, open, count }),
        1 => (
            any::<u32>(),
            select(RUN_BYTES),
            prop_oneof![1u32..1024, Just(70_000u32), Just(300_000u32)],
        )
            .prop_map(|(at, byte, len)| Mutation::Run { at, byte, len }),
        1 => (any::<u32>(), select(QUOTES)).prop_map(|(at, quote)| Mutation::Quote { at, quote }),
    ]
}

impl Mutation {
    /// Applies the mutation to `data`.
    fn apply(&self, data: &mut Vec<u8>) {
        match self {
            Mutation::FlipBit { at, bit } => {
                if let Some(b) = byte_at(data, *at) {
                    *b ^= 1u8 << *bit;
                }
            }
            Mutation::Replace { at, byte } => {
                if let Some(b) = byte_at(data, *at) {
                    *b = *byte;
                }
            }
            Mutation::Truncate { at } => {
                let keep = gap(data, *at);
                data.truncate(keep);
            }
            Mutation::Duplicate { from, len, to } => {
                if data.is_empty() {
                    return;
                }
                let start = *from as usize % data.len();
                let end = (start + usize::from(*len)).min(data.len());
                let slice = data[start..end].to_vec();
                insert(data, *to, &slice);
            }
            Mutation::Insert { at, bytes } => insert(data, *at, bytes),
            Mutation::Token { at, token } => insert(data, *at, token.as_bytes()),
            Mutation::Nest { at, open, count } => {
                insert(data, *at, open.repeat(*count as usize).as_bytes());
            }
            Mutation::Run { at, byte, len } => insert(data, *at, &vec![*byte; *len as usize]),
            Mutation::Quote { at, quote } => insert(data, *at, &[*quote]),
        }
    }
}

/// The byte at `at` (modulo the length), if there is any.
fn byte_at(data: &mut [u8], at: u32) -> Option<&mut u8> {
    let len = data.len();
    if len == 0 {
        return None;
    }
    data.get_mut(at as usize % len)
}

/// A place between bytes: `at` modulo one more than the length.
fn gap(data: &[u8], at: u32) -> usize {
    at as usize % (data.len() + 1)
}

/// Inserts `bytes` at `at`, unless the input would grow past [`MAX_INPUT`].
fn insert(data: &mut Vec<u8>, at: u32, bytes: &[u8]) {
    if data.len() + bytes.len() > MAX_INPUT {
        return;
    }
    let i = gap(data, at);
    data.splice(i..i, bytes.iter().copied());
}

/// Applies `mutations` in order.
fn mutate(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        m.apply(&mut data);
    }
    data
}

// ---------------------------------------------------------------------------------------
// Seeds.

/// One seed of a corpus.
struct Seed {
    /// Its file or folder name (or path, outside the corpus).
    name: String,
    content: Content,
}

/// What a seed holds.
enum Content {
    /// The input's bytes.
    Bytes(Vec<u8>),
    /// The parts of a zip archive (a workbook), by their names in the archive.
    Parts(Vec<(String, Vec<u8>)>),
}

impl Seed {
    /// The input of `case`: the seed mutated (a workbook's part, or its packed archive).
    fn input(&self, case: &Case) -> Vec<u8> {
        match &self.content {
            Content::Bytes(bytes) => mutate(bytes.clone(), &case.mutations),
            Content::Parts(parts) => {
                let k = case.part % (parts.len() + 1);
                if k == parts.len() {
                    return mutate(stored_zip(parts), &case.mutations);
                }
                let mut parts = parts.clone();
                let part = std::mem::take(&mut parts[k].1);
                parts[k].1 = mutate(part, &case.mutations);
                stored_zip(&parts)
            }
        }
    }

    /// The bytes of a one-file seed (empty for parts).
    fn bytes(&self) -> &[u8] {
        match &self.content {
            Content::Bytes(bytes) => bytes,
            Content::Parts(_) => &[],
        }
    }

    /// Whether the seed (any of its parts) holds `needle`.
    fn contains(&self, needle: &str) -> bool {
        let holds = |b: &[u8]| b.windows(needle.len()).any(|w| w == needle.as_bytes());
        match &self.content {
            Content::Bytes(bytes) => holds(bytes),
            Content::Parts(parts) => parts.iter().any(|(_, b)| holds(b)),
        }
    }
}

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The corpus folder of a target.
fn corpus_dir(target: &str) -> PathBuf {
    root().join("tests/fuzz/corpus").join(target)
}

/// The seeds of a target's corpus in name order: each file one seed, each folder the parts
/// of one archive (all its files, `_rels/.rels` too). Names starting with `.` are not seeds;
/// a missing folder has none.
fn corpus(target: &str) -> Vec<Seed> {
    entries(&corpus_dir(target))
        .into_iter()
        .filter(|(name, _)| !name.starts_with('.'))
        .map(|(name, path)| {
            let content = if path.is_dir() {
                Content::Parts(parts(&path, ""))
            } else {
                Content::Bytes(read(&path))
            };
            Seed { name, content }
        })
        .collect()
}

/// The entries of a folder (name and path), in name order; none when it is missing.
fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = listing
        .map(|e| e.unwrap_or_else(|e| panic!("{}: {e}", dir.display())))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    out
}

/// The files below `dir` with their paths inside it (joined with `/`, after `prefix`).
fn parts(dir: &Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, path) in entries(dir) {
        let inner = format!("{prefix}{name}");
        if path.is_dir() {
            out.extend(parts(&path, &format!("{inner}/")));
        } else {
            out.push((inner, read(&path)));
        }
    }
    out
}

/// The bytes of a file of the corpus.
fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A zip archive of `parts`, stored (not compressed) as a workbook may be: per part a local
/// header with its CRC-32 and size and its bytes, then the central directory and its end.
fn stored_zip(parts: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in parts {
        let offset = out.len() as u32;
        // From "version needed" to "extra field length": the same in both headers.
        let mut common = Vec::with_capacity(26);
        common.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0
        common.extend_from_slice(&0u16.to_le_bytes()); // flags
        common.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        common.extend_from_slice(&0u16.to_le_bytes()); // time: 00:00
        common.extend_from_slice(&0x21u16.to_le_bytes()); // date: 1980-01-01
        common.extend_from_slice(&crc32(data).to_le_bytes());
        common.extend_from_slice(&(data.len() as u32).to_le_bytes()); // compressed size
        common.extend_from_slice(&(data.len() as u32).to_le_bytes()); // size
        common.extend_from_slice(&(name.len() as u16).to_le_bytes());
        common.extend_from_slice(&0u16.to_le_bytes()); // extra field length
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&common);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        central.extend_from_slice(&common);
        // Comment length, disk number, internal and external attributes.
        central.extend_from_slice(&[0u8; 10]);
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let start = out.len() as u32;
    let count = (parts.len() as u16).to_le_bytes();
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]); // this disk, the directory's disk
    out.extend_from_slice(&count); // entries on this disk
    out.extend_from_slice(&count); // entries
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&start.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
    out
}

/// CRC-32 (IEEE) of `data`, bit by bit.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Two small Parquet files of the same rows: plain and uncompressed, and snappy with
/// dictionaries and row groups of two rows.
fn parquet_seeds() -> Vec<Seed> {
    use arrow::array::{ArrayRef, Date32Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::ArrowWriter;
    use parquet::basic::Compression;
    use parquet::file::properties::WriterProperties;

    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("hetu", DataType::Utf8, true),
        Field::new("arvo", DataType::Int64, true),
        Field::new("pvm", DataType::Date32, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["1", "2", "3", "4", "5"])),
        Arc::new(StringArray::from(vec![
            Some(MARKER),
            None,
            Some(MARKER),
            Some(""),
            Some("ääkkönen"),
        ])),
        Arc::new(Int64Array::from(vec![
            Some(12),
            None,
            Some(-3),
            Some(i64::MAX),
            Some(0),
        ])),
        Arc::new(Date32Array::from(vec![
            Some(20_103),
            Some(20_104),
            None,
            Some(-1),
            Some(0),
        ])),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).expect("the seed's batch");
    let plain = WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .build();
    let snappy = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(true)
        .set_max_row_group_row_count(Some(2))
        .build();
    [("plain.parquet", plain), ("snappy.parquet", snappy)]
        .into_iter()
        .map(|(name, props)| {
            let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
                .expect("a Parquet writer");
            writer.write(&batch).expect("the seed's rows written");
            Seed {
                name: name.into(),
                content: Content::Bytes(writer.into_inner().expect("the seed's footer")),
            }
        })
        .collect()
}
