//! The sql step's plan: a query over the input steps, nothing else.

use crate::steps::testing::{checked, codes};

#[test]
fn a_query_over_the_inputs_is_planned() {
    let c = checked(
        "{ alue: string, n: integer }",
        "  q:\n    sql: { inputs: [s], query: \"SELECT alue, sum(n) AS summa FROM s GROUP BY alue\" }\n",
    )
    .unwrap();
    let names: Vec<&str> = (c.plans["q"].output.fields().iter())
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["alue", "summa"]);
}

/// `COPY … TO` would write rows past every control; DDL and DML would change the session.
#[test]
fn statements_other_than_queries_are_refused() {
    for query in [
        "COPY s TO '/tmp/x.csv'",
        "CREATE TABLE y AS SELECT * FROM s",
        "INSERT INTO s VALUES ('a', 1)",
    ] {
        let d = checked(
            "{ alue: string, n: integer }",
            &format!("  q:\n    sql: {{ inputs: [s], query: \"{query}\" }}\n"),
        )
        .err()
        .unwrap_or_else(|| panic!("{query} planned"));
        assert!(
            codes(&d).iter().any(|c| c == "V203" || c == "V205"),
            "{query}: {d:?}"
        );
    }
}
