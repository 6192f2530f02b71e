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
    /// Parameters given at run time (`--param period=2025-03`). Use them in locations as
    /// `{period}` and in expressions as `$period`.
    #[serde(default)]
    pub params: IndexMap<Name, ParamSpec>,
    /// Code sets and classifications the line uses, by name.
    #[serde(default)]
    pub codesets: IndexMap<Name, CodesetSpec>,
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
    /// The kind of value: `month` (`2025-03`), `quarter` (`2025-Q1`), `year` (`2025`),
    /// `period` (any of those three), `date` (`2025-03-31`), `string` or `integer`.
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
    /// A year, `YYYY`.
    Year,
    /// A month, quarter or year.
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

/// Reads every object that matches `location` with one parser.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// The parser: `csv`, `parquet`, `ndjson`, `xlsx`, `fhir` (SQL-on-FHIR v2 views),
    /// `cda` (HL7 CDA R2 documents) or `external` (a program).
    pub format: Name,
    /// Which objects to read: a path relative to the store (`--store`) or a URL, with
    /// `*`, `**` and `?` wildcards and `{param}` placeholders, e.g.
    /// `inbox/ensihoito/{period}/*.csv`. `--source NAME=URL` overrides it for one run.
    pub location: Sp<String>,
    /// Options of the parser: for `csv` `delimiter`, `quote`, `header`, `encoding`,
    /// `null_values`, `trim`; for `xlsx` `sheet`, `header_row`; for `external` `command`,
    /// `timeout_seconds`.
    #[serde(default)]
    #[schemars(with = "Option<SourceOptions>")]
    pub options: Option<Sp<serde_json::Value>>,
    /// The columns to read, in order, with their types. A column is either just a type
    /// (`halytys_aika: timestamp`) or a map with `type` and more.
    pub columns: IndexMap<Name, ColumnSpec>,
}

/// Options of a source's parser; which keys apply depends on `format`.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code, reason = "only describes the schema of `options`")]
enum SourceOptions {
    Csv(valtava_csv::CsvOptions),
    Xlsx(valtava_xlsx::XlsxOptions),
    External(valtava_external::ExternalOptions),
    Fhir(valtava_fhir::FhirOptions),
    Cda(valtava_cda::CdaOptions),
}

/// The type of a column.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// Text.
    String,
    /// A whole number (64-bit).
    Integer,
    /// A number with a fraction, e.g. `12.5` (64-bit floating point).
    Decimal,
    /// `true`/`false` (also `1`/`0`).
    Boolean,
    /// A date, `YYYY-MM-DD`.
    Date,
    /// A date and time without a zone, `YYYY-MM-DDTHH:MM:SS`, in Finnish local time.
    Timestamp,
}

impl ColumnType {
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Integer => "integer",
            ColumnType::Decimal => "decimal",
            ColumnType::Boolean => "boolean",
            ColumnType::Date => "date",
            ColumnType::Timestamp => "timestamp",
        }
    }
}

/// A declared column of a source.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(with = "ColumnSpecSchema")]
pub struct ColumnSpec {
    pub r#type: Sp<ColumnType>,
    pub required: bool,
    pub personal: bool,
    pub description: Option<Text>,
    pub unit: Option<String>,
}

/// A column: its type alone, or a map.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code, reason = "only describes the schema of a column")]
enum ColumnSpecSchema {
    Type(ColumnType),
    Full(ColumnDef),
}

/// A declared column with its properties.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ColumnDef {
    /// The type: `string`, `integer`, `decimal`, `boolean`, `date` or `timestamp`. A value
    /// that does not convert to it puts its row in quarantine.
    r#type: Sp<ColumnType>,
    /// Whether every row must have a value; a row without one goes to quarantine.
    #[serde(default)]
    required: bool,
    /// Whether the column identifies a person (e.g. `hetu`). Personal columns are
    /// pseudonymised in quarantine and may not be published unaggregated.
    #[serde(default)]
    personal: bool,
    /// What the column holds.
    #[serde(default)]
    description: Option<Text>,
    /// The unit of a measure, e.g. `min`.
    #[serde(default)]
    unit: Option<String>,
}

impl<'de> Deserialize<'de> for ColumnSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ColumnSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a column type (string, integer, decimal, boolean, date, timestamp) or a map with `type`")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ColumnSpec, A::Error> {
                let d = ColumnDef::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ColumnSpec {
                    r#type: d.r#type,
                    required: d.required,
                    personal: d.personal,
                    description: d.description,
                    unit: d.unit,
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ColumnSpec, E> {
                use serde::de::IntoDeserializer;
                let t = ColumnType::deserialize(v.into_deserializer())?;
                Ok(ColumnSpec {
                    r#type: Sp::synthetic(t),
                    required: false,
                    personal: false,
                    description: None,
                    unit: None,
                })
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Checks rows against rules.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateSpec {
    /// The step whose rows are checked.
    pub input: Name,
    /// The rules, each with an `id` and exactly one check.
    pub rules: Vec<RuleSpec>,
    /// The largest share (0–1) of rows that may be rejected; above it the run fails and
    /// nothing is published.
    #[serde(default)]
    pub max_reject_share: Option<Sp<f64>>,
    /// Keep only rows where this boolean expression is true. Other rows are removed on
    /// purpose: counted in the run report as filtered, not quarantined.
    #[serde(default)]
    pub filter: Option<ExprText>,
    /// The column that names who submitted a row (e.g. `hyvinvointialue` or an
    /// organisation code); the quality report breaks violations down by it.
    #[serde(default)]
    pub submitter: Option<Name>,
}

/// What happens to a row that breaks a rule.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The row goes to quarantine with the rule's id and reason.
    #[default]
    Reject,
    /// The row is kept; the violation is counted in the run report.
    Warn,
    /// The run fails.
    Fail,
}

/// The quality dimension a rule checks (Kahn's framework).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Values have the required form and come from the allowed sets.
    Conformance,
    /// Values are present.
    Completeness,
    /// Values are believable against each other and against what is known.
    Plausibility,
}

/// One validation rule; its kinds are in `steps/validate/rules/`, each in one file.
pub use crate::steps::validate::rules::{OneOrMany, RuleSpec};

/// A bound written as a number or text.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum Scalar {
    Integer(i64),
    Number(f64),
    Text(String),
}

impl Scalar {
    pub fn text(&self) -> String {
        match self {
            Scalar::Integer(i) => i.to_string(),
            Scalar::Number(n) => n.to_string(),
            Scalar::Text(t) => t.clone(),
        }
    }
}

/// Makes rows comparable. The parts apply in the order cast, map, derive, filter,
/// pseudonymise, drop, rename. Before `pseudonymise`, `derive` can take what the identity
/// code tells: `hetu_birth_date(hetu)`, `hetu_age(hetu, date)`, `hetu_birth_year(hetu)` and
/// `hetu_sex(hetu)` (`1` male, `2` female; empty for codes issued from 2027).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HarmoniseSpec {
    /// The step whose rows are harmonised.
    pub input: Name,
    /// Map columns through code sets into new columns.
    #[serde(default)]
    pub map: Vec<MapSpec>,
    /// New columns from DataFusion SQL expressions over the row, by name, in order; a later
    /// one may use an earlier one.
    #[serde(default)]
    pub derive: IndexMap<Name, ExprText>,
    /// Personal columns to replace with a keyed pseudonym (HMAC-SHA-256, key given at run
    /// time with `--pseudonym-key-file` or `VALTAVA_PSEUDONYM_KEY`).
    #[serde(default)]
    pub pseudonymise: Vec<Name>,
    /// Columns to leave out of the step's output.
    #[serde(default)]
    pub drop: Vec<Name>,
    /// Columns to convert to another type (applied first); a value that does not convert
    /// puts its row in quarantine with the reason.
    #[serde(default)]
    pub cast: IndexMap<Name, Sp<ColumnType>>,
    /// Columns to rename, `old: new` (applied last).
    #[serde(default)]
    pub rename: IndexMap<Name, Name>,
    /// Keep only rows where this boolean expression is true (applied after `derive`); the
    /// others are counted as filtered.
    #[serde(default)]
    pub filter: Option<ExprText>,
}

/// What to do with a value the code set does not map.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Unmapped {
    /// Put the row in quarantine (default).
    #[default]
    Quarantine,
    /// Use `default` as the target value (e.g. `-1`, unknown).
    Default,
    /// Keep the row with an empty target; the run report counts such rows.
    Keep,
}

/// Maps a column through a code set.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MapSpec {
    /// The column holding codes.
    pub column: Name,
    /// The code set.
    pub codeset: Name,
    /// The code set's column to take (also the name of the new column).
    pub to: Name,
    /// A date or timestamp column: a mapping row applies when this date lies in its
    /// `valid_from`–`valid_to` window (code sets without those columns are always valid).
    #[serde(default)]
    pub on: Option<Name>,
    /// `quarantine` (default) or `default`.
    #[serde(default)]
    pub unmapped: Unmapped,
    /// The value for unmapped codes when `unmapped: default`.
    #[serde(default)]
    pub default: Option<String>,
}

/// Groups rows and computes measures.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateSpec {
    /// The step whose rows are aggregated.
    pub input: Name,
    /// The dimensions: columns to group by, or new columns from expressions
    /// (`- kuukausi: "to_char(halytys_aika, '%Y-%m')"`).
    pub by: Vec<Dimension>,
    /// The measures, by name: DataFusion SQL aggregate expressions such as `count(*)`,
    /// `count(distinct hetu)`, `median(x)` or `round(100.0 * avg(y), 1)`.
    pub measures: IndexMap<Name, ExprText>,
    /// Whether to add total rows over every combination of dimensions: the area dimension
    /// (`hyvinvointialue`, `kunta`) gets the code `SSS` and the others `YHT`.
    #[serde(default)]
    pub totals: bool,
    /// Rates per population, by name (computed after the totals, so the whole country's
    /// rate uses the sum of the areas' populations).
    #[serde(default)]
    pub rates: IndexMap<Name, RateSpec>,
}

/// A dimension of an aggregate.
#[derive(Debug, Clone, JsonSchema, Serialize)]
#[serde(untagged)]
pub enum Dimension {
    /// An input column.
    Column(Name),
    /// A new column from an expression, `name: expression`.
    Expr(IndexMap<Name, ExprText>),
}

/// The YAML forms of a dimension, before places are attached.
#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum DimensionRaw {
    Column(String),
    Expr(IndexMap<String, String>),
}

impl<'de> Deserialize<'de> for Dimension {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // An untagged enum loses the places of its parts; the whole item keeps its own.
        let raw = Sp::<DimensionRaw>::deserialize(deserializer)?;
        let at = raw.at;
        let place = |v: String| Sp { value: v, at };
        Ok(match raw.value {
            DimensionRaw::Column(c) => Dimension::Column(place(c)),
            DimensionRaw::Expr(m) => {
                Dimension::Expr(m.into_iter().map(|(k, v)| (place(k), place(v))).collect())
            }
        })
    }
}

impl Dimension {
    /// The dimension's name and, for a computed one, its expression.
    pub fn parts(&self) -> Vec<(&Name, Option<&ExprText>)> {
        match self {
            Dimension::Column(n) => vec![(n, None)],
            Dimension::Expr(m) => m.iter().map(|(k, v)| (k, Some(v))).collect(),
        }
    }
}

/// A rate per population: `round(per × count / population, decimals)`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    /// The measure counted (e.g. `tehtavat`).
    pub count: Name,
    /// The step holding the population (columns: the area, `vuosi` and the population).
    pub population: Name,
    /// The area dimension, found by the same name in the population step.
    pub area: Name,
    /// The population step's year column. Default `vuosi`.
    #[serde(default)]
    pub year_column: Option<Name>,
    /// The year of each row as an expression over the dimensions and parameters, e.g.
    /// `substr(kuukausi, 1, 4)` or `substr($period, 1, 4)`.
    pub year: ExprText,
    /// The population column. Default `vaesto`.
    #[serde(default)]
    pub value: Option<Name>,
    /// Per how many inhabitants. Default 1000.
    #[serde(default = "thousand")]
    pub per: f64,
    /// Decimals to round to. Default 1.
    #[serde(default = "one_decimal")]
    pub decimals: i64,
}

fn thousand() -> f64 {
    1000.0
}

fn one_decimal() -> i64 {
    1
}

/// Writes a dataset.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishSpec {
    /// The step whose rows are published.
    pub input: Name,
    /// The dataset's name (file name of the release objects).
    pub dataset: Name,
    /// The formats to write: `parquet`, `csv`, `jsonstat`.
    #[serde(default = "default_formats")]
    pub formats: Vec<Sp<PublishFormat>>,
    /// The dimension columns; the others are measures. Default: the `by` of the aggregate
    /// the data comes from.
    #[serde(default)]
    pub dimensions: Option<Vec<Name>>,
    /// Small-cell suppression. On by default with threshold 5 on the first measure.
    #[serde(default)]
    pub disclosure: Option<DisclosureSpec>,
    /// Descriptions and units of the published columns.
    #[serde(default)]
    pub columns: IndexMap<Name, ColumnMeta>,
    /// Labels of dimension codes in JSON-stat, from code sets, by dimension.
    #[serde(default)]
    pub labels: IndexMap<Name, LabelSpec>,
    /// CSV conventions: `international` (`,` and decimal point, the default) or `finnish`
    /// (`;` and decimal comma, for spreadsheets set to Finnish).
    #[serde(default)]
    pub csv: CsvStyle,
}

/// Where the labels of a dimension's codes come from.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelSpec {
    /// The code set whose key column holds the dimension's codes.
    pub codeset: Name,
    /// The column of Finnish labels. Default `name_fi`, else `display`.
    #[serde(default)]
    pub fi: Option<Name>,
    /// The column of Swedish labels. Default `name_sv`.
    #[serde(default)]
    pub sv: Option<Name>,
    /// The column of English labels. Default `name_en`.
    #[serde(default)]
    pub en: Option<Name>,
}

/// CSV conventions of a published file.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum CsvStyle {
    /// `,` between fields, `.` in decimals.
    #[default]
    International,
    /// `;` between fields, `,` in decimals.
    Finnish,
}

fn default_formats() -> Vec<Sp<PublishFormat>> {
    vec![
        Sp::synthetic(PublishFormat::Parquet),
        Sp::synthetic(PublishFormat::Csv),
    ]
}

/// A publish format.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PublishFormat {
    /// Apache Parquet.
    Parquet,
    /// CSV, UTF-8 with a header row.
    Csv,
    /// JSON-stat 2.0, with labels in Finnish (and Swedish and English in `extension`).
    Jsonstat,
}

/// Small-cell suppression of a published table.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DisclosureSpec {
    /// Counts from 1 to `min_count - 1` are suppressed with every measure of their cell.
    #[serde(default = "default_min_count")]
    pub min_count: Sp<u64>,
    /// The count column that decides. Default: the first measure.
    #[serde(default)]
    pub count: Option<Name>,
    /// Further measures that count persons, each deciding like `count` (a cell is suppressed
    /// when any of them is 1 to `min_count - 1`). A `count(DISTINCT …)` of a personal column
    /// is found from the plan and decides without being named here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub persons: Vec<Name>,
}

fn default_min_count() -> Sp<u64> {
    Sp::synthetic(5)
}

/// What a published column means.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnMeta {
    /// Description.
    #[serde(default)]
    pub description: Option<Text>,
    /// Unit, e.g. `%` or `min`.
    #[serde(default)]
    pub unit: Option<String>,
}

/// A DataFusion SQL query over named inputs.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlSpec {
    /// The steps the query reads; each is a table of the same name.
    pub inputs: Vec<Name>,
    /// The query, e.g. `SELECT a.*, v.vaesto FROM a JOIN v USING (hyvinvointialue)`.
    /// Parameters are `$period`.
    pub query: ExprText,
}
