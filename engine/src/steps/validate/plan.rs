//! Planning a validate step: the rules' joins (relationships first, then duplicates), then
//! each row rule compiled to a rule column and each dataset rule to a check evaluated at
//! the end. What a rule does is its kind's ([`super::rules`]); this file only orders the
//! phases and applies what every rule shares (`when`, the filter, the submitter column).

use std::collections::BTreeMap;

use datafusion::common::DFSchema;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, col, lit, when};
use datafusion::scalar::ScalarValue;

use super::rules::{Joins, RuleCx, RuleKind, RuleSpec, plan_error};
use crate::diag::Code;
use crate::line::spec::{Name, Severity, StepKind, ValidateSpec};
use crate::plan::RULE_PREFIX;
use crate::plan::{DatasetCheck, Diags, FILTER_COLUMN, InputInfo, Planner, StepPlan, TapRule};
use crate::plan::{Inputs, PlanStep};

impl Planner<'_> {
    /// The rule's kind, or V101 when it gives no check or several.
    fn rule_kind<'r>(&self, rule: &'r RuleSpec) -> Result<&'r dyn RuleKind, Diags> {
        rule.kind().ok_or_else(|| {
            vec![self.diag(
                Code::V101,
                rule.id.at,
                format!("rule `{}` must give exactly one check", rule.id.value),
            )]
        })
    }

    /// The rule column of a row rule, applied only where its `when` holds.
    fn rule_expr(&self, index: usize, rule: &RuleSpec, schema: &DFSchema) -> Result<Expr, Diags> {
        let kind = self.rule_kind(rule)?;
        let cx = RuleCx {
            planner: self,
            rule,
            index,
        };
        let e = kind.row_check(&cx, schema)?;
        match &rule.when {
            Some(w) => {
                let cond = self.expr(w, schema)?;
                when(cond.is_true(), e)
                    .otherwise(lit(ScalarValue::Utf8(None)))
                    .map_err(|err| vec![self.diag(Code::V205, w.at, err.to_string())])
            }
            None => Ok(e),
        }
    }

    /// The rules' joins: every rule's `join_other` (another step's keys), then every
    /// rule's `join_rows` (what the rows say of themselves, e.g. duplicates).
    fn join_rules(
        &self,
        v: &ValidateSpec,
        b: LogicalPlanBuilder,
        others: &BTreeMap<String, LogicalPlanBuilder>,
    ) -> Result<LogicalPlanBuilder, Diags> {
        let base = b.clone();
        let schema = base.schema().clone();
        let joins = Joins {
            base: &base,
            schema: &schema,
            input: &v.input,
            others,
        };
        let mut b = b;
        for phase in 0..2 {
            for (index, rule) in v.rules.iter().enumerate() {
                let Some(kind) = rule.kind() else { continue };
                let cx = RuleCx {
                    planner: self,
                    rule,
                    index,
                };
                b = match phase {
                    0 => kind.join_other(&cx, &joins, b)?,
                    _ => kind.join_rows(&cx, &joins, b)?,
                };
            }
        }
        Ok(b)
    }

    pub(crate) fn plan_validate(
        &self,
        v: &ValidateSpec,
        b: LogicalPlanBuilder,
        info: &InputInfo,
        others: BTreeMap<String, LogicalPlanBuilder>,
    ) -> Result<StepPlan, Diags> {
        // A column checked as an identity code is one: undeclared, it would be neither
        // traced nor kept from the cluster.
        self.declared_personal(
            v.rules
                .iter()
                .filter_map(|r| r.kind().and_then(RuleKind::personal_column)),
            info,
            "is checked as an identity code",
        )?;
        let schema = b.schema().clone();
        let mut exprs: Vec<Expr> = schema.columns().into_iter().map(col).collect();
        let b = self.join_rules(v, b, &others)?;
        let mut rules = Vec::new();
        let mut diags = Vec::new();
        let mut dataset_checks = Vec::new();
        for (i, rule) in v.rules.iter().enumerate() {
            if super::rules::is_dataset_check(rule) {
                match self.dataset_check(i, rule, &schema, v.submitter.as_ref()) {
                    Ok(c) => dataset_checks.push(c),
                    Err(d) => diags.extend(d),
                }
                continue;
            }
            match self.rule_expr(i, rule, b.schema()) {
                Ok(e) => {
                    let column = format!("{RULE_PREFIX}{i}");
                    exprs.push(e.alias(&column));
                    rules.push(TapRule {
                        column,
                        id: rule.id.value.clone(),
                        severity: rule.severity,
                    });
                }
                Err(d) => diags.extend(d),
            }
        }
        if let Some(f) = &v.filter {
            match self.condition(f, &schema) {
                Ok(e) => exprs.push(e.alias(FILTER_COLUMN)),
                Err(d) => diags.extend(d),
            }
        }
        let submitter = match &v.submitter {
            Some(s) => match self.column_check(&schema, s) {
                Ok(_) => Some(s.value.clone()),
                Err(d) => {
                    diags.push(d);
                    None
                }
            },
            None => None,
        };
        if !diags.is_empty() {
            return Err(diags);
        }
        let plan = b
            .project(exprs)
            .and_then(|b| b.build())
            .map_err(plan_error(self, v.input.at))?;
        let mut p = self.finish(
            StepKind::Validate,
            plan,
            rules,
            info.dimensions.clone(),
            info.area.clone(),
        );
        p.dataset_checks = dataset_checks;
        p.submitter = submitter;
        Ok(p)
    }

    /// A dataset rule's check; its severity is `warn` or `fail` (there is no row to reject).
    fn dataset_check(
        &self,
        index: usize,
        rule: &RuleSpec,
        schema: &DFSchema,
        submitter: Option<&Name>,
    ) -> Result<DatasetCheck, Diags> {
        if rule.severity == Severity::Reject {
            return Err(vec![self.diag(
                Code::V003,
                rule.id.at,
                format!("rule `{}` checks the whole dataset: its severity is `warn` or `fail`, not `reject`", rule.id.value),
            )]);
        }
        let cx = RuleCx {
            planner: self,
            rule,
            index,
        };
        Ok(DatasetCheck {
            id: rule.id.value.clone(),
            severity: rule.severity,
            rule: self
                .rule_kind(rule)?
                .dataset_check(&cx, schema, submitter)?,
        })
    }
}

impl PlanStep for ValidateSpec {
    fn plan(&self, p: &Planner, _name: &str, inputs: &Inputs) -> Result<StepPlan, Diags> {
        let (b, info) = p.scan(inputs, &self.input)?;
        let mut others = BTreeMap::new();
        for r in &self.rules {
            if let Some(step) = r.kind().and_then(|k| k.other_step()) {
                others.insert(step.value.clone(), p.scan(inputs, step)?.0);
            }
        }
        p.plan_validate(self, b, info, others)
    }
}
