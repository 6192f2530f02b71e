//! What each step kind does, one folder per kind: [`source`] reads objects through the
//! parser plugins, [`validate`] holds the rule kinds, [`harmonise`] maps values to shared
//! codes and derives columns, [`aggregate`] computes measures by dimensions (rates,
//! medians, distinct counts, cells rolled up to totals), [`publish`] shapes a published
//! table and [`sql`] runs a query. Each kind's planning is in its `plan.rs`, an
//! `impl Planner` block ([`crate::plan::Planner`]).

pub mod aggregate;
pub mod harmonise;
pub mod publish;
pub mod source;
pub mod sql;
pub mod validate;
