//! The harmonise step: columns cast to other types, values mapped through code sets
//! (unmapped values handled as the line says), columns derived, pseudonymised, dropped and
//! renamed, rows filtered.

mod plan;
#[cfg(test)]
mod tests;
