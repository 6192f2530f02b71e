//! Where a step's plan runs: in this process, or on a Ballista cluster (`--engine
//! ballista://HOST:PORT`, with the `ballista` feature; the cluster itself is `cluster.rs`).
//!
//! [`engine_problem`] says why an `--engine` cannot be used; `connect` connects to the
//! cluster at the start of a run and checks it. Step by step, `placed` decides from the
//! personal-data lineage of the step's inputs and plan (`runs_here`, `pseudonymises`) whether
//! the plan stays here or goes to the cluster, so the cluster never sees a clear identity
//! code. Without the `ballista` feature `Cluster` is uninhabited and every step runs here;
//! both variants of each `cfg` are kept side by side in this file.

use super::Shared;
use super::report::{RunCode, RunFailure, fail};
use crate::store::Store;

#[cfg(feature = "ballista")]
pub(super) type Cluster = crate::run::cluster::Cluster;
/// Without the `ballista` feature there is no cluster to run on.
#[cfg(not(feature = "ballista"))]
pub(super) type Cluster = std::convert::Infallible;

/// Why `--engine ENGINE` cannot be used, if it cannot.
pub fn engine_problem(engine: &str) -> Option<String> {
    if engine == "local" {
        return None;
    }
    #[cfg(feature = "ballista")]
    {
        crate::run::cluster::scheduler_address(engine)
            .err()
            .map(|e| e.to_string())
    }
    #[cfg(not(feature = "ballista"))]
    Some(if engine.starts_with("ballista://") {
        format!(
            "--engine {engine}: this valtava was built without Ballista; build it with `cargo build --release --features ballista`"
        )
    } else {
        format!("unknown engine `{engine}`; use `local` or `ballista://HOST:PORT`")
    })
}

/// Connects to the engine named by `--engine`, if it is not this process.
pub(super) async fn connect(
    engine: Option<&str>,
    state: &datafusion::execution::SessionState,
    store: &Store,
    run_id: &str,
) -> Result<Option<Cluster>, RunFailure> {
    let engine = match engine {
        None | Some("local") => return Ok(None),
        Some(e) => e,
    };
    if let Some(problem) = engine_problem(engine) {
        return Err(fail(RunCode::Param, problem));
    }
    #[cfg(feature = "ballista")]
    {
        let c = crate::run::cluster::Cluster::connect(engine, state, store, run_id)
            .map_err(|e| fail(e.code(), e))?;
        c.check()
            .await
            .map_err(|e| fail(RunCode::Engine, format!("engine `{engine}`: {e}")))?;
        Ok(Some(c))
    }
    #[cfg(not(feature = "ballista"))]
    {
        // `engine_problem` refuses every other engine in this build.
        let _ = (state, store, run_id);
        Err(fail(RunCode::Param, format!("unknown engine `{engine}`")))
    }
}

/// Whether a step must run in this process even when a cluster is used: a source (its rows
/// come from a parser here), a step any of whose inputs holds a clear personal value, and a
/// step that pseudonymises. The cluster sees pseudonyms at most, and never needs the key.
pub(super) fn runs_here(inputs: &crate::plan::Inputs, is_source: bool) -> bool {
    is_source
        || inputs
            .values()
            .any(|(_, i)| i.lineage.values().any(|t| !t.pseudonym))
}

/// Whether a plan calls `pseudonym` anywhere (its expressions and subqueries).
pub(super) fn pseudonymises(plan: &datafusion::logical_expr::LogicalPlan) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut found = false;
    let _ = plan.apply_with_subqueries(|p| {
        for e in p.expressions() {
            let _ = e.apply(|x| {
                if matches!(x, datafusion::logical_expr::Expr::ScalarFunction(f) if f.name() == "pseudonym")
                {
                    found = true;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// The plan of a step and the session that executes it: here, or on the cluster with its
/// inputs copied where the cluster reads them.
pub(super) async fn placed(
    shared: &Shared,
    step: &str,
    plan: datafusion::logical_expr::LogicalPlan,
    here: bool,
) -> Result<
    (
        datafusion::logical_expr::LogicalPlan,
        datafusion::execution::SessionState,
    ),
    RunFailure,
> {
    match &shared.cluster {
        None => Ok((plan, shared.state.clone())),
        Some(_) if here => Ok((plan, shared.state.clone())),
        #[cfg(feature = "ballista")]
        Some(c) => {
            let plan = c
                .prepare(step, plan, &shared.state, &shared.store.inner)
                .await
                .map_err(|e| fail(RunCode::Engine, format!("step `{step}`: {e}")))?;
            Ok((plan, c.state.clone()))
        }
        #[cfg(not(feature = "ballista"))]
        Some(never) => {
            let _ = step;
            match *never {}
        }
    }
}
