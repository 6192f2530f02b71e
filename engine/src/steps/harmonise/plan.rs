//! Planning a harmonise step.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::{Column, DataFusionError};
use datafusion::datasource::{TableProvider, provider_as_source};
use datafusion::logical_expr::{Expr, JoinType, LogicalPlanBuilder, col, lit, when};
use datafusion::scalar::ScalarValue;

use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::line::spec::{HarmoniseSpec, Pos, Severity, StepKind, Unmapped};
use crate::plan::expr::{cast_text, midnight};
use crate::plan::{Diags, FILTER_COLUMN, InputInfo, Planner, StepPlan, TapRule, arrow_type};
use crate::plan::{METRIC_PREFIX, RULE_PREFIX};

impl Planner<'_> {
    pub(crate) fn plan_harmonise(
        &self,
        h: &HarmoniseSpec,
        mut b: LogicalPlanBuilder,
        info: &InputInfo,
    ) -> Result<StepPlan, Diags> {
        let err = |at: Pos| {
            move |e: DataFusionError| {
                vec![Diagnostic::error(
                    Code::V205,
                    &self.line.file,
                    at,
                    e.to_string(),
                )]
            }
        };
        let mut rules = Vec::new();
        let mut metrics = Vec::new();
        if !h.cast.is_empty() {
            let schema = b.schema().clone();
            let mut exprs = Vec::new();
            for c in schema.columns() {
                let spec = h.cast.iter().find(|(n, _)| n.value == c.name);
                match spec {
                    Some((name, t)) => {
                        let raw = col(c.clone());
                        let typed = Expr::TryCast(datafusion::logical_expr::TryCast::new(
                            Box::new(raw.clone()),
                            arrow_type(t.value),
                        ));
                        let what = lit(format!(
                            "column `{}`: not a {}",
                            name.value,
                            t.value.as_str()
                        ));
                        let column = format!("{RULE_PREFIX}c{}", rules.len());
                        let reason = when(raw.is_not_null().and(typed.clone().is_null()), what)
                            .otherwise(lit(ScalarValue::Utf8(None)))
                            .map_err(err(name.at))?;
                        exprs.push(typed.alias(name.value.as_str()));
                        exprs.push(reason.alias(&column));
                        rules.push(TapRule {
                            column,
                            id: format!("cast-{}", name.value),
                            severity: Severity::Reject,
                        });
                    }
                    None => exprs.push(col(c)),
                }
            }
            for (name, _) in &h.cast {
                self.column_check(&schema, name).map_err(|d| vec![d])?;
            }
            b = b.project(exprs).map_err(err(h.input.at))?;
        }
        for (i, m) in h.map.iter().enumerate() {
            let schema = b.schema().clone();
            let from_type = self.column_check(&schema, &m.column).map_err(|d| vec![d])?;
            let table = self.codesets.get(m.codeset.value.as_str()).ok_or_else(|| {
                vec![self.diag(
                    Code::V303,
                    m.codeset.at,
                    format!("unknown code set `{}`", m.codeset.value),
                )]
            })?;
            let key = self.line.spec.codesets[m.codeset.value.as_str()]
                .key
                .value
                .clone();
            let cs_schema = table.schema();
            if cs_schema.index_of(&m.to).is_err() {
                let cols: Vec<&str> = cs_schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                let mut d = self.diag(
                    Code::V304,
                    m.to.at,
                    format!(
                        "code set `{}` has no column `{}`",
                        m.codeset.value, m.to.value
                    ),
                );
                if let Some(hint) = did_you_mean(&m.to, cols.iter().copied()) {
                    d = d.with_hint(hint);
                }
                return Err(vec![d]);
            }
            let alias = format!("__cs{i}");
            let windowed = m.on.is_some() && cs_schema.index_of("valid_from").is_ok();
            // A window checked against a timestamp without a time zone: the code set's days
            // as the midnights that start and end them, compared with the timestamps as
            // they are (not each cast to its day).
            let on_unit = match &m.on {
                Some(on_col) if windowed => {
                    match self.column_check(&schema, on_col).map_err(|d| vec![d])? {
                        DataType::Timestamp(unit, None) => Some(unit),
                        _ => None,
                    }
                }
                _ => None,
            };
            let bound = |column: &str, next_day: bool| {
                let day = Expr::Cast(datafusion::logical_expr::Cast::new(
                    Box::new(col(column)),
                    DataType::Date32,
                ));
                match &on_unit {
                    Some(unit) => midnight(day, *unit, next_day),
                    None => day,
                }
            };
            let mut cs_cols = vec![
                col(Column::from_name(key.as_str())).alias(format!("{alias}_key")),
                col(Column::from_name(m.to.value.as_str())).alias(format!("{alias}_to")),
            ];
            let has_equivalence = cs_schema.index_of("equivalence").is_ok();
            if cs_schema.index_of("match").is_ok() {
                cs_cols.push(col("match").alias(format!("{alias}_match")));
            }
            if has_equivalence {
                cs_cols.push(col("equivalence").alias(format!("{alias}_eq")));
            }
            if windowed {
                cs_cols.push(bound("valid_from", false).alias(format!("{alias}_from")));
                // With timestamps: the midnight after the last day.
                cs_cols.push(bound("valid_to", true).alias(format!("{alias}_until")));
            }
            let cs_plan = LogicalPlanBuilder::scan(
                alias.as_str(),
                provider_as_source(table.clone() as Arc<dyn TableProvider>),
                None,
            )
            .and_then(|b| b.project(cs_cols))
            .and_then(|b| b.build())
            .map_err(err(m.codeset.at))?;
            let from = col(Column::from_name(m.column.value.as_str()));
            let from_text = if from_type == DataType::Utf8 {
                from.clone()
            } else {
                Expr::Cast(datafusion::logical_expr::Cast::new(
                    Box::new(from.clone()),
                    DataType::Utf8,
                ))
            };
            let key_col = col(Column::from_name(format!("{alias}_key")));
            // A code set with a `match` column may give prefixes (`J07BM` for every HPV
            // vaccine): rows marked `prefix` match codes that start with their key.
            let mut on = if cs_schema.index_of("match").is_ok() {
                from_text
                    .clone()
                    .eq(key_col.clone())
                    .or(col(Column::from_name(format!("{alias}_match")))
                        .eq(lit("prefix"))
                        .and(datafusion::functions::string::expr_fn::starts_with(
                            from_text.clone(),
                            key_col,
                        )))
            } else {
                from_text.clone().eq(key_col)
            };
            if windowed && let Some(on_col) = &m.on {
                let t = self.column_check(&schema, on_col).map_err(|d| vec![d])?;
                let day = if t == DataType::Date32 {
                    col(Column::from_name(on_col.value.as_str()))
                } else {
                    Expr::Cast(datafusion::logical_expr::Cast::new(
                        Box::new(col(Column::from_name(on_col.value.as_str()))),
                        DataType::Date32,
                    ))
                };
                let fromc = col(Column::from_name(format!("{alias}_from")));
                let untilc = col(Column::from_name(format!("{alias}_until")));
                let (day, before_end) = if on_unit.is_some() {
                    let at = col(Column::from_name(on_col.value.as_str()));
                    (at.clone(), at.lt(untilc.clone()))
                } else {
                    (day.clone(), day.lt_eq(untilc.clone()))
                };
                on = on
                    .and(fromc.clone().is_null().or(day.gt_eq(fromc)))
                    .and(untilc.is_null().or(before_end));
            }
            // The code set is the join's build side; the rows stream past it.
            let joined = LogicalPlanBuilder::from(cs_plan)
                .join_on(
                    b.build().map_err(err(m.column.at))?,
                    JoinType::Right,
                    vec![on],
                )
                .map_err(err(m.column.at))?;
            let to = col(Column::from_name(format!("{alias}_to")));
            let target = match m.unmapped {
                Unmapped::Quarantine => to.clone(),
                Unmapped::Default => {
                    let d = m.default.clone().ok_or_else(|| {
                        vec![self.diag(Code::V004, m.to.at, "`unmapped: default` needs `default:`")]
                    })?;
                    datafusion::functions::core::expr_fn::coalesce(vec![to.clone(), lit(d)])
                }
                Unmapped::Keep => to.clone(),
            };
            let mut exprs: Vec<Expr> = schema.columns().into_iter().map(col).collect();
            exprs.retain(|e| !matches!(e, Expr::Column(c) if c.name == m.to.value));
            exprs.push(target.alias(m.to.value.as_str()));
            if m.unmapped == Unmapped::Quarantine {
                let column = format!("{RULE_PREFIX}m{i}");
                let reason = when(
                    to.clone().is_null(),
                    lit(format!(
                        "`{}` has no `{}` in code set `{}`",
                        m.column.value, m.to.value, m.codeset.value
                    )),
                )
                .otherwise(lit(ScalarValue::Utf8(None)))
                .map_err(err(m.column.at))?;
                exprs.push(reason.alias(&column));
                rules.push(TapRule {
                    column: column.clone(),
                    id: format!("map-{}", m.to.value),
                    severity: Severity::Reject,
                });
            }
            // How each row was mapped: the mapping row's equivalence, or unmapped.
            let how = if has_equivalence {
                datafusion::functions::core::expr_fn::coalesce(vec![
                    col(Column::from_name(format!("{alias}_eq"))),
                    lit("equal"),
                ])
            } else {
                lit("mapped")
            };
            let metric = format!("{METRIC_PREFIX}{i}");
            exprs.push(
                when(to.is_null(), lit("unmapped"))
                    .otherwise(how)
                    .map_err(err(m.column.at))?
                    .alias(&metric),
            );
            metrics.push((metric, format!("map-{}", m.to.value)));
            b = joined.project(exprs).map_err(err(m.column.at))?;
        }
        for (name, text) in &h.derive {
            let schema = b.schema().clone();
            let e = self.expr(text, &schema)?;
            let mut exprs: Vec<Expr> = schema
                .columns()
                .into_iter()
                .filter(|c| c.name != name.value)
                .map(col)
                .collect();
            exprs.push(e.alias(name.value.as_str()));
            b = b.project(exprs).map_err(err(text.at))?;
        }
        if let Some(f) = &h.filter {
            let schema = b.schema().clone();
            let cond = self.condition(f, &schema)?;
            let mut exprs: Vec<Expr> = schema.columns().into_iter().map(col).collect();
            exprs.push(cond.alias(FILTER_COLUMN));
            b = b.project(exprs).map_err(err(f.at))?;
        }
        let pseudo = self.state.scalar_functions().get("pseudonym").cloned();
        if !h.pseudonymise.is_empty() {
            self.declared_personal(
                h.pseudonymise
                    .iter()
                    .filter(|p| !h.derive.contains_key(p.value.as_str())),
                info,
                "is pseudonymised",
            )?;
            let schema = b.schema().clone();
            let mut names = BTreeSet::new();
            for p in &h.pseudonymise {
                self.column_check(&schema, p).map_err(|d| vec![d])?;
                names.insert(p.value.clone());
            }
            let Some(f) = pseudo else {
                return Err(vec![self.diag(
                    Code::V205,
                    h.input.at,
                    "pseudonym is not registered",
                )]);
            };
            let exprs: Vec<Expr> = schema
                .columns()
                .into_iter()
                .map(|c| {
                    if names.contains(&c.name) {
                        f.call(vec![cast_text(col(c.clone()))])
                            .alias(c.name.clone())
                    } else {
                        col(c)
                    }
                })
                .collect();
            // A pseudonym is still personal data (see `crate::plan::personal`): it can be counted
            // (count(DISTINCT hetu)) but not published row by row.
            b = b.project(exprs).map_err(err(h.input.at))?;
        }
        if !h.drop.is_empty() {
            let schema = b.schema().clone();
            for d in &h.drop {
                self.column_check(&schema, d).map_err(|d| vec![d])?;
            }
            let exprs: Vec<Expr> = schema
                .columns()
                .into_iter()
                .filter(|c| !h.drop.iter().any(|d| d.value == c.name))
                .map(col)
                .collect();
            b = b.project(exprs).map_err(err(h.input.at))?;
        }
        if !h.rename.is_empty() {
            let schema = b.schema().clone();
            for (old, new) in &h.rename {
                self.column_check(&schema, old).map_err(|d| vec![d])?;
                if schema.has_column_with_unqualified_name(&new.value)
                    && !h.rename.contains_key(new.value.as_str())
                {
                    return Err(vec![self.diag(
                        Code::V104,
                        new.at,
                        format!(
                            "renaming `{}` to `{}`: the step already has a column `{}`",
                            old.value, new.value, new.value
                        ),
                    )]);
                }
            }
            let exprs: Vec<Expr> = schema
                .columns()
                .into_iter()
                .map(|c| match h.rename.get(c.name.as_str()) {
                    Some(new) => col(c).alias(new.value.as_str()),
                    None => col(c),
                })
                .collect();
            b = b.project(exprs).map_err(err(h.input.at))?;
        }
        let plan = b.build().map_err(err(h.input.at))?;
        let mut p = self.finish(StepKind::Harmonise, plan, rules, info.dimensions.clone());
        p.metrics = metrics;
        Ok(p)
    }
}
