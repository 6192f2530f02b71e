//! Which keys of a resource a view can read, so that the parser builds only those.
//!
//! A view reads a few elements of each resource (`subject`, `code`, `valueQuantity`);
//! the rest (`meta`, `text`, `category`, `issued`, …) was parsed into a tree only to be
//! dropped. Found from the view's paths once, when the view is checked, the keys it
//! names let the parser step over the others' values (still checked to be JSON) without
//! building them (examples/benchmark/PROFILE.md, twentieth round).
//!
//! Only the resource's own keys are pruned, and only where the view provably uses the
//! resource through keys it names: a path that can give the resource itself (`$this`,
//! `Patient`, `first()` of either) to a column, a comparison, `toString()` or any function
//! other than those that read named keys, makes the view read every key (no pruning).
//! A key is kept when it is a name of the view, or that name with a choice type's suffix
//! (`value` keeps `valueQuantity`), either with the `_` of a primitive's extension, or any
//! key starting with a capital where a name is empty (as `member_of` finds them).
//!
//! Skipped values are read as strictly as kept ones (escapes, surrogates, numbers within a
//! double's range): a line the whole parse rejects is rejected all the same.

use std::collections::BTreeSet;

use crate::fhirpath::Expr;
use crate::view::{Select, View};

/// The keys a view reads at the top of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Keys {
    /// In order, so that the names starting with one byte are together.
    names: Vec<String>,
    /// For each first byte, where the names starting with it are in `names`: a key is
    /// compared with those only (a resource's every key is looked up).
    starts: Vec<(usize, usize)>,
    /// Whether a name is empty (it keeps the keys starting with a capital).
    empty: bool,
}

impl Keys {
    fn new(names: BTreeSet<String>) -> Self {
        let names: Vec<String> = names.into_iter().collect();
        let mut starts = vec![(0, 0); 256];
        for (i, n) in names.iter().enumerate() {
            if let Some(&b) = n.as_bytes().first() {
                let range = &mut starts[usize::from(b)];
                if range.0 == range.1 {
                    *range = (i, i);
                }
                range.1 = i + 1;
            }
        }
        let empty = names.iter().any(String::is_empty);
        Self {
            names,
            starts,
            empty,
        }
    }

    /// Whether the parser keeps `key` of a resource.
    pub fn keeps(&self, key: &str) -> bool {
        self.named(key) || key.strip_prefix('_').is_some_and(|k| self.named(k))
    }

    /// Whether `key` is a name, or a name and a choice type's suffix.
    fn named(&self, key: &str) -> bool {
        let is = |n: &str| {
            key.strip_prefix(n).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_uppercase())
            })
        };
        if self.empty && is("") {
            return true;
        }
        let Some(&first) = key.as_bytes().first() else {
            return false;
        };
        let (from, to) = self.starts[usize::from(first)];
        self.names[from..to].iter().any(|n| is(n))
    }
}

/// Functions that, given the resource, read only keys found by [`names`] (or `resourceType`)
/// or give the resource on unchanged.
const ROOT_CALLS: &[&str] = &[
    "first",
    "last",
    "where",
    "ofType",
    "exists",
    "empty",
    "count",
    "getResourceKey",
    "extension",
];

/// The keys `view` reads, or `None` when it may read the resource whole.
pub fn keys(view: &View) -> Option<Keys> {
    let root_safe = view.filters.iter().all(|f| safe(f)) && select_safe(&view.select);
    if !root_safe {
        return None;
    }
    let mut names = BTreeSet::from(["resourceType".to_string()]);
    for f in &view.filters {
        collect(f, &mut names);
    }
    collect_select(&view.select, &mut names);
    Some(Keys::new(names))
}

/// Whether the paths a select evaluates on the resource are [`safe`]; a select that
/// iterates evaluates its columns and nested selects on what it reaches instead.
fn select_safe(s: &Select) -> bool {
    if let Some((p, _)) = &s.for_each {
        return safe(p);
    }
    if !s.repeat.is_empty() {
        return s.repeat.iter().all(|p| safe(p));
    }
    s.columns.iter().all(|c| safe(&c.path))
        && s.selects.iter().all(select_safe)
        && s.union_all.iter().all(select_safe)
}

/// Every name a select's paths step into, at any depth (more than the resource's keys:
/// harmless, a name that is no key of it keeps nothing).
fn collect_select(s: &Select, names: &mut BTreeSet<String>) {
    let exprs = (s.for_each.iter().map(|(p, _)| p))
        .chain(&s.repeat)
        .chain(s.columns.iter().map(|c| &c.path));
    for e in exprs {
        collect(e, names);
    }
    for n in s.selects.iter().chain(&s.union_all) {
        collect_select(n, names);
    }
}

fn collect(e: &Expr, names: &mut BTreeSet<String>) {
    match e {
        Expr::This | Expr::Literal(_) | Expr::Variable(_) => {}
        Expr::Member(on, name) => {
            names.insert(name.clone());
            collect(on, names);
        }
        Expr::Call(on, name, args) => {
            match name.as_str() {
                "getResourceKey" => {
                    names.insert("id".into());
                }
                "extension" => {
                    names.insert("extension".into());
                }
                _ => {}
            }
            collect(on, names);
            args.iter().for_each(|a| collect(a, names));
        }
        Expr::Index(on, i) => {
            collect(on, names);
            collect(i, names);
        }
        Expr::Binary(_, l, r) => {
            collect(l, names);
            collect(r, names);
        }
        Expr::Negate(x) => collect(x, names),
    }
}

/// Whether `e`, evaluated on the resource, may give the resource itself.
fn may_give_root(e: &Expr) -> bool {
    match e {
        Expr::This => true,
        Expr::Member(on, name) => {
            matches!(**on, Expr::This) && name.starts_with(|c: char| c.is_ascii_uppercase())
        }
        Expr::Call(on, name, _) => {
            matches!(name.as_str(), "first" | "last" | "where" | "ofType") && may_give_root(on)
        }
        Expr::Index(on, _) => may_give_root(on),
        Expr::Binary(op, l, r) => op == "|" && (may_give_root(l) || may_give_root(r)),
        Expr::Literal(_) | Expr::Variable(_) | Expr::Negate(_) => false,
    }
}

/// Whether `e`, evaluated on the resource, reads it only through named keys and never
/// gives it whole.
fn safe(e: &Expr) -> bool {
    reads_by_name(e) && !may_give_root(e)
}

/// Whether `e`, evaluated on the resource, reads it only through named keys (it may give
/// the resource on whole: the caller decides whether that is used).
fn reads_by_name(e: &Expr) -> bool {
    match e {
        Expr::This | Expr::Literal(_) | Expr::Variable(_) => true,
        Expr::Member(on, _) => reads_by_name(on),
        // Arguments are evaluated on the items of `on`: on the resource only if `on` may
        // give it.
        Expr::Call(on, name, args) => {
            reads_by_name(on)
                && (!may_give_root(on)
                    || (ROOT_CALLS.contains(&name.as_str()) && args.iter().all(safe)))
        }
        Expr::Index(on, i) => reads_by_name(on) && safe(i),
        Expr::Binary(_, l, r) => safe(l) && safe(r),
        Expr::Negate(x) => safe(x),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::json::Json;
    use crate::view::{self, View};

    fn view(columns: &[&str]) -> View {
        let column: Vec<_> = (columns.iter().enumerate())
            .map(|(i, p)| json!({ "name": format!("c{i}"), "path": p }))
            .collect();
        view::compile(&json!({ "resource": "Observation", "select": [{ "column": column }] }))
            .unwrap()
    }

    #[test]
    fn a_view_keeps_the_keys_it_names_with_their_choice_types() {
        let v = view(&[
            "subject.getReferenceKey(Patient)",
            "effective.ofType(dateTime)",
            "Observation.value.ofType(Quantity).value",
            "getResourceKey()",
        ]);
        let keys = v.keys.expect("a view reading named keys prunes");
        for kept in [
            "resourceType",
            "id",
            "subject",
            "effectiveDateTime",
            "_effectiveDateTime",
            "valueQuantity",
        ] {
            assert!(keys.keeps(kept), "{kept}");
        }
        for skipped in ["meta", "text", "issued", "category", "valuable", "subjects"] {
            assert!(!keys.keeps(skipped), "{skipped}");
        }
    }

    #[test]
    fn names_of_extensions_and_empty_names_keep_their_keys() {
        let keys = view(&["_status.extension.url", "``.count()"]).keys.unwrap();
        for kept in ["_status", "Zed", "_Zed"] {
            assert!(keys.keeps(kept), "{kept}");
        }
        assert!(!keys.keeps("meta") && !keys.keeps("status"));
        let v = view(&["_status.extension.url"]);
        let text = r#"{"resourceType": "Observation", "_status": {"extension": [{"url": "u"}]}}"#;
        let pruned = Json::parse_keeping(text, v.keys.as_ref().unwrap()).unwrap();
        assert_eq!(v.rows(&pruned).unwrap()[0][0].to_value(), "u");
    }

    #[test]
    fn a_view_that_can_see_the_whole_resource_reads_every_key() {
        for path in [
            "$this",
            "Observation",
            "first()",
            "toString()",
            "$this = $this",
            "Observation | subject",
            "where(meta.exists()).toString()",
        ] {
            assert!(view(&[path]).keys.is_none(), "{path}");
        }
        let for_each = view::compile(&json!({ "resource": "Observation",
            "select": [{ "forEach": "$this", "column": [{ "name": "a", "path": "status" }] }] }));
        assert!(for_each.unwrap().keys.is_none());
        let filter = view::compile(
            &json!({ "resource": "Observation", "where": [{ "path": "$this.exists() and toString() = ''" }],
            "select": [{ "column": [{ "name": "a", "path": "status" }] }] }),
        );
        assert!(filter.unwrap().keys.is_none());
    }

    /// Keys are looked up among the names of their first byte only; what is kept is what a
    /// comparison with every name keeps.
    #[test]
    fn keys_kept_are_those_some_name_keeps() {
        let every = |names: &[&str], key: &str| {
            let named = |key: &str| {
                names.iter().any(|n| {
                    key.strip_prefix(n).is_some_and(|rest| {
                        rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_uppercase())
                    })
                })
            };
            named(key) || key.strip_prefix('_').is_some_and(named)
        };
        let keys = [
            "",
            "_",
            "value",
            "valueQuantity",
            "_valueString",
            "valuex",
            "values",
            "v",
            "code",
            "coding",
            "codeX",
            "Patient",
            "p",
            "ä",
            "äx",
            "äY",
            "é",
            "éZ",
            "id",
            "_id",
            "identifier",
            "x",
        ];
        for names in [
            &["value", "code", "coding", "id", "resourceType", "ä", "é"][..],
            &["", "id", "valu"],
            &[],
            &[""],
        ] {
            let kept = super::Keys::new(names.iter().map(|n| n.to_string()).collect());
            for key in keys {
                assert_eq!(kept.keeps(key), every(names, key), "{names:?} {key}");
            }
        }
    }

    #[test]
    fn pruned_rows_are_the_rows_of_the_whole_resource() {
        let v = view(&[
            "subject.reference",
            "code.coding.where(system = 'http://loinc.org').code.first()",
            "value.ofType(Quantity).value",
            "Observation.status",
            "extension('u').value.ofType(string)",
        ]);
        let text = r#"{"resourceType": "Observation", "meta": {"x": [1, {"y": "}"}]}, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]}, "text": "\u00e4",
            "subject": {"reference": "Patient/1"}, "valueQuantity": {"value": 6.1e1}, "status": "amended",
            "extension": [{"url": "u", "valueString": "e"}], "issued": 1e300}"#;
        let keys = v.keys.clone().unwrap();
        let pruned = Json::parse_keeping(text, &keys).unwrap();
        assert!(pruned.get("meta").is_none() && pruned.get("issued").is_none());
        let mut whole = Json::parse(text).unwrap();
        if let Json::Object(pairs) = &mut whole {
            pairs.retain(|(k, _)| keys.keeps(k));
        }
        let values = |j: &Json| -> Vec<_> {
            (v.rows(j).unwrap().iter())
                .map(|r| r.iter().map(|c| c.to_value()).collect::<Vec<_>>())
                .collect()
        };
        assert_eq!(values(&pruned), values(&Json::parse(text).unwrap()));
        assert_eq!(pruned, whole);
        // What is skipped is still read as JSON: broken text there rejects the line.
        assert!(
            Json::parse_keeping(r#"{"resourceType": "Observation", "meta": {x}}"#, &keys).is_err()
        );
        assert!(Json::parse_keeping(r#"{"resourceType": "Observation"} trailing"#, &keys).is_err());
        assert!(Json::parse_keeping("[1, 2]", &keys).is_ok());
        // Skipped values are read as strictly as kept ones.
        for bad in [r#""\ud800""#, "1e400", r#"{"a": "\x"}"#] {
            let line = format!(r#"{{"resourceType": "Observation", "meta": {bad}}}"#);
            assert!(Json::parse(&line).is_err(), "{line}");
            assert!(Json::parse_keeping(&line, &keys).is_err(), "{line}");
        }
    }
}
