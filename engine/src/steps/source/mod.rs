//! The source step: objects read through the parser plugins (one crate per format under
//! `plugins/`), registered in [`crate::parsers`].

mod plan;
#[cfg(test)]
mod tests;
