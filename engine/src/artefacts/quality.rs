//! Data quality: what every rule found, per rule, per category (Kahn's framework) and per
//! submitter, as JSON and as a self-contained HTML page a submitter can open offline.

use quick_xml::escape::escape as esc;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::trend::{self, Trend};
use crate::line::load::Line;
use crate::line::spec::{Category, Severity, Step};
use crate::plan::history::History;
use crate::plan::{Finding, FindingKind};
use crate::run::CheckLevel;
use crate::run::accounting::{DatasetOutcome, StepQuality, SubmitterQuality};

/// One rule in the quality report.
#[derive(Debug, Clone, Serialize)]
pub struct RuleQuality {
    pub step: String,
    pub id: String,
    pub description: Option<String>,
    pub category: Category,
    pub severity: Severity,
    pub violations: u64,
    /// Violations per row checked.
    pub share: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetOutcome>,
    /// For a dataset check: `passed`, or by its severity `warning` or `failure`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<CheckLevel>,
}

/// The quality report of a run.
#[derive(Debug, Clone, Serialize)]
pub struct QualityReport {
    pub run_id: String,
    pub line: String,
    pub title: String,
    pub params: BTreeMap<String, String>,
    pub status: crate::run::RunStatus,
    pub steps: BTreeMap<String, StepSummary>,
    pub rules: Vec<RuleQuality>,
    /// Violations per category, over all rules.
    pub categories: BTreeMap<String, u64>,
    /// Per step with a submitter column: submitter → rows, rejected, violations by rule.
    /// (A later run reads these rows and rejected rows back as its history.)
    pub submitters: BTreeMap<String, BTreeMap<String, SubmitterQuality>>,
    /// Per step with a submitter column: each submitter's rows and share quarantined over
    /// the line's earlier periods and this one.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub trend: BTreeMap<String, Trend>,
}

/// Counts of a step in the quality report.
#[derive(Debug, Clone, Serialize)]
pub struct StepSummary {
    pub rows_in: u64,
    pub rows_filtered: u64,
    pub rows_checked: u64,
    pub rows_quarantined: u64,
    pub reject_share: f64,
}

/// Builds the report from the run's counts and what the line's earlier periods counted.
pub fn report(
    line: &Line,
    run: &crate::run::RunReport,
    qualities: &BTreeMap<String, StepQuality>,
    history: &History,
) -> QualityReport {
    let mut rules = Rules::default();
    let mut steps = BTreeMap::new();
    let mut submitters = BTreeMap::new();
    for name in &run.step_order {
        let Some(s) = run.steps.get(name) else {
            continue;
        };
        let spec = crate::line::load::step(&line.spec, name);
        let checked = s.rows_in.saturating_sub(s.rows_filtered);
        let q = qualities.get(name).cloned().unwrap_or_default();
        // Steps that check rows (and may quarantine them) have a summary; the others pass
        // rows on or aggregate them.
        let checks = match spec.body() {
            Some(Step::Harmonise(_)) => {
                code_map_rules(name, &q, checked, &mut rules);
                true
            }
            Some(Step::Source(_)) => {
                source_rules(name, &q, checked, &mut rules);
                true
            }
            Some(Step::Validate(v)) => {
                validate_rules(name, v, &q, checked, &mut rules);
                if !q.by_submitter.is_empty() {
                    submitters.insert(name.clone(), q.by_submitter.clone());
                }
                true
            }
            Some(Step::Aggregate(_) | Step::Publish(_) | Step::Sql(_)) | None => false,
        };
        if checks {
            steps.insert(
                name.clone(),
                StepSummary {
                    rows_in: s.rows_in,
                    rows_filtered: s.rows_filtered,
                    rows_checked: checked,
                    rows_quarantined: s.rows_quarantined,
                    reject_share: share(checked, s.rows_quarantined),
                },
            );
        }
    }
    let period = run.params.get("period").map_or("–", String::as_str);
    let trend = trend::trends(period, &submitters, history);
    QualityReport {
        run_id: run.run_id.clone(),
        line: run.line.clone(),
        title: line.spec.title.fi().to_string(),
        params: run.params.clone(),
        status: run.status,
        steps,
        rules: rules.rules,
        categories: rules.categories,
        submitters,
        trend,
    }
}

/// The rules of a report in order, with their violations summed per category.
#[derive(Default)]
struct Rules {
    rules: Vec<RuleQuality>,
    categories: BTreeMap<String, u64>,
}

impl Rules {
    /// Adds a rule, counting its violations in its category.
    fn push(&mut self, rule: RuleQuality) {
        *self
            .categories
            .entry(category_name(rule.category).to_string())
            .or_default() += rule.violations;
        self.rules.push(rule);
    }
}

/// Violations per row checked (0 when no row was checked).
fn share(checked: u64, n: u64) -> f64 {
    if checked == 0 {
        0.0
    } else {
        n as f64 / checked as f64
    }
}

/// The code-set mappings of a harmonise step, as rules.
fn code_map_rules(name: &str, q: &StepQuality, checked: u64, out: &mut Rules) {
    for (id, n) in &q.violations {
        out.push(RuleQuality {
            step: name.to_string(),
            id: id.clone(),
            description: Some("the code maps through the code set".to_string()),
            category: Category::Conformance,
            severity: Severity::Reject,
            violations: *n,
            share: share(checked, *n),
            dataset: None,
            level: None,
        });
    }
}

/// The checks of reading a source (parse, required columns, types, local times), as rules.
fn source_rules(name: &str, q: &StepQuality, checked: u64, out: &mut Rules) {
    let mut ids: Vec<&String> = q.violations.keys().collect();
    ids.sort();
    for id in ids {
        let n = q.violations[id];
        out.push(RuleQuality {
            step: name.to_string(),
            id: id.clone(),
            description: Some(
                if id == "parse" {
                    "the row could be read as declared"
                } else if id.starts_with("required-") {
                    "a required column has a value"
                } else if id.starts_with("local-time-") {
                    "the local time is one instant of the line's time zone"
                } else {
                    "the value converts to the declared type"
                }
                .to_string(),
            ),
            category: if id.starts_with("required-") {
                Category::Completeness
            } else {
                Category::Conformance
            },
            severity: Severity::Reject,
            violations: n,
            share: share(checked, n),
            dataset: None,
            level: None,
        });
    }
}

/// The declared rules of a validate step, with their dataset outcomes.
fn validate_rules(
    name: &str,
    v: &crate::line::spec::ValidateSpec,
    q: &StepQuality,
    checked: u64,
    out: &mut Rules,
) {
    for r in &v.rules {
        let n = q.violations.get(r.id.value.as_str()).copied().unwrap_or(0);
        let dataset = q.dataset.get(r.id.value.as_str()).cloned();
        out.push(RuleQuality {
            step: name.to_string(),
            id: r.id.value.clone(),
            description: r.description.clone(),
            category: crate::steps::validate::category(r),
            severity: r.severity,
            violations: n,
            share: share(checked, n),
            level: dataset
                .as_ref()
                .map(|d| CheckLevel::of(r.severity, d.passed)),
            dataset,
        });
    }
}

fn category_name(c: Category) -> &'static str {
    match c {
        Category::Conformance => "conformance",
        Category::Completeness => "completeness",
        Category::Plausibility => "plausibility",
    }
}

fn pct(x: f64) -> String {
    format!("{:.2} %", x * 100.0)
}

/// The report as one HTML page with its styles inline: no scripts, no network.
pub fn html(r: &QualityReport) -> String {
    let mut h = String::new();
    html_head(&mut h, r);
    steps_table(&mut h, r);
    rules_table(&mut h, r);
    findings_table(&mut h, r);
    categories_table(&mut h, r);
    submitter_tables(&mut h, r);
    trend::html(&mut h, &r.trend);
    h.push_str("</body>\n</html>\n");
    h
}

/// The page head with its inline styles, the title and the run's line.
fn html_head(h: &mut String, r: &QualityReport) {
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"fi\">\n<head>\n<meta charset=\"utf-8\">\n<title>Laaturaportti – {line} – {run}</title>\n<style>\n\
         body{{font-family:system-ui,sans-serif;margin:2rem;color:#1b1b1b;max-width:70rem}}\n\
         h1{{font-size:1.5rem}} h2{{font-size:1.15rem;margin-top:2rem}}\n\
         table{{border-collapse:collapse;width:100%;margin:.5rem 0}}\n\
         th,td{{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}}\n\
         td.n{{text-align:right;font-variant-numeric:tabular-nums}}\n\
         .bar{{background:#c8102e;height:.6rem;display:inline-block}}\n\
         .ok{{color:#1a7f37}} .bad{{color:#c8102e;font-weight:600}} .warn{{color:#8a5a00;font-weight:600}}\n\
         svg.trend{{max-width:100%;height:auto;font-size:11px}} svg.trend .plot{{fill:#f4f4f4}}\n\
         svg.trend path{{fill:none;stroke-width:1.5}} svg.trend circle{{stroke:none}}\n\
         svg.trend path.rows{{stroke:#005eb8}} svg.trend circle.rows{{fill:#005eb8}}\n\
         svg.trend path.share{{stroke:#c8102e;stroke-dasharray:3 2}} svg.trend circle.share{{fill:#c8102e}}\n\
         .meta{{color:#555}}\n</style>\n</head>\n<body>\n",
        line = esc(&r.line),
        run = esc(&r.run_id)
    );
    let _ = writeln!(
        h,
        "<h1>Laaturaportti / Kvalitetsrapport / Quality report: {}</h1>",
        esc(&r.title)
    );
    let params: Vec<String> = r
        .params
        .iter()
        .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
        .collect();
    let _ = writeln!(
        h,
        "<p class=\"meta\">Linja <b>{}</b> · ajo {} · {} · tila <b class=\"{}\">{}</b></p>",
        esc(&r.line),
        esc(&r.run_id),
        params.join(", "),
        if r.status == crate::run::RunStatus::Succeeded {
            "ok"
        } else {
            "bad"
        },
        esc(r.status.as_str())
    );
}

/// The counts of each step.
fn steps_table(h: &mut String, r: &QualityReport) {
    h.push_str("<h2>Vaiheet / Steps</h2>\n<table><tr><th>vaihe</th><th>rivejä sisään</th><th>rajattu pois</th><th>tarkistettu</th><th>karanteenissa</th><th>osuus</th></tr>\n");
    for (name, s) in &r.steps {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(name),
            s.rows_in,
            s.rows_filtered,
            s.rows_checked,
            s.rows_quarantined,
            pct(s.reject_share)
        );
    }
}

/// Each rule with its violations and a bar of their share.
fn rules_table(h: &mut String, r: &QualityReport) {
    h.push_str("</table>\n<h2>Säännöt / Rules</h2>\n<table><tr><th>vaihe</th><th>sääntö</th><th>kuvaus</th><th>luokka</th><th>vakavuus</th><th>rikkeitä</th><th>osuus</th><th></th></tr>\n");
    for rule in &r.rules {
        let width = (rule.share * 300.0).clamp(0.0, 300.0);
        let desc = match &rule.dataset {
            Some(d) => format!(
                "{} <span class=\"{}\">({}: {}, {})</span>",
                esc(rule.description.as_deref().unwrap_or("")),
                if d.passed { "ok" } else { "bad" },
                if d.passed { "ok" } else { "ei täyty" },
                esc(&d.observed),
                esc(&d.expected)
            ),
            None => esc(rule.description.as_deref().unwrap_or("")).into_owned(),
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td><span class=\"bar\" style=\"width:{width:.0}px\"></span></td></tr>",
            esc(&rule.step),
            esc(&rule.id),
            desc,
            category_name(rule.category),
            match rule.severity {
                Severity::Reject => "reject",
                Severity::Warn => "warn",
                Severity::Fail => "fail",
            },
            rule.violations,
            pct(rule.share)
        );
    }
}

/// Every submitter a dataset check names, with its numbers, as a warning or a failure by
/// the rule's severity.
fn findings_table(h: &mut String, r: &QualityReport) {
    let named: Vec<(&RuleQuality, &Finding)> = r
        .rules
        .iter()
        .filter_map(|rule| rule.dataset.as_ref().map(|d| (rule, d)))
        .flat_map(|(rule, d)| d.findings.iter().map(move |f| (rule, f)))
        .collect();
    if named.is_empty() {
        return;
    }
    // Closes the rules' table, and leaves its own for the categories' to close.
    h.push_str("</table>\n<h2>Tarkistusten nimeämät toimittajat / Submitters named by the checks</h2>\n<table><tr><th>vaihe</th><th>sääntö</th><th>taso</th><th>toimittaja</th><th>havainto</th><th>rivejä</th><th>aiemmin</th><th>suhde</th></tr>\n");
    for (rule, f) in named {
        let level = rule.level.unwrap_or(CheckLevel::Warning);
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&rule.step),
            esc(&rule.id),
            if level == CheckLevel::Failure {
                "bad"
            } else {
                "warn"
            },
            level_name(level),
            esc(&f.submitter),
            finding_name(f.what),
            f.rows,
            f.previous.map_or("–".to_string(), |p| p.to_string()),
            f.ratio.map_or("–".to_string(), |x| format!("×{x:.2}"))
        );
    }
}

fn level_name(l: CheckLevel) -> &'static str {
    match l {
        CheckLevel::Passed => "ok",
        CheckLevel::Warning => "varoitus / warning",
        CheckLevel::Failure => "virhe / failure",
    }
}

fn finding_name(k: FindingKind) -> &'static str {
    match k {
        FindingKind::Missing => "puuttuu / missing",
        FindingKind::New => "uusi / new",
        FindingKind::Increased => "kasvoi / increased",
        FindingKind::Decreased => "väheni / decreased",
    }
}

/// Violations per category.
fn categories_table(h: &mut String, r: &QualityReport) {
    h.push_str("</table>\n<h2>Luokittain / By category</h2>\n<table><tr><th>luokka</th><th>rikkeitä</th></tr>\n");
    for (c, n) in &r.categories {
        let _ = writeln!(h, "<tr><td>{}</td><td class=\"n\">{n}</td></tr>", esc(c));
    }
    h.push_str("</table>\n");
}

/// For each step with a submitter column, each submitter's rows and violations.
fn submitter_tables(h: &mut String, r: &QualityReport) {
    for (step, subs) in &r.submitters {
        let rule_ids: Vec<&str> = r
            .rules
            .iter()
            .filter(|x| &x.step == step && x.dataset.is_none())
            .map(|x| x.id.as_str())
            .collect();
        let _ = writeln!(
            h,
            "<h2>Toimittajittain / By submitter ({})</h2>\n<table><tr><th>toimittaja</th><th>rivejä</th><th>karanteenissa</th><th>osuus</th>{}</tr>",
            esc(step),
            rule_ids
                .iter()
                .map(|i| format!("<th><code>{}</code></th>", esc(*i)))
                .collect::<String>()
        );
        for (who, q) in subs {
            let share = if q.rows == 0 {
                0.0
            } else {
                q.rejected as f64 / q.rows as f64
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
                esc(who),
                q.rows,
                q.rejected,
                pct(share)
            );
            for id in &rule_ids {
                let _ = write!(
                    h,
                    "<td class=\"n\">{}</td>",
                    q.violations.get(*id).copied().unwrap_or(0)
                );
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
    }
}
