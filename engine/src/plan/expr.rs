//! Expressions of a line file: parsed against a schema, parameters bound, type-checked,
//! and their errors placed at the expression (`working_days` given the line's holidays);
//! shared rewrites of expressions.

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DataFusionError, SchemaError};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan, lit};
use datafusion::scalar::ScalarValue;

use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::functions::calendar::{WORKING_DAYS, iso_day};
use crate::line::spec::{Name, Pos};
use crate::plan::{Diags, Planner};

impl Planner<'_> {
    /// Parses an expression against a schema, binds parameters, and type-checks it.
    pub fn expr(&self, text: &Name, schema: &DFSchema) -> Result<Expr, Diags> {
        let e = self
            .state
            .create_logical_expr(&text.value, schema)
            .map_err(|e| vec![self.expr_error(text, e)])?;
        let e = self.bind(e, text)?;
        // Type-check now, so that a mismatch is reported at the expression.
        e.get_type(schema)
            .map_err(|err| vec![self.expr_error(text, err)])?;
        Ok(fixed_intervals(local_comparisons(e, schema), schema))
    }

    fn bind(&self, e: Expr, text: &Name) -> Result<Expr, Diags> {
        let mut unknown = None;
        let bound = e
            .transform_up(|e| match &e {
                Expr::Placeholder(p) => {
                    let key = p.id.trim_start_matches('$');
                    match self.params.get(key) {
                        Some(v) => Ok(Transformed::yes(lit(v.clone()))),
                        None => {
                            unknown = Some(key.to_string());
                            Ok(Transformed::no(e))
                        }
                    }
                }
                _ => Ok(Transformed::no(e)),
            })
            .map_err(|err| vec![self.expr_error(text, err)])?
            .data;
        if let Some(u) = unknown {
            let mut d = self.diag(
                Code::V301,
                self.locate(text, &format!("${u}")),
                format!("unknown parameter `${u}`"),
            );
            if let Some(c) = crate::diag::closest(&u, self.params.keys().map(String::as_str)) {
                d = d.with_hint(format!("did you mean `${c}`?"));
            }
            return Err(vec![d]);
        }
        self.with_calendar(bound, text)
    }

    /// Each `working_days(from, to)` with the line's holidays as a third argument, a text
    /// of sorted ISO dates separated by commas: a plan sent to a cluster carries them, its
    /// executors knowing functions only by name (`functions::calendar`).
    fn with_calendar(&self, e: Expr, text: &Name) -> Result<Expr, Diags> {
        // A third argument is the planner's to give: written by a line, it would count
        // working days by holidays of the author's choosing instead of the calendar's.
        let written = |e: &Expr| matches!(e, Expr::ScalarFunction(f) if f.func.name() == WORKING_DAYS && f.args.len() > 2);
        if e.exists(|e| Ok(written(e))).unwrap_or(false) {
            return Err(vec![
                self.diag(
                    Code::V308,
                    self.locate(text, WORKING_DAYS),
                    "`working_days` takes two dates: the holidays are those of the line's `calendar`",
                )
                .with_hint("write `working_days(from, to)` and list the holidays in the code set of `calendar:`"),
            ]);
        }
        let calls = |e: &Expr| matches!(e, Expr::ScalarFunction(f) if f.func.name() == WORKING_DAYS && f.args.len() == 2);
        if !e.exists(|e| Ok(calls(e))).unwrap_or(false) {
            return Ok(e);
        }
        let holidays = self.holidays(text)?;
        e.transform_up(|e| match e {
            Expr::ScalarFunction(mut f) if f.func.name() == WORKING_DAYS && f.args.len() == 2 => {
                f.args.push(lit(holidays.clone()));
                Ok(Transformed::yes(Expr::ScalarFunction(f)))
            }
            e => Ok(Transformed::no(e)),
        })
        .map(|t| t.data)
        .map_err(|err| vec![self.expr_error(text, err)])
    }

    /// The holidays of the line's `calendar`, sorted ISO dates separated by commas: V308
    /// without a calendar or when a key of its code set is not an ISO date.
    fn holidays(&self, text: &Name) -> Result<String, Diags> {
        let Some(calendar) = &self.line.spec.calendar else {
            return Err(vec![
                self.diag(
                    Code::V308,
                    self.locate(text, WORKING_DAYS),
                    "`working_days` counts the working days of the line's calendar, and the line declares none",
                )
                .with_hint("declare `calendar: { holidays: <code set> }`, a code set of the holidays' ISO dates"),
            ]);
        };
        let name = &calendar.holidays;
        let (Some(table), Some(spec)) = (
            self.codesets.get(name.value.as_str()),
            self.line.spec.codesets.get(name.value.as_str()),
        ) else {
            return Err(vec![self.diag(
                Code::V303,
                name.at,
                format!("unknown code set `{}`", name.value),
            )]);
        };
        let days = crate::line::codeset::codes(table, &spec.key.value);
        if let Some(bad) = days.iter().find(|d| iso_day(d).is_none()) {
            return Err(vec![self.diag(
                Code::V308,
                name.at,
                format!(
                    "the holidays of code set `{}` are ISO dates (`2025-12-24`), but its key column `{}` holds `{bad}`",
                    name.value, spec.key.value
                ),
            )]);
        }
        Ok(days.join(","))
    }

    /// The place of `needle` inside an expression written at `text.at`.
    pub(crate) fn locate(&self, text: &Name, needle: &str) -> Pos {
        crate::diag::locate_in(&self.line.text, text.at, needle)
    }

    pub(crate) fn expr_error(&self, text: &Name, e: DataFusionError) -> Diagnostic {
        let root = e.find_root();
        if let DataFusionError::SchemaError(se, _) = root
            && let SchemaError::FieldNotFound {
                field,
                valid_fields,
            } = se.as_ref()
        {
            let name = field.name();
            let candidates: Vec<&str> = valid_fields
                .iter()
                .map(|c| c.name())
                .filter(|c| !c.starts_with("__"))
                .collect();
            let mut d = self.diag(
                Code::V201,
                self.locate(text, name),
                format!("unknown column `{name}`"),
            );
            d = match did_you_mean(name, candidates.iter().copied()) {
                Some(h) => d.with_hint(h),
                None => d.with_hint(format!(
                    "the input has {}",
                    candidates
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            };
            return d;
        }
        let msg = root.to_string();
        let mut clean = msg
            .trim_start_matches("Error during planning: ")
            .trim_start_matches("SQL error: ")
            .to_string();
        let mut at = self.locate(text, "");
        // sqlparser says where in the expression it stopped: "… at Line: 1, Column: 7".
        if let Some(p) = clean.find("ParserError(\"") {
            let inner = clean[p + 13..].trim_end_matches("\")").to_string();
            if let Some((m, pos)) = inner.rsplit_once(" at Line: ")
                && let Some((l, c)) = pos.split_once(", Column: ")
                && l == "1"
                && let Ok(c) = c.trim().parse::<u32>()
            {
                at.col += c.saturating_sub(1);
                clean = m.to_string();
            } else {
                clean = inner;
            }
        }
        let code = match root {
            DataFusionError::SQL(..) => Code::V203,
            _ if msg.contains("ParserError") => Code::V203,
            _ if msg.contains("coerc")
                || msg.contains("common type")
                || msg.contains("not supported for")
                || msg.contains("Cannot infer")
                || msg.contains("No function matches")
                || msg.contains("signature") =>
            {
                Code::V202
            }
            _ => Code::V205,
        };
        self.diag(
            code,
            at,
            format!("in `{}`: {}", text.value, first_line(&clean)),
        )
    }

    /// A boolean expression (a filter or a condition).
    pub(crate) fn condition(&self, text: &Name, schema: &DFSchema) -> Result<Expr, Diags> {
        let e = self.expr(text, schema)?;
        if e.get_type(schema)
            .map_err(|err| vec![self.expr_error(text, err)])?
            != DataType::Boolean
        {
            return Err(vec![self.diag(
                Code::V202,
                self.locate(text, ""),
                format!("`{}` is not a condition (true/false)", text.value),
            )]);
        }
        Ok(e.is_true())
    }

    /// A range bound as a value of the column's type.
    pub(crate) fn bound(
        &self,
        b: &crate::line::spec::Sp<crate::line::spec::Scalar>,
        t: &DataType,
        column: &Name,
    ) -> Result<ScalarValue, Diags> {
        let v = match &b.value {
            crate::line::spec::Scalar::Integer(i) => ScalarValue::Int64(Some(*i)),
            crate::line::spec::Scalar::Number(n) => ScalarValue::Float64(Some(*n)),
            crate::line::spec::Scalar::Text(s) => ScalarValue::Utf8(Some(s.clone())),
        };
        let target = if matches!(t, DataType::Int64) && matches!(v, ScalarValue::Float64(_)) {
            DataType::Float64
        } else {
            t.clone()
        };
        v.cast_to(&target)
            .ok()
            .filter(|v| !v.is_null())
            .ok_or_else(|| {
                vec![self.diag(
                    Code::V202,
                    b.at,
                    format!(
                        "bound `{}` is not a value of `{}` ({t})",
                        b.value.text(),
                        column.value
                    ),
                )]
            })
    }

    pub(crate) fn bind_plan(&self, plan: LogicalPlan, text: &Name) -> Result<LogicalPlan, Diags> {
        let mut unknown = None;
        let values: Vec<(String, ScalarValue)> = self
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for p in plan
            .get_parameter_names()
            .map_err(|e| vec![self.expr_error(text, e)])?
        {
            let key = p.trim_start_matches('$');
            if !self.params.contains_key(key) {
                unknown = Some(key.to_string());
            }
        }
        if let Some(u) = unknown {
            return Err(vec![self.diag(
                Code::V301,
                self.locate(text, &format!("${u}")),
                format!("unknown parameter `${u}`"),
            )]);
        }
        let map: std::collections::HashMap<String, ScalarValue> = values.into_iter().collect();
        let plan = plan
            .with_param_values(datafusion::common::ParamValues::Map(
                map.into_iter().map(|(k, v)| (k, v.into())).collect(),
            ))
            .map_err(|e| vec![self.expr_error(text, e)])?;
        self.plan_with_calendar(plan, text)
    }

    /// A query's `working_days` calls given the line's holidays, as in expressions: in every
    /// node and subquery of the plan (a call with holidays of its own is refused, V308).
    fn plan_with_calendar(&self, plan: LogicalPlan, text: &Name) -> Result<LogicalPlan, Diags> {
        let mut refused: Option<Diags> = None;
        let out = plan
            .transform_up_with_subqueries(|p| {
                p.map_expressions(|e| match self.with_calendar(e.clone(), text) {
                    Ok(done) if done == e => Ok(Transformed::no(e)),
                    Ok(done) => Ok(Transformed::yes(done)),
                    Err(d) => {
                        refused.get_or_insert(d);
                        Ok(Transformed::no(e))
                    }
                })
            })
            .map_err(|e| vec![self.expr_error(text, e)])?
            .data;
        match refused {
            Some(d) => Err(d),
            None => Ok(out),
        }
    }
}

/// The midnight that starts `day` (a `DATE` expression), or with `next` the one that ends
/// it, as a timestamp of `unit` in `zone` (the zone's midnight, Arrow's cast of a date to a
/// timestamp with a zone) or without one: timestamps compared with it directly need no cast
/// to their day per row.
pub(crate) fn midnight(day: Expr, unit: TimeUnit, zone: Option<Arc<str>>, next: bool) -> Expr {
    let day = if next {
        day + lit(ScalarValue::IntervalDayTime(Some(
            arrow::datatypes::IntervalDayTime::new(1, 0),
        )))
    } else {
        day
    };
    Expr::Cast(datafusion::logical_expr::Cast::new(
        Box::new(day),
        DataType::Timestamp(unit, zone),
    ))
}

/// `timestamp ± INTERVAL '…'` with a fixed interval (no months; a timestamp without a time
/// zone has 24-hour days, one with a zone days of its calendar, so no days either) as
/// `timestamp ± duration`: the same instants, and Arrow adds a duration as a number where
/// it adds an interval per value by the calendar (20 times slower, measured on ten million
/// rows).
pub(crate) fn fixed_intervals(e: Expr, schema: &DFSchema) -> Expr {
    use datafusion::logical_expr::{BinaryExpr, Operator};
    let duration = |v: &ScalarValue, (unit, zoned): &(TimeUnit, bool)| -> Option<ScalarValue> {
        let nanos: i128 = match v {
            ScalarValue::IntervalMonthDayNano(Some(i))
                if i.months == 0 && (!zoned || i.days == 0) =>
            {
                i128::from(i.days) * 86_400_000_000_000 + i128::from(i.nanoseconds)
            }
            ScalarValue::IntervalDayTime(Some(i)) if !zoned || i.days == 0 => {
                i128::from(i.days) * 86_400_000_000_000 + i128::from(i.milliseconds) * 1_000_000
            }
            _ => return None,
        };
        let per: i128 = match unit {
            TimeUnit::Second => 1_000_000_000,
            TimeUnit::Millisecond => 1_000_000,
            TimeUnit::Microsecond => 1_000,
            TimeUnit::Nanosecond => 1,
        };
        if nanos % per != 0 {
            return None;
        }
        let n = i64::try_from(nanos / per).ok()?;
        Some(match unit {
            TimeUnit::Second => ScalarValue::DurationSecond(Some(n)),
            TimeUnit::Millisecond => ScalarValue::DurationMillisecond(Some(n)),
            TimeUnit::Microsecond => ScalarValue::DurationMicrosecond(Some(n)),
            TimeUnit::Nanosecond => ScalarValue::DurationNanosecond(Some(n)),
        })
    };
    let timestamp = |e: &Expr| match e.get_type(schema) {
        Ok(DataType::Timestamp(unit, zone)) => Some((unit, zone.is_some())),
        _ => None,
    };
    e.clone()
        .transform_up(|e| {
            let Expr::BinaryExpr(b) = &e else {
                return Ok(Transformed::no(e));
            };
            if !matches!(b.op, Operator::Plus | Operator::Minus) {
                return Ok(Transformed::no(e));
            }
            let interval = |side: &Expr| match side {
                Expr::Literal(v, _) => Some(v.clone()),
                _ => None,
            };
            // timestamp ± interval, or interval + timestamp.
            let (ts, iv, ts_left) = match (timestamp(&b.left), interval(&b.right)) {
                (Some(u), Some(v)) => (u, v, true),
                _ if b.op == Operator::Plus => match (interval(&b.left), timestamp(&b.right)) {
                    (Some(v), Some(u)) => (u, v, false),
                    _ => return Ok(Transformed::no(e)),
                },
                _ => return Ok(Transformed::no(e)),
            };
            let Some(d) = duration(&iv, &ts) else {
                return Ok(Transformed::no(e));
            };
            // The timestamp first (addition commutes): Arrow adds a duration to it.
            let ts_side = if ts_left { &b.left } else { &b.right };
            Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                ts_side.clone(),
                b.op,
                Box::new(lit(d)),
            ))))
        })
        // Types were checked before; a failure keeps the expression as written.
        .map(|t| t.data)
        .unwrap_or(e)
}

/// Comparisons of a timestamp with a zone (a local time column) with a date or a timestamp
/// without one, the other side cast to the zone's type: a date becomes the zone's midnight
/// and a timestamp the zone's wall-clock time, so `halytys_aika >= $period_start` means
/// Finnish midnight. (DataFusion would compare both as timestamps without a zone, the
/// instant then read as a UTC clock.)
pub(crate) fn local_comparisons(e: Expr, schema: &DFSchema) -> Expr {
    use datafusion::logical_expr::{Between, BinaryExpr, Operator};
    e.clone()
        .transform_up(|e| {
            Ok(match e {
                Expr::BinaryExpr(BinaryExpr { left, op, right })
                    if matches!(
                        op,
                        Operator::Eq
                            | Operator::NotEq
                            | Operator::Lt
                            | Operator::LtEq
                            | Operator::Gt
                            | Operator::GtEq
                            | Operator::IsDistinctFrom
                            | Operator::IsNotDistinctFrom
                    ) =>
                {
                    let (l, r, cast) = zoned_pair(*left, *right, schema);
                    let e = Expr::BinaryExpr(BinaryExpr::new(Box::new(l), op, Box::new(r)));
                    if cast {
                        Transformed::yes(e)
                    } else {
                        Transformed::no(e)
                    }
                }
                Expr::Between(Between {
                    expr,
                    negated,
                    low,
                    high,
                }) => {
                    let (x, low, a) = zoned_pair(*expr, *low, schema);
                    let (x, high, b) = zoned_pair(x, *high, schema);
                    let e = Expr::Between(Between::new(
                        Box::new(x),
                        negated,
                        Box::new(low),
                        Box::new(high),
                    ));
                    if a || b {
                        Transformed::yes(e)
                    } else {
                        Transformed::no(e)
                    }
                }
                e => Transformed::no(e),
            })
        })
        // Types were checked before; a failure keeps the expression as written.
        .map(|t| t.data)
        .unwrap_or(e)
}

/// Two compared expressions, the one that is a date or a timestamp without a zone cast to
/// the other's timestamp with a zone; whether one was.
fn zoned_pair(a: Expr, b: Expr, schema: &DFSchema) -> (Expr, Expr, bool) {
    let zoned = |e: &Expr| match e.get_type(schema) {
        Ok(t @ DataType::Timestamp(_, Some(_))) => Some(t),
        _ => None,
    };
    let wall = |e: &Expr| {
        matches!(
            e.get_type(schema),
            Ok(DataType::Date32 | DataType::Timestamp(_, None))
        )
    };
    let cast =
        |e: Expr, t: DataType| Expr::Cast(datafusion::logical_expr::Cast::new(Box::new(e), t));
    match (zoned(&a), zoned(&b)) {
        (Some(t), None) if wall(&b) => (a, cast(b, t), true),
        (None, Some(t)) if wall(&a) => (cast(a, t), b, true),
        _ => (a, b, false),
    }
}

pub(crate) fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

pub(crate) fn cast_text(e: Expr) -> Expr {
    Expr::Cast(datafusion::logical_expr::Cast::new(
        Box::new(e),
        DataType::Utf8,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow::array::Array;
    use arrow::record_batch::RecordBatch;
    use datafusion::prelude::SessionContext;

    /// Rows of `batches` as text, sorted.
    pub(crate) fn text_rows(batches: Vec<RecordBatch>) -> Vec<String> {
        let mut out = Vec::new();
        for batch in batches {
            for r in 0..batch.num_rows() {
                let cells: Vec<String> = batch
                    .columns()
                    .iter()
                    .map(|c| {
                        if c.is_null(r) {
                            "∅".into()
                        } else {
                            arrow::util::display::array_value_to_string(c, r).unwrap()
                        }
                    })
                    .collect();
                out.push(cells.join("|"));
            }
        }
        out.sort();
        out
    }

    /// Fixed intervals added to or subtracted from timestamps become durations with the same
    /// results; months, fractions finer than the unit and days added to timestamps with a
    /// time zone (days of its calendar, 23 or 25 hours when the clocks change) keep their
    /// interval.
    #[tokio::test]
    async fn fixed_intervals_become_durations_with_the_same_results() {
        let ctx = SessionContext::new();
        ctx.sql(
            "CREATE TABLE t AS SELECT \
               arrow_cast(to_timestamp_micros(v * 3700000123), 'Timestamp(Microsecond, None)') AS us, \
               arrow_cast(to_timestamp_seconds(v * 86399), 'Timestamp(Second, None)') AS s, \
               to_timestamp_nanos(v * 1234567890123) AS ns, \
               arrow_cast(to_timestamp_seconds(v * 86399), 'Timestamp(Second, Some(\"Europe/Helsinki\"))') AS tz \
             FROM (SELECT unnest(generate_series(-50, 400)) AS v)",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
        let table = ctx.table("t").await.unwrap();
        let schema = table.schema().clone();
        let cases = [
            ("us + INTERVAL '3 hours'", true),
            ("INTERVAL '1 day 2 hours' + us", true),
            ("us - INTERVAL '90 minutes 0.000001 seconds'", true),
            ("s + INTERVAL '2 days'", true),
            ("s - INTERVAL '1.5 seconds'", false),
            ("ns + INTERVAL '0.000000001 seconds'", true),
            ("us + INTERVAL '1 month'", false),
            ("tz + INTERVAL '1 day'", false),
            ("tz + INTERVAL '3 hours'", true),
            ("INTERVAL '90 minutes' + tz", true),
        ];
        for (sql, fixed) in cases {
            let written = ctx.state().create_logical_expr(sql, &schema).unwrap();
            let rewritten = fixed_intervals(written.clone(), &schema);
            assert_eq!(
                rewritten.to_string().contains("Interval"),
                !fixed,
                "{sql}: {rewritten}"
            );
            let values = |e: Expr| {
                let table = table.clone();
                async move {
                    let batches = table
                        .select(vec![e.alias("x")])
                        .unwrap()
                        .collect()
                        .await
                        .unwrap();
                    text_rows(batches)
                }
            };
            let want = values(written).await;
            assert_eq!(want.len(), 451);
            assert_eq!(values(rewritten).await, want, "{sql}");
        }
    }
}
