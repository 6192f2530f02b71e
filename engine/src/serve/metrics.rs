//! For operators: `/metrics` (Prometheus text) and `/healthz`, and the counters behind them.
//!
//! Finished runs are counted by [`App::record`] (runs by status, durations in a histogram,
//! rows read, quarantined and published), responses by status code by [`count_responses`],
//! uploads where they are received. `/metrics` needs a `read` token and shows a token
//! limited to some lines their series only; `/healthz` answers anyone, also when the
//! daemon is busy, so that a supervisor sees it alive.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::serve::auth::authorize;
use crate::serve::jobs::Job;
use crate::serve::{App, AppState};

/// Counters for `/metrics`.
#[derive(Default)]
pub(super) struct Metrics {
    runs: BTreeMap<(String, String), u64>,
    /// Per line: run durations in the histogram's buckets, their sum and count.
    durations: BTreeMap<String, (Vec<u64>, f64, u64)>,
    rows_read: BTreeMap<String, u64>,
    rows_quarantined: BTreeMap<String, u64>,
    rows_published: BTreeMap<String, u64>,
    requests: BTreeMap<u16, u64>,
    pub(super) uploads: u64,
    pub(super) upload_bytes: u64,
}

const BUCKETS: [f64; 10] = [0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

impl App {
    pub(super) fn record(&self, job: &Job, report: Option<&crate::run::RunReport>) {
        let mut m = self.metrics.lock().expect("metrics lock");
        let status = format!("{:?}", job.status).to_lowercase();
        *m.runs.entry((job.line.clone(), status)).or_default() += 1;
        if let Some(s) = job.seconds {
            let e = m
                .durations
                .entry(job.line.clone())
                .or_insert_with(|| (vec![0; BUCKETS.len()], 0.0, 0));
            for (i, b) in BUCKETS.iter().enumerate() {
                if s <= *b {
                    e.0[i] += 1;
                }
            }
            e.1 += s;
            e.2 += 1;
        }
        if let Some(r) = report {
            let mut read = 0;
            let mut quarantined = 0;
            for s in r.steps.values() {
                if s.kind == crate::line::spec::StepKind::Source {
                    read += s.rows_in;
                }
                quarantined += s.rows_quarantined;
            }
            let published: u64 = r.datasets.iter().map(|d| d.rows).sum();
            *m.rows_read.entry(job.line.clone()).or_default() += read;
            *m.rows_quarantined.entry(job.line.clone()).or_default() += quarantined;
            *m.rows_published.entry(job.line.clone()).or_default() += published;
        }
    }
}

pub(super) async fn healthz(State(app): AppState) -> Response {
    let (queued, running) = app.queue_counts();
    let stopping = app.stopping.load(Ordering::SeqCst);
    let status = if stopping {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        status,
        axum::Json(json!({
            "status": if stopping { "stopping" } else { "ok" },
            "lines": app.lines.len(),
            "queued": queued,
            "running": running,
            "uptime_seconds": app.started.elapsed().as_secs(),
        })),
    )
        .into_response()
}

fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(super) async fn metrics(State(app): AppState, headers: HeaderMap) -> Response {
    use std::fmt::Write as _;
    // A token limited to some lines sees their series only.
    let caller = match authorize(&app, &headers, "read", None) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let (queued, running) = app.queue_counts();
    let m = app.metrics.lock().expect("metrics lock");
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# HELP valtava_runs_total Finished runs by line and status."
    );
    let _ = writeln!(o, "# TYPE valtava_runs_total counter");
    for ((line, status), n) in m.runs.iter().filter(|((l, _), _)| caller.may(l)) {
        let _ = writeln!(
            o,
            "valtava_runs_total{{line=\"{}\",status=\"{}\"}} {n}",
            label_value(line),
            status
        );
    }
    let _ = writeln!(
        o,
        "# HELP valtava_run_duration_seconds Wall time of finished runs."
    );
    let _ = writeln!(o, "# TYPE valtava_run_duration_seconds histogram");
    for (line, (buckets, sum, count)) in m.durations.iter().filter(|(l, _)| caller.may(l)) {
        let l = label_value(line);
        for (b, n) in BUCKETS.iter().zip(buckets) {
            let _ = writeln!(
                o,
                "valtava_run_duration_seconds_bucket{{line=\"{l}\",le=\"{b}\"}} {n}"
            );
        }
        let _ = writeln!(
            o,
            "valtava_run_duration_seconds_bucket{{line=\"{l}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(o, "valtava_run_duration_seconds_sum{{line=\"{l}\"}} {sum}");
        let _ = writeln!(
            o,
            "valtava_run_duration_seconds_count{{line=\"{l}\"}} {count}"
        );
    }
    for (name, help, map) in [
        (
            "valtava_rows_read_total",
            "Rows read by source steps.",
            &m.rows_read,
        ),
        (
            "valtava_rows_quarantined_total",
            "Rows rejected into quarantine.",
            &m.rows_quarantined,
        ),
        (
            "valtava_rows_published_total",
            "Rows of published datasets.",
            &m.rows_published,
        ),
    ] {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} counter");
        for (line, n) in map.iter().filter(|(l, _)| caller.may(l)) {
            let _ = writeln!(o, "{name}{{line=\"{}\"}} {n}", label_value(line));
        }
    }
    let _ = writeln!(o, "# HELP valtava_jobs Jobs by state.");
    let _ = writeln!(o, "# TYPE valtava_jobs gauge");
    let _ = writeln!(o, "valtava_jobs{{state=\"queued\"}} {queued}");
    let _ = writeln!(o, "valtava_jobs{{state=\"running\"}} {running}");
    let _ = writeln!(
        o,
        "# HELP valtava_uploads_total Files received through the API."
    );
    let _ = writeln!(o, "# TYPE valtava_uploads_total counter");
    let _ = writeln!(o, "valtava_uploads_total {}", m.uploads);
    let _ = writeln!(
        o,
        "# HELP valtava_upload_bytes_total Bytes received through the API."
    );
    let _ = writeln!(o, "# TYPE valtava_upload_bytes_total counter");
    let _ = writeln!(o, "valtava_upload_bytes_total {}", m.upload_bytes);
    let _ = writeln!(
        o,
        "# HELP valtava_http_responses_total HTTP responses by status code."
    );
    let _ = writeln!(o, "# TYPE valtava_http_responses_total counter");
    for (code, n) in &m.requests {
        let _ = writeln!(o, "valtava_http_responses_total{{code=\"{code}\"}} {n}");
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        o,
    )
        .into_response()
}

pub(super) async fn count_responses(
    State(app): AppState,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let r = next.run(req).await;
    *app.metrics
        .lock()
        .expect("metrics lock")
        .requests
        .entry(r.status().as_u16())
        .or_default() += 1;
    r
}
