//! What queues runs without a request: schedules and arrivals in the inboxes.
//!
//! [`schedules`] queues each line with a `schedule` (five-field cron, Finnish time) at its
//! firing, for the latest complete period ([`previous_period`]). [`arrivals`] lists the
//! inboxes — the source locations of the lines that are folders of the store with a
//! `{period}` or a `{period.months}` ([`inbox_of`]) — and queues a line and period when an
//! object there is new or changed and has settled: the period in the object's path, or the
//! line's period that contains the month (quarter) of the path (a yearly line reading the
//! monthly folders runs for 2025 when `2025-03/` receives a file). What was seen is kept in
//! the store ([`SEEN`]), so a restarted daemon does not run everything again. Both only call
//! [`App::enqueue`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path as ObjPath;
use tracing::{info, warn};

use crate::line::params::PeriodPart;
use crate::line::spec::ParamKind;
use crate::serve::App;

/// A source location the daemon watches: objects under `prefix` whose path matches
/// `pattern` belong to the period the pattern captures (group `period`), or to the line's
/// period containing the month or quarter it captures (group `part`, for `{period.months}`).
#[derive(Debug, Clone)]
pub(super) struct Inbox {
    pub(super) prefix: String,
    pub(super) pattern: regex::Regex,
    /// The location as the line writes it.
    pub(super) template: String,
    /// The part of the period its folders are (`{period.months}`), if not the period.
    pub(super) part: Option<PeriodPart>,
}

impl Inbox {
    /// The run period of an object at `path`, for a line whose period is of `kind`.
    pub(super) fn period_of(&self, path: &str, kind: Option<ParamKind>) -> Option<String> {
        let c = self.pattern.captures(path)?;
        match (c.name("period"), c.name("part")) {
            (Some(p), _) => Some(p.as_str().to_string()),
            (None, Some(v)) => self.run_period(v.as_str(), kind),
            (None, None) => None,
        }
    }

    /// The run period of a folder named `value`: the value itself, or the period of the
    /// line's `kind` that contains the month (quarter) `value` names; `None` when `value`
    /// is no month (quarter), or the line's period could be any.
    pub(super) fn run_period(&self, value: &str, kind: Option<ParamKind>) -> Option<String> {
        let Some(part) = self.part else {
            return Some(value.to_string());
        };
        let crate::line::params::ParamValue::Period { start, .. } =
            crate::line::params::parse_value(part.unit(), value).ok()?
        else {
            return None;
        };
        crate::line::params::period_containing(kind?, start)
    }

    /// What fills the location for an object in the folder `value` of run period `period`.
    pub(super) fn values(&self, period: &str, value: &str) -> BTreeMap<String, String> {
        let mut values = BTreeMap::from([("period".to_string(), period.to_string())]);
        if let Some(part) = self.part {
            values.insert(format!("period.{}", part.as_str()), value.to_string());
        }
        values
    }
}

/// The part a location's folders are: `{period.months}` or `{period.quarters}`.
fn part_of(template: &str) -> Option<PeriodPart> {
    PeriodPart::ALL
        .into_iter()
        .find(|p| template.contains(&format!("{{period.{}}}", p.as_str())))
}

/// Turns a location template into the listing prefix and a pattern with the period.
pub(super) fn inbox_of(template: &str) -> Option<Inbox> {
    let part = part_of(template);
    // Inboxes are folders of the store: a URL or an absolute path names something else.
    if template.contains("://")
        || template.starts_with('/')
        || !(template.contains("{period}") || part.is_some())
    {
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
    let part_text = part.map(|p| format!("{{period.{}}}", p.as_str()));
    // The first place of each names the group; later ones take the same text.
    let (mut period_named, mut part_named) = (false, false);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("{period}") {
            re.push_str(if period_named {
                "[^/]+"
            } else {
                "(?P<period>[^/]+)"
            });
            period_named = true;
            rest = r;
        } else if let Some(r) = part_text.as_deref().and_then(|t| rest.strip_prefix(t)) {
            re.push_str(if part_named {
                "[^/]+"
            } else {
                "(?P<part>[^/]+)"
            });
            part_named = true;
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
        part,
    })
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
        ParamKind::HalfYear => {
            let (y, h) = if m <= 6 { (y - 1, 2) } else { (y, 1) };
            format!("{y:04}-H{h}")
        }
        ParamKind::Year => format!("{:04}", y - 1),
        ParamKind::Date => (d - chrono::Duration::days(1))
            .format("%Y-%m-%d")
            .to_string(),
        ParamKind::String | ParamKind::Integer => return None,
    })
}

/// Queues each scheduled line at its next firing.
pub(super) async fn schedules(app: Arc<App>) {
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
                app.enqueue(name, params, "schedule", Default::default())
                    .await;
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
pub(super) async fn arrivals(app: Arc<App>, poll: Duration) {
    let mut seen = recorded(&app).await;
    let settle = chrono::TimeDelta::from_std(app.settle).unwrap_or(chrono::TimeDelta::MAX);
    // When this daemon first saw each object's current version, on its own monotonic
    // clock: a modification time in the future (a skewed store clock, or a file touched
    // on purpose) cannot hold a period back for longer than the settle time.
    let mut first_seen: HashMap<String, (String, Instant)> = HashMap::new();
    loop {
        let now = scan(&app).await;
        let clock = chrono::Utc::now();
        first_seen.retain(|path, _| now.contains_key(path));
        let (mut due, unsettled) = changes(&now, &seen, &mut first_seen, clock, settle, app.settle);
        due.retain(|g| !unsettled.contains(g));
        let next = next_seen(&now, &seen, &unsettled);
        if next != seen {
            seen = next;
            app.put_json(SEEN, &seen).await;
        }
        enqueue_due(&app, due).await;
        for _ in 0..poll.as_millis().div_ceil(200).max(1) {
            if app.stopping.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// What the store records as seen (by scrubbed path, each object's version); with no
/// record yet, what the inboxes hold now, recorded.
async fn recorded(app: &App) -> BTreeMap<String, String> {
    match app.get_bytes(SEEN).await {
        Some(b) => serde_json::from_slice(&b).unwrap_or_default(),
        None => {
            let now = scan(app).await;
            let seen: BTreeMap<String, String> = now
                .into_iter()
                .map(|(k, o)| (crate::redact::scrubbed(&k), o.version))
                .collect();
            info!(objects = seen.len(), "inboxes recorded");
            app.put_json(SEEN, &seen).await;
            seen
        }
    }
}

/// (line, period) pairs.
type Periods = BTreeSet<(String, String)>;

/// The lines and periods of the objects listed `now`: those with an object not `seen` in its
/// version (due), and those with an object changed within the settle time (unsettled: it
/// may still be being copied, so the period is not run yet).
fn changes(
    now: &BTreeMap<String, Arrived>,
    seen: &BTreeMap<String, String>,
    first_seen: &mut HashMap<String, (String, Instant)>,
    clock: chrono::DateTime<chrono::Utc>,
    settle: chrono::TimeDelta,
    settle_std: Duration,
) -> (Periods, Periods) {
    let mut due: BTreeSet<(String, String)> = BTreeSet::new();
    let mut unsettled: BTreeSet<(String, String)> = BTreeSet::new();
    for (path, o) in now {
        let group = (o.line.clone(), o.period.clone());
        let seen_at = match first_seen.get(path) {
            Some((v, at)) if *v == o.version => *at,
            _ => {
                let at = Instant::now();
                first_seen.insert(path.clone(), (o.version.clone(), at));
                at
            }
        };
        if clock - o.modified < settle && seen_at.elapsed() < settle_std {
            unsettled.insert(group.clone());
        }
        // Recorded under their scrubbed names (an object may be named after a person).
        if seen.get(&crate::redact::scrubbed(path)) != Some(&o.version) {
            info!(object = %path, line = %o.line, period = %o.period, "object arrived");
            due.insert(group);
        }
    }
    (due, unsettled)
}

/// The record of what was seen after this listing: every object's version, but the
/// changes of an unsettled period stay unrecorded until it settles.
fn next_seen(
    now: &BTreeMap<String, Arrived>,
    seen: &BTreeMap<String, String>,
    unsettled: &BTreeSet<(String, String)>,
) -> BTreeMap<String, String> {
    now.iter()
        .filter_map(|(path, o)| {
            let name = crate::redact::scrubbed(path);
            if unsettled.contains(&(o.line.clone(), o.period.clone())) {
                seen.get(&name).map(|v| (name, v.clone()))
            } else {
                Some((name, o.version.clone()))
            }
        })
        .collect()
}

/// Queues a run for each due line and period whose period the line accepts.
async fn enqueue_due(app: &App, due: BTreeSet<(String, String)>) {
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
            Default::default(),
        )
        .await;
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
                if let Some(period) = inbox.period_of(&path, e.period) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn an_arrival_in_a_month_queues_the_period_containing_it() {
        let i = inbox_of("inbox/ensihoito/{period.months}/*.csv").unwrap();
        assert_eq!(i.prefix, "inbox/ensihoito/");
        assert_eq!(i.part, Some(PeriodPart::Months));
        let path = "inbox/ensihoito/2025-08/pirkanmaa.csv";
        for (kind, want) in [
            (ParamKind::Year, Some("2025")),
            (ParamKind::HalfYear, Some("2025-H2")),
            (ParamKind::Quarter, Some("2025-Q3")),
            (ParamKind::Month, Some("2025-08")),
            // A line whose period may be any period cannot tell which.
            (ParamKind::Period, None),
        ] {
            assert_eq!(i.period_of(path, Some(kind)).as_deref(), want, "{kind:?}");
        }
        // A folder that is no month, or a file the glob does not match, is not an arrival.
        assert_eq!(
            i.period_of("inbox/ensihoito/2025/a.csv", Some(ParamKind::Year)),
            None
        );
        assert_eq!(
            i.period_of("inbox/ensihoito/2025-13/a.csv", Some(ParamKind::Year)),
            None
        );
        assert_eq!(
            i.period_of("inbox/ensihoito/2025-08/a.txt", Some(ParamKind::Year)),
            None
        );
        // An upload for a month fills the month's folder, the run is the year's.
        let values = i.values("2025", "2025-08");
        assert_eq!(
            crate::store::fill(&i.template, &values),
            "inbox/ensihoito/2025-08/*.csv"
        );
        let q = inbox_of("inbox/x/{period.quarters}/{period.quarters}.csv").unwrap();
        assert_eq!(
            q.period_of("inbox/x/2025-Q3/2025-Q3.csv", Some(ParamKind::HalfYear))
                .as_deref(),
            Some("2025-H2")
        );
        // The period itself still wins where the location names it too.
        let both = inbox_of("inbox/x/{period}/{period.months}/*.csv").unwrap();
        assert_eq!(
            both.period_of("inbox/x/2025/2025-02/a.csv", Some(ParamKind::Year))
                .as_deref(),
            Some("2025")
        );
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
        assert_eq!(previous_period(ParamKind::HalfYear, t).unwrap(), "2024-H2");
        assert_eq!(previous_period(ParamKind::Date, t).unwrap(), "2025-01-04");
        let t = chrono::NaiveDate::from_ymd_opt(2025, 8, 15)
            .unwrap()
            .and_hms_opt(6, 0, 0)
            .unwrap();
        assert_eq!(previous_period(ParamKind::Month, t).unwrap(), "2025-07");
        assert_eq!(previous_period(ParamKind::Quarter, t).unwrap(), "2025-Q2");
        assert_eq!(previous_period(ParamKind::HalfYear, t).unwrap(), "2025-H1");
        assert!(previous_period(ParamKind::String, t).is_none());
        let t = chrono::NaiveDate::from_ymd_opt(2025, 6, 30)
            .unwrap()
            .and_hms_opt(23, 0, 0)
            .unwrap();
        assert_eq!(previous_period(ParamKind::HalfYear, t).unwrap(), "2024-H2");
    }
}
