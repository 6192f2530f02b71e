//! The HTTP API, one file per area.
//!
//! - `lines.rs`: the lines served, their releases and the list of datasets.
//! - `runs.rs`: triggering a run (`run` token), the runs and their quality reports (`read`).
//! - `indicators.rs`: the indicator API in the style of Sotkanet, `/api/v1/datasets/{id}`:
//!   the current releases of a dataset as JSON-stat 2.0 or CSV.
//! - `catalog.rs`: the catalog of the lines (`/api/catalog`, with a search), a dataset's
//!   column lineage and (`catalog/quality.rs`) the quality summary of the run behind its
//!   newest release.
//! - `uploads.rs`: a file put into a line's inbox (`upload` token, for its submitters).
//! - `releases.rs`: an operator (`run` token) sets a release's status and revision note.
//! - `page.rs`: the reporting page, the catalog page, their scripts and `/openapi.json`.
//!
//! Each handler documents itself with `#[utoipa::path(…)]` (listed in `serve::openapi`), and
//! the JSON it answers is a type deriving `utoipa::ToSchema` beside it.
//!
//! The handlers are `pub(in crate::serve)`: the router in `serve/mod.rs` names them. Every
//! answer with text from runs passes `serve::scrubbed`, every error is a `serve::error::ApiError`
//! (answered as a `serve::problem`), and writes pass `serve::auth::authorize` before their
//! body is read.

pub(super) mod catalog;
pub(super) mod indicators;
pub(super) mod lines;
pub(super) mod page;
pub(super) mod releases;
pub(super) mod runs;
pub(super) mod uploads;
