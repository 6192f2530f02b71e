//! `valtava check`: everything that can be known about a line without reading data.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use datafusion::datasource::{MemTable, TableProvider};
use datafusion::scalar::ScalarValue;

use crate::diag::{Code, Diagnostic};
use crate::line::codeset::Codeset;
use crate::line::load::Line;
use crate::line::params::{ParamValue, example_value, expression_values};
use crate::line::spec::StepSpec;
use crate::plan::{InputInfo, Planner, StepPlan, raw_source_schema};

/// A line whose every step planned.
pub struct Checked {
    pub line: Line,
    pub codesets: BTreeMap<String, Codeset>,
    pub plans: BTreeMap<String, StepPlan>,
    pub warnings: Vec<Diagnostic>,
}

/// Why parameter values cannot be bound: the plan layer's error, a run's `R001`.
#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    /// A value is given for a parameter the line does not declare.
    #[error("unknown parameter `{name}`{hint}; the line `{line}` has {declared}")]
    Unknown {
        name: String,
        /// ` (did you mean …)`, or empty.
        hint: String,
        line: String,
        /// The declared parameters, quoted, or `none`.
        declared: String,
    },
    /// A given value is not of the parameter's kind.
    #[error("parameter `{name}`: {source}")]
    Invalid {
        name: String,
        #[source]
        source: crate::line::LineError,
    },
    /// The line's default is not of the parameter's kind.
    #[error("default of `{name}`: {source}")]
    BadDefault {
        name: String,
        #[source]
        source: crate::line::LineError,
    },
    /// A parameter without a default is not given.
    #[error("parameter `{name}` is required: give `--param {name}=…`")]
    Required { name: String },
}

impl ParamError {
    /// Every parameter problem fails a run as `R001`.
    pub fn code(&self) -> crate::diag::RunCode {
        crate::diag::RunCode::Param
    }
}

/// Binds run-time parameter values (`name=value` pairs) against the line's declarations.
/// Without `given`, every parameter gets its default or an example of its kind.
pub fn bind_params(
    line: &Line,
    given: Option<&[(String, String)]>,
) -> Result<BTreeMap<String, ParamValue>, ParamError> {
    let mut out = BTreeMap::new();
    for (k, v) in given.unwrap_or_default() {
        let Some(spec) = line.spec.params.get(k.as_str()) else {
            let names: Vec<&str> = line.spec.params.keys().map(|k| k.value.as_str()).collect();
            return Err(ParamError::Unknown {
                name: k.clone(),
                hint: crate::diag::did_you_mean(k, names.iter().copied())
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default(),
                line: line.spec.line.value.clone(),
                declared: if names.is_empty() {
                    "none".into()
                } else {
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            });
        };
        let value = crate::line::params::parse_value(spec.kind.value, v).map_err(|source| {
            ParamError::Invalid {
                name: k.clone(),
                source,
            }
        })?;
        out.insert(k.clone(), value);
    }
    for (name, spec) in &line.spec.params {
        if out.contains_key(name.value.as_str()) {
            continue;
        }
        let v = match (&spec.default, given) {
            (Some(d), _) => {
                crate::line::params::parse_value(spec.kind.value, d).map_err(|source| {
                    ParamError::BadDefault {
                        name: name.value.clone(),
                        source,
                    }
                })?
            }
            (None, None) => example_value(spec.kind.value),
            (None, Some(_)) => {
                return Err(ParamError::Required {
                    name: name.value.clone(),
                });
            }
        };
        out.insert(name.value.clone(), v);
    }
    Ok(out)
}

/// Line files that give one line name: an error at each later file's `line:` (the daemon
/// would serve neither of them). One file named twice is one file.
pub fn shared_names(lines: &[&Line]) -> Vec<Diagnostic> {
    let mut first: BTreeMap<&str, &Line> = BTreeMap::new();
    let mut diags = Vec::new();
    for line in lines {
        let name = line.spec.line.value.as_str();
        match first.get(name) {
            None => {
                first.insert(name, line);
            }
            Some(other) if same_file(other, line) => {}
            Some(other) => diags.push(Diagnostic::error(
                Code::V104,
                &line.file,
                line.spec.line.at,
                format!(
                    "line `{name}` is also defined in {}; a daemon serves neither",
                    other.file
                ),
            )),
        }
    }
    diags
}

fn same_file(a: &Line, b: &Line) -> bool {
    let path = |l: &Line| {
        let p = Path::new(&l.file);
        p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
    };
    path(a) == path(b)
}

/// Loads and plans a line with example parameter values.
pub fn check(path: &Path) -> Result<Checked, Vec<Diagnostic>> {
    let (line, warnings) = crate::line::load::load(path)?;
    let params = bind_params(&line, None).map_err(|e| {
        vec![Diagnostic::error(
            Code::V302,
            &line.file,
            line.spec.line.at,
            e.to_string(),
        )]
    })?;
    plan_all(line, warnings, &expression_values(&params), b"check")
}

/// Plans every step over empty inputs, reporting every step's problems.
pub fn plan_all(
    line: Line,
    warnings: Vec<Diagnostic>,
    params: &BTreeMap<String, ScalarValue>,
    key: &[u8],
) -> Result<Checked, Vec<Diagnostic>> {
    let codesets = crate::line::codeset::load_all(&line)?;
    let tables: BTreeMap<String, Arc<MemTable>> = codesets
        .iter()
        .map(|(k, v)| (k.clone(), v.table.clone()))
        .collect();
    let planner = Planner {
        line: &line,
        state: crate::plan::session(Some(key), 1).state(),
        params: params.clone(),
        codesets: &tables,
        // Planned over empty inputs: the filter never sees a row.
        unique_filter: Some(crate::plan::FilterSize::fixed(crate::plan::filter_bytes(
            None,
        ))),
    };
    let mut plans: BTreeMap<String, StepPlan> = BTreeMap::new();
    let mut diags = Vec::new();
    for name in &line.dag.order {
        let step = crate::line::load::step(&line.spec, name);
        reserved_names(&line, step, &mut diags);
        let Some(inputs) = empty_inputs(name, step, &plans) else {
            continue; // an input failed to plan; its error is already reported
        };
        match planner.plan_step(name, &inputs) {
            Ok(p) => {
                plans.insert(name.clone(), p);
            }
            Err(d) => diags.extend(d),
        }
    }
    if !diags.is_empty() {
        crate::diag::sort(&mut diags);
        return Err(diags);
    }
    Ok(Checked {
        line,
        codesets,
        plans,
        warnings,
    })
}

/// Errors for the names a step declares or makes that start with `_`, kept for the engine.
fn reserved_names(line: &Line, step: &StepSpec, diags: &mut Vec<Diagnostic>) {
    if let Some(s) = &step.source {
        for (c, _) in &s.columns {
            if c.value.starts_with('_') {
                diags.push(Diagnostic::error(
                    Code::V108,
                    &line.file,
                    c.at,
                    format!(
                        "column `{}`: names starting with `_` are kept for the engine",
                        c.value
                    ),
                ));
            }
        }
    }
    // Names a step makes may not be the engine's own (`__r…` reasons, `__m…` metrics,
    // `_object`): a derive could otherwise rewrite a rule's reason or a report's counts.
    let made = step
        .harmonise
        .iter()
        .flat_map(|h| h.derive.keys().chain(h.rename.values()))
        .chain(
            step.aggregate
                .iter()
                .flat_map(|a| a.measures.keys().chain(a.rates.keys())),
        );
    for n in made.filter(|n| n.value.starts_with('_')) {
        diags.push(Diagnostic::error(
            Code::V108,
            &line.file,
            n.at,
            format!(
                "column `{}`: names starting with `_` are kept for the engine",
                n.value
            ),
        ));
    }
}

/// The empty inputs step `name` is planned over; `None` if one of them did not plan.
fn empty_inputs(
    name: &str,
    step: &StepSpec,
    plans: &BTreeMap<String, StepPlan>,
) -> Option<crate::plan::Inputs> {
    let mut inputs: BTreeMap<String, (Arc<dyn TableProvider>, InputInfo)> = BTreeMap::new();
    if let Some(s) = &step.source {
        let schema = raw_source_schema(s);
        inputs.insert(
            name.to_string(),
            (empty(schema.clone()), InputInfo::raw(schema)),
        );
    }
    let mut ready = true;
    for input in step.inputs() {
        match plans.get(input.value.as_str()) {
            Some(p) => {
                inputs.insert(input.value.clone(), (empty(p.output.clone()), p.info()));
            }
            None => ready = false,
        }
    }
    ready.then_some(inputs)
}

fn empty(schema: arrow::datatypes::SchemaRef) -> Arc<dyn TableProvider> {
    // A table with no partitions: planning sees the schema, nothing is read.
    Arc::new(MemTable::try_new(schema, vec![vec![]]).expect("an empty table of any schema"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(file: &str, name: &str) -> Line {
        let mini = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/lines/mini.yaml");
        let text = std::fs::read_to_string(mini)
            .unwrap()
            .replace("line: mini", &format!("line: {name}"));
        crate::line::load::load_text(file, Path::new("."), text)
            .map(|(l, _)| l)
            .unwrap_or_else(|d| panic!("{d:?}"))
    }

    #[test]
    fn a_line_name_given_by_two_files_is_an_error_at_the_later() {
        let (a, b, c) = (
            line("a.yaml", "x"),
            line("b.yaml", "x"),
            line("c.yaml", "y"),
        );
        let d = shared_names(&[&a, &c, &b]);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].code, Code::V104);
        assert_eq!(d[0].file, "b.yaml");
        assert!(
            d[0].message.contains("also defined in a.yaml"),
            "{}",
            d[0].message
        );
        assert_eq!(d[0].line, 3);
        assert!(shared_names(&[&a, &c]).is_empty());
        // The same file named twice is not two definitions.
        assert!(shared_names(&[&a, &line("a.yaml", "x")]).is_empty());
    }
}
