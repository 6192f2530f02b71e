//! A path that is a chain of steps (`a.b.where(c).first()`), compiled once and walked item
//! by item.
//!
//! Most columns of a view are such chains: names, `first()`, a `where`, `ofType`,
//! `extension(url)`, a resource's or a reference's key. The general interpreter returns a
//! collection from every step, matches each function by its name and evaluates its
//! arguments again for every resource; for a bulk export of millions of resources that
//! was about half of the time the view's rows took (examples/benchmark/PROFILE.md,
//! twenty-sixth round). A chain's steps are resolved when the view is checked, and each
//! item is handed down the steps as it is found, into one collection.
//!
//! It gives what the interpreter gives, errors included: every item that reaches a step is
//! visited, in the collection's order (a `first()` lets only the first one on, but the
//! steps before it still run over all of theirs, as the interpreter's would), and a chain
//! has at most one `where`, the only step whose condition can fail; whatever else the
//! interpreter is left to.

use super::{
    Context, Expr, Item, Items, eval, extensions, is_resource_of, may_name_type, member_of,
    of_type, reference_key_of, resource_key, truthy, with_json,
};
use crate::json::Json;

/// A step of a chain.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `.name`; `typed` where it starts the path with a capital, so that it may name the
    /// resource's type (`Patient.name`).
    Member {
        name: String,
        typed: bool,
    },
    First,
    Where(Expr),
    /// `ofType(t)`, `t` without its namespace.
    OfType(String),
    /// `extension(url)`, or every extension.
    Extension(Option<String>),
    ResourceKey,
    /// `getReferenceKey(type)`, or of any type.
    ReferenceKey(Option<String>),
}

/// Most steps a chain may have (a `first()` is marked by its step's bit in a word).
const MOST_STEPS: usize = 64;

/// A compiled chain (see the module's documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    steps: Vec<Step>,
}

impl Chain {
    /// The chain `e` is, or `None` when it is not one (the interpreter evaluates it).
    pub fn compile(e: &Expr) -> Option<Chain> {
        let mut steps = Vec::new();
        steps_of(e, &mut steps)?;
        let wheres = steps.iter().filter(|s| matches!(s, Step::Where(_))).count();
        (wheres <= 1 && steps.len() <= MOST_STEPS && !steps.is_empty()).then_some(Chain { steps })
    }

    /// The chain on a collection, as [`eval`] gives it.
    pub fn eval<'a>(&'a self, input: &[Item<'a>], ctx: &Context<'a>) -> Result<Items<'a>, String> {
        let mut walk = Walk {
            chain: self,
            ctx,
            firsts: 0,
            out: Items::new(),
        };
        for item in input {
            walk.step(0, item.clone())?;
        }
        Ok(walk.out)
    }
}

/// The steps of `e` from its start, or `None` where it is not a chain.
fn steps_of(e: &Expr, steps: &mut Vec<Step>) -> Option<()> {
    match e {
        Expr::This => {}
        Expr::Member(on, name) => {
            steps_of(on, steps)?;
            steps.push(Step::Member {
                name: name.clone(),
                typed: may_name_type(on, name),
            });
        }
        Expr::Call(on, name, args) => {
            steps_of(on, steps)?;
            steps.push(match (name.as_str(), args.as_slice()) {
                ("first", []) => Step::First,
                ("where", [cond]) => Step::Where(cond.clone()),
                ("ofType", [t]) => {
                    let t = named(t)?;
                    Step::OfType(t.rsplit('.').next().unwrap_or(t).to_owned())
                }
                ("extension", []) => Step::Extension(None),
                ("extension", [url]) => Step::Extension(Some(named(url)?.to_owned())),
                ("getResourceKey", []) => Step::ResourceKey,
                ("getReferenceKey", []) => Step::ReferenceKey(None),
                ("getReferenceKey", [t]) => Step::ReferenceKey(Some(named(t)?.to_owned())),
                _ => return None,
            });
        }
        _ => return None,
    }
    Some(())
}

/// An argument that is text as written: a name (`Quantity`) or a text literal. Any other
/// is evaluated by the interpreter, for every resource.
fn named(arg: &Expr) -> Option<&str> {
    match arg {
        Expr::Member(on, n) if matches!(**on, Expr::This) => Some(n),
        Expr::Literal(Json::String(s)) => Some(s),
        _ => None,
    }
}

/// One evaluation of a chain: what reached its end, and which `first()` has let an item on.
struct Walk<'c, 'a> {
    chain: &'a Chain,
    ctx: &'c Context<'a>,
    firsts: u64,
    out: Items<'a>,
}

impl<'a> Walk<'_, 'a> {
    /// Hands `item` to step `at` (past the last, it is a result).
    fn step(&mut self, at: usize, item: Item<'a>) -> Result<(), String> {
        let Some(step) = self.chain.steps.get(at) else {
            self.out.push(item);
            return Ok(());
        };
        let next = at + 1;
        match step {
            Step::Member { name, typed } => {
                if *typed && is_resource_of(&item, name) {
                    return self.step(next, item);
                }
                self.each(next, &item, |j, out| member_of(j, name, out))
            }
            Step::First => {
                let bit = 1u64 << at;
                if self.firsts & bit == 0 {
                    self.firsts |= bit;
                    return self.step(next, item);
                }
                Ok(())
            }
            Step::Where(cond) => {
                let holds = truthy(&eval(cond, std::slice::from_ref(&item), self.ctx)?);
                if holds == Some(true) {
                    return self.step(next, item);
                }
                Ok(())
            }
            Step::OfType(t) if of_type(&item, t) => self.step(next, item),
            Step::OfType(_) => Ok(()),
            Step::Extension(url) => {
                self.each(next, &item, |j, out| extensions(j, url.as_deref(), out))
            }
            Step::ResourceKey => self.each(next, &item, resource_key),
            Step::ReferenceKey(want) => self.each(next, &item, |j, out| {
                reference_key_of(j, want.as_deref(), out)
            }),
        }
    }

    /// Hands what `f` finds in `item`'s value to step `at`, one by one (past the last
    /// step, straight into the result: most paths end in a name).
    fn each(
        &mut self,
        at: usize,
        item: &Item<'a>,
        f: impl for<'b> FnOnce(&'b Json<'b>, &mut Items<'b>),
    ) -> Result<(), String> {
        if at == self.chain.steps.len() {
            with_json(item, &mut self.out, f);
            return Ok(());
        }
        let mut found = Items::new();
        with_json(item, &mut found, f);
        for i in found {
            self.step(at, i)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::*;
    use crate::fhirpath::parse;

    /// What a path gives on a resource: its values and choice types, or its error.
    type Outcome = Result<Vec<(Value, Option<String>)>, String>;

    fn outcome(items: Result<Items, String>) -> Outcome {
        items.map(|items| {
            (items.iter())
                .map(|i| (i.value.to_value(), i.choice.as_deref().map(str::to_owned)))
                .collect()
        })
    }

    fn resources() -> Vec<Value> {
        vec![
            json!({"resourceType": "Observation", "id": "o1",
                "subject": {"reference": "Patient/p1/_history/3"},
                "code": {"coding": [
                    {"system": "http://loinc.org", "code": "4548-4"},
                    {"system": "urn:x", "code": ["a", "b"]},
                    {"system": "http://loinc.org", "code": "17856-6"}]},
                "valueQuantity": {"value": 6.1, "unit": "%"},
                "effectiveDateTime": "2025-03-01"}),
            json!({"resourceType": "Patient", "id": "p1",
                "identifier": [{"system": "urn:oid:1.2.246.21", "value": "x"},
                    {"system": "urn:oid:1.2.246.21", "value": "y"}],
                "extension": [
                    {"url": "u1", "valueCoding": {"code": "091"}},
                    {"url": "u2", "valueString": "s"},
                    {"url": "u1", "valueCoding": {"code": "049"}}],
                "subject": {"reference": "Encounter/e1"},
                "deceasedBoolean": false}),
            json!({"resourceType": "Condition", "subject": {"reference": 7},
                "code": {"coding": []}, "identifier": {"system": 1}}),
            // A type named that is not the resource's: nothing, though the path goes on.
            json!({"resourceType": "Encounter", "code": {"coding": [{"code": "c"}]},
                "identifier": [{"value": "v"}],
                "Observation": {"code": {"coding": [{"code": "k"}]}}}),
            json!("text"),
        ]
    }

    /// A path giving items of a choice type (`value`) and computed ones.
    const PARTS: &str = "value | subject.getReferenceKey() | code.coding";

    /// Every chain gives what the interpreter gives on the same resource: its values, their
    /// order, their choice types and its errors (a `where` whose comparison meets a list).
    #[test]
    fn a_chain_gives_what_the_interpreter_gives() {
        let paths = [
            "id",
            "Observation.code.coding.code",
            "Patient.identifier.value",
            "code.coding.where(system = 'http://loinc.org').code",
            "code.coding.where(system = 'http://loinc.org').code.first()",
            "code.coding.where(code = 'a').system",
            "code.coding.first().code",
            // The condition fails on a later item, after one has gone past `first()`.
            "code.coding.where(code = '4548-4').code.first()",
            "code.coding.code.first()",
            "code.first().coding.first().system.first()",
            "value.ofType(Quantity).value",
            "value.ofType('FHIR.Quantity').unit",
            "value.ofType(string)",
            "effective.ofType(dateTime)",
            "deceased.ofType(boolean)",
            "identifier.where(system = 'urn:oid:1.2.246.21').value.first()",
            "identifier.where(system = 1).system",
            "extension('u1').value.ofType(Coding).code.first()",
            "extension('u1').value.ofType(Coding).code",
            "extension().url",
            "extension('nothing').value",
            "getResourceKey()",
            "subject.getReferenceKey(Patient)",
            "subject.getReferenceKey('Encounter')",
            "subject.getReferenceKey()",
            "subject.getReferenceKey().first()",
            "subject.getReferenceKey(Patient).id",
            "subject.getReferenceKey().getResourceKey()",
            "where(id = 'p1').identifier.value",
            "where(%rowIndex = 0).id",
            "ofType(Quantity).unit",
            "ofType(string)",
        ];
        let variables = BTreeMap::new();
        let ctx = Context {
            variables: &variables,
            row_index: None,
        };
        let parts_path = parse(PARTS).unwrap();
        for resource in resources() {
            let json = Json::from_value(&resource);
            let input = [Item::of(&json)];
            // Items of a choice type and computed (owned) ones as the input.
            let parts = eval(&parts_path, &input, &ctx).unwrap();
            for text in paths {
                let e = parse(text).unwrap();
                let chain = Chain::compile(&e).unwrap_or_else(|| panic!("{text} is a chain"));
                for on in [
                    &input[..],
                    &[],
                    &[input[0].clone(), input[0].clone()],
                    &parts,
                ] {
                    assert_eq!(
                        outcome(chain.eval(on, &ctx)),
                        outcome(eval(&e, on, &ctx)),
                        "{text} on {resource}"
                    );
                }
            }
        }
    }

    /// A path that is not a chain, or has two `where`s (whose errors could come in another
    /// order), is left to the interpreter.
    #[test]
    fn other_paths_are_left_to_the_interpreter() {
        for text in [
            "$this",
            "name[0].family",
            "name.family | name.given",
            "name.exists()",
            "name.where()",
            "name.count()",
            "name.last()",
            "id = 'x'",
            "ofType()",
            "value.ofType(FHIR.Quantity)",
            "extension(%url).value",
            "getResourceKey(Patient)",
            "getReferenceKey(Patient, Encounter)",
            "a.where(b = 1).c.where(d = 2)",
            "%constant.x",
        ] {
            let e = parse(text).unwrap();
            assert_eq!(Chain::compile(&e), None, "{text}");
        }
    }
}
