//! PxWeb API 2.0 (`/api/v2/…`): the published datasets as the table API of the Nordic
//! statistics offices.
//!
//! Statistics Finland, Sweden and Norway publish their tables through PxWeb API 2.0, and
//! its clients (`pxwebpy`, the R and Excel tools, PxWeb itself) read any server that
//! speaks it. Serving it here lets those tools read the national health statistics the
//! daemon publishes without a client of ours; the indicator API (`/api/v1`) stays for the
//! Sotkanet-style callers. Both read the same releases through `serve::series`, so a
//! cell is the same published value whichever API answers it.
//!
//! A table is a published dataset (a publish step's `dataset`). Its variables are the
//! period (`jakso`, role time), the dataset's own dimensions (the area one role geo) and
//! the contents variable `tiedot`, whose values are the measures. A request selects codes
//! per variable (`*`, lists, `top(n)`, `bottom(n)`, `from(x)`, `to(x)`, `range(x,y)`,
//! `x*` / `*x`); what it leaves out takes the default selection (the latest period, every
//! code of the others). Every input is bounded (parameters, codes, cells, body) and
//! errors answer in the specification's Problem shape (`serve::error::PxError`).
//!
//! - `mod.rs` (this file): languages, query parameters, the tables served and their labels.
//! - `tables.rs`: the table list and search, one table, the configuration.
//! - `codelists.rs`: the code lists (value sets) a dimension is labelled from.
//! - `model.rs`: one table read for an answer — its variables, codes and labels in a
//!   language, and each published row's cell.
//! - `selection.rs`: reading and bounding a selection into codes per variable.
//! - `metadata.rs`: JSON-stat 2.0 metadata and data, and the default selection.
//! - `data.rs`: the data paths and the cube of the selected cells.
//! - `output.rs` and `px.rs`: the csv, xlsx and PX writers.

pub(super) mod codelists;
pub(super) mod data;
pub(super) mod metadata;
mod model;
mod output;
mod px;
pub(super) mod selection;
pub(super) mod tables;

use std::collections::BTreeSet;

use serde::Serialize;
use utoipa::ToSchema;

use crate::line::spec::{PublishSpec, Text};
use crate::serve::error::PxError;
use crate::serve::{App, LineEntry};

/// The cells one data request may ask for (`maxDataCells` of the configuration): a dense
/// JSON-stat answer of this many cells is a few megabytes. Clients split larger selections.
pub(super) const MAX_DATA_CELLS: usize = 100_000;

/// Query parameters one request may carry.
const MAX_PARAMS: usize = 1_000;

/// The longest table or code list id looked up.
const MAX_ID: usize = 200;

/// How much of a request's own text an error message repeats.
const ECHO: usize = 40;

/// A language of labels: Finnish (the default), Swedish or English.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lang {
    Fi,
    Sv,
    En,
}

impl Lang {
    pub(super) const ALL: [Lang; 3] = [Lang::Fi, Lang::Sv, Lang::En];

    /// The position of the language in fi/sv/en label triples.
    pub(super) fn index(self) -> usize {
        match self {
            Lang::Fi => 0,
            Lang::Sv => 1,
            Lang::En => 2,
        }
    }

    /// The ISO 639 code.
    pub(super) fn code(self) -> &'static str {
        ["fi", "sv", "en"][self.index()]
    }

    /// The `lang` parameter: fi when absent or empty, 400 for any other than fi, sv, en.
    pub(super) fn parse(given: Option<&str>) -> Result<Lang, PxError> {
        match given.map(str::trim) {
            None | Some("") => Ok(Lang::Fi),
            Some(t) => Lang::ALL
                .into_iter()
                .find(|l| l.code().eq_ignore_ascii_case(t))
                .ok_or_else(|| PxError::BadLanguage(clip(t))),
        }
    }

    /// The text of a fi/sv/en triple in this language.
    pub(super) fn pick(self, texts: [&'static str; 3]) -> &'static str {
        texts[self.index()]
    }

    /// A label of a fi/sv/en triple in this language, else the Finnish one.
    pub(super) fn label(self, labels: &[Option<String>; 3]) -> Option<String> {
        labels[self.index()].clone().or_else(|| labels[0].clone())
    }

    /// A line file's text in this language, else the Finnish one.
    pub(super) fn text(self, t: &Text) -> String {
        match t {
            Text::Plain(s) => s.clone(),
            Text::Languages(l) => {
                let given = match self {
                    Lang::Fi => None,
                    Lang::Sv => l.sv.clone(),
                    Lang::En => l.en.clone(),
                };
                given.unwrap_or_else(|| l.fi.clone())
            }
        }
    }
}

/// At most [`ECHO`] characters of a request's text, control characters replaced: what an
/// error message may repeat of it.
pub(super) fn clip(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(ECHO)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(ECHO).is_some() {
        out.push('…');
    }
    out
}

/// A request's query parameters, decoded, in order. Names match case-insensitively
/// (`valuecodes[…]` as the specification writes it, `valueCodes[…]` as clients do).
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    /// Reads the query; a parameter the path does not take is refused (a misspelt
    /// selection must not answer the default one). `takes` names the parameters, a
    /// family of `name[VARIABLE]` ones as `name[]`.
    pub(super) fn parse(raw: Option<&str>, takes: &[&str]) -> Result<Params, PxError> {
        let mut pairs = Vec::new();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            if pairs.len() >= MAX_PARAMS {
                return Err(PxError::BadRequest(format!(
                    "more than {MAX_PARAMS} query parameters"
                )));
            }
            if !takes.iter().any(|t| name_matches(t, &k)) {
                return Err(PxError::BadRequest(format!(
                    "unknown parameter `{}`; this path takes {}",
                    clip(&k),
                    takes.join(", ")
                )));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Params(pairs))
    }

    /// The value of a parameter that may be given once.
    pub(super) fn one(&self, name: &str) -> Result<Option<&str>, PxError> {
        let mut found = self.0.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name));
        let first = found.next();
        if found.next().is_some() {
            return Err(PxError::BadRequest(format!(
                "`{name}` is given more than once"
            )));
        }
        Ok(first.map(|(_, v)| v.as_str()))
    }

    /// Every value of a list parameter, repeated or comma-separated.
    pub(super) fn list(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The `family[VARIABLE]=value` parameters, as (variable, value).
    pub(super) fn indexed(&self, family: &str) -> Vec<(&str, &str)> {
        self.0
            .iter()
            .filter_map(|(k, v)| bracketed(k, family).map(|var| (var, v.as_str())))
            .collect()
    }

    /// A whole number of at most nine digits.
    pub(super) fn number(&self, name: &str) -> Result<Option<u64>, PxError> {
        let Some(v) = self.one(name)? else {
            return Ok(None);
        };
        let v = v.trim();
        if v.is_empty() || v.len() > 9 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PxError::BadRequest(format!(
                "`{name}` is a whole number, not `{}`",
                clip(v)
            )));
        }
        Ok(v.parse().ok())
    }

    /// `true` or `false`.
    pub(super) fn flag(&self, name: &str) -> Result<Option<bool>, PxError> {
        match self.one(name)?.map(str::trim) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(PxError::BadRequest(format!(
                "`{name}` is true or false, not `{}`",
                clip(v)
            ))),
        }
    }
}

/// Whether query parameter `key` is the parameter `take` names (`name[]`: a family).
fn name_matches(take: &str, key: &str) -> bool {
    match take.strip_suffix("[]") {
        Some(family) => bracketed(key, family).is_some(),
        None => key.eq_ignore_ascii_case(take),
    }
}

/// `VARIABLE` of a key `family[VARIABLE]`.
fn bracketed<'a>(key: &'a str, family: &str) -> Option<&'a str> {
    let head = key.get(..family.len())?;
    if !head.eq_ignore_ascii_case(family) {
        return None;
    }
    let inner = key[family.len()..].strip_prefix('[')?.strip_suffix(']')?;
    (!inner.is_empty()).then_some(inner)
}

/// A link of an answer (`Link` of the specification).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(in crate::serve) struct PxLink {
    /// The relation (`self`, `metadata`, `data`, …).
    rel: String,
    /// The language of what it points at.
    hreflang: String,
    /// Where, as a path on this server.
    href: String,
}

pub(super) fn link(rel: &str, lang: Lang, href: String) -> PxLink {
    PxLink {
        rel: rel.to_string(),
        hreflang: lang.code().to_string(),
        href,
    }
}

/// The base path of the API.
pub(super) const BASE: &str = "/api/v2";

/// Labels of the period variable.
const TIME_LABELS: [&str; 3] = ["Tilastojakso", "Statistikperiod", "Statistical period"];

/// Labels of the contents variable.
const CONTENTS_LABELS: [&str; 3] = ["Tiedot", "Uppgifter", "Contents"];

/// The name of the contents variable, as the indicator API names its metric dimension.
pub(super) const CONTENTS: &str = crate::publish::jsonstat::METRIC;

/// A table the API serves: a dataset a line publishes.
#[derive(Clone, Copy)]
pub(super) struct TableRef<'a> {
    pub(super) id: &'a str,
    pub(super) line: &'a str,
    pub(super) entry: &'a LineEntry,
    pub(super) spec: &'a PublishSpec,
}

/// Every table, by id (a dataset two lines publish is the first line's, as for
/// `find_dataset`).
pub(super) fn catalogue(app: &App) -> Vec<TableRef<'_>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (name, entry) in &app.lines {
        for step in entry.line.spec.steps.values() {
            let Some(spec) = &step.publish else {
                continue;
            };
            if seen.insert(spec.dataset.value.as_str()) {
                out.push(TableRef {
                    id: spec.dataset.value.as_str(),
                    line: name.as_str(),
                    entry,
                    spec,
                });
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(b.id));
    out
}

/// The table `id`, or 404.
pub(super) fn find<'a>(app: &'a App, id: &str) -> Result<TableRef<'a>, PxError> {
    if id.len() > MAX_ID {
        return Err(PxError::NoTable(clip(id)));
    }
    let (line, entry, spec) = crate::serve::api::indicators::find_dataset(app, id)
        .ok_or_else(|| PxError::NoTable(clip(id)))?;
    Ok(TableRef {
        id: spec.dataset.value.as_str(),
        line,
        entry,
        spec,
    })
}

impl TableRef<'_> {
    /// The dataset's own dimensions, as its planned publish step gives them.
    pub(super) fn dimensions(&self) -> Vec<String> {
        (self.entry.datasets.get(self.id))
            .map(|s| s.dimensions.clone())
            .unwrap_or_default()
    }

    /// The table's label: its line's title, with the dataset's name when the line
    /// publishes more than one.
    pub(super) fn label(&self, lang: Lang) -> String {
        let title = lang.text(&self.entry.line.spec.title.value);
        let published = (self.entry.line.spec.steps.values())
            .filter(|s| s.publish.is_some())
            .count();
        if published > 1 {
            format!("{title}: {}", self.id)
        } else {
            title
        }
    }

    /// The line's description.
    pub(super) fn description(&self, lang: Lang) -> Option<String> {
        self.entry
            .line
            .spec
            .description
            .as_ref()
            .map(|d| lang.text(d))
    }

    /// A column's label (its description in the publish step), else its name.
    pub(super) fn column_label(&self, name: &str, lang: Lang) -> String {
        (self.spec.columns.get(name))
            .and_then(|c| c.description.as_ref())
            .map(|d| lang.text(d))
            .unwrap_or_else(|| name.to_string())
    }

    /// The labels of the variables — the period, the dimensions, the contents — each
    /// different from the others (clients key columns by them).
    pub(super) fn variable_labels(&self, dimensions: &[String], lang: Lang) -> Vec<String> {
        let mut labels = vec![lang.pick(TIME_LABELS).to_string()];
        labels.extend(dimensions.iter().map(|d| self.column_label(d, lang)));
        labels.push(lang.pick(CONTENTS_LABELS).to_string());
        let mut codes = vec![crate::serve::api::indicators::PERIOD_DIMENSION.to_string()];
        codes.extend(dimensions.iter().cloned());
        codes.push(CONTENTS.to_string());
        let mut seen = BTreeSet::new();
        for (label, code) in labels.iter_mut().zip(&codes) {
            if !seen.insert(label.clone()) {
                *label = format!("{label} ({code})");
                seen.insert(label.clone());
            }
        }
        labels
    }

    /// The code list a dimension is labelled from (`vs_<code set>`), if any.
    pub(super) fn codelist_of(&self, dimension: &str) -> Option<String> {
        (self.spec.labels.get(dimension)).map(|l| format!("vs_{}", l.codeset.value))
    }

    /// The time unit of the line's periods (`timeUnit`).
    pub(super) fn time_unit(&self) -> &'static str {
        use crate::line::spec::ParamKind;
        match self.entry.period {
            Some(ParamKind::Month) => "Monthly",
            Some(ParamKind::Quarter) => "Quarterly",
            Some(ParamKind::Year) => "Annual",
            _ => "Other",
        }
    }
}

/// A JSON answer: scrubbed like every text the daemon gives ([`crate::serve::scrubbed`]).
pub(super) fn json_answer<T: Serialize>(value: &T) -> Result<axum::response::Response, PxError> {
    use axum::response::IntoResponse;
    let v = serde_json::to_value(value).map_err(|e| {
        tracing::error!("{e}");
        PxError::Write("JSON")
    })?;
    Ok(crate::serve::scrubbed(v).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_case_insensitively_and_unknown_ones_refused() {
        let p = Params::parse(
            Some("lang=sv&valuecodes[jakso]=top(2)&valueCodes%5Balue%5D=01,02&outputFormatParams=UseTexts,IncludeTitle"),
            &["lang", "valueCodes[]", "outputFormatParams"],
        )
        .unwrap();
        assert_eq!(p.one("LANG").unwrap(), Some("sv"));
        assert_eq!(
            p.indexed("valueCodes"),
            [("jakso", "top(2)"), ("alue", "01,02")]
        );
        assert_eq!(p.list("outputformatparams"), ["UseTexts", "IncludeTitle"]);
        let e = Params::parse(Some("valuecode[jakso]=x"), &["lang", "valueCodes[]"]);
        assert!(matches!(e, Err(PxError::BadRequest(_))));
        let e = Params::parse(Some("valueCodes[]=x"), &["valueCodes[]"]);
        assert!(matches!(e, Err(PxError::BadRequest(_))));
        let twice = Params::parse(Some("lang=fi&lang=sv"), &["lang"]).unwrap();
        assert!(twice.one("lang").is_err());
    }

    #[test]
    fn languages_are_fi_sv_en_and_nothing_else() {
        assert_eq!(Lang::parse(None).unwrap(), Lang::Fi);
        assert_eq!(Lang::parse(Some("EN")).unwrap(), Lang::En);
        assert!(matches!(
            Lang::parse(Some("dk")),
            Err(PxError::BadLanguage(_))
        ));
    }

    #[test]
    fn errors_repeat_little_of_the_request() {
        let long = "x".repeat(10_000);
        assert_eq!(clip(&long).chars().count(), ECHO + 1);
        assert_eq!(clip("a\nb"), "a?b");
    }
}
