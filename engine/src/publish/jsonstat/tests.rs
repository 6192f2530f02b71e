//! Tests of the JSON-stat writer and validator.

use super::*;
use std::collections::BTreeSet;

/// A table whose rows sit on the diagonal of a large cube: four dimensions of 2 000
/// categories each describe 1.6·10¹³ cells for 2 000 rows. The dense array asked
/// for all of them (and `size.iter().product()` could overflow); the sparse form holds
/// one value per row and is valid JSON-stat.
#[test]
fn a_sparse_cube_is_written_as_an_object_of_its_filled_cells() {
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;
    let n = 2000;
    let dims: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
    let codes: Arc<dyn Array> = Arc::new(StringArray::from_iter_values(
        (0..n).map(|i| format!("k{i:05}")),
    ));
    let mut cols: Vec<(&str, Arc<dyn Array>)> =
        dims.iter().map(|d| (d.as_str(), codes.clone())).collect();
    cols.push(("lkm", Arc::new(Int64Array::from_iter_values(0..n as i64))));
    let table = RecordBatch::try_from_iter(cols).unwrap();
    let meta = DatasetMeta {
        label: [Some("x".into()), None, None],
        source: None,
        dimensions: &dims,
        area: None,
        column_labels: BTreeMap::new(),
        units: BTreeMap::new(),
        code_labels: BTreeMap::new(),
    };
    let doc = dataset(&table, &meta).unwrap();
    let values = doc["value"].as_object().expect("sparse values");
    assert_eq!(values.len(), n);
    let errors: Vec<_> = validate(&doc).into_iter().filter(|i| i.error).collect();
    assert!(errors.is_empty(), "{errors:?}");
    // Row i is cell i·(n³ + n² + n + 1) of the cube.
    let step = (n * n * n + n * n + n + 1).to_string();
    assert_eq!(values[&step], json!(1));

    // A cube past the limit is refused with an error, not an allocation.
    let wide: Vec<String> = (0..6).map(|i| format!("d{i}")).collect();
    let mut cols: Vec<(&str, Arc<dyn Array>)> =
        wide.iter().map(|d| (d.as_str(), codes.clone())).collect();
    cols.push(("lkm", Arc::new(Int64Array::from_iter_values(0..n as i64))));
    let table = RecordBatch::try_from_iter(cols).unwrap();
    let meta = DatasetMeta {
        dimensions: &wide,
        ..meta
    };
    let err = dataset(&table, &meta).unwrap_err().to_string();
    assert!(err.contains("cells"), "{err}");
}

/// The `geo` role is the declared area's, never guessed from a dimension's name.
#[test]
fn the_geo_role_is_the_declared_area() {
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;
    let dims: Vec<String> = ["hyvinvointialue", "kunta"].map(String::from).to_vec();
    let codes: Arc<dyn Array> = Arc::new(StringArray::from(vec!["01", "SSS"]));
    let counts: Arc<dyn Array> = Arc::new(Int64Array::from(vec![1, 2]));
    let table = RecordBatch::try_from_iter(vec![
        ("hyvinvointialue", codes.clone()),
        ("kunta", codes),
        ("lkm", counts),
    ])
    .unwrap();
    let meta = DatasetMeta {
        label: [Some("x".into()), None, None],
        source: None,
        dimensions: &dims,
        area: Some("kunta"),
        column_labels: BTreeMap::new(),
        units: BTreeMap::new(),
        code_labels: BTreeMap::new(),
    };
    let doc = dataset(&table, &meta).unwrap();
    assert_eq!(doc["role"]["geo"], json!(["kunta"]), "{}", doc["role"]);
    let meta = DatasetMeta { area: None, ..meta };
    let doc = dataset(&table, &meta).unwrap();
    assert!(doc["role"].get("geo").is_none(), "{}", doc["role"]);
}

/// The measures are named in Swedish and English too, beside the dimensions' labels
/// (failed before: the reporting page showed Finnish measure names in every language).
#[test]
fn measures_carry_their_swedish_and_english_labels() {
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;
    let dims: Vec<String> = vec!["alue".into()];
    let table = RecordBatch::try_from_iter(vec![
        (
            "alue",
            Arc::new(StringArray::from(vec!["SSS"])) as Arc<dyn Array>,
        ),
        ("lkm", Arc::new(Int64Array::from(vec![7])) as Arc<dyn Array>),
    ])
    .unwrap();
    let labels: [Option<String>; 3] = [
        Some("Lapset".into()),
        Some("Barn".into()),
        Some("Children".into()),
    ];
    let meta = DatasetMeta {
        label: [Some("x".into()), None, None],
        source: None,
        dimensions: &dims,
        area: Some("alue"),
        column_labels: BTreeMap::from([("lkm".to_string(), labels)]),
        units: BTreeMap::new(),
        code_labels: BTreeMap::new(),
    };
    let doc = dataset(&table, &meta).unwrap();
    assert_eq!(
        doc["dimension"][METRIC]["category"]["label"]["lkm"],
        "Lapset"
    );
    let ext = &doc["extension"]["labels"];
    assert_eq!(ext["sv"][METRIC]["category"]["lkm"], "Barn", "{ext}");
    assert_eq!(ext["en"][METRIC]["category"]["lkm"], "Children", "{ext}");
    let errors: Vec<_> = validate(&doc).into_iter().filter(|i| i.error).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn passes_the_conformance_corpus() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/conformance/jsonstat/cases.json");
    let cases: Vec<Value> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut passed = 0;
    for case in &cases {
        let id = case["id"].as_str().unwrap();
        let issues = validate(&case["input"]);
        let expected = &case["expected"];
        let valid = !issues.iter().any(|i| i.error);
        if let Some(v) = expected.get("valid").and_then(Value::as_bool) {
            assert_eq!(valid, v, "{id}: {issues:?}");
        }
        let codes: BTreeSet<&str> = issues.iter().map(|i| i.code).collect();
        for c in expected
            .get("codes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            assert!(
                codes.contains(c.as_str().unwrap()),
                "{id}: expected {c}, got {issues:?}"
            );
        }
        if expected.get("noOtherErrors").and_then(Value::as_bool) == Some(true) {
            let want: BTreeSet<&str> = expected["codes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            let errors: BTreeSet<&str> =
                issues.iter().filter(|i| i.error).map(|i| i.code).collect();
            assert!(errors.is_subset(&want), "{id}: extra errors {issues:?}");
        }
        passed += 1;
    }
    println!(
        "JSON-stat conformance: {passed}/{} cases passed",
        cases.len()
    );
    assert_eq!(passed, cases.len());
}

/// Two rows for one cell are refused (failed before: the last row's figures won, so a
/// breakdown's value could be served as the total).
#[test]
fn two_rows_for_one_cell_are_refused() {
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;
    let dims = vec!["alue".to_string()];
    let table = RecordBatch::try_from_iter(vec![
        (
            "alue",
            Arc::new(StringArray::from(vec!["01", "02", "01"])) as Arc<dyn Array>,
        ),
        (
            "lkm",
            Arc::new(Int64Array::from(vec![1, 2, 3])) as Arc<dyn Array>,
        ),
    ])
    .unwrap();
    let meta = DatasetMeta {
        label: [Some("x".into()), None, None],
        source: None,
        dimensions: &dims,
        area: None,
        column_labels: BTreeMap::new(),
        units: BTreeMap::new(),
        code_labels: BTreeMap::new(),
    };
    let err = dataset(&table, &meta).unwrap_err();
    assert!(
        matches!(err, PublishError::DuplicateCell { dimensions: 1 }),
        "{err}"
    );
}
