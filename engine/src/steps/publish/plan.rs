//! Planning a publish step: the published columns and their small-cell suppression.

use std::sync::Arc;

use arrow::datatypes::{DataType, Schema};
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, SortExpr, col, lit};
use datafusion::scalar::ScalarValue;

use crate::diag::{Code, Diagnostic};
use crate::line::spec::{Name, Pos, PublishSpec, Sp, StepKind, Text};
use crate::plan::expr::first_line;
use crate::plan::{
    DECIDING_PREFIX, Diags, Disclosure, InputInfo, MEASURE_DIMENSION, OBJECT_COLUMN, PERIOD_COLUMN,
    Planner, ROW_COLUMN, STATUS_COLUMN, StepPlan,
};
use crate::plan::{Inputs, PlanStep};

impl Planner<'_> {
    /// Plans a publish step: its dimensions and measures (no personal column may be
    /// published), the counts that decide disclosure, and the sorted published columns.
    pub(crate) fn plan_publish(
        &self,
        p: &PublishSpec,
        name: &str,
        b: LogicalPlanBuilder,
        info: &InputInfo,
    ) -> Result<StepPlan, Diags> {
        let schema = b.schema().clone();
        let dims = self.publish_dims(p, &schema, info)?;
        self.publish_no_personal(p, info)?;
        self.publish_no_reserved(p, &schema)?;
        let off = p.disclosure.as_ref().and_then(|d| d.off.as_ref());
        if let Some(off) = off {
            self.disclosure_off(p, name, info, off)?;
        }
        let unpublished: Vec<String> = (p.disclosure.iter())
            .flat_map(|d| &d.unpublished)
            .map(|n| n.value.clone())
            .collect();
        let measures: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| {
                !dims.contains(n)
                    && !n.starts_with("__")
                    && n != OBJECT_COLUMN
                    && n != ROW_COLUMN
                    && !unpublished.contains(n)
            })
            .collect();
        // Switched off: as `min_count: 1`, nothing is suppressed.
        let min = match off {
            Some(_) => 1,
            None => p.disclosure.as_ref().map_or(5, |d| d.min_count.value),
        };
        let (count, counts) = self.deciding(p, &schema, info, &measures, min)?;
        let own = self.own_measures(p, &schema, &dims)?;
        let status = count.is_some() && min > 1;
        let shape = Shape {
            status,
            unpublished: unpublished.clone(),
            marked: if status { marked(&own) } else { Vec::new() },
        };
        let plan = self.publish_plan(
            p,
            b,
            &schema,
            (dims.as_slice(), measures.as_slice()),
            &shape,
        )?;
        // The input's area stays the area when it is among the published dimensions.
        let area = self.publish_area(p, &dims, info)?;
        let mut out = self.finish(StepKind::Publish, plan, vec![], dims, area);
        // Suppressed cells are empty: every published column may be null.
        out.output = Arc::new(Schema::new(
            out.output
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        out.disclosure = (!counts.is_empty()).then(|| Disclosure {
            counts: counts.into_iter().map(|(c, _)| c).collect(),
            min_count: min as i64,
            measures,
            own,
            unpublished,
        });
        Ok(out)
    }

    /// The count that decides a whole cell (`count`, else the first measure) and every
    /// deciding count with where it is named; none when nothing is suppressed.
    #[allow(clippy::type_complexity)]
    fn deciding(
        &self,
        p: &PublishSpec,
        schema: &DFSchema,
        info: &InputInfo,
        measures: &[String],
        min: u64,
    ) -> Result<(Option<String>, Vec<(String, Pos)>), Diags> {
        let count = match p.disclosure.as_ref().and_then(|d| d.count.clone()) {
            Some(c) => {
                self.column_check(schema, &c).map_err(|d| vec![d])?;
                Some(c.value)
            }
            None => measures.first().cloned(),
        };
        let declared: Vec<&Name> = p
            .disclosure
            .iter()
            .flat_map(|d| d.count.iter().chain(&d.persons))
            .collect();
        for n in &declared {
            self.column_check(schema, n).map_err(|d| vec![d])?;
        }
        if count.is_none() && min > 1 {
            // Every column a dimension: each row would be a published combination, of one
            // person as well as of many, with nothing to decide its suppression.
            return Err(vec![self.diag(
                Code::V206,
                p.input.at,
                format!(
                    "dataset `{}` has no measure to decide disclosure: every column is a dimension; publish a count (or switch disclosure off with `min_count: 1` where no person can be recognised)",
                    p.dataset.value
                ),
            )]);
        }
        let counts = match count.as_ref().filter(|_| min > 1) {
            Some(c) => self.disclosure_counts(p, schema, info, measures, &declared, c)?,
            None => Vec::new(),
        };
        Ok((count, counts))
    }

    /// The measures decided by counts of their own (`disclosure: { measures: … }`), each
    /// with its count's column in the step's table: V201 for an unknown column, V003 for a
    /// dimension on either side, an unpublished measure or an unpublished column that
    /// decides no measure, V202 for a count that is not a number.
    fn own_measures(
        &self,
        p: &PublishSpec,
        schema: &DFSchema,
        dims: &[String],
    ) -> Result<Vec<(String, String)>, Diags> {
        let Some(d) = &p.disclosure else {
            return Ok(Vec::new());
        };
        let hidden = |n: &Name| d.unpublished.iter().any(|u| u.value == n.value);
        let mut diags = Vec::new();
        let mut own = Vec::new();
        for (m, c) in &d.measures {
            for (i, n) in [m, c].into_iter().enumerate() {
                match self.column_check(schema, n) {
                    Err(e) => diags.push(e),
                    Ok(_) if dims.contains(&n.value) => diags.push(self.diag(
                        Code::V003,
                        n.at,
                        format!("`{}` is a dimension, not a measure or its count", n.value),
                    )),
                    Ok(t) if i == 1 && !t.is_numeric() => diags.push(self.diag(
                        Code::V202,
                        c.at,
                        format!(
                            "the disclosure count `{}` of `{}` is {t}, not a number",
                            c.value, m.value
                        ),
                    )),
                    Ok(_) => {}
                }
            }
            if hidden(m) {
                diags.push(self.diag(
                    Code::V003,
                    m.at,
                    format!("`{}` is unpublished: only a deciding count can be", m.value),
                ));
            }
            let column = if hidden(c) {
                format!("{DECIDING_PREFIX}{}", c.value)
            } else {
                c.value.clone()
            };
            own.push((m.value.clone(), column));
        }
        for u in &d.unpublished {
            if let Err(e) = self.column_check(schema, u) {
                diags.push(e);
            } else if !d.measures.values().any(|c| c.value == u.value) {
                diags.push(self.diag(
                    Code::V003,
                    u.at,
                    format!("`{}` decides no measure: only a count under `measures` can be unpublished (drop other columns in the step that makes them)", u.value),
                ));
            }
        }
        if diags.is_empty() {
            Ok(own)
        } else {
            Err(diags)
        }
    }

    /// Disclosure control switched off: only alone (not with `min_count`, `count` or
    /// `persons`, V003), with a reason (V004), and never for a dataset that counts persons
    /// or whose rows come from a source with personal columns (V210): whether persons are
    /// in it is the plan's to know, not the author's to state.
    fn disclosure_off(
        &self,
        p: &PublishSpec,
        name: &str,
        info: &InputInfo,
        off: &Sp<Text>,
    ) -> Result<(), Diags> {
        let mut diags = Vec::new();
        if let Some(d) = &p.disclosure {
            if d.min_count_given() {
                diags.push(self.diag(
                    Code::V003,
                    d.min_count.at,
                    "`min_count` cannot be given with `off`: disclosure control is off, or on with a threshold",
                ));
            }
            for n in d.count.iter().chain(&d.persons) {
                diags.push(self.diag(
                    Code::V003,
                    n.at,
                    format!(
                        "`{}` cannot decide disclosure: disclosure control is `off`",
                        n.value
                    ),
                ));
            }
            for n in d.measures.keys().chain(&d.unpublished) {
                diags.push(self.diag(
                    Code::V003,
                    n.at,
                    format!(
                        "`{}` cannot be decided by a count of its own (or be one): disclosure control is `off`",
                        n.value
                    ),
                ));
            }
        }
        if off.value.is_blank() {
            diags.push(self.diag(
                Code::V004,
                off.at,
                "disclosure control is off without a reason: say why no person can be recognised",
            ));
        }
        let dataset = &p.dataset.value;
        if !info.person_counts.is_empty() {
            diags.push(self.diag(
                Code::V210,
                off.at,
                format!(
                    "dataset `{dataset}` counts persons ({}): disclosure control cannot be off",
                    info.person_counts.join(", ")
                ),
            ));
        }
        let personal = self.personal_sources(name);
        if !personal.is_empty() {
            diags.push(self.diag(
                Code::V210,
                off.at,
                format!(
                    "dataset `{dataset}` derives from personal columns ({}): disclosure control cannot be off",
                    personal.join(", ")
                ),
            ));
        }
        if diags.is_empty() { Ok(()) } else { Err(diags) }
    }

    /// The personal columns (`step.column`) of the sources whose rows reach step `name`.
    fn personal_sources(&self, name: &str) -> Vec<String> {
        let mut found = Vec::new();
        for step in self.line.dag.upstream(name) {
            let Some(source) =
                (self.line.spec.steps.get(step.as_str())).and_then(|s| s.source.as_ref())
            else {
                continue;
            };
            for (c, spec) in &source.columns {
                if spec.personal {
                    found.push(format!("{step}.{}", c.value));
                }
            }
        }
        found
    }

    /// The area dimension: the one given (a published dimension, else V201), or the input's
    /// when it is published.
    fn publish_area(
        &self,
        p: &PublishSpec,
        dims: &[String],
        info: &InputInfo,
    ) -> Result<Option<String>, Diags> {
        match &p.area {
            Some(a) if dims.contains(&a.value) => Ok(Some(a.value.clone())),
            Some(a) => Err(vec![self.diag(
                Code::V201,
                a.at,
                format!(
                    "the area `{}` is not a published dimension ({})",
                    a.value,
                    dims.join(", ")
                ),
            )]),
            None => Ok(info.area.clone().filter(|a| dims.contains(a))),
        }
    }

    /// The published dimensions: those given (each checked), or the input's.
    fn publish_dims(
        &self,
        p: &PublishSpec,
        schema: &DFSchema,
        info: &InputInfo,
    ) -> Result<Vec<String>, Diags> {
        Ok(match &p.dimensions {
            Some(d) => {
                for n in d {
                    self.column_check(schema, n).map_err(|d| vec![d])?;
                }
                d.iter().map(|n| n.value.clone()).collect()
            }
            None => info.dimensions.clone(),
        })
    }

    /// V206 for each column of the input that identifies a person.
    fn publish_no_personal(&self, p: &PublishSpec, info: &InputInfo) -> Result<(), Diags> {
        if info.lineage.is_empty() {
            return Ok(());
        }
        Err(info
            .lineage
            .iter()
            .map(|(c, t)| {
                self.personal_diag(
                    p.input.at,
                    format!(
                        "column `{c}` identifies a person and would be published in dataset `{}`",
                        p.dataset.value
                    ),
                    c,
                    t,
                )
            })
            .collect())
    }

    /// V208 for each published column whose name a served table gives a column of its own:
    /// the daemon's series puts the period `jakso` first and `status_<measure>` beside a
    /// measure, and JSON-stat and PxWeb call the dimension of the measures `tiedot`. Such a
    /// column would collide with theirs in every answer; it is refused here, where it can
    /// still be renamed, not found when the dataset is served.
    fn publish_no_reserved(&self, p: &PublishSpec, schema: &DFSchema) -> Result<(), Diags> {
        let status = format!("{STATUS_COLUMN}_");
        let listed = p.dimensions.iter().flatten();
        let refused: Diags = (schema.fields().iter())
            .map(|f| f.name().as_str())
            .filter_map(|n| {
                let what = if n == PERIOD_COLUMN {
                    "the period of a served dataset"
                } else if n == MEASURE_DIMENSION {
                    "the dimension of the measures in JSON-stat and PxWeb"
                } else if n.starts_with(&status) {
                    "a measure's status in a served dataset (`status_<measure>`)"
                } else {
                    return None;
                };
                let at = (listed.clone())
                    .find(|d| d.value == n)
                    .map_or(p.input.at, |d| d.at);
                let message = format!(
                    "column `{n}` of dataset `{}` has the name of {what}",
                    p.dataset.value
                );
                Some(
                    self.diag(Code::V208, at, message)
                        .with_hint("rename it in the step that makes it (e.g. `… AS kausi`)"),
                )
            })
            .collect();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(refused)
        }
    }

    /// The counts that decide disclosure: `count`, then the declared and computed counts of
    /// persons among the measures, each placed where it is named (V202 when one is not a
    /// number).
    fn disclosure_counts(
        &self,
        p: &PublishSpec,
        schema: &DFSchema,
        info: &InputInfo,
        measures: &[String],
        declared: &[&Name],
        count: &str,
    ) -> Result<Vec<(String, Pos)>, Diags> {
        let mut counts: Vec<(String, Pos)> = Vec::new();
        let at = |c: &str| {
            declared
                .iter()
                .find(|n| n.value == c)
                .map_or(p.input.at, |n| n.at)
        };
        counts.push((count.to_string(), at(count)));
        let persons = p.disclosure.iter().flat_map(|d| &d.persons);
        for c in persons
            .map(|n| &n.value)
            .chain(info.person_counts.iter().filter(|c| measures.contains(c)))
        {
            if !counts.iter().any(|(k, _)| k == c) {
                counts.push((c.clone(), at(c)));
            }
        }
        for (c, at) in &counts {
            let t = schema
                .field_with_unqualified_name(c)
                .map(|f| f.data_type().clone())
                .unwrap_or(DataType::Null);
            if !t.is_numeric() {
                return Err(vec![self.diag(
                    Code::V202,
                    *at,
                    format!("the disclosure count `{c}` is {t}, not a number; name the count measure with `disclosure: {{ count: … }}`"),
                )]);
            }
        }
        Ok(counts)
    }

    /// The published columns (and empty status columns when cells may be suppressed: the
    /// row's, and `status_<measure>` for each measure decided by a count of its own), the
    /// unpublished deciding counts renamed to [`DECIDING_PREFIX`]`<name>`, sorted by the
    /// dimensions, then the measures.
    fn publish_plan(
        &self,
        p: &PublishSpec,
        b: LogicalPlanBuilder,
        schema: &DFSchema,
        (dims, measures): (&[String], &[String]),
        shape: &Shape,
    ) -> Result<LogicalPlan, Diags> {
        let mut exprs: Vec<Expr> = Vec::new();
        for f in schema.fields() {
            let n = f.name();
            if n.starts_with("__") || n == OBJECT_COLUMN || n == ROW_COLUMN {
                continue;
            }
            let e = col(Column::from_name(n.as_str()));
            exprs.push(if shape.unpublished.contains(n) {
                e.alias(format!("{DECIDING_PREFIX}{n}"))
            } else {
                e
            });
        }
        if shape.status {
            exprs.push(lit(ScalarValue::Utf8(None)).alias(STATUS_COLUMN));
            for m in &shape.marked {
                // `status_<measure>`, as JSON-stat and the served tables read it.
                exprs.push(lit(ScalarValue::Utf8(None)).alias(format!("{STATUS_COLUMN}_{m}")));
            }
        }
        let sort: Vec<SortExpr> = dims
            .iter()
            .map(|d| SortExpr::new(col(Column::from_name(d.as_str())), true, true))
            .chain(
                measures
                    .iter()
                    .map(|d| SortExpr::new(col(Column::from_name(d.as_str())), true, true)),
            )
            .collect();
        b.project(exprs)
            .and_then(|b| b.sort(sort))
            .and_then(|b| b.build())
            .map_err(|e| {
                vec![Diagnostic::error(
                    Code::V205,
                    &self.line.file,
                    p.input.at,
                    first_line(&e.to_string()),
                )]
            })
    }
}

/// What a publish step adds to its input's columns besides choosing them.
struct Shape {
    /// Whether cells may be suppressed (a `status` column).
    status: bool,
    /// Deciding counts that are not published.
    unpublished: Vec<String>,
    /// The measures with a status of their own.
    marked: Vec<String>,
}

/// The measures with a status column of their own: those decided by a count of their own,
/// then their published deciding counts, which are emptied with them (see
/// [`crate::publish::disclosure`]).
fn marked(own: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let counts = own
        .iter()
        .map(|(_, c)| c)
        .filter(|c| !c.starts_with(DECIDING_PREFIX));
    for m in own.iter().map(|(m, _)| m).chain(counts) {
        if !out.contains(m) {
            out.push(m.clone());
        }
    }
    out
}

impl PlanStep for PublishSpec {
    fn plan(&self, p: &Planner, name: &str, inputs: &Inputs) -> Result<StepPlan, Diags> {
        let (b, info) = p.scan(inputs, &self.input)?;
        p.plan_publish(self, name, b, info)
    }
}
