use super::*;

#[test]
fn short_text_maps_one_to_one_and_long_text_is_hashed_apart() {
    let words = [
        "",
        "a",
        "b",
        "ab",
        "ba",
        "a\0",
        "\0a",
        "012345678901234",
        "01234567890123",
    ];
    let keys: std::collections::BTreeSet<i128> =
        words.iter().map(|w| text_key(w.as_bytes())).collect();
    assert_eq!(keys.len(), words.len());
    for w in words.iter().filter(|w| w.len() <= 14) {
        let k = text_key(w.as_bytes());
        assert!((0..HASHED).contains(&k), "{w:?} is kept exactly");
    }
    let long = text_key(b"0123456789abcdef0123456789abcdef");
    assert!((HASHED..HASHED * 2).contains(&long));
    assert_ne!(long, text_key(b"0123456789abcdef0123456789abcdeF"));
    // Precision 38 holds every key.
    assert!(HASHED * 2 - 1 < 10i128.pow(38));
}

#[test]
fn to_char_of_timestamps_is_datafusions() {
    use arrow::array::{
        TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
        TimestampSecondArray,
    };
    use arrow::datatypes::TimeUnit;
    use datafusion::common::ScalarValue;
    let call = |f: &dyn ScalarUDFImpl, values: ArrayRef, format: &str| {
        let rows = values.len();
        let args = vec![
            ColumnarValue::Array(values.clone()),
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(format.into()))),
        ];
        let arg_fields = vec![
            Arc::new(arrow::datatypes::Field::new(
                "t",
                values.data_type().clone(),
                true,
            )),
            Arc::new(arrow::datatypes::Field::new("f", DataType::Utf8, false)),
        ];
        f.invoke_with_args(ScalarFunctionArgs {
            args,
            arg_fields,
            number_rows: rows,
            return_field: Arc::new(arrow::datatypes::Field::new("c", DataType::Utf8, true)),
            config_options: Arc::new(Default::default()),
        })
        .and_then(|v| v.to_array(rows))
        .map(|a| {
            let a = a.as_string::<i32>();
            (0..rows)
                .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                .collect::<Vec<_>>()
        })
        .map_err(|e| e.to_string())
    };
    // Seconds since 1970: ordinary times, the epoch, before it, year 1, a negative
    // year and one past 9999 (the last three written by chrono), and a NULL.
    let seconds: Vec<Option<i64>> = vec![
        Some(1_741_000_000),
        Some(1_741_049_999),
        Some(0),
        Some(-86_401),
        Some(-62_135_596_800),
        Some(-62_135_596_800 - 400 * 365 * 86_400),
        Some(253_402_300_800 + 86_400 * 40),
        None,
        Some(951_782_400),
    ];
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(TimestampSecondArray::from(seconds.clone())),
        Arc::new(TimestampMillisecondArray::from(
            seconds
                .iter()
                .map(|s| s.map(|s| s * 1000 + 7))
                .collect::<Vec<_>>(),
        )),
        Arc::new(TimestampMicrosecondArray::from(
            seconds
                .iter()
                .map(|s| s.map(|s| s * 1_000_000 + 123_456))
                .collect::<Vec<_>>(),
        )),
        Arc::new(TimestampNanosecondArray::from(
            seconds
                .iter()
                .map(|s| s.map(|s| (s % 9_000_000_000) * 1_000_000_000 + 5))
                .collect::<Vec<_>>(),
        )),
    ];
    let formats = [
        "%Y-%m",
        "%Y-%m-%d %H:%M:%S",
        "%d.%m.%Y klo %H.%M",
        "%Y%m%d",
        "%b %e %Y %I:%M %p",
        "%j %a %% %-d.%-m.",
        "%Y-%m-%dT%H:%M:%S%.3f",
        "%G-W%V",
        "%Z",
        "%Q",
        "",
    ];
    let ours = ToChar::new();
    let theirs = datafusion::functions::datetime::to_char::ToCharFunc::new();
    let mut fast = 0;
    for values in &arrays {
        assert!(matches!(values.data_type(), DataType::Timestamp(_, None)));
        for format in formats {
            let unit = match values.data_type() {
                DataType::Timestamp(u, _) => *u,
                _ => TimeUnit::Second,
            };
            if super::to_char::format_timestamps(values, unit, format).is_some() {
                fast += 1;
            }
            assert_eq!(
                call(&ours, values.clone(), format),
                call(&theirs, values.clone(), format),
                "{format} of {:?}",
                values.data_type()
            );
        }
    }
    // Most of these went through the fast path.
    assert!(fast >= 30, "{fast}");
    // Dates: days since 1970 around the same edges (year 1, a negative year, past 9999);
    // formats of dates go the fast path, those with a time field are DataFusion's to refuse.
    let days: Vec<Option<i32>> = vec![
        Some(20_150),
        Some(0),
        Some(-1),
        Some(-719_162),
        Some(-719_162 - 400 * 365),
        Some(2_932_897 + 40),
        None,
        Some(11_016),
    ];
    let dates: ArrayRef = Arc::new(arrow::array::Date32Array::from(days));
    let mut fast_dates = 0;
    for format in formats {
        if super::to_char::format_dates(&dates, format).is_some() {
            fast_dates += 1;
        }
        assert_eq!(
            call(&ours, dates.clone(), format),
            call(&theirs, dates.clone(), format),
            "{format} of dates"
        );
    }
    assert!(fast_dates >= 3, "{fast_dates}");
}

/// `__timestamp` equals Arrow's `TRY_CAST` on the common forms and on near misses
/// (invalid dates and times, other separators, fractions, offsets, spaces, years
/// before 1970 and after 9999).
#[test]
fn text_timestamps_are_arrows() {
    let mut texts: Vec<Option<String>> = vec![None];
    let mut seed = 5u64;
    let mut next = |m: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % m
    };
    for _ in 0..20_000 {
        let y = [1969, 1970, 2000, 2024, 2025, 1900, 9999, 0, 10000][next(9) as usize];
        let t = format!(
            "{y:04}-{:02}-{:02}{}{:02}:{:02}:{:02}",
            next(14),
            next(33),
            ["T", " ", "t", "_"][next(4) as usize],
            next(26),
            next(62),
            next(62)
        );
        let t = match next(12) {
            0 => t[..10].to_string(),
            1 => format!("{t}.123456"),
            2 => format!("{t}Z"),
            3 => format!("{t}+02:00"),
            4 => format!(" {t}"),
            5 => t.replacen('-', "/", 2),
            6 => t[..18].to_string(),
            _ => t,
        };
        texts.push(Some(t));
    }
    let array: ArrayRef = Arc::new(arrow::array::StringArray::from(texts.clone()));
    let want = arrow::compute::cast(&array, &TIMESTAMP).unwrap();
    let args = ScalarFunctionArgs {
        args: vec![ColumnarValue::Array(array.clone())],
        arg_fields: vec![Arc::new(arrow::datatypes::Field::new(
            "t",
            DataType::Utf8,
            true,
        ))],
        number_rows: texts.len(),
        return_field: Arc::new(arrow::datatypes::Field::new("t", TIMESTAMP, true)),
        config_options: Arc::new(Default::default()),
    };
    let ColumnarValue::Array(got) = TextTimestamp::default().invoke_with_args(args).unwrap() else {
        panic!("no array")
    };
    let fast = texts
        .iter()
        .flatten()
        .filter(|t| common_timestamp(t.as_bytes()).is_some())
        .count();
    assert!(fast > 2_000 && want.null_count() > 2_000, "{fast}");
    for (i, t) in texts.iter().enumerate() {
        let value = |a: &ArrayRef| {
            a.is_valid(i).then(|| {
                a.as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                    .value(i)
            })
        };
        assert_eq!(value(&got), value(&want), "{t:?}");
    }
    // `__date` of the same texts (a tenth of them are `YYYY-MM-DD`, some of those invalid)
    // equals Arrow's TRY_CAST to a date.
    let want = arrow::compute::cast(&array, &DataType::Date32).unwrap();
    let args = ScalarFunctionArgs {
        args: vec![ColumnarValue::Array(array.clone())],
        arg_fields: vec![Arc::new(arrow::datatypes::Field::new(
            "t",
            DataType::Utf8,
            true,
        ))],
        number_rows: texts.len(),
        return_field: Arc::new(arrow::datatypes::Field::new("t", DataType::Date32, true)),
        config_options: Arc::new(Default::default()),
    };
    let ColumnarValue::Array(got) = TextTimestamp::date().invoke_with_args(args).unwrap() else {
        panic!("no array")
    };
    assert_eq!(got.data_type(), &DataType::Date32);
    let dates = |a: &ArrayRef| {
        let a = a.as_primitive::<arrow::datatypes::Date32Type>();
        (0..a.len())
            .map(|i| a.is_valid(i).then(|| a.value(i)))
            .collect::<Vec<_>>()
    };
    let (got, want) = (dates(&got), dates(&want));
    assert!(got.iter().filter(|d| d.is_some()).count() > 1_000);
    for (i, t) in texts.iter().enumerate() {
        assert_eq!(got[i], want[i], "{t:?}");
    }
}

/// Bytes that are not text (a cell set, say) have keys of their own, equal only for
/// equal bytes, short or long; NULL only for NULL (they were NULL when keyed by a text
/// form, so such values dropped out of a distinct count).
#[test]
fn byte_keys_tell_bytes_apart_and_are_null_only_for_null() {
    let long: Vec<u8> = (0..40u8).map(|b| b.wrapping_mul(37) | 0x80).collect();
    let mut other = long.clone();
    other[39] ^= 1;
    let values: Vec<Option<&[u8]>> = vec![
        Some(&[0xff, 0xfe]),
        Some(&[0xff, 0xfe, 0x00]),
        Some(&long),
        Some(&other),
        None,
        Some(&long),
        Some(&[0xff, 0xfe]),
    ];
    for array in [
        Arc::new(arrow::array::BinaryArray::from(values.clone())) as ArrayRef,
        Arc::new(arrow::array::LargeBinaryArray::from(values.clone())),
        Arc::new(arrow::array::BinaryViewArray::from(values.clone())),
    ] {
        let k = value_keys(&array).unwrap();
        assert_eq!((k.null_count(), k.is_null(4)), (1, true));
        let distinct: std::collections::BTreeSet<i128> =
            k.iter().take(4).map(Option::unwrap).collect();
        assert_eq!(distinct.len(), 4);
        assert_eq!((k.value(5), k.value(6)), (k.value(2), k.value(0)));
    }
}

/// Whole numbers keep their value (also unsigned ones above `i64::MAX`); a key is
/// NULL for NULL only.
#[test]
fn number_keys_are_exact_and_null_only_for_null() {
    let unsigned: arrow::array::ArrayRef = Arc::new(arrow::array::UInt64Array::from(vec![
        Some(u64::MAX),
        Some(1),
        None,
    ]));
    let signed: arrow::array::ArrayRef =
        Arc::new(arrow::array::Int64Array::from(vec![Some(-1), Some(1)]));
    let u = value_keys(&unsigned).unwrap();
    let i = value_keys(&signed).unwrap();
    assert_eq!(u.value(0), u64::MAX as i128);
    assert_ne!(u.value(0), i.value(0));
    assert_eq!(u.value(1), i.value(1));
    assert_eq!((u.null_count(), u.is_null(2)), (1, true));
}
