//! Schedules: five-field cron expressions (`minute hour day-of-month month day-of-week`) in
//! Finnish time, as lines declare them in `schedule:`.
//!
//! Parsing and finding the next firing are `croner`'s (Vixie-cron rules: when both day of
//! month and day of week are restricted, a day matching either one matches; 0 and 7 are
//! Sunday), in the `Europe/Helsinki` zone of `chrono-tz`: a time skipped when clocks go
//! forward fires at the first minute after the gap, a repeated one once. What is ours is
//! the shape (exactly five fields, no seconds or years) and an error that names the field.

use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Europe::Helsinki;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule(Cron);

/// Why a schedule does not parse: which field (0–4, or 5 for the whole) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    pub field: usize,
    pub message: String,
}

const FIELDS: [&str; 5] = ["minute", "hour", "day of month", "month", "day of week"];

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
}

impl FromStr for Schedule {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, CronError> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(CronError {
                field: 5,
                message: format!(
                    "a schedule has five fields (minute hour day-of-month month day-of-week), this has {}",
                    parts.len()
                ),
            });
        }
        let parts = normalised(&parts)?;
        let s = parts.join(" ");
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        parser().parse(&s).map(Schedule).map_err(|e| {
            // The field at fault: the first that fails on its own, the others `*`.
            let field = (0..5)
                .find(|&i| {
                    let alone: Vec<&str> = (0..5)
                        .map(|j| if j == i { parts[i] } else { "*" })
                        .collect();
                    parser().parse(&alone.join(" ")).is_err()
                })
                .unwrap_or(5);
            let message = match FIELDS.get(field) {
                Some(name) => format!("{name} field `{}`: {e}", parts[field]),
                None => e.to_string(),
            };
            CronError { field, message }
        })
    }
}

/// The fields in the form croner reads, or the error of the first that is not of the
/// five-field form lines use: numbers, `*`, ranges `a-b`, steps `/n` and lists. Anything
/// else croner would take (names, `?`, `L`, `W`, `#`, a `+` that changes how the day fields
/// combine) is refused; an empty list element (`1,,2`, which croner skips) too; `a/n` is
/// `a-max/n` (`a/1` just `a`), as Vixie cron reads it and croner does not.
fn normalised(parts: &[&str]) -> Result<Vec<String>, CronError> {
    const MAX: [u32; 5] = [59, 23, 31, 12, 7];
    let mut out = Vec::with_capacity(5);
    for (i, field) in parts.iter().enumerate() {
        let bad = |what: &str| CronError {
            field: i,
            message: format!("{what} in the {} field `{field}`", FIELDS[i]),
        };
        if let Some(c) = field
            .chars()
            .find(|c| !(c.is_ascii_digit() || "*,-/".contains(*c)))
        {
            return Err(bad(&format!("`{c}` is not a number, `*`, `-`, `/` or `,`")));
        }
        let mut items = Vec::new();
        for item in field.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (item, None),
            };
            if range.is_empty() {
                return Err(bad("empty value"));
            }
            let single = range.chars().all(|c| c.is_ascii_digit());
            items.push(match step {
                Some("1") if single => range.to_string(),
                Some(s) if single => format!("{range}-{}/{s}", MAX[i]),
                Some(s) => format!("{range}/{s}"),
                None => range.to_string(),
            });
        }
        out.push(items.join(","));
    }
    Ok(out)
}

impl Schedule {
    /// The next firing after the instant `after`, as an instant; schedules are in Finnish
    /// time. `None` for a schedule that never fires, such as 31 February.
    pub fn next_utc(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&Helsinki);
        self.0
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Finnish local time of an instant.
pub fn finnish_local(t: DateTime<Utc>) -> NaiveDateTime {
    t.with_timezone(&Helsinki).naive_local()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone};

    /// The next firing after a Finnish local time, as Finnish local time.
    fn next(s: &Schedule, local: &str) -> Option<NaiveDateTime> {
        let t = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M").unwrap();
        let utc = Helsinki
            .from_local_datetime(&t)
            .earliest()
            .unwrap()
            .with_timezone(&Utc);
        s.next_utc(utc).map(finnish_local)
    }

    fn at(s: &str) -> Option<NaiveDateTime> {
        Some(NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap())
    }

    #[test]
    fn next_firings_of_the_lines_schedules() {
        let monthly: Schedule = "0 6 5 * *".parse().unwrap();
        assert_eq!(next(&monthly, "2025-03-05 05:59"), at("2025-03-05 06:00"));
        assert_eq!(next(&monthly, "2025-03-05 06:00"), at("2025-04-05 06:00"));
        let quarterly: Schedule = "0 6 15 1,4,7,10 *".parse().unwrap();
        assert_eq!(next(&quarterly, "2025-04-16 00:00"), at("2025-07-15 06:00"));
        let every: Schedule = "*/15 8-9 * * 1-5".parse().unwrap();
        // 2025-03-08 is a Saturday: the next firing is Monday 08:00.
        assert_eq!(next(&every, "2025-03-07 09:50"), at("2025-03-10 08:00"));
        assert_eq!(next(&every, "2025-03-10 08:00"), at("2025-03-10 08:15"));
        let sunday: Schedule = "0 0 * * 7".parse().unwrap();
        assert_eq!(next(&sunday, "2025-03-10 00:00"), at("2025-03-16 00:00"));
        // Either restricted day field matches (Vixie cron).
        let either: Schedule = "0 0 1 * 1".parse().unwrap();
        assert_eq!(next(&either, "2025-03-01 00:00"), at("2025-03-03 00:00"));
        // `a/n` is `a-max/n` (Vixie cron; failed before: croner refused it).
        let from_five: Schedule = "5/20 * * * *".parse().unwrap();
        assert_eq!(next(&from_five, "2025-03-05 06:06"), at("2025-03-05 06:25"));
        assert_eq!(next(&from_five, "2025-03-05 06:46"), at("2025-03-05 07:05"));
        let never: Schedule = "0 0 31 2 *".parse().unwrap();
        assert_eq!(next(&never, "2025-01-01 00:00"), None);
    }

    #[test]
    fn finnish_time_and_daylight_saving() {
        let s: Schedule = "0 6 5 * *".parse().unwrap();
        let after = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        // Winter: UTC+2.
        assert_eq!(
            s.next_utc(after).unwrap(),
            Utc.with_ymd_and_hms(2025, 1, 5, 4, 0, 0).unwrap()
        );
        // Summer: UTC+3.
        let after = Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap();
        assert_eq!(
            s.next_utc(after).unwrap(),
            Utc.with_ymd_and_hms(2025, 6, 5, 3, 0, 0).unwrap()
        );
        // 03:30 does not exist on 2025-03-30 in Finland: fires at 04:00 local (01:00 UTC).
        let skipped: Schedule = "30 3 30 3 *".parse().unwrap();
        let after = Utc.with_ymd_and_hms(2025, 3, 29, 0, 0, 0).unwrap();
        assert_eq!(
            skipped.next_utc(after).unwrap(),
            Utc.with_ymd_and_hms(2025, 3, 30, 1, 0, 0).unwrap()
        );
        // 03:30 happens twice on 2025-10-26: it fires once, at the first (00:30 UTC).
        let repeated: Schedule = "30 3 26 10 *".parse().unwrap();
        let after = Utc.with_ymd_and_hms(2025, 10, 25, 0, 0, 0).unwrap();
        let first = repeated.next_utc(after).unwrap();
        assert_eq!(first, Utc.with_ymd_and_hms(2025, 10, 26, 0, 30, 0).unwrap());
        assert!(repeated.next_utc(first).unwrap().year() >= 2026);
    }

    #[test]
    fn bad_schedules_name_the_field() {
        let e = "0 6 5 *".parse::<Schedule>().unwrap_err();
        assert_eq!(e.field, 5);
        let e = "0 24 * * *".parse::<Schedule>().unwrap_err();
        assert_eq!(e.field, 1);
        assert!(e.message.starts_with("hour field `24`: "), "{}", e.message);
        let e = "0 6 x * *".parse::<Schedule>().unwrap_err();
        assert_eq!(e.field, 2);
        let e = "*/0 6 * * *".parse::<Schedule>().unwrap_err();
        assert_eq!(e.field, 0);
        let e = "0 6 * 9-3 *".parse::<Schedule>().unwrap_err();
        assert_eq!(e.field, 3, "{}", e.message);
        assert_eq!("0 6 1,,2 * *".parse::<Schedule>().unwrap_err().field, 2);
        assert!(
            "0 0 6 * * *".parse::<Schedule>().is_err(),
            "seconds are not taken"
        );
    }
}
