//! A line file, from text to a checked graph: the wire model ([`spec`]) that rejects
//! unknown keys with placed diagnostics, the loader and its structural checks ([`load`]),
//! parameters ([`params`]), code sets ([`codeset`]), the schedule ([`cron`]), the time zone
//! of local times ([`zone`]), the JSON Schema for editors ([`schema`]) and the canonical
//! layout ([`fmt`]). Nothing here touches
//! data: a line that loads is one that the planner can be asked about. Problems in a line
//! file are diagnostics; the functions beneath them fail with one [`LineError`].

pub(crate) mod codeset;
pub(crate) mod cron;
mod error;
pub(crate) mod fmt;
pub mod load;
pub(crate) mod params;
pub(crate) mod release;
pub(crate) mod schema;
pub(crate) mod spec;
pub(crate) mod zone;

pub use error::LineError;
