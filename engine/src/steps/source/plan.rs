//! Planning a source step: declared columns typed (by their `format` where they declare
//! one), with a rule column per required or mistyped value, and per local time that names
//! no one instant.

use arrow::datatypes::DataType;
use datafusion::common::{Column, DataFusionError};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, ScalarUDF, col, lit, when};
use datafusion::scalar::ScalarValue;

use crate::diag::Code;
use crate::functions::formats::{BLANK, FormatRead, Parse};
use crate::functions::local_time::LocalTime;
use crate::line::spec::{
    ColumnFormat, ColumnSpec, ColumnType, Name, Severity, SourceSpec, StepKind,
};
use crate::line::spec::{Pos, Sp};
use crate::plan::RULE_PREFIX;
use crate::plan::{Diags, OBJECT_COLUMN, Planner, ROW_COLUMN, StepPlan, TapRule, column_type};
use crate::plan::{Inputs, PlanStep};

/// A declared column typed, with its rule columns (expression and rule).
struct Typed {
    value: Expr,
    checks: Vec<(Expr, TapRule)>,
}

impl Planner<'_> {
    pub(crate) fn plan_source(
        &self,
        s: &SourceSpec,
        b: LogicalPlanBuilder,
    ) -> Result<StepPlan, Diags> {
        let mut exprs = Vec::new();
        let mut rules = Vec::new();
        for (i, (name, c)) in s.columns.iter().enumerate() {
            let typed = self.source_column(i, name, c)?;
            exprs.push(typed.value.alias(name.value.as_str()));
            for (check, rule) in typed.checks {
                exprs.push(check.alias(&rule.column));
                rules.push(rule);
            }
        }
        exprs.push(col(OBJECT_COLUMN));
        exprs.push(col(ROW_COLUMN));
        let plan = b
            .project(exprs)
            .and_then(|b| b.build())
            .map_err(|e| vec![self.diag(Code::V205, s.location.at, e.to_string())])?;
        Ok(self.finish(StepKind::Source, plan, rules, vec![], None))
    }

    /// Column `i`, `name`, typed: a required column without a value breaks the rule
    /// `required-<name>`, a value that does not read as the type `type-<name>`, and a local
    /// time that names no one instant `local-time-<name>`. A reason names the column and
    /// what was expected, never the value.
    fn source_column(&self, i: usize, name: &Name, c: &ColumnSpec) -> Result<Typed, Diags> {
        let t = column_type(c, &self.line.spec);
        let raw = col(Column::from_name(name.value.as_str()));
        let local = c.local.then(|| self.local_time(&raw, c));
        let parse = format_parse(c);
        let value = if t == DataType::Utf8 {
            raw.clone()
        } else if let Some((instant, _)) = &local {
            instant.clone()
        } else if let Some(parse) = parse {
            ScalarUDF::new_from_impl(FormatRead::new(parse)).call(vec![raw.clone()])
        } else if c.r#type.value == ColumnType::Timestamp {
            // TRY_CAST, faster on the common forms.
            ScalarUDF::new_from_impl(crate::functions::TextTimestamp::default())
                .call(vec![raw.clone()])
        } else if c.r#type.value == ColumnType::Date && t == DataType::Date32 {
            ScalarUDF::new_from_impl(crate::functions::TextTimestamp::date())
                .call(vec![raw.clone()])
        } else {
            Expr::TryCast(datafusion::logical_expr::TryCast::new(
                Box::new(raw.clone()),
                t.clone(),
            ))
        };
        let null = || lit(ScalarValue::Utf8(None));
        let err = |e: DataFusionError| vec![self.diag(Code::V205, name.at, e.to_string())];
        let rule = |suffix: &str, id: String| TapRule {
            column: format!("{RULE_PREFIX}{i}{suffix}"),
            id,
            severity: Severity::Reject,
        };
        let mut checks = Vec::new();
        if c.required {
            let r = when(
                raw.clone().is_null(),
                lit(format!("column `{}` is required", name.value)),
            )
            .otherwise(null())
            .map_err(err)?;
            checks.push((r, rule("q", format!("required-{}", name.value))));
        }
        if t != DataType::Utf8 {
            let what = lit(format!(
                "column `{}`: not a {}{}",
                name.value,
                c.r#type.value.as_str(),
                match (&c.format, parse) {
                    (Some(f), Some(_)) => format!(" in the `{}` format", f.value.as_str()),
                    _ => String::new(),
                }
            ));
            // A local time that names no instant is a timestamp all the same: its own rule.
            let what = match &local {
                Some((_, problem)) => when(problem.clone().is_null(), what)
                    .otherwise(null())
                    .map_err(err)?,
                None => what,
            };
            let mut unread = raw.clone().is_not_null().and(value.clone().is_null());
            if parse.is_some() {
                // A formatted text of spaces alone is empty, not unread.
                let trimmed = datafusion::functions::expr_fn::btrim(vec![raw.clone(), lit(BLANK)]);
                unread = unread.and(trimmed.not_eq(lit("")));
            }
            let r = when(unread.clone(), what).otherwise(null()).map_err(err)?;
            checks.push((r, rule("t", format!("type-{}", name.value))));
            if let Some((_, problem)) = &local {
                let why = self.local_time_reason(name, problem).map_err(err)?;
                let r = when(unread, why).otherwise(null()).map_err(err)?;
                checks.push((r, rule("l", format!("local-time-{}", name.value))));
            }
        }
        Ok(Typed { value, checks })
    }

    /// A local time column read as instants in the line's zone, and why a value names no
    /// one instant (`nonexistent`, `ambiguous` or null).
    fn local_time(&self, raw: &Expr, c: &ColumnSpec) -> (Expr, Expr) {
        let policy = c.ambiguous.as_ref().map(|a| a.value).unwrap_or_default();
        let args = vec![
            raw.clone(),
            lit(self.line.spec.zone()),
            lit(policy.as_str()),
        ];
        (
            ScalarUDF::new_from_impl(LocalTime::instant()).call(args.clone()),
            ScalarUDF::new_from_impl(LocalTime::problem()).call(args),
        )
    }

    /// The reason of the rule `local-time-<name>`, from the problem's word: a stable code
    /// first, then what happened, with the column and the zone (never the value).
    fn local_time_reason(&self, name: &Name, problem: &Expr) -> Result<Expr, DataFusionError> {
        let (column, zone) = (&name.value, self.line.spec.zone());
        when(
            problem.clone().eq(lit("nonexistent")),
            lit(format!(
                "nonexistent-local-time: `{column}` names a time that the clocks of {zone} skipped when they were moved forward"
            )),
        )
        .when(
            problem.clone().eq(lit("ambiguous")),
            lit(format!(
                "ambiguous-local-time: `{column}` names a time that the clocks of {zone} showed twice when they were moved back, and the column's `ambiguous` policy is quarantine"
            )),
        )
        .otherwise(lit(ScalarValue::Utf8(None)))
    }
}

/// The function that reads a column declared with a `format`; `None` without one (or with
/// one that does not fit, which the line's loading refused, V209).
fn format_parse(c: &ColumnSpec) -> Option<Parse> {
    match (c.format.as_ref()?.value, c.r#type.value) {
        (ColumnFormat::Finnish, ColumnType::Decimal) => Some(Parse::FinnishDecimal),
        (ColumnFormat::Finnish, ColumnType::Integer) => Some(Parse::FinnishInteger),
        (ColumnFormat::Hl7, ColumnType::Date) => Some(Parse::Hl7Date),
        (ColumnFormat::Hl7, ColumnType::Timestamp) if !c.local => Some(Parse::Hl7Timestamp),
        _ => None,
    }
}

impl PlanStep for SourceSpec {
    fn plan(&self, p: &Planner, name: &str, inputs: &Inputs) -> Result<StepPlan, Diags> {
        let (b, _) = p.scan(inputs, &Sp::synthetic(name.to_string()))?;
        p.plan_source(self, b)
    }

    fn declares(&self, column: &str) -> Option<Pos> {
        self.columns.get_key_value(column).map(|(k, _)| k.at)
    }
}
