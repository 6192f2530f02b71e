//! Which columns a plan reads of each table it scans.
//!
//! The scheduler spills or streams only the columns of a step's output that its consumers
//! read (`run/schedule.rs`), so it asks each consumer's plan what its scans read. DataFusion
//! answers that with the projections its optimiser pushes into the scans. The whole
//! optimiser (some thirty rules, two or three passes) did it for every step before the run
//! started, and again when each step ran: at 100 000 rows of `valvonta` the first round was
//! 4 % of the run's CPU time (PROFILE.md, twenty-fifth round). Only one rule moves
//! projections, so [`projected`] runs the analyzer and that rule alone. The columns a plan
//! computes with are counted before any rule runs (a correlated subquery's outer columns
//! among them); the other rules rewrite or remove computations, and decorrelation turns a
//! correlated subquery into a join on columns already counted. So what the rule alone
//! leaves in a scan is what the whole optimiser leaves, or more, and nothing the run reads
//! is left out. The rule narrows the scans inside uncorrelated subqueries too; a correlated
//! subquery's scans it leaves whole (the whole optimiser would narrow them after
//! decorrelating), so a consumer with one reads that input whole. No shipped line has one
//! (a test compares the two for every shipped line).

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::Optimizer;
use datafusion::optimizer::optimize_projections::OptimizeProjections;

/// `plan` analysed, with each scan's projection the columns it reads (see the module).
pub fn projected(state: &SessionState, plan: &LogicalPlan) -> Result<LogicalPlan> {
    let analysed =
        (state.analyzer()).execute_and_check(plan.clone(), state.config_options(), |_, _| {})?;
    Optimizer::with_rules(vec![Arc::new(OptimizeProjections::new())]).optimize(
        analysed,
        state,
        |_, _| {},
    )
}

/// The columns `plan` reads of table `table`, over all its scans of it; `None` when one
/// scan reads every column.
pub fn columns_scanned(plan: &LogicalPlan, table: &str) -> Option<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let mut all = false;
    let _ = plan.apply_with_subqueries(|p| {
        if let LogicalPlan::TableScan(t) = p
            && t.table_name.table() == table
        {
            let schema = t.source.schema();
            match &t.projection {
                Some(cols) => names.extend(cols.iter().map(|&i| schema.field(i).name().clone())),
                None => all = true,
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    (!all).then_some(names)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Every step of every shipped line (and the test lines with SQL): the projection rule
    /// alone leaves in each scan exactly the columns the whole optimiser leaves, so the
    /// cheaper pass narrows the run's spills and streams as much as before.
    #[test]
    fn the_projection_rule_alone_reads_what_the_whole_optimiser_reads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files: Vec<_> = std::fs::read_dir(root.join("lines"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        assert!(files.len() >= 11, "{files:?}");
        let state = crate::plan::session(Some(b"k"), 2).state();
        let mut compared = 0;
        for file in &files {
            let checked = crate::plan::check::check(file).unwrap();
            for (step, plan) in &checked.plans {
                let whole = state.optimize(&plan.plan).unwrap();
                let cheap = projected(&state, &plan.plan).unwrap();
                for input in checked.plans.keys() {
                    let (w, c) = (
                        columns_scanned(&whole, input),
                        columns_scanned(&cheap, input),
                    );
                    assert_eq!(c, w, "{}: step `{step}` reading `{input}`", file.display());
                    compared += usize::from(w.as_ref().is_some_and(|w| !w.is_empty()));
                }
            }
        }
        // Most consumers read only some of their inputs' columns: the comparison is not
        // one of plans that read everything.
        assert!(compared >= 20, "{compared}");
    }

    /// The plan of `query` over tables `a (x, y, z)` and `b (x, w, v)`, with the session.
    fn plan_over_a_and_b(query: &str) -> (LogicalPlan, SessionState) {
        let ctx = crate::plan::session(Some(b"k"), 1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let plan = rt.block_on(async {
            for t in [
                "CREATE TABLE a (x INT, y INT, z INT) AS VALUES (1, 2, 3)",
                "CREATE TABLE b (x INT, w INT, v INT) AS VALUES (1, 2, 4)",
            ] {
                ctx.sql(t).await.unwrap();
            }
            ctx.sql(query).await.unwrap().logical_plan().clone()
        });
        (plan, ctx.state())
    }

    fn set(s: &[&str]) -> Option<BTreeSet<String>> {
        Some(s.iter().map(|s| s.to_string()).collect())
    }

    /// The scan inside a subquery (`IN (SELECT …)`) is narrowed too: it reads the one
    /// column the subquery selects, the outer scan the two the query uses.
    #[test]
    fn a_subquerys_scan_reads_only_what_it_selects() {
        let (plan, state) = plan_over_a_and_b("SELECT y FROM a WHERE x IN (SELECT x FROM b)");
        let cheap = projected(&state, &plan).unwrap();
        assert_eq!(columns_scanned(&cheap, "b"), set(&["x"]));
        assert_eq!(columns_scanned(&cheap, "a"), set(&["x", "y"]));
    }

    /// A correlated subquery's scan is left whole by the projection rule alone: more than
    /// the whole optimiser reads of it, never less; the outer scan reads the same.
    #[test]
    fn a_correlated_subquerys_scan_is_read_whole_never_less() {
        let (plan, state) = plan_over_a_and_b(
            "SELECT y FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.x = a.x AND b.w > 1)",
        );
        let (cheap, whole) = (
            projected(&state, &plan).unwrap(),
            state.optimize(&plan).unwrap(),
        );
        assert_eq!(columns_scanned(&whole, "b"), set(&["w", "x"]));
        assert_eq!(columns_scanned(&cheap, "b"), None);
        assert_eq!(columns_scanned(&cheap, "a"), columns_scanned(&whole, "a"));
        assert_eq!(columns_scanned(&cheap, "a"), set(&["x", "y"]));
    }
}
