//! The sql step: one query (SELECT …) over the input steps, with the line's parameters.

mod plan;
#[cfg(test)]
mod tests;
