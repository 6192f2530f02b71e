//! What each step kind does, one folder per kind: [`source`] reads objects through the
//! parser plugins, [`validate`] holds the rule kinds.

pub mod source;
pub mod validate;
