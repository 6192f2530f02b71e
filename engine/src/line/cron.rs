//! Schedules: five-field cron expressions (`minute hour day-of-month month day-of-week`) in
//! Finnish time, as lines declare them in `schedule:`.
//!
//! Each field is `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, or a list of those
//! separated by commas. Day of week is 0–7 (0 and 7 are Sunday). As in Vixie cron, when
//! both day of month and day of week are restricted, a day matching either one matches.

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeZone, Timelike};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_any: bool,
    weekdays_any: bool,
}

/// Why a schedule does not parse: which field (0–4, or 5 for the field count) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    pub field: usize,
    pub message: String,
}

const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

fn field(text: &str, index: usize) -> Result<(u64, bool), CronError> {
    let (name, lo, hi) = FIELDS[index];
    let bad = |m: String| CronError {
        field: index,
        message: m,
    };
    let num = |s: &str| -> Result<u32, CronError> {
        let n: u32 = s
            .parse()
            .map_err(|_| bad(format!("`{s}` is not a number in the {name} field")))?;
        if n < lo || n > hi {
            return Err(bad(format!("{name} {n} is out of range {lo}–{hi}")));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let s: u32 = s.parse().ok().filter(|&s| s > 0).ok_or_else(|| {
                    bad(format!(
                        "step `{s}` in the {name} field is not a positive number"
                    ))
                })?;
                (r, s)
            }
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(bad(format!(
                    "range {a}-{b} in the {name} field runs backwards"
                )));
            }
            (a, b)
        } else if range.is_empty() {
            return Err(bad(format!("empty value in the {name} field")));
        } else {
            let a = num(range)?;
            (a, if step > 1 { hi } else { a })
        };
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, text == "*"))
}

impl std::str::FromStr for Schedule {
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
        let (minutes, _) = field(parts[0], 0)?;
        let (hours, _) = field(parts[1], 1)?;
        let (days, days_any) = field(parts[2], 2)?;
        let (months, _) = field(parts[3], 3)?;
        let (mut weekdays, weekdays_any) = field(parts[4], 4)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_any,
            weekdays_any,
        })
    }
}

impl Schedule {
    fn day_matches(&self, d: NaiveDate) -> bool {
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().num_days_from_sunday()) != 0;
        match (self.days_any, self.weekdays_any) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        }
    }

    /// Whether the schedule fires at this local minute.
    pub fn matches(&self, t: NaiveDateTime) -> bool {
        self.months & (1 << t.month()) != 0
            && self.day_matches(t.date())
            && self.hours & (1 << t.hour()) != 0
            && self.minutes & (1 << t.minute()) != 0
    }

    /// The first local minute strictly after `after` at which the schedule fires (within
    /// eight years; `None` for a schedule that never fires, such as 31 February).
    pub fn next_after(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let start = after.with_second(0)?.with_nanosecond(0)? + chrono::Duration::minutes(1);
        let mut day = start.date();
        let end = day + chrono::Duration::days(366 * 8);
        while day <= end {
            if self.months & (1 << day.month()) != 0 && self.day_matches(day) {
                for h in 0..24u32 {
                    if self.hours & (1 << h) == 0 {
                        continue;
                    }
                    for m in 0..60u32 {
                        if self.minutes & (1 << m) == 0 {
                            continue;
                        }
                        let t = day.and_hms_opt(h, m, 0)?;
                        if t >= start {
                            return Some(t);
                        }
                    }
                }
            }
            day = day.succ_opt()?;
        }
        None
    }

    /// The next firing after the instant `after`, as an instant; schedules are in Finnish
    /// time (a minute skipped when clocks go forward fires at the first minute after the
    /// gap; a repeated one fires once, at its first occurrence).
    pub fn next_utc(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let next = self.next_after(finnish_local(after))?;
        Some(finnish_instant(next))
    }
}

/// The UTC instants at which Finland's summer time starts and ends in `year` (EU rule: the
/// last Sundays of March and October at 01:00 UTC).
fn summer_time(year: i32) -> (NaiveDateTime, NaiveDateTime) {
    let last_sunday = |month: u32| {
        let mut d =
            NaiveDate::from_ymd_opt(year, month, 31).expect("March and October have 31 days");
        while d.weekday() != chrono::Weekday::Sun {
            d = d.pred_opt().expect("a date in the year");
        }
        d.and_hms_opt(1, 0, 0).expect("01:00 exists")
    };
    (last_sunday(3), last_sunday(10))
}

/// Finnish local time (UTC+2, summer UTC+3) of an instant.
pub fn finnish_local(t: chrono::DateTime<chrono::Utc>) -> NaiveDateTime {
    let u = t.naive_utc();
    let (start, end) = summer_time(u.year());
    let hours = if u >= start && u < end { 3 } else { 2 };
    u + chrono::Duration::hours(hours)
}

/// The instant of a Finnish local time: the earlier one when the clock repeats an hour,
/// and the end of the gap when it skips one.
pub fn finnish_instant(local: NaiveDateTime) -> chrono::DateTime<chrono::Utc> {
    let candidates = [3, 2].map(|h| local - chrono::Duration::hours(h));
    for u in candidates {
        let u = chrono::Utc.from_utc_datetime(&u);
        if finnish_local(u) == local {
            return u;
        }
    }
    // Skipped (03:00–03:59 on the spring day): summer time starts at 01:00 UTC.
    let (start, _) = summer_time(local.year());
    chrono::Utc.from_utc_datetime(&start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn next_firings_of_the_lines_schedules() {
        let monthly: Schedule = "0 6 5 * *".parse().unwrap();
        assert_eq!(
            monthly.next_after(at("2025-03-05 05:59")),
            Some(at("2025-03-05 06:00"))
        );
        assert_eq!(
            monthly.next_after(at("2025-03-05 06:00")),
            Some(at("2025-04-05 06:00"))
        );
        let quarterly: Schedule = "0 6 15 1,4,7,10 *".parse().unwrap();
        assert_eq!(
            quarterly.next_after(at("2025-04-16 00:00")),
            Some(at("2025-07-15 06:00"))
        );
        let every: Schedule = "*/15 8-9 * * 1-5".parse().unwrap();
        // 2025-03-08 is a Saturday: the next firing is Monday 08:00.
        assert_eq!(
            every.next_after(at("2025-03-07 09:50")),
            Some(at("2025-03-10 08:00"))
        );
        assert_eq!(
            every.next_after(at("2025-03-10 08:00")),
            Some(at("2025-03-10 08:15"))
        );
        let sunday: Schedule = "0 0 * * 7".parse().unwrap();
        assert_eq!(
            sunday.next_after(at("2025-03-10 00:00")),
            Some(at("2025-03-16 00:00"))
        );
        // Either restricted day field matches (Vixie cron).
        let either: Schedule = "0 0 1 * 1".parse().unwrap();
        assert_eq!(
            either.next_after(at("2025-03-01 00:00")),
            Some(at("2025-03-03 00:00"))
        );
        let never: Schedule = "0 0 31 2 *".parse().unwrap();
        assert_eq!(never.next_after(at("2025-01-01 00:00")), None);
    }

    #[test]
    fn finnish_time_and_daylight_saving() {
        let s: Schedule = "0 6 5 * *".parse().unwrap();
        let after = chrono::Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        // Winter: UTC+2.
        assert_eq!(
            s.next_utc(after).unwrap(),
            chrono::Utc.with_ymd_and_hms(2025, 1, 5, 4, 0, 0).unwrap()
        );
        // Summer: UTC+3.
        let after = chrono::Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap();
        assert_eq!(
            s.next_utc(after).unwrap(),
            chrono::Utc.with_ymd_and_hms(2025, 6, 5, 3, 0, 0).unwrap()
        );
        // 03:30 does not exist on 2025-03-30 in Finland: fires at 04:00 local (01:00 UTC).
        let skipped: Schedule = "30 3 30 3 *".parse().unwrap();
        let after = chrono::Utc.with_ymd_and_hms(2025, 3, 29, 0, 0, 0).unwrap();
        assert_eq!(
            skipped.next_utc(after).unwrap(),
            chrono::Utc.with_ymd_and_hms(2025, 3, 30, 1, 0, 0).unwrap()
        );
    }

    #[test]
    fn bad_schedules_name_the_field() {
        let e = "0 6 5 *".parse::<Schedule>().unwrap_err();
        assert_eq!(e.field, 5);
        let e = "0 24 * * *".parse::<Schedule>().unwrap_err();
        assert_eq!(
            (e.field, e.message.as_str()),
            (1, "hour 24 is out of range 0–23")
        );
        let e = "0 6 x * *".parse::<Schedule>().unwrap_err();
        assert_eq!(e.field, 2);
        let e = "*/0 6 * * *".parse::<Schedule>().unwrap_err();
        assert_eq!(e.field, 0);
        let e = "0 6 * 9-3 *".parse::<Schedule>().unwrap_err();
        assert!(e.message.contains("backwards"), "{}", e.message);
        assert!("0 6 1,,2 * *".parse::<Schedule>().is_err());
    }
}
