//! Local times, checked when a line loads: the line's `timezone` is a zone of the tz
//! database, and only timestamp columns are declared `local` (and only local ones say what
//! an `ambiguous` time becomes). How local times are read is in
//! `functions::local_time`; how they are typed, in the source step's planning. Here too:
//! a column's `format` fits its type (the formats are in `functions::formats`).

use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::line::spec::{ColumnFormat, ColumnType, LineSpec, SourceSpec};

/// The line's `timezone` names a zone of the tz database (V109, with the closest name).
pub(crate) fn check_timezone(file: &str, spec: &LineSpec, diags: &mut Vec<Diagnostic>) {
    let Some(zone) = &spec.timezone else {
        return;
    };
    if zone.value.parse::<chrono_tz::Tz>().is_ok() {
        return;
    }
    let d = Diagnostic::error(
        Code::V109,
        file,
        zone.at,
        format!("`{}` is not a time zone of the tz database", zone.value),
    );
    let names = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name());
    diags.push(match did_you_mean(&zone.value, names) {
        Some(hint) => d.with_hint(hint),
        None => d.with_hint("name the zone as the tz database does, e.g. `Europe/Helsinki`"),
    });
}

/// `local` is declared on timestamp columns only, and `ambiguous` on local ones (V003).
pub(crate) fn check_local_columns(file: &str, s: &SourceSpec, diags: &mut Vec<Diagnostic>) {
    for (name, c) in &s.columns {
        if c.local && c.r#type.value != ColumnType::Timestamp {
            diags.push(
                Diagnostic::error(
                    Code::V003,
                    file,
                    name.at,
                    format!(
                        "column `{}` is a {}; only a timestamp can be `local`",
                        name.value,
                        c.r#type.value.as_str()
                    ),
                )
                .with_hint("give `type: timestamp`, or leave `local` out"),
            );
        }
        if c.ambiguous.is_some() && !c.local {
            diags.push(
                Diagnostic::error(
                    Code::V003,
                    file,
                    name.at,
                    format!(
                        "column `{}` is not `local`; `ambiguous` says what a local time the clocks showed twice becomes",
                        name.value
                    ),
                )
                .with_hint("add `local: true`, or leave `ambiguous` out"),
            );
        }
    }
}

/// A column's `format` fits its type, and is not on a `local` column (V209).
pub(crate) fn check_formats(file: &str, s: &SourceSpec, diags: &mut Vec<Diagnostic>) {
    for (name, c) in &s.columns {
        let Some(format) = &c.format else {
            continue;
        };
        let (f, t) = (format.value, c.r#type.value);
        let problem = if !f.fits(t) {
            let fits = match f {
                ColumnFormat::Finnish => "`decimal` and `integer`",
                ColumnFormat::Hl7 => "`date` and `timestamp`",
            };
            format!(
                "column `{}` is a {}; the format `{}` is for {fits} columns",
                name.value,
                t.as_str(),
                f.as_str()
            )
        } else if c.local {
            format!(
                "column `{}` is `local`; a local time cannot also have the format `{}`",
                name.value,
                f.as_str()
            )
        } else {
            continue;
        };
        diags.push(
            Diagnostic::error(Code::V209, file, format.at, problem)
                .with_hint("give the type the format is for, or leave `format` out"),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::diag::{Code, Diagnostic};

    fn diagnostics(text: String) -> Vec<Diagnostic> {
        match crate::line::load::load_text("t.yaml", std::path::Path::new("."), text) {
            Ok(_) => Vec::new(),
            Err(d) => d,
        }
    }

    fn line(zone: &str, column: &str) -> String {
        format!(
            "line: t\ntitle: t\ntimezone: {zone}\nsteps:\n  s:\n    source:\n      format: csv\n      \
             location: x.csv\n      columns:\n        a: {column}\n"
        )
    }

    #[test]
    fn a_zone_of_the_tz_database_is_taken_and_another_refused_with_the_closest_name() {
        let local = "{ type: timestamp, local: true, ambiguous: earliest }";
        assert!(diagnostics(line("Europe/Stockholm", local)).is_empty());
        let d = diagnostics(line("Europe/Helsingki", local));
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].code, d[0].line, d[0].col), (Code::V109, 3, 11));
        assert_eq!(
            d[0].hint.as_deref(),
            Some("did you mean `Europe/Helsinki`?")
        );
    }

    #[test]
    fn only_timestamps_are_local_and_only_local_times_ambiguous() {
        for column in [
            "{ type: date, local: true }",
            "{ type: timestamp, ambiguous: quarantine }",
        ] {
            let d = diagnostics(line("Europe/Helsinki", column));
            assert_eq!(d.len(), 1, "{column}: {d:?}");
            assert_eq!((d[0].code, d[0].line), (Code::V003, 10), "{column}");
        }
    }

    #[test]
    fn a_format_fits_its_type_and_is_not_on_a_local_column() {
        for column in [
            "{ type: decimal, format: finnish }",
            "{ type: integer, format: finnish }",
            "{ type: date, format: hl7 }",
            "{ type: timestamp, format: hl7 }",
        ] {
            assert!(
                diagnostics(line("Europe/Helsinki", column)).is_empty(),
                "{column}"
            );
        }
        for column in [
            "{ type: decimal, format: hl7 }",
            "{ type: date, format: finnish }",
            "{ type: string, format: finnish }",
            "{ type: boolean, format: hl7 }",
            "{ type: timestamp, local: true, format: hl7 }",
        ] {
            let d = diagnostics(line("Europe/Helsinki", column));
            assert_eq!(d.len(), 1, "{column}: {d:?}");
            assert_eq!((d[0].code, d[0].line), (Code::V209, 10), "{column}");
        }
        let d = diagnostics(line("Europe/Helsinki", "{ type: date, format: iso }"));
        assert!(!d.is_empty() && d[0].code != Code::V209, "{d:?}");
    }
}
