//! Selections: which codes of each variable a data request asks for.
//!
//! A request names variables and, for each, codes or expressions: `*` (every code),
//! `top(n)` / `top(n,skip)` (the n last codes — for the period the latest), `bottom(n)`
//! (the n first), `from(x)`, `to(x)`, `range(x,y)`, and `x*`, `*x`, `*x*` (codes starting
//! with, ending with, containing `x`). A text that is a code is that code even if it looks
//! like an expression. The codes chosen come in the variable's order, each once; a
//! variable the request leaves out takes its default selection. Everything is bounded:
//! variables, values per variable, the length of a value, `n`, and the cells of the whole.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::serve::error::PxError;
use crate::serve::pxweb::model::{Model, Role, Variable};
use crate::serve::pxweb::{MAX_DATA_CELLS, Params, clip};

/// Values (codes or expressions) one variable's selection may list.
pub(super) const MAX_VALUES: usize = 10_000;

/// The longest value of a selection.
const MAX_VALUE_LEN: usize = 200;

/// Variables one request may select.
const MAX_VARIABLES: usize = 100;

/// The selection of data: a variable and the codes or expressions asked of it
/// (`VariablesSelection` of PxWeb API 2.0, the body of `POST …/data`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(in crate::serve) struct PxVariablesSelection {
    /// The variables and their values; a variable left out takes its default selection.
    #[serde(default)]
    pub(super) selection: Vec<PxVariableSelection>,
    /// Where variables go in a table layout (read and checked; the layout is fixed:
    /// the period and dimensions in the stub, the contents in the heading).
    #[serde(default)]
    pub(super) placement: Option<PxPlacement>,
}

/// One variable's selection.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(in crate::serve) struct PxVariableSelection {
    /// The variable's code (`jakso`, a dimension, `tiedot`).
    pub(super) variable_code: String,
    /// A code list applied to the variable (`vs_<code set>`): its values only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) codelist: Option<String>,
    /// Codes or expressions (`*`, `top(n)`, `bottom(n)`, `from(x)`, `to(x)`,
    /// `range(x,y)`, `x*`, `*x`).
    #[serde(default, alias = "values")]
    pub(super) value_codes: Vec<String>,
}

/// Where variables go in a table layout.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(in crate::serve) struct PxPlacement {
    /// The variables across.
    #[serde(default)]
    pub(super) heading: Vec<String>,
    /// The variables down.
    #[serde(default)]
    pub(super) stub: Vec<String>,
}

/// A selection read from a request, before it meets a table.
#[derive(Debug, Default)]
pub(super) struct Request {
    /// Each variable asked for, with its code list and values.
    pub(super) variables: Vec<PxVariableSelection>,
    /// Variables the request names for the layout.
    pub(super) placed: Vec<String>,
}

/// The selection of a `GET …/data` query: `valueCodes[VAR]=a,b` (repeatable),
/// `codelist[VAR]=id`, `heading=…`, `stub=…`.
pub(super) fn from_params(params: &Params) -> Result<Request, PxError> {
    let mut by_variable: BTreeMap<String, PxVariableSelection> = BTreeMap::new();
    for (var, value) in params.indexed("valueCodes") {
        let v = slot(&mut by_variable, var)?;
        for item in split_values(value) {
            if v.value_codes.len() >= MAX_VALUES {
                return Err(too_many_values(var));
            }
            v.value_codes.push(item.to_string());
        }
    }
    for (var, id) in params.indexed("codelist") {
        slot(&mut by_variable, var)?.codelist = Some(id.to_string());
    }
    let mut placed: Vec<String> = params
        .list("heading")
        .into_iter()
        .map(String::from)
        .collect();
    placed.extend(params.list("stub").into_iter().map(String::from));
    Ok(Request {
        variables: by_variable.into_values().collect(),
        placed,
    })
}

/// The selection of variable `var` being read, at most [`MAX_VARIABLES`] of them.
fn slot<'m>(
    by_variable: &'m mut BTreeMap<String, PxVariableSelection>,
    var: &str,
) -> Result<&'m mut PxVariableSelection, PxError> {
    if by_variable.len() >= MAX_VARIABLES && !by_variable.contains_key(var) {
        return Err(PxError::BadSelection(format!(
            "more than {MAX_VARIABLES} variables"
        )));
    }
    Ok(by_variable
        .entry(var.to_string())
        .or_insert_with(|| PxVariableSelection {
            variable_code: var.to_string(),
            codelist: None,
            value_codes: Vec::new(),
        }))
}

/// The selection of a `POST …/data` body (empty: the default selection).
pub(super) fn from_body(body: &[u8]) -> Result<Request, PxError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Request::default());
    }
    let s: PxVariablesSelection = serde_json::from_slice(body).map_err(|e| {
        PxError::BadRequest(format!(
            "the body is not a VariablesSelection: {}",
            clip(&e.to_string())
        ))
    })?;
    if s.selection.len() > MAX_VARIABLES {
        return Err(PxError::BadSelection(format!(
            "more than {MAX_VARIABLES} variables"
        )));
    }
    let placement = s.placement.unwrap_or_default();
    let mut placed = placement.heading;
    placed.extend(placement.stub);
    Ok(Request {
        variables: s.selection,
        placed,
    })
}

/// Splits a query's list at the commas outside parentheses (`range(a,b)` stays whole).
fn split_values(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(text[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

fn too_many_values(var: &str) -> PxError {
    PxError::BadSelection(format!("`{}`: more than {MAX_VALUES} values", clip(var)))
}

/// An expression of a selection.
#[derive(Debug, PartialEq, Eq)]
enum Expr<'a> {
    All,
    Code(&'a str),
    /// The `n` last codes, `skip` from the end first.
    Top(usize, usize),
    Bottom(usize),
    From(&'a str),
    To(&'a str),
    Range(&'a str, &'a str),
    Prefix(&'a str),
    Suffix(&'a str),
    Contains(&'a str),
}

/// Reads one value of a selection: a code when it is one, else an expression.
fn parse(text: &str, is_code: impl Fn(&str) -> bool) -> Result<Expr<'_>, String> {
    if is_code(text) {
        return Ok(Expr::Code(text));
    }
    if text == "*" {
        return Ok(Expr::All);
    }
    if let Some((name, args)) = call(text) {
        let args: Vec<&str> = args.split(',').map(str::trim).collect();
        let number = |s: &str| match s.parse::<usize>() {
            Ok(n) if s.len() <= 6 => Ok(n),
            _ => Err(format!("`{}` is not a count", clip(s))),
        };
        return match (name.to_ascii_lowercase().as_str(), args.as_slice()) {
            ("top", &[n]) => Ok(Expr::Top(number(n)?, 0)),
            ("top", &[n, skip]) => Ok(Expr::Top(number(n)?, number(skip)?)),
            ("bottom", &[n]) => Ok(Expr::Bottom(number(n)?)),
            ("from", &[x]) => Ok(Expr::From(x)),
            ("to", &[x]) => Ok(Expr::To(x)),
            ("range", &[x, y]) => Ok(Expr::Range(x, y)),
            _ => Err(format!(
                "`{}` is not a code nor an expression (top(n), bottom(n), from(x), to(x), range(x,y))",
                clip(text)
            )),
        };
    }
    let stars = text.matches('*').count();
    let inner = text.trim_matches('*');
    match (stars, text.strip_prefix('*'), text.strip_suffix('*')) {
        (0, _, _) => Ok(Expr::Code(text)),
        (1, None, Some(p)) => Ok(Expr::Prefix(p)),
        (1, Some(s), None) => Ok(Expr::Suffix(s)),
        (2, Some(_), Some(_)) if !inner.is_empty() => Ok(Expr::Contains(inner)),
        _ => Err(format!("`{}`: `*` stands first, last or alone", clip(text))),
    }
}

/// `name(args)` of an expression.
fn call(text: &str) -> Option<(&str, &str)> {
    let (name, rest) = text.split_once('(')?;
    let args = rest.strip_suffix(')')?;
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphabetic())).then_some((name, args))
}

/// The positions in `variable` (among `candidates`, ascending) one variable's values
/// select: ascending, each once, at least one.
fn select(
    variable: &Variable,
    values: &[String],
    candidates: &[usize],
) -> Result<Vec<usize>, String> {
    if values.len() > MAX_VALUES {
        return Err(format!("more than {MAX_VALUES} values"));
    }
    let rank: BTreeMap<&str, usize> = (candidates.iter().enumerate())
        .map(|(r, &i)| (variable.values[i].as_str(), r))
        .collect();
    let place = |code: &str| {
        rank.get(code)
            .copied()
            .ok_or_else(|| format!("`{}` is not a code of `{}`", clip(code), variable.code))
    };
    let n = candidates.len();
    let mut chosen: BTreeSet<usize> = BTreeSet::new();
    for value in values {
        if value.len() > MAX_VALUE_LEN {
            return Err(format!("a value longer than {MAX_VALUE_LEN} bytes"));
        }
        let expr = parse(value, |c| rank.contains_key(c))?;
        if chosen.len() == n {
            // Every code chosen already: the value is only checked (a request repeating
            // `*` ten thousand times costs one list, not ten thousand).
            if let Expr::Code(x) | Expr::From(x) | Expr::To(x) = expr {
                place(x)?;
            } else if let Expr::Range(x, y) = expr {
                place(x)?;
                place(y)?;
            }
            continue;
        }
        let ranks: Vec<usize> = match expr {
            Expr::All => (0..n).collect(),
            Expr::Code(c) => vec![place(c)?],
            Expr::Top(k, skip) => {
                let end = n.saturating_sub(skip);
                (end.saturating_sub(k)..end).collect()
            }
            Expr::Bottom(k) => (0..k.min(n)).collect(),
            Expr::From(x) => (place(x)?..n).collect(),
            Expr::To(x) => (0..=place(x)?).collect(),
            Expr::Range(x, y) => (place(x)?..=place(y)?).collect(),
            Expr::Prefix(p) => matching(&rank, |c| c.starts_with(p)),
            Expr::Suffix(s) => matching(&rank, |c| c.ends_with(s)),
            Expr::Contains(s) => matching(&rank, |c| c.contains(s)),
        };
        chosen.extend(ranks.into_iter().map(|r| candidates[r]));
    }
    if chosen.is_empty() {
        return Err(format!("the values of `{}` select no code", variable.code));
    }
    Ok(chosen.into_iter().collect())
}

/// The ranks of the codes a pattern matches.
fn matching(rank: &BTreeMap<&str, usize>, matches: impl Fn(&str) -> bool) -> Vec<usize> {
    let mut out = Vec::new();
    for (&code, &r) in rank {
        if matches(code) {
            out.push(r);
        }
    }
    out
}

/// The positions a variable's values may be selected from: all, or those of the code
/// list applied to it.
fn candidates(variable: &Variable, codelist: Option<&str>) -> Result<Vec<usize>, PxError> {
    match codelist {
        None => Ok((0..variable.values.len()).collect()),
        Some(id) if variable.codelist.as_deref() == Some(id) => {
            // A value set of the code set the variable is labelled from: its codes, not the
            // totals the table adds.
            Ok((0..variable.values.len())
                .filter(|&i| variable.total() != Some(i))
                .collect())
        }
        Some(id) => Err(PxError::BadSelection(format!(
            "`{}` is not a codelist of `{}`{}",
            clip(id),
            variable.code,
            match &variable.codelist {
                Some(c) => format!("; it has {c}"),
                None => "; it has none".to_string(),
            }
        ))),
    }
}

/// Each variable's selected positions: what the request asks, and `otherwise` for the
/// variables it leaves out (the default selection for data). Unbounded in cells (the
/// metadata lists whole variables): a data answer checks [`cells`] against
/// [`MAX_DATA_CELLS`].
pub(super) fn resolve(
    model: &Model,
    request: &Request,
    otherwise: Vec<Vec<usize>>,
) -> Result<Vec<Vec<usize>>, PxError> {
    let names = || {
        (model.variables.iter())
            .map(|v| v.code.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let position = |code: &str| {
        (model.variables.iter())
            .position(|v| v.code == code)
            .ok_or_else(|| {
                PxError::BadSelection(format!(
                    "`{}` is not a variable of `{}`; its variables are {}",
                    clip(code),
                    model.id,
                    names()
                ))
            })
    };
    for p in &request.placed {
        position(p.as_str())?;
    }
    let mut chosen: Vec<Option<Vec<usize>>> = vec![None; model.variables.len()];
    for asked in &request.variables {
        let k = position(asked.variable_code.as_str())?;
        if chosen[k].is_some() {
            return Err(PxError::BadSelection(format!(
                "`{}` is selected twice",
                model.variables[k].code
            )));
        }
        let variable = &model.variables[k];
        let allowed = candidates(variable, asked.codelist.as_deref())?;
        let picked = if asked.value_codes.is_empty() && asked.codelist.is_some() {
            // A code list alone: its whole value set.
            allowed
        } else {
            select(variable, &asked.value_codes, &allowed)
                .map_err(|e| PxError::BadSelection(format!("`{}`: {e}", variable.code)))?
        };
        chosen[k] = Some(picked);
    }
    Ok(chosen
        .into_iter()
        .zip(otherwise)
        .map(|(c, d)| c.unwrap_or(d))
        .collect())
}

/// The cells of a selection (saturating).
pub(super) fn cells(selection: &[Vec<usize>]) -> u64 {
    selection
        .iter()
        .fold(1u64, |acc, s| acc.saturating_mul(s.len() as u64))
}

/// 403 for a selection of more than [`MAX_DATA_CELLS`] cells.
pub(super) fn check_cells(selection: &[Vec<usize>]) -> Result<(), PxError> {
    let n = cells(selection);
    if n > MAX_DATA_CELLS as u64 {
        return Err(PxError::TooManyCells {
            cells: n,
            limit: MAX_DATA_CELLS,
        });
    }
    Ok(())
}

/// Every code of every variable.
pub(super) fn everything(model: &Model) -> Vec<Vec<usize>> {
    (model.variables.iter())
        .map(|v| (0..v.values.len()).collect())
        .collect()
}

/// The default selection: the latest period and every code of the other variables; while
/// that is over [`MAX_DATA_CELLS`], the widest dimension narrows to its total code (or its
/// first).
pub(super) fn default_selection(model: &Model) -> Vec<Vec<usize>> {
    let mut selection: Vec<Vec<usize>> = (model.variables.iter())
        .map(|v| match v.role {
            Role::Time => v.values.len().checked_sub(1).into_iter().collect(),
            _ => (0..v.values.len()).collect(),
        })
        .collect();
    for _ in 0..selection.len() {
        if cells(&selection) <= MAX_DATA_CELLS as u64 {
            break;
        }
        let widest = (0..selection.len())
            .filter(|&k| matches!(model.variables[k].role, Role::Geo | Role::Other))
            .filter(|&k| selection[k].len() > 1)
            .max_by_key(|&k| selection[k].len());
        let Some(k) = widest else { break };
        selection[k] = vec![model.variables[k].total().unwrap_or(0)];
    }
    selection
}

#[cfg(test)]
mod tests;
