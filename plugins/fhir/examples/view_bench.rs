//! Times the FHIR source's two halves on one thread, apart from the engine: parsing each
//! NDJSON line into the resource tree (keeping the keys the view reads), and the view's rows
//! on it. A line's run mixes both with reading, DataFusion and the other sources on every
//! core; this isolates them, so that a change to `json.rs`, `view.rs` or `fhirpath/` is
//! measured in seconds instead of a release build of the whole engine (PROFILE.md,
//! twenty-fourth round).
//!
//! `cargo run --release -p valtava-fhir --example view_bench -- VIEW.json DATA.ndjson [ROUNDS]`
//!
//! `VIEW.json` is a SQL-on-FHIR view definition (a line's `options.view`, as JSON). Prints
//! the best of `ROUNDS` (default 5) for parsing alone and for parsing with the rows, and
//! their difference as the rows' time; and how many lines the parser or the view refused
//! (a Bundle or pretty-printed JSON is not NDJSON: every line refused, nothing measured).
//! The source's depth check before parsing is not included.

use std::time::Instant;

use valtava_fhir::json::Json;
use valtava_fhir::view;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [view_file, data_file, rest @ ..] = args.as_slice() else {
        return Err("usage: view_bench VIEW.json DATA.ndjson [ROUNDS]".into());
    };
    let rounds: usize = match rest.first() {
        Some(r) => r
            .parse()
            .map_err(|_| format!("rounds `{r}` is not a number"))?,
        None => 5,
    };
    let read = |f: &str| std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"));
    let definition = serde_json::from_str(&read(view_file)?).map_err(|e| e.to_string())?;
    let view = view::compile(&definition)?;
    let text = read(data_file)?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let (mut parsing, mut with_rows) = (f64::MAX, f64::MAX);
    let (mut rows, mut refused) = (0, 0);
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        for line in &lines {
            std::hint::black_box(parse(&view, line).ok());
        }
        parsing = parsing.min(start.elapsed().as_secs_f64());
        let start = Instant::now();
        (rows, refused) = (0, 0);
        for line in &lines {
            match parse(&view, line)
                .map_err(|e| e.to_string())
                .and_then(|tree| view.rows(&tree).map(|r| std::hint::black_box(r).len()))
            {
                Ok(n) => rows += n,
                Err(_) => refused += 1,
            }
        }
        with_rows = with_rows.min(start.elapsed().as_secs_f64());
    }
    println!(
        "{} lines ({refused} refused), {rows} rows: parsing {:.1} ms, parsing and rows {:.1} ms, \
         rows {:.1} ms (the difference; best of {rounds})",
        lines.len(),
        parsing * 1e3,
        with_rows * 1e3,
        (with_rows - parsing).max(0.0) * 1e3,
    );
    Ok(())
}

/// One line's tree, as the source parses it: only the keys the view reads, where it tells.
fn parse<'t>(view: &view::View, line: &'t str) -> Result<Json<'t>, serde_json::Error> {
    match &view.keys {
        Some(keys) => Json::parse_keeping(line, keys),
        None => Json::parse(line),
    }
}
