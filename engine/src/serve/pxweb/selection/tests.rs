use super::*;
use crate::serve::pxweb::model::sample;

/// The request of one variable's values.
fn ask(variable: &str, values: &[&str]) -> Request {
    Request {
        variables: vec![PxVariableSelection {
            variable_code: variable.into(),
            codelist: None,
            value_codes: values.iter().map(|v| v.to_string()).collect(),
        }],
        placed: Vec::new(),
    }
}

/// The codes a request selects of each variable.
fn codes(request: &Request) -> Result<Vec<Vec<String>>, PxError> {
    let m = sample();
    let selection = resolve(&m, request, default_selection(&m))?;
    Ok((selection.iter().zip(&m.variables))
        .map(|(s, v)| s.iter().map(|&i| v.values[i].clone()).collect())
        .collect())
}

fn refused(request: &Request) -> String {
    match codes(request) {
        Err(PxError::BadSelection(m)) => m,
        other => panic!("not refused as a bad selection: {other:?}"),
    }
}

#[test]
fn a_star_selects_every_code_in_the_variables_order() {
    let got = codes(&ask("alue", &["*"])).unwrap();
    assert_eq!(got[1], ["01", "SSS", "02"]);
    // The others take the default: the latest period and every measure.
    assert_eq!(got[0], ["2025-03"]);
    assert_eq!(got[2], ["n", "osuus"]);
}

/// Values after every code is chosen are checked, not expanded again: ten thousand `*`
/// select each code once, and an unknown code after them is still refused.
#[test]
fn repeated_wildcards_select_once_and_later_values_are_still_checked() {
    let many = vec!["*"; MAX_VALUES];
    assert_eq!(codes(&ask("alue", &many)).unwrap()[1], ["01", "SSS", "02"]);
    let mut then_bad = vec!["*"; 3];
    then_bad.push("99");
    assert!(refused(&ask("alue", &then_bad)).contains("`99` is not a code of `alue`"));
    assert!(refused(&ask("jakso", &["*", "range(2025-03,1999-01)"])).contains("`1999-01`"));
}

#[test]
fn a_list_comes_back_in_the_variables_order_each_code_once() {
    let got = codes(&ask("alue", &["02", "01", "02"])).unwrap();
    assert_eq!(got[1], ["01", "02"]);
}

#[test]
fn top_bottom_from_to_and_range_pick_by_position() {
    assert_eq!(
        codes(&ask("jakso", &["top(2)"])).unwrap()[0],
        ["2025-02", "2025-03"]
    );
    assert_eq!(codes(&ask("jakso", &["TOP(1,1)"])).unwrap()[0], ["2025-02"]);
    assert_eq!(codes(&ask("jakso", &["top(99)"])).unwrap()[0].len(), 3);
    assert_eq!(
        codes(&ask("jakso", &["bottom(1)"])).unwrap()[0],
        ["2025-01"]
    );
    assert_eq!(
        codes(&ask("jakso", &["from(2025-02)"])).unwrap()[0],
        ["2025-02", "2025-03"]
    );
    assert_eq!(
        codes(&ask("jakso", &["to(2025-02)"])).unwrap()[0],
        ["2025-01", "2025-02"]
    );
    assert_eq!(
        codes(&ask("jakso", &["range(2025-01,2025-02)"])).unwrap()[0],
        ["2025-01", "2025-02"]
    );
    assert_eq!(codes(&ask("alue", &["0*"])).unwrap()[1], ["01", "02"]);
    assert_eq!(codes(&ask("alue", &["*S"])).unwrap()[1], ["SSS"]);
}

#[test]
fn unknown_codes_variables_and_expressions_are_refused_by_name() {
    assert!(refused(&ask("alue", &["99"])).contains("`99` is not a code of `alue`"));
    assert!(refused(&ask("kunta", &["*"])).contains("`kunta` is not a variable"));
    assert!(refused(&ask("jakso", &["top(0)"])).contains("select no code"));
    assert!(refused(&ask("jakso", &["top(1234567)"])).contains("not a count"));
    assert!(refused(&ask("jakso", &["latest(1)"])).contains("not a code nor an expression"));
    assert!(refused(&ask("alue", &["*0*1*"])).contains("`*`"));
    assert!(refused(&ask("alue", &[])).contains("select no code"));
    // An unknown code inside an expression is named too.
    assert!(refused(&ask("jakso", &["from(1999-01)"])).contains("`1999-01`"));
}

#[test]
fn a_variable_asked_twice_in_a_body_is_refused() {
    let mut r = ask("alue", &["01"]);
    r.variables.push(r.variables[0].clone());
    assert!(refused(&r).contains("selected twice"));
}

#[test]
fn every_value_and_the_whole_are_bounded() {
    let many: Vec<String> = (0..=MAX_VALUES).map(|i| i.to_string()).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(refused(&ask("alue", &many)).contains("more than"));
    let long = "0".repeat(MAX_VALUE_LEN + 1);
    assert!(refused(&ask("alue", &[long.as_str()])).contains("longer than"));
    // Over the cell limit: refused with 403 before any cell is made.
    let wide = vec![(0..1000).collect::<Vec<usize>>(), (0..1000).collect()];
    assert!(matches!(
        check_cells(&wide),
        Err(PxError::TooManyCells {
            cells: 1_000_000,
            ..
        })
    ));
    assert!(check_cells(&[vec![0usize; 10], vec![0usize; 10]]).is_ok());
    let huge = vec![vec![0usize; 1 << 16]; 5];
    assert_eq!(cells(&huge), u64::MAX);
}

#[test]
fn a_codelist_selects_within_its_value_set_and_a_foreign_one_is_refused() {
    let mut r = ask("alue", &["*"]);
    r.variables[0].codelist = Some("vs_alueet".into());
    assert_eq!(codes(&r).unwrap()[1], ["01", "02"]);
    r.variables[0].value_codes.clear();
    assert_eq!(codes(&r).unwrap()[1], ["01", "02"]);
    r.variables[0].codelist = Some("vs_kunnat".into());
    assert!(refused(&r).contains("not a codelist of `alue`"));
}

#[test]
fn a_query_reads_lists_expressions_and_codelists() {
    let p = Params::parse(
        Some("valueCodes[jakso]=range(2025-01,2025-02),2025-03&valueCodes[alue]=01&valuecodes[alue]=02&codelist[alue]=vs_alueet&stub=alue"),
        &["valueCodes[]", "codelist[]", "stub"],
    )
    .unwrap();
    let r = from_params(&p).unwrap();
    let alue = r
        .variables
        .iter()
        .find(|v| v.variable_code == "alue")
        .unwrap();
    assert_eq!(alue.value_codes, ["01", "02"]);
    assert_eq!(alue.codelist.as_deref(), Some("vs_alueet"));
    let jakso = r
        .variables
        .iter()
        .find(|v| v.variable_code == "jakso")
        .unwrap();
    assert_eq!(jakso.value_codes, ["range(2025-01,2025-02)", "2025-03"]);
    assert_eq!(r.placed, ["alue"]);
    let mut bad = ask("jakso", &["*"]);
    bad.placed.push("ei".into());
    assert!(refused(&bad).contains("`ei` is not a variable"));
}

#[test]
fn a_body_is_a_variables_selection_or_refused() {
    let r = from_body(
        br#"{"selection": [{"variableCode": "jakso", "valueCodes": ["top(1)"]},
                           {"variableCode": "alue", "values": ["01"]}]}"#,
    )
    .unwrap();
    assert_eq!(codes(&r).unwrap()[0], ["2025-03"]);
    assert_eq!(codes(&r).unwrap()[1], ["01"]);
    assert!(from_body(b" \n").unwrap().variables.is_empty());
    assert!(matches!(
        from_body(br#"{"selection": [{"variable": "jakso"}]}"#),
        Err(PxError::BadRequest(_))
    ));
    assert!(matches!(from_body(b"[1,2"), Err(PxError::BadRequest(_))));
}

#[test]
fn the_default_selection_narrows_to_totals_when_too_wide() {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::record_batch::RecordBatch;
    assert_eq!(
        default_selection(&sample()),
        [vec![2], vec![0, 1, 2], vec![0, 1]]
    );
    // 400 areas × 400 ages of one measure: more cells than allowed, so the widest
    // dimension (the last of the widest) narrows to its total code.
    let codes: Vec<String> = (0..400)
        .map(|i| {
            if i == 7 {
                "YHT".to_string()
            } else {
                format!("{i:03}")
            }
        })
        .collect();
    let text = |v: Vec<&str>| Arc::new(StringArray::from(v)) as ArrayRef;
    let table = RecordBatch::try_from_iter([
        ("jakso", text(vec!["2025"; 400])),
        ("alue", text(codes.iter().map(String::as_str).collect())),
        ("ika", text(codes.iter().map(String::as_str).collect())),
        ("n", Arc::new(Int64Array::from(vec![1i64; 400])) as ArrayRef),
    ])
    .unwrap();
    let wide = crate::serve::pxweb::model::test_model(&table, &["alue", "ika"], Some("alue"));
    let d = default_selection(&wide);
    assert!(cells(&d) <= MAX_DATA_CELLS as u64);
    assert_eq!(d[1].len(), 400);
    assert_eq!(d[2], [7]);
    // Asked for, the same cells are refused.
    let all = resolve(&wide, &ask("ika", &["*"]), default_selection(&wide)).unwrap();
    assert!(matches!(
        check_cells(&all),
        Err(PxError::TooManyCells { .. })
    ));
}
