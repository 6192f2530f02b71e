//! The JSON Schema of line files, generated from the spec types.

use crate::line::spec::LineSpec;

/// The schema as pretty JSON (what `schemas/line.schema.json` holds).
pub fn line_schema_json() -> String {
    let schema = schemars::schema_for!(LineSpec);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_schema_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/line.schema.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let current = format!("{}\n", super::line_schema_json());
        assert!(
            committed == current,
            "schemas/line.schema.json is stale: run `cargo run -q -- schema > schemas/line.schema.json`"
        );
    }
}
