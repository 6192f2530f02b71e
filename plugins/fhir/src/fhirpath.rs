//! A FHIRPath subset: what SQL-on-FHIR v2 view definitions use.
//!
//! Paths and indexers, `where`, `exists`, `empty`, `first`, `last`, `count`, `not`, `join`,
//! `ofType` (choice elements such as `value[x]` included), `extension(url)`,
//! `getResourceKey()`, `getReferenceKey(type)`, literals, `%constants`, `$this`, `=`, `!=`,
//! `<`, `<=`, `>`, `>=`, `and`, `or`, `xor`, `implies`, `|`, `+`, `-`, `*`, `/`, `div`, `mod`
//! and `&`.
//!
//! Evaluation recurses over the expression (part of the view, written by the line's
//! author), never over the data: there is no `descendants()`, and `repeat` is walked by
//! the view with a stack of its own. What does follow the data down (cloning, comparing and
//! printing JSON values) only meets values the parser has let through, at most
//! `limits.depth` levels deep.

use std::collections::BTreeMap;

use serde_json::Value;

/// A FHIRPath expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// The current item (`$this`, or the start of a path).
    This,
    Literal(Value),
    Variable(String),
    /// `.name` on the input.
    Member(Box<Expr>, String),
    /// `.name(args)` on the input.
    Call(Box<Expr>, String, Vec<Expr>),
    Index(Box<Expr>, Box<Expr>),
    Binary(String, Box<Expr>, Box<Expr>),
    Negate(Box<Expr>),
}

/// An item of a collection: a JSON value and, for a choice element, its type (`Boolean` in
/// `deceasedBoolean`).
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub value: Value,
    pub choice: Option<String>,
}

impl Item {
    pub fn plain(value: Value) -> Self {
        Self {
            value,
            choice: None,
        }
    }
}

/// Evaluation context: variables by name (without `%`), shared (a context is cloned for
/// every item a select iterates), and `%rowIndex`.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub variables: std::sync::Arc<BTreeMap<String, Vec<Item>>>,
    /// `%rowIndex`: the index of the item the innermost iterating select is at; `None`
    /// outside of one (then a constant of that name, or 0).
    pub row_index: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(String),
    Var(String),
    Sym(String),
}

fn lex(s: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut t = String::new();
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                    t.push(match chars[i] {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                } else {
                    t.push(chars[i]);
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err(format!("unterminated string in `{s}`"));
            }
            i += 1;
            out.push(Token::Str(t));
        } else if c == '`' {
            let start = i + 1;
            i = start;
            while i < chars.len() && chars[i] != '`' {
                i += 1;
            }
            out.push(Token::Ident(
                chars[start..i.min(chars.len())].iter().collect(),
            ));
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (chars[i] == '.' && i + 1 < chars.len() && chars[i + 1].is_ascii_digit()))
            {
                i += 1;
            }
            out.push(Token::Num(chars[start..i].iter().collect()));
        } else if c.is_alphabetic() || c == '_' || c == '$' || c == '%' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if let Some(v) = word.strip_prefix('%') {
                out.push(Token::Var(v.to_string()));
            } else {
                out.push(Token::Ident(word));
            }
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["!=", "<=", ">=", "!~"].contains(&two.as_str()) {
                out.push(Token::Sym(two));
                i += 2;
            } else if "().,[]=<>|+-*/&~".contains(c) {
                out.push(Token::Sym(c.to_string()));
                i += 1;
            } else {
                return Err(format!("unexpected `{c}` in `{s}`"));
            }
        }
    }
    Ok(out)
}

struct P {
    t: Vec<Token>,
    i: usize,
}

const LEVELS: &[&[&str]] = &[
    &["implies"],
    &["or", "xor"],
    &["and"],
    &["in", "contains"],
    &["=", "!=", "~", "!~"],
    &["<", ">", "<=", ">="],
    &["|"],
    &["+", "-", "&"],
    &["*", "/", "div", "mod"],
];

impl P {
    fn peek_op(&self) -> Option<String> {
        match self.t.get(self.i)? {
            Token::Sym(s) => Some(s.clone()),
            Token::Ident(s)
                if [
                    "and", "or", "xor", "implies", "div", "mod", "in", "contains",
                ]
                .contains(&s.as_str()) =>
            {
                Some(s.clone())
            }
            _ => None,
        }
    }
    fn expect(&mut self, sym: &str) -> Result<(), String> {
        match self.t.get(self.i) {
            Some(Token::Sym(s)) if s == sym => {
                self.i += 1;
                Ok(())
            }
            other => Err(format!("expected `{sym}`, found {other:?}")),
        }
    }
    fn binary(&mut self, level: usize) -> Result<Expr, String> {
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut left = self.binary(level + 1)?;
        while let Some(op) = self
            .peek_op()
            .filter(|o| LEVELS[level].contains(&o.as_str()))
        {
            self.i += 1;
            let right = self.binary(level + 1)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn unary(&mut self) -> Result<Expr, String> {
        if let Some(Token::Sym(s)) = self.t.get(self.i)
            && (s == "-" || s == "+")
        {
            let neg = s == "-";
            self.i += 1;
            let e = self.unary()?;
            return Ok(if neg { Expr::Negate(Box::new(e)) } else { e });
        }
        self.postfix()
    }
    fn postfix(&mut self) -> Result<Expr, String> {
        let mut e = self.term()?;
        loop {
            match self.t.get(self.i) {
                Some(Token::Sym(s)) if s == "." => {
                    self.i += 1;
                    e = self.invocation(e)?;
                }
                Some(Token::Sym(s)) if s == "[" => {
                    self.i += 1;
                    let idx = self.binary(0)?;
                    self.expect("]")?;
                    e = Expr::Index(Box::new(e), Box::new(idx));
                }
                _ => return Ok(e),
            }
        }
    }
    fn invocation(&mut self, on: Expr) -> Result<Expr, String> {
        let name = match self.t.get(self.i) {
            Some(Token::Ident(n)) => n.clone(),
            other => return Err(format!("expected a name, found {other:?}")),
        };
        self.i += 1;
        if let Some(Token::Sym(s)) = self.t.get(self.i)
            && s == "("
        {
            self.i += 1;
            let mut args = Vec::new();
            if !matches!(self.t.get(self.i), Some(Token::Sym(s)) if s == ")") {
                loop {
                    args.push(self.binary(0)?);
                    match self.t.get(self.i) {
                        Some(Token::Sym(s)) if s == "," => self.i += 1,
                        _ => break,
                    }
                }
            }
            self.expect(")")?;
            return Ok(Expr::Call(Box::new(on), name, args));
        }
        Ok(Expr::Member(Box::new(on), name))
    }
    fn term(&mut self) -> Result<Expr, String> {
        let t = self
            .t
            .get(self.i)
            .cloned()
            .ok_or("unexpected end of expression")?;
        match t {
            Token::Str(s) => {
                self.i += 1;
                Ok(Expr::Literal(Value::String(s)))
            }
            Token::Num(n) => {
                self.i += 1;
                let v: Value = serde_json::from_str(&n).map_err(|e| e.to_string())?;
                Ok(Expr::Literal(v))
            }
            Token::Var(v) => {
                self.i += 1;
                Ok(Expr::Variable(v))
            }
            Token::Sym(s) if s == "(" => {
                self.i += 1;
                let e = self.binary(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Token::Ident(w) if w == "true" || w == "false" => {
                self.i += 1;
                Ok(Expr::Literal(Value::Bool(w == "true")))
            }
            Token::Ident(w) if w == "$this" => {
                self.i += 1;
                Ok(Expr::This)
            }
            Token::Ident(_) => self.invocation(Expr::This),
            Token::Sym(s) => Err(format!("unexpected `{s}`")),
        }
    }
}

/// Parses an expression.
pub fn parse(s: &str) -> Result<Expr, String> {
    let mut p = P { t: lex(s)?, i: 0 };
    let e = p.binary(0)?;
    if p.i != p.t.len() {
        return Err(format!("unexpected {:?} in `{s}`", p.t[p.i]));
    }
    Ok(e)
}

fn truthy(c: &[Item]) -> Option<bool> {
    match c {
        [] => None,
        [i] => match &i.value {
            Value::Bool(b) => Some(*b),
            _ => Some(true),
        },
        _ => Some(true),
    }
}

fn boolean(b: Option<bool>) -> Vec<Item> {
    b.map(|b| vec![Item::plain(Value::Bool(b))])
        .unwrap_or_default()
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn number(v: f64, integers: bool) -> Value {
    if integers && v.fract() == 0.0 {
        Value::from(v as i64)
    } else {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

const PRIMITIVES: &[&str] = &[
    "boolean",
    "string",
    "code",
    "id",
    "uri",
    "url",
    "canonical",
    "oid",
    "uuid",
    "markdown",
    "base64Binary",
    "integer",
    "positiveInt",
    "unsignedInt",
    "decimal",
    "date",
    "dateTime",
    "instant",
    "time",
    "integer64",
];

/// Evaluates an expression on a collection.
pub fn eval(e: &Expr, input: &[Item], ctx: &Context) -> Result<Vec<Item>, String> {
    Ok(match e {
        Expr::This => input.to_vec(),
        Expr::Literal(v) => vec![Item::plain(v.clone())],
        Expr::Variable(v) if v == "rowIndex" => match (ctx.row_index, ctx.variables.get(v)) {
            (Some(i), _) => vec![Item::plain(Value::from(i))],
            (None, Some(constant)) => constant.clone(),
            (None, None) => vec![Item::plain(Value::from(0))],
        },
        Expr::Variable(v) => ctx
            .variables
            .get(v)
            .cloned()
            .ok_or_else(|| format!("unknown constant %{v}"))?,
        Expr::Member(on, name) => member(on, name, input, ctx)?,
        Expr::Index(on, idx) => {
            let base = eval_base(on, input, ctx)?;
            let i = eval(idx, input, ctx)?;
            match i.first().and_then(|i| i.value.as_u64()) {
                Some(i) => base.get(i as usize).cloned().into_iter().collect(),
                None => vec![],
            }
        }
        Expr::Negate(x) => eval(x, input, ctx)?
            .into_iter()
            .map(|i| {
                Item::plain(
                    i.value
                        .as_f64()
                        .map(|f| number(-f, i.value.is_i64() || i.value.is_u64()))
                        .unwrap_or(Value::Null),
                )
            })
            .collect(),
        Expr::Binary(op, l, r) => binary(op, l, r, input, ctx)?,
        Expr::Call(on, name, args) => {
            let base = eval_base(on, input, ctx)?;
            call(name, &base, args, ctx)?
        }
    })
}

/// `.name` on what `on` gives: the elements of that name (an array's items one by one), the
/// resource itself where a path starts with its type, or the typed forms of a choice element.
fn member(on: &Expr, name: &str, input: &[Item], ctx: &Context) -> Result<Vec<Item>, String> {
    let base = eval_base(on, input, ctx)?;
    let mut out = Vec::new();
    for item in base.iter() {
        let Value::Object(o) = &item.value else {
            continue;
        };
        // `Patient.name` starts at the resource itself.
        if matches!(on, Expr::This) && o.get("resourceType").and_then(Value::as_str) == Some(name) {
            out.push(item.clone());
            continue;
        }
        match o.get(name) {
            Some(Value::Array(a)) => out.extend(a.iter().cloned().map(Item::plain)),
            Some(Value::Null) | None => {
                // A choice element `value[x]` is stored as `valueQuantity` etc.
                for (k, v) in o {
                    if let Some(rest) = k.strip_prefix(name)
                        && rest.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                    {
                        out.push(Item {
                            value: v.clone(),
                            choice: Some(rest.to_string()),
                        });
                    }
                }
            }
            Some(v) => out.push(Item::plain(v.clone())),
        }
    }
    Ok(out)
}

/// A binary operator: both sides are evaluated, the left first, before it is applied.
fn binary(
    op: &str,
    l: &Expr,
    r: &Expr,
    input: &[Item],
    ctx: &Context,
) -> Result<Vec<Item>, String> {
    let a = eval(l, input, ctx)?;
    let b = eval(r, input, ctx)?;
    Ok(match op {
        "and" | "or" | "xor" | "implies" => logical(op, &a, &b),
        "|" => {
            let mut out: Vec<Item> = Vec::new();
            for i in a.into_iter().chain(b) {
                if !out.iter().any(|o| o.value == i.value) {
                    out.push(i);
                }
            }
            out
        }
        _ => return single_values(op, &a, &b),
    })
}

/// `and`, `or`, `xor` and `implies` in three-valued logic (an empty side is unknown).
fn logical(op: &str, a: &[Item], b: &[Item]) -> Vec<Item> {
    let (x, y) = (truthy(a), truthy(b));
    boolean(match op {
        "and" => match (x, y) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        "or" => match (x, y) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        "xor" => x.zip(y).map(|(x, y)| x != y),
        _ => match (x, y) {
            (Some(false), _) | (_, Some(true)) => Some(true),
            (Some(true), Some(false)) => Some(false),
            _ => None,
        },
    })
}

/// An operator on one value a side (comparison, `&`, arithmetic): empty if a side is empty,
/// an error if a side has more than one.
fn single_values(op: &str, a: &[Item], b: &[Item]) -> Result<Vec<Item>, String> {
    if a.is_empty() || b.is_empty() {
        return Ok(vec![]);
    }
    if a.len() > 1 || b.len() > 1 {
        return Err(format!("`{op}` needs single values"));
    }
    let (x, y) = (&a[0].value, &b[0].value);
    Ok(match op {
        "=" | "~" => boolean(Some(
            x == y || compare(x, y) == Some(std::cmp::Ordering::Equal),
        )),
        "!=" | "!~" => boolean(Some(
            !(x == y || compare(x, y) == Some(std::cmp::Ordering::Equal)),
        )),
        "<" => boolean(compare(x, y).map(|o| o.is_lt())),
        "<=" => boolean(compare(x, y).map(|o| o.is_le())),
        ">" => boolean(compare(x, y).map(|o| o.is_gt())),
        ">=" => boolean(compare(x, y).map(|o| o.is_ge())),
        "&" => vec![Item::plain(Value::String(format!(
            "{}{}",
            x.as_str().unwrap_or_default(),
            y.as_str().unwrap_or_default()
        )))],
        "+" if x.is_string() => vec![Item::plain(Value::String(format!(
            "{}{}",
            x.as_str().unwrap_or_default(),
            y.as_str().unwrap_or_default()
        )))],
        _ => return arithmetic(op, x, y),
    })
}

/// `+`, `-`, `*`, `/`, `div` and `mod` on two numbers: integers stay integers (but for `/`),
/// and dividing by zero gives nothing.
fn arithmetic(op: &str, x: &Value, y: &Value) -> Result<Vec<Item>, String> {
    let (Some(p), Some(q)) = (x.as_f64(), y.as_f64()) else {
        return Err(format!("`{op}` needs numbers"));
    };
    let ints = (x.is_i64() || x.is_u64()) && (y.is_i64() || y.is_u64());
    let v = match op {
        "+" => number(p + q, ints),
        "-" => number(p - q, ints),
        "*" => number(p * q, ints),
        "/" if q != 0.0 => number(p / q, false),
        "div" if q != 0.0 => number((p / q).trunc(), true),
        "mod" if q != 0.0 => number(p % q, ints),
        _ => return Ok(vec![]),
    };
    Ok(vec![Item::plain(v)])
}

/// What a path step applies to: the input itself for `$this` (not a copy of it: the
/// input is often a whole resource), else the evaluated expression.
fn eval_base<'a>(
    on: &Expr,
    input: &'a [Item],
    ctx: &Context,
) -> Result<std::borrow::Cow<'a, [Item]>, String> {
    Ok(match on {
        Expr::This => std::borrow::Cow::Borrowed(input),
        other => std::borrow::Cow::Owned(eval(other, input, ctx)?),
    })
}

fn arg_string(
    args: &[Expr],
    i: usize,
    base: &[Item],
    ctx: &Context,
) -> Result<Option<String>, String> {
    match args.get(i) {
        None => Ok(None),
        Some(Expr::Member(on, n)) if matches!(**on, Expr::This) => Ok(Some(n.clone())),
        Some(e) => Ok(eval(e, base, ctx)?
            .first()
            .and_then(|v| v.value.as_str().map(String::from))),
    }
}

fn call(name: &str, base: &[Item], args: &[Expr], ctx: &Context) -> Result<Vec<Item>, String> {
    Ok(match name {
        "where" => {
            let cond = args.first().ok_or("where() needs a condition")?;
            let mut out = Vec::new();
            for item in base {
                if truthy(&eval(cond, std::slice::from_ref(item), ctx)?) == Some(true) {
                    out.push(item.clone());
                }
            }
            out
        }
        "exists" => match args.first() {
            Some(cond) => {
                let mut any = false;
                for item in base {
                    if truthy(&eval(cond, std::slice::from_ref(item), ctx)?) == Some(true) {
                        any = true;
                    }
                }
                boolean(Some(any))
            }
            None => boolean(Some(!base.is_empty())),
        },
        "empty" => boolean(Some(base.is_empty())),
        "count" => vec![Item::plain(Value::from(base.len()))],
        "first" => base.first().cloned().into_iter().collect(),
        "last" => base.last().cloned().into_iter().collect(),
        "not" => boolean(truthy(base).map(|b| !b)),
        "join" => {
            let sep = arg_string(args, 0, base, ctx)?.unwrap_or_default();
            let parts: Vec<String> = base
                .iter()
                .filter_map(|i| i.value.as_str().map(String::from))
                .collect();
            vec![Item::plain(Value::String(parts.join(&sep)))]
        }
        "ofType" => {
            let t = arg_string(args, 0, base, ctx)?.ok_or("ofType() needs a type")?;
            let t = t.rsplit('.').next().unwrap_or(&t).to_string();
            base.iter().filter(|i| of_type(i, &t)).cloned().collect()
        }
        "extension" => {
            let url = arg_string(args, 0, base, ctx)?;
            extensions(base, url.as_deref())
        }
        "getResourceKey" => base
            .iter()
            .filter_map(|i| i.value.get("id").cloned())
            .map(Item::plain)
            .collect(),
        "getReferenceKey" => {
            let want = arg_string(args, 0, base, ctx)?;
            base.iter()
                .filter_map(|i| i.value.get("reference").and_then(Value::as_str))
                .filter_map(|r| reference_key(r, want.as_deref()))
                .collect()
        }
        "toString" => base
            .iter()
            .map(|i| {
                Item::plain(Value::String(match &i.value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }))
            })
            .collect(),
        other => return Err(format!("unsupported function {other}()")),
    })
}

/// Whether an item is of type `t` (without its namespace), for `ofType()`: a choice
/// element by its suffix, a resource by its `resourceType`, else by its JSON kind.
fn of_type(item: &Item, t: &str) -> bool {
    match &item.choice {
        Some(c) => c.eq_ignore_ascii_case(t),
        None => match &item.value {
            Value::Object(o) => o.get("resourceType").and_then(Value::as_str) == Some(t),
            Value::Bool(_) => t == "boolean",
            Value::String(_) => {
                PRIMITIVES.contains(&t)
                    && ![
                        "boolean",
                        "integer",
                        "decimal",
                        "positiveInt",
                        "unsignedInt",
                    ]
                    .contains(&t)
            }
            Value::Number(n) => {
                (t == "decimal")
                    || (n.is_i64() || n.is_u64())
                        && ["integer", "positiveInt", "unsignedInt", "integer64"].contains(&t)
            }
            _ => false,
        },
    }
}

/// The extensions of every item, in order: those with the given `url`, or all.
fn extensions(base: &[Item], url: Option<&str>) -> Vec<Item> {
    let mut out = Vec::new();
    for item in base {
        for ext in item
            .value
            .get("extension")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if url.is_none_or(|u| ext.get("url").and_then(Value::as_str) == Some(u)) {
                out.push(Item::plain(ext.clone()));
            }
        }
    }
    out
}

/// The id a reference (`Type/id`, maybe with `/_history/version`) points to, if it is to a
/// resource of type `want` (or any type without one).
fn reference_key(r: &str, want: Option<&str>) -> Option<Item> {
    let parts: Vec<&str> = r.trim_end_matches('/').split('/').collect();
    let (ty, id) = match parts.as_slice() {
        [.., ty, "_history", _] => (*ty, parts.get(parts.len() - 3).copied()?),
        [.., ty, id] => (*ty, *id),
        _ => return None,
    };
    let (ty, id) = if parts.contains(&"_history") {
        (parts.get(parts.len() - 4).copied()?, ty)
    } else {
        (ty, id)
    };
    want.is_none_or(|w| w == ty)
        .then(|| Item::plain(Value::String(id.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: &str, v: Value) -> Vec<Value> {
        eval(
            &parse(path).unwrap(),
            &[Item::plain(v)],
            &Context::default(),
        )
        .unwrap()
        .into_iter()
        .map(|i| i.value)
        .collect()
    }

    #[test]
    fn paths_functions_and_operators() {
        let p = serde_json::json!({"resourceType": "Patient", "id": "p1", "name": [{"use": "official", "family": "A", "given": ["x", "y"]}, {"family": "B"}], "deceasedBoolean": false});
        assert_eq!(
            run("Patient.name.family", p.clone()),
            vec![Value::from("A"), Value::from("B")]
        );
        assert_eq!(
            run("name.where(use = 'official').given.join(',')", p.clone()),
            vec![Value::from("x,y")]
        );
        assert_eq!(run("name[1].family", p.clone()), vec![Value::from("B")]);
        assert_eq!(
            run("deceased.ofType(boolean)", p.clone()),
            vec![Value::from(false)]
        );
        assert_eq!(
            run("name.exists() and id = 'p1'", p.clone()),
            vec![Value::from(true)]
        );
        assert_eq!(run("(1 + 2) * 3 div 2", p.clone()), vec![Value::from(4)]);
        assert_eq!(run("getResourceKey()", p), vec![Value::from("p1")]);
        let r = serde_json::json!({"subject": {"reference": "Patient/123"}});
        assert_eq!(
            run("subject.getReferenceKey(Patient)", r.clone()),
            vec![Value::from("123")]
        );
        assert!(run("subject.getReferenceKey(Encounter)", r).is_empty());
        assert!(parse("name.where(").is_err());
    }
}
