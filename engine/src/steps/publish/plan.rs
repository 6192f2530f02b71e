//! Planning a publish step: the published columns and their small-cell suppression.

use std::sync::Arc;

use arrow::datatypes::{DataType, Schema};
use datafusion::common::{Column, DataFusionError};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, SortExpr, col, lit};
use datafusion::scalar::ScalarValue;

use crate::diag::{Code, Diagnostic};
use crate::line::spec::{Name, Pos, PublishSpec, StepKind};
use crate::plan::expr::first_line;
use crate::plan::{
    Diags, Disclosure, InputInfo, OBJECT_COLUMN, Planner, ROW_COLUMN, STATUS_COLUMN, StepPlan,
};

impl Planner<'_> {
    pub(crate) fn plan_publish(
        &self,
        p: &PublishSpec,
        b: LogicalPlanBuilder,
        info: &InputInfo,
    ) -> Result<StepPlan, Diags> {
        let schema = b.schema().clone();
        let err = |at: Pos| {
            move |e: DataFusionError| {
                vec![Diagnostic::error(
                    Code::V205,
                    &self.line.file,
                    at,
                    first_line(&e.to_string()),
                )]
            }
        };
        let dims: Vec<String> = match &p.dimensions {
            Some(d) => {
                for n in d {
                    self.column_check(&schema, n).map_err(|d| vec![d])?;
                }
                d.iter().map(|n| n.value.clone()).collect()
            }
            None => info.dimensions.clone(),
        };
        if !info.lineage.is_empty() {
            return Err(info
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
                .collect());
        }
        let measures: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| {
                !dims.contains(n) && !n.starts_with("__") && n != OBJECT_COLUMN && n != ROW_COLUMN
            })
            .collect();
        let mut exprs: Vec<Expr> = Vec::new();
        let min = p
            .disclosure
            .as_ref()
            .map(|d| d.min_count.value)
            .unwrap_or(5);
        let count = match p.disclosure.as_ref().and_then(|d| d.count.clone()) {
            Some(c) => {
                self.column_check(&schema, &c).map_err(|d| vec![d])?;
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
            self.column_check(&schema, n).map_err(|d| vec![d])?;
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
        let mut counts: Vec<(String, Pos)> = Vec::new();
        if let Some(c) = count.as_ref().filter(|_| min > 1) {
            let at = |c: &str| {
                declared
                    .iter()
                    .find(|n| n.value == c)
                    .map_or(p.input.at, |n| n.at)
            };
            counts.push((c.clone(), at(c)));
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
        }
        for f in schema.fields() {
            let n = f.name();
            if n.starts_with("__") || n == OBJECT_COLUMN || n == ROW_COLUMN {
                continue;
            }
            exprs.push(col(Column::from_name(n.as_str())));
        }
        if count.is_some() && min > 1 {
            exprs.push(lit(ScalarValue::Utf8(None)).alias(STATUS_COLUMN));
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
        let plan = b
            .project(exprs)
            .and_then(|b| b.sort(sort))
            .and_then(|b| b.build())
            .map_err(err(p.input.at))?;
        let mut out = self.finish(StepKind::Publish, plan, vec![], dims);
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
        });
        Ok(out)
    }
}
