//! For operators: `/metrics` (OpenMetrics text, which Prometheus reads) and `/healthz`, and
//! the counters behind them. The counters and the histogram are `prometheus-client`'s, and so
//! is the text encoding (names, label escaping, buckets); what is ours is which series a
//! caller sees.
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
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::serve::auth::{Caller, authorize};
use crate::serve::error::Problem;
use crate::serve::jobs::Job;
use crate::serve::{App, AppState};

/// Counters for `/metrics`. Cloning a counter or histogram shares it, so a scrape takes
/// the series it may show without holding the lock while it encodes.
#[derive(Default)]
pub(super) struct Metrics {
    runs: BTreeMap<(String, String), Counter>,
    durations: BTreeMap<String, Histogram>,
    rows_read: BTreeMap<String, Counter>,
    rows_quarantined: BTreeMap<String, Counter>,
    rows_published: BTreeMap<String, Counter>,
    requests: BTreeMap<u16, Counter>,
    pub(super) uploads: Counter,
    pub(super) upload_bytes: Counter,
}

const BUCKETS: [f64; 10] = [0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

impl App {
    pub(super) fn record(&self, job: &Job, report: Option<&crate::run::RunReport>) {
        let mut m = self.metrics.lock().expect("metrics lock");
        let status = format!("{:?}", job.status).to_lowercase();
        m.runs.entry((job.line.clone(), status)).or_default().inc();
        if let Some(s) = job.seconds {
            m.durations
                .entry(job.line.clone())
                .or_insert_with(|| Histogram::new(BUCKETS))
                .observe(s);
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
            let line = &job.line;
            m.rows_read.entry(line.clone()).or_default().inc_by(read);
            m.rows_quarantined
                .entry(line.clone())
                .or_default()
                .inc_by(quarantined);
            m.rows_published
                .entry(line.clone())
                .or_default()
                .inc_by(published);
        }
    }
}

/// Whether the daemon is serving (`ok`) or stopping (`stopping`: it starts no new runs).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum HealthStatus {
    Ok,
    Stopping,
}

/// The answer of `/healthz`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Health {
    #[schema(inline)]
    status: HealthStatus,
    /// Lines served.
    lines: usize,
    /// Jobs waiting for a worker.
    queued: usize,
    /// Runs under way.
    running: usize,
    /// Seconds since the daemon started.
    uptime_seconds: u64,
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness",
    description = "Answers anyone, also when the daemon is busy.",
    responses(
        (status = 200, description = "Serving", body = inline(Health)),
        (status = 503, description = "Stopping", body = inline(Health)),
    ),
)]
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
        axum::Json(Health {
            status: if stopping {
                HealthStatus::Stopping
            } else {
                HealthStatus::Ok
            },
            lines: app.lines.len(),
            queued,
            running,
            uptime_seconds: app.started.elapsed().as_secs(),
        }),
    )
        .into_response()
}

/// One metric family: its name (without `_total`), help and series.
#[derive(Debug)]
struct Family<L, M> {
    name: &'static str,
    help: &'static str,
    series: Vec<(L, M)>,
}

impl<L: EncodeLabelSet, M: EncodeMetric> Family<L, M> {
    fn encode(&self, e: &mut DescriptorEncoder, kind: MetricType) -> std::fmt::Result {
        let mut family = e.encode_descriptor(self.name, self.help, None, kind)?;
        for (labels, m) in &self.series {
            m.encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

fn family<L, M>(name: &'static str, help: &'static str, series: Vec<(L, M)>) -> Family<L, M> {
    Family { name, help, series }
}

/// A metric without labels: its name, help and value.
#[derive(Debug)]
struct Single(&'static str, &'static str, Counter);

impl Single {
    fn encode(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let Single(name, help, c) = self;
        c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
    }
}

type Line = [(&'static str, String); 1];

/// What one caller may see of the metrics, taken from them for one scrape.
#[derive(Debug)]
struct Visible {
    runs: Family<[(&'static str, String); 2], Counter>,
    durations: Family<Line, Histogram>,
    rows: [Family<Line, Counter>; 3],
    jobs: Family<[(&'static str, &'static str); 1], ConstGauge>,
    uploads: Single,
    upload_bytes: Single,
    responses: Family<[(&'static str, String); 1], Counter>,
}

impl Visible {
    /// The series of the lines `caller` may read (a token limited to some lines sees
    /// theirs only), and the daemon's own.
    fn of(m: &Metrics, caller: &Caller, (queued, running): (usize, usize)) -> Visible {
        let lines = |map: &BTreeMap<String, Counter>| -> Vec<(Line, Counter)> {
            map.iter()
                .filter(|(l, _)| caller.may(l))
                .map(|(l, c)| ([("line", l.clone())], c.clone()))
                .collect()
        };
        Visible {
            runs: family(
                "valtava_runs",
                "Finished runs by line and status.",
                m.runs
                    .iter()
                    .filter(|((l, _), _)| caller.may(l))
                    .map(|((l, s), c)| ([("line", l.clone()), ("status", s.clone())], c.clone()))
                    .collect(),
            ),
            durations: Family {
                name: "valtava_run_duration_seconds",
                help: "Wall time of finished runs.",
                series: m
                    .durations
                    .iter()
                    .filter(|(l, _)| caller.may(l))
                    .map(|(l, h)| ([("line", l.clone())], h.clone()))
                    .collect(),
            },
            rows: [
                family(
                    "valtava_rows_read",
                    "Rows read by source steps.",
                    lines(&m.rows_read),
                ),
                family(
                    "valtava_rows_quarantined",
                    "Rows rejected into quarantine.",
                    lines(&m.rows_quarantined),
                ),
                family(
                    "valtava_rows_published",
                    "Rows of published datasets.",
                    lines(&m.rows_published),
                ),
            ],
            jobs: Family {
                name: "valtava_jobs",
                help: "Jobs by state.",
                series: vec![
                    ([("state", "queued")], ConstGauge::new(queued as i64)),
                    ([("state", "running")], ConstGauge::new(running as i64)),
                ],
            },
            uploads: Single(
                "valtava_uploads",
                "Files received through the API.",
                m.uploads.clone(),
            ),
            upload_bytes: Single(
                "valtava_upload_bytes",
                "Bytes received through the API.",
                m.upload_bytes.clone(),
            ),
            responses: family(
                "valtava_http_responses",
                "HTTP responses by status code.",
                m.requests
                    .iter()
                    .map(|(code, c)| ([("code", code.to_string())], c.clone()))
                    .collect(),
            ),
        }
    }
}

impl Collector for Visible {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        self.runs.encode(&mut e, MetricType::Counter)?;
        self.durations.encode(&mut e, MetricType::Histogram)?;
        for f in &self.rows {
            f.encode(&mut e, MetricType::Counter)?;
        }
        self.jobs.encode(&mut e, MetricType::Gauge)?;
        self.uploads.encode(&mut e)?;
        self.upload_bytes.encode(&mut e)?;
        self.responses.encode(&mut e, MetricType::Counter)
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    description = "Needs a token with the `read` role; a token limited to some lines sees their series only (and the daemon's own).",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "OpenMetrics text exposition format", body = String,
            content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 500, description = "The metrics could not be encoded"),
    ),
)]
pub(super) async fn metrics(State(app): AppState, headers: HeaderMap) -> Response {
    let caller = match authorize(&app, &headers, "read", None) {
        Ok(c) => c,
        Err(refusal) => return refusal.into_response(),
    };
    let queue = app.queue_counts();
    let visible = Visible::of(&app.metrics.lock().expect("metrics lock"), &caller, queue);
    let mut registry = Registry::default();
    registry.register_collector(Box::new(visible));
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::error!(error = %e, "metrics could not be encoded");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

pub(super) async fn count_responses(
    State(app): AppState,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let r = next.run(req).await;
    app.metrics
        .lock()
        .expect("metrics lock")
        .requests
        .entry(r.status().as_u16())
        .or_default()
        .inc();
    r
}
