//! Planning an sql step: one query over the input steps, parameters bound.

use std::collections::BTreeSet;

use datafusion::prelude::SessionContext;

use crate::diag::Code;
use crate::line::spec::Pos;
use crate::line::spec::{SqlSpec, StepKind};
use crate::plan::PlanStep;
use crate::plan::{Diags, Inputs, Planner, StepPlan};

impl Planner<'_> {
    pub(crate) fn plan_sql(&self, q: &SqlSpec, inputs: &Inputs) -> Result<StepPlan, Diags> {
        let ctx = SessionContext::new_with_state(self.state.clone());
        for i in &q.inputs {
            if let Some((p, _)) = inputs.get(i.value.as_str()) {
                ctx.register_table(i.value.as_str(), p.clone())
                    .map_err(|e| vec![self.diag(Code::V205, i.at, e.to_string())])?;
            }
        }
        let state = ctx.state();
        // Planning never waits: the inputs are registered in memory, so resolving their
        // names is ready at once. A query that would wait (a catalog that fetches) is refused
        // rather than blocking a thread of the run's runtime, as `block_on` here would.
        let plan = futures::FutureExt::now_or_never(state.create_logical_plan(&q.query.value))
            .unwrap_or_else(|| {
                Err(datafusion::error::DataFusionError::Plan(
                    "planning the query would wait on a catalog; an sql step reads only its inputs"
                        .into(),
                ))
            })
            .map_err(|e| vec![self.expr_error(&q.query, e)])?;
        // A query, nothing else: `COPY … TO` would write rows past every control, and DDL or
        // DML would change the session.
        datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|_| {
                vec![self.diag(
                    Code::V203,
                    self.locate(&q.query, ""),
                    "an sql step is a query (SELECT …): COPY, DDL, DML and other statements are not allowed",
                )]
            })?;
        let plan = self.bind_plan(plan, &q.query)?;
        let names: BTreeSet<String> = plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let (dims, area) = inputs
            .values()
            .next()
            .map(|(_, i)| (i.dimensions.clone(), i.area.clone()))
            .unwrap_or_default();
        let dims = dims.into_iter().filter(|d| names.contains(d)).collect();
        let area = area.filter(|a| names.contains(a));
        Ok(self.finish(StepKind::Sql, plan, vec![], dims, area))
    }
}

impl PlanStep for SqlSpec {
    fn plan(&self, p: &Planner, _name: &str, inputs: &Inputs) -> Result<StepPlan, Diags> {
        p.plan_sql(self, inputs)
    }

    fn made_at(&self, p: &Planner, _column: &str) -> Option<Pos> {
        Some(p.locate(&self.query, ""))
    }
}
