//! Local times read as instants: the changes of the clocks in Finland in 2025, offsets
//! written in the text, the hours a reader remembers, and the functions through SQL.

use super::*;
use chrono::NaiveDateTime;
use chrono_tz::Europe::Helsinki;

/// Microseconds since 1970 of a UTC time `YYYY-MM-DDTHH:MM:SS`.
fn utc(text: &str) -> i64 {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

fn read(text: &str, policy: Policy) -> Result<Option<i64>, Problem> {
    Resolver::new(Helsinki, policy).read(text)
}

#[test]
fn ordinary_times_are_read_in_finnish_time() {
    for policy in [Policy::Earliest, Policy::Quarantine] {
        for (text, at) in [
            ("2025-01-15T10:00:00", "2025-01-15T08:00:00"),
            ("2025-07-01 12:00:00", "2025-07-01T09:00:00"),
            ("2025-03-15", "2025-03-14T22:00:00"),
            ("2025-03-30T02:59:59", "2025-03-30T00:59:59"),
            ("2025-03-30T04:00:00", "2025-03-30T01:00:00"),
            ("2025-10-26T02:59:59", "2025-10-25T23:59:59"),
            ("2025-10-26T04:00:00", "2025-10-26T02:00:00"),
            ("2025-04-01T01:30", "2025-03-31T22:30:00"),
        ] {
            assert_eq!(read(text, policy), Ok(Some(utc(at))), "{text}");
        }
    }
    // Fractions of a second, to the microsecond.
    assert_eq!(
        read("2025-03-15T12:00:00.5", Policy::Quarantine),
        Ok(Some(utc("2025-03-15T10:00:00") + 500_000))
    );
    assert_eq!(
        read("2025-03-15T12:00:00.1234567", Policy::Quarantine),
        Ok(Some(utc("2025-03-15T10:00:00") + 123_456))
    );
}

/// The night summer time starts: the clocks go from 03:00 to 04:00, so 03:00–03:59 does
/// not exist and 02:55 → 04:05 is ten minutes.
#[test]
fn a_time_the_clocks_skipped_is_refused() {
    for policy in [Policy::Earliest, Policy::Quarantine] {
        for text in [
            "2025-03-30T03:00:00",
            "2025-03-30T03:30:00",
            "2025-03-30 03:59:59",
        ] {
            assert_eq!(read(text, policy), Err(Problem::Nonexistent), "{text}");
        }
        let alarm = read("2025-03-30T02:55:00", policy).unwrap().unwrap();
        let arrival = read("2025-03-30T04:05:00", policy).unwrap().unwrap();
        assert_eq!(arrival - alarm, 10 * 60 * MICROS);
    }
}

/// The night summer time ends: the clocks go from 04:00 back to 03:00, so 03:00–03:59 is
/// shown first in summer time (UTC+3), then in winter time (UTC+2).
#[test]
fn a_time_the_clocks_showed_twice_follows_the_policy() {
    for (text, first) in [
        ("2025-10-26T03:00:00", "2025-10-26T00:00:00"),
        ("2025-10-26T03:10:00", "2025-10-26T00:10:00"),
        ("2025-10-26T03:59:59", "2025-10-26T00:59:59"),
    ] {
        assert_eq!(read(text, Policy::Earliest), Ok(Some(utc(first))), "{text}");
        assert_eq!(
            read(text, Policy::Quarantine),
            Err(Problem::Ambiguous),
            "{text}"
        );
    }
    // Across the change: 02:50 summer time to 04:05 winter time is 2 h 15 min.
    let alarm = read("2025-10-26T02:50:00", Policy::Quarantine)
        .unwrap()
        .unwrap();
    let arrival = read("2025-10-26T04:05:00", Policy::Quarantine)
        .unwrap()
        .unwrap();
    assert_eq!(arrival - alarm, 135 * 60 * MICROS);
}

/// A text with its UTC offset names an instant: taken as written, even in the hour the
/// clocks skipped or showed twice.
#[test]
fn an_offset_written_in_the_text_is_taken_as_is() {
    for (text, at) in [
        ("2025-03-30T02:55+02:00", "2025-03-30T00:55:00"),
        ("2025-03-30T02:55:00+02:00", "2025-03-30T00:55:00"),
        ("2025-03-30T03:30:00+03:00", "2025-03-30T00:30:00"),
        ("2025-10-26T03:10:00+02:00", "2025-10-26T01:10:00"),
        ("2025-10-26T03:10:00+0300", "2025-10-26T00:10:00"),
        ("2025-10-26T03:10:00+03", "2025-10-26T00:10:00"),
        ("2025-10-26T03:10:00Z", "2025-10-26T03:10:00"),
        ("2025-10-26T03:10:00-01:30", "2025-10-26T04:40:00"),
        ("2025-10-26T03:10:00.25+02:00", "2025-10-26T01:10:00"),
    ] {
        let want = utc(at) + if text.contains(".25") { 250_000 } else { 0 };
        assert_eq!(read(text, Policy::Quarantine), Ok(Some(want)), "{text}");
    }
}

#[test]
fn a_text_that_is_no_timestamp_is_left_to_the_type_rule() {
    for text in [
        "7.3.2025 klo 9",
        "2025-02-30T10:00:00",
        "2025-03-30T24:00",
        "2025-03-30T10:00+25:00",
        "2025-03-30T10:00:00+02:0",
        "",
    ] {
        assert_eq!(read(text, Policy::Quarantine), Ok(None), "{text}");
    }
}

/// The hours a reader remembers give what a lookup of every time would: every minute of
/// 2025 and the two nights of changes by the second, in an order that revisits hours.
#[test]
fn remembered_hours_agree_with_a_lookup_of_every_time() {
    for policy in [Policy::Earliest, Policy::Quarantine] {
        let mut r = Resolver::new(Helsinki, policy);
        let start = utc("2025-01-01T00:00:00");
        let minutes = 365 * 24 * 60;
        let mut walls: Vec<i64> = (0..minutes)
            .map(|m| start + (m * 7_919 % minutes) * 60 * MICROS)
            .collect();
        for night in ["2025-03-30T02:00:00", "2025-10-26T02:00:00"] {
            walls.extend((0..3 * 3_600).map(|s| utc(night) + s * MICROS));
        }
        for wall in walls {
            let direct = pick(offsets(&Helsinki, wall), wall, policy);
            assert_eq!(r.instant(wall), direct, "{wall}");
        }
    }
}

/// Instants shown as the zone's clocks showed them, every hour of 2025 and both nights by
/// the minute, against chrono-tz.
#[test]
fn wall_clock_is_the_zones_clock() {
    let start = utc("2025-01-01T00:00:00") / MICROS;
    let mut seconds: Vec<i64> = (0..365 * 24).map(|h| start + h * 3_600 + 59).collect();
    for night in ["2025-03-30T00:00:00", "2025-10-26T00:00:00"] {
        seconds.extend((0..3 * 60).map(|m| utc(night) / MICROS + m * 60));
    }
    let values: ArrayRef = Arc::new(
        arrow::array::TimestampSecondArray::from(seconds.clone()).with_timezone("Europe/Helsinki"),
    );
    let walls = wall_clock(&values, TimeUnit::Second, "Europe/Helsinki", "%Y-%m-%d").unwrap();
    let walls = walls.as_primitive::<arrow::datatypes::TimestampSecondType>();
    for (i, s) in seconds.iter().enumerate() {
        let want = chrono::DateTime::from_timestamp(*s, 0)
            .unwrap()
            .with_timezone(&Helsinki)
            .naive_local()
            .and_utc()
            .timestamp();
        assert_eq!(walls.value(i), want, "{s}");
    }
    // A format that writes the instant itself, and a fixed offset, go to DataFusion.
    assert!(wall_clock(&values, TimeUnit::Second, "Europe/Helsinki", "%s").is_none());
    assert!(wall_clock(&values, TimeUnit::Second, "+02:00", "%Y").is_none());
}

/// Through DataFusion: the instant's type carries the zone, its epoch is the instant's,
/// `to_char` and a cast to a date show Finnish time, and the problem is named.
#[tokio::test]
async fn sql_reads_instants_and_shows_finnish_time() {
    use datafusion::prelude::SessionContext;
    let ctx = SessionContext::new();
    for f in crate::functions::udfs(None) {
        ctx.register_udf(f);
    }
    let texts = [
        "2025-03-30T02:55:00",
        "2025-03-30T03:30:00",
        "2025-03-30T04:05:00",
        "2025-10-26T03:10:00",
        "2025-04-01T01:30:00",
        "ei aika",
    ];
    let values: Vec<String> = texts.iter().map(|t| format!("('{t}')")).collect();
    let sql = format!(
        "SELECT t, __local_timestamp(t, 'Europe/Helsinki', 'earliest') AS i, \
                __local_time_problem(t, 'Europe/Helsinki', 'quarantine') AS p \
         FROM (VALUES {}) AS v(t)",
        values.join(", ")
    );
    let df = ctx.sql(&sql).await.unwrap();
    assert_eq!(
        df.schema().field_with_name(None, "i").unwrap().data_type(),
        &instant_type("Europe/Helsinki")
    );
    ctx.register_table("a", df.into_view()).unwrap();
    let batches = ctx
        .sql(
            "SELECT t, p, date_part('epoch', i) AS e, to_char(i, '%Y-%m-%d %H:%M') AS c, \
                    CAST(CAST(i AS DATE) AS VARCHAR) AS d FROM a",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut seen = 0;
    for b in &batches {
        let text = |name: &str, i: usize| {
            let a = arrow::compute::cast(b.column_by_name(name).unwrap(), &DataType::Utf8).unwrap();
            a.is_valid(i)
                .then(|| a.as_string::<i32>().value(i).to_string())
        };
        let epoch = b
            .column_by_name("e")
            .unwrap()
            .as_primitive::<arrow::datatypes::Float64Type>();
        for i in 0..b.num_rows() {
            let t = text("t", i).unwrap();
            let local = NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S")
                .ok()
                .map(|n| Helsinki.from_local_datetime(&n));
            let problem = match &local {
                Some(LocalResult::None) => Some("nonexistent"),
                Some(LocalResult::Ambiguous(..)) => Some("ambiguous"),
                _ => None,
            };
            let want = local.and_then(|l| l.earliest());
            assert_eq!(text("p", i).as_deref(), problem, "{t}");
            assert_eq!(
                epoch.is_valid(i).then(|| epoch.value(i) as i64),
                want.map(|w| w.timestamp()),
                "{t}"
            );
            let shown = want.map(|w| w.format("%Y-%m-%d %H:%M").to_string());
            assert_eq!(text("c", i), shown, "{t}");
            let day = want.map(|w| w.format("%Y-%m-%d").to_string());
            assert_eq!(text("d", i), day, "{t}");
            seen += 1;
        }
    }
    assert_eq!(seen, texts.len());
}
