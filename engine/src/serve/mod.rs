//! `valtava serve`: the daemon and the reporting service.
//!
//! The daemon runs the lines of a folder against one store:
//! - on their `schedule` (Finnish time; the run takes the latest complete period),
//! - when new or changed objects arrive under a source location of the line (the period is
//!   read from the object's path, or is the line's period containing the month in it for a
//!   location of `{period.months}`), and
//! - when asked through the API.
//!
//! Runs are jobs in a queue. One job per line and period runs at a time; a request for a
//! line and period that is already queued joins the queued job. Jobs are kept in the store
//! (`daemon/jobs/<id>.json`), so a daemon that stops during a run finds the job at start
//! and runs it again; releases are atomic (the `latest.json` pointer is written last), so an
//! interrupted run leaves the previous release current and no partial one.
//!
//! The HTTP API (JSON; `/openapi.json`) lists lines, runs, releases and datasets; an
//! indicator API in the style of Sotkanet (`/api/v1/datasets/{id}`) answers JSON-stat 2.0 or
//! CSV, and PxWeb API 2.0 (`/api/v2/…`) serves the same datasets as tables to the Nordic
//! statistics offices' clients; `/` is the reporting page; `/catalog` (and `/api/catalog`) the catalog of lines,
//! datasets and columns with a search, each dataset's column lineage and the quality summary
//! of the run behind its newest release; `/metrics` and `/healthz` are for operators. Writing
//! (triggering runs, uploading files) needs a bearer token from the token file.
//!
//! # How the folder is organised
//!
//! - `mod.rs` (this file): the daemon's skeleton — [`ServeOptions`], the state every task
//!   and handler shares (`App`), the lines served (`load_lines`), the answers every file
//!   gives (`problem`, and `scrubbed`: scrubbed, with the daemon's folders hidden), the
//!   router, the connection loop (`accept`: header timeout, connection limit, graceful
//!   stop) and [`serve`], which starts it all and stops it at SIGTERM.
//! - `error.rs`: [`ServeError`], what stops the daemon at start or a handler's read of the
//!   store, and `ApiError`, every error answer of the API (status, stable code, message),
//!   which handlers return and which answers through `problem`; the router's fallbacks for
//!   a path or method no route takes.
//! - `extract.rs`: the query string and path parameters as handlers take them (`Q`, `P`,
//!   `PxPath`), whose failures answer problem JSON with a code, not axum's plain text.
//! - `auth.rs`: the token file (`read_tokens`), who a request comes from (`authorize` →
//!   `Caller`), reading a body only after that (`read_body`), and refusing a request
//!   without a reset connection (`refuse`).
//! - `jobs.rs`: the queue — [`Job`], queueing (`App::enqueue`), resuming at start
//!   (`App::resume`), the workers (`dispatch`) and one run (`execute`).
//! - `triggers.rs`: what queues runs without a request — schedules (cron, the latest
//!   complete period) and inbox arrivals (listing, settle time, what was already seen).
//! - `loaded.rs`: the lines served, loaded and planned once at start ([`LineEntry`]:
//!   each dataset's shape, inboxes, the datasets read from other lines' releases).
//! - `series.rs`: a dataset as a time series over its releases (current, or one by run id),
//!   their columns merged across schema changes; what every data API reads.
//! - `metrics.rs`: `/metrics`, `/healthz` and the counters behind them.
//! - `openapi.rs`: the API's OpenAPI document (`/openapi.json`), `ApiDoc`, generated from the
//!   handlers' `#[utoipa::path]` attributes and the types they answer; `engine/web/openapi.json`
//!   is its committed copy, which a unit test keeps current.
//! - `api/`: the HTTP API, one file per area — lines, releases and the datasets list;
//!   runs and their quality reports; the indicator API (JSON-stat or CSV); the catalog, a
//!   dataset's lineage and quality summary; uploads into an inbox; the reporting page, the
//!   catalog page, their assets and `/openapi.json`.
//! - `pxweb/`: PxWeb API 2.0 — the table list and search, metadata (JSON-stat 2.0),
//!   selections, data as JSON-stat 2.0, csv, xlsx or PX, code lists, configuration.
//!
//! What one file uses of another is `pub(super)` (`pub(in crate::serve)` for the handlers
//! under `api/`, which the router names); outside the module only [`ServeOptions`],
//! [`serve`], [`ServeError`], [`Job`], [`JobStatus`] and [`PERIOD_DIMENSION`] are seen.

mod api;
mod auth;
mod error;
mod extract;
mod jobs;
mod loaded;
mod metrics;
mod openapi;
mod pxweb;
mod series;
mod triggers;

pub use crate::serve::error::ServeError;
pub use crate::serve::jobs::Job;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tracing::{error, info, warn};

use crate::serve::api::catalog::quality::get_dataset_quality;
use crate::serve::api::catalog::{get_catalog, get_lineage};
use crate::serve::api::indicators::get_indicator;
use crate::serve::api::lines::{get_datasets, get_datasets_v1, get_line, get_lines, get_releases};
use crate::serve::api::page::{
    catalog_js, catalog_page, chart_js, funnel_js, openapi, page, page_js, style_css,
};
use crate::serve::api::releases::put_release_status;
use crate::serve::api::runs::{get_quality, get_run, get_runs, post_run};
use crate::serve::api::uploads::put_upload;
use crate::serve::auth::{Token, read_tokens};
use crate::serve::error::{ApiError, Problem, ProblemDetail, no_route, wrong_method};
use crate::serve::jobs::dispatch;
#[cfg(test)]
use crate::serve::loaded::published_tables;
use crate::serve::loaded::{LineEntry, load_lines};
use crate::serve::metrics::{Metrics, count_responses, healthz, metrics};
use crate::serve::pxweb::codelists::get_codelist;
use crate::serve::pxweb::data::{get_data, post_data};
use crate::serve::pxweb::metadata::{get_default_selection, get_metadata};
use crate::serve::pxweb::tables::{get_config, get_table, get_tables};
use crate::serve::triggers::{arrivals, schedules};
use crate::store::Store;

/// How the daemon is started.
pub struct ServeOptions {
    pub store: Store,
    pub lines_dir: PathBuf,
    pub listen: SocketAddr,
    /// The token file; without one, every write is refused.
    pub tokens: Option<PathBuf>,
    pub key: Option<Vec<u8>>,
    /// How often inboxes are listed.
    pub poll: Duration,
    /// Runs at once.
    pub workers: usize,
    /// The largest upload, in bytes.
    pub max_upload: usize,
    /// How long a run may go on after SIGTERM before the daemon stops without it.
    pub grace: Duration,
    /// A folder holding `chart.umd.js` (Chart.js) for the reporting page.
    pub assets: Option<PathBuf>,
    /// Where runs execute their plans (`--engine`).
    pub engine: Option<String>,
    /// Requests handled at once; more are answered 503 (`/healthz` always answers).
    pub max_requests: usize,
    /// How long an inbox object must stay unchanged before an arrival starts a run.
    pub settle: Duration,
    /// The longest a run may take (overrides the lines' `limits.run_minutes`).
    pub deadline: Option<Duration>,
    /// Starts of a job before it is given up: a run that crashed the daemon this many
    /// times is marked failed at the next start instead of being resumed again.
    pub max_attempts: u32,
    /// The memory each run's query engine may use before it spills
    /// ([`crate::run::RunOptions::memory_limit`]).
    pub memory_limit: Option<usize>,
}

/// How long a client may take to send a request's head; also how long an idle connection
/// stays open. A slow client (slowloris) cannot hold a connection longer.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections open at once; more wait in the kernel's queue. Fewer where the process may
/// not open that many files (see [`connection_limit`]).
const MAX_CONNECTIONS: usize = 1024;

/// File descriptors kept for the store, the lines, the runs and the logs, beside the
/// connections.
const RESERVED_FILES: u64 = 256;

/// How many connections the daemon keeps open: [`MAX_CONNECTIONS`], or fewer when the
/// process's open-file limit (raised to its hard limit first) would not leave
/// [`RESERVED_FILES`] for everything else — a full connection table must not stop runs
/// from opening their files.
fn connection_limit() -> usize {
    #[cfg(unix)]
    {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `l` is a valid rlimit for getrlimit/setrlimit to read and write.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
                if l.rlim_cur < l.rlim_max {
                    let raised = libc::rlimit {
                        rlim_cur: l.rlim_max.min(65_536),
                        rlim_max: l.rlim_max,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                        l.rlim_cur = raised.rlim_cur;
                    }
                }
                let room = l.rlim_cur.saturating_sub(RESERVED_FILES as libc::rlim_t);
                return usize::try_from(room)
                    .unwrap_or(usize::MAX)
                    .clamp(16, MAX_CONNECTIONS);
            }
        }
    }
    MAX_CONNECTIONS
}

/// How long open connections get to finish at a stop before they are closed.
const HTTP_GRACE: Duration = Duration::from_secs(5);

struct App {
    store: Store,
    lines: BTreeMap<String, LineEntry>,
    key: Option<Vec<u8>>,
    tokens: Vec<Token>,
    workers: usize,
    max_upload: usize,
    assets: Option<PathBuf>,
    engine: Option<String>,
    jobs: Mutex<BTreeMap<String, Job>>,
    wake: Notify,
    stopping: AtomicBool,
    running: AtomicU64,
    seq: AtomicU64,
    metrics: Mutex<Metrics>,
    started: Instant,
    /// Requests being handled (at most `max_requests`).
    in_flight: Arc<tokio::sync::Semaphore>,
    settle: Duration,
    deadline: Option<Duration>,
    max_attempts: u32,
    memory_limit: Option<usize>,
    /// Manifests read once (they never change).
    manifests: crate::publish::releases::ManifestCache,
    /// Series of datasets made recently (the releases they read never change).
    series: crate::serve::series::SeriesCache,
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl App {
    /// Writes the daemon's own state (jobs, upload receipts, what the inboxes held): it
    /// names objects and carries run errors, so it passes the scrubber like every text.
    async fn put_json(&self, path: &str, v: &impl Serialize) {
        let mut v = match serde_json::to_value(v) {
            Ok(v) => v,
            Err(e) => {
                error!("cannot encode {path}: {e}");
                return;
            }
        };
        crate::redact::scrub_json(&mut v);
        let bytes = match serde_json::to_vec_pretty(&v) {
            Ok(b) => b,
            Err(e) => {
                error!("cannot encode {path}: {e}");
                return;
            }
        };
        if let Err(e) = self
            .store
            .inner
            .put(&ObjPath::from(path), PutPayload::from(bytes))
            .await
        {
            error!("cannot write {path}: {e}");
        }
    }

    async fn get_bytes(&self, path: &str) -> Option<Bytes> {
        self.store
            .inner
            .get(&ObjPath::from(path))
            .await
            .ok()?
            .bytes()
            .await
            .ok()
    }
}

// ---- HTTP -----------------------------------------------------------------------------

/// An answer that carries messages or names from runs: every string passes the scrubber
/// ([`crate::redact`]) like every text the engine writes.
fn scrubbed(mut v: Value) -> axum::Json<Value> {
    crate::redact::scrub_json(&mut v);
    hide_folders(&mut v);
    axum::Json(v)
}

/// The daemon's local folders (the store's and the lines'), as named and as absolute paths,
/// with the names answers give them instead: where the daemon keeps its files is not for
/// callers (an error message may name a file in the store).
static FOLDERS: std::sync::OnceLock<Vec<(String, &'static str)>> = std::sync::OnceLock::new();

fn hide_folders(v: &mut Value) {
    let Some(folders) = FOLDERS.get() else {
        return;
    };
    match v {
        Value::String(s) => {
            for (folder, name) in folders {
                if s.contains(folder.as_str()) {
                    *s = s.replace(folder.as_str(), name);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(hide_folders),
        Value::Object(o) => o.values_mut().for_each(hide_folders),
        _ => {}
    }
}

/// Records the folders [`hide_folders`] hides, longest first (a folder inside another is
/// replaced before it).
fn set_folders(store: &Store, lines: &FsPath) {
    let mut folders: Vec<(String, &'static str)> = Vec::new();
    let mut add = |p: &FsPath, name: &'static str| {
        for form in [Some(p.to_path_buf()), p.canonicalize().ok()]
            .into_iter()
            .flatten()
        {
            let text = form.to_string_lossy().trim_end_matches('/').to_string();
            // Only absolute forms: a relative `lines` would also match inside words.
            if text.len() > 1 && form.is_absolute() {
                folders.push((text, name));
            }
        }
    };
    if let Some(root) = &store.root {
        add(root, "<store>");
    }
    add(lines, "<lines>");
    if let Ok(cwd) = std::env::current_dir() {
        add(&cwd.join(lines), "<lines>");
    }
    folders.sort_by_key(|(f, _)| std::cmp::Reverse(f.len()));
    folders.dedup();
    let _ = FOLDERS.set(folders);
}

fn problem(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let answer = Problem {
        error: ProblemDetail {
            code: code.to_string(),
            message: message.into(),
        },
    };
    let mut r = (status, scrubbed(json!(answer))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

type AppState = State<Arc<App>>;

/// Answers 503 beyond `max_requests` requests at once, so that a flood cannot queue
/// without bound; `/healthz` always answers, so that a supervisor sees a busy daemon
/// alive.
async fn limit_requests(
    State(app): AppState,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    match app.in_flight.clone().try_acquire_owned() {
        Ok(permit) => {
            let r = next.run(req).await;
            drop(permit);
            r
        }
        Err(_) => ApiError::Busy.into_response(),
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/catalog", get(catalog_page))
        .route("/assets/report.js", get(page_js))
        .route("/assets/funnel.js", get(funnel_js))
        .route("/assets/catalog.js", get(catalog_js))
        .route("/assets/style.css", get(style_css))
        .route("/assets/chart.umd.js", get(chart_js))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/api/lines", get(get_lines))
        .route("/api/lines/{line}", get(get_line))
        .route("/api/lines/{line}/runs", post(post_run))
        .route("/api/lines/{line}/releases", get(get_releases))
        .route(
            "/api/lines/{line}/releases/{period}/{run}/status",
            put(put_release_status),
        )
        .route("/api/lines/{line}/inbox/{period}/{file}", put(put_upload))
        .route("/api/runs", get(get_runs))
        .route("/api/runs/{id}", get(get_run))
        .route("/api/runs/{id}/quality", get(get_quality))
        .route("/api/catalog", get(get_catalog))
        .route("/api/datasets", get(get_datasets))
        .route("/api/datasets/{id}/lineage", get(get_lineage))
        .route("/api/datasets/{id}/quality", get(get_dataset_quality))
        .route("/api/v1/datasets", get(get_datasets_v1))
        .route("/api/v1/datasets/{id}", get(get_indicator))
        .route("/api/v2/config", get(get_config))
        .route("/api/v2/tables", get(get_tables))
        .route("/api/v2/tables/{id}", get(get_table))
        .route("/api/v2/tables/{id}/metadata", get(get_metadata))
        .route(
            "/api/v2/tables/{id}/defaultselection",
            get(get_default_selection),
        )
        .route("/api/v2/tables/{id}/data", get(get_data).post(post_data))
        .route("/api/v2/codelists/{id}", get(get_codelist))
        // After every route: the method fallback is given to the routes there are.
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(app.max_upload))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            limit_requests,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            count_responses,
        ))
        .with_state(app)
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Serves connections until `stop` completes: each connection must send a request's head
/// within [`HEADER_TIMEOUT`] (also when idle between requests), at most
/// [`MAX_CONNECTIONS`] are open at once, and at the stop open connections get
/// [`HTTP_GRACE`] to finish before they are closed.
async fn accept(
    listener: tokio::net::TcpListener,
    router: Router,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 << 10);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let limit = connection_limit();
    if limit < MAX_CONNECTIONS {
        warn!(
            connections = limit,
            "the open-file limit allows fewer connections than {MAX_CONNECTIONS}"
        );
    }
    let connections = Arc::new(tokio::sync::Semaphore::new(limit));
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            _ = &mut stop => break,
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = &mut stop => break,
            s = listener.accept() => match s {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(HTTP_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("connections still open at the stop were closed");
    }
}

/// Runs the daemon until SIGTERM or Ctrl-C.
pub async fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    set_folders(&opts.store, &opts.lines_dir);
    let lines = load_lines(&opts.lines_dir)?;
    if lines.is_empty() {
        return Err(ServeError::NoLines {
            dir: opts.lines_dir.clone(),
        });
    }
    let tokens = match &opts.tokens {
        Some(p) => read_tokens(p)?,
        None => {
            warn!(
                "no --tokens file: runs cannot be triggered and files cannot be uploaded through the API"
            );
            Vec::new()
        }
    };
    let app = Arc::new(new_app(&opts, lines, tokens));
    let collected = crate::run::gc::collect(&app.store).await;
    if !collected.is_empty() {
        info!(
            runs = collected.runs.len(),
            scratch = collected.scratch.len(),
            "removed the leftovers of killed runs"
        );
    }
    let resumed = app.resume().await?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
    info!(
        listen = %addr,
        store = %app.store.url,
        lines = app.lines.len(),
        resumed,
        "serving"
    );
    // The address on standard output, for scripts that start the daemon on port 0.
    println!("listening on http://{addr}");
    let tasks = [
        tokio::spawn(dispatch(app.clone())),
        tokio::spawn(schedules(app.clone())),
        tokio::spawn(arrivals(app.clone(), opts.poll)),
    ];
    accept(listener, router(app.clone()), async {
        stop_signal().await;
        info!("stopping: no new runs start");
        app.stopping.store(true, Ordering::SeqCst);
    })
    .await;
    for t in &tasks {
        t.abort();
    }
    wait_for_runs(&app, opts.grace).await;
    Ok(())
}

/// The state the daemon's tasks and handlers share, before any job is queued.
fn new_app(opts: &ServeOptions, lines: BTreeMap<String, LineEntry>, tokens: Vec<Token>) -> App {
    App {
        store: opts.store.clone(),
        lines,
        key: opts.key.clone(),
        tokens,
        workers: opts.workers.max(1),
        max_upload: opts.max_upload,
        assets: opts.assets.clone(),
        engine: opts.engine.clone(),
        jobs: Mutex::new(BTreeMap::new()),
        wake: Notify::new(),
        stopping: AtomicBool::new(false),
        running: AtomicU64::new(0),
        seq: AtomicU64::new(1),
        metrics: Mutex::new(Metrics::default()),
        started: Instant::now(),
        in_flight: Arc::new(tokio::sync::Semaphore::new(opts.max_requests.max(1))),
        settle: opts.settle,
        deadline: opts.deadline,
        max_attempts: opts.max_attempts,
        memory_limit: opts.memory_limit,
        manifests: Default::default(),
        series: Default::default(),
    }
}

/// Waits up to `grace` for the runs under way to end, and logs whether any was left.
async fn wait_for_runs(app: &App, grace: Duration) {
    let deadline = Instant::now() + grace;
    while app.running.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = app.running.load(Ordering::SeqCst);
    if left > 0 {
        warn!(
            runs = left,
            "stopped during runs; their previous releases stay current and the runs start again at the next start"
        );
    } else {
        info!("stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_name_two_files_give_is_served_by_neither() {
        let dir = tempfile::tempdir().unwrap();
        let root = FsPath::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let shared = root.join("../shared").canonicalize().unwrap();
        let mini = std::fs::read_to_string(root.join("tests/lines/mini.yaml"))
            .unwrap()
            .replace("../../../shared", &shared.display().to_string());
        std::fs::write(dir.path().join("a.yaml"), &mini).unwrap();
        let lines = load_lines(dir.path()).unwrap();
        assert_eq!(lines.keys().collect::<Vec<_>>(), ["mini"]);
        std::fs::write(dir.path().join("b.yaml"), &mini).unwrap();
        std::fs::write(
            dir.path().join("c.yaml"),
            mini.replace("line: mini", "line: toinen"),
        )
        .unwrap();
        let lines = load_lines(dir.path()).unwrap();
        assert_eq!(lines.keys().collect::<Vec<_>>(), ["toinen"]);
    }
}
