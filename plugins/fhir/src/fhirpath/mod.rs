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

use std::borrow::Cow;
use std::collections::BTreeMap;

use smallvec::smallvec;

use crate::json::{Held, Json};

/// A FHIRPath expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// The current item (`$this`, or the start of a path).
    This,
    Literal(Json<'static>),
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
/// `deceasedBoolean`). Values of the resource are borrowed from it (`'a`), never copied;
/// what an operator computes is owned.
#[derive(Debug, Clone, PartialEq)]
pub struct Item<'a> {
    pub value: Held<'a>,
    pub choice: Option<Cow<'a, str>>,
}

impl<'a> Item<'a> {
    /// A value of the resource, borrowed.
    pub fn of(value: &'a Json<'a>) -> Self {
        Self {
            value: Held::Borrowed(value),
            choice: None,
        }
    }

    /// A computed value.
    pub fn owned(value: Json<'a>) -> Self {
        Self {
            value: Held::Owned(Box::new(value)),
            choice: None,
        }
    }

    /// The same item owning its value, free of the resource (rarely needed: see [`with_json`]).
    fn into_static(self) -> Item<'static> {
        Item {
            value: Held::Owned(Box::new(self.value.into_owned().into_static())),
            choice: self.choice.map(|c| Cow::Owned(c.into_owned())),
        }
    }
}

/// A collection: most hold one item or none, kept inline without an allocation (every
/// step of a path makes one, for every resource of a bulk export). One inline, not two:
/// every step returns its collection by value, and moving the larger one cost more than
/// allocating for the few of two or more (PROFILE.md, twenty-fourth round).
pub type Items<'a> = smallvec::SmallVec<[Item<'a>; 1]>;

/// Evaluation context: the view's constants by name (without `%`), and `%rowIndex`.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub variables: &'a BTreeMap<String, Vec<Item<'static>>>,
    /// `%rowIndex`: the index of the item the innermost iterating select is at; `None`
    /// outside of one (then a constant of that name, or 0).
    pub row_index: Option<usize>,
}

mod chain;
mod parse;

pub use parse::parse;

/// A parsed path, and its [`chain::Chain`] where it is one: evaluated by walking the chain,
/// else by the interpreter ([`eval`]). What it is as an expression is its `Deref`.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    expr: Expr,
    chain: Option<chain::Chain>,
}

impl Path {
    pub fn new(expr: Expr) -> Self {
        let chain = chain::Chain::compile(&expr);
        Self { expr, chain }
    }

    /// The path on a collection.
    pub fn eval<'a>(&'a self, input: &[Item<'a>], ctx: &Context<'a>) -> Result<Items<'a>, String> {
        match &self.chain {
            Some(chain) => chain.eval(input, ctx),
            None => eval(&self.expr, input, ctx),
        }
    }
}

impl std::ops::Deref for Path {
    type Target = Expr;

    fn deref(&self) -> &Expr {
        &self.expr
    }
}

fn truthy(c: &[Item]) -> Option<bool> {
    match c {
        [] => None,
        [i] => match &*i.value {
            Json::Bool(b) => Some(*b),
            _ => Some(true),
        },
        _ => Some(true),
    }
}

/// `true` and `false` for every boolean result (comparisons, `and`, `exists()`, `not()`…),
/// lent, so that none allocates now that owned values are boxed (a `where` makes one for
/// each item it tests).
static TRUE: Json<'static> = Json::Bool(true);
static FALSE: Json<'static> = Json::Bool(false);

fn boolean<'a>(b: Option<bool>) -> Items<'a> {
    b.map(|b| smallvec![Item::of(if b { &TRUE } else { &FALSE })])
        .unwrap_or_default()
}

fn compare(a: &Json, b: &Json) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Json::String(x), Json::String(y)) => Some(x.cmp(y)),
        (Json::Bool(x), Json::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn number(v: f64, integers: bool) -> Json<'static> {
    if integers && v.fract() == 0.0 {
        Json::Number((v as i64).into())
    } else {
        serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number)
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

/// The view's constants as items of a collection, borrowed.
fn constant<'a>(items: &'a [Item<'static>]) -> Items<'a> {
    items
        .iter()
        .map(|i| Item {
            value: Held::Borrowed(&i.value),
            choice: i.choice.as_deref().map(Cow::Borrowed),
        })
        .collect()
}

/// Evaluates an expression on a collection.
pub fn eval<'a>(e: &'a Expr, input: &[Item<'a>], ctx: &Context<'a>) -> Result<Items<'a>, String> {
    Ok(match e {
        Expr::This => input.iter().cloned().collect(),
        Expr::Literal(v) => smallvec![Item::of(v)],
        Expr::Variable(v) if v == "rowIndex" => match (ctx.row_index, ctx.variables.get(v)) {
            (Some(i), _) => smallvec![Item::owned(Json::Number(i.into()))],
            (None, Some(c)) => constant(c),
            (None, None) => smallvec![Item::owned(Json::Number(0.into()))],
        },
        Expr::Variable(v) => constant(
            ctx.variables
                .get(v)
                .ok_or_else(|| format!("unknown constant %{v}"))?,
        ),
        Expr::Member(on, name) => member(on, name, input, ctx)?,
        Expr::Index(on, idx) => {
            let base = eval_base(on, input, ctx)?;
            let i = eval(idx, input, ctx)?;
            match i.first().and_then(|i| i.value.as_u64()) {
                Some(i) => base.get(i as usize).cloned().into_iter().collect(),
                None => Items::new(),
            }
        }
        Expr::Negate(x) => eval(x, input, ctx)?
            .into_iter()
            .map(|i| {
                Item::owned(
                    i.value
                        .as_f64()
                        .map_or(Json::Null, |f| number(-f, i.value.is_integer())),
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

/// Runs `f` on an item's value and adds what it finds to `out`. A value of the resource is
/// handed on by reference; only a computed (owned) value's parts are copied, which a view
/// reaches only by stepping into a constant or a literal.
fn with_json<'a>(
    item: &Item<'a>,
    out: &mut Items<'a>,
    f: impl for<'b> FnOnce(&'b Json<'b>, &mut Items<'b>),
) {
    match &item.value {
        Held::Borrowed(j) => f(j, out),
        Held::Owned(j) => {
            let mut own = Items::new();
            f(j, &mut own);
            for i in own {
                out.push(i.into_static());
            }
        }
    }
}

/// `.name` on what `on` gives: the elements of that name (an array's items one by one), the
/// resource itself where a path starts with its type (a type's name starts with a capital,
/// an element's never does), or the typed forms of a choice element.
fn member<'a>(
    on: &'a Expr,
    name: &str,
    input: &[Item<'a>],
    ctx: &Context<'a>,
) -> Result<Items<'a>, String> {
    let base = eval_base(on, input, ctx)?;
    let type_name = may_name_type(on, name);
    let mut out = Items::new();
    for item in base.iter() {
        if type_name && is_resource_of(item, name) {
            out.push(item.clone());
            continue;
        }
        with_json(item, &mut out, |j, out| member_of(j, name, out));
    }
    Ok(out)
}

/// Whether `.name` on `on` may name the resource's type: it starts a path, with a capital
/// (a type's name starts with one, an element's never does).
fn may_name_type(on: &Expr, name: &str) -> bool {
    matches!(on, Expr::This) && name.starts_with(|c: char| c.is_ascii_uppercase())
}

/// Whether an item is a resource of type `name`.
fn is_resource_of(item: &Item, name: &str) -> bool {
    item.value.get("resourceType").and_then(Json::as_str) == Some(name)
}

/// The elements `name` of one object (see [`member`]).
fn member_of<'b>(j: &'b Json<'b>, name: &str, out: &mut Items<'b>) {
    let Json::Object(pairs) = j else {
        return;
    };
    match j.get(name) {
        Some(Json::Array(a)) => out.extend(a.iter().map(Item::of)),
        Some(Json::Null) | None => {
            // A choice element `value[x]` is stored as `valueQuantity` etc.
            for (k, v) in pairs {
                let k: &'b str = k;
                if let Some(rest) = k.strip_prefix(name)
                    && rest.starts_with(|c: char| c.is_ascii_uppercase())
                {
                    out.push(Item {
                        value: Held::Borrowed(v),
                        choice: Some(Cow::Borrowed(rest)),
                    });
                }
            }
        }
        Some(v) => out.push(Item::of(v)),
    }
}

/// A binary operator: both sides are evaluated, the left first, before it is applied.
fn binary<'a>(
    op: &str,
    l: &'a Expr,
    r: &'a Expr,
    input: &[Item<'a>],
    ctx: &Context<'a>,
) -> Result<Items<'a>, String> {
    let a = eval(l, input, ctx)?;
    let b = eval(r, input, ctx)?;
    Ok(match op {
        "and" | "or" | "xor" | "implies" => logical(op, &a, &b),
        "|" => {
            let mut out = Items::new();
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
fn logical<'a>(op: &str, a: &[Item], b: &[Item]) -> Items<'a> {
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

/// Two texts joined (`&`, and `+` on a text).
fn concat<'a>(x: &Json, y: &Json) -> Items<'a> {
    let text = format!(
        "{}{}",
        x.as_str().unwrap_or_default(),
        y.as_str().unwrap_or_default()
    );
    smallvec![Item::owned(Json::String(Cow::Owned(text)))]
}

/// An operator on one value a side (comparison, `&`, arithmetic): empty if a side is empty,
/// an error if a side has more than one.
fn single_values<'a>(op: &str, a: &[Item], b: &[Item]) -> Result<Items<'a>, String> {
    if a.is_empty() || b.is_empty() {
        return Ok(Items::new());
    }
    if a.len() > 1 || b.len() > 1 {
        return Err(format!("`{op}` needs single values"));
    }
    let (x, y) = (&*a[0].value, &*b[0].value);
    let equal = || x == y || compare(x, y) == Some(std::cmp::Ordering::Equal);
    Ok(match op {
        "=" | "~" => boolean(Some(equal())),
        "!=" | "!~" => boolean(Some(!equal())),
        "<" => boolean(compare(x, y).map(|o| o.is_lt())),
        "<=" => boolean(compare(x, y).map(|o| o.is_le())),
        ">" => boolean(compare(x, y).map(|o| o.is_gt())),
        ">=" => boolean(compare(x, y).map(|o| o.is_ge())),
        "&" => concat(x, y),
        "+" if matches!(x, Json::String(_)) => concat(x, y),
        _ => return arithmetic(op, x, y),
    })
}

/// `+`, `-`, `*`, `/`, `div` and `mod` on two numbers: integers stay integers (but for `/`),
/// and dividing by zero gives nothing.
fn arithmetic<'a>(op: &str, x: &Json, y: &Json) -> Result<Items<'a>, String> {
    let (Some(p), Some(q)) = (x.as_f64(), y.as_f64()) else {
        return Err(format!("`{op}` needs numbers"));
    };
    let ints = x.is_integer() && y.is_integer();
    let v = match op {
        "+" => number(p + q, ints),
        "-" => number(p - q, ints),
        "*" => number(p * q, ints),
        "/" if q != 0.0 => number(p / q, false),
        "div" if q != 0.0 => number((p / q).trunc(), true),
        "mod" if q != 0.0 => number(p % q, ints),
        _ => return Ok(Items::new()),
    };
    Ok(smallvec![Item::owned(v)])
}

/// What a path step applies to: the input itself for `$this` (not a copy of it), else the
/// evaluated expression.
enum Base<'s, 'a> {
    Input(&'s [Item<'a>]),
    Own(Items<'a>),
}

impl<'a> std::ops::Deref for Base<'_, 'a> {
    type Target = [Item<'a>];

    fn deref(&self) -> &[Item<'a>] {
        match self {
            Base::Input(input) => input,
            Base::Own(own) => own.as_slice(),
        }
    }
}

/// The [`Base`] of a path step.
fn eval_base<'s, 'a>(
    on: &'a Expr,
    input: &'s [Item<'a>],
    ctx: &Context<'a>,
) -> Result<Base<'s, 'a>, String> {
    Ok(match on {
        Expr::This => Base::Input(input),
        other => Base::Own(eval(other, input, ctx)?),
    })
}

/// Argument `i` as text: a name as written (a type, `ofType(Quantity)`), borrowed from the
/// path, or what the argument evaluates to.
fn arg_string<'a>(
    args: &'a [Expr],
    i: usize,
    base: &[Item<'a>],
    ctx: &Context<'a>,
) -> Result<Option<Cow<'a, str>>, String> {
    match args.get(i) {
        None => Ok(None),
        Some(Expr::Member(on, n)) if matches!(**on, Expr::This) => {
            Ok(Some(Cow::Borrowed(n.as_str())))
        }
        Some(Expr::Literal(Json::String(s))) => Ok(Some(Cow::Borrowed(s.as_ref()))),
        Some(e) => Ok(eval(e, base, ctx)?
            .first()
            .and_then(|v| v.value.as_str().map(|s| Cow::Owned(s.to_owned())))),
    }
}

/// The items of `base` for which `cond` is true (`where`), or whether any is (`exists`).
fn matching<'a>(cond: &'a Expr, base: &[Item<'a>], ctx: &Context<'a>) -> Result<Items<'a>, String> {
    let mut out = Items::new();
    for item in base {
        if truthy(&eval(cond, std::slice::from_ref(item), ctx)?) == Some(true) {
            out.push(item.clone());
        }
    }
    Ok(out)
}

fn call<'a>(
    name: &str,
    base: &[Item<'a>],
    args: &'a [Expr],
    ctx: &Context<'a>,
) -> Result<Items<'a>, String> {
    Ok(match name {
        "where" => matching(args.first().ok_or("where() needs a condition")?, base, ctx)?,
        "exists" => match args.first() {
            Some(cond) => boolean(Some(!matching(cond, base, ctx)?.is_empty())),
            None => boolean(Some(!base.is_empty())),
        },
        "empty" => boolean(Some(base.is_empty())),
        "count" => smallvec![Item::owned(Json::Number(base.len().into()))],
        "first" => base.first().cloned().into_iter().collect(),
        "last" => base.last().cloned().into_iter().collect(),
        "not" => boolean(truthy(base).map(|b| !b)),
        "join" => {
            let sep = arg_string(args, 0, base, ctx)?.unwrap_or_default();
            let parts: Vec<&str> = base.iter().filter_map(|i| i.value.as_str()).collect();
            smallvec![Item::owned(Json::String(Cow::Owned(parts.join(&sep))))]
        }
        "ofType" => {
            let t = arg_string(args, 0, base, ctx)?.ok_or("ofType() needs a type")?;
            let t = t.rsplit('.').next().unwrap_or(&t);
            base.iter().filter(|i| of_type(i, t)).cloned().collect()
        }
        "extension" => {
            let url = arg_string(args, 0, base, ctx)?;
            let mut out = Items::new();
            for item in base {
                with_json(item, &mut out, |j, out| extensions(j, url.as_deref(), out));
            }
            out
        }
        "getResourceKey" => {
            let mut out = Items::new();
            for item in base {
                with_json(item, &mut out, resource_key);
            }
            out
        }
        "getReferenceKey" => {
            let want = arg_string(args, 0, base, ctx)?;
            let mut out = Items::new();
            for item in base {
                with_json(item, &mut out, |j, out| {
                    reference_key_of(j, want.as_deref(), out)
                });
            }
            out
        }
        "toString" => base
            .iter()
            .map(|i| {
                Item::owned(Json::String(match &*i.value {
                    Json::String(s) => s.clone(),
                    other => Cow::Owned(serde_json::to_string(other).unwrap_or_default()),
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
        None => match &*item.value {
            Json::Object(_) => item.value.get("resourceType").and_then(Json::as_str) == Some(t),
            Json::Bool(_) => t == "boolean",
            Json::String(_) => {
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
            Json::Number(n) => {
                (t == "decimal")
                    || (n.is_i64() || n.is_u64())
                        && ["integer", "positiveInt", "unsignedInt", "integer64"].contains(&t)
            }
            _ => false,
        },
    }
}

/// A resource's key (`getResourceKey()`): its `id`.
fn resource_key<'b>(j: &'b Json<'b>, out: &mut Items<'b>) {
    out.extend(j.get("id").map(Item::of));
}

/// A reference's key (`getReferenceKey(type)`): the id it points to, if to a resource of
/// type `want` (any without one).
fn reference_key_of<'b>(j: &'b Json<'b>, want: Option<&str>, out: &mut Items<'b>) {
    let key = j.get("reference").and_then(Json::as_str);
    if let Some(id) = key.and_then(|r| reference_key(r, want)) {
        out.push(Item::owned(Json::String(Cow::Borrowed(id))));
    }
}

/// The extensions of one value, in order: those with the given `url`, or all.
fn extensions<'b>(j: &'b Json<'b>, url: Option<&str>, out: &mut Items<'b>) {
    let Some(Json::Array(list)) = j.get("extension") else {
        return;
    };
    for ext in list {
        if url.is_none_or(|u| ext.get("url").and_then(Json::as_str) == Some(u)) {
            out.push(Item::of(ext));
        }
    }
}

/// The id a reference (`Type/id`, maybe with `/_history/version`) points to, if it is to a
/// resource of type `want` (or any type without one). Read from the reference's last four
/// parts, without a list of them: it is called for every resource of a bulk export.
fn reference_key<'r>(r: &'r str, want: Option<&str>) -> Option<&'r str> {
    let r = r.trim_end_matches('/');
    // The parts from the end: `last[0]` the last one.
    let mut from_end = r.rsplit('/');
    let last: [Option<&str>; 4] = std::array::from_fn(|_| from_end.next());
    let versioned = last[1] == Some("_history") && last[2].is_some();
    let (ty, id) = if r.split('/').any(|p| p == "_history") {
        // `Type/id/_history/version`: the type and id before the history.
        (last[3]?, if versioned { last[2]? } else { last[1]? })
    } else {
        (last[1]?, last[0]?)
    };
    want.is_none_or(|w| w == ty).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::Value;

    fn run(path: &str, v: Value) -> Vec<Value> {
        let json = Json::from_value(&v);
        let variables = BTreeMap::new();
        let ctx = Context {
            variables: &variables,
            row_index: None,
        };
        let e = parse(path).unwrap();
        eval(&e, &[Item::of(&json)], &ctx)
            .unwrap()
            .into_iter()
            .map(|i| i.value.to_value())
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

    #[test]
    fn reference_keys_with_and_without_history() {
        let key = |r| reference_key(r, None);
        assert_eq!(key("Patient/123"), Some("123"));
        assert_eq!(key("http://x.fi/fhir/Patient/123/"), Some("123"));
        assert_eq!(key("Patient/123/_history/2"), Some("123"));
        assert_eq!(
            reference_key("Patient/123/_history/2", Some("Patient")),
            Some("123")
        );
        assert_eq!(reference_key("Patient/123", Some("Encounter")), None);
        // Too few parts for what they claim: nothing (a debug build panicked on the first).
        for r in ["Patient/_history", "_history/2", "123", "", "/"] {
            assert_eq!(key(r), None, "{r}");
        }
    }
}
