//! [`super::protect`] on a whole table: a measure decided by a count of its own is emptied
//! alone, with its own status, and an unpublished deciding count leaves the table.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use crate::plan::{DECIDING_PREFIX, Disclosure, STATUS_COLUMN};

/// Areas 01, 02 and the country: respondents `n`, answers `k` (unpublished) and a share.
fn table() -> (Vec<RecordBatch>, Arc<Schema>) {
    let deciding = format!("{DECIDING_PREFIX}k");
    let own = Arc::new(Schema::new(vec![
        Field::new("alue", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
        Field::new("osuus", DataType::Float64, true),
        Field::new(&deciding, DataType::Int64, true),
        Field::new(STATUS_COLUMN, DataType::Utf8, true),
        Field::new("status_osuus", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        own,
        vec![
            Arc::new(StringArray::from(vec!["01", "02", "SSS"])),
            Arc::new(Int64Array::from(vec![12, 20, 32])),
            Arc::new(Float64Array::from(vec![50.0, 75.0, 66.7])),
            Arc::new(Int64Array::from(vec![4, 16, 20])),
            Arc::new(StringArray::from(vec![None::<&str>; 3])),
            Arc::new(StringArray::from(vec![None::<&str>; 3])),
        ],
    )
    .unwrap();
    let published = Arc::new(Schema::new(vec![
        Field::new("alue", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
        Field::new("osuus", DataType::Float64, true),
        Field::new(STATUS_COLUMN, DataType::Utf8, true),
        Field::new("status_osuus", DataType::Utf8, true),
    ]));
    (vec![batch], published)
}

/// Before: the share of 01, over 4 answers, was published beside its 12 respondents.
#[test]
fn a_share_over_few_answers_is_emptied_alone_and_its_count_dropped() {
    let (batches, schema) = table();
    let d = Disclosure {
        counts: vec!["n".into()],
        min_count: 5,
        measures: vec!["n".into(), "osuus".into()],
        own: vec![("osuus".into(), format!("{DECIDING_PREFIX}k"))],
        unpublished: vec!["k".into()],
    };
    let (out, suppressed) =
        super::protect(&batches, schema.clone(), &["alue".to_string()], Some(&d)).unwrap();
    assert_eq!(suppressed, 0, "no cell is suppressed whole");
    assert_eq!(out.schema(), schema, "the deciding count is not published");
    let share = out.column_by_name("osuus").unwrap();
    assert!(share.is_null(0) && share.is_valid(1) && share.is_valid(2));
    let status = out
        .column_by_name("status_osuus")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(status.value(0), "suppressed");
    assert!(status.is_null(1) && status.is_null(2));
    let row = out.column_by_name(STATUS_COLUMN).unwrap();
    assert_eq!(row.null_count(), 3);
    assert_eq!(out.column_by_name("n").unwrap().null_count(), 0);
}
