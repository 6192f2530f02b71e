//! `valtava test`: tests declared in YAML beside a line.
//!
//! ```yaml
//! line: ../lines/ensihoito.yaml        # relative to the test file
//! params: { period: "2025-03" }
//! tests:
//!   - name: a wrong check character is quarantined
//!     inputs:                          # rows of source steps (values as text)
//!       tehtavat:
//!         - { tehtava_id: T1, hetu: 131052-308U, kunta: "091", halytys_aika: "2025-03-03T10:00:00", kiireellisyys: B }
//!     expect:
//!       steps:                         # rows of any step's output (named columns only)
//!         tarkistettu: []
//!       quarantine:
//!         tarkistettu: [{ tehtava_id: T1, _rules: hetu-oikea }]
//!       datasets:
//!         ensihoito_kuukausi: [{ hyvinvointialue: SSS, kuukausi: YHT, kiireellisyys: YHT, tehtavat: "1" }]
//!       error: R006                    # or: the run fails with this code
//! ```
//!
//! Rows are compared as sets of the columns the expectation names. Results go to the
//! terminal and, with `--junit FILE`, to JUnit XML for CI systems.

use quick_xml::escape::escape as xml;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use serde::Deserialize;

mod fixtures;
use fixtures::fixture;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    line: String,
    #[serde(default)]
    params: BTreeMap<String, String>,
    tests: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: String,
    #[serde(default)]
    inputs: BTreeMap<String, Vec<serde_json::Value>>,
    #[serde(default)]
    expect: Expect,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    steps: BTreeMap<String, Vec<BTreeMap<String, serde_json::Value>>>,
    #[serde(default)]
    quarantine: BTreeMap<String, Vec<BTreeMap<String, serde_json::Value>>>,
    #[serde(default)]
    datasets: BTreeMap<String, Vec<BTreeMap<String, serde_json::Value>>>,
    #[serde(default)]
    error: Option<String>,
}

/// The outcome of one test.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub suite: String,
    pub name: String,
    pub failure: Option<String>,
    pub seconds: f64,
}

type Row = BTreeMap<String, String>;

pub(super) fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn read_parquet(path: &Path) -> Result<Vec<Row>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| e.to_string())?
        .build()
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for b in reader {
        let b = b.map_err(|e| e.to_string())?;
        let cols: Vec<(String, arrow::array::ArrayRef)> = b
            .schema()
            .fields()
            .iter()
            .zip(b.columns())
            .map(|(f, a)| {
                (
                    f.name().clone(),
                    arrow::compute::cast(a, &arrow::datatypes::DataType::Utf8)
                        .unwrap_or_else(|_| a.clone()),
                )
            })
            .collect();
        for i in 0..b.num_rows() {
            out.push(
                cols.iter()
                    .map(|(n, a)| {
                        let s = a
                            .as_string_opt::<i32>()
                            .map(|s| {
                                if s.is_valid(i) {
                                    s.value(i).to_string()
                                } else {
                                    String::new()
                                }
                            })
                            .unwrap_or_default();
                        (n.clone(), s)
                    })
                    .collect(),
            );
        }
    }
    Ok(out)
}

fn compare(
    what: &str,
    got: &[Row],
    want: &[BTreeMap<String, serde_json::Value>],
) -> Option<String> {
    let keys: BTreeSet<&String> = want.iter().flat_map(|r| r.keys()).collect();
    let project = |r: &Row| -> String {
        keys.iter()
            .map(|k| format!("{k}={}", r.get(*k).cloned().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut g: Vec<String> = got.iter().map(project).collect();
    let mut w: Vec<String> = want
        .iter()
        .map(|r| {
            keys.iter()
                .map(|k| format!("{k}={}", r.get(*k).map(text).unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect();
    if want.is_empty() {
        g = got.iter().map(|r| format!("{r:?}")).collect();
    }
    g.sort();
    w.sort();
    (g != w).then(|| {
        format!(
            "{what}: expected {} row(s) [{}], got {} [{}]",
            w.len(),
            w.join(" | "),
            g.len(),
            g.join(" | ")
        )
    })
}

/// Runs the tests of one test file.
pub async fn run_file(path: &Path, key: &[u8]) -> Result<Vec<Outcome>, String> {
    let text_yaml =
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: TestFile = serde_saphyr::from_str(&text_yaml).map_err(|e| {
        format!(
            "{}: {}",
            path.display(),
            e.to_string().lines().next().unwrap_or_default()
        )
    })?;
    let line_path: PathBuf = path.parent().unwrap_or(Path::new(".")).join(&file.line);
    let (line, _) = crate::line::load::load(&line_path).map_err(|d| {
        d.iter()
            .map(|d| d.message.clone())
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let suite = line.spec.line.value.clone();
    let mut out = Vec::new();
    for t in &file.tests {
        let started = std::time::Instant::now();
        let failure = run_case(&line_path, &line, &file, t, key).await.err();
        out.push(Outcome {
            suite: suite.clone(),
            name: t.name.clone(),
            failure,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    Ok(out)
}

async fn run_case(
    line_path: &Path,
    line: &crate::line::load::Line,
    file: &TestFile,
    t: &TestCase,
    key: &[u8],
) -> Result<(), String> {
    let dir = tempfile_dir()?;
    let sources = write_fixtures(&dir, line, t)?;
    let store = crate::store::open(dir.to_str().unwrap_or_default()).map_err(|e| e.to_string())?;
    let opts = crate::run::RunOptions {
        store,
        params: file
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        sources,
        key: Some(key.to_vec()),
        batch_size: 1024,
        progress: false,
        capture: t.expect.steps.keys().cloned().collect(),
        engine: None,
        deadline: None,
        recorder: crate::artefacts::recorder(),
        lineage_url: None,
        // A test's rows are a handful.
        memory_limit: None,
        release: Default::default(),
    };
    let result = crate::run::run(line_path, opts).await;
    let Some(report) = report_to_check(&result, &t.expect.error)? else {
        return Ok(());
    };
    let problems = output_problems(&dir, &report, &t.expect)?;
    let _ = std::fs::remove_dir_all(&dir);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Writes the fixture of every source step; returns each source's store-relative path.
fn write_fixtures(
    dir: &Path,
    line: &crate::line::load::Line,
    t: &TestCase,
) -> Result<BTreeMap<String, String>, String> {
    let mut sources = BTreeMap::new();
    for (name, step) in &line.spec.steps {
        if let Some(src) = &step.source {
            let rows = t
                .inputs
                .get(name.value.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            sources.insert(name.value.clone(), fixture(dir, &name.value, src, rows)?);
        }
    }
    for n in t.inputs.keys() {
        if !sources.contains_key(n) {
            return Err(format!("`{n}` is not a source step of the line"));
        }
    }
    Ok(sources)
}

/// Checks the run's outcome against the expected error; gives the report left to compare.
fn report_to_check(
    result: &Result<crate::run::RunReport, crate::run::RunError>,
    error: &Option<String>,
) -> Result<Option<Box<crate::run::RunReport>>, String> {
    match (result, error) {
        (Ok(_), Some(code)) => Err(format!(
            "expected the run to fail with {code}, but it succeeded"
        )),
        (Err(crate::run::RunError::Failed(f, r)), Some(code)) => {
            if f.code.as_str() != code {
                return Err(format!(
                    "expected {code}, the run failed with {}: {}",
                    f.code, f.message
                ));
            }
            Ok(r.clone())
        }
        (Err(crate::run::RunError::Failed(f, _)), None) => Err(format!("the run failed: {f}")),
        (Err(crate::run::RunError::Invalid(d)), _) => Err(format!(
            "the line is invalid: {}",
            d.iter()
                .map(|d| d.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        )),
        (Ok(r), None) => Ok(Some(Box::new(r.clone()))),
    }
}

/// The differences between the expected and the written steps, quarantine and datasets.
fn output_problems(
    dir: &Path,
    report: &crate::run::RunReport,
    expect: &Expect,
) -> Result<Vec<String>, String> {
    let period = report
        .params
        .get("period")
        .cloned()
        .unwrap_or_else(|| "all".into());
    let mut problems = Vec::new();
    for (step, want) in &expect.steps {
        let path = dir.join(format!(
            "{}/{step}.parquet",
            crate::store::layout::captures(&report.line, &report.run_id)
        ));
        match read_parquet(&path) {
            Ok(got) => problems.extend(compare(&format!("step `{step}`"), &got, want)),
            Err(e) => problems.push(format!("step `{step}`: {e}")),
        }
    }
    for (step, want) in &expect.quarantine {
        let path = dir.join(format!(
            "{}/{step}.parquet",
            crate::store::layout::quarantine(&report.line, &period, &report.run_id)
        ));
        let got = if path.exists() {
            read_parquet(&path)?
        } else {
            Vec::new()
        };
        problems.extend(compare(&format!("quarantine of `{step}`"), &got, want));
    }
    for (dataset, want) in &expect.datasets {
        let path = dir.join(crate::store::layout::release_file(
            &report.line,
            &period,
            &report.run_id,
            dataset,
            "parquet",
        ));
        match read_parquet(&path) {
            Ok(got) => problems.extend(compare(&format!("dataset `{dataset}`"), &got, want)),
            Err(e) => problems.push(format!("dataset `{dataset}`: {e}")),
        }
    }
    Ok(problems)
}

fn tempfile_dir() -> Result<PathBuf, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "valtava-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// JUnit XML of the outcomes, one test suite per line.
pub fn junit(outcomes: &[Outcome]) -> String {
    let mut suites: BTreeMap<&str, Vec<&Outcome>> = BTreeMap::new();
    for o in outcomes {
        suites.entry(&o.suite).or_default().push(o);
    }
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for (suite, cases) in suites {
        let failures = cases.iter().filter(|c| c.failure.is_some()).count();
        let time: f64 = cases.iter().map(|c| c.seconds).sum();
        x.push_str(&format!("  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{time:.3}\">\n", xml(suite), cases.len()));
        for c in cases {
            x.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                xml(suite),
                xml(&c.name),
                c.seconds
            ));
            match &c.failure {
                Some(f) => x.push_str(&format!(
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    xml(f.lines().next().unwrap_or_default()),
                    xml(f)
                )),
                None => x.push_str("/>\n"),
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

/// `valtava test`: runs the tests of each file and prints one line per test, with JUnit XML
/// into `junit_file` if given; exit 1 if a test failed or a file could not be run.
pub(super) fn run(files: &[PathBuf], junit_file: Option<&Path>) -> std::process::ExitCode {
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        return std::process::ExitCode::from(1);
    };
    let mut outcomes = Vec::new();
    let mut broken = false;
    for f in files {
        match runtime.block_on(run_file(f, b"valtava-line-test-key")) {
            Ok(o) => outcomes.extend(o),
            Err(e) => {
                super::common::error(&e);
                broken = true;
            }
        }
    }
    for o in &outcomes {
        match &o.failure {
            None => println!("ok     {} / {}", o.suite, o.name),
            Some(f) => println!(
                "FAILED {} / {}\n       {}",
                o.suite,
                o.name,
                f.replace('\n', "\n       ")
            ),
        }
    }
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    println!("{} passed, {failed} failed", outcomes.len() - failed);
    if let Some(path) = junit_file
        && let Err(e) = std::fs::write(path, junit(&outcomes))
    {
        super::common::error(format!("{}: {e}", path.display()));
        return std::process::ExitCode::from(1);
    }
    if failed > 0 || broken {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    }
}
