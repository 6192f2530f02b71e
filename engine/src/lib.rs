//! Valtava: the engine of Finland's social- and health-care data production lines.
//!
//! The folders follow the flow of a run:
//!
//! - [`line`]: a line file read and checked — YAML → typed [`line::spec`] → structural
//!   checks → the step graph; its parameters, code sets, schedule, schema and layout.
//! - [`plan`]: the planner — each step → a DataFusion logical plan through the
//!   [`plan::Planner`], expressions bound to their inputs, the session; personal-data
//!   lineage from the plans; `valtava check` and `valtava plan`.
//! - [`steps`]: one folder per step kind (source, validate, harmonise, aggregate, publish,
//!   sql), each with its planning (`plan.rs`, an `impl Planner` block) and what else the
//!   kind needs (the parser registry, the rule kinds, distinct counts and medians).
//! - [`run`]: the scheduler streams record batches through the steps, diverts rejected rows
//!   to quarantine and counts every row; spills, leases and scratch folders, the cluster.
//! - [`publish`]: datasets and their formats, disclosure control, release manifests and
//!   pointers, reading releases back.
//! - [`artefacts`]: what a run leaves for people: lineage, quality reports, the catalog.
//! - [`serve`]: the daemon — schedules, inboxes, the API and the reporting page.
//! - [`cli`]: the command line, parsed with clap, one file per command; `main.rs` only sets
//!   the allocator and calls [`cli::main`].
//!
//! Beside them, used by every layer: [`store`] (object storage), [`diag`] (placed
//! diagnostics with stable codes), [`functions`] (the SQL functions a line may call) and
//! [`redact`] (the one policy for text the engine writes).

pub(crate) mod artefacts;
pub mod cli;
pub(crate) mod diag;
pub(crate) mod functions;
pub mod line;
pub mod parsers;
pub(crate) mod plan;
pub mod publish;
pub(crate) mod redact;
pub(crate) mod run;
pub(crate) mod serve;
pub(crate) mod steps;
pub(crate) mod store;
