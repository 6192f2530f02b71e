//! What each step kind does, one folder per kind: [`source`] reads objects through the
//! parser plugins, [`validate`] holds the rule kinds, [`harmonise`] maps values to shared
//! codes and derives columns, [`aggregate`] computes measures by dimensions (rates,
//! medians, distinct counts, cells rolled up to totals), [`publish`] shapes a published
//! table and [`sql`] runs a query. Each kind's planning is in its `plan.rs`, an
//! `impl Planner` block ([`crate::plan::Planner`]).

pub mod aggregate;
pub mod harmonise;
pub mod publish;
pub mod source;
pub mod sql;
pub mod validate;

/// What the step kinds' unit tests share: a line planned over empty inputs.
#[cfg(test)]
pub(crate) mod testing {
    use crate::diag::Diagnostic;
    use crate::plan::check::Checked;

    /// A line of one csv source `s` with `columns` and then `steps` (YAML, indented by two
    /// spaces under `steps:`), planned over empty inputs; or its diagnostics.
    pub(crate) fn checked(columns: &str, steps: &str) -> Result<Checked, Vec<Diagnostic>> {
        let text = format!(
            "line: t\ntitle: t\nparams: {{ period: {{ kind: month, default: \"2025-03\" }} }}\n\
             steps:\n  s: {{ source: {{ format: csv, location: x.csv, columns: {columns} }} }}\n{steps}"
        );
        let (line, _) = crate::line::load::load_text("t.yaml", std::path::Path::new("."), text)?;
        let params = crate::plan::check::bind_params(&line, None).expect("parameters");
        let values = crate::line::params::expression_values(&params);
        crate::plan::check::plan_all(line, vec![], &values, b"k")
    }

    /// The codes of the diagnostics, as `V…` text.
    pub(crate) fn codes(d: &[Diagnostic]) -> Vec<String> {
        d.iter().map(|d| format!("{:?}", d.code)).collect()
    }
}
