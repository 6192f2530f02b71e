//! The publish step: a dataset's dimensions and measures, with small-cell suppression on
//! by default (applied by [`crate::publish::disclosure`]); writing its formats is
//! [`crate::publish`]'s.

mod plan;
#[cfg(test)]
mod tests;
