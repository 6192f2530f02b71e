//! The rule kinds of a validate step: one file per kind, each holding what a line author
//! writes (the kind's wire type, with its doc comments for the JSON Schema) and what the
//! kind does (its [`RuleKind`] implementation).
//!
//! Why one macro list: the line file gives a rule as a map with an `id`, common properties
//! and exactly one check key (`required: …`, `range: …`). Serde's `deny_unknown_fields`
//! (a misspelt key is an error with a suggestion) does not combine with flattened or
//! tagged enums, so the wire type stays a struct with one optional field per kind. The
//! [`rule_kinds!`] list below generates that struct ([`RuleSpec`]), the [`Check`] enum a
//! rule becomes after loading, the list of check names ([`CHECKS`]) and the dispatch from a
//! variant to its [`RuleKind`]. Adding a kind is one new file here and one line in the
//! list; everything else — the loader's structural checks, planning, the quality report's
//! category, the runtime evaluation of dataset checks — goes through the trait, whose
//! methods either have a default or are required, so the compiler names what a new kind
//! must say.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::{DFSchema, DataFusionError};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diag::{Code, Diagnostic};
use crate::line::spec::{Category, ExprText, Name, Pos, Severity};
use crate::plan::{DatasetRule, Diags, Planner};

/// Whether a rule judges each row or the whole dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A rule column: each row gets a reason or null.
    Row,
    /// A check evaluated once the step has seen every row.
    Dataset,
}

/// What planning a rule sees: the planner, the rule and its place among the step's rules.
pub struct RuleCx<'p, 'a> {
    pub planner: &'p Planner<'a>,
    pub rule: &'p RuleSpec,
    /// The rule's index in its step: names the columns its joins add (`__u<i>…`, `__e<i>`).
    pub index: usize,
}

impl RuleCx<'_, '_> {
    /// One placed diagnostic.
    pub fn error(&self, code: Code, at: Pos, message: impl Into<String>) -> Diags {
        vec![self.planner.diag(code, at, message)]
    }

    /// The type of column `name`, or V201 naming the columns there are.
    pub fn column(&self, schema: &DFSchema, name: &Name) -> Result<DataType, Diags> {
        self.planner.column_check(schema, name).map_err(|d| vec![d])
    }

    /// A DataFusion error building the rule's expression, placed at the rule.
    pub fn planning(&self, e: DataFusionError) -> Diags {
        self.error(Code::V205, self.rule.id.at, e.to_string())
    }

    /// The codes of a code set of the line, or V303.
    pub fn codes(&self, name: &Name) -> Result<Vec<String>, Diags> {
        let table = self
            .planner
            .codesets
            .get(name.value.as_str())
            .ok_or_else(|| {
                self.error(
                    Code::V303,
                    name.at,
                    format!("unknown code set `{}`", name.value),
                )
            })?;
        let key = &self.planner.line.spec.codesets[name.value.as_str()]
            .key
            .value;
        Ok(crate::line::codeset::codes(table, key))
    }
}

/// What the plan of a validate step holds while its rules add their joins.
pub struct Joins<'p> {
    /// The step's input, before any join: the rows a rule's side plans read.
    pub base: &'p LogicalPlanBuilder,
    /// The input's schema.
    pub schema: &'p DFSchema,
    /// The input step's name (qualifies its columns after a join).
    pub input: &'p Name,
    /// The other steps a rule reads (by name), as plans.
    pub others: &'p BTreeMap<String, LogicalPlanBuilder>,
}

/// What one kind of rule is and does. Only [`RuleKind::category`] is required; a kind
/// overrides what applies to it: a row rule [`RuleKind::row_check`], a dataset rule
/// [`RuleKind::scope`] and [`RuleKind::dataset_check`].
pub trait RuleKind {
    /// The quality dimension of a rule that does not state one.
    fn category(&self) -> Category;

    /// Whether the rule judges each row (default) or the whole dataset.
    fn scope(&self) -> Scope {
        Scope::Row
    }

    /// A column the rule treats as an identity code: it must be declared personal.
    fn personal_column(&self) -> Option<&Name> {
        None
    }

    /// Another step of the line whose rows the rule reads (a dependency in the graph).
    fn other_step(&self) -> Option<&Name> {
        None
    }

    /// A code set the rule names, checked to exist when the line is loaded.
    fn codeset(&self) -> Option<&Name> {
        None
    }

    /// Whether the line must have a `period` parameter for this rule (checked on load).
    fn needs_period(&self) -> bool {
        false
    }

    /// Joins in another step's keys before the rule columns are computed (first phase).
    fn join_other(
        &self,
        _cx: &RuleCx,
        _joins: &Joins,
        b: LogicalPlanBuilder,
    ) -> Result<LogicalPlanBuilder, Diags> {
        Ok(b)
    }

    /// Joins in what the rule finds among the rows themselves, e.g. the first occurrence
    /// of a duplicate key (second phase, after every `join_other`).
    fn join_rows(
        &self,
        _cx: &RuleCx,
        _joins: &Joins,
        b: LogicalPlanBuilder,
    ) -> Result<LogicalPlanBuilder, Diags> {
        Ok(b)
    }

    /// The rule column of a row rule: text, null when the row passes, otherwise the reason.
    /// `schema` is the input's after the joins.
    fn row_check(&self, cx: &RuleCx, _schema: &DFSchema) -> Result<Expr, Diags> {
        Err(cx.error(
            Code::V101,
            cx.rule.id.at,
            format!(
                "rule `{}` checks the whole dataset, not each row",
                cx.rule.id.value
            ),
        ))
    }

    /// The check of a dataset rule, evaluated once the step has seen every row.
    /// `submitter` is the step's submitter column, if it names one.
    fn dataset_check(
        &self,
        cx: &RuleCx,
        _schema: &DFSchema,
        _submitter: Option<&Name>,
    ) -> Result<Arc<dyn DatasetRule>, Diags> {
        Err(cx.error(
            Code::V101,
            cx.rule.id.at,
            format!(
                "rule `{}` checks each row, not the whole dataset",
                cx.rule.id.value
            ),
        ))
    }
}

fn yes() -> bool {
    true
}

/// The rule kinds: for each, its key in a line file (and field of [`RuleSpec`], and the
/// file `<key>.rs` of the kind, declared here), its variant of [`Check`], its wire type and
/// the doc comment line authors see.
macro_rules! rule_kinds {
    ($( $(#[doc = $doc:literal])* $field:ident => $variant:ident($ty:ident), )*) => {
        $(
            mod $field;
            pub use $field::$ty;
        )*

        /// One validation rule: an `id`, optional properties and exactly one check.
        #[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct RuleSpec {
            /// Stable identifier of the rule, shown in quarantine and reports (e.g. `hetu-valid`).
            pub id: Name,
            /// What the rule checks, for people.
            #[serde(default)]
            pub description: Option<String>,
            /// `reject` (default), `warn` or `fail`.
            #[serde(default)]
            pub severity: Severity,
            /// `conformance`, `completeness` or `plausibility`; inferred from the check when left out.
            #[serde(default)]
            pub category: Option<Category>,
            /// Check the rule only on rows where this boolean expression is true.
            #[serde(default)]
            pub when: Option<ExprText>,
            $(
                $(#[doc = $doc])*
                #[serde(default)]
                pub $field: Option<$ty>,
            )*
            /// With `hetu`: whether temporary identity codes (individual number 900–999) are
            /// accepted. Default true.
            #[serde(default = "yes")]
            pub temporary: bool,
        }

        /// A rule's check, one variant per kind.
        #[derive(Debug, Clone, Copy)]
        pub enum Check<'a> {
            $( $variant(&'a $ty), )*
        }

        /// The checks a rule can give, as written in line files.
        pub const CHECKS: &[&str] = &[$( stringify!($field), )*];

        impl<'a> Check<'a> {
            /// Every check the rule gives (a valid rule gives exactly one).
            pub fn all(rule: &'a RuleSpec) -> Vec<Check<'a>> {
                [$( rule.$field.as_ref().map(Check::$variant), )*]
                    .into_iter()
                    .flatten()
                    .collect()
            }

            /// What the check's kind is and does.
            pub fn kind(self) -> &'a dyn RuleKind {
                match self {
                    $( Check::$variant(c) => c, )*
                }
            }
        }
    };
}

rule_kinds! {
    /// Check: these columns have a value.
    required => Required(RequiredCheck),
    /// Check: no two rows share these columns' values (the first row is kept, later ones
    /// break the rule).
    unique => Unique(UniqueCheck),
    /// Check: the column's value is one of the listed ones (when present).
    values => Values(ValuesCheck),
    /// Check: the column holds a valid Finnish personal identity code (when present).
    hetu => Hetu(HetuCheck),
    /// Check: the column's value is a code of the code set (when present).
    in_codeset => InCodeset(CodesetCheck),
    /// Check: the column's date or timestamp lies in the run's period (parameter `period`).
    in_period => InPeriod(PeriodCheck),
    /// Check: this boolean DataFusion SQL expression is true (a null result passes).
    expr => Expr(ExprCheck),
    /// Check: the column's value lies within `min` and `max` (inclusive; either may be
    /// left out). Numbers, dates (`2025-01-01`) and timestamps.
    range => Range(RangeCheck),
    /// Check: the column's text matches the regular expression (the whole value).
    regex => Regex(RegexCheck),
    /// Check: these date or timestamp columns are in order, each no later than the next
    /// (pairs with a missing value are not compared).
    order => Order(OrderCheck),
    /// Check: the column's value is a key of another step's rows (relationship).
    exists_in => ExistsIn(ExistsCheck),
    /// Dataset check: the number of rows lies within `min` and `max`.
    rows => Rows(CountBounds),
    /// Dataset check: the share of missing values of a column is at most `max`.
    null_share => NullShare(NullShareCheck),
    /// Dataset check: the latest value of this date or timestamp column lies in the run's
    /// period (the data is not stale).
    fresh => Fresh(FreshCheck),
    /// Dataset check: every one of these submitters sent rows for the period (the values of
    /// the step's `submitter` column; for `_object`, the file name up to its first `.` or
    /// `_`); a missing one is named. Listed, or every code of a code set (e.g. the
    /// wellbeing services counties).
    submitters => Submitters(SubmittersCheck),
    /// Dataset check: each submitter's volume is plausible against the previous period's
    /// current release: its rows now over its rows then lie within `1/max_ratio` and
    /// `max_ratio`. Each one beyond is named with both counts and the ratio, one absent
    /// before as new, one absent now as missing; a line's first period passes.
    change => Change(ChangeCheck),
    /// Check: within each group (`group`, default `_object`: the rows of one submitted
    /// object) the row whose `code` is `total` equals the sum of the other rows in each of
    /// `columns` within `tolerance` (default 0); otherwise, or when the group has no such
    /// row or several, every row of the group breaks the rule (`totals-mismatch: …`).
    totals => Totals(TotalsCheck),
}

impl<'a> Check<'a> {
    /// The rule's one check; `None` when it gives none or several (the loader reports
    /// that as V101 before anything is planned).
    pub fn of(rule: &'a RuleSpec) -> Option<Check<'a>> {
        match Check::all(rule).as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }
}

impl RuleSpec {
    /// What the rule's one check is and does; `None` when it gives none or several.
    pub fn kind(&self) -> Option<&dyn RuleKind> {
        Check::of(self).map(Check::kind)
    }
}

/// Wire types of the kinds that take one column: transparent over its name, so the line
/// file writes `hetu: henkilotunnus`.
macro_rules! column_check {
    ($(#[doc = $doc:literal])* $name:ident) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, ::serde::Deserialize, ::serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(pub $crate::line::spec::Name);
        $crate::steps::validate::rules::transparent_schema!($name, $crate::line::spec::Name);

        impl std::ops::Deref for $name {
            type Target = $crate::line::spec::Name;
            fn deref(&self) -> &$crate::line::spec::Name {
                &self.0
            }
        }
    };
}
pub(crate) use column_check;

/// The JSON Schema of a wire newtype is its inner type's, unchanged (inlined or referred to
/// as the inner type is): line authors see no trace of the wrapper.
macro_rules! transparent_schema {
    ($name:ty, $inner:ty) => {
        impl ::schemars::JsonSchema for $name {
            fn inline_schema() -> bool {
                <$inner as ::schemars::JsonSchema>::inline_schema()
            }
            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                <$inner as ::schemars::JsonSchema>::schema_name()
            }
            fn schema_id() -> ::std::borrow::Cow<'static, str> {
                <$inner as ::schemars::JsonSchema>::schema_id()
            }
            fn json_schema(g: &mut ::schemars::SchemaGenerator) -> ::schemars::Schema {
                <$inner as ::schemars::JsonSchema>::json_schema(g)
            }
        }
    };
}
pub(crate) use transparent_schema;

/// One column name or a list of them.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(Name),
    Many(Vec<Name>),
}

impl OneOrMany {
    pub fn names(&self) -> Vec<&Name> {
        match self {
            OneOrMany::One(n) => vec![n],
            OneOrMany::Many(v) => v.iter().collect(),
        }
    }
}

/// How many checks a rule gives (a valid rule gives exactly one).
pub fn check_count(rule: &RuleSpec) -> usize {
    Check::all(rule).len()
}

/// The rule's category: as written, or inferred from its check.
pub fn category(rule: &RuleSpec) -> Category {
    rule.category
        .or_else(|| rule.kind().map(RuleKind::category))
        .unwrap_or(Category::Conformance)
}

/// Whether a rule checks the whole dataset rather than each row.
pub fn is_dataset_check(rule: &RuleSpec) -> bool {
    rule.kind().is_some_and(|k| k.scope() == Scope::Dataset)
}

/// A placed V205 for a DataFusion error of a rule's plan.
pub(crate) fn plan_error<'p>(
    planner: &'p Planner<'_>,
    at: Pos,
) -> impl Fn(DataFusionError) -> Diags + 'p {
    move |e: DataFusionError| {
        vec![Diagnostic::error(
            Code::V205,
            &planner.line.file,
            at,
            crate::plan::expr::first_line(&e.to_string()),
        )]
    }
}
