//! Planning a harmonise step.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Column, DFSchema, DataFusionError};
use datafusion::datasource::{MemTable, TableProvider, provider_as_source};
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan, LogicalPlanBuilder, col, lit, when};
use datafusion::scalar::ScalarValue;

use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::line::spec::{HarmoniseSpec, MapSpec, Pos, Severity, StepKind, Unmapped};
use crate::plan::expr::{cast_text, midnight};
use crate::plan::{Diags, FILTER_COLUMN, InputInfo, Planner, StepPlan, TapRule, arrow_type};
use crate::plan::{Inputs, PlanStep};
use crate::plan::{METRIC_PREFIX, RULE_PREFIX};

/// V205 at `at` for an engine error while planning the step.
fn engine_err(file: &str, at: Pos) -> impl Fn(DataFusionError) -> Diags + '_ {
    move |e: DataFusionError| vec![Diagnostic::error(Code::V205, file, at, e.to_string())]
}

/// The code set of one `map:` entry and what its optional columns allow.
struct Codeset {
    table: Arc<MemTable>,
    /// The code set's key column.
    key: String,
    /// Prefix of the code set's columns in the join (`__cs<i>`).
    alias: String,
    /// Whether rows map within the code set's validity windows.
    windowed: bool,
    /// The unit and zone of the `on` column when it is a timestamp.
    on_unit: Option<(TimeUnit, Option<Arc<str>>)>,
    /// Whether the code set has a `match` column (rows marked `prefix`).
    has_match: bool,
    /// Whether the code set has an `equivalence` column.
    has_equivalence: bool,
    /// Whether rows match the code set's `system` column too (`system:` given).
    by_system: bool,
}

impl Codeset {
    /// The code set's plan: key, target and the optional match, equivalence and window
    /// columns, each named after the alias.
    fn plan(&self, to: &str) -> datafusion::error::Result<LogicalPlan> {
        let alias = &self.alias;
        let bound = |column: &str, next_day: bool| {
            let day = Expr::Cast(datafusion::logical_expr::Cast::new(
                Box::new(col(column)),
                DataType::Date32,
            ));
            match &self.on_unit {
                Some((unit, zone)) => midnight(day, *unit, zone.clone(), next_day),
                None => day,
            }
        };
        let mut cs_cols = vec![
            col(Column::from_name(self.key.as_str())).alias(format!("{alias}_key")),
            col(Column::from_name(to)).alias(format!("{alias}_to")),
        ];
        if self.has_match {
            cs_cols.push(col("match").alias(format!("{alias}_match")));
        }
        if self.has_equivalence {
            cs_cols.push(col("equivalence").alias(format!("{alias}_eq")));
        }
        if self.by_system {
            cs_cols.push(col("system").alias(format!("{alias}_sys")));
        }
        if self.windowed {
            cs_cols.push(bound("valid_from", false).alias(format!("{alias}_from")));
            // With timestamps: the midnight after the last day.
            cs_cols.push(bound("valid_to", true).alias(format!("{alias}_until")));
        }
        LogicalPlanBuilder::scan(
            alias.as_str(),
            provider_as_source(self.table.clone() as Arc<dyn TableProvider>),
            None,
        )
        .and_then(|b| b.project(cs_cols))
        .and_then(|b| b.build())
    }
}

impl Planner<'_> {
    /// Plans a harmonise step: casts, code set maps, derived columns, the filter,
    /// pseudonyms, dropped and renamed columns, in that order.
    pub(crate) fn plan_harmonise(
        &self,
        h: &HarmoniseSpec,
        mut b: LogicalPlanBuilder,
        info: &InputInfo,
    ) -> Result<StepPlan, Diags> {
        let mut rules = Vec::new();
        let mut metrics = Vec::new();
        if !h.cast.is_empty() {
            b = self.harmonise_cast(h, b, &mut rules)?;
        }
        for (i, m) in h.map.iter().enumerate() {
            b = self.harmonise_map(i, m, b, &mut rules, &mut metrics)?;
        }
        b = self.harmonise_derive(h, b)?;
        if !h.pseudonymise.is_empty() {
            b = self.harmonise_pseudonymise(h, b, info)?;
        }
        if !h.drop.is_empty() {
            b = self.harmonise_drop(h, b)?;
        }
        if !h.rename.is_empty() {
            b = self.harmonise_rename(h, b)?;
        }
        let plan = b.build().map_err(engine_err(&self.line.file, h.input.at))?;
        let mut p = self.finish(
            StepKind::Harmonise,
            plan,
            rules,
            info.dimensions.clone(),
            info.area.clone(),
        );
        p.metrics = metrics;
        Ok(p)
    }

    /// The `cast:` columns converted, each with a rule column giving why a value did not
    /// convert.
    fn harmonise_cast(
        &self,
        h: &HarmoniseSpec,
        b: LogicalPlanBuilder,
        rules: &mut Vec<TapRule>,
    ) -> Result<LogicalPlanBuilder, Diags> {
        let err = |at: Pos| engine_err(&self.line.file, at);
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
        b.project(exprs).map_err(err(h.input.at))
    }

    /// One `map:` entry: the rows joined to the code set (the build side) on their code and
    /// validity window, the target column set, with a rule column when unmapped rows go to
    /// quarantine and a metric column of how each row was mapped.
    fn harmonise_map(
        &self,
        i: usize,
        m: &MapSpec,
        b: LogicalPlanBuilder,
        rules: &mut Vec<TapRule>,
        metrics: &mut Vec<(String, String)>,
    ) -> Result<LogicalPlanBuilder, Diags> {
        let err = |at: Pos| engine_err(&self.line.file, at);
        let schema = b.schema().clone();
        let from_type = self.column_check(&schema, &m.column).map_err(|d| vec![d])?;
        let cs = self.harmonise_codeset(i, m, &schema)?;
        let cs_plan = cs.plan(m.to.value.as_str()).map_err(err(m.codeset.at))?;
        let on = self.harmonise_map_on(m, &schema, &cs, &from_type)?;
        // The code set is the join's build side; the rows stream past it.
        let joined = LogicalPlanBuilder::from(cs_plan)
            .join_on(
                b.build().map_err(err(m.column.at))?,
                JoinType::Right,
                vec![on],
            )
            .map_err(err(m.column.at))?;
        let exprs = self.harmonise_map_outputs(i, m, &schema, &cs, rules, metrics)?;
        joined.project(exprs).map_err(err(m.column.at))
    }

    /// The code set of a `map:` entry (V303 when unknown, V304 when it has no target
    /// column) and whether its rows apply within validity windows.
    fn harmonise_codeset(
        &self,
        i: usize,
        m: &MapSpec,
        schema: &DFSchema,
    ) -> Result<Codeset, Diags> {
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
        let by_system = self.harmonise_codeset_system(m, &cs_schema)?;
        let windowed = m.on.is_some() && cs_schema.index_of("valid_from").is_ok();
        // A window checked against a timestamp: the code set's days as the midnights that
        // start and end them (a local time column's zone's), compared with the timestamps
        // as they are (not each cast to its day).
        let on_unit = match &m.on {
            Some(on_col) if windowed => {
                match self.column_check(schema, on_col).map_err(|d| vec![d])? {
                    DataType::Timestamp(unit, zone) => Some((unit, zone)),
                    _ => None,
                }
            }
            _ => None,
        };
        Ok(Codeset {
            table: table.clone(),
            key,
            alias: format!("__cs{i}"),
            windowed,
            on_unit,
            has_match: cs_schema.index_of("match").is_ok(),
            has_equivalence: cs_schema.index_of("equivalence").is_ok(),
            by_system,
        })
    }

    /// Whether a `map:` entry matches code systems: `system:` given, and then the code set
    /// must have a `system` column (V304 otherwise).
    fn harmonise_codeset_system(
        &self,
        m: &MapSpec,
        cs_schema: &arrow::datatypes::Schema,
    ) -> Result<bool, Diags> {
        let Some(system) = &m.system else {
            return Ok(false);
        };
        if cs_schema.index_of("system").is_err() {
            return Err(vec![self.diag(
                Code::V304,
                system.at,
                format!(
                    "code set `{}` has no column `system` to match `{}` against",
                    m.codeset.value, system.value
                ),
            )]);
        }
        Ok(true)
    }

    /// The code system condition of a `map:` entry with `system:`: the rows' system column
    /// (as text) equals the mapping row's `system`; a row without a system matches none.
    fn harmonise_map_system(
        &self,
        m: &MapSpec,
        schema: &DFSchema,
        cs: &Codeset,
    ) -> Result<Option<Expr>, Diags> {
        let Some(system) = m.system.as_ref().filter(|_| cs.by_system) else {
            return Ok(None);
        };
        let t = self.column_check(schema, system).map_err(|d| vec![d])?;
        let rows = col(Column::from_name(system.value.as_str()));
        let rows = if t == DataType::Utf8 {
            rows
        } else {
            Expr::Cast(datafusion::logical_expr::Cast::new(
                Box::new(rows),
                DataType::Utf8,
            ))
        };
        Ok(Some(
            rows.eq(col(Column::from_name(format!("{}_sys", cs.alias)))),
        ))
    }

    /// The join condition of a `map:` entry: the code equals the key (or starts with a
    /// `prefix` key), and the `on` date lies in the mapping row's window.
    fn harmonise_map_on(
        &self,
        m: &MapSpec,
        schema: &DFSchema,
        cs: &Codeset,
        from_type: &DataType,
    ) -> Result<Expr, Diags> {
        let alias = &cs.alias;
        let from = col(Column::from_name(m.column.value.as_str()));
        let from_text = if *from_type == DataType::Utf8 {
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
        let mut on = if cs.has_match {
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
        if let Some(same_system) = self.harmonise_map_system(m, schema, cs)? {
            on = on.and(same_system);
        }
        if cs.windowed
            && let Some(on_col) = &m.on
        {
            let t = self.column_check(schema, on_col).map_err(|d| vec![d])?;
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
            let (day, before_end) = if cs.on_unit.is_some() {
                let at = col(Column::from_name(on_col.value.as_str()));
                (at.clone(), at.lt(untilc.clone()))
            } else {
                (day.clone(), day.lt_eq(untilc.clone()))
            };
            on = on
                .and(fromc.clone().is_null().or(day.gt_eq(fromc)))
                .and(untilc.is_null().or(before_end));
        }
        Ok(on)
    }

    /// The columns after a `map:` join: the rows' columns with the target (V004 when
    /// `unmapped: default` has no default), the quarantine rule column and the metric.
    fn harmonise_map_outputs(
        &self,
        i: usize,
        m: &MapSpec,
        schema: &DFSchema,
        cs: &Codeset,
        rules: &mut Vec<TapRule>,
        metrics: &mut Vec<(String, String)>,
    ) -> Result<Vec<Expr>, Diags> {
        let err = |at: Pos| engine_err(&self.line.file, at);
        let alias = &cs.alias;
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
        let how = if cs.has_equivalence {
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
        Ok(exprs)
    }

    /// The `derive:` columns, each over the columns before it, then the filter column.
    fn harmonise_derive(
        &self,
        h: &HarmoniseSpec,
        mut b: LogicalPlanBuilder,
    ) -> Result<LogicalPlanBuilder, Diags> {
        let err = |at: Pos| engine_err(&self.line.file, at);
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
        Ok(b)
    }

    /// The `pseudonymise:` columns replaced by their pseudonyms (V207 for a column not
    /// declared personal).
    fn harmonise_pseudonymise(
        &self,
        h: &HarmoniseSpec,
        b: LogicalPlanBuilder,
        info: &InputInfo,
    ) -> Result<LogicalPlanBuilder, Diags> {
        let pseudo = self.state.scalar_functions().get("pseudonym").cloned();
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
        b.project(exprs)
            .map_err(engine_err(&self.line.file, h.input.at))
    }

    /// The columns left after `drop:`.
    fn harmonise_drop(
        &self,
        h: &HarmoniseSpec,
        b: LogicalPlanBuilder,
    ) -> Result<LogicalPlanBuilder, Diags> {
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
        b.project(exprs)
            .map_err(engine_err(&self.line.file, h.input.at))
    }

    /// The columns renamed by `rename:` (V104 when a new name is already a column).
    fn harmonise_rename(
        &self,
        h: &HarmoniseSpec,
        b: LogicalPlanBuilder,
    ) -> Result<LogicalPlanBuilder, Diags> {
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
        b.project(exprs)
            .map_err(engine_err(&self.line.file, h.input.at))
    }
}

impl PlanStep for HarmoniseSpec {
    fn plan(&self, p: &Planner, _name: &str, inputs: &Inputs) -> Result<StepPlan, Diags> {
        let (b, info) = p.scan(inputs, &self.input)?;
        p.plan_harmonise(self, b, info)
    }

    fn made_at(&self, p: &Planner, column: &str) -> Option<Pos> {
        if let Some(e) = self.derive.get(column) {
            return Some(p.locate(e, ""));
        }
        self.rename
            .values()
            .chain(&self.pseudonymise)
            .find(|n| n.value == column)
            .map(|n| n.at)
    }

    fn declares(&self, column: &str) -> Option<Pos> {
        if let Some((k, _)) = self.derive.get_key_value(column) {
            return Some(k.at);
        }
        self.rename
            .values()
            .find(|n| n.value == column)
            .map(|n| n.at)
    }
}
