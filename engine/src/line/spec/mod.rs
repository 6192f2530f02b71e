//! The line model: what a data producer writes in a line file.
//!
//! These types are the single source of truth for the line-file format. Their doc comments
//! are written for line authors: they become the descriptions in
//! `schemas/line.schema.json`, which editors show as hover help. Unknown keys are rejected
//! everywhere, so a misspelt key is an error with a suggestion, never silently ignored.
//!
//! Every name and expression is kept with its place in the file ([`Sp`]), so that checks
//! made after parsing still point at `file:line:col`.

use std::borrow::Cow;
use std::fmt;

use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// A place in a line file; defined with the diagnostics, which sit below every layer.
pub use crate::diag::Pos;

mod steps;
pub use steps::*;

/// A value together with the place it was written.
#[derive(Debug, Clone)]
pub struct Sp<T> {
    pub value: T,
    pub at: Pos,
}

impl<T> Sp<T> {
    /// A value with no place in a file (made by the engine).
    pub fn synthetic(value: T) -> Self {
        Self {
            value,
            at: Pos::default(),
        }
    }
}

impl<T> std::ops::Deref for Sp<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: PartialEq> PartialEq for Sp<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}
impl<T: Eq> Eq for Sp<T> {}
impl<T: PartialOrd> PartialOrd for Sp<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.value.partial_cmp(&other.value)
    }
}
impl<T: Ord> Ord for Sp<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value.cmp(&other.value)
    }
}
impl<T: std::hash::Hash> std::hash::Hash for Sp<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.value.hash(state)
    }
}
impl<T: fmt::Display> fmt::Display for Sp<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}
impl std::borrow::Borrow<str> for Sp<String> {
    fn borrow(&self) -> &str {
        &self.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sp<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<T>::deserialize(deserializer)?;
        let loc = s.referenced;
        Ok(Sp {
            value: s.value,
            at: Pos {
                line: loc.line() as u32,
                col: loc.column() as u32,
                offset: loc.span().byte_offset().unwrap_or(0) as usize,
            },
        })
    }
}

impl<T: Serialize> Serialize for Sp<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

impl<T: JsonSchema> JsonSchema for Sp<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A name written in the line file (a step, column, code set, parameter or rule).
pub type Name = Sp<String>;
/// A DataFusion SQL expression written in the line file.
pub type ExprText = Sp<String>;

/// Text in Finnish, or in Finnish, Swedish and English.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum Text {
    /// One text (Finnish).
    Plain(String),
    /// The same text in the national languages and English.
    Languages(LocalizedText),
}

impl Text {
    /// Whether the text, or any of its languages given, is empty.
    pub fn is_blank(&self) -> bool {
        match self {
            Text::Plain(s) => s.trim().is_empty(),
            Text::Languages(l) => [Some(&l.fi), l.sv.as_ref(), l.en.as_ref()]
                .into_iter()
                .flatten()
                .any(|t| t.trim().is_empty()),
        }
    }

    /// The Finnish text.
    pub fn fi(&self) -> &str {
        match self {
            Text::Plain(s) => s,
            Text::Languages(l) => &l.fi,
        }
    }
}

/// Text in Finnish, Swedish and English.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalizedText {
    /// Suomeksi.
    pub fi: String,
    /// På svenska.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sv: Option<String>,
    /// In English.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub en: Option<String>,
}

/// One production line: where its data comes from, how it is checked, harmonised and
/// aggregated, and what it publishes.
///
/// ```yaml
/// # yaml-language-server: $schema=../schemas/line.schema.json
/// line: ensihoito
/// title: Ensihoidon tehtävät
/// owner: THL
/// params:
///   period: { kind: month }
/// steps:
///   tehtavat:
///     source: { format: csv, location: "inbox/ensihoito/{period}/*.csv", columns: { tehtava_id: string } }
/// ```
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Valtava production line")]
pub struct LineSpec {
    /// Machine name of the line: lower case letters, digits and `_`. It names the line's
    /// inbox, releases and run reports in the store.
    pub line: Name,
    /// Title for people.
    pub title: Sp<Text>,
    /// What the line produces and for whom.
    #[serde(default)]
    pub description: Option<Text>,
    /// The organisation that owns the line and answers for its figures (e.g. `THL`).
    #[serde(default)]
    pub owner: Option<String>,
    /// Who to contact about the line (an e-mail address or a team).
    #[serde(default)]
    pub contact: Option<String>,
    /// The law that allows the processing, e.g. `Laki sosiaali- ja terveystietojen
    /// toissijaisesta käytöstä 552/2019`.
    #[serde(default)]
    pub legal_basis: Option<String>,
    /// Why the data is processed.
    #[serde(default)]
    pub purpose: Option<Text>,
    /// When the daemon runs the line: a cron expression of five fields
    /// (minute hour day-of-month month day-of-week), Finnish time.
    #[serde(default)]
    pub schedule: Option<Sp<String>>,
    /// The status of the releases the daemon makes on its own (on the schedule, or when a
    /// submission arrives): `preliminary` (ennakkotieto, to be revised) or `final` (the
    /// default). A run asked for by hand says its own (`valtava run --status`, the API's
    /// `status`), and an operator with the `run` role can change a release's status later.
    #[serde(default)]
    pub release_status: Option<Sp<ReleaseStatus>>,
    /// The time zone of the line's local times, by its name in the tz database:
    /// `Europe/Helsinki` (Finnish time, the default) or e.g. `Europe/Stockholm`. A source
    /// column declared `local: true` holds wall-clock times of this zone, read as instants:
    /// a duration across a change of the clocks is its real length, and a month or a day
    /// taken of such a time is the zone's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<Sp<String>>,
    /// Parameters given at run time (`--param period=2025-03`). Use them in locations as
    /// `{period}` and in expressions as `$period`.
    #[serde(default)]
    pub params: IndexMap<Name, ParamSpec>,
    /// Code sets and classifications the line uses, by name.
    #[serde(default)]
    pub codesets: IndexMap<Name, CodesetSpec>,
    /// The working-day calendar of `working_days(from, to)`: which code set lists the
    /// holidays.
    ///
    /// ```yaml
    /// calendar: { holidays: arkipyhat }
    /// ```
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<CalendarSpec>,
    /// The steps of the line, by name. Each step is exactly one of `source`, `validate`,
    /// `harmonise`, `aggregate`, `publish` or `sql`, and names its inputs; the graph of the
    /// line is what those names make.
    pub steps: IndexMap<Name, StepSpec>,
    /// Bounds on what a run of the line may take: its time, and what one object may make a
    /// reader hold. Every input is treated as hostile; an object that reaches a bound is
    /// quarantined whole with the code R010, and a run past its time fails with R011.
    /// The defaults hold for national submissions.
    #[serde(default)]
    pub limits: LimitsSpec,
}

/// The zone of local times when a line names none: Finnish time.
pub const DEFAULT_TIMEZONE: &str = "Europe/Helsinki";

impl LineSpec {
    /// The zone of the line's local times (`timezone`, by default Finnish time).
    pub fn zone(&self) -> &str {
        self.timezone
            .as_ref()
            .map_or(DEFAULT_TIMEZONE, |t| t.value.as_str())
    }
}

/// The line's working-day calendar.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarSpec {
    /// The code set whose key column holds the holidays as ISO dates (`2025-12-24`), e.g.
    /// `reference/arkipyhat.csv`. Working days are Monday to Friday except these; in years
    /// the code set does not list, every weekday is a working day.
    pub holidays: Name,
}

/// Bounds on a run and on what one object may make a reader hold.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// The most minutes a run may take before it is stopped (R011). Default 120; the CLI's
    /// `--deadline-seconds` and the daemon's override it.
    #[serde(default)]
    pub run_minutes: Option<Sp<u64>>,
    /// The longest record in KiB: a CSV record, an NDJSON line, one FHIR resource, an XML
    /// element's text. Default 4096.
    #[serde(default)]
    pub record_kib: Option<Sp<u64>>,
    /// The largest object in MiB that a reader takes whole (a workbook, a CDA document, a
    /// FHIR Bundle), and what a workbook's parts may unpack to. Default 256.
    #[serde(default)]
    pub object_mib: Option<Sp<u64>>,
    /// The most cells one spreadsheet sheet may hold. Default 20 000 000.
    #[serde(default)]
    pub cells: Option<Sp<u64>>,
    /// The deepest nesting of XML elements or JSON values. Default 100.
    #[serde(default)]
    pub depth: Option<Sp<u64>>,
}

impl LimitsSpec {
    /// Default minutes of a run.
    pub const RUN_MINUTES: u64 = 120;

    /// The bounds the readers get.
    pub fn parser_limits(&self) -> valtava_plugin::Limits {
        use valtava_plugin::Limits;
        let get = |v: &Option<Sp<u64>>, default: u64| v.as_ref().map_or(default, |v| v.value);
        let bytes = |v: u64, shift: u32| {
            usize::try_from(v.saturating_mul(1 << shift)).unwrap_or(usize::MAX)
        };
        Limits {
            record_bytes: bytes(
                get(&self.record_kib, (Limits::RECORD_BYTES >> 10) as u64),
                10,
            ),
            object_bytes: bytes(
                get(&self.object_mib, (Limits::OBJECT_BYTES >> 20) as u64),
                20,
            ),
            cells: get(&self.cells, Limits::CELLS),
            depth: usize::try_from(get(&self.depth, Limits::DEPTH as u64)).unwrap_or(usize::MAX),
        }
    }

    /// The time a run may take.
    pub fn run_time(&self) -> std::time::Duration {
        let minutes = self
            .run_minutes
            .as_ref()
            .map_or(Self::RUN_MINUTES, |m| m.value);
        std::time::Duration::from_secs(minutes.saturating_mul(60))
    }

    /// Every setting with its name, for the checks.
    pub fn settings(&self) -> [(&'static str, &Option<Sp<u64>>); 5] {
        [
            ("run_minutes", &self.run_minutes),
            ("record_kib", &self.record_kib),
            ("object_mib", &self.object_mib),
            ("cells", &self.cells),
            ("depth", &self.depth),
        ]
    }
}

/// A run-time parameter.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    /// The kind of value: `month` (`2025-03`), `quarter` (`2025-Q1`), `half_year`
    /// (`2025-H1`, January–June, or `2025-H2`), `year` (`2025`), `period` (any of those
    /// four), `date` (`2025-03-31`), `string` or `integer`. A period's `{name.months}` in a
    /// source's location reads the location of each month of the period.
    pub kind: Sp<ParamKind>,
    /// The value used when the run gives none; without a default the parameter is required.
    #[serde(default)]
    pub default: Option<Sp<String>>,
    /// What the parameter means.
    #[serde(default)]
    pub description: Option<String>,
}

/// The kind of a parameter's value.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    /// A calendar month, `YYYY-MM`.
    Month,
    /// A quarter, `YYYY-Qn`.
    Quarter,
    /// A half-year, `YYYY-H1` (January–June) or `YYYY-H2` (July–December).
    HalfYear,
    /// A year, `YYYY`.
    Year,
    /// A month, quarter, half-year or year.
    Period,
    /// A date, `YYYY-MM-DD`.
    Date,
    /// Any text.
    String,
    /// A whole number.
    Integer,
}

/// A code set or classification, loaded from a CSV file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodesetSpec {
    /// Where the code set is: a path relative to the line file.
    pub path: Sp<String>,
    /// The file's format. Default: `csv` for `.csv` files; for `.json` files the format is
    /// recognised from the content (a FHIR `CodeSystem` or `ConceptMap`, or the THL code
    /// server's `conceptCodes`).
    #[serde(default)]
    pub format: Option<Sp<CodesetFormat>>,
    /// The column that holds the code. Default `code`.
    #[serde(default = "default_code_column")]
    pub key: Name,
    /// The version the line was written for; the run fails if the file has another one.
    #[serde(default)]
    pub version: Option<Sp<String>>,
    /// The sha256 of the file the line was written for; the run fails on any other file.
    #[serde(default)]
    pub sha256: Option<Sp<String>>,
    /// What the code set is.
    #[serde(default)]
    pub description: Option<String>,
}

/// The format of a code-set file.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CodesetFormat {
    /// CSV with a header: `code`, `display`, `valid_from`, `valid_to` and any other columns
    /// (`,` or `;` delimited, UTF-8).
    Csv,
    /// A FHIR `CodeSystem` resource (JSON): one row per concept, with its properties.
    FhirCodesystem,
    /// A FHIR `ConceptMap` resource (JSON): one row per source code and target, with the
    /// target as `target` and its `equivalence`.
    FhirConceptmap,
    /// The THL code server's JSON (`conceptCodes` with `conceptCodeId`, `beginDate`,
    /// `expirationDate`, `status`, `attributes`).
    Thl,
}

fn default_code_column() -> Name {
    Sp::synthetic("code".to_string())
}

/// One step of a line. Exactly one of the kinds must be given.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// What the step does, for reviewers.
    #[serde(default)]
    pub description: Option<String>,
    /// Read objects from the store.
    #[serde(default)]
    pub source: Option<SourceSpec>,
    /// Check rows against rules; rejected rows go to quarantine with their reasons.
    #[serde(default)]
    pub validate: Option<ValidateSpec>,
    /// Make rows comparable: pseudonymise, map codes, derive columns.
    #[serde(default)]
    pub harmonise: Option<HarmoniseSpec>,
    /// Group rows and compute measures, with total rows.
    #[serde(default)]
    pub aggregate: Option<AggregateSpec>,
    /// Write a dataset as a release, with disclosure control.
    #[serde(default)]
    pub publish: Option<PublishSpec>,
    /// A DataFusion SQL query over named inputs, for what the other kinds do not cover.
    #[serde(default)]
    pub sql: Option<SqlSpec>,
}

/// The kind of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Source,
    Validate,
    Harmonise,
    Aggregate,
    Publish,
    Sql,
}

impl StepKind {
    pub const ALL: [&'static str; 6] = [
        "source",
        "validate",
        "harmonise",
        "aggregate",
        "publish",
        "sql",
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL[self as usize]
    }
}

/// A step's body, one variant per kind: the planner and the graph match on it
/// exhaustively, so a kind added here is a compile error wherever it is not handled.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    Source(&'a SourceSpec),
    Validate(&'a ValidateSpec),
    Harmonise(&'a HarmoniseSpec),
    Aggregate(&'a AggregateSpec),
    Publish(&'a PublishSpec),
    Sql(&'a SqlSpec),
}

impl Step<'_> {
    /// The kind of the body.
    pub fn kind(self) -> StepKind {
        match self {
            Step::Source(_) => StepKind::Source,
            Step::Validate(_) => StepKind::Validate,
            Step::Harmonise(_) => StepKind::Harmonise,
            Step::Aggregate(_) => StepKind::Aggregate,
            Step::Publish(_) => StepKind::Publish,
            Step::Sql(_) => StepKind::Sql,
        }
    }
}

impl StepSpec {
    /// Every body given in this step (exactly one in a valid line).
    pub fn bodies(&self) -> Vec<Step<'_>> {
        [
            self.source.as_ref().map(Step::Source),
            self.validate.as_ref().map(Step::Validate),
            self.harmonise.as_ref().map(Step::Harmonise),
            self.aggregate.as_ref().map(Step::Aggregate),
            self.publish.as_ref().map(Step::Publish),
            self.sql.as_ref().map(Step::Sql),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The step's one body; `None` when it gives none or several (the loader reports that
    /// as V101 before anything is planned).
    pub fn body(&self) -> Option<Step<'_>> {
        match self.bodies().as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// The kinds given in this step (exactly one in a valid line).
    pub fn kinds(&self) -> Vec<StepKind> {
        self.bodies().into_iter().map(Step::kind).collect()
    }

    /// The steps whose rows flow through this step (its inputs less those only looked up,
    /// such as the keys of an `exists_in` rule).
    pub fn main_inputs(&self) -> Vec<&Name> {
        match (&self.validate, &self.aggregate) {
            (Some(v), _) => vec![&v.input],
            (_, Some(a)) => vec![&a.input],
            _ => self.inputs(),
        }
    }

    /// The steps this step reads.
    pub fn inputs(&self) -> Vec<&Name> {
        let mut v = Vec::new();
        for body in self.bodies() {
            match body {
                Step::Source(_) => {}
                Step::Validate(s) => {
                    v.push(&s.input);
                    v.extend(
                        s.rules
                            .iter()
                            .filter_map(|r| r.kind().and_then(|k| k.other_step())),
                    );
                }
                Step::Harmonise(s) => v.push(&s.input),
                Step::Aggregate(s) => {
                    v.push(&s.input);
                    for r in s.rates.values() {
                        v.push(&r.population);
                    }
                }
                Step::Publish(s) => v.push(&s.input),
                Step::Sql(s) => v.extend(s.inputs.iter()),
            }
        }
        v
    }
}

/// Whether a release's figures are final or will be revised.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    utoipa::ToSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseStatus {
    /// Preliminary (ennakkotieto): published early, to be revised by a later release.
    Preliminary,
    /// Final (lopullinen).
    #[default]
    Final,
    /// Withdrawn (peruttu) by an operator: no longer served.
    Withdrawn,
}

impl std::fmt::Display for ReleaseStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReleaseStatus::Preliminary => "preliminary",
            ReleaseStatus::Final => "final",
            ReleaseStatus::Withdrawn => "withdrawn",
        })
    }
}
