//! Loading a line file: YAML → typed spec → structural checks → the line's graph.
//!
//! Checks that need no data and no schemas live here (kinds, names, inputs, cycles,
//! parameters, code-set references). Checks of expressions against column schemas are
//! made by the planner ([`crate::plan`]), which reports with the same diagnostics.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use sha2::{Digest, Sha256};

use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::line::spec::{
    LineSpec, Name, Pos, PublishSpec, RuleSpec, SourceSpec, StepKind, StepSpec, ValidateSpec,
};

/// A line file that parsed and passed the structural checks.
#[derive(Debug, Clone)]
pub struct Line {
    /// The file as named to the user.
    pub file: String,
    /// The folder of the file: relative code-set paths start here.
    pub dir: PathBuf,
    /// The file's text.
    pub text: String,
    /// sha256 of the file's bytes.
    pub hash: String,
    pub spec: LineSpec,
    pub dag: Dag,
}

/// The steps as a graph: an edge runs from an input to the step that reads it.
#[derive(Debug, Clone)]
pub struct Dag {
    pub graph: DiGraph<String, ()>,
    pub index: BTreeMap<String, NodeIndex>,
    /// Steps in a topological order that is stable: among ready steps, by name.
    pub order: Vec<String>,
}

impl Dag {
    /// The steps that read `step`, by name.
    pub fn consumers(&self, step: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .graph
            .neighbors_directed(self.index[step], petgraph::Direction::Outgoing)
            .map(|n| self.graph[n].clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The steps whose rows reach `step`, directly or through others (not `step` itself):
    /// what a count about one published table may include. Empty for an unknown step.
    pub fn upstream(&self, step: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<NodeIndex> = self.index.get(step).copied().into_iter().collect();
        while let Some(n) = todo.pop() {
            for m in self
                .graph
                .neighbors_directed(n, petgraph::Direction::Incoming)
            {
                if seen.insert(self.graph[m].clone()) {
                    todo.push(m);
                }
            }
        }
        seen
    }
}

/// Reads and checks a line file.
pub fn load(path: &Path) -> Result<(Line, Vec<Diagnostic>), Vec<Diagnostic>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic::error(
            Code::V006,
            &file,
            Pos::default(),
            format!("cannot read the line file: {e}"),
        )]
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_text(&file, &dir, text)
}

/// Checks a line from its text.
pub fn load_text(
    file: &str,
    dir: &Path,
    text: String,
) -> Result<(Line, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut spec = parse(file, &text).map_err(|d| vec![d])?;
    crate::line::release::add_period_column(&mut spec);
    let mut diags = Vec::new();
    check_structure(file, &text, &spec, &mut diags);
    let dag = build_dag(file, &spec, &mut diags);
    let warnings: Vec<Diagnostic> = diags
        .iter()
        .filter(|d| d.level == crate::diag::Level::Warning)
        .cloned()
        .collect();
    if diags.iter().any(|d| d.level == crate::diag::Level::Error) {
        crate::diag::sort(&mut diags);
        return Err(diags);
    }
    let Some(dag) = dag else {
        return Err(diags);
    };
    let hash = hex::encode(Sha256::digest(text.as_bytes()));
    Ok((
        Line {
            file: file.to_string(),
            dir: dir.to_path_buf(),
            text,
            hash,
            spec,
            dag,
        },
        warnings,
    ))
}

/// YAML → spec, with serde errors turned into diagnostics.
pub fn parse(file: &str, text: &str) -> Result<LineSpec, Diagnostic> {
    let err = match serde_saphyr::from_str::<LineSpec>(text) {
        Ok(spec) => return Ok(spec),
        Err(e) => e,
    };
    let at = err
        .location()
        .map(|l| Pos {
            line: l.line() as u32,
            col: l.column() as u32,
            offset: 0,
        })
        .unwrap_or_default();
    let shown = err.to_string();
    let first = shown.lines().next().unwrap_or_default();
    let message = match first
        .find(": line ")
        .and_then(|i| first[i..].find(": ").map(|j| i + j))
    {
        Some(i) => {
            // "error: line 5 column 3: <message>"
            let rest = &first[i + 2..];
            match rest.find(": ") {
                Some(j) if rest.starts_with("line ") => rest[j + 2..].to_string(),
                _ => rest.to_string(),
            }
        }
        None => first.trim_start_matches("error: ").to_string(),
    };
    // Is the text valid YAML at all? If not, it is a syntax error, whatever serde said.
    if !message.starts_with("duplicate mapping key")
        && serde_saphyr::from_str::<serde::de::IgnoredAny>(text).is_err()
    {
        return Err(Diagnostic::error(Code::V001, file, at, message));
    }
    Err(classify(file, at, &message))
}

fn classify(file: &str, at: Pos, message: &str) -> Diagnostic {
    let listed = |m: &str| -> Vec<String> {
        m.split("expected one of ")
            .nth(1)
            .map(|l| {
                l.split(", ")
                    .map(|s| s.trim_matches('`').trim().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let quoted = |m: &str| m.split('`').nth(1).unwrap_or_default().to_string();
    if message.starts_with("unknown field") {
        let word = quoted(message);
        let options = listed(message);
        let d = Diagnostic::error(
            Code::V002,
            file,
            at,
            format!(
                "unknown key `{word}`; expected one of {}",
                options.join(", ")
            ),
        );
        return match did_you_mean(&word, options.iter().map(String::as_str)) {
            Some(h) => d.with_hint(h),
            None => d,
        };
    }
    if message.starts_with("unknown variant") {
        let word = quoted(message);
        let options = listed(message);
        let d = Diagnostic::error(
            Code::V003,
            file,
            at,
            format!(
                "unknown value `{word}`; expected one of {}",
                options.join(", ")
            ),
        );
        return match did_you_mean(&word, options.iter().map(String::as_str)) {
            Some(h) => d.with_hint(h),
            None => d,
        };
    }
    if message.starts_with("missing field") {
        return Diagnostic::error(
            Code::V004,
            file,
            at,
            format!("missing key `{}`", quoted(message)),
        );
    }
    if message.starts_with("duplicate mapping key") {
        let key = message
            .trim_start_matches("duplicate mapping key: ")
            .split(", set ")
            .next()
            .unwrap_or_default();
        return Diagnostic::error(Code::V005, file, at, format!("`{key}` is given twice"))
            .with_hint("each key of a map may appear once; rename or merge the two");
    }
    let friendly = match message {
        "expected sequence start" => "expected a list here".to_string(),
        "expected mapping start" => "expected a map (`key: value` pairs) here".to_string(),
        m => m.to_string(),
    };
    Diagnostic::error(Code::V003, file, at, friendly)
}

fn is_machine_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Checks that need no data and no schemas, pushing diagnostics in a fixed order: the
/// line's header, then each step (its name and kind, inputs, rules, maps, publish and
/// source), then the parameters.
fn check_structure(file: &str, text: &str, spec: &LineSpec, diags: &mut Vec<Diagnostic>) {
    check_header(file, spec, diags);
    let declared = Declared::new(file, text, spec);
    if let Some(calendar) = &spec.calendar {
        declared.codeset_ref(&calendar.holidays, diags);
    }
    let mut datasets: BTreeMap<&str, Pos> = BTreeMap::new();
    for (name, step) in &spec.steps {
        declared.check_step_name(name, step, diags);
        declared.check_inputs(name, step, diags);
        if let Some(v) = &step.validate {
            declared.check_validate(name, v, diags);
        }
        if let Some(h) = &step.harmonise {
            for m in &h.map {
                declared.codeset_ref(&m.codeset, diags);
            }
        }
        if let Some(p) = &step.publish {
            declared.check_publish(p, &mut datasets, diags);
        }
        if let Some(s) = &step.source {
            if crate::line::release::check_form(file, name, s, diags) {
                declared.check_source_format(s, diags);
                declared.check_location(s, diags);
            }
            if let Some(r) = &s.release {
                crate::line::release::check_release(file, spec, r, diags);
            }
            crate::line::zone::check_local_columns(file, s, diags);
            crate::line::zone::check_formats(file, s, diags);
        }
    }
    check_params(file, spec, diags);
}

/// The line's own settings: its name, limits, schedule and time zone.
fn check_header(file: &str, spec: &LineSpec, diags: &mut Vec<Diagnostic>) {
    crate::line::zone::check_timezone(file, spec, diags);
    if !is_machine_name(&spec.line) {
        diags.push(Diagnostic::error(
            Code::V108,
            file,
            spec.line.at,
            format!(
                "line name `{}` must be lower-case letters, digits and `_`, starting with a letter",
                spec.line.value
            ),
        ));
    }
    for (name, value) in spec.limits.settings() {
        if let Some(v) = value.as_ref().filter(|v| v.value == 0) {
            diags.push(Diagnostic::error(
                Code::V003,
                file,
                v.at,
                format!("limits.{name} must be at least 1"),
            ));
        }
    }
    if let Some(status) = &spec.release_status
        && status.value == crate::line::spec::ReleaseStatus::Withdrawn
    {
        diags.push(Diagnostic::error(
            Code::V003,
            file,
            status.at,
            "release_status is `preliminary` or `final`: an operator withdraws a release",
        ));
    }
    if let Some(schedule) = &spec.schedule
        && let Err(e) = schedule.value.parse::<crate::line::cron::Schedule>()
    {
        diags.push(
            Diagnostic::error(Code::V003, file, schedule.at, e.message).with_hint(
                "five fields: minute hour day-of-month month day-of-week, e.g. `0 6 5 * *`",
            ),
        );
    }
}

/// The parameters: their names first, then their defaults.
fn check_params(file: &str, spec: &LineSpec, diags: &mut Vec<Diagnostic>) {
    for (name, _) in &spec.params {
        if !is_machine_name(name) {
            diags.push(Diagnostic::error(
                Code::V108,
                file,
                name.at,
                format!(
                    "parameter name `{}` must be lower-case letters, digits and `_`",
                    name.value
                ),
            ));
        }
    }
    for (name, p) in &spec.params {
        if let Some(d) = &p.default
            && let Err(e) = crate::line::params::parse_value(p.kind.value, d)
        {
            diags.push(Diagnostic::error(
                Code::V302,
                file,
                d.at,
                format!("default of parameter `{}`: {e}", name.value),
            ));
        }
    }
}

/// What a line declares (steps, code sets, parameters), which its steps' references are
/// checked against.
struct Declared<'a> {
    file: &'a str,
    text: &'a str,
    spec: &'a LineSpec,
    step_names: Vec<&'a str>,
    codesets: Vec<&'a str>,
    params: Vec<&'a str>,
}

impl<'a> Declared<'a> {
    /// The names declared in `spec`.
    fn new(file: &'a str, text: &'a str, spec: &'a LineSpec) -> Self {
        Self {
            file,
            text,
            spec,
            step_names: spec.steps.keys().map(|k| k.value.as_str()).collect(),
            codesets: spec.codesets.keys().map(|k| k.value.as_str()).collect(),
            params: spec.params.keys().map(|k| k.value.as_str()).collect(),
        }
    }

    /// A step's name is a machine name and the step is exactly one kind of step.
    fn check_step_name(&self, name: &Name, step: &StepSpec, diags: &mut Vec<Diagnostic>) {
        let file = self.file;
        if !is_machine_name(name) {
            diags.push(Diagnostic::error(
                Code::V108,
                file,
                name.at,
                format!("step name `{}` must be lower-case letters, digits and `_`, starting with a letter", name.value),
            ));
        }
        let kinds = step.kinds();
        if kinds.len() != 1 {
            let found = if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            };
            diags.push(
                Diagnostic::error(
                    Code::V101,
                    file,
                    name.at,
                    format!(
                        "step `{}` must be exactly one kind of step; found {found}",
                        name.value
                    ),
                )
                .with_hint(format!("give one of {}", StepKind::ALL.join(", "))),
            );
        }
    }

    /// Each input of a step is another step of the line, and one with rows to read.
    fn check_inputs(&self, name: &Name, step: &StepSpec, diags: &mut Vec<Diagnostic>) {
        let file = self.file;
        for input in step.inputs() {
            if !self.step_names.contains(&input.value.as_str()) {
                let mut d = Diagnostic::error(
                    Code::V102,
                    file,
                    input.at,
                    format!(
                        "step `{}` reads `{}`, which is not a step of this line",
                        name.value, input.value
                    ),
                );
                if let Some(h) = did_you_mean(input, self.step_names.iter().copied()) {
                    d = d.with_hint(h);
                }
                diags.push(d);
            } else if input.value == name.value {
                diags.push(Diagnostic::error(
                    Code::V103,
                    file,
                    input.at,
                    format!("step `{}` reads itself", name.value),
                ));
            } else if let Some(s) = self.spec.steps.get(input.value.as_str())
                && s.publish.is_some()
            {
                diags.push(Diagnostic::error(
                    Code::V105,
                    file,
                    input.at,
                    format!(
                        "`{}` is a publish step; it has no rows to read",
                        input.value
                    ),
                ));
            }
        }
    }

    /// A reference to a code set names one declared under `codesets:`.
    fn codeset_ref(&self, n: &Name, diags: &mut Vec<Diagnostic>) {
        if !self.codesets.contains(&n.value.as_str()) {
            let mut d = Diagnostic::error(
                Code::V303,
                self.file,
                n.at,
                format!("unknown code set `{}`", n.value),
            );
            d = match did_you_mean(n, self.codesets.iter().copied()) {
                Some(h) => d.with_hint(h),
                None => d.with_hint("declare it under `codesets:`"),
            };
            diags.push(d);
        }
    }

    /// A validate step's rules (unique ids, one check each, known code sets, a `period`
    /// parameter where a rule needs one) and its reject share.
    fn check_validate(&self, name: &Name, v: &ValidateSpec, diags: &mut Vec<Diagnostic>) {
        let file = self.file;
        let mut ids: BTreeSet<&str> = BTreeSet::new();
        for rule in &v.rules {
            if !ids.insert(&rule.id) {
                diags.push(Diagnostic::error(
                    Code::V104,
                    file,
                    rule.id.at,
                    format!(
                        "rule id `{}` is used twice in step `{}`",
                        rule.id.value, name.value
                    ),
                ));
            }
            self.check_rule(rule, diags);
        }
        if let Some(s) = &v.max_reject_share
            && !(0.0..=1.0).contains(&s.value)
        {
            diags.push(Diagnostic::error(
                Code::V003,
                file,
                s.at,
                "max_reject_share is a share from 0 to 1",
            ));
        }
    }

    /// One rule gives exactly one check, whose code set and period parameter exist.
    fn check_rule(&self, rule: &RuleSpec, diags: &mut Vec<Diagnostic>) {
        let file = self.file;
        let n = crate::steps::validate::check_count(rule);
        if n != 1 {
            diags.push(
                Diagnostic::error(
                    Code::V101,
                    file,
                    rule.id.at,
                    format!(
                        "rule `{}` must give exactly one check; it gives {n}",
                        rule.id.value
                    ),
                )
                .with_hint(format!(
                    "one of {}",
                    crate::steps::validate::CHECKS.join(", ")
                )),
            );
        }
        let kind = rule.kind();
        if let Some(c) = kind.and_then(|k| k.codeset()) {
            self.codeset_ref(c, diags);
        }
        if kind.is_some_and(|k| k.needs_period()) && !self.params.contains(&"period") {
            diags.push(Diagnostic::error(
                Code::V301,
                file,
                rule.id.at,
                format!(
                    "rule `{}` checks the period, but the line has no parameter `period`",
                    rule.id.value
                ),
            ));
        }
    }

    /// A publish step's label code sets and its dataset name, published once per line
    /// (`datasets` holds those published by earlier steps).
    fn check_publish(
        &self,
        p: &'a PublishSpec,
        datasets: &mut BTreeMap<&'a str, Pos>,
        diags: &mut Vec<Diagnostic>,
    ) {
        let file = self.file;
        for l in p.labels.values() {
            self.codeset_ref(&l.codeset, diags);
        }
        if !is_machine_name(&p.dataset) {
            diags.push(Diagnostic::error(
                Code::V108,
                file,
                p.dataset.at,
                format!(
                    "dataset name `{}` must be lower-case letters, digits and `_`",
                    p.dataset.value
                ),
            ));
        }
        if let Some(prev) = datasets.insert(&p.dataset, p.dataset.at) {
            diags.push(Diagnostic::error(
                Code::V104,
                file,
                p.dataset.at,
                format!(
                    "dataset `{}` is published twice (first at line {})",
                    p.dataset.value, prev.line
                ),
            ));
        }
    }

    /// A source's format is one Valtava reads, and its options are ones that format takes.
    fn check_source_format(&self, s: &SourceSpec, diags: &mut Vec<Diagnostic>) {
        let file = self.file;
        match crate::parsers::get(&s.format) {
            None => {
                let formats = crate::parsers::formats();
                let mut d = Diagnostic::error(
                    Code::V106,
                    file,
                    s.format.at,
                    format!(
                        "unknown format `{}`; Valtava reads {}",
                        s.format.value,
                        formats.join(", ")
                    ),
                );
                if let Some(h) = did_you_mean(&s.format, formats.iter().copied()) {
                    d = d.with_hint(h);
                }
                diags.push(d);
            }
            Some(parser) => {
                let options = s
                    .options
                    .as_ref()
                    .map(|o| o.value.clone())
                    .unwrap_or(serde_json::Value::Null);
                if let Err(e) = parser.check_options(&options) {
                    let at = s.options.as_ref().map(|o| o.at).unwrap_or(s.format.at);
                    // Point at the offending key when the message names one.
                    let word = e.split('`').nth(1).unwrap_or_default();
                    let at = crate::diag::locate_in(self.text, at, word);
                    let e = e.split(" at line ").next().unwrap_or(&e);
                    let mut d = Diagnostic::error(
                        Code::V107,
                        file,
                        at,
                        format!("options of format `{}`: {e}", s.format.value),
                    );
                    if let Some(h) = crate::diag::suggest_field(e) {
                        d = d.with_hint(h);
                    }
                    diags.push(d);
                }
            }
        }
    }

    /// Each `{name}` placeholder of a source's location is a parameter of the line, and a
    /// `{name.months}` or `{name.quarters}` one of a kind that has them.
    fn check_location(&self, s: &SourceSpec, diags: &mut Vec<Diagnostic>) {
        let params = &self.params;
        for placeholder in template_names(&s.location) {
            let at =
                crate::diag::locate_in(self.text, s.location.at, &format!("{{{placeholder}}}"));
            let (name, part) = crate::line::params::placeholder(&placeholder);
            if let Some(spec) = self.spec.params.get(name) {
                if let Some(part) = part {
                    diags.extend(crate::line::params::part_diagnostic(
                        self.file,
                        at,
                        name,
                        part,
                        spec.kind.value,
                    ));
                }
                continue;
            }
            let mut d = Diagnostic::error(
                Code::V301,
                self.file,
                at,
                format!(
                    "location uses `{{{placeholder}}}`, but the line has no parameter `{name}`"
                ),
            );
            if let Some(h) = did_you_mean(name, params.iter().copied()) {
                d = d.with_hint(h);
            }
            diags.push(d);
        }
    }
}

/// The `{name}` placeholders of a location template.
pub fn template_names(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        match after.find('}') {
            Some(j) => {
                out.push(after[..j].to_string());
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    out
}

/// The line's graph of steps, checked to have no cycle, with a stable order of its steps.
fn build_dag(file: &str, spec: &LineSpec, diags: &mut Vec<Diagnostic>) -> Option<Dag> {
    let (graph, index) = step_graph(spec);
    if let Some(d) = cycle(file, spec, &graph) {
        diags.push(d);
        return None;
    }
    let order = stable_order(&graph, &index);
    Some(Dag {
        graph,
        index,
        order,
    })
}

/// The steps as nodes, with an edge from each input to the step that reads it (inputs that
/// are no step, or the step itself, are reported elsewhere and left out).
fn step_graph(spec: &LineSpec) -> (DiGraph<String, ()>, BTreeMap<String, NodeIndex>) {
    let mut graph = DiGraph::new();
    let mut index = BTreeMap::new();
    for name in spec.steps.keys() {
        index.insert(name.value.clone(), graph.add_node(name.value.clone()));
    }
    for (name, step) in &spec.steps {
        for input in step.inputs() {
            if let Some(&from) = index.get(input.value.as_str())
                && input.value != name.value
            {
                graph.add_edge(from, index[name.value.as_str()], ());
            }
        }
    }
    (graph, index)
}

/// The error for the first cycle of steps that read each other, if there is one.
fn cycle(file: &str, spec: &LineSpec, graph: &DiGraph<String, ()>) -> Option<Diagnostic> {
    let scc = tarjan_scc(graph).into_iter().find(|scc| scc.len() > 1)?;
    let mut names: Vec<&str> = scc.iter().map(|&n| graph[n].as_str()).collect();
    names.sort();
    let first = spec
        .steps
        .keys()
        .filter(|k| names.contains(&k.value.as_str()))
        .map(|k| k.at)
        .min()
        .unwrap_or_default();
    Some(
        Diagnostic::error(
            Code::V103,
            file,
            first,
            format!(
                "the steps {} read each other in a cycle",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with_hint("a line is a directed acyclic graph: break the cycle by changing an `input`"),
    )
}

/// A topological order of an acyclic graph that is stable: Kahn's algorithm with a sorted
/// ready set, so among ready steps the first by name comes first.
fn stable_order(graph: &DiGraph<String, ()>, index: &BTreeMap<String, NodeIndex>) -> Vec<String> {
    let mut indegree: BTreeMap<String, usize> = index
        .iter()
        .map(|(n, &i)| {
            (
                n.clone(),
                graph
                    .neighbors_directed(i, petgraph::Direction::Incoming)
                    .count(),
            )
        })
        .collect();
    let mut ready: BTreeSet<String> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(n, _)| n.clone())
        .collect();
    let mut order = Vec::new();
    while let Some(n) = ready.pop_first() {
        for m in graph.neighbors_directed(index[&n], petgraph::Direction::Outgoing) {
            let name = &graph[m];
            if let Some(d) = indegree.get_mut(name) {
                *d -= 1;
                if *d == 0 {
                    ready.insert(name.clone());
                }
            }
        }
        order.push(n);
    }
    order
}

/// The step spec of a name known to exist.
pub fn step<'a>(spec: &'a LineSpec, name: &str) -> &'a StepSpec {
    &spec.steps[name]
}
