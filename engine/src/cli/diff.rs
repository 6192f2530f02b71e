//! `valtava diff`: what a change to a line file does, for the reviewer of a pull request.
//!
//! Steps are compared by name, each part of a step by its key; every change is classified
//! (privacy, logic, rule, code set, output schema, metadata, schedule) and traced downstream
//! to the published datasets it can change. The output is Markdown in a stable order.
//!
//! Changes that weaken the protection of persons are classed `privacy` and listed first,
//! whatever else they are: a disclosure threshold lowered or switched off, a deciding count
//! removed or replaced, `personal` dropped from a column, pseudonymisation removed, an
//! identity-code rule removed or loosened to accept temporary codes, and an expression of a
//! step that leads to a publish step newly naming a personal column. (Whether such a column
//! can be published at all is `valtava check`'s decision, from the plans; the diff points
//! the reviewer at the change.)

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::line::spec::LineSpec;

/// The class of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    Privacy,
    OutputSchema,
    Rule,
    CodeSet,
    Logic,
    Schedule,
    Metadata,
}

impl Class {
    fn label(self) -> &'static str {
        match self {
            Class::Privacy => "privacy",
            Class::OutputSchema => "output schema",
            Class::Rule => "rule",
            Class::CodeSet => "code set",
            Class::Logic => "logic",
            Class::Schedule => "schedule",
            Class::Metadata => "metadata",
        }
    }
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Change {
    /// The step, or `(line)` for the line's own keys.
    pub step: String,
    pub class: Class,
    pub what: String,
    /// Published datasets the change can alter.
    pub affects: Vec<String>,
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn classify(kind: &str, key: &str) -> Class {
    match (kind, key) {
        ("validate", "rules" | "max_reject_share" | "filter" | "submitter") => Class::Rule,
        ("harmonise", "map") => Class::CodeSet,
        ("source", "columns") | ("aggregate", "by" | "measures" | "rates" | "totals" | "area") => {
            Class::OutputSchema
        }
        ("publish", "dataset" | "formats" | "dimensions" | "disclosure" | "csv") => {
            Class::OutputSchema
        }
        ("publish", "columns" | "labels") | (_, "description") => Class::Metadata,
        _ => Class::Logic,
    }
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Null => "nothing".into(),
        other => other.to_string(),
    };
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

/// The published datasets downstream of each step (in `spec`).
fn downstream(spec: &LineSpec) -> BTreeMap<String, BTreeSet<String>> {
    let mut readers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, step) in &spec.steps {
        for i in step.inputs() {
            readers
                .entry(i.value.clone())
                .or_default()
                .push(name.value.clone());
        }
    }
    let mut out = BTreeMap::new();
    for name in spec.steps.keys() {
        let mut seen = BTreeSet::new();
        let mut todo = vec![name.value.clone()];
        let mut datasets = BTreeSet::new();
        while let Some(s) = todo.pop() {
            if !seen.insert(s.clone()) {
                continue;
            }
            if let Some(p) = spec
                .steps
                .get(s.as_str())
                .and_then(|st| st.publish.as_ref())
            {
                datasets.insert(p.dataset.value.clone());
            }
            todo.extend(readers.get(&s).cloned().unwrap_or_default());
        }
        out.insert(name.value.clone(), datasets);
    }
    out
}

fn kind_of(step: &Value) -> Option<(&str, &Value)> {
    [
        "source",
        "validate",
        "harmonise",
        "aggregate",
        "publish",
        "sql",
    ]
    .into_iter()
    .find_map(|k| step.get(k).filter(|v| !v.is_null()).map(|v| (k, v)))
}

/// Published datasets downstream of each step, in the old and in the new version.
struct Reach {
    after: BTreeMap<String, BTreeSet<String>>,
    before: BTreeMap<String, BTreeSet<String>>,
}

impl Reach {
    /// The published datasets `step` feeds in either version.
    fn affects(&self, step: &str) -> Vec<String> {
        let mut d: BTreeSet<String> = self.after.get(step).cloned().unwrap_or_default();
        d.extend(self.before.get(step).cloned().unwrap_or_default());
        d.into_iter().collect()
    }

    /// Every published dataset of either version, sorted.
    fn all_datasets(&self) -> Vec<String> {
        self.after
            .values()
            .chain(self.before.values())
            .flatten()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

/// The changes from `old` to `new`.
pub fn diff(old: &LineSpec, new: &LineSpec) -> Vec<Change> {
    let mut out = Vec::new();
    let personal = personal_columns(old)
        .union(&personal_columns(new))
        .cloned()
        .collect::<BTreeSet<_>>();
    let reach = Reach {
        after: downstream(new),
        before: downstream(old),
    };
    line_key_changes(old, new, &reach.all_datasets(), &mut out);
    codeset_changes(old, new, &reach, &mut out);
    let steps: BTreeSet<String> = old
        .steps
        .keys()
        .chain(new.steps.keys())
        .map(|k| k.value.clone())
        .collect();
    for name in steps {
        let (a, b) = (
            old.steps.get(name.as_str()).map(to_value),
            new.steps.get(name.as_str()).map(to_value),
        );
        step_changes(&name, a, b, &reach, &personal, &mut out);
    }
    // Privacy first: the reviewer reads what weakens protection before anything else.
    out.sort_by(|a, b| (a.class != Class::Privacy, a).cmp(&(b.class != Class::Privacy, b)));
    out
}

/// The line's own keys: (key, class, old value, new value).
fn line_keys(old: &LineSpec, new: &LineSpec) -> [(&'static str, Class, Value, Value); 9] {
    [
        (
            "title",
            Class::Metadata,
            to_value(&old.title),
            to_value(&new.title),
        ),
        (
            "description",
            Class::Metadata,
            to_value(&old.description),
            to_value(&new.description),
        ),
        (
            "owner",
            Class::Metadata,
            to_value(&old.owner),
            to_value(&new.owner),
        ),
        (
            "contact",
            Class::Metadata,
            to_value(&old.contact),
            to_value(&new.contact),
        ),
        (
            "legal_basis",
            Class::Metadata,
            to_value(&old.legal_basis),
            to_value(&new.legal_basis),
        ),
        (
            "purpose",
            Class::Metadata,
            to_value(&old.purpose),
            to_value(&new.purpose),
        ),
        (
            "schedule",
            Class::Schedule,
            to_value(&old.schedule),
            to_value(&new.schedule),
        ),
        (
            "params",
            Class::Logic,
            to_value(&old.params),
            to_value(&new.params),
        ),
        (
            "timezone",
            Class::Logic,
            to_value(&old.timezone),
            to_value(&new.timezone),
        ),
    ]
}

/// Changes of the line's own keys; a logic change (params) can alter every dataset.
fn line_key_changes(
    old: &LineSpec,
    new: &LineSpec,
    all_datasets: &[String],
    out: &mut Vec<Change>,
) {
    for (key, class, a, b) in line_keys(old, new) {
        if a != b {
            let affects = if class == Class::Logic {
                all_datasets.to_vec()
            } else {
                vec![]
            };
            out.push(Change {
                step: "(line)".into(),
                class,
                what: format!("`{key}`: {} → {}", short(&a), short(&b)),
                affects,
            });
        }
    }
}

/// Code sets added, removed or changed, each affecting what the steps naming it feed.
fn codeset_changes(old: &LineSpec, new: &LineSpec, reach: &Reach, out: &mut Vec<Change>) {
    let old_sets = to_value(&old.codesets);
    let new_sets = to_value(&new.codesets);
    let names: BTreeSet<String> = [&old_sets, &new_sets]
        .iter()
        .filter_map(|v| v.as_object())
        .flat_map(|o| o.keys().cloned())
        .collect();
    for n in names {
        let (a, b) = (&old_sets[&n], &new_sets[&n]);
        if a != b {
            // Every step that names the code set, and what it feeds.
            let users: BTreeSet<String> = new
                .steps
                .iter()
                .chain(old.steps.iter())
                .filter(|(_, s)| to_value(s).to_string().contains(&format!("\"{n}\"")))
                .flat_map(|(name, _)| reach.affects(name))
                .collect();
            let what = match (a.is_null(), b.is_null()) {
                (true, _) => format!("code set `{n}` added"),
                (_, true) => format!("code set `{n}` removed"),
                _ => format!("code set `{n}` changed: {} → {}", short(a), short(b)),
            };
            out.push(Change {
                step: "(line)".into(),
                class: Class::CodeSet,
                what,
                affects: users.into_iter().collect(),
            });
        }
    }
}

/// Changes of the step `name`, given as JSON in the old (`a`) and new (`b`) version.
fn step_changes(
    name: &str,
    a: Option<Value>,
    b: Option<Value>,
    reach: &Reach,
    personal: &BTreeSet<String>,
    out: &mut Vec<Change>,
) {
    match (a, b) {
        (None, Some(b)) => out.push(Change {
            step: name.to_string(),
            class: Class::Logic,
            what: format!("step added ({})", kind_of(&b).map(|k| k.0).unwrap_or("?")),
            affects: reach.affects(name),
        }),
        (Some(a), None) => out.push(Change {
            step: name.to_string(),
            class: Class::Logic,
            what: format!("step removed ({})", kind_of(&a).map(|k| k.0).unwrap_or("?")),
            affects: reach.affects(name),
        }),
        (Some(a), Some(b)) if a != b => changed_step(name, &a, &b, reach, personal, out),
        _ => {}
    }
}

/// Changes of a step present, and different, in both versions.
fn changed_step(
    name: &str,
    a: &Value,
    b: &Value,
    reach: &Reach,
    personal: &BTreeSet<String>,
    out: &mut Vec<Change>,
) {
    if a["description"] != b["description"] {
        out.push(Change {
            step: name.to_string(),
            class: Class::Metadata,
            what: "description changed".into(),
            affects: vec![],
        });
    }
    match (kind_of(a), kind_of(b)) {
        (Some((ka, va)), Some((kb, vb))) if ka == kb => {
            let keys: BTreeSet<&String> = va
                .as_object()
                .into_iter()
                .chain(vb.as_object())
                .flat_map(|o| o.keys())
                .collect();
            let step = StepKind {
                name,
                kind: ka,
                reach,
                personal,
            };
            for key in keys {
                step.key_changes(key, &va[key.as_str()], &vb[key.as_str()], out);
            }
        }
        (Some((ka, _)), Some((kb, _))) => out.push(Change {
            step: name.to_string(),
            class: Class::Logic,
            what: format!("kind changed from {ka} to {kb}"),
            affects: reach.affects(name),
        }),
        _ => {}
    }
}

/// A step whose kind is the same in both versions, with what its changes are judged by.
struct StepKind<'a> {
    name: &'a str,
    kind: &'a str,
    reach: &'a Reach,
    personal: &'a BTreeSet<String>,
}

impl StepKind<'_> {
    /// Changes of one key of the step's body, from `x` to `y`.
    fn key_changes(&self, key: &str, x: &Value, y: &Value, out: &mut Vec<Change>) {
        let (name, ka) = (self.name, self.kind);
        if x == y {
            return;
        }
        let class = classify(ka, key);
        let affected = if class == Class::Metadata && ka != "publish" {
            vec![]
        } else {
            self.reach.affects(name)
        };
        if ka == "validate" && key == "rules" {
            rule_changes(name, x, y, &affected, out);
            return;
        }
        let weakened = weakening(ka, key, x, y, self.personal);
        if !weakened.is_empty() {
            out.extend(weakened.into_iter().map(|what| Change {
                step: name.to_string(),
                class: Class::Privacy,
                what,
                affects: self.reach.affects(name),
            }));
            if ka == "publish" && key == "disclosure" {
                return;
            }
        }
        let release = ka == "source" && key == "release"; // one change, read as a whole
        let text = |v: &Value| {
            if release {
                crate::line::release::describe(v)
            } else {
                short(v)
            }
        };
        if let (Some(xo), Some(yo), false) = (x.as_object(), y.as_object(), release) {
            // Maps (measures, columns, derive …): name each entry.
            for what in entry_changes(ka, key, xo, yo) {
                out.push(Change {
                    step: name.to_string(),
                    class,
                    what,
                    affects: affected.clone(),
                });
            }
            return;
        }
        out.push(Change {
            step: name.to_string(),
            class,
            what: format!("`{ka}.{key}`: {} → {}", text(x), text(y)),
            affects: affected,
        });
    }
}

/// What changed in the entries of the map `kind.key`, entry by entry in name order.
fn entry_changes(
    kind: &str,
    key: &str,
    xo: &serde_json::Map<String, Value>,
    yo: &serde_json::Map<String, Value>,
) -> Vec<String> {
    let entries: BTreeSet<&String> = xo.keys().chain(yo.keys()).collect();
    let mut out = Vec::new();
    for e in entries {
        let what = match (xo.get(e.as_str()), yo.get(e.as_str())) {
            (None, Some(v)) => format!("`{kind}.{key}.{e}` added: {}", short(v)),
            (Some(_), None) => format!("`{kind}.{key}.{e}` removed"),
            (Some(v), Some(w)) if v != w => {
                format!("`{kind}.{key}.{e}`: {} → {}", short(v), short(w))
            }
            _ => continue,
        };
        out.push(what);
    }
    out
}

/// Names of the columns declared personal in a line's sources.
fn personal_columns(spec: &LineSpec) -> BTreeSet<String> {
    spec.steps
        .values()
        .filter_map(|s| s.source.as_ref())
        .flat_map(|s| s.columns.iter())
        .filter(|(_, c)| c.personal)
        .map(|(n, _)| n.value.clone())
        .collect()
}

/// The ways a change of `kind.key` from `x` to `y` weakens the protection of persons.
fn weakening(
    kind: &str,
    key: &str,
    x: &Value,
    y: &Value,
    personal: &BTreeSet<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    match (kind, key) {
        ("publish", "disclosure") => {
            let min = |v: &Value| v.get("min_count").and_then(Value::as_i64).unwrap_or(5);
            let (a, b) = (min(x), min(y));
            if b < a {
                out.push(if b <= 1 {
                    format!("disclosure control switched off (min_count {a} → {b})")
                } else {
                    format!("disclosure threshold lowered: min_count {a} → {b}")
                });
            }
            if x.get("count") != y.get("count") && !x.get("count").is_none_or(Value::is_null) {
                out.push(format!(
                    "deciding count changed: {} → {}",
                    short(&x["count"]),
                    short(&y["count"])
                ));
            }
            for p in names(&x["persons"]).difference(&names(&y["persons"])) {
                out.push(format!(
                    "deciding count `{p}` removed from `disclosure.persons`"
                ));
            }
        }
        ("source", "columns") => {
            let flag = |v: &Value, c: &str| v[c]["personal"].as_bool().unwrap_or(false);
            for c in x.as_object().into_iter().flat_map(|o| o.keys()) {
                if flag(x, c) && !flag(y, c) {
                    out.push(format!("`personal` dropped from column `{c}`"));
                }
            }
        }
        ("harmonise", "pseudonymise") => {
            for c in names(x).difference(&names(y)) {
                out.push(format!("pseudonymisation of `{c}` removed"));
            }
        }
        ("aggregate", "measures") => {
            let distinct = |v: &Value, m: &str| {
                v[m].as_str()
                    .is_some_and(|t| t.to_ascii_lowercase().contains("count(distinct"))
            };
            for m in x.as_object().into_iter().flat_map(|o| o.keys()) {
                if distinct(x, m) && !distinct(y, m) {
                    out.push(format!(
                        "count of persons `{m}` removed (it decided disclosure)"
                    ));
                }
            }
        }
        _ => {}
    }
    if matches!(
        (kind, key),
        ("aggregate", "by" | "measures")
            | ("harmonise", "derive")
            | ("sql", "query")
            | ("publish", "dimensions")
    ) {
        for c in personal {
            if mentions(y, c) && !mentions(x, c) {
                out.push(format!("`{kind}.{key}` now names personal column `{c}`"));
            }
        }
    }
    out
}

/// The strings of a list (or of a map's keys).
fn names(v: &Value) -> BTreeSet<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Value::Object(o) => o.keys().cloned().collect(),
        _ => BTreeSet::new(),
    }
}

/// Whether a value names `column` as a whole word anywhere in its text.
fn mentions(v: &Value, column: &str) -> bool {
    let text = v.to_string();
    text.match_indices(column).any(|(i, _)| {
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !word(text[..i].chars().next_back()) && !word(text[i + column.len()..].chars().next())
    })
}

fn rule_changes(step: &str, old: &Value, new: &Value, affects: &[String], out: &mut Vec<Change>) {
    let by_id = |v: &Value| -> BTreeMap<String, Value> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r["id"].as_str()?.to_string(), r.clone())))
            .collect()
    };
    let (a, b) = (by_id(old), by_id(new));
    for id in a.keys().chain(b.keys()).collect::<BTreeSet<_>>() {
        let hetu = |r: &Value| !r["hetu"].is_null();
        let temporary = |r: &Value| r["temporary"].as_bool().unwrap_or(true);
        let privacy = match (a.get(id), b.get(id)) {
            (Some(x), None) if hetu(x) => Some(format!("identity-code rule `{id}` removed")),
            (Some(x), Some(y)) if hetu(x) && !hetu(y) => Some(format!(
                "identity-code rule `{id}` no longer checks identity codes"
            )),
            (Some(x), Some(y)) if hetu(x) && !temporary(x) && temporary(y) => Some(format!(
                "identity-code rule `{id}` now accepts temporary codes"
            )),
            _ => None,
        };
        if let Some(what) = privacy {
            out.push(Change {
                step: step.to_string(),
                class: Class::Privacy,
                what,
                affects: affects.to_vec(),
            });
            continue;
        }
        let what = match (a.get(id), b.get(id)) {
            (None, Some(_)) => format!("rule `{id}` added"),
            (Some(_), None) => format!("rule `{id}` removed"),
            (Some(x), Some(y)) if x != y => format!("rule `{id}` changed"),
            _ => continue,
        };
        out.push(Change {
            step: step.to_string(),
            class: Class::Rule,
            what,
            affects: affects.to_vec(),
        });
    }
}

/// Names as code, comma-separated.
fn ticked<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    let names: Vec<String> = names.into_iter().map(|d| format!("`{d}`")).collect();
    names.join(", ")
}

/// Markdown for a pull-request comment.
pub fn markdown(line: &str, changes: &[Change]) -> String {
    let mut out = String::new();
    if changes.is_empty() {
        let _ = writeln!(out, "### `{line}`: no changes that matter");
        return out;
    }
    let datasets: BTreeSet<&String> = changes.iter().flat_map(|c| &c.affects).collect();
    let _ = writeln!(
        out,
        "### `{line}`: {} change(s){}",
        changes.len(),
        if datasets.is_empty() {
            String::new()
        } else {
            format!("; published datasets affected: {}", ticked(datasets))
        }
    );
    let _ = writeln!(
        out,
        "\n| step | class | change | affects |\n|---|---|---|---|"
    );
    for c in changes {
        let affects = ticked(&c.affects);
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            c.step,
            c.class.label(),
            c.what.replace('|', "\\\\|"),
            affects
        );
    }
    out
}

/// `valtava diff`: prints the changes of each pair of line files (OLD and NEW, or each line
/// file changed since the git revision `git`); exit 2 for a usage error or a failing git, 1
/// if a version of a line file does not parse.
pub(super) fn run(files: &[std::path::PathBuf], git: Option<&str>) -> std::process::ExitCode {
    let pairs = match git {
        Some(rev) => pairs_from_git(rev, files),
        None => pairs_from_files(files),
    };
    let pairs = match pairs {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut status = std::process::ExitCode::SUCCESS;
    for (file, old, new) in pairs {
        if !print_changes(&file, &old, &new) {
            status = std::process::ExitCode::from(1);
        }
    }
    status
}

/// (file, old text, new text) of `files` at `rev` and in the working tree; without files,
/// of every line file changed since `rev`. A file missing on one side has empty text there.
fn pairs_from_git(
    rev: &str,
    files: &[std::path::PathBuf],
) -> Result<Vec<(String, String, String)>, std::process::ExitCode> {
    let files: Vec<String> = if files.is_empty() {
        changed_since(rev)?
    } else {
        files.iter().map(|f| f.display().to_string()).collect()
    };
    let mut pairs = Vec::new();
    for f in files {
        let old = std::process::Command::new("git")
            .args(["show", &format!("{rev}:{f}")])
            .output();
        let old = old
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let new = std::fs::read_to_string(&f).unwrap_or_default();
        pairs.push((f, old, new));
    }
    Ok(pairs)
}

/// The line files (`lines/*.yaml`) changed since `rev`, by `git diff`.
fn changed_since(rev: &str) -> Result<Vec<String>, std::process::ExitCode> {
    let out = std::process::Command::new("git")
        .args(["diff", "--name-only", rev, "--", "lines"])
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.ends_with(".yaml"))
            .map(String::from)
            .collect()),
        Ok(o) => {
            eprintln!(
                "error: git diff failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            Err(std::process::ExitCode::from(2))
        }
        Err(e) => {
            eprintln!("error: cannot run git: {e}");
            Err(std::process::ExitCode::from(2))
        }
    }
}

/// (NEW's name, OLD's text, NEW's text) of the two files OLD and NEW.
fn pairs_from_files(
    files: &[std::path::PathBuf],
) -> Result<Vec<(String, String, String)>, std::process::ExitCode> {
    let [old, new] = files else {
        super::common::error("give OLD and NEW line files, or --git REV");
        return Err(std::process::ExitCode::from(2));
    };
    let read = |p: &std::path::PathBuf| std::fs::read_to_string(p);
    match (read(old), read(new)) {
        (Ok(a), Ok(b)) => Ok(vec![(new.display().to_string(), a, b)]),
        (Err(e), _) | (_, Err(e)) => {
            super::common::error(&e);
            Err(std::process::ExitCode::from(2))
        }
    }
}

/// Prints the changes between two versions of `file` (empty text: the file is new or
/// removed); false if a version does not parse.
fn print_changes(file: &str, old: &str, new: &str) -> bool {
    let parse =
        |label: &str, text: &str| crate::line::load::parse(&format!("{file} ({label})"), text);
    let new_spec = if new.is_empty() {
        None
    } else {
        Some(parse("new", new))
    };
    let old_spec = if old.is_empty() {
        None
    } else {
        Some(parse("old", old))
    };
    match (old_spec, new_spec) {
        (Some(Ok(a)), Some(Ok(b))) => print!("{}", markdown(&b.line, &diff(&a, &b))),
        (None, Some(Ok(b))) => {
            println!("### `{}`: new line file `{file}`", b.line.value)
        }
        (Some(Ok(a)), None) => {
            println!("### `{}`: line file `{file}` removed", a.line.value)
        }
        (Some(Err(d)), _) | (_, Some(Err(d))) => {
            super::common::print_diags(&[d], super::DiagFormat::Human, &|_| None);
            return false;
        }
        (None, None) => {}
    }
    true
}
