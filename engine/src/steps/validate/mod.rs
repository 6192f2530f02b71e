//! The validate step: rules that check each row or the whole dataset. Each rule kind is one
//! file under `rules/` (what the line file says and what the kind does); `plan.rs` orders
//! the phases of a validate step's plan. A row rule compiles to a vectorised DataFusion
//! expression that yields the reason of a violation, or null; a dataset rule to a check the
//! run evaluates when the step has seen every row.

mod plan;
pub mod rules;
pub mod seen;

pub use rules::{CHECKS, category, check_count};

#[cfg(test)]
pub(crate) mod testing;
