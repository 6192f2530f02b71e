//! Planning: each step of a line becomes a DataFusion logical plan over its inputs.
//!
//! The same code plans a step when a line is checked (inputs are empty tables of the
//! input steps' schemas, so every expression is parsed and type-checked without data) and
//! when it runs (inputs are streams). A step's plan may add rule columns named
//! `__r<i>` (text: null when the row passes, otherwise the reason); the scheduler diverts
//! the rows that fail a `reject` rule to quarantine and drops those columns, so the step's
//! output schema is its plan's schema without them.
//!
//! How planning is organised: this module holds what every step kind shares — the
//! [`StepPlan`] a step becomes, what a consumer knows of its inputs ([`InputInfo`]), and the
//! [`Planner`], whose [`Planner::plan_step`] dispatches on the step's kind and then computes
//! which output columns are personal ([`personal`]). Expressions of a line file (parsing,
//! parameters, type checks and placed errors) are in `expr`; the sessions plans are made
//! and run in are in `session` ([`session()`], [`limited_session`]); `row_number` is the
//! one operator Valtava adds to DataFusion's (a streaming `row_number()`). Each step kind's own
//! planning lives beside what the kind does, in `steps/<kind>/plan.rs`, as an
//! `impl Planner` block: [`crate::steps::source`], [`crate::steps::validate`],
//! [`crate::steps::harmonise`], [`crate::steps::aggregate`], [`crate::steps::publish`] and
//! [`crate::steps::sql`]. [`check`] plans every step of a line (`valtava check`) and
//! [`explain`] reports the plans (`valtava plan`).

pub mod across;
pub mod check;
pub mod columns;
pub mod defer;
pub mod explain;
pub(crate) mod expr;
pub mod history;
pub mod personal;
mod row_number;
pub mod scans;
mod session;

#[cfg(test)]
pub(crate) use session::SPILL_MERGE_FAN_IN;
pub use session::{FilterSize, filter_bytes, limited_session, session};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::DFSchema;
use datafusion::datasource::{MemTable, TableProvider, provider_as_source};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::scalar::ScalarValue;

use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::line::load::Line;
use crate::line::spec::{ColumnSpec, ColumnType, LineSpec, Name, Pos, Severity, SourceSpec};
use crate::line::spec::{Step, StepKind, StepSpec};
use crate::plan::personal::{Lineage, Taint};

/// Column of a row's source object.
pub const OBJECT_COLUMN: &str = "_object";
/// Column of a row's number inside its object.
pub use valtava_plugin::ROW_COLUMN;
/// Prefix of rule columns.
pub const RULE_PREFIX: &str = "__r";
/// Prefix of columns counted by value (e.g. how each row was mapped).
pub const METRIC_PREFIX: &str = "__m";
/// Column that marks suppressed cells in a published table.
pub const STATUS_COLUMN: &str = "status";
/// The period column the daemon puts first in every dataset it serves (a time series over
/// its releases), beside a `status_<measure>` column for a measure a release lacks: no
/// published column may have either name (V208).
pub use crate::line::release::PERIOD_COLUMN;
/// The dimension of JSON-stat and PxWeb tables whose categories are the measures: no
/// published column may have its name (V208).
pub const MEASURE_DIMENSION: &str = "tiedot";

/// A rule column of a step's plan and what to do with rows it flags.
#[derive(Debug, Clone, PartialEq)]
pub struct TapRule {
    /// The `__r<i>` column.
    pub column: String,
    /// Rule id, for quarantine and reports.
    pub id: String,
    pub severity: Severity,
}

/// A check of a whole step's data, evaluated when the step has seen every row.
#[derive(Debug, Clone)]
pub struct DatasetCheck {
    pub id: String,
    pub severity: Severity,
    pub rule: Arc<dyn DatasetRule>,
}

/// What a planned dataset check watches in a step's rows and how it judges them at the
/// end. Each rule kind that checks the whole dataset implements it beside its planning
/// (`steps/validate/rules/`). The state a check folds its batches into is one optional
/// number (a count, the latest day), kept by the run per check.
pub trait DatasetRule: std::fmt::Debug + Send + Sync {
    /// Folds one batch of the rows in scope into `state` (default: nothing to watch).
    fn observe(
        &self,
        _rows: &InScope,
        _state: &mut Option<i64>,
    ) -> Result<(), arrow::error::ArrowError> {
        Ok(())
    }

    /// The outcome, once every row was seen.
    fn judge(&self, seen: &Seen) -> DatasetOutcome;
}

/// A batch of a step's rows and which of them are in scope (the step's filter).
pub struct InScope<'a> {
    pub rows: &'a arrow::array::RecordBatch,
    /// `None` when every row is in scope.
    pub filter: Option<&'a arrow::array::BooleanArray>,
}

impl InScope<'_> {
    /// Column `name` of the rows in scope, if the batch has it.
    pub fn column(
        &self,
        name: &str,
    ) -> Result<Option<arrow::array::ArrayRef>, arrow::error::ArrowError> {
        let Some(a) = self.rows.column_by_name(name) else {
            return Ok(None);
        };
        Ok(Some(match self.filter {
            None => a.clone(),
            Some(f) => arrow::compute::filter(a, f)?,
        }))
    }
}

/// What a dataset check is judged on.
pub struct Seen<'a> {
    /// The step's name.
    pub step: &'a str,
    /// Rows in scope.
    pub rows: u64,
    /// The state its batches were folded into.
    pub state: Option<i64>,
    /// Rows in scope of each submitter (the step's `submitter` column), by submitter.
    pub submitters: &'a BTreeMap<String, u64>,
    /// What the line's earlier periods counted.
    pub history: &'a history::History,
}

impl Seen<'_> {
    /// Rows in scope of a submitter.
    pub fn submitter_rows(&self, submitter: &str) -> u64 {
        self.submitters.get(submitter).copied().unwrap_or(0)
    }
}

/// The result of a dataset check.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct DatasetOutcome {
    pub passed: bool,
    pub observed: String,
    pub expected: String,
    /// The submitters the check names, each with its numbers (sorted by submitter).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

/// A submitter a dataset check names.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Finding {
    /// The submitter, as the step's `submitter` column names it.
    pub submitter: String,
    pub what: FindingKind,
    /// Its rows in scope this period.
    pub rows: u64,
    /// Its rows in the period compared with, when it sent any then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<u64>,
    /// `rows / previous`, when both are known and `previous` is not 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
}

/// What a dataset check found of a submitter.
#[derive(Debug, Clone, Copy, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Expected, or sent rows before, and sent none this period.
    Missing,
    /// Sent rows this period and none in the period compared with.
    New,
    /// More rows than the check allows against the period compared with.
    Increased,
    /// Fewer rows than the check allows against the period compared with.
    Decreased,
}

/// Who submitted an object, as a step whose `submitter` is [`OBJECT_COLUMN`] names it: the
/// object's file name up to its first `.` or `_` (`uusimaa` of
/// `inbox/ensihoito/2025-03/uusimaa_2.csv`), so that a submitter has one name in every
/// period. A hyphen does not end it: county names have them (`etela-savo`).
pub fn object_submitter(object: &str) -> &str {
    let name = object.rsplit('/').next().unwrap_or(object);
    match name.find(['.', '_']) {
        Some(end) if end > 0 => &name[..end],
        _ => name,
    }
}

/// Column of a step's filter: true for rows in scope.
pub const FILTER_COLUMN: &str = "__rfilter";

/// A planned step.
#[derive(Debug, Clone)]
pub struct StepPlan {
    pub kind: StepKind,
    pub plan: LogicalPlan,
    /// The step's output: the plan's columns less the rule columns.
    pub output: SchemaRef,
    pub rules: Vec<TapRule>,
    /// Output columns that identify a person (the keys of `lineage`).
    pub personal: BTreeSet<String>,
    /// Personal columns that hold pseudonyms.
    pub pseudonymised: BTreeSet<String>,
    /// Why each personal column is personal, computed from the plan.
    pub lineage: Lineage,
    /// Measures that count persons (`count(DISTINCT` of a personal column): each decides
    /// disclosure like the dataset's first count.
    pub person_counts: Vec<String>,
    /// Dimensions of an aggregate, for publish.
    pub dimensions: Vec<String>,
    /// The dimension that is an area (an aggregate's `area`, one of `dimensions`): its
    /// total is `SSS`, it has the `geo` role in JSON-stat and is the API's area filter.
    pub area: Option<String>,
    /// Whether the plan has a [`FILTER_COLUMN`].
    pub filtered: bool,
    /// Checks of the whole dataset.
    pub dataset_checks: Vec<DatasetCheck>,
    /// The column naming who submitted each row, for the quality report.
    pub submitter: Option<String>,
    /// Text columns whose values are counted for the run report: (column, what).
    pub metrics: Vec<(String, String)>,
    /// Small-cell suppression of a publish step.
    pub disclosure: Option<Disclosure>,
}

/// How a published table is protected (see [`crate::publish::disclosure`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Disclosure {
    /// The counts that decide: the dataset's first count, then the counts of persons.
    pub counts: Vec<String>,
    pub min_count: i64,
    /// The columns emptied in a suppressed cell.
    pub measures: Vec<String>,
    /// Measures decided by a count of their own: (measure, the column of its count in the
    /// step's table). An unpublished count's column is [`DECIDING_PREFIX`] + its name.
    pub own: Vec<(String, String)>,
    /// The deciding counts of `own` that are not published (their names in the line).
    pub unpublished: Vec<String>,
}

/// Prefix of a deciding count that is not published: it reaches disclosure control in the
/// publish step's table and is dropped there, and like every `__` column it is in no
/// published schema.
pub const DECIDING_PREFIX: &str = "__d_";

/// The inputs of a step: providers of the input steps' outputs, by step name.
pub type Inputs = BTreeMap<String, (Arc<dyn TableProvider>, InputInfo)>;

/// A step's output as seen by a consumer.
#[derive(Debug, Clone)]
pub struct InputInfo {
    pub schema: SchemaRef,
    pub personal: BTreeSet<String>,
    /// Personal columns that already hold pseudonyms.
    pub pseudonymised: BTreeSet<String>,
    pub lineage: Lineage,
    pub person_counts: Vec<String>,
    pub dimensions: Vec<String>,
    /// The dimension that is an area, one of `dimensions`.
    pub area: Option<String>,
}

impl InputInfo {
    /// What is known of rows straight from a parser: nothing but their schema.
    pub fn raw(schema: SchemaRef) -> Self {
        Self {
            schema,
            personal: BTreeSet::new(),
            pseudonymised: BTreeSet::new(),
            lineage: Lineage::new(),
            person_counts: Vec::new(),
            dimensions: Vec::new(),
            area: None,
        }
    }
}

impl StepPlan {
    /// The step's output as its consumers see it.
    pub fn info(&self) -> InputInfo {
        InputInfo {
            schema: self.output.clone(),
            personal: self.personal.clone(),
            pseudonymised: self.pseudonymised.clone(),
            lineage: self.lineage.clone(),
            person_counts: self.person_counts.clone(),
            dimensions: self.dimensions.clone(),
            area: self.area.clone(),
        }
    }

    /// Personal columns still in clear text (to pseudonymise on the way to quarantine).
    pub fn clear_personal(&self) -> BTreeSet<String> {
        self.personal
            .difference(&self.pseudonymised)
            .cloned()
            .collect()
    }
}

/// The Arrow type of a declared column type.
pub fn arrow_type(t: ColumnType) -> DataType {
    match t {
        ColumnType::String => DataType::Utf8,
        ColumnType::Integer => DataType::Int64,
        ColumnType::Decimal => DataType::Float64,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
    }
}

/// The Arrow type of a declared source column: a timestamp declared `local` holds instants
/// whose calendar is the line's zone (`Timestamp(Microsecond, zone)`).
pub fn column_type(c: &ColumnSpec, line: &LineSpec) -> DataType {
    match c.r#type.value {
        ColumnType::Timestamp if c.local => crate::functions::local_time::instant_type(line.zone()),
        t => arrow_type(t),
    }
}

/// The schema a source's parser delivers: declared columns as text (or native types),
/// provenance columns.
pub fn raw_source_schema(spec: &SourceSpec) -> SchemaRef {
    let mut fields: Vec<Field> = spec
        .columns
        .keys()
        .map(|c| Field::new(c.value.as_str(), DataType::Utf8, true))
        .collect();
    fields.push(Field::new(ROW_COLUMN, DataType::UInt64, false));
    fields.push(Field::new(OBJECT_COLUMN, DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// Plans the steps of one line.
pub struct Planner<'a> {
    pub line: &'a Line,
    pub state: SessionState,
    pub params: BTreeMap<String, ScalarValue>,
    pub codesets: &'a BTreeMap<String, Arc<MemTable>>,
    /// The size of a unique rule's first-pass filter (`seen::SeenBefore`), when the plan
    /// runs in this process so that all partitions share one; `None` on a cluster, where the
    /// first pass groups every row's keys.
    pub unique_filter: Option<FilterSize>,
}

pub(crate) type Diags = Vec<Diagnostic>;

/// What the planner asks of a step kind. Each kind's body implements it beside its
/// planning (`steps/<kind>/plan.rs`); [`planning`] is the one exhaustive match from a
/// [`Step`] to it, so a new kind is a compile error there until it says how it is planned.
pub(crate) trait PlanStep {
    /// Plans step `name` over `inputs` (opened with [`Planner::scan`]).
    fn plan(&self, p: &Planner, name: &str, inputs: &Inputs) -> Result<StepPlan, Diags>;

    /// Where the step computes output column `column` (its expression or name in the line
    /// file), for a diagnostic about a personal value made there.
    fn made_at(&self, _p: &Planner, _column: &str) -> Option<Pos> {
        None
    }

    /// Where the step declares a new column `column`: a source column, a derived or renamed
    /// one, a measure.
    fn declares(&self, _column: &str) -> Option<Pos> {
        None
    }
}

/// The planning of a step's body.
pub(crate) fn planning<'s>(body: Step<'s>) -> &'s dyn PlanStep {
    match body {
        Step::Source(s) => s,
        Step::Validate(v) => v,
        Step::Harmonise(h) => h,
        Step::Aggregate(a) => a,
        Step::Publish(p) => p,
        Step::Sql(q) => q,
    }
}

impl Planner<'_> {
    pub(crate) fn diag(&self, code: Code, at: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(code, &self.line.file, at, message)
    }

    /// Plans step `name` over `inputs` (providers of the input steps, with what is known
    /// of them). Expression errors come back as diagnostics pointing at the expression.
    /// Which output columns are personal is computed from the plan ([`crate::plan::personal`]).
    pub fn plan_step(&self, name: &str, inputs: &Inputs) -> Result<StepPlan, Diags> {
        let mut p = self.plan_kind(name, inputs)?;
        let step = crate::line::load::step(&self.line.spec, name);
        let mut lineage = match &step.source {
            Some(s) => s
                .columns
                .iter()
                .filter(|(_, c)| c.personal)
                .map(|(n, _)| (n.value.clone(), Taint::declared(&n.value)))
                .collect(),
            None => {
                let of_inputs = inputs
                    .iter()
                    .map(|(n, (_, i))| (n.clone(), i.lineage.clone()))
                    .collect();
                crate::plan::personal::of_plan(&p.plan, &of_inputs, name)
            }
        };
        lineage.retain(|c, _| p.output.column_with_name(c).is_some());
        if let (Some(v), Some(s)) = (&step.validate, &p.submitter)
            && let Some(t) = lineage.get(s)
        {
            return Err(vec![self.personal_diag(
                v.submitter.as_ref().map_or(v.input.at, |n| n.at),
                format!("the submitter column `{s}` identifies a person"),
                s,
                t,
            )]);
        }
        if step.source.is_none() {
            let of_inputs: BTreeMap<String, Lineage> = inputs
                .iter()
                .map(|(n, (_, i))| (n.clone(), i.lineage.clone()))
                .collect();
            let counts = inputs
                .iter()
                .map(|(n, (_, i))| (n.clone(), i.person_counts.clone()))
                .collect();
            for c in crate::plan::personal::person_counts(&p.plan, &of_inputs, &counts) {
                if !p.person_counts.contains(&c) && p.output.column_with_name(&c).is_some() {
                    p.person_counts.push(c);
                }
            }
        }
        p.personal = lineage.keys().cloned().collect();
        p.pseudonymised = lineage
            .iter()
            .filter(|(_, t)| t.pseudonym)
            .map(|(c, _)| c.clone())
            .collect();
        p.lineage = lineage;
        Ok(p)
    }

    /// V206: a personal value would leave where it may be, placed at the expression that
    /// made it (or its declaration), with its path.
    pub(crate) fn personal_diag(
        &self,
        at: Pos,
        what: String,
        column: &str,
        t: &Taint,
    ) -> Diagnostic {
        let at = self.made_at(t).unwrap_or(at);
        self.diag(
            Code::V206,
            at,
            format!("{what}: {}", t.describe(column)),
        )
        .with_hint("drop it, aggregate it (count(DISTINCT …)) or generalise it (hetu_birth_year, hetu_age, hetu_sex) before it leaves the step")
    }

    /// Where a personal value was last computed: the expression in the line file.
    fn made_at(&self, t: &Taint) -> Option<Pos> {
        let Some((step, column)) = &t.made else {
            let declared = t.path.last()?.trim_end_matches(" (personal)");
            return self.declaration_of(declared);
        };
        let body = self.line.spec.steps.get(step.as_str())?.body()?;
        planning(body).made_at(self, column)
    }

    /// Opens input step `input` as a plan, with what is known of it.
    pub(crate) fn scan<'i>(
        &self,
        inputs: &'i Inputs,
        input: &Name,
    ) -> Result<(LogicalPlanBuilder, &'i InputInfo), Diags> {
        let (provider, info) = inputs.get(input.value.as_str()).ok_or_else(|| {
            vec![self.diag(
                Code::V102,
                input.at,
                format!("`{}` has no output", input.value),
            )]
        })?;
        let b = LogicalPlanBuilder::scan(
            input.value.as_str(),
            provider_as_source(provider.clone()),
            None,
        )
        .map_err(|e| vec![self.diag(Code::V205, input.at, e.to_string())])?;
        Ok((b, info))
    }

    fn plan_kind(&self, name: &str, inputs: &Inputs) -> Result<StepPlan, Diags> {
        let step = crate::line::load::step(&self.line.spec, name);
        let Some(body) = step.body() else {
            let at = (self.line.spec.steps.keys())
                .find(|k| k.value == name)
                .map_or(self.line.spec.line.at, |k| k.at);
            return Err(vec![self.diag(
                Code::V101,
                at,
                format!("step `{name}` must give exactly one kind"),
            )]);
        };
        planning(body).plan(self, name, inputs)
    }

    pub(crate) fn finish(
        &self,
        kind: StepKind,
        plan: LogicalPlan,
        rules: Vec<TapRule>,
        dimensions: Vec<String>,
        area: Option<String>,
    ) -> StepPlan {
        let fields: Vec<Field> = plan
            .schema()
            .fields()
            .iter()
            .filter(|f| !f.name().starts_with("__"))
            .map(|f| f.as_ref().clone())
            .collect();
        let filtered = plan
            .schema()
            .has_column_with_unqualified_name(FILTER_COLUMN);
        StepPlan {
            kind,
            output: Arc::new(Schema::new(fields)),
            plan,
            rules,
            // Filled in by `plan_step`, from the plan.
            personal: BTreeSet::new(),
            pseudonymised: BTreeSet::new(),
            lineage: Lineage::new(),
            person_counts: Vec::new(),
            dimensions,
            area,
            filtered,
            dataset_checks: Vec::new(),
            submitter: None,
            metrics: Vec::new(),
            disclosure: None,
        }
    }

    pub(crate) fn column_check(
        &self,
        schema: &DFSchema,
        name: &Name,
    ) -> Result<DataType, Diagnostic> {
        match schema.field_with_unqualified_name(name) {
            Ok(f) => Ok(f.data_type().clone()),
            Err(_) => {
                let fields: Vec<String> = schema
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .filter(|f| !f.starts_with("__"))
                    .collect();
                let mut d = self.diag(
                    Code::V201,
                    name.at,
                    format!("unknown column `{}`", name.value),
                );
                if let Some(h) = did_you_mean(name, fields.iter().map(String::as_str)) {
                    d = d.with_hint(h);
                }
                Err(d)
            }
        }
    }

    /// Where a column is declared or made: a source column, a derived or renamed column, or a
    /// measure.
    fn declaration_of(&self, column: &str) -> Option<Pos> {
        self.line
            .spec
            .steps
            .values()
            .filter_map(StepSpec::body)
            .find_map(|body| planning(body).declares(column))
    }

    /// V207 for each of `columns` that is handled as an identity code (`what`) but is not
    /// personal in `input`: nothing would protect it.
    pub(crate) fn declared_personal<'n>(
        &self,
        columns: impl Iterator<Item = &'n Name>,
        input: &InputInfo,
        what: &str,
    ) -> Result<(), Diags> {
        let undeclared: Diags = columns
            .filter(|c| !input.personal.contains(&c.value))
            .map(|c| {
                self.diag(
                    Code::V207,
                    c.at,
                    format!(
                        "column `{}` {what} but is not personal: declare it `personal: true` where it is read",
                        c.value
                    ),
                )
            })
            .collect();
        if undeclared.is_empty() {
            Ok(())
        } else {
            Err(undeclared)
        }
    }
}
