//! Personal-data lineage: which columns of a step's output identify a person, computed
//! from the step's DataFusion logical plan, not from column names.
//!
//! Why from the plan: a line author (careless or hostile) can copy an identity code under
//! any name — `upper(hetu)`, an SQL alias, a join, a union, a window function, a `min` of
//! it. Names tell nothing; the plan tells where every output value comes from. A column
//! declared `personal` in a source is personal, and so is every value computed from one,
//! whatever the operator, except through the generalisers: [`GENERALISERS`] (age, birth
//! year, sex of an identity code), counts (`count(…)`, `count(DISTINCT …)`) and a test of
//! presence (`IS [NOT] NULL`). A pseudonym is still personal: it links one person's rows.
//! Filters, join keys and grouping keys that are not output do not make anything personal
//! (a personal column used as a join key and then dropped is fine).
//!
//! Operators the walk does not know (extension nodes, unnest, recursive queries) make every
//! output personal when any input column is: unknown means personal.

use std::collections::BTreeMap;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::expr::{AggregateFunction, WindowFunction};
use datafusion::logical_expr::utils::grouping_set_to_exprlist;
use datafusion::logical_expr::{Aggregate, Distinct, Expr, JoinType, LogicalPlan, Union};

/// Scalar functions whose result no longer identifies a person (see
/// [`crate::functions`]).
pub const GENERALISERS: &[&str] = &["hetu_age", "hetu_birth_year", "hetu_sex"];

/// Aggregate functions that count: their result is a number of rows or values.
const COUNTS: &[&str] = &["count", "approx_distinct", "grouping"];

/// The function that replaces an identity code by its keyed pseudonym.
const PSEUDONYM: &str = "pseudonym";

/// Why a column identifies a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    /// The expressions from this column back to the declared column, outermost first; the
    /// last entry is the declared column (`hetu (personal)`).
    pub path: Vec<String>,
    /// The value is a keyed pseudonym, not the clear value.
    pub pseudonym: bool,
    /// Where it was last computed from another column: (step, column there). `None` while
    /// it is the declared column itself, passed on unchanged.
    pub made: Option<(String, String)>,
}

/// The personal columns of a step's output, each with why.
pub type Lineage = BTreeMap<String, Taint>;

impl Taint {
    /// A column declared personal in a source.
    pub fn declared(column: &str) -> Self {
        Self {
            path: vec![format!("{column} (personal)")],
            pseudonym: false,
            made: None,
        }
    }

    /// `tunnus ← upper(hetu) ← hetu (personal)`.
    pub fn describe(&self, column: &str) -> String {
        let mut parts = vec![column.to_string()];
        for p in &self.path {
            if parts.last() != Some(p) {
                parts.push(p.clone());
            }
        }
        parts.join(" ← ")
    }
}

/// The personal columns of `plan`'s output. `inputs` are the lineages of the steps the plan
/// scans (by table name); `step` names the step the plan belongs to.
pub fn of_plan(plan: &LogicalPlan, inputs: &BTreeMap<String, Lineage>, step: &str) -> Lineage {
    let walk = Walk { inputs, step };
    let taints = walk.node(plan);
    let mut out = Lineage::new();
    for (f, t) in plan.schema().fields().iter().zip(taints) {
        if let Some(mut t) = t {
            // A value computed in this step is named by the column it leaves the step as.
            if let Some((s, c)) = &mut t.made
                && s == step
                && c.is_empty()
            {
                *c = f.name().clone();
            }
            out.insert(f.name().clone(), t);
        }
    }
    out
}

/// The columns of `plan`'s output that count persons: a `count(DISTINCT …)` of a personal
/// value, passed on unchanged (renamed, cast, `coalesce(…, 0)`) or a column that counted
/// persons in an input (`counts` by table name). Each decides disclosure.
pub fn person_counts(
    plan: &LogicalPlan,
    inputs: &BTreeMap<String, Lineage>,
    counts: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let walk = Walk { inputs, step: "" };
    let flags = walk.counts(plan, counts);
    plan.schema()
        .fields()
        .iter()
        .zip(flags)
        .filter(|(_, c)| *c)
        .map(|(f, _)| f.name().clone())
        .collect()
}

struct Walk<'a> {
    inputs: &'a BTreeMap<String, Lineage>,
    step: &'a str,
}

/// The taint of each output column of a plan node, by position.
type Taints = Vec<Option<Taint>>;

impl Walk<'_> {
    /// `t` carried through expression `e` of this step.
    fn through(&self, t: Taint, e: &Expr) -> Taint {
        // The engine's own wrappers (totals' codes over `__g_…` columns) are not shown.
        if e.column_refs().iter().any(|c| c.name.starts_with("__")) {
            return Taint {
                pseudonym: false,
                ..t
            };
        }
        Taint {
            path: std::iter::once(shown(e)).chain(t.path).collect(),
            pseudonym: false,
            made: Some((self.step.to_string(), String::new())),
        }
    }

    fn node(&self, plan: &LogicalPlan) -> Taints {
        let width = plan.schema().fields().len();
        let out = match plan {
            LogicalPlan::TableScan(s) => {
                let lineage = self.inputs.get(s.table_name.table());
                s.projected_schema
                    .fields()
                    .iter()
                    .map(|f| lineage.and_then(|l| l.get(f.name()).cloned()))
                    .collect()
            }
            LogicalPlan::Projection(p) => {
                let input = self.node(&p.input);
                p.expr
                    .iter()
                    .map(|e| self.expr(e, p.input.schema(), &input))
                    .collect()
            }
            LogicalPlan::Filter(f) => self.node(&f.input),
            LogicalPlan::Sort(s) => self.node(&s.input),
            LogicalPlan::Limit(l) => self.node(&l.input),
            LogicalPlan::Repartition(r) => self.node(&r.input),
            LogicalPlan::SubqueryAlias(a) => self.node(&a.input),
            LogicalPlan::Subquery(s) => self.node(&s.subquery),
            LogicalPlan::Distinct(Distinct::All(input)) => self.node(input),
            LogicalPlan::Distinct(Distinct::On(d)) => {
                let input = self.node(&d.input);
                d.select_expr
                    .iter()
                    .map(|e| self.expr(e, d.input.schema(), &input))
                    .collect()
            }
            LogicalPlan::Aggregate(a) => self.aggregate(a, width),
            LogicalPlan::Window(w) => {
                let mut out = self.node(&w.input);
                let input = out.clone();
                out.extend(
                    w.window_expr
                        .iter()
                        .map(|e| self.expr(e, w.input.schema(), &input)),
                );
                out
            }
            LogicalPlan::Join(j) => {
                let (left, right) = self.joined(j);
                join_output(j.join_type, left, right, None)
            }
            LogicalPlan::Union(u) => self.union(u, width),
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => vec![None; width],
            other => {
                let input: Taints = other
                    .inputs()
                    .into_iter()
                    .flat_map(|i| self.node(i))
                    .collect();
                unknown(&input, width)
            }
        };
        if out.len() == width {
            out
        } else {
            unknown(&out, width)
        }
    }

    /// The taints of an aggregate's output: grouping keys, grouping id, then aggregates.
    fn aggregate(&self, a: &Aggregate, width: usize) -> Taints {
        let input = self.node(&a.input);
        let schema = a.input.schema();
        match grouping_set_to_exprlist(&a.group_expr) {
            Ok(groups) => {
                let mut out: Taints = groups
                    .iter()
                    .map(|e| self.expr(e, schema, &input))
                    .collect();
                if matches!(a.group_expr.as_slice(), [Expr::GroupingSet(_)]) {
                    out.push(None);
                }
                out.extend(a.aggr_expr.iter().map(|e| self.expr(e, schema, &input)));
                out
            }
            Err(_) => unknown(&input, width),
        }
    }

    /// The taints of a union's output: a column is personal if it is in any branch.
    fn union(&self, u: &Union, width: usize) -> Taints {
        let mut out: Taints = vec![None; width];
        for input in &u.inputs {
            for (o, t) in out.iter_mut().zip(self.node(input)) {
                match (o.as_mut(), t) {
                    (None, t) => *o = t,
                    // Pseudonyms only when every branch gives one.
                    (Some(o), Some(t)) => o.pseudonym &= t.pseudonym,
                    (Some(_), None) => {}
                }
            }
        }
        out
    }

    /// Which output columns of a plan node count persons, by position.
    fn counts(&self, plan: &LogicalPlan, of: &BTreeMap<String, Vec<String>>) -> Vec<bool> {
        let width = plan.schema().fields().len();
        let out = match plan {
            LogicalPlan::TableScan(s) => {
                let c = of.get(s.table_name.table());
                s.projected_schema
                    .fields()
                    .iter()
                    .map(|f| c.is_some_and(|c| c.contains(f.name())))
                    .collect()
            }
            LogicalPlan::Projection(p) => {
                let input = self.counts(&p.input, of);
                p.expr
                    .iter()
                    .map(|e| counted(e, p.input.schema(), &input))
                    .collect()
            }
            LogicalPlan::Aggregate(a) => {
                let input = self.counts(&a.input, of);
                let taints = self.node(&a.input);
                let schema = a.input.schema();
                let groups = grouping_set_to_exprlist(&a.group_expr).unwrap_or_default();
                let mut out: Vec<bool> =
                    groups.iter().map(|e| counted(e, schema, &input)).collect();
                if matches!(a.group_expr.as_slice(), [Expr::GroupingSet(_)]) {
                    out.push(false);
                }
                out.extend(a.aggr_expr.iter().map(|e| match strip(e) {
                    Expr::AggregateFunction(f) => {
                        ((f.func.name() == "count" && f.params.distinct)
                            || f.func.name() == "approx_distinct")
                            && self.first(f.params.args.iter(), schema, &taints).is_some()
                    }
                    _ => false,
                }));
                out
            }
            LogicalPlan::Filter(f) => self.counts(&f.input, of),
            LogicalPlan::Sort(s) => self.counts(&s.input, of),
            LogicalPlan::Limit(l) => self.counts(&l.input, of),
            LogicalPlan::Repartition(r) => self.counts(&r.input, of),
            LogicalPlan::SubqueryAlias(a) => self.counts(&a.input, of),
            LogicalPlan::Distinct(Distinct::All(input)) => self.counts(input, of),
            LogicalPlan::Window(w) => {
                let mut out = self.counts(&w.input, of);
                out.resize(width, false);
                out
            }
            LogicalPlan::Join(j) => join_output(
                j.join_type,
                self.counts(&j.left, of),
                self.counts(&j.right, of),
                false,
            ),
            LogicalPlan::Union(u) => {
                let mut out = vec![true; width];
                for input in &u.inputs {
                    for (o, c) in out.iter_mut().zip(self.counts(input, of)) {
                        *o &= c;
                    }
                }
                out
            }
            _ => vec![false; width],
        };
        if out.len() == width {
            out
        } else {
            vec![false; width]
        }
    }

    /// The two sides of a join, with what the join condition copies between them: a column
    /// equal to a personal value on the other side holds that value (`JOIN range(…) r ON
    /// r.value = substr(hetu, …)`), and a code set looked up by a personal value gives
    /// values chosen by it. Columns a non-equality condition ties to a personal value are
    /// personal too. A personal key whose partner is dropped leaves nothing personal.
    fn joined(&self, j: &datafusion::logical_expr::Join) -> (Taints, Taints) {
        let mut left = self.node(&j.left);
        let mut right = self.node(&j.right);
        let (ls, rs) = (j.left.schema(), j.right.schema());
        let code_set = |s: &DFSchema| {
            s.iter()
                .any(|(q, _)| q.is_some_and(|q| q.table().starts_with("__cs")))
        };
        for (l, r) in &j.on {
            let tl = self.reach(l, ls, &left);
            let tr = self.reach(r, rs, &right);
            if let Some(t) = tl {
                copy_into(&mut right, rs, r, &t, code_set(rs));
            }
            if let Some(t) = tr {
                copy_into(&mut left, ls, l, &t, code_set(ls));
            }
        }
        if let Some(f) = &j.filter {
            let both: Taints = left.iter().chain(&right).cloned().collect();
            if let Ok(schema) = ls.as_ref().clone().join(rs)
                && let Some(t) = self.reach(f, &schema, &both)
            {
                for c in f.column_refs() {
                    if let Ok(i) = ls.index_of_column(c) {
                        left[i].get_or_insert_with(|| t.clone());
                    } else if let Ok(i) = rs.index_of_column(c) {
                        right[i].get_or_insert_with(|| t.clone());
                    }
                }
            }
        }
        (left, right)
    }

    /// The taint of one output expression over an input of `schema` whose columns have
    /// `input`: the column it passes on, or a value computed (one path entry for the whole
    /// expression).
    fn expr(&self, e: &Expr, schema: &DFSchema, input: &Taints) -> Option<Taint> {
        let inner = strip(e);
        let mut t = self.reach(inner, schema, input)?;
        if let Expr::Column(c) = inner {
            // Renamed here (`hetu AS x`): made here, with nothing computed.
            if matches!(e, Expr::Alias(a) if a.name != c.name) {
                t.made = Some((self.step.to_string(), String::new()));
            }
            return Some(t);
        }
        let e = inner;
        let mut t = self.through(t, e);
        t.pseudonym = matches!(e, Expr::ScalarFunction(f) if f.name() == PSEUDONYM);
        Some(t)
    }

    /// The personal column an expression's value is computed from, if any.
    fn reach(&self, e: &Expr, schema: &DFSchema, input: &Taints) -> Option<Taint> {
        match e {
            Expr::Alias(a) => self.reach(&a.expr, schema, input),
            Expr::Column(c) => schema
                .index_of_column(c)
                .ok()
                .and_then(|i| input.get(i).cloned().flatten()),
            Expr::Cast(c) => self.reach(&c.expr, schema, input),
            Expr::TryCast(c) => self.reach(&c.expr, schema, input),
            // Presence of a value, not the value: only of a column itself (of an expression
            // it would tell whatever the expression tests).
            Expr::IsNull(x) | Expr::IsNotNull(x) if matches!(strip(x), Expr::Column(_)) => None,
            // A generaliser ends the taint of the identity code it is given as it is; any
            // other argument (`hetu_age`'s date), or a code computed from another, keeps
            // its taint.
            Expr::ScalarFunction(f) if GENERALISERS.contains(&f.name()) => {
                let bare = f
                    .args
                    .first()
                    .is_some_and(|a| matches!(strip(a), Expr::Column(_)));
                let rest = if bare { &f.args[1..] } else { &f.args[..] };
                self.first(rest.iter(), schema, input)
            }
            // A pseudonym links a person whatever it was computed from: a line that
            // pseudonymises codes of its own making would otherwise publish a dictionary.
            Expr::ScalarFunction(f) if f.name() == PSEUDONYM => Some(
                self.first(f.args.iter(), schema, input)
                    .unwrap_or_else(|| Taint {
                        path: vec![
                            "values of the line's own making (a pseudonym links a person)".into(),
                        ],
                        pseudonym: true,
                        made: Some((self.step.to_string(), String::new())),
                    }),
            ),
            Expr::AggregateFunction(AggregateFunction { func, .. })
                if COUNTS.contains(&func.name()) =>
            {
                None
            }
            Expr::WindowFunction(w) => {
                let WindowFunction { params, .. } = w.as_ref();
                // A window's partition and order decide which rows it sees, not its value.
                self.first(params.args.iter(), schema, input)
            }
            Expr::ScalarSubquery(s) => self.node(&s.subquery).into_iter().next().flatten(),
            Expr::Exists(x) => unknown(&self.node(&x.subquery.subquery), 1).pop().flatten(),
            Expr::InSubquery(x) => self
                .reach(&x.expr, schema, input)
                .or_else(|| unknown(&self.node(&x.subquery.subquery), 1).pop().flatten()),
            _ => {
                let mut found = None;
                let _ = e.apply_children(|c| {
                    found = self.reach(c, schema, input);
                    Ok(if found.is_some() {
                        TreeNodeRecursion::Stop
                    } else {
                        TreeNodeRecursion::Continue
                    })
                });
                found
            }
        }
    }

    fn first<'e>(
        &self,
        args: impl Iterator<Item = &'e Expr>,
        schema: &DFSchema,
        input: &Taints,
    ) -> Option<Taint> {
        args.into_iter().find_map(|a| self.reach(a, schema, input))
    }
}

/// An expression as a reader wrote it: columns without their step's name.
fn shown(e: &Expr) -> String {
    e.clone()
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) if c.relation.is_some() => {
                    Transformed::yes(Expr::Column(Column::from_name(c.name)))
                }
                e => Transformed::no(e),
            })
        })
        .map_or_else(
            |_| e.human_display().to_string(),
            |t| t.data.human_display().to_string(),
        )
}

/// A join's output columns by position, from its sides' (`mark`: the column a mark join adds).
pub(super) fn join_output<T>(join_type: JoinType, left: Vec<T>, right: Vec<T>, mark: T) -> Vec<T> {
    match join_type {
        JoinType::LeftSemi | JoinType::LeftAnti => left,
        JoinType::RightSemi | JoinType::RightAnti => right,
        JoinType::LeftMark => left.into_iter().chain([mark]).collect(),
        JoinType::RightMark => right.into_iter().chain([mark]).collect(),
        _ => left.into_iter().chain(right).collect(),
    }
}

/// Marks what a join key equal to a personal value gives on its side: the key column, or
/// the whole side when it is a code set (its other columns are looked up by the value).
fn copy_into(side: &mut Taints, schema: &DFSchema, key: &Expr, t: &Taint, whole: bool) {
    if whole {
        for s in side.iter_mut() {
            s.get_or_insert_with(|| t.clone());
        }
    } else if let Expr::Column(c) = strip(key)
        && let Ok(i) = schema.index_of_column(c)
    {
        side[i].get_or_insert_with(|| t.clone());
    }
}

/// Whether an expression passes on a count of persons: the column itself, renamed, cast,
/// or with its missing values filled (`coalesce(n, 0)`).
fn counted(e: &Expr, schema: &DFSchema, input: &[bool]) -> bool {
    match strip(e) {
        Expr::Column(c) => schema
            .index_of_column(c)
            .is_ok_and(|i| input.get(i).copied().unwrap_or(false)),
        Expr::ScalarFunction(f) if f.name() == "coalesce" => {
            f.args.first().is_some_and(|a| counted(a, schema, input))
                && f.args[1..]
                    .iter()
                    .all(|a| matches!(strip(a), Expr::Literal(..)))
        }
        _ => false,
    }
}

/// The expression under its aliases and casts.
fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip(&a.expr),
        Expr::Cast(c) => strip(&c.expr),
        Expr::TryCast(c) => strip(&c.expr),
        e => e,
    }
}

/// An operator whose outputs cannot be traced to its inputs: every output is personal when
/// any input is.
fn unknown(input: &Taints, width: usize) -> Taints {
    let any = input.iter().flatten().next().map(|t| Taint {
        path: std::iter::once("(an operator that cannot be traced)".to_string())
            .chain(t.path.iter().cloned())
            .collect(),
        pseudonym: false,
        made: t.made.clone(),
    });
    vec![any; width]
}
