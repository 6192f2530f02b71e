//! The registry of source parsers: each format name maps to one plugin crate. It sits
//! below every layer: the loader checks a source's `format` against it, the source step
//! and the run read with it.

use std::sync::Arc;

use valtava_plugin::Parser;

/// Every built-in parser, in name order.
pub fn all() -> Vec<Arc<dyn Parser>> {
    vec![
        valtava_cda::parser(),
        valtava_csv::parser(),
        valtava_external::parser(),
        valtava_fhir::parser(),
        valtava_ndjson::parser(),
        valtava_parquet::parser(),
        valtava_xlsx::parser(),
    ]
}

/// The parser of a format.
pub fn get(format: &str) -> Option<Arc<dyn Parser>> {
    all().into_iter().find(|p| p.format() == format)
}

/// The names of the formats.
pub fn formats() -> Vec<&'static str> {
    all().iter().map(|p| p.format()).collect()
}
