//! `valtava serve`: the daemon and the reporting service.
//!
//! The daemon runs the lines of a folder against one store:
//! - on their `schedule` (Finnish time; the run takes the latest complete period),
//! - when new or changed objects arrive under a source location of the line (the period is
//!   read from the object's path), and
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
//! CSV; `/` is the reporting page; `/metrics` and `/healthz` are for operators. Writing
//! (triggering runs, uploading files) needs a bearer token from the token file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tracing::{error, info, warn};

use crate::line::load::Line;
use crate::line::spec::ParamKind;
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
}

/// How long a client may take to send a request's head; also how long an idle connection
/// stays open. A slow client (slowloris) cannot hold a connection longer.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request body may pause between two pieces before the request is dropped.
const BODY_IDLE: Duration = Duration::from_secs(30);

/// A refused request whose declared body is at most this long has its body read and
/// discarded before the answer (a lingering close, as nginx does): a client that writes
/// its whole body before reading, as most do, then gets the 401/403/4xx instead of a reset
/// connection. Larger bodies are never read: the answer goes out and the connection closes.
const LINGER_BYTES: u64 = 1 << 20;

/// How long a refused request's small body may take to arrive before the answer goes out
/// anyway.
const LINGER_TIME: Duration = Duration::from_secs(2);

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

/// A job: one run of a line for one set of parameters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Job {
    pub id: String,
    pub line: String,
    pub params: BTreeMap<String, String>,
    /// `api`, `schedule`, `arrival`, `upload`.
    pub trigger: String,
    pub status: JobStatus,
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// Starts, counting those a stopped daemon did not finish.
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl Job {
    fn key(&self) -> (String, String) {
        (
            self.line.clone(),
            self.params.get("period").cloned().unwrap_or_default(),
        )
    }
}

/// A source location the daemon watches: objects under `prefix` whose path matches
/// `pattern` belong to the period the pattern captures.
#[derive(Debug, Clone)]
struct Inbox {
    prefix: String,
    pattern: regex::Regex,
    /// The location as the line writes it.
    template: String,
}

struct LineEntry {
    path: PathBuf,
    line: Line,
    schedule: Option<crate::line::cron::Schedule>,
    period: Option<ParamKind>,
    inboxes: Vec<Inbox>,
    codesets: BTreeMap<String, Arc<datafusion::datasource::MemTable>>,
}

/// A token from the token file.
struct Token {
    name: String,
    digest: [u8; 32],
    roles: BTreeSet<String>,
    /// The lines it may write to (all when `None`).
    lines: Option<BTreeSet<String>>,
    /// The submitters it uploads for (an `upload` token's names, e.g. county codes): the
    /// name of every file it uploads starts with one of them.
    submitters: BTreeSet<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<TokenSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenSpec {
    name: String,
    /// The token itself…
    #[serde(default)]
    token: Option<String>,
    /// …or its sha256 in hex.
    #[serde(default)]
    sha256: Option<String>,
    roles: Vec<String>,
    #[serde(default)]
    lines: Option<Vec<String>>,
    #[serde(default)]
    submitters: Vec<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the digest.
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .field("lines", &self.lines)
            .field("submitters", &self.submitters)
            .finish_non_exhaustive()
    }
}

/// `read`: the operational endpoints (runs, quality reports, metrics); `run`: trigger runs;
/// `upload`: submit files for its submitters; `admin`: all of them.
const ROLES: [&str; 4] = ["read", "run", "upload", "admin"];

/// Whether a token is one an attacker would try first: short, or a well-known password or a
/// small number (the digest of each is compared, so a token file holding only digests is
/// checked too).
fn weak_digest(digest: &[u8; 32]) -> bool {
    const WORDS: [&str; 16] = [
        "", "password", "passw0rd", "secret", "token", "admin", "changeme", "test", "testing",
        "valtava", "qwerty", "letmein", "default", "example", "salasana", "demo",
    ];
    let numbers = (0..=99_999u32).map(|n| n.to_string());
    WORDS
        .iter()
        .map(|w| w.to_string())
        .chain(numbers)
        .any(|w| same_digest(&Sha256::digest(w.as_bytes()).into(), digest))
}

/// Reads a token file (YAML): `tokens: [{ name, token | sha256, roles: [read, run, upload,
/// admin], lines: [...], submitters: [...] }]`. A weak token, or an upload token that names
/// no submitter, stops the daemon at start.
fn read_tokens(path: &FsPath) -> Result<Vec<Token>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
    let file: TokenFile =
        serde_saphyr::from_str(&text).map_err(|e| format!("token file {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for t in file.tokens {
        let digest: [u8; 32] = match (&t.token, &t.sha256) {
            (Some(tok), None) => {
                if tok.len() < 16 {
                    return Err(format!(
                        "token file {}: token `{}` is shorter than 16 characters",
                        path.display(),
                        t.name
                    ));
                }
                Sha256::digest(tok.as_bytes()).into()
            }
            (None, Some(h)) => hex::decode(h)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                .ok_or_else(|| {
                    format!(
                        "token file {}: sha256 of `{}` is not 64 hex digits",
                        path.display(),
                        t.name
                    )
                })?,
            _ => {
                return Err(format!(
                    "token file {}: `{}` needs exactly one of `token` and `sha256`",
                    path.display(),
                    t.name
                ));
            }
        };
        if weak_digest(&digest) {
            return Err(format!(
                "token file {}: the token of `{}` is a well-known weak one; make a long random one (e.g. `openssl rand -hex 32`)",
                path.display(),
                t.name
            ));
        }
        if t.roles.iter().any(|r| r == "upload") && t.submitters.is_empty() {
            return Err(format!(
                "token file {}: upload token `{}` names no `submitters` (whose files it uploads, e.g. county codes)",
                path.display(),
                t.name
            ));
        }
        // Letters and digits only: with `_` or `-` in a name, `a` would own `a-b_1.csv`
        // as well as `a-b` does, and the separator rule could not tell whose file it is.
        if let Some(s) = t
            .submitters
            .iter()
            .find(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(format!(
                "token file {}: submitter `{s}` of `{}` is not letters and digits only",
                path.display(),
                t.name
            ));
        }
        for r in &t.roles {
            if !ROLES.contains(&r.as_str()) {
                return Err(format!(
                    "token file {}: unknown role `{r}` of `{}` (roles: {})",
                    path.display(),
                    t.name,
                    ROLES.join(", ")
                ));
            }
        }
        out.push(Token {
            name: t.name,
            digest,
            roles: t.roles.into_iter().collect(),
            lines: t.lines.map(|l| l.into_iter().collect()),
            submitters: t.submitters.into_iter().collect(),
        });
    }
    Ok(out)
}

/// Equality of two digests in time that does not depend on where they differ.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// Counters for `/metrics`.
#[derive(Default)]
struct Metrics {
    runs: BTreeMap<(String, String), u64>,
    /// Per line: run durations in the histogram's buckets, their sum and count.
    durations: BTreeMap<String, (Vec<u64>, f64, u64)>,
    rows_read: BTreeMap<String, u64>,
    rows_quarantined: BTreeMap<String, u64>,
    rows_published: BTreeMap<String, u64>,
    requests: BTreeMap<u16, u64>,
    uploads: u64,
    upload_bytes: u64,
}

const BUCKETS: [f64; 10] = [0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

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
    /// Manifests read once (they never change).
    manifests: crate::publish::releases::ManifestCache,
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Turns a location template into the listing prefix and a pattern with the period.
fn inbox_of(template: &str) -> Option<Inbox> {
    // Inboxes are folders of the store: a URL or an absolute path names something else.
    if template.contains("://") || template.starts_with('/') || !template.contains("{period}") {
        return None;
    }
    let fixed_end = template
        .find(['{', '*', '?', '['])
        .unwrap_or(template.len());
    let prefix = match template[..fixed_end].rfind('/') {
        Some(i) => template[..=i].to_string(),
        None => String::new(),
    };
    let mut re = String::from("^");
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("{period}") {
            re.push_str("(?P<period>[^/]+)");
            rest = r;
        } else if rest.starts_with('{') {
            let end = rest.find('}').unwrap_or(rest.len() - 1);
            re.push_str("[^/]+");
            rest = &rest[end + 1..];
        } else if let Some(r) = rest.strip_prefix("**") {
            re.push_str(".*");
            rest = r;
        } else if let Some(r) = rest.strip_prefix('*') {
            re.push_str("[^/]*");
            rest = r;
        } else if let Some(r) = rest.strip_prefix('?') {
            re.push_str("[^/]");
            rest = r;
        } else {
            let c = rest.chars().next().expect("not empty");
            re.push_str(&regex::escape(&c.to_string()));
            rest = &rest[c.len_utf8()..];
        }
    }
    re.push('$');
    Some(Inbox {
        prefix,
        pattern: regex::Regex::new(&re).ok()?,
        template: template.to_string(),
    })
}

fn load_lines(dir: &FsPath) -> Result<BTreeMap<String, LineEntry>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read lines folder {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut loaded: Vec<LineEntry> = Vec::new();
    for path in files {
        let line = match crate::line::load::load(&path) {
            Ok((line, _)) => line,
            Err(d) => {
                let first = d.first().map(|d| d.message.clone()).unwrap_or_default();
                error!(file = %path.display(), "line not served: {first}");
                continue;
            }
        };
        let codesets = match crate::line::codeset::load_all(&line) {
            Ok(c) => c.into_iter().map(|(k, v)| (k, v.table)).collect(),
            Err(d) => {
                let first = d.first().map(|d| d.message.clone()).unwrap_or_default();
                error!(file = %path.display(), "line not served: {first}");
                continue;
            }
        };
        let schedule = line
            .spec
            .schedule
            .as_ref()
            .and_then(|s| s.value.parse().ok());
        let period = line
            .spec
            .params
            .iter()
            .find(|(k, _)| k.value == "period")
            .map(|(_, p)| p.kind.value);
        let inboxes = line
            .spec
            .steps
            .values()
            .filter_map(|s| s.source.as_ref())
            .filter_map(|s| inbox_of(&s.location.value))
            .collect();
        loaded.push(LineEntry {
            path,
            line,
            schedule,
            period,
            inboxes,
            codesets,
        });
    }
    // A name two files give is served by neither: the daemon must not pick one unseen.
    let lines: Vec<&Line> = loaded.iter().map(|e| &e.line).collect();
    let mut ambiguous = BTreeSet::new();
    for d in crate::plan::check::shared_names(&lines) {
        error!(file = %d.file, "line not served: {}", d.message);
        if let Some(e) = loaded.iter().find(|e| e.line.file == d.file) {
            ambiguous.insert(e.line.spec.line.value.clone());
        }
    }
    Ok(loaded
        .into_iter()
        .filter(|e| !ambiguous.contains(&e.line.spec.line.value))
        .map(|e| (e.line.spec.line.value.clone(), e))
        .collect())
}

/// The latest complete period of a kind at a Finnish local time (a scheduled run's period).
fn previous_period(kind: ParamKind, now: chrono::NaiveDateTime) -> Option<String> {
    use chrono::Datelike;
    let d = now.date();
    let (y, m) = (d.year(), d.month());
    Some(match kind {
        ParamKind::Month | ParamKind::Period => {
            let (y, m) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
            format!("{y:04}-{m:02}")
        }
        ParamKind::Quarter => {
            let q = (m - 1) / 3 + 1;
            let (y, q) = if q == 1 { (y - 1, 4) } else { (y, q - 1) };
            format!("{y:04}-Q{q}")
        }
        ParamKind::Year => format!("{:04}", y - 1),
        ParamKind::Date => (d - chrono::Duration::days(1))
            .format("%Y-%m-%d")
            .to_string(),
        ParamKind::String | ParamKind::Integer => return None,
    })
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

    /// Jobs queued and running.
    fn queue_counts(&self) -> (usize, usize) {
        let jobs = self.jobs.lock().expect("jobs lock");
        let count = |s: JobStatus| jobs.values().filter(|j| j.status == s).count();
        (count(JobStatus::Queued), count(JobStatus::Running))
    }

    async fn save(&self, job: &Job) {
        self.put_json(&crate::store::layout::job(&job.id), job)
            .await;
    }

    fn new_id(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        format!("{}-{n:04}", chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ"))
    }

    /// Queues a run, or returns the queued job of the same line and parameters.
    async fn enqueue(&self, line: &str, params: BTreeMap<String, String>, trigger: &str) -> Job {
        let job = {
            let mut jobs = self.jobs.lock().expect("jobs lock");
            if let Some(j) = jobs
                .values()
                .find(|j| j.status == JobStatus::Queued && j.line == line && j.params == params)
            {
                return j.clone();
            }
            let job = Job {
                id: self.new_id(),
                line: line.to_string(),
                params,
                trigger: trigger.to_string(),
                status: JobStatus::Queued,
                created: now_text(),
                started: None,
                finished: None,
                run_id: None,
                error: None,
                attempts: 0,
                seconds: None,
            };
            jobs.insert(job.id.clone(), job.clone());
            job
        };
        info!(job = %job.id, line, trigger, params = ?job.params, "run queued");
        self.save(&job).await;
        self.wake.notify_one();
        job
    }

    /// Reads the jobs a previous daemon left; unfinished ones are queued again.
    async fn resume(&self) -> Result<usize, String> {
        let metas: Vec<_> = self
            .store
            .inner
            .list(Some(&ObjPath::from(crate::store::layout::JOBS)))
            .try_collect()
            .await
            .map_err(|e| format!("cannot list daemon/jobs: {e}"))?;
        let mut resumed = Vec::new();
        for m in metas {
            let Some(bytes) = self.get_bytes(m.location.as_ref()).await else {
                continue;
            };
            let Ok(mut job) = serde_json::from_slice::<Job>(&bytes) else {
                warn!(object = %m.location, "not a job; ignored");
                continue;
            };
            if !self.lines.contains_key(&job.line) {
                continue;
            }
            if job.status == JobStatus::Running && job.attempts >= self.max_attempts.max(1) {
                // Started this many times and never finished: it may be what stops the
                // daemon (a hostile object); resuming it again would stop it again.
                warn!(job = %job.id, line = %job.line, attempts = job.attempts, "run interrupted too many times; marked failed");
                job.status = JobStatus::Failed;
                job.finished = Some(now_text());
                job.error = Some(json!({
                    "code": crate::run::RunCode::Engine,
                    "message": format!("the run was interrupted {} times (the daemon stopped or crashed during it); not resumed", job.attempts),
                }));
                resumed.push(job.clone());
            } else if matches!(job.status, JobStatus::Queued | JobStatus::Running) {
                if job.status == JobStatus::Running {
                    info!(job = %job.id, line = %job.line, "run interrupted by a stop; queued again");
                }
                job.status = JobStatus::Queued;
                job.started = None;
                resumed.push(job.clone());
            }
            self.jobs
                .lock()
                .expect("jobs lock")
                .insert(job.id.clone(), job);
        }
        for j in &resumed {
            self.save(j).await;
        }
        Ok(resumed
            .iter()
            .filter(|j| j.status == JobStatus::Queued)
            .count())
    }

    fn record(&self, job: &Job, report: Option<&crate::run::RunReport>) {
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

/// Runs one job to its end and records it.
async fn execute(app: Arc<App>, mut job: Job) {
    let Some(entry) = app.lines.get(&job.line) else {
        return;
    };
    info!(job = %job.id, line = %job.line, params = ?job.params, "run started");
    let opts = crate::run::RunOptions {
        store: app.store.clone(),
        params: job
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        sources: Default::default(),
        key: app.key.clone(),
        batch_size: 8192,
        progress: false,
        lineage_url: None,
        capture: Default::default(),
        engine: app.engine.clone(),
        deadline: app.deadline,
        recorder: crate::artefacts::recorder(),
    };
    let t = Instant::now();
    // On a task of its own: a run that panics fails its job instead of leaving it running
    // and its worker taken.
    let path = entry.path.clone();
    let result = match tokio::spawn(async move { crate::run::run(&path, opts).await }).await {
        Ok(r) => r,
        Err(e) => {
            error!(job = %job.id, line = %job.line, "the run ended abnormally: {e}");
            Err(crate::run::RunError::Failed(
                crate::run::RunFailure {
                    code: crate::run::RunCode::Engine,
                    message: "the run ended abnormally (a panic); see the daemon's log".into(),
                },
                None,
            ))
        }
    };
    job.seconds = Some(t.elapsed().as_secs_f64());
    job.finished = Some(now_text());
    let report = match result {
        Ok(report) => {
            job.status = JobStatus::Succeeded;
            job.run_id = Some(report.run_id.clone());
            Some(report)
        }
        Err(crate::run::RunError::Failed(f, report)) => {
            job.status = JobStatus::Failed;
            job.error = Some(json!({ "code": f.code, "message": f.message }));
            job.run_id = report.as_ref().map(|r| r.run_id.clone());
            report.map(|r| *r)
        }
        Err(crate::run::RunError::Invalid(d)) => {
            job.status = JobStatus::Failed;
            let first = d.first().map(|d| d.message.clone()).unwrap_or_default();
            job.error = Some(json!({ "code": "V000", "message": first }));
            None
        }
    };
    info!(job = %job.id, line = %job.line, status = ?job.status, seconds = job.seconds, "run finished");
    app.record(&job, report.as_ref());
    app.save(&job).await;
    app.jobs
        .lock()
        .expect("jobs lock")
        .insert(job.id.clone(), job);
    app.running.fetch_sub(1, Ordering::SeqCst);
    app.wake.notify_one();
}

/// Starts queued jobs while workers are free, one per line and period.
async fn dispatch(app: Arc<App>) {
    loop {
        if app.stopping.load(Ordering::SeqCst) {
            return;
        }
        let startable: Vec<Job> = {
            let mut jobs = app.jobs.lock().expect("jobs lock");
            let mut busy: BTreeSet<(String, String)> = jobs
                .values()
                .filter(|j| j.status == JobStatus::Running)
                .map(Job::key)
                .collect();
            let mut free = app
                .workers
                .saturating_sub(app.running.load(Ordering::SeqCst) as usize);
            let mut out = Vec::new();
            for j in jobs.values_mut() {
                if free == 0 {
                    break;
                }
                if j.status != JobStatus::Queued || busy.contains(&j.key()) {
                    continue;
                }
                busy.insert(j.key());
                j.status = JobStatus::Running;
                j.started = Some(now_text());
                j.attempts += 1;
                free -= 1;
                out.push(j.clone());
            }
            out
        };
        for job in startable {
            app.running.fetch_add(1, Ordering::SeqCst);
            app.save(&job).await;
            tokio::spawn(execute(app.clone(), job));
        }
        tokio::select! {
            _ = app.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Queues each scheduled line at its next firing.
async fn schedules(app: Arc<App>) {
    let mut next: BTreeMap<String, chrono::DateTime<chrono::Utc>> = BTreeMap::new();
    loop {
        let now = chrono::Utc::now();
        for (name, e) in &app.lines {
            let Some(s) = &e.schedule else { continue };
            let at = *next.entry(name.clone()).or_insert_with(|| {
                s.next_utc(now)
                    .unwrap_or(now + chrono::Duration::days(3650))
            });
            if at <= now {
                let local = crate::line::cron::finnish_local(now);
                let mut params = BTreeMap::new();
                if let Some(kind) = e.period {
                    match previous_period(kind, local) {
                        Some(p) => {
                            params.insert("period".to_string(), p);
                        }
                        None => {
                            warn!(line = %name, "scheduled run skipped: the period parameter is not a calendar period");
                            next.remove(name);
                            continue;
                        }
                    }
                }
                app.enqueue(name, params, "schedule").await;
                next.remove(name);
            }
        }
        if app.stopping.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

const SEEN: &str = crate::store::layout::INBOX_SEEN;

/// Lists the inboxes of every line and queues a run for each line and period with new or
/// changed objects. The first listing of a new daemon only records what is there.
async fn arrivals(app: Arc<App>, poll: Duration) {
    let mut seen: BTreeMap<String, String> = match app.get_bytes(SEEN).await {
        Some(b) => serde_json::from_slice(&b).unwrap_or_default(),
        None => {
            let now = scan(&app).await;
            let seen: BTreeMap<String, String> = now
                .into_iter()
                .map(|(k, o)| (crate::redact::scrubbed(&k), o.version))
                .collect();
            info!(objects = seen.len(), "inboxes recorded");
            app.put_json(SEEN, &seen).await;
            seen
        }
    };
    let settle = chrono::TimeDelta::from_std(app.settle).unwrap_or(chrono::TimeDelta::MAX);
    // When this daemon first saw each object's current version, on its own monotonic
    // clock: a modification time in the future (a skewed store clock, or a file touched
    // on purpose) cannot hold a period back for longer than the settle time.
    let mut first_seen: HashMap<String, (String, Instant)> = HashMap::new();
    loop {
        let now = scan(&app).await;
        let clock = chrono::Utc::now();
        first_seen.retain(|path, _| now.contains_key(path));
        let mut due: BTreeSet<(String, String)> = BTreeSet::new();
        // A period with an object changed within the settle time may still be being
        // copied: it is not run, and its changes stay unrecorded until it settles.
        let mut unsettled: BTreeSet<(String, String)> = BTreeSet::new();
        for (path, o) in &now {
            let group = (o.line.clone(), o.period.clone());
            let seen_at = match first_seen.get(path) {
                Some((v, at)) if *v == o.version => *at,
                _ => {
                    let at = Instant::now();
                    first_seen.insert(path.clone(), (o.version.clone(), at));
                    at
                }
            };
            if clock - o.modified < settle && seen_at.elapsed() < app.settle {
                unsettled.insert(group.clone());
            }
            // Recorded under their scrubbed names (an object may be named after a person).
            if seen.get(&crate::redact::scrubbed(path)) != Some(&o.version) {
                info!(object = %path, line = %o.line, period = %o.period, "object arrived");
                due.insert(group);
            }
        }
        due.retain(|g| !unsettled.contains(g));
        let next: BTreeMap<String, String> = now
            .iter()
            .filter_map(|(path, o)| {
                let name = crate::redact::scrubbed(path);
                if unsettled.contains(&(o.line.clone(), o.period.clone())) {
                    seen.get(&name).map(|v| (name, v.clone()))
                } else {
                    Some((name, o.version.clone()))
                }
            })
            .collect();
        if next != seen {
            seen = next;
            app.put_json(SEEN, &seen).await;
        }
        for (line, period) in due {
            let Some(e) = app.lines.get(&line) else {
                continue;
            };
            let params = vec![("period".to_string(), period.clone())];
            if let Err(err) = crate::plan::check::bind_params(&e.line, Some(&params)) {
                warn!(line = %line, period = %period, "arrival ignored: {err}");
                continue;
            }
            app.enqueue(
                &line,
                BTreeMap::from([("period".into(), period)]),
                "arrival",
            )
            .await;
        }
        for _ in 0..poll.as_millis().div_ceil(200).max(1) {
            if app.stopping.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// An object in an inbox.
struct Arrived {
    /// Size, time and entity tag: changes when the object does.
    version: String,
    line: String,
    period: String,
    modified: chrono::DateTime<chrono::Utc>,
}

/// Objects in the inboxes, by path.
async fn scan(app: &App) -> BTreeMap<String, Arrived> {
    let mut out = BTreeMap::new();
    for (name, e) in &app.lines {
        for inbox in &e.inboxes {
            let prefix = ObjPath::from(inbox.prefix.as_str());
            let listed: Result<Vec<_>, _> = app.store.inner.list(Some(&prefix)).try_collect().await;
            let listed = match listed {
                Ok(l) => l,
                Err(err) => {
                    warn!(line = %name, prefix = %inbox.prefix, "cannot list inbox: {err}");
                    continue;
                }
            };
            for m in listed {
                let path = m.location.to_string();
                let period = inbox
                    .pattern
                    .captures(&path)
                    .map(|c| c["period"].to_string());
                if let Some(period) = period {
                    let version = format!(
                        "{}:{}:{}",
                        m.size,
                        m.last_modified.timestamp_millis(),
                        m.e_tag.unwrap_or_default()
                    );
                    out.insert(
                        path,
                        Arrived {
                            version,
                            line: name.clone(),
                            period,
                            modified: m.last_modified,
                        },
                    );
                }
            }
        }
    }
    out
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
    let mut r = (
        status,
        scrubbed(json!({ "error": { "code": code, "message": message.into() } })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

/// Who a request was authorised as.
struct Caller {
    /// The token's name.
    name: String,
    /// The submitters it uploads for; `None` for an admin token (any).
    submitters: Option<BTreeSet<String>>,
    /// The lines it may see and act on (all when `None`).
    lines: Option<BTreeSet<String>>,
}

impl Caller {
    /// Whether the caller may see or act on `line`.
    fn may(&self, line: &str) -> bool {
        self.lines.as_ref().is_none_or(|l| l.contains(line))
    }

    /// Whether the caller may upload a file of this name: its name starts with one of the
    /// caller's submitters followed by `.`, `_` or `-` (`uusimaa.csv`, `091_2.csv`), so one
    /// county cannot write or overwrite another's file. Returns the submitter.
    fn submitter_of(&self, file: &str) -> Option<String> {
        let Some(own) = &self.submitters else {
            return Some(self.name.clone());
        };
        own.iter()
            .find(|s| {
                file.strip_prefix(s.as_str())
                    .is_some_and(|rest| rest.starts_with(['.', '_', '-']))
            })
            .cloned()
    }
}

/// Checks the bearer token for a role (and line, where one is named); answers 401 or 403
/// without saying more. Runs before any body is read.
fn authorize(
    app: &App,
    headers: &HeaderMap,
    role: &str,
    line: Option<&str>,
) -> Result<Caller, Box<Response>> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented.filter(|p| !p.is_empty()) else {
        return Err(Box::new(problem(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a bearer token is required",
        )));
    };
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    // Compare with every token, not stopping at the first match.
    let mut found: Option<&Token> = None;
    for t in &app.tokens {
        if same_digest(&t.digest, &digest) {
            found = Some(t);
        }
    }
    let Some(t) = found else {
        return Err(Box::new(problem(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the token is not valid",
        )));
    };
    let admin = t.roles.contains("admin");
    let role_ok = t.roles.contains(role) || admin;
    let line_ok = line.is_none_or(|line| t.lines.as_ref().is_none_or(|l| l.contains(line)));
    if !(role_ok && line_ok) {
        return Err(Box::new(problem(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the token does not allow this",
        )));
    }
    Ok(Caller {
        name: t.name.clone(),
        submitters: (!admin).then(|| t.submitters.clone()),
        lines: t.lines.clone(),
    })
}

/// Reads a request body of at most `limit` bytes, after the caller was authorised: a body
/// that pauses longer than [`BODY_IDLE`] or grows past the limit ends the request (408,
/// 413). An `Expect: 100-continue` client is told to send only now.
async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, Response> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut out = bytes::BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(BODY_IDLE, body.frame()).await {
            Err(_) => {
                return Err(problem(
                    StatusCode::REQUEST_TIMEOUT,
                    "body-timeout",
                    format!("the body paused longer than {} s", BODY_IDLE.as_secs()),
                ));
            }
            Ok(None) => return Ok(out.freeze()),
            Ok(Some(Err(_))) => {
                return Err(problem(
                    StatusCode::BAD_REQUEST,
                    "bad-body",
                    "the body could not be read",
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(problem(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    format!("the body is larger than {} bytes", limit),
                ));
            }
            out.extend_from_slice(&data);
        }
    }
}

/// Answers a request refused before its body was read. A body declared at most
/// [`LINGER_BYTES`] long is read and thrown away first, within [`LINGER_TIME`], so the
/// client sees the answer instead of a connection reset by unread data; any other body
/// is never read.
async fn refuse(headers: &HeaderMap, body: axum::body::Body, answer: Response) -> Response {
    use http_body_util::BodyExt;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > 0 && n <= LINGER_BYTES) {
        let drain = async {
            let mut body = body;
            let mut seen = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                if seen > LINGER_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    }
    answer
}

fn text_of(t: &crate::line::spec::Text) -> Value {
    match t {
        crate::line::spec::Text::Plain(s) => json!({ "fi": s }),
        crate::line::spec::Text::Languages(l) => json!({ "fi": l.fi, "sv": l.sv, "en": l.en }),
    }
}

fn publish_steps(line: &Line) -> Vec<(&str, &crate::line::spec::PublishSpec)> {
    line.spec
        .steps
        .iter()
        .filter_map(|(n, s)| s.publish.as_ref().map(|p| (n.value.as_str(), p)))
        .collect()
}

fn line_json(name: &str, e: &LineEntry) -> Value {
    let s = &e.line.spec;
    let next = e
        .schedule
        .as_ref()
        .and_then(|sc| sc.next_utc(chrono::Utc::now()))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let params: BTreeMap<&str, Value> = s
        .params
        .iter()
        .map(|(k, p)| {
            (
                k.value.as_str(),
                json!({ "kind": format!("{:?}", p.kind).to_lowercase() }),
            )
        })
        .collect();
    json!({
        "line": name,
        "title": text_of(&s.title.value),
        "description": s.description.as_ref().map(text_of),
        "owner": s.owner,
        "schedule": s.schedule.as_ref().map(|x| x.value.clone()),
        "next_scheduled_run": next,
        "params": params,
        "inboxes": e.inboxes.iter().map(|i| i.template.clone()).collect::<Vec<_>>(),
        "datasets": publish_steps(&e.line).iter().map(|(_, p)| p.dataset.value.clone()).collect::<Vec<_>>(),
    })
}

type AppState = State<Arc<App>>;

async fn get_lines(State(app): AppState) -> Response {
    let lines: Vec<Value> = app.lines.iter().map(|(n, e)| line_json(n, e)).collect();
    axum::Json(json!({ "lines": lines })).into_response()
}

async fn get_line(State(app): AppState, UrlPath(line): UrlPath<String>) -> Response {
    match app.lines.get(&line) {
        Some(e) => axum::Json(line_json(&line, e)).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no line `{line}`"),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunRequest {
    #[serde(default)]
    params: BTreeMap<String, String>,
}

async fn post_run(
    State(app): AppState,
    UrlPath(line): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    if let Err(r) = authorize(&app, &headers, "run", Some(&line)) {
        return refuse(&headers, body, *r).await;
    }
    /// A run request is a few parameters.
    const MAX_RUN_REQUEST: usize = 64 << 10;
    let body = match read_body(body, MAX_RUN_REQUEST).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(e) = app.lines.get(&line) else {
        return problem(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no line `{line}`"),
        );
    };
    if app.stopping.load(Ordering::SeqCst) {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the daemon is stopping",
        );
    }
    let req: RunRequest = if body.is_empty() {
        RunRequest {
            params: BTreeMap::new(),
        }
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(err) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "bad-request",
                    format!("expected {{\"params\": {{\"name\": \"value\"}}}}: {err}"),
                );
            }
        }
    };
    let given: Vec<(String, String)> = req.params.clone().into_iter().collect();
    if let Err(err) = crate::plan::check::bind_params(&e.line, Some(&given)) {
        return problem(StatusCode::BAD_REQUEST, "bad-params", err);
    }
    let job = app.enqueue(&line, req.params, "api").await;
    let mut r = (StatusCode::ACCEPTED, scrubbed(json!(job))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/runs/{}", job.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

#[derive(Deserialize)]
struct RunsQuery {
    line: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
}

async fn get_runs(
    State(app): AppState,
    headers: HeaderMap,
    Query(q): Query<RunsQuery>,
) -> Response {
    let caller = match authorize(&app, &headers, "read", None) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let jobs = app.jobs.lock().expect("jobs lock");
    let list: Vec<&Job> = jobs
        .values()
        .rev()
        .filter(|j| caller.may(&j.line))
        .filter(|j| q.line.as_ref().is_none_or(|l| *l == j.line))
        .filter(|j| {
            q.status
                .as_ref()
                .is_none_or(|s| *s == format!("{:?}", j.status).to_lowercase())
        })
        .take(q.limit.unwrap_or(100).min(1000))
        .collect();
    scrubbed(json!({ "runs": list })).into_response()
}

/// The job `id` if the caller (a `read` token) may see it; otherwise the answer.
fn readable_job(app: &App, headers: &HeaderMap, id: &str) -> Result<Job, Box<Response>> {
    let caller = authorize(app, headers, "read", None)?;
    let job = app.jobs.lock().expect("jobs lock").get(id).cloned();
    job.filter(|j| caller.may(&j.line)).ok_or_else(|| {
        Box::new(problem(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no run `{id}`"),
        ))
    })
}

async fn get_run(
    State(app): AppState,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let job = match readable_job(&app, &headers, &id) {
        Ok(j) => j,
        Err(r) => return *r,
    };
    let mut report = match &job.run_id {
        Some(r) => app
            .get_bytes(&crate::store::layout::run_report(&job.line, r))
            .await
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok()),
        None => None,
    };
    // The line file by its name: where the daemon's files are is not for callers.
    if let Some(file) = report.as_mut().and_then(|r| r.get_mut("line_file")) {
        let name = file
            .as_str()
            .and_then(|f| FsPath::new(f).file_name())
            .map(|n| n.to_string_lossy().into_owned());
        *file = json!(name);
    }
    scrubbed(json!({ "run": job, "report": report })).into_response()
}

async fn get_quality(
    State(app): AppState,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let job = match readable_job(&app, &headers, &id) {
        Ok(j) => j,
        Err(r) => return *r,
    };
    let Some(run_id) = &job.run_id else {
        return problem(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("run `{id}` has no quality report yet"),
        );
    };
    match app
        .get_bytes(&crate::store::layout::quality_json(&job.line, run_id))
        .await
    {
        Some(b) => match serde_json::from_slice::<Value>(&b) {
            Ok(v) => scrubbed(v).into_response(),
            Err(_) => problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store",
                "the quality report cannot be read",
            ),
        },
        None => problem(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("run `{id}` wrote no quality report"),
        ),
    }
}

async fn get_releases(State(app): AppState, UrlPath(line): UrlPath<String>) -> Response {
    if !app.lines.contains_key(&line) {
        return problem(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no line `{line}`"),
        );
    }
    match crate::publish::releases::list_cached(&app.store, &line, &app.manifests).await {
        Ok(r) => axum::Json(json!({ "releases": r })).into_response(),
        Err(e) => {
            error!("{e}");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store",
                "cannot read releases",
            )
        }
    }
}

/// The line and publish step of a dataset.
fn find_dataset<'a>(
    app: &'a App,
    id: &str,
) -> Option<(&'a str, &'a LineEntry, &'a crate::line::spec::PublishSpec)> {
    app.lines.iter().find_map(|(n, e)| {
        publish_steps(&e.line)
            .into_iter()
            .find(|(_, p)| p.dataset.value == id)
            .map(|(_, p)| (n.as_str(), e, p))
    })
}

/// The current release of each period of a line: (period, run id).
async fn current_releases(app: &App, line: &str) -> Result<Vec<(String, String)>, String> {
    Ok(
        crate::publish::releases::list_cached(&app.store, line, &app.manifests)
            .await?
            .into_iter()
            .filter(|r| r.current)
            .map(|r| (r.period, r.run_id))
            .collect(),
    )
}

async fn get_datasets(State(app): AppState) -> Response {
    let mut out = Vec::new();
    for (name, e) in &app.lines {
        let periods = current_releases(&app, name).await.unwrap_or_default();
        for (_, p) in publish_steps(&e.line) {
            out.push(json!({
                "dataset": p.dataset.value,
                "line": name,
                "title": text_of(&e.line.spec.title.value),
                "periods": periods.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
                "href": format!("/api/v1/datasets/{}", p.dataset.value),
            }));
        }
    }
    axum::Json(json!({ "datasets": out })).into_response()
}

/// The name of the period dimension the indicator API adds.
pub const PERIOD_DIMENSION: &str = "jakso";

/// Reads the current releases of a dataset (some periods, or all) into one table with a
/// leading period column.
async fn dataset_table(
    app: &App,
    line: &str,
    dataset: &str,
    periods: Option<&BTreeSet<String>>,
) -> Result<Option<arrow::record_batch::RecordBatch>, String> {
    use arrow::array::{ArrayRef, StringArray};
    let mut tables = Vec::new();
    for (period, run) in current_releases(app, line).await? {
        if periods.is_some_and(|p| !p.contains(&period)) {
            continue;
        }
        let path = crate::store::layout::release_file(line, &period, &run, dataset, "parquet");
        let Some(bytes) = app.get_bytes(&path).await else {
            continue;
        };
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| format!("{path}: {e}"))?
            .build()
            .map_err(|e| format!("{path}: {e}"))?;
        for b in reader {
            let b = b.map_err(|e| format!("{path}: {e}"))?;
            let mut fields = vec![arrow::datatypes::Field::new(
                PERIOD_DIMENSION,
                arrow::datatypes::DataType::Utf8,
                false,
            )];
            // Field metadata differs between releases; the table keeps names and types.
            fields.extend(b.schema().fields().iter().map(|f| {
                arrow::datatypes::Field::new(f.name(), f.data_type().clone(), f.is_nullable())
            }));
            let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec![
                period.as_str();
                b.num_rows()
            ]))];
            cols.extend(b.columns().iter().cloned());
            let schema = Arc::new(arrow::datatypes::Schema::new(fields));
            tables.push(
                arrow::record_batch::RecordBatch::try_new(schema, cols)
                    .map_err(|e| e.to_string())?,
            );
        }
    }
    let Some(first) = tables.first() else {
        return Ok(None);
    };
    let schema = first.schema();
    let tables: Vec<_> = tables
        .into_iter()
        .filter(|t| t.schema() == schema)
        .collect();
    arrow::compute::concat_batches(&schema, &tables)
        .map(Some)
        .map_err(|e| e.to_string())
}

async fn get_indicator(
    State(app): AppState,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    use arrow::array::{Array, AsArray, BooleanArray};
    let Some((line, entry, spec)) = find_dataset(&app, &id) else {
        return problem(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no dataset `{id}`"),
        );
    };
    let dims: Vec<String> = match &spec.dimensions {
        Some(d) => d.iter().map(|n| n.value.clone()).collect(),
        None => Vec::new(),
    };
    let geo = dims.iter().find(|d| crate::plan::is_area(d)).cloned();
    // Filters: dimension=code,code; `area` names the area dimension; `period` the releases.
    let mut filters: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut periods: Option<BTreeSet<String>> = None;
    let mut format = None;
    for (k, v) in &q {
        let values: BTreeSet<String> = v
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        match k.as_str() {
            "format" => format = Some(v.clone()),
            "period" | PERIOD_DIMENSION => periods = Some(values),
            "area" if geo.is_some() => {
                filters.insert(geo.clone().unwrap_or_default(), values);
            }
            d if dims.iter().any(|x| x == d) => {
                filters.insert(d.to_string(), values);
            }
            other => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "bad-filter",
                    format!(
                        "`{other}` is not a dimension of `{id}`; filter by {}, area, period or format",
                        dims.join(", ")
                    ),
                );
            }
        }
    }
    let csv = match format.as_deref() {
        Some("csv") => true,
        Some("json") | Some("jsonstat") => false,
        Some(f) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad-format",
                format!("format `{f}`: use csv or json"),
            );
        }
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/csv") && !a.contains("application/json")),
    };
    let table = match dataset_table(&app, line, &id, periods.as_ref()).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            return problem(
                StatusCode::NOT_FOUND,
                "not-published",
                format!("`{id}` has no published release for the periods asked"),
            );
        }
        Err(e) => {
            error!("{e}");
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store",
                "cannot read the dataset",
            );
        }
    };
    let mut keep = BooleanArray::from(vec![true; table.num_rows()]);
    for (d, values) in &filters {
        let Some(a) = table.column_by_name(d) else {
            continue;
        };
        let Ok(a) = arrow::compute::cast(a, &arrow::datatypes::DataType::Utf8) else {
            continue;
        };
        let a = a.as_string::<i32>();
        let m: BooleanArray = (0..a.len())
            .map(|i| Some(a.is_valid(i) && values.contains(a.value(i))))
            .collect();
        keep = arrow::compute::and(&keep, &m).unwrap_or(keep);
    }
    let table = match arrow::compute::filter_record_batch(&table, &keep) {
        Ok(t) => t,
        Err(e) => {
            error!("{e}");
            return problem(StatusCode::INTERNAL_SERVER_ERROR, "engine", "cannot filter");
        }
    };
    if csv {
        let mut out = Vec::new();
        {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            if let Err(e) = w.write(&table) {
                error!("{e}");
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "engine",
                    "cannot write CSV",
                );
            }
        }
        return (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::VARY, "Accept"),
            ],
            out,
        )
            .into_response();
    }
    let mut all_dims = vec![PERIOD_DIMENSION.to_string()];
    all_dims.extend(dims.iter().cloned());
    let mut meta =
        match crate::publish::jsonstat_meta(&entry.line, spec, &all_dims, &entry.codesets) {
            Ok(m) => m,
            Err(e) => {
                error!("{e}");
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "engine",
                    "cannot label the dataset",
                );
            }
        };
    meta.column_labels.insert(
        PERIOD_DIMENSION.into(),
        [
            Some("Tilastojakso".into()),
            Some("Statistikperiod".into()),
            Some("Statistical period".into()),
        ],
    );
    match crate::publish::jsonstat::dataset(&table, &meta) {
        Ok(mut doc) => {
            doc["updated"] = json!(now_text());
            (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::VARY, "Accept"),
                ],
                axum::Json(doc),
            )
                .into_response()
        }
        Err(e) => {
            error!("{e}");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "engine",
                "cannot write JSON-stat",
            )
        }
    }
}

fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s != "."
        && s != ".."
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Where an upload of `file` for `period` goes and whose it is, or the answer refusing it:
/// the line exists, the names are plain, the file is the caller's (by its submitter
/// prefix) and a source of the line reads it there.
fn upload_target(
    app: &App,
    caller: &Caller,
    line: &str,
    period: &str,
    file: &str,
) -> Result<(String, String), Box<Response>> {
    let Some(e) = app.lines.get(line) else {
        return Err(Box::new(problem(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no line `{line}`"),
        )));
    };
    if !safe_name(file) || !safe_name(period) {
        return Err(Box::new(problem(
            StatusCode::BAD_REQUEST,
            "bad-name",
            "file and period names are letters, digits, `.`, `_` and `-`, not starting with `.`",
        )));
    }
    let Some(who) = caller.submitter_of(file) else {
        return Err(Box::new(problem(
            StatusCode::FORBIDDEN,
            "not-your-file",
            format!(
                "token `{}` uploads for {}: a file's name starts with one of them and `.`, `_` or `-`",
                caller.name,
                caller
                    .submitters
                    .iter()
                    .flatten()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )));
    };
    let params = vec![("period".to_string(), period.to_string())];
    if let Err(err) = crate::plan::check::bind_params(&e.line, Some(&params)) {
        return Err(Box::new(problem(
            StatusCode::BAD_REQUEST,
            "bad-params",
            err,
        )));
    }
    // The object goes where a source of the line reads it.
    let values = BTreeMap::from([("period".to_string(), period.to_string())]);
    let mut target = None;
    for inbox in &e.inboxes {
        let filled = crate::store::fill(&inbox.template, &values);
        let dir = match filled.rfind('/') {
            Some(i) => &filled[..=i],
            None => "",
        };
        let path = format!("{dir}{file}");
        if inbox.pattern.is_match(&path) {
            target = Some(path);
            break;
        }
    }
    let Some(path) = target else {
        let expected: Vec<String> = e
            .inboxes
            .iter()
            .map(|i| crate::store::fill(&i.template, &values))
            .collect();
        return Err(Box::new(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no-source",
            format!(
                "`{file}` is not read by any source of `{line}`; sources read {}",
                expected.join(", ")
            ),
        )));
    };
    Ok((who, path))
}

async fn put_upload(
    State(app): AppState,
    UrlPath((line, period, file)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let target = authorize(&app, &headers, "upload", Some(&line)).and_then(|caller| {
        upload_target(&app, &caller, &line, &period, &file).map(|t| (caller, t))
    });
    let (caller, (who, path)) = match target {
        Ok(t) => t,
        Err(r) => return refuse(&headers, body, *r).await,
    };
    let body = match read_body(body, app.max_upload).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let sha = hex::encode(Sha256::digest(&body));
    let bytes = body.len();
    if let Err(err) = app
        .store
        .inner
        .put(&ObjPath::from(path.as_str()), PutPayload::from(body))
        .await
    {
        error!("upload to {path}: {err}");
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store",
            "cannot store the file",
        );
    }
    let received = now_text();
    let receipt = json!({
        "receipt": app.new_id(),
        "line": line,
        "period": period,
        "path": path,
        "bytes": bytes,
        "sha256": sha,
        "received": received,
        "submitter": who,
        "token": caller.name,
    });
    app.put_json(
        &crate::store::layout::receipt(receipt["receipt"].as_str().unwrap_or_default()),
        &receipt,
    )
    .await;
    {
        let mut m = app.metrics.lock().expect("metrics lock");
        m.uploads += 1;
        m.upload_bytes += bytes as u64;
    }
    info!(line = %line, period = %period, path = %path, bytes, submitter = %who, "file received");
    (StatusCode::CREATED, scrubbed(receipt)).into_response()
}

async fn healthz(State(app): AppState) -> Response {
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

async fn metrics(State(app): AppState, headers: HeaderMap) -> Response {
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

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../web/openapi.json"),
    )
        .into_response()
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
            ),
        ],
        include_str!("../../web/index.html"),
    )
        .into_response()
}

async fn page_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../web/report.js"),
    )
        .into_response()
}

async fn chart_js(State(app): AppState) -> Response {
    let Some(dir) = &app.assets else {
        return problem(
            StatusCode::NOT_FOUND,
            "no-assets",
            "the daemon was started without --assets (Chart.js)",
        );
    };
    match tokio::fs::read(dir.join("chart.umd.js")).await {
        Ok(b) => (
            [
                (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                (header::CACHE_CONTROL, "max-age=3600"),
            ],
            b,
        )
            .into_response(),
        Err(_) => problem(StatusCode::NOT_FOUND, "no-assets", "chart.umd.js not found"),
    }
}

async fn count_responses(
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
        Err(_) => {
            let mut r = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many requests at once; try again shortly",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/assets/report.js", get(page_js))
        .route("/assets/chart.umd.js", get(chart_js))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/api/lines", get(get_lines))
        .route("/api/lines/{line}", get(get_line))
        .route("/api/lines/{line}/runs", post(post_run))
        .route("/api/lines/{line}/releases", get(get_releases))
        .route("/api/lines/{line}/inbox/{period}/{file}", put(put_upload))
        .route("/api/runs", get(get_runs))
        .route("/api/runs/{id}", get(get_run))
        .route("/api/runs/{id}/quality", get(get_quality))
        .route("/api/datasets", get(get_datasets))
        .route("/api/v1/datasets", get(get_datasets))
        .route("/api/v1/datasets/{id}", get(get_indicator))
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
pub async fn serve(opts: ServeOptions) -> Result<(), String> {
    set_folders(&opts.store, &opts.lines_dir);
    let lines = load_lines(&opts.lines_dir)?;
    if lines.is_empty() {
        return Err(format!(
            "no valid line files in {}",
            opts.lines_dir.display()
        ));
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
    let app = Arc::new(App {
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
        manifests: Default::default(),
    });
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
        .map_err(|e| format!("cannot listen on {}: {e}", opts.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
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
    let deadline = Instant::now() + opts.grace;
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployment_example_token_file_is_valid() {
        let path =
            FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deployment/tokens.yaml");
        let tokens = read_tokens(&path).unwrap();
        assert_eq!(tokens.len(), 3);
        assert_eq!(
            tokens[1].submitters,
            BTreeSet::from(["pirkanmaa".to_string()])
        );
        assert_eq!(
            tokens[1].lines,
            Some(BTreeSet::from(["ensihoito".to_string()]))
        );
        assert!(tokens[0].roles.contains("admin"));
    }

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

    #[test]
    fn inbox_patterns_capture_the_period() {
        let i = inbox_of("inbox/ensihoito/{period}/*.csv").unwrap();
        assert_eq!(i.prefix, "inbox/ensihoito/");
        let c = i.pattern.captures("inbox/ensihoito/2025-03/a.csv").unwrap();
        assert_eq!(&c["period"], "2025-03");
        assert!(!i.pattern.is_match("inbox/ensihoito/2025-03/sub/a.csv"));
        assert!(!i.pattern.is_match("inbox/ensihoito/2025-03/a.csv.tmp"));
        let i = inbox_of("inbox/rokotukset/{period}/Patient*.ndjson").unwrap();
        assert!(
            i.pattern
                .is_match("inbox/rokotukset/2025/Patient.000.ndjson")
        );
        assert!(
            !i.pattern
                .is_match("inbox/rokotukset/2025/Immunization.000.ndjson")
        );
        // Locations without a period, or in another store, are not watched.
        assert!(inbox_of("reference/vaesto/*.csv").is_none());
        assert!(inbox_of("s3://b/inbox/{period}/*.csv").is_none());
    }

    #[test]
    fn scheduled_runs_take_the_latest_complete_period() {
        let t = chrono::NaiveDate::from_ymd_opt(2025, 1, 5)
            .unwrap()
            .and_hms_opt(6, 0, 0)
            .unwrap();
        assert_eq!(previous_period(ParamKind::Month, t).unwrap(), "2024-12");
        assert_eq!(previous_period(ParamKind::Quarter, t).unwrap(), "2024-Q4");
        assert_eq!(previous_period(ParamKind::Year, t).unwrap(), "2024");
        assert_eq!(previous_period(ParamKind::Date, t).unwrap(), "2025-01-04");
        let t = chrono::NaiveDate::from_ymd_opt(2025, 8, 15)
            .unwrap()
            .and_hms_opt(6, 0, 0)
            .unwrap();
        assert_eq!(previous_period(ParamKind::Month, t).unwrap(), "2025-07");
        assert_eq!(previous_period(ParamKind::Quarter, t).unwrap(), "2025-Q2");
        assert!(previous_period(ParamKind::String, t).is_none());
    }

    #[test]
    fn names_that_could_leave_the_inbox_are_refused() {
        for bad in [
            "..", ".", ".hidden", "a/b", "a\\b", "", "a b", "%2e%2e", "ä.csv",
        ] {
            assert!(!safe_name(bad), "{bad}");
        }
        for good in ["tehtavat.csv", "2025-03", "Patient.000.ndjson"] {
            assert!(safe_name(good), "{good}");
        }
    }

    #[test]
    fn token_digests_compare_whole() {
        let a: [u8; 32] = Sha256::digest(b"first-token-0123456789").into();
        let b: [u8; 32] = Sha256::digest(b"other-token-0123456789").into();
        assert!(same_digest(&a, &a));
        assert!(!same_digest(&a, &b));
        let mut c = a;
        c[31] ^= 1;
        assert!(!same_digest(&a, &c));
    }

    #[test]
    fn token_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.yaml");
        std::fs::write(&p, "tokens:\n  - { name: a, token: short, roles: [run] }\n").unwrap();
        assert!(read_tokens(&p).unwrap_err().contains("shorter than 16"));
        std::fs::write(
            &p,
            "tokens:\n  - { name: a, token: 0123456789abcdef0123, roles: [runner] }\n",
        )
        .unwrap();
        assert!(read_tokens(&p).unwrap_err().contains("unknown role"));
        let h = hex::encode(Sha256::digest(b"0123456789abcdef0123"));
        std::fs::write(
            &p,
            format!(
                "tokens:\n  - {{ name: a, sha256: {h}, roles: [upload], lines: [ensihoito] }}\n"
            ),
        )
        .unwrap();
        assert!(
            read_tokens(&p)
                .unwrap_err()
                .contains("names no `submitters`")
        );
        // Weak tokens are refused, also as digests (the old example shipped sha256("1")).
        for weak in ["1", "password", "12345", "changeme"] {
            let w = hex::encode(Sha256::digest(weak.as_bytes()));
            std::fs::write(
                &p,
                format!("tokens:\n  - {{ name: a, sha256: {w}, roles: [run] }}\n"),
            )
            .unwrap();
            assert!(read_tokens(&p).unwrap_err().contains("weak"), "{weak}");
        }
        let upload_token = |submitter: &str| {
            std::fs::write(
                &p,
                format!(
                    "tokens:\n  - {{ name: a, sha256: {h}, roles: [upload], lines: [ensihoito], submitters: [\"{submitter}\"] }}\n"
                ),
            )
            .unwrap()
        };
        // Not a name; and `a` and `a-b` would both own `a-b_1.csv`.
        for bad in ["../x", "a-b", ""] {
            upload_token(bad);
            let err = read_tokens(&p).unwrap_err();
            assert!(err.contains("letters and digits"), "{bad}: {err}");
        }
        upload_token("091");
        let t = read_tokens(&p).unwrap();
        assert_eq!(
            t[0].digest,
            <[u8; 32]>::from(Sha256::digest(b"0123456789abcdef0123"))
        );
        assert!(t[0].lines.as_ref().unwrap().contains("ensihoito"));
        let caller = Caller {
            name: "a".into(),
            submitters: Some(t[0].submitters.clone()),
            lines: None,
        };
        assert_eq!(caller.submitter_of("091.csv").as_deref(), Some("091"));
        assert_eq!(
            caller.submitter_of("091_2025-03.csv").as_deref(),
            Some("091")
        );
        assert_eq!(caller.submitter_of("0911.csv"), None);
        assert_eq!(caller.submitter_of("092.csv"), None);
    }
}
