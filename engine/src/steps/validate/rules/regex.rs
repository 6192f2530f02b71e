//! `regex`: the column's text matches a regular expression, anchored to the whole value.
//! The pattern is compiled once when the line is planned, so a bad one is a placed V203.

use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::{Expr, col, lit, when};
use datafusion::scalar::ScalarValue;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{RuleCx, RuleKind};
use crate::diag::Code;
use crate::line::spec::{Category, Name, Sp};
use crate::plan::Diags;
use crate::plan::expr::{cast_text, first_line};

/// A column and a regular expression.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegexCheck {
    /// The column.
    pub column: Name,
    /// The pattern (Rust regex syntax), matched against the whole value.
    pub pattern: Sp<String>,
}

impl RuleKind for RegexCheck {
    fn category(&self) -> Category {
        Category::Conformance
    }

    fn row_check(&self, cx: &RuleCx, schema: &DFSchema) -> Result<Expr, Diags> {
        cx.column(schema, &self.column)?;
        let anchored = format!("^(?:{})$", self.pattern.value);
        if let Err(e) = ::regex::Regex::new(&anchored) {
            return Err(cx.error(
                Code::V203,
                crate::diag::locate_in(&cx.planner.line.text, self.pattern.at, ""),
                format!("invalid pattern: {}", first_line(&e.to_string())),
            ));
        }
        let c = cast_text(col(Column::from_name(self.column.value.as_str())));
        let matches =
            datafusion::functions::regex::expr_fn::regexp_like(c.clone(), lit(anchored), None);
        when(
            c.is_not_null().and(matches.is_false()),
            lit(format!(
                "`{}` does not match `{}`",
                self.column.value, self.pattern.value
            )),
        )
        .otherwise(lit(ScalarValue::Utf8(None)))
        .map_err(|e| cx.planning(e))
    }
}

#[cfg(test)]
mod tests {
    use crate::steps::validate::testing::*;

    #[test]
    fn regex_matches_whole_values() {
        let rows = vec![
            one(Some("703")),
            one(Some("7030")),
            one(Some("7a3")),
            one(None),
        ];
        assert_eq!(
            broken(
                "{ c: string }",
                "{ id: r, regex: { column: c, pattern: \"[0-9]{3}\" } }",
                &rows
            ),
            vec![2, 3]
        );
        let e = eval(
            "{ c: string }",
            "{ id: r, regex: { column: c, pattern: \"[0-9\" } }",
            &rows,
        )
        .unwrap_err();
        assert!(e.contains("V203"), "{e}");
    }
}
