//! The aggregate step: measures by dimensions, with totals over every grouping set (`SSS`
//! for the dimension declared `area`, `YHT` for the others); rates over a population step;
//! medians and distinct counts planned as exact, spillable groupings of values
//! (`distinct.rs`), and cells rolled up to the totals.

mod distinct;
mod plan;
#[cfg(test)]
mod tests;
