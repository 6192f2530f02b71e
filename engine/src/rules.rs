//! The validation rule library: which checks a rule may give. Each check compiles to a
//! vectorised DataFusion expression in [`crate::plan`] that yields the reason of a
//! violation, or null.

use crate::spec::{Category, RuleSpec};

/// The checks a rule can give, as written in line files.
pub const CHECKS: [&str; 14] = [
    "required",
    "unique",
    "values",
    "hetu",
    "in_codeset",
    "in_period",
    "expr",
    "range",
    "regex",
    "order",
    "exists_in",
    "rows",
    "null_share",
    "fresh",
];

/// How many checks a rule gives (a valid rule gives exactly one).
pub fn check_count(rule: &RuleSpec) -> usize {
    [
        rule.required.is_some(),
        rule.unique.is_some(),
        rule.values.is_some(),
        rule.hetu.is_some(),
        rule.in_codeset.is_some(),
        rule.in_period.is_some(),
        rule.expr.is_some(),
        rule.range.is_some(),
        rule.regex.is_some(),
        rule.order.is_some(),
        rule.exists_in.is_some(),
        rule.rows.is_some(),
        rule.null_share.is_some(),
        rule.fresh.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count()
}

/// The rule's category: as written, or inferred from its check.
pub fn category(rule: &RuleSpec) -> Category {
    if let Some(c) = rule.category {
        return c;
    }
    if rule.required.is_some() || rule.rows.is_some() || rule.null_share.is_some() {
        Category::Completeness
    } else if rule.expr.is_some()
        || rule.in_period.is_some()
        || rule.range.is_some()
        || rule.order.is_some()
        || rule.fresh.is_some()
    {
        Category::Plausibility
    } else {
        Category::Conformance
    }
}

/// Whether a rule checks the whole dataset rather than each row.
pub fn is_dataset_check(rule: &RuleSpec) -> bool {
    rule.rows.is_some() || rule.null_share.is_some() || rule.fresh.is_some()
}
