//! Valtava: the engine of Finland's social- and health-care data production lines.
//!
//! The modules follow the flow of a run: [`load`] (YAML → typed [`spec`] → checks →
//! graph), [`plan`] (each step → a DataFusion logical plan), [`run`] (the scheduler streams
//! record batches through the steps, diverts rejected rows to quarantine and counts every
//! row), [`publish`] (datasets, manifest, release pointer).

pub mod catalog;
pub mod cellsets;
pub mod check;
#[cfg(feature = "ballista")]
pub mod cluster;
pub mod codeset;
pub mod cron;
pub mod diag;
pub mod diff;
pub mod disclosure;
pub mod explain;
pub mod fmt;
pub mod functions;
pub mod gc;
pub mod generate;
pub mod graph;
pub mod jsonstat;
pub mod lineage;
pub mod linetest;
pub mod load;
pub mod params;
pub mod parsers;
pub mod personal;
pub mod plan;
pub mod publish;
pub mod quality;
pub mod quarantine;
pub mod redact;
pub mod releases;
pub mod report;
pub mod rules;
pub mod run;
pub mod schema;
pub mod seen;
pub mod serve;
pub mod spec;
pub mod spill;
pub mod store;
