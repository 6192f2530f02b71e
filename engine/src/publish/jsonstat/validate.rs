//! Checking JSON-stat 2.0 documents: the semantic rules of the format that a JSON Schema
//! cannot express (sizes and values agree, categories and indexes, hierarchies without
//! cycles, one metric dimension…), each with a stable issue code. The engine checks every
//! document it writes; the tests check what the daemon serves.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// A problem found in a JSON-stat document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Issue {
    pub code: &'static str,
    /// Whether the document is invalid because of it (otherwise a warning).
    pub error: bool,
    pub message: String,
}

fn issue(code: &'static str, message: impl Into<String>) -> Issue {
    Issue {
        code,
        error: true,
        message: message.into(),
    }
}

fn warning(code: &'static str, message: impl Into<String>) -> Issue {
    Issue {
        code,
        error: false,
        message: message.into(),
    }
}

/// Checks the semantic rules of JSON-stat 2.0 (a dataset, a collection with embedded
/// datasets, or a deprecated bundle).
pub fn validate(doc: &Value) -> Vec<Issue> {
    let mut out = Vec::new();
    match doc.get("class").and_then(Value::as_str) {
        Some("dataset") => validate_dataset(doc, &mut out),
        Some("collection") => {
            for item in doc
                .pointer("/link/item")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if item.get("class").and_then(Value::as_str) == Some("dataset")
                    && item.get("id").is_some()
                {
                    validate_dataset(item, &mut out);
                }
            }
        }
        Some("dimension") => {}
        _ => {
            // JSON-stat 1.x style: datasets keyed by name at the top level.
            let mut bundled = false;
            if let Some(o) = doc.as_object() {
                for (k, v) in o {
                    if k != "version" && v.get("dimension").is_some() {
                        bundled = true;
                        validate_dataset(v, &mut out);
                    }
                }
            }
            if bundled {
                out.push(warning(
                    "BUNDLE_DEPRECATED",
                    "a bundle of datasets is deprecated in JSON-stat 2.0; use a collection",
                ));
            } else {
                out.push(issue(
                    "CLASS_MISSING",
                    "`class` must be dataset, collection or dimension",
                ));
            }
        }
    }
    out
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn validate_dataset(ds: &Value, out: &mut Vec<Issue>) {
    let ids = strings(ds.get("id"));
    let size: Vec<u64> = ds
        .get("size")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    if ids.len() != size.len() {
        out.push(issue(
            "ID_SIZE_LEN_MISMATCH",
            format!("{} ids but {} sizes", ids.len(), size.len()),
        ));
    }
    let dims = ds.get("dimension").and_then(Value::as_object);
    let keys: BTreeSet<&str> = dims
        .map(|d| d.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let idset: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    if keys != idset {
        out.push(issue(
            "DIM_KEY_ID_MISMATCH",
            "the keys of `dimension` differ from `id`",
        ));
    }
    let cells: u64 = size.iter().product();
    check_values(ds, cells, out);
    check_statuses(ds, cells, out);
    let metric_dims = metric_dimensions(ds, &idset, out);
    let Some(dims) = dims else { return };
    for (k, id) in ids.iter().enumerate() {
        let Some(cat) = dims.get(id).and_then(|d| d.get("category")) else {
            continue;
        };
        check_category(id, cat, size.get(k).copied(), &metric_dims, out);
    }
}

/// Checks that `value` has one entry per cell (dense) or only keys of cells (sparse).
fn check_values(ds: &Value, cells: u64, out: &mut Vec<Issue>) {
    match ds.get("value") {
        Some(Value::Array(a)) if a.len() as u64 != cells => {
            out.push(issue(
                "VALUE_LEN_MISMATCH",
                format!("{} values for {cells} cells", a.len()),
            ));
        }
        Some(Value::Object(o)) => {
            for k in o.keys() {
                if k.parse::<u64>().map_or(true, |i| i >= cells) {
                    out.push(issue(
                        "SPARSE_KEY_OUT_OF_RANGE",
                        format!("value key {k} is not a cell 0–{}", cells.saturating_sub(1)),
                    ));
                }
            }
        }
        _ => {}
    }
}

/// Checks that `status` has one entry or one per cell (dense) or only keys of cells.
fn check_statuses(ds: &Value, cells: u64, out: &mut Vec<Issue>) {
    match ds.get("status") {
        Some(Value::Array(a)) if a.len() != 1 && a.len() as u64 != cells => {
            out.push(issue(
                "STATUS_LEN_MISMATCH",
                format!("{} statuses for {cells} cells", a.len()),
            ));
        }
        Some(Value::Object(o)) => {
            for k in o.keys() {
                if k.parse::<u64>().map_or(true, |i| i >= cells) {
                    out.push(issue(
                        "STATUS_KEY_OUT_OF_RANGE",
                        format!("status key {k} is not a cell"),
                    ));
                }
            }
        }
        _ => {}
    }
}

/// Checks that `role` names only dimensions; returns the metric dimensions.
fn metric_dimensions(ds: &Value, idset: &BTreeSet<&str>, out: &mut Vec<Issue>) -> Vec<String> {
    let mut metric_dims = Vec::new();
    if let Some(role) = ds.get("role").and_then(Value::as_object) {
        for (r, list) in role {
            for d in strings(Some(list)) {
                if !idset.contains(d.as_str()) {
                    out.push(issue(
                        "ROLE_ID_UNKNOWN",
                        format!("role `{r}` names `{d}`, which is not a dimension"),
                    ));
                } else if r == "metric" {
                    metric_dims.push(d);
                }
            }
        }
    }
    metric_dims
}

/// Checks the `category` of dimension `id` against its size, its index and its role.
fn check_category(
    id: &str,
    cat: &Value,
    size: Option<u64>,
    metric_dims: &[String],
    out: &mut Vec<Issue>,
) {
    let index = category_index(id, cat, out);
    if let Some(s) = size
        && index.len() as u64 != s
    {
        out.push(issue(
            "INDEX_COUNT_MISMATCH",
            format!("`{id}` has {} categories but size {s}", index.len()),
        ));
    }
    let known: BTreeSet<&str> = index.iter().map(String::as_str).collect();
    check_category_keys(id, cat, &known, out);
    if let Some(child) = cat.get("child").and_then(Value::as_object) {
        check_hierarchy(id, child, &known, out);
    }
    if metric_dims.iter().any(|m| m == id) {
        let units = cat.get("unit").and_then(Value::as_object);
        for c in &index {
            if units.is_none_or(|u| !u.contains_key(c)) {
                out.push(warning(
                    "METRIC_UNIT_MISSING",
                    format!("metric `{id}` category `{c}` has no unit"),
                ));
            }
        }
    }
}

/// The category codes of dimension `id`, from `index` (array or positions) or `label`.
fn category_index(id: &str, cat: &Value, out: &mut Vec<Issue>) -> Vec<String> {
    match cat.get("index") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        Some(Value::Object(o)) => {
            let mut pos: Vec<u64> = o.values().filter_map(Value::as_u64).collect();
            pos.sort();
            if pos != (0..o.len() as u64).collect::<Vec<_>>() {
                out.push(issue(
                    "INDEX_POSITIONS_INVALID",
                    format!(
                        "the positions of `{id}` are not 0–{}",
                        o.len().saturating_sub(1)
                    ),
                ));
            }
            o.keys().cloned().collect()
        }
        _ => cat
            .get("label")
            .and_then(Value::as_object)
            .map(|l| l.keys().cloned().collect())
            .unwrap_or_default(),
    }
}

/// Checks that `label`, `unit`, `coordinates` and `note` name only known categories.
fn check_category_keys(id: &str, cat: &Value, known: &BTreeSet<&str>, out: &mut Vec<Issue>) {
    for (field, code) in [
        ("label", "LABEL_KEY_UNKNOWN"),
        ("unit", "UNIT_KEY_UNKNOWN"),
        ("coordinates", "COORD_KEY_UNKNOWN"),
        ("note", "NOTE_KEY_UNKNOWN"),
    ] {
        if cat.get("index").is_none() && field == "label" {
            continue;
        }
        for key in cat
            .get(field)
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|o| o.keys())
        {
            if !known.contains(key.as_str()) {
                out.push(issue(
                    code,
                    format!("`{id}` {field} names `{key}`, which is not a category"),
                ));
            }
        }
    }
}

/// Checks that the `child` hierarchy names only known categories and has no cycle.
fn check_hierarchy(
    id: &str,
    child: &Map<String, Value>,
    known: &BTreeSet<&str>,
    out: &mut Vec<Issue>,
) {
    let mut graph: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (parent, kids) in child {
        let kids = strings(Some(kids));
        for c in kids.iter().chain(std::iter::once(parent)) {
            if !known.contains(c.as_str()) {
                out.push(issue(
                    "CHILD_ID_UNKNOWN",
                    format!("`{id}` child names `{c}`, which is not a category"),
                ));
            }
        }
        graph.insert(parent.as_str(), kids);
    }
    if has_cycle(&graph) {
        out.push(issue(
            "CHILD_CYCLE",
            format!("the hierarchy of `{id}` has a cycle"),
        ));
    }
}

fn has_cycle(graph: &BTreeMap<&str, Vec<String>>) -> bool {
    fn visit<'a>(
        n: &'a str,
        graph: &'a BTreeMap<&str, Vec<String>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> bool {
        if stack.contains(&n) {
            return true;
        }
        if !done.insert(n) {
            return false;
        }
        stack.push(n);
        let found = graph
            .get(n)
            .is_some_and(|kids| kids.iter().any(|k| visit(k, graph, stack, done)));
        stack.pop();
        found
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .any(|k| visit(k, graph, &mut Vec::new(), &mut done))
}
