//! Planning a validate step: each rule compiled to a rule column (`rule_expr`) or a check
//! of the whole dataset (`dataset_check`).

use super::Check;
use std::collections::BTreeMap;

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Column, DFSchema, DataFusionError};
use datafusion::logical_expr::{
    Expr, ExprSchemable, JoinType, LogicalPlanBuilder, SortExpr, case, col, lit, when,
};
use datafusion::scalar::ScalarValue;

use crate::diag::{Code, Diagnostic};
use crate::line::spec::{Name, Pos, RuleSpec, Severity, StepKind, SubmittersCheck, ValidateSpec};
use crate::plan::RULE_PREFIX;
use crate::plan::expr::{cast_text, first_line, midnight};
use crate::plan::{
    DatasetCheck, DatasetCheckKind, Diags, FILTER_COLUMN, InputInfo, OBJECT_COLUMN, Planner,
    ROW_COLUMN, StepPlan, TapRule,
};

impl Planner<'_> {
    fn rule_expr(&self, index: usize, rule: &RuleSpec, schema: &DFSchema) -> Result<Expr, Diags> {
        let null = || lit(ScalarValue::Utf8(None));
        let colcheck = |n: &Name| self.column_check(schema, n).map_err(|d| vec![d]);
        let id = &rule.id.value;
        let Some(check) = Check::of(rule) else {
            return Err(vec![self.diag(
                Code::V101,
                rule.id.at,
                format!("rule `{id}` must give exactly one check"),
            )]);
        };
        let e = match check {
            Check::Required(req) => {
                let names = req.names();
                let mut c = case(lit(true));
                let mut first = true;
                for n in names {
                    colcheck(n)?;
                    let msg = lit(format!("`{}` is missing", n.value));
                    c = if first {
                        when(col(Column::from_name(n.value.as_str())).is_null(), msg)
                    } else {
                        c.when(col(Column::from_name(n.value.as_str())).is_null(), msg)
                    };
                    first = false;
                }
                c.otherwise(null())
            }
            Check::Unique(u) => {
                // The duplicates were joined in by `join_duplicates`: a row is a duplicate when
                // its key has a first occurrence elsewhere.
                let names = u.names();
                for n in &names {
                    colcheck(n)?;
                }
                let first_object = col(Column::from_name(format!("__u{index}_object")));
                let first_row = col(Column::from_name(format!("__u{index}_row")));
                let label = names
                    .iter()
                    .map(|n| format!("`{}`", n.value))
                    .collect::<Vec<_>>()
                    .join(", ");
                let is_first = col(OBJECT_COLUMN)
                    .eq(first_object)
                    .and(col(ROW_COLUMN).eq(first_row.clone()));
                when(
                    first_row.clone().is_not_null().and(is_first.is_not_true()),
                    datafusion::functions::string::expr_fn::concat(vec![
                        lit(format!("duplicate {label}; first at row ")),
                        cast_text(first_row),
                    ]),
                )
                .otherwise(null())
            }
            Check::Values(v) => {
                let t = colcheck(&v.column)?;
                let c = col(Column::from_name(v.column.value.as_str()));
                let c = if t == DataType::Utf8 {
                    c
                } else {
                    Expr::Cast(datafusion::logical_expr::Cast::new(
                        Box::new(c),
                        DataType::Utf8,
                    ))
                };
                let list: Vec<Expr> = v.values.iter().map(|s| lit(s.clone())).collect();
                when(
                    c.clone().is_not_null().and(c.clone().in_list(list, true)),
                    lit(format!(
                        "`{}` is not one of {}",
                        v.column.value,
                        v.values.join(", ")
                    )),
                )
                .otherwise(null())
            }
            Check::Hetu(h) => {
                colcheck(h)?;
                let f = self
                    .state
                    .scalar_functions()
                    .get("hetu_problem")
                    .cloned()
                    .ok_or_else(|| {
                        vec![self.diag(Code::V205, h.at, "hetu_problem is not registered")]
                    })?;
                let c = col(Column::from_name(h.value.as_str()));
                let mut problem = f.call(vec![c.clone()]);
                if !rule.temporary {
                    // Individual numbers 900–999 are temporary codes (characters 8–10).
                    let individual = datafusion::functions::unicode::expr_fn::substr(
                        cast_text(c.clone()),
                        lit(8i64),
                    );
                    problem = datafusion::functions::core::expr_fn::coalesce(vec![
                        problem,
                        when(
                            individual.gt_eq(lit("900")),
                            lit("temporary personal identity codes are not accepted here"),
                        )
                        .otherwise(null())
                        .map_err(|e| vec![self.diag(Code::V205, h.at, e.to_string())])?,
                    ]);
                }
                // NULL for NULL: the problem itself (computed once per row, not in a condition
                // and again in its branch).
                Ok(problem)
            }
            Check::InCodeset(cs) => {
                let t = colcheck(&cs.column)?;
                let codes = self.codeset_codes(&cs.codeset)?;
                let c = col(Column::from_name(cs.column.value.as_str()));
                let c = if t == DataType::Utf8 {
                    c
                } else {
                    Expr::Cast(datafusion::logical_expr::Cast::new(
                        Box::new(c),
                        DataType::Utf8,
                    ))
                };
                when(
                    c.clone().is_not_null().and(
                        c.clone()
                            .in_list(codes.into_iter().map(lit).collect(), true),
                    ),
                    lit(format!(
                        "`{}` is not in code set `{}`",
                        cs.column.value, cs.codeset.value
                    )),
                )
                .otherwise(null())
            }
            Check::InPeriod(p) => {
                let t = colcheck(p)?;
                let (Some(start), Some(end)) = (
                    self.params.get("period_start"),
                    self.params.get("period_end"),
                ) else {
                    return Err(vec![self.diag(
                        Code::V301,
                        p.at,
                        "the line has no period parameter",
                    )]);
                };
                let c = col(Column::from_name(p.value.as_str()));
                let outside = match (&t, start, end) {
                    // A timestamp without a time zone against the period's first midnight and
                    // the one after its last day.
                    (
                        DataType::Timestamp(unit, None),
                        ScalarValue::Date32(Some(_)),
                        ScalarValue::Date32(Some(_)),
                    ) => Some(
                        c.clone()
                            .lt(midnight(lit(start.clone()), *unit, false))
                            .or(c.clone().gt_eq(midnight(lit(end.clone()), *unit, true))),
                    ),
                    _ => None,
                };
                let day = match t {
                    _ if outside.is_some() => c.clone(),
                    DataType::Date32 => c.clone(),
                    DataType::Timestamp(..) => Expr::Cast(datafusion::logical_expr::Cast::new(
                        Box::new(c.clone()),
                        DataType::Date32,
                    )),
                    other => {
                        return Err(vec![self.diag(
                            Code::V202,
                            p.at,
                            format!(
                                "`{}` is {other}; the period check needs a date or timestamp",
                                p.value
                            ),
                        )]);
                    }
                };
                let outside = outside.unwrap_or_else(|| {
                    day.clone()
                        .lt(lit(start.clone()))
                        .or(day.gt(lit(end.clone())))
                });
                when(
                    c.is_not_null().and(outside),
                    lit(format!(
                        "outside-period: `{}` is not in the period",
                        p.value
                    )),
                )
                .otherwise(null())
            }
            Check::Range(r) => {
                let t = colcheck(&r.column)?;
                let c = col(Column::from_name(r.column.value.as_str()));
                let mut cond: Option<Expr> = None;
                let mut parts = Vec::new();
                for (bound, is_min) in [(&r.min, true), (&r.max, false)] {
                    let Some(b) = bound else { continue };
                    let v = self.bound(b, &t, &r.column)?;
                    let broken = if is_min {
                        c.clone().lt(lit(v))
                    } else {
                        c.clone().gt(lit(v))
                    };
                    parts.push(format!(
                        "{} {}",
                        if is_min { "≥" } else { "≤" },
                        b.value.text()
                    ));
                    cond = Some(match cond {
                        Some(x) => x.or(broken),
                        None => broken,
                    });
                }
                let Some(cond) = cond else {
                    return Err(vec![self.diag(
                        Code::V004,
                        r.column.at,
                        "a range needs `min`, `max` or both",
                    )]);
                };
                when(
                    c.clone().is_not_null().and(cond),
                    lit(format!(
                        "`{}` is out of range; expected {}",
                        r.column.value,
                        parts.join(" and ")
                    )),
                )
                .otherwise(null())
            }
            Check::Regex(r) => {
                colcheck(&r.column)?;
                let anchored = format!("^(?:{})$", r.pattern.value);
                if let Err(e) = regex::Regex::new(&anchored) {
                    return Err(vec![self.diag(
                        Code::V203,
                        crate::diag::locate_in(&self.line.text, r.pattern.at, ""),
                        format!("invalid pattern: {}", first_line(&e.to_string())),
                    )]);
                }
                let c = cast_text(col(Column::from_name(r.column.value.as_str())));
                let matches = datafusion::functions::regex::expr_fn::regexp_like(
                    c.clone(),
                    lit(anchored),
                    None,
                );
                when(
                    c.clone().is_not_null().and(matches.is_false()),
                    lit(format!(
                        "`{}` does not match `{}`",
                        r.column.value, r.pattern.value
                    )),
                )
                .otherwise(null())
            }
            Check::Order(order) => {
                if order.len() < 2 {
                    return Err(vec![self.diag(
                        Code::V003,
                        rule.id.at,
                        "`order` needs two or more columns",
                    )]);
                }
                let mut types = Vec::new();
                for n in order {
                    types.push(colcheck(n)?);
                }
                let same = types.windows(2).all(|w| w[0] == w[1]);
                let value = |n: &Name| {
                    let c = col(Column::from_name(n.value.as_str()));
                    if same {
                        c
                    } else {
                        Expr::Cast(datafusion::logical_expr::Cast::new(
                            Box::new(c),
                            DataType::Timestamp(TimeUnit::Microsecond, None),
                        ))
                    }
                };
                let mut c = case(lit(true));
                for (k, pair) in order.windows(2).enumerate() {
                    let (a, b) = (value(&pair[0]), value(&pair[1]));
                    let broken = a
                        .clone()
                        .is_not_null()
                        .and(b.clone().is_not_null())
                        .and(a.gt(b));
                    let msg = lit(format!("`{}` is after `{}`", pair[0].value, pair[1].value));
                    c = if k == 0 {
                        when(broken, msg)
                    } else {
                        c.when(broken, msg)
                    };
                }
                c.otherwise(null())
            }
            Check::ExistsIn(e) => {
                colcheck(&e.column)?;
                let key = format!("__e{index}");
                let c = col(Column::from_name(e.column.value.as_str()));
                when(
                    c.clone()
                        .is_not_null()
                        .and(col(Column::from_name(key)).is_null()),
                    lit(format!(
                        "`{}` is not in step `{}`",
                        e.column.value, e.step.value
                    )),
                )
                .otherwise(null())
            }
            Check::Expr(x) => {
                let e = self.expr(x, schema)?;
                if e.get_type(schema)
                    .map_err(|err| vec![self.expr_error(x, err)])?
                    != DataType::Boolean
                {
                    return Err(vec![self.diag(
                        Code::V202,
                        self.locate(x, ""),
                        format!("`{}` is not a condition (true/false)", x.value),
                    )]);
                }
                when(e.is_false(), lit(format!("`{}` does not hold", x.value))).otherwise(null())
            }
            Check::Rows(_) | Check::NullShare(_) | Check::Fresh(_) | Check::Submitters(_) => {
                return Err(vec![self.diag(
                    Code::V101,
                    rule.id.at,
                    format!("rule `{id}` checks the whole dataset, not each row"),
                )]);
            }
        };
        let e = e.map_err(|err| vec![self.diag(Code::V205, rule.id.at, err.to_string())])?;
        let e = match &rule.when {
            Some(w) => {
                let cond = self.expr(w, schema)?;
                when(cond.is_true(), e)
                    .otherwise(null())
                    .map_err(|err| vec![self.diag(Code::V205, w.at, err.to_string())])?
            }
            None => e,
        };
        let _ = id;
        Ok(e)
    }

    fn codeset_codes(&self, name: &Name) -> Result<Vec<String>, Diags> {
        let table = self.codesets.get(name.value.as_str()).ok_or_else(|| {
            vec![self.diag(
                Code::V303,
                name.at,
                format!("unknown code set `{}`", name.value),
            )]
        })?;
        let key = &self.line.spec.codesets[name.value.as_str()].key.value;
        Ok(crate::line::codeset::codes(table, key))
    }

    pub(crate) fn plan_validate(
        &self,
        v: &ValidateSpec,
        mut b: LogicalPlanBuilder,
        info: &InputInfo,
        others: BTreeMap<String, LogicalPlanBuilder>,
    ) -> Result<StepPlan, Diags> {
        // A column checked as an identity code is one: undeclared, it would be neither
        // traced nor kept from the cluster.
        self.declared_personal(
            v.rules.iter().filter_map(|r| r.hetu.as_ref()),
            info,
            "is checked as an identity code",
        )?;
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
        let schema = b.schema().clone();
        let mut exprs: Vec<Expr> = schema.columns().into_iter().map(col).collect();
        let mut rules = Vec::new();
        let mut diags = Vec::new();
        let mut dataset_checks = Vec::new();
        let base = b.clone();
        // Relationships join the keys of the other step first.
        for (i, rule) in v.rules.iter().enumerate() {
            let Some(e) = &rule.exists_in else { continue };
            let Some(other) = others.get(e.step.value.as_str()) else {
                continue;
            };
            let key = e.key.clone().unwrap_or_else(|| e.column.clone());
            self.column_check(other.schema(), &key)
                .map_err(|d| vec![d])?;
            let alias = format!("__e{i}");
            let keys = other
                .clone()
                .project(vec![
                    cast_text(col(Column::from_name(key.value.as_str()))).alias(&alias),
                ])
                .and_then(|k| k.distinct())
                .and_then(|k| k.build())
                .map_err(err(e.step.at))?;
            self.column_check(&schema, &e.column).map_err(|d| vec![d])?;
            let on = cast_text(col(Column::from_name(e.column.value.as_str())))
                .eq(col(Column::from_name(alias)));
            // The keys are the join's build side; the rows stream past them.
            b = LogicalPlanBuilder::from(keys)
                .join_on(
                    b.build().map_err(err(e.step.at))?,
                    JoinType::Right,
                    vec![on],
                )
                .map_err(err(e.step.at))?;
        }
        // Duplicate keys, without sorting the rows: (1) the candidate keys, whose 128-bit
        // `DistinctKey`s a Bloom filter saw before in the scan (`seen::SeenBefore`; on a
        // cluster, a grouping of every row's keys counts them); (2) the rows with a candidate
        // key (few) are grouped by the keys themselves — exact — for the count and the first
        // occurrence; (3) those keys are the build side of a join the rows stream past. A
        // false positive or a key collision in (1) only adds a candidate that (2) drops.
        let distinct_key = datafusion::logical_expr::ScalarUDF::new_from_impl(
            crate::functions::DistinctKey::default(),
        );
        for (i, rule) in v.rules.iter().enumerate() {
            let Some(u) = &rule.unique else { continue };
            let names = u.names();
            for n in &names {
                self.column_check(&schema, n).map_err(|d| vec![d])?;
            }
            let c = |n: &Name| col(Column::from_name(n.value.as_str()));
            let u_col = |what: String| col(Column::from_name(format!("__u{i}_{what}")));
            use datafusion::functions_aggregate::expr_fn::{count, first_value};
            let present = names
                .iter()
                .map(|n| c(n).is_not_null())
                .reduce(|a, b| a.and(b))
                .unwrap_or(lit(true));
            let hashed: Vec<Expr> = names
                .iter()
                .enumerate()
                .map(|(j, n)| distinct_key.call(vec![c(n)]).alias(format!("__u{i}_h{j}")))
                .collect();
            // The filter's end: on the second scan, which starts after the first pass.
            let mut seen_done = None;
            let candidates = if let Some(bytes) = self.unique_filter {
                let filter = crate::steps::validate::seen::SeenBefore::new(
                    bytes,
                    self.state.runtime_env().memory_pool.clone(),
                );
                seen_done = Some(datafusion::logical_expr::ScalarUDF::new_from_impl(
                    filter.done(),
                ));
                let seen = datafusion::logical_expr::ScalarUDF::new_from_impl(filter);
                base.clone()
                    .filter(present.clone())
                    .and_then(|d| d.filter(seen.call(names.iter().map(|n| c(n)).collect())))
                    .and_then(|d| d.aggregate(hashed, Vec::<Expr>::new()))
            } else {
                base.clone()
                    .filter(present.clone())
                    .and_then(|d| {
                        d.aggregate(hashed, vec![count(lit(1u8)).alias(format!("__u{i}_c"))])
                    })
                    .and_then(|d| d.filter(u_col("c".into()).gt(lit(1i64))))
            }
            .and_then(|d| d.build())
            .map_err(err(rule.id.at))?;
            let mut rows: Vec<Expr> = Vec::new();
            let mut on_hash = Vec::new();
            let mut keys = Vec::new();
            let mut on = Vec::new();
            for (j, n) in names.iter().enumerate() {
                rows.push(c(n).alias(format!("__u{i}_k{j}")));
                let hash = distinct_key.call(vec![c(n)]);
                let hash = match (&seen_done, j) {
                    (Some(done), 0) => done.call(vec![hash]),
                    _ => hash,
                };
                rows.push(hash.alias(format!("__u{i}_r{j}")));
                on_hash.push(u_col(format!("h{j}")).eq(u_col(format!("r{j}"))));
                keys.push(u_col(format!("k{j}")));
                on.push(u_col(format!("k{j}")).eq(col(Column::new(
                    Some(v.input.value.as_str()),
                    n.value.as_str(),
                ))));
            }
            rows.push(col(OBJECT_COLUMN).alias(format!("__u{i}_o")));
            rows.push(col(ROW_COLUMN).alias(format!("__u{i}_w")));
            let order = vec![
                SortExpr::new(u_col("o".into()), true, false),
                SortExpr::new(u_col("w".into()), true, false),
            ];
            let with_rows = base
                .clone()
                .filter(present)
                .and_then(|d| d.project(rows))
                .and_then(|d| d.build())
                .map_err(err(rule.id.at))?;
            let dups = LogicalPlanBuilder::from(candidates)
                .join_on(with_rows, JoinType::Inner, on_hash)
                .and_then(|d| {
                    d.aggregate(
                        keys,
                        vec![
                            count(lit(1u8)).alias(format!("__u{i}_n")),
                            first_value(u_col("o".into()), order.clone())
                                .alias(format!("__u{i}_object")),
                            first_value(u_col("w".into()), order).alias(format!("__u{i}_row")),
                        ],
                    )
                })
                .and_then(|d| d.filter(u_col("n".into()).gt(lit(1i64))))
                .and_then(|d| d.build())
                .map_err(err(rule.id.at))?;
            b = LogicalPlanBuilder::from(dups)
                .join_on(b.build().map_err(err(rule.id.at))?, JoinType::Right, on)
                .map_err(err(rule.id.at))?;
        }
        for (i, rule) in v.rules.iter().enumerate() {
            if crate::steps::validate::is_dataset_check(rule) {
                match self.dataset_check(rule, &schema, v.submitter.as_ref()) {
                    Ok(c) => dataset_checks.push(c),
                    Err(d) => diags.extend(d),
                }
                continue;
            }
            let all = b.schema().clone();
            match self.rule_expr(i, rule, &all) {
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
            .map_err(err(v.input.at))?;
        let mut p = self.finish(StepKind::Validate, plan, rules, info.dimensions.clone());
        p.dataset_checks = dataset_checks;
        p.submitter = submitter;
        Ok(p)
    }

    fn dataset_check(
        &self,
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
        let not_dataset = || {
            vec![self.diag(
                Code::V101,
                rule.id.at,
                format!(
                    "rule `{}` checks each row, not the whole dataset",
                    rule.id.value
                ),
            )]
        };
        let kind = match Check::of(rule).ok_or_else(not_dataset)? {
            Check::Rows(r) => DatasetCheckKind::Rows {
                min: r.min,
                max: r.max,
            },
            Check::NullShare(n) => {
                self.column_check(schema, &n.column).map_err(|d| vec![d])?;
                DatasetCheckKind::NullShare {
                    column: n.column.value.clone(),
                    max: n.max,
                }
            }
            Check::Fresh(f) => {
                let t = self.column_check(schema, f).map_err(|d| vec![d])?;
                if !matches!(t, DataType::Date32 | DataType::Timestamp(..)) {
                    return Err(vec![self.diag(
                        Code::V202,
                        f.at,
                        format!("`{}` is {t}; freshness needs a date or timestamp", f.value),
                    )]);
                }
                let day = |k: &str| match self.params.get(k) {
                    Some(ScalarValue::Date32(Some(d))) => Some(*d),
                    _ => None,
                };
                let (Some(start), Some(end)) = (day("period_start"), day("period_end")) else {
                    return Err(vec![self.diag(
                        Code::V301,
                        f.at,
                        "freshness needs the line's `period` parameter",
                    )]);
                };
                DatasetCheckKind::Fresh {
                    column: f.value.clone(),
                    start,
                    end,
                }
            }
            Check::Submitters(s) => self.expected_submitters(rule, s, submitter)?,
            Check::Required(_)
            | Check::Unique(_)
            | Check::Values(_)
            | Check::Hetu(_)
            | Check::InCodeset(_)
            | Check::InPeriod(_)
            | Check::Expr(_)
            | Check::Range(_)
            | Check::Regex(_)
            | Check::Order(_)
            | Check::ExistsIn(_) => return Err(not_dataset()),
        };
        Ok(DatasetCheck {
            id: rule.id.value.clone(),
            severity: rule.severity,
            kind,
        })
    }

    /// The submitters a `submitters` rule expects: listed, or the codes of a code set. The
    /// step must name its `submitter` column, whose values are compared.
    fn expected_submitters(
        &self,
        rule: &RuleSpec,
        check: &SubmittersCheck,
        submitter: Option<&Name>,
    ) -> Result<DatasetCheckKind, Diags> {
        if submitter.is_none() {
            return Err(vec![self.diag(
                Code::V201,
                rule.id.at,
                format!(
                    "rule `{}` checks the submitters: the step names its `submitter` column",
                    rule.id.value
                ),
            )]);
        }
        let mut expected = match (&check.codeset, check.expected.is_empty()) {
            (Some(name), true) => self.codeset_codes(name)?,
            (None, false) => check.expected.clone(),
            _ => {
                return Err(vec![self.diag(
                    Code::V101,
                    rule.id.at,
                    format!(
                        "rule `{}`: give the submitters as `expected` or as a `codeset`, one of them",
                        rule.id.value
                    ),
                )]);
            }
        };
        expected.sort();
        expected.dedup();
        Ok(DatasetCheckKind::Submitters { expected })
    }
}
