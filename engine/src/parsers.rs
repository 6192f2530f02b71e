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

#[cfg(test)]
mod tests {
    /// The formats whose parser has property `p`, in name order.
    fn formats_where(p: impl Fn(&dyn valtava_plugin::Parser) -> bool) -> Vec<&'static str> {
        (super::all().iter())
            .filter(|x| p(x.as_ref()))
            .map(|x| x.format())
            .collect()
    }

    /// Parsing the next small object ahead doubles a parse's memory only for formats whose
    /// parse holds about its object: a workbook unpacks beyond its file, an external
    /// program's output is buffered whole, a Parquet object decodes whole row groups.
    #[test]
    fn only_formats_that_hold_about_their_object_parse_ahead() {
        let ahead = formats_where(|p| p.parses_ahead());
        assert_eq!(ahead, ["cda", "csv", "fhir", "ndjson"]);
    }

    /// A unique rule's filter is sized from the bytes only of formats whose bytes bound
    /// their rows: a row for each line or record of plain text; never Parquet, a workbook,
    /// a program's output, a FHIR view (its `forEach`es multiply a resource's rows) or a
    /// CDA document (its entries), a few bytes of which may give millions of rows
    /// (`plan::FilterSize`).
    #[test]
    fn only_formats_of_a_row_a_record_bound_their_rows_by_their_bytes() {
        let text = formats_where(|p| p.rows_within_bytes());
        assert_eq!(text, ["csv", "ndjson"]);
    }
}
