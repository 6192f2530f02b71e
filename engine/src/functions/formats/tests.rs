//! The `finnish` and `hl7` column formats: what reads, what does not, and the functions
//! over arrays.

use super::*;

fn decimal(text: &str) -> Option<f64> {
    finnish_decimal(text, &mut Vec::new())
}

fn integer(text: &str) -> Option<i64> {
    finnish_integer(text, &mut Vec::new())
}

/// Microseconds since 1970 of a date and time (UTC).
fn micros(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, us: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(y, mo, d)
        .and_then(|d| d.and_hms_micro_opt(h, mi, s, us))
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

fn day(y: i32, mo: u32, d: u32) -> i32 {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    (chrono::NaiveDate::from_ymd_opt(y, mo, d).unwrap() - epoch).num_days() as i32
}

#[test]
fn finnish_numbers_read_with_spaces_nbsp_nnbsp_comma_and_unicode_minus() {
    for (text, want) in [
        ("1 234 567,89", 1_234_567.89),
        ("1\u{a0}234\u{a0}567,89", 1_234_567.89),
        ("1\u{202f}234,5", 1_234.5),
        ("1 234\u{a0}567", 1_234_567.0),
        ("-12,5", -12.5),
        ("\u{2212}12,5", -12.5),
        ("\u{2212}1 000", -1000.0),
        ("1234567.89", 1_234_567.89),
        ("-0.5", -0.5),
        ("0,05", 0.05),
        ("  12,5 ", 12.5),
        ("\u{a0}7\u{a0}", 7.0),
        ("123", 123.0),
        ("123 456", 123_456.0),
    ] {
        assert_eq!(decimal(text), Some(want), "{text:?}");
    }
}

#[test]
fn other_texts_are_not_finnish_numbers() {
    for text in [
        "12,5,3",
        "1,234.5",
        "1.234,5",
        "1 234.5",
        "12a",
        "abc",
        "1 23 4,5",
        "1234 567",
        "1 2345",
        ",5",
        "5,",
        "12,5 0",
        "+12",
        "- 12",
        "--12",
        "1e5",
        "12\u{a0}\u{a0}345",
        "1_000",
    ] {
        assert_eq!(finnish_plain(text, &mut Vec::new()), None, "{text:?}");
        assert_eq!(decimal(text), None, "{text:?}");
    }
}

#[test]
fn blank_finnish_texts_are_empty() {
    for text in ["", "   ", "\u{a0}", "\u{202f} "] {
        let mut buffer = vec![b'x'];
        assert_eq!(finnish_plain(text, &mut buffer), Some(()), "{text:?}");
        assert!(buffer.is_empty());
        assert_eq!(decimal(text), None);
        assert_eq!(integer(text), None);
    }
}

#[test]
fn finnish_integers_have_no_fraction_but_zeros() {
    assert_eq!(integer("1 234 567"), Some(1_234_567));
    assert_eq!(integer("\u{2212}12"), Some(-12));
    assert_eq!(integer("12,00"), Some(12));
    assert_eq!(integer("12.0"), Some(12));
    assert_eq!(integer("12,5"), None);
    assert_eq!(integer("12,01"), None);
    assert_eq!(
        integer("99 999 999 999 999 999 999"),
        None,
        "beyond 64 bits"
    );
    assert_eq!(integer("1 23"), None);
}

#[test]
fn hl7_dates_take_the_calendar_date_as_written() {
    let date = |t: &str| hl7(t).map(|h| h.day);
    assert_eq!(date("20250314"), Some(day(2025, 3, 14)));
    assert_eq!(date("20240229"), Some(day(2024, 2, 29)));
    assert_eq!(date("202503142359"), Some(day(2025, 3, 14)));
    // An offset is checked but does not move the date.
    assert_eq!(date("20250314233000+0200"), Some(day(2025, 3, 14)));
    assert_eq!(date("20250314003000-0500"), Some(day(2025, 3, 14)));
    for bad in [
        "20250230",
        "20250229",
        "20251301",
        "2025031",
        "202503",
        "2025-03-14",
        "20250314x",
        "202503141",
        "2025031424",
        "20250314+02",
        "20250314+2500",
        "20250314+0260",
        "20250314+02000",
        "",
    ] {
        assert_eq!(hl7(bad), None, "{bad:?}");
    }
}

#[test]
fn hl7_timestamps_need_minutes_and_go_to_utc_with_an_offset() {
    let ts = |t: &str| hl7(t).filter(|h| h.digits >= 12).map(|h| h.utc_micros);
    assert_eq!(ts("202503141030"), Some(micros(2025, 3, 14, 10, 30, 0, 0)));
    assert_eq!(
        ts("20250314103005"),
        Some(micros(2025, 3, 14, 10, 30, 5, 0))
    );
    assert_eq!(
        ts("20250314103005.5"),
        Some(micros(2025, 3, 14, 10, 30, 5, 500_000))
    );
    assert_eq!(
        ts("20250314103005.1234"),
        Some(micros(2025, 3, 14, 10, 30, 5, 123_400))
    );
    assert_eq!(
        ts("20250314103005+0200"),
        Some(micros(2025, 3, 14, 8, 30, 5, 0))
    );
    assert_eq!(
        ts("202501010030+0200"),
        Some(micros(2024, 12, 31, 22, 30, 0, 0))
    );
    assert_eq!(
        ts("20250314103005.25-0330"),
        Some(micros(2025, 3, 14, 14, 0, 5, 250_000))
    );
    assert_eq!(ts("20250314"), None, "a date alone is no timestamp");
    assert_eq!(ts("2025031410"), None, "hours alone are no timestamp");
    for bad in [
        "202503142460",
        "202503142400",
        "20250314103060",
        "20250314103005.",
        "20250314103005.12345",
        "202503141030.5",
        "20250314103005+02:00",
        "20250314103005Z",
        "20250230103005",
    ] {
        assert_eq!(hl7(bad), None, "{bad:?}");
    }
}

#[test]
fn the_functions_read_arrays_and_leave_unread_values_null() {
    use arrow::array::StringArray;
    let run = |p: Parse, values: Vec<Option<&str>>| -> ArrayRef {
        let f = FormatRead::new(p);
        let n = values.len();
        let input: ArrayRef = Arc::new(StringArray::from(values));
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Array(input)],
            arg_fields: vec![Arc::new(arrow::datatypes::Field::new(
                "a",
                DataType::Utf8,
                true,
            ))],
            number_rows: n,
            return_field: Arc::new(arrow::datatypes::Field::new("r", p.return_type(), true)),
            config_options: Arc::new(datafusion::config::ConfigOptions::default()),
        };
        match f.invoke_with_args(args).unwrap() {
            ColumnarValue::Array(a) => a,
            ColumnarValue::Scalar(_) => panic!("an array"),
        }
    };
    let d = run(
        Parse::FinnishDecimal,
        vec![Some("1 234,5"), None, Some("x"), Some(" ")],
    );
    let d = d.as_primitive::<arrow::datatypes::Float64Type>();
    assert_eq!(d.value(0), 1234.5);
    assert!(d.is_null(1) && d.is_null(2) && d.is_null(3));
    let t = run(
        Parse::Hl7Timestamp,
        vec![Some("20250314"), Some("202503141030")],
    );
    assert_eq!(t.data_type(), &TIMESTAMP);
    assert!(t.is_null(0) && t.is_valid(1));
    let names: Vec<String> = udfs().iter().map(|f| f.name().to_string()).collect();
    assert_eq!(
        names,
        [
            "__finnish_decimal",
            "__finnish_integer",
            "__hl7_date",
            "__hl7_timestamp"
        ]
    );
}

/// A run of digits too long for a decimal is no number, not infinity.
#[test]
fn a_finnish_decimal_beyond_the_range_of_f64_does_not_read() {
    let huge = "9".repeat(400);
    assert_eq!(decimal(&huge), None);
    assert_eq!(decimal(&format!("-{huge},5")), None);
    assert_eq!(integer(&huge), None);
}
