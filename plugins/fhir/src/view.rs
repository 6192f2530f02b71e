//! SQL-on-FHIR v2 view definitions: a resource becomes rows of named columns.
//!
//! Evaluation recurses over the view (its nested selects, written by the line's author),
//! not over the resource: the one walk that follows the data down, `repeat`, keeps its own
//! stack and stops at [`View::depth`] levels, so neither a deeply nested resource nor a
//! `repeat` path that never runs out (say `$this`) can overflow the thread's stack. The
//! resource itself is at most that deep already (the parser refuses deeper JSON).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use serde_json::Value;
use smallvec::{SmallVec, smallvec};

use crate::fhirpath::{self, Context, Item, Items, Path};
use crate::json::{Held, Json};
use crate::prune;

/// A column of a view.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub path: Path,
    /// The path as written, for messages.
    pub text: String,
    pub collection: bool,
    /// Where the column is in a row (its place in [`View::columns`]).
    pub slot: usize,
}

/// A `select` element.
#[derive(Debug, Clone, Default)]
pub struct Select {
    pub columns: Vec<Column>,
    pub selects: Vec<Select>,
    pub for_each: Option<(Path, bool)>,
    pub repeat: Vec<Path>,
    pub union_all: Vec<Select>,
    /// The slots of this select's columns and of those nested in it (consecutive: a
    /// select's columns come before its nested selects', and `unionAll` branches share
    /// theirs).
    pub span: Range<usize>,
}

impl Select {
    /// Whether the select gives exactly one row, its columns' values on its parent's item:
    /// no `forEach`, `repeat`, nested selects or `unionAll`.
    fn is_flat(&self) -> bool {
        self.for_each.is_none()
            && self.repeat.is_empty()
            && self.selects.is_empty()
            && self.union_all.is_empty()
    }
}

/// A checked view definition.
#[derive(Debug, Clone)]
pub struct View {
    pub resource: String,
    pub constants: BTreeMap<String, Vec<Item<'static>>>,
    pub filters: Vec<Path>,
    pub select: Select,
    /// The columns, in order.
    pub columns: Vec<String>,
    /// How many levels `repeat` may descend from its focus (the parser sets it from
    /// `limits.depth`): deeper, the resource is rejected rather than walked further.
    pub depth: usize,
    /// The most bytes the rows of one resource may hold together (the parser sets it from
    /// `limits.object_bytes`): `forEach` and nested selects repeat a parent's values in
    /// every row, so one resource could otherwise ask for terabytes.
    pub output_bytes: usize,
    /// The keys of a resource the view reads, `None` for all (see [`crate::prune`]).
    pub keys: Option<prune::Keys>,
}

/// What one resource's walk may take: levels of `repeat`, bytes of rows.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    depth: usize,
    bytes: usize,
}

/// A column's value in a row: none, one, or (a column with `collection: true`) a list.
#[derive(Debug, Clone, Default)]
pub enum Cell<'a> {
    #[default]
    Null,
    One(Held<'a>),
    Many(Vec<Held<'a>>),
}

impl Cell<'_> {
    /// The value as JSON (for tests and the conformance suite).
    pub fn to_value(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::One(v) => v.to_value(),
            Cell::Many(list) => Value::Array(list.iter().map(|v| v.to_value()).collect()),
        }
    }
}

/// A row: the cells of the view's columns, in [`View::columns`]' order. Values of the
/// resource are borrowed from it.
pub type Row<'a> = Vec<Cell<'a>>;

fn path(v: &Value, what: &str) -> Result<Path, String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("{what} must be a FHIRPath string"))?;
    fhirpath::parse(s)
        .map(Path::new)
        .map_err(|e| format!("{what} `{}`: {e}", shown(s)))
}

/// A path as a message quotes it: its start when it is long (a path may be refused for
/// its length, and the message should stay readable).
fn shown(path: &str) -> Cow<'_, str> {
    const SHOWN: usize = 80;
    match path.char_indices().nth(SHOWN) {
        Some((end, _)) => Cow::Owned(format!("{}…", &path[..end])),
        None => Cow::Borrowed(path),
    }
}

fn select(v: &Value) -> Result<Select, String> {
    let o = v.as_object().ok_or("a select is an object")?;
    let mut s = Select::default();
    for c in o
        .get("column")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a column needs a `name`")?;
        if !name
            .chars()
            .next()
            .is_some_and(|ch| ch.is_ascii_alphabetic())
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        {
            return Err(format!("column name `{name}` is not a valid database name"));
        }
        let raw = c
            .get("path")
            .ok_or_else(|| format!("column `{name}` needs a `path`"))?;
        s.columns.push(Column {
            name: name.to_string(),
            text: raw.as_str().unwrap_or_default().to_string(),
            path: path(raw, "path")?,
            collection: c
                .get("collection")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            slot: 0,
        });
    }
    for nested in o
        .get("select")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        s.selects.push(select(nested)?);
    }
    match (o.get("forEach"), o.get("forEachOrNull")) {
        (Some(_), Some(_)) => {
            return Err("a select has `forEach` or `forEachOrNull`, not both".into());
        }
        (Some(p), None) => s.for_each = Some((path(p, "forEach")?, false)),
        (None, Some(p)) => s.for_each = Some((path(p, "forEachOrNull")?, true)),
        _ => {}
    }
    for p in o
        .get("repeat")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        s.repeat.push(path(p, "repeat")?);
    }
    for u in o
        .get("unionAll")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        s.union_all.push(select(u)?);
    }
    if !s.union_all.is_empty() {
        let names: Vec<Vec<String>> = s.union_all.iter().map(column_names).collect();
        if names.windows(2).any(|w| w[0] != w[1]) {
            return Err(
                "the branches of `unionAll` must have the same columns in the same order".into(),
            );
        }
    }
    Ok(s)
}

/// Gives every column its slot (by name: the branches of a `unionAll` fill the same ones)
/// and every select its span.
fn place(s: &mut Select, columns: &[String]) -> Range<usize> {
    let mut span: Option<Range<usize>> = None;
    let mut cover = |r: Range<usize>| {
        if !r.is_empty() {
            span = Some(match span.take() {
                Some(s) => s.start.min(r.start)..s.end.max(r.end),
                None => r,
            });
        }
    };
    for c in &mut s.columns {
        c.slot = columns.iter().position(|n| *n == c.name).unwrap_or(0);
        cover(c.slot..c.slot + 1);
    }
    for n in s.selects.iter_mut().chain(s.union_all.iter_mut()) {
        cover(place(n, columns));
    }
    s.span = span.unwrap_or(0..0);
    s.span.clone()
}

fn column_names(s: &Select) -> Vec<String> {
    let mut out: Vec<String> = s.columns.iter().map(|c| c.name.clone()).collect();
    for n in &s.selects {
        out.extend(column_names(n));
    }
    if let Some(u) = s.union_all.first() {
        out.extend(column_names(u));
    }
    out
}

/// Checks a ViewDefinition (JSON) and prepares it.
pub fn compile(v: &Value) -> Result<View, String> {
    let resource = v
        .get("resource")
        .and_then(Value::as_str)
        .ok_or("a view needs `resource`")?
        .to_string();
    let mut constants = BTreeMap::new();
    for c in v
        .get("constant")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a constant needs a `name`")?;
        let (key, value) = c
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")))
            .ok_or_else(|| format!("constant `{name}` needs a value[x]"))?;
        constants.insert(
            name.to_string(),
            vec![Item {
                value: Held::Owned(Box::new(Json::from_value(value))),
                choice: Some(Cow::Owned(key["value".len()..].to_string())),
            }],
        );
    }
    let mut filters = Vec::new();
    for w in v
        .get("where")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        filters.push(path(
            w.get("path").ok_or("a where needs a `path`")?,
            "where",
        )?);
    }
    let top = v
        .get("select")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or("a view needs `select`")?;
    let mut select = Select {
        selects: top.iter().map(select).collect::<Result<_, _>>()?,
        ..Default::default()
    };
    let columns = column_names(&select);
    let mut seen = std::collections::BTreeSet::new();
    for c in &columns {
        if !seen.insert(c) {
            return Err(format!("column `{c}` is defined twice"));
        }
    }
    place(&mut select, &columns);
    let mut view = View {
        resource,
        constants,
        filters,
        select,
        columns,
        depth: valtava_plugin::Limits::DEPTH,
        output_bytes: valtava_plugin::Limits::default().object_bytes,
        keys: None,
    };
    view.keys = prune::keys(&view);
    Ok(view)
}

fn value_of<'a>(items: Items<'a>, column: &Column) -> Result<Cell<'a>, String> {
    if column.collection {
        return Ok(Cell::Many(items.into_iter().map(|i| i.value).collect()));
    }
    let n = items.len();
    match items.into_iter().next() {
        None => Ok(Cell::Null),
        Some(i) if n == 1 => Ok(Cell::One(i.value)),
        Some(_) => Err(format!(
            "column `{}` (path `{}`) has {n} values; set `collection: true`",
            column.name, column.text
        )),
    }
}

/// Bytes a value holds, roughly: its text, and a word for each other value (an estimate
/// for the output bound, not an exact size).
fn value_bytes(v: &Json) -> usize {
    match v {
        Json::String(s) => s.len() + 8,
        Json::Array(a) => a.iter().map(value_bytes).sum::<usize>() + 8,
        Json::Object(o) => {
            o.iter()
                .map(|(k, v)| k.len() + value_bytes(v))
                .sum::<usize>()
                + 8
        }
        _ => 8,
    }
}

/// Bytes a cell holds, roughly (see [`value_bytes`]).
fn cell_bytes(c: &Cell) -> usize {
    match c {
        Cell::Null => 8,
        Cell::One(v) => value_bytes(v),
        Cell::Many(list) => list.iter().map(|v| value_bytes(v)).sum::<usize>() + 8,
    }
}

/// Bytes a row holds, roughly (see [`value_bytes`]).
fn row_bytes(r: &Row) -> usize {
    r.iter().map(cell_bytes).sum::<usize>() + 16
}

/// Bytes of rows together.
fn rows_bytes(rows: &[Row]) -> usize {
    rows.iter()
        .map(row_bytes)
        .fold(0usize, usize::saturating_add)
}

/// The error of rows past [`Bounds::bytes`]; it names sizes only.
fn too_many_rows(bytes: usize) -> String {
    format!(
        "the view's rows of one resource would hold more than {} MiB",
        bytes >> 20
    )
}

/// Every row of `a` joined with every row of `b` (whose cells are those of `span`),
/// refused before it is built when the result would hold more than `bytes`:
/// `|b|·Σa + |a|·Σb`. Rows and cells are moved where they are used last and cloned only
/// where they are used again (a computed value, say `getReferenceKey()`'s, is a string a
/// clone copies): one row joined with one, the usual case, copies nothing.
fn cross<'a>(
    a: Vec<Row<'a>>,
    mut b: Vec<Row<'a>>,
    span: &Range<usize>,
    bytes: usize,
) -> Result<Vec<Row<'a>>, String> {
    let total = rows_bytes(&a)
        .saturating_mul(b.len())
        .saturating_add(rows_bytes(&b).saturating_mul(a.len()));
    if total > bytes {
        return Err(too_many_rows(bytes));
    }
    if let [y] = b.as_mut_slice() {
        // One row to join (the usual case): its cells go into `a`'s rows, which are kept.
        let mut a = a;
        let rows_of_a = a.len();
        for (i, x) in a.iter_mut().enumerate() {
            fill(x, y, span, i + 1 == rows_of_a);
        }
        return Ok(a);
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    let rows_of_a = a.len();
    for (i, mut x) in a.into_iter().enumerate() {
        let last_x = i + 1 == rows_of_a;
        let Some((last_y, ys)) = b.split_last_mut() else {
            break;
        };
        for y in ys {
            let mut r = x.clone();
            fill(&mut r, y, span, last_x);
            out.push(r);
        }
        fill(&mut x, last_y, span, last_x);
        out.push(x);
    }
    Ok(out)
}

/// The cells of `span` in `x` set to `y`'s: moved out of `y` when `y` is not used again
/// (`y_done`), else cloned.
fn fill<'a>(x: &mut Row<'a>, y: &mut Row<'a>, span: &Range<usize>, y_done: bool) {
    if y_done {
        for (to, from) in x[span.clone()].iter_mut().zip(&mut y[span.clone()]) {
            *to = std::mem::take(from);
        }
    } else {
        x[span.clone()].clone_from_slice(&y[span.clone()]);
    }
}

/// Items reached by `repeat`, depth first: each item, then what its paths reach. The walk
/// keeps its own stack (one list of items still to visit per level) rather than recursing,
/// and stops with an error past `depth` levels: the data, or a path that reaches the item
/// itself again, could otherwise take it down without end.
fn repeat<'a>(
    paths: &'a [Path],
    item: &Item<'a>,
    ctx: &Context<'a>,
    depth: usize,
    out: &mut Vec<Item<'a>>,
) -> Result<(), String> {
    let mut levels = vec![reached(paths, item, ctx)?];
    while let Some(level) = levels.last_mut() {
        let Some(child) = level.pop() else {
            levels.pop();
            continue;
        };
        let below = reached(paths, &child, ctx)?;
        out.push(child);
        if below.is_empty() {
            continue;
        }
        if levels.len() >= depth {
            return Err(format!("`repeat` goes deeper than {depth} levels"));
        }
        levels.push(below);
    }
    Ok(())
}

/// What the `repeat` paths reach from one item, in the paths' order, reversed: the walk
/// pops the next item to visit from the end.
fn reached<'a>(paths: &'a [Path], item: &Item<'a>, ctx: &Context<'a>) -> Result<Items<'a>, String> {
    let mut items = Items::new();
    for p in paths {
        items.extend(p.eval(std::slice::from_ref(item), ctx)?);
    }
    items.reverse();
    Ok(items)
}

/// The items a select makes rows of: what `forEach` (`None` for `forEachOrNull` over
/// nothing) or `repeat` reach, else the focus itself (most often one; two are kept inline,
/// which measured the same as one here).
fn focuses<'a>(
    s: &'a Select,
    focus: &Item<'a>,
    ctx: &Context<'a>,
    depth: usize,
) -> Result<SmallVec<[Option<Item<'a>>; 2]>, String> {
    Ok(if let Some((p, or_null)) = &s.for_each {
        let items = p.eval(std::slice::from_ref(focus), ctx)?;
        if items.is_empty() && *or_null {
            smallvec![None]
        } else {
            items.into_iter().map(Some).collect()
        }
    } else if !s.repeat.is_empty() {
        let mut out = Vec::new();
        repeat(&s.repeat, focus, ctx, depth, &mut out)?;
        out.into_iter().map(Some).collect()
    } else {
        smallvec![Some(focus.clone())]
    })
}

/// Joins the one row of a flat nested select (see [`Select::is_flat`]) to `part`, as
/// [`run_select`] and [`cross`] would, with the same bounds checked, without building it:
/// its columns are evaluated once and set in every row of `part` (cloned into all but the
/// last). Most views are a select or two of plain columns, for every resource of a bulk
/// export, and the row and the lists around it were most of the view's allocations.
fn join_flat<'a>(
    n: &'a Select,
    focus: &Item<'a>,
    ctx: &Context<'a>,
    part: &mut [Row<'a>],
    width: usize,
    bytes: usize,
) -> Result<(), String> {
    // Its columns fill its span (slots are given in order: `place`), as `cross` would.
    debug_assert_eq!(n.span.len(), n.columns.len());
    let mut cells: SmallVec<[Cell<'a>; 4]> = SmallVec::with_capacity(n.columns.len());
    for c in &n.columns {
        let items = c.path.eval(std::slice::from_ref(focus), ctx)?;
        cells.push(value_of(items, c)?);
    }
    // The row it stands for: these cells, and a null in every other column.
    let one = (cells.iter().map(cell_bytes))
        .fold(0usize, usize::saturating_add)
        .saturating_add(8 * width.saturating_sub(cells.len()) + 16);
    if one > bytes {
        return Err(too_many_rows(bytes));
    }
    let total = rows_bytes(part).saturating_add(one.saturating_mul(part.len()));
    if total > bytes {
        return Err(too_many_rows(bytes));
    }
    let Some((last, rest)) = part.split_last_mut() else {
        return Ok(());
    };
    for row in rest {
        for (c, cell) in n.columns.iter().zip(&cells) {
            row[c.slot] = cell.clone();
        }
    }
    for (c, cell) in n.columns.iter().zip(cells) {
        last[c.slot] = cell;
    }
    Ok(())
}

fn run_select<'a>(
    s: &'a Select,
    focus: &Item<'a>,
    ctx: &Context<'a>,
    bounds: Bounds,
    width: usize,
) -> Result<Vec<Row<'a>>, String> {
    let iterates = s.for_each.is_some() || !s.repeat.is_empty();
    let mut rows = Vec::new();
    let mut held = 0usize;
    let mut hold = |rows: &mut Vec<Row<'a>>, part: Vec<Row<'a>>| {
        held = held.saturating_add(rows_bytes(&part));
        if held > bounds.bytes {
            return Err(too_many_rows(bounds.bytes));
        }
        // The first part is taken as it is (most selects have one focus).
        if rows.is_empty() {
            *rows = part;
        } else {
            rows.extend(part);
        }
        Ok(())
    };
    for (index, f) in focuses(s, focus, ctx, bounds.depth)?
        .into_iter()
        .enumerate()
    {
        // %rowIndex counts the items a select iterates; other selects see their parent's.
        let ctx = Context {
            row_index: if iterates { Some(index) } else { ctx.row_index },
            ..*ctx
        };
        let mut row: Row<'a> = vec![Cell::Null; width];
        let Some(f) = f else {
            // forEachOrNull over nothing: one row, evaluated on an empty focus.
            for c in &s.columns {
                row[c.slot] = value_of(c.path.eval(&[], &ctx)?, c)?;
            }
            hold(&mut rows, vec![row])?;
            continue;
        };
        for c in &s.columns {
            row[c.slot] = value_of(c.path.eval(std::slice::from_ref(&f), &ctx)?, c)?;
        }
        let mut part = vec![row];
        for n in &s.selects {
            if n.is_flat() {
                join_flat(n, &f, &ctx, &mut part, width, bounds.bytes)?;
                continue;
            }
            let nested = run_select(n, &f, &ctx, bounds, width)?;
            part = cross(part, nested, &n.span, bounds.bytes)?;
        }
        if let Some(first) = s.union_all.first() {
            let mut union = Vec::new();
            for u in &s.union_all {
                hold(&mut union, run_select(u, &f, &ctx, bounds, width)?)?;
            }
            part = cross(part, union, &first.span, bounds.bytes)?;
        }
        hold(&mut rows, part)?;
    }
    Ok(rows)
}

impl View {
    /// The rows of one resource (none when it is of another type or fails a `where`), each
    /// a cell per column in [`View::columns`]' order, borrowing from the resource. An error
    /// names the resource type, never its id (an id may be an identity code).
    pub fn rows<'a>(&'a self, resource: &'a Json<'a>) -> Result<Vec<Row<'a>>, String> {
        if resource.get("resourceType").and_then(Json::as_str) != Some(self.resource.as_str()) {
            return Ok(vec![]);
        }
        self.rows_of(&Item::of(resource))
            .map_err(|e| format!("{} resource: {e}", self.resource))
    }

    /// The rows of one resource as JSON objects, column name → value (for tests and the
    /// conformance suite), the resource read from its text as an NDJSON line is.
    pub fn rows_as_json(
        &self,
        resource: &Value,
    ) -> Result<Vec<serde_json::Map<String, Value>>, String> {
        let text = resource.to_string();
        let json = crate::line_resource(&text, self.depth, self.keys.as_ref())?;
        Ok(self
            .rows(&json)?
            .iter()
            .map(|row| {
                self.columns
                    .iter()
                    .zip(row)
                    .map(|(name, cell)| (name.clone(), cell.to_value()))
                    .collect()
            })
            .collect())
    }

    fn rows_of<'a>(&'a self, item: &Item<'a>) -> Result<Vec<Row<'a>>, String> {
        let ctx = Context {
            variables: &self.constants,
            row_index: None,
        };
        for f in &self.filters {
            let r = f.eval(std::slice::from_ref(item), &ctx)?;
            match r.as_slice() {
                [] => return Ok(vec![]),
                [i] if *i.value == Json::Bool(false) => return Ok(vec![]),
                [i] if *i.value == Json::Bool(true) => {}
                _ => return Err("a `where` path must give one boolean".into()),
            }
        }
        let bounds = Bounds {
            depth: self.depth,
            bytes: self.output_bytes,
        };
        run_select(&self.select, item, &ctx, bounds, self.columns.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A nested select of plain columns is joined to the rows before it without being built
    /// as rows of its own (`view.rs`, `join_flat`): it gives the rows, the errors and the bound
    /// on their bytes that the same select as a one-branch `unionAll` gives the general way,
    /// whether the rows before it are none, one or many.
    #[test]
    fn a_flat_select_gives_what_the_general_way_gives() {
        let view = |general: bool| {
            let flat = serde_json::json!({"column": [
                {"name": "id", "path": "id"},
                {"name": "family2", "path": "name.family"}
            ]});
            let last = if general {
                serde_json::json!({ "unionAll": [flat] })
            } else {
                flat
            };
            let mut v = compile(&serde_json::json!({"resource": "Patient", "select": [
                {"forEach": "name", "column": [{"name": "family", "path": "family"}]},
                last
            ]}))
            .unwrap();
            v.output_bytes = 1 << 20;
            v
        };
        let (flat, general) = (view(false), view(true));
        let patient = |id: &str, families: &[&str]| {
            let names: Vec<Value> = (families.iter())
                .map(|f| serde_json::json!({ "family": f }))
                .collect();
            serde_json::json!({"resourceType": "Patient", "id": id, "name": names})
        };
        let long = "x".repeat(1000);
        let empty_names = vec![serde_json::json!({}); 2000];
        let cases = [
            patient("p1", &[]),
            patient("p2", &["A"]),
            // Three names: `name.family` has three values, an error either way.
            patient("p3", &["A", "B", "C"]),
            serde_json::json!({"resourceType": "Patient", "id": "p4", "name": [{"family": "A"}, {}]}),
            // 2 000 rows of a 1 000-byte id: past the 1 MiB bound either way.
            serde_json::json!({"resourceType": "Patient", "id": long, "name": empty_names}),
        ];
        for p in &cases {
            assert_eq!(flat.rows_as_json(p), general.rows_as_json(p), "{p}");
        }
        assert_eq!(flat.rows_as_json(&cases[3]).unwrap().len(), 2);
        assert!(flat.rows_as_json(&cases[2]).is_err());
        assert!(flat.rows_as_json(&cases[4]).unwrap_err().contains("1 MiB"));
    }
}
