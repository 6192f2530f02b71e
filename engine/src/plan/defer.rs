//! Computing a step's costly columns only for the rows that need them.
//!
//! A step's plan ends in a projection that computes every output column for every row,
//! but the run uses a row's value only where the row goes somewhere: a row outside the
//! step's filter is dropped (counted), so none of its values is needed; a column that no
//! later step reads is needed only for the rows quarantined, which keep every column. A
//! pseudonym that nothing downstream reads was an HMAC for each of 2 M rows of
//! `hoitoonpaasy`; a `to_char` of the rows the filter drops, half of them.
//!
//! [`deferred`] rewrites such a column's expression `e` as `CASE WHEN <needed> THEN e END`
//! (DataFusion evaluates the branch only on the rows that take it). `<needed>` refers to
//! the rule and filter columns of the same projection, so the projection is split in two:
//! the inner computes everything else and passes the deferred expressions' inputs through,
//! the outer computes the deferred columns. Only expressions that call a function are
//! deferred (a column, a literal or arithmetic costs less than the selection), never a
//! volatile one (its state would see fewer rows), and only columns that may be null
//! already (a non-null column's schema would change).
//!
//! So a function that fails on a value fails the run only where the value is used: a
//! `to_date` of a text that is no date, in a row the filter drops or in a column nothing
//! reads, no longer stops it — as a column no later step reads is not computed at all in a
//! step without rules (`run/schedule.rs`, narrowing).

use std::collections::BTreeMap;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DataFusionError};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, col, when};

use crate::line::spec::Severity;
use crate::plan::{FILTER_COLUMN, StepPlan};

/// `plan` with its costly columns computed only where needed: those named in `read` (or
/// all, when `None`) for the rows in the step's filter, the others for the rows a `reject`
/// rule quarantines. `read` must name every column the run reads of the step's passed
/// rows: its consumers' columns, the submitter, metrics, dataset checks and captures (the
/// schedule gives `None` where it cannot tell). The plan is optimised first, so that its
/// projections are merged into the one that computes everything; one that then does not
/// end in a projection, or has nothing to defer, is returned as it was.
pub fn deferred(
    mut plan: StepPlan,
    read: Option<&[String]>,
    state: &SessionState,
) -> Result<StepPlan, DataFusionError> {
    let rejects = (plan.rules.iter()).any(|r| r.severity == Severity::Reject);
    if !plan.filtered && !rejects {
        return Ok(plan);
    }
    let optimised = state.optimize(&plan.plan)?;
    let LogicalPlan::Projection(top) = &optimised else {
        return Ok(plan);
    };
    let schema = top.schema.clone();
    let conditions = needed_when(&plan, top, read);
    if conditions.iter().all(Option::is_none) {
        return Ok(plan);
    }
    // The inputs of the deferred expressions, passed through the inner projection.
    let mut passed: BTreeMap<Column, String> = BTreeMap::new();
    for (e, c) in top.expr.iter().zip(&conditions) {
        if c.is_some() {
            let refs: std::collections::BTreeSet<&Column> = e.column_refs().into_iter().collect();
            for r in refs {
                let n = passed.len();
                passed
                    .entry(r.clone())
                    .or_insert_with(|| format!("__defer{n}"));
            }
        }
    }
    let mut inner: Vec<Expr> = (top.expr.iter().zip(&conditions))
        .filter(|(_, c)| c.is_none())
        .map(|(e, _)| e.clone())
        .collect();
    inner.extend((passed.iter()).map(|(c, alias)| Expr::Column(c.clone()).alias(alias.as_str())));
    let mut outer = Vec::with_capacity(top.expr.len());
    for (i, (e, c)) in top.expr.iter().zip(&conditions).enumerate() {
        let (qualifier, field) = schema.qualified_field(i);
        let name = field.name().as_str();
        outer.push(match c {
            None => Expr::Column(Column::new(qualifier.cloned(), name)),
            Some(needed) => {
                let body = e.clone().unalias_nested().data.transform(|x| {
                    Ok(match &x {
                        Expr::Column(c) => match passed.get(c) {
                            Some(alias) => Transformed::yes(col(Column::from_name(alias))),
                            None => Transformed::no(x),
                        },
                        _ => Transformed::no(x),
                    })
                })?;
                when(needed.clone(), body.data)
                    .end()?
                    .alias_qualified(qualifier.cloned(), name)
            }
        });
    }
    plan.plan = LogicalPlanBuilder::from(top.input.as_ref().clone())
        .project(inner)?
        .project(outer)?
        .build()?;
    Ok(plan)
}

/// For each expression of the projection `top` of `plan`, the condition under which its
/// value is needed, where it is worth deferring: the filter for a column the run reads, a
/// `reject` rule broken for one it does not.
fn needed_when(
    plan: &StepPlan,
    top: &datafusion::logical_expr::Projection,
    read: Option<&[String]>,
) -> Vec<Option<Expr>> {
    let in_scope = plan.filtered.then(|| col(Column::from_name(FILTER_COLUMN)));
    let broken = (plan.rules.iter())
        .filter(|r| r.severity == Severity::Reject)
        .map(|r| col(Column::from_name(r.column.as_str())).is_not_null())
        .reduce(Expr::or);
    // Rows outside the filter are not quarantined either.
    let quarantined = match (&in_scope, broken) {
        (Some(f), Some(b)) => Some(f.clone().and(b)),
        (None, b) => b,
        (Some(f), None) => Some(f.clone()),
    };
    (top.expr.iter().enumerate())
        .map(|(i, e)| {
            let (_, field) = top.schema.qualified_field(i);
            if field.name().starts_with("__") || !field.is_nullable() || !costly(e) {
                return None;
            }
            let is_read = read.is_none_or(|r| r.iter().any(|n| n == field.name()));
            if is_read {
                in_scope.clone()
            } else {
                quarantined.clone()
            }
        })
        .collect()
}

/// Whether evaluating `e` calls a function (and none that is volatile).
fn costly(e: &Expr) -> bool {
    if e.is_volatile() {
        return false;
    }
    let mut calls = false;
    let _ = e.apply(|x| {
        calls |= matches!(x, Expr::ScalarFunction(_));
        Ok(if calls {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    calls
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use arrow::array::{Array, AsArray, RecordBatch};
    use datafusion::datasource::{MemTable, TableProvider};

    use crate::plan::{InputInfo, Planner};

    /// A harmonise step that pseudonymises `hetu`, derives `iso` with a function, filters
    /// on `n` and quarantines unknown municipalities, run over rows of each kind.
    fn rows_of(read: Option<&[String]>) -> BTreeMap<u64, (Option<String>, Option<String>, bool)> {
        let codes = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/reference/kunta_hyvinvointialue_2023.csv");
        let text = format!(
            "line: t\ntitle: t\nparams: {{ period: {{ kind: month, default: \"2025-03\" }} }}\n\
             codesets: {{ kunnat: {{ path: \"{}\", key: kunta }} }}\n\
             steps:\n  s: {{ source: {{ format: csv, location: x.csv, columns: \
             {{ hetu: {{ type: string, personal: true }}, kunta: string, n: integer }} }} }}\n\
             \x20 h:\n    harmonise:\n      input: s\n\
             \x20     map: [{{ column: kunta, codeset: kunnat, to: hyvinvointialue }}]\n\
             \x20     derive: {{ iso: \"upper(kunta)\" }}\n      filter: \"n > 0\"\n\
             \x20     pseudonymise: [hetu]\n",
            codes.display()
        );
        let (line, _) =
            crate::line::load::load_text("t.yaml", std::path::Path::new("."), text).unwrap();
        let params = crate::plan::check::bind_params(&line, None).unwrap();
        let values = crate::line::params::expression_values(&params);
        let checked = crate::plan::check::plan_all(line, vec![], &values, b"k").unwrap();
        // Rows: passed, quarantined (municipality 999), out of the filter (n = 0).
        let rows = [
            vec![Some("010101-123N"), Some("091"), Some("1")],
            vec![Some("020202-2222"), Some("999"), Some("2")],
            vec![Some("030303-3333"), Some("049"), Some("0")],
        ];
        let batch = crate::steps::validate::testing::typed(&checked.plans["s"].output, &rows);
        let table = MemTable::try_new(batch.schema(), vec![vec![batch.clone()]]).unwrap();
        let info = InputInfo {
            schema: batch.schema(),
            ..checked.plans["s"].info()
        };
        let inputs = BTreeMap::from([(
            "s".to_string(),
            (Arc::new(table) as Arc<dyn TableProvider>, info),
        )]);
        let tables = (checked.codesets.iter())
            .map(|(k, v)| (k.clone(), v.table.clone()))
            .collect();
        let ctx = crate::plan::session(Some(b"k"), 1);
        let planner = Planner {
            line: &checked.line,
            state: ctx.state(),
            params: values,
            codesets: &tables,
            unique_filter: None,
        };
        let plan = planner.plan_step("h", &inputs).unwrap();
        let plan = match read {
            Some(_) => super::deferred(plan, read, &ctx.state()).unwrap(),
            None => plan,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = rt
            .block_on(async { ctx.execute_logical_plan(plan.plan).await?.collect().await })
            .unwrap();
        let mut out = BTreeMap::new();
        for b in batches {
            let text = |c: &str, i: usize| {
                let a = b.column_by_name(c).unwrap().as_string::<i32>();
                a.is_valid(i).then(|| a.value(i).to_string())
            };
            let rowno = b.column_by_name("_row").unwrap();
            let rowno = rowno.as_primitive::<arrow::datatypes::UInt64Type>();
            let rejected = b.column_by_name("__rm0").unwrap();
            for i in 0..b.num_rows() {
                let row = (text("hetu", i), text("iso", i), rejected.is_valid(i));
                out.insert(rowno.value(i), row);
            }
        }
        out
    }

    /// The pseudonym nothing reads is computed only for the quarantined row, the derived
    /// value read downstream only for the rows in the filter: every value the run uses is
    /// the one computed without deferring.
    #[test]
    fn costly_columns_are_computed_only_where_the_run_uses_them() {
        let whole = rows_of(None);
        let read = ["iso".to_string(), "hyvinvointialue".to_string()];
        let deferred = rows_of(Some(&read));
        assert_eq!(whole.len(), 3);
        assert!(whole.values().all(|(h, i, _)| h.is_some() && i.is_some()));
        // Passed: `iso` as before, no pseudonym.
        assert_eq!(deferred[&1], (None, whole[&1].1.clone(), false));
        // Quarantined: every column as before.
        assert_eq!(deferred[&2], whole[&2]);
        assert!(deferred[&2].2);
        // Outside the filter: neither.
        assert_eq!(deferred[&3], (None, None, false));
    }
}
