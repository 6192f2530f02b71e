//! `add_months` and `working_days`, against the Finnish holidays of 2025.

use super::*;

fn d(text: &str) -> i32 {
    iso_day(text).unwrap()
}

/// The weekday holidays of 2025 as the planner would pass them (weekend ones included:
/// they are dropped).
const HOLIDAYS_2025: &str = "2025-01-01,2025-01-06,2025-04-18,2025-04-21,2025-05-01,\
    2025-05-29,2025-06-20,2025-06-21,2025-11-01,2025-12-06,2025-12-24,2025-12-25,2025-12-26";

#[test]
fn months_are_added_with_the_day_clamped_to_the_months_last() {
    for (from, n, want) in [
        ("2025-11-30", 3, "2026-02-28"),
        ("2024-01-31", 1, "2024-02-29"),
        ("2024-02-29", 12, "2025-02-28"),
        ("2025-03-14", 3, "2025-06-14"),
        ("2025-03-31", -1, "2025-02-28"),
        ("2025-05-31", -3, "2025-02-28"),
        ("2025-01-15", -13, "2023-12-15"),
        ("2025-01-15", 0, "2025-01-15"),
    ] {
        assert_eq!(add_months(d(from), n), Some(d(want)), "{from} {n}");
    }
}

#[test]
fn iso_dates_and_holiday_texts_read_or_not() {
    assert_eq!(iso_day("1970-01-01"), Some(0));
    assert_eq!(iso_day("2024-02-29"), Some(19_782));
    for bad in [
        "2025-02-29",
        "2025-13-01",
        "20250101",
        "2025-1-01",
        "pvm",
        "",
    ] {
        assert_eq!(iso_day(bad), None, "{bad:?}");
    }
    let h = holidays(HOLIDAYS_2025).unwrap();
    // 2025-06-21 (Saturday) and 2025-12-06 (Saturday) and 2025-11-01 (Saturday) drop.
    assert_eq!(h.len(), 10);
    assert!(h.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(holidays(""), Some(vec![]));
    assert_eq!(holidays("2025-01-01,joulu"), None);
}

#[test]
fn working_days_skip_weekends_and_holidays() {
    let h = holidays(HOLIDAYS_2025).unwrap();
    let wd = |a: &str, b: &str| working_days(d(a), d(b), &h);
    // Easter 2025: Good Friday 18 April and Easter Monday 21 April.
    assert_eq!(wd("2025-04-17", "2025-04-22"), 1);
    assert_eq!(wd("2025-04-16", "2025-04-25"), 5);
    // Christmas 2025: 24–26 December, Wednesday to Friday.
    assert_eq!(wd("2025-12-23", "2025-12-31"), 3);
    // An end on a weekend adds nothing.
    assert_eq!(wd("2025-03-07", "2025-03-08"), 0);
    assert_eq!(wd("2025-03-07", "2025-03-09"), 0);
    assert_eq!(wd("2025-03-07", "2025-03-10"), 1);
    assert_eq!(wd("2025-03-10", "2025-03-10"), 0);
    // Reversed: the negative.
    assert_eq!(wd("2025-03-14", "2025-03-07"), -5);
    assert_eq!(wd("2025-12-31", "2025-12-23"), -3);
    // Outside the calendar's years every weekday counts.
    assert_eq!(wd("2028-12-22", "2029-01-02"), 7);
    // Before 1970 too (floor arithmetic).
    assert_eq!(working_days(d("1969-12-26"), d("1970-01-02"), &[]), 5);
}

#[test]
fn working_days_over_arrays_with_the_holidays_as_a_literal() {
    let f = udfs()
        .into_iter()
        .find(|f| f.name() == WORKING_DAYS)
        .unwrap();
    let dates = |v: Vec<Option<&str>>| -> ColumnarValue {
        let a: Date32Array = v.into_iter().map(|s| s.map(d)).collect();
        ColumnarValue::Array(Arc::new(a))
    };
    let field = |n: &str, t: DataType| Arc::new(arrow::datatypes::Field::new(n, t, true));
    let call = |holidays: Option<&str>| {
        let mut args = vec![
            dates(vec![Some("2025-04-17"), Some("2025-12-23"), None]),
            dates(vec![
                Some("2025-04-22"),
                Some("2025-12-31"),
                Some("2025-12-31"),
            ]),
        ];
        let mut arg_fields = vec![field("a", DataType::Date32), field("b", DataType::Date32)];
        if let Some(h) = holidays {
            args.push(ColumnarValue::Scalar(ScalarValue::Utf8(Some(h.into()))));
            arg_fields.push(field("h", DataType::Utf8));
        }
        f.invoke_with_args(ScalarFunctionArgs {
            args,
            arg_fields,
            number_rows: 3,
            return_field: field("r", DataType::Int64),
            config_options: Arc::new(Default::default()),
        })
        .and_then(|v| v.to_array(3))
    };
    let out = call(Some(HOLIDAYS_2025)).unwrap();
    let out = out.as_primitive::<Int64Type>();
    assert_eq!((out.value(0), out.value(1)), (1, 3));
    assert!(out.is_null(2));
    // Without the holidays (a plan not made by the planner) it says what is missing.
    let e = call(None).unwrap_err().to_string();
    assert!(e.contains("calendar"), "{e}");
}

/// Days at the ends of the date range count without overflow.
#[test]
fn working_days_at_the_ends_of_the_date_range_do_not_overflow() {
    let n = working_days(i32::MAX - 7, i32::MAX, &[]);
    assert_eq!(n, 5);
    assert_eq!(working_days(i32::MAX, i32::MAX - 7, &[]), -5);
    assert_eq!(working_days(i32::MIN, i32::MIN + 7, &[]), 5);
}
