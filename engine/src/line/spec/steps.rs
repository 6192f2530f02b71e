//! The bodies of a line's steps, one type per kind (source, validate, harmonise,
//! aggregate, publish, sql) and the parts they are made of. What each kind does with its
//! body is under `steps/<kind>/`; a validate step's rule kinds keep their wire types there
//! too, one file each (`steps/validate/rules/`).

use super::*;

/// Reads every object that matches `location` with one parser, or (`release`) the current
/// published releases of a dataset. A source gives either `format` and `location` or
/// `release`, never both (V110).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// The parser: `csv`, `parquet`, `ndjson`, `xlsx`, `fhir` (SQL-on-FHIR v2 views),
    /// `cda` (HL7 CDA R2 documents) or `external` (a program).
    #[serde(default = "not_given", skip_serializing_if = "is_blank")]
    pub format: Name,
    /// Which objects to read: a path relative to the store (`--store`) or a URL, with
    /// `*`, `**` and `?` wildcards and `{param}` placeholders, e.g.
    /// `inbox/ensihoito/{period}/*.csv`. `{period.months}` (`{period.quarters}`) reads the
    /// location of each month (quarter) of the run's period, in order, together: a yearly
    /// line reads `inbox/ensihoito/{period.months}/*.csv` from the twelve monthly folders
    /// (a month without objects is no error). `--source NAME=URL` overrides it for one run.
    #[serde(default = "not_given", skip_serializing_if = "is_blank")]
    pub location: Sp<String>,
    /// Read the current published releases of a dataset (of another line, or this line's
    /// own earlier periods) exactly as the public reads them: suppressed cells empty, with
    /// their `status`. The rows get the period of their release as column `jakso` (declare
    /// it among `columns` to place it; otherwise it comes first). Instead of `format` and
    /// `location`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseSourceSpec>,
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

/// A `format` or `location` the line does not give (a release source has neither).
fn not_given() -> Name {
    Sp::synthetic(String::new())
}

fn is_blank(s: &Sp<String>) -> bool {
    s.value.is_empty()
}

/// Which published releases a source reads.
///
/// ```yaml
/// release: { dataset: hoitoonpaasy_kuukausi, periods: current }
/// ```
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSourceSpec {
    /// The published dataset; the line that publishes it is found by it.
    pub dataset: Name,
    /// Which periods' current releases, relative to the run's `period` (default `current`).
    #[serde(default = "current_periods")]
    pub periods: Sp<ReleasePeriods>,
}

fn current_periods() -> Sp<ReleasePeriods> {
    Sp::synthetic(ReleasePeriods::Named(PeriodChoice::Current))
}

/// The periods a release source reads.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(untagged)]
pub enum ReleasePeriods {
    /// `current`, `previous`, `sub` or `all`.
    Named(PeriodChoice),
    /// `{ last: n }`: the n periods before the run's, those that have a release.
    Last {
        /// How many periods back.
        last: u32,
    },
}

/// A named choice of periods.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PeriodChoice {
    /// The run's period; without a release the run fails (R004).
    Current,
    /// The period before the run's, of the same kind; without a release R004.
    Previous,
    /// The periods inside the run's period (the months of a quarter or a year, or its
    /// quarters or half-years: the finest kind the dataset has releases of).
    Sub,
    /// Every period that has a current release.
    All,
}

impl ReleasePeriods {
    /// As written in a line file.
    pub fn describe(self) -> String {
        match self {
            ReleasePeriods::Named(PeriodChoice::Current) => "current".into(),
            ReleasePeriods::Named(PeriodChoice::Previous) => "previous".into(),
            ReleasePeriods::Named(PeriodChoice::Sub) => "sub".into(),
            ReleasePeriods::Named(PeriodChoice::All) => "all".into(),
            ReleasePeriods::Last { last } => format!("last: {last}"),
        }
    }
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
    /// A date and time, `YYYY-MM-DDTHH:MM:SS` (also with a space, fractions of a second, or
    /// the date alone). Read as the clock shows it, without a zone, unless the column is
    /// declared `local: true`: then it is a wall-clock time of the line's `timezone`, read as
    /// an instant.
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
    /// A timestamp column of wall-clock times in the line's `timezone`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub local: bool,
    /// What a local time that the clocks showed twice becomes (default: quarantine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ambiguous: Option<Sp<Ambiguous>>,
    pub description: Option<Text>,
    pub unit: Option<String>,
    /// How the column's text is written, when not as a plain cast reads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Sp<ColumnFormat>>,
}

/// How a column's values are written, for texts a plain cast does not read. A format that
/// does not fit the column's type is an error when the line loads (V209).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ColumnFormat {
    /// For `decimal` and `integer`: Finnish number text as spreadsheets and Finnish systems
    /// write it, `1 234 567,89`, `-12,5`, `−12,5`: a decimal comma, digits grouped by three
    /// with a space, a no-break space or a narrow no-break space. A plain `1234567.89` (a
    /// numeric spreadsheet cell) reads too. Groups must be of three (`1 23 4,5` does not
    /// read); an integer reads only without a fraction (or one of zeros); a blank text is
    /// empty.
    Finnish,
    /// For `date` and `timestamp`: HL7 V3 `TS`, `YYYYMMDD[HH[MM[SS[.S{1,4}]]]][+|-ZZZZ]`,
    /// e.g. `20250314` or `20250314103005+0200`. A date takes the calendar date as written;
    /// a timestamp needs at least the minutes and, with an offset, is converted to UTC
    /// (without one it is read as written). Not for `local` columns.
    Hl7,
}

impl ColumnFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnFormat::Finnish => "finnish",
            ColumnFormat::Hl7 => "hl7",
        }
    }

    /// Whether the format can be declared on a column of type `t`.
    pub fn fits(self, t: ColumnType) -> bool {
        match self {
            ColumnFormat::Finnish => matches!(t, ColumnType::Decimal | ColumnType::Integer),
            ColumnFormat::Hl7 => matches!(t, ColumnType::Date | ColumnType::Timestamp),
        }
    }
}

/// What to do with a local time that names two instants: the hour the clocks show twice
/// when summer time ends (in Finland 03:00–03:59 on the last Sunday of October, first in
/// summer time, UTC+3, then in winter time, UTC+2). A time the clocks skip when summer
/// time starts (03:00–03:59 on the last Sunday of March) names no instant at all and is
/// always quarantined.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Ambiguous {
    /// Put the row in quarantine (the default), with the rule `local-time-<column>` and the
    /// reason `ambiguous-local-time`: the text alone cannot tell which of the two instants
    /// was meant, and a wrong guess would move a duration by an hour without a trace.
    #[default]
    Quarantine,
    /// Take the earlier of the two instants (summer time). For submitters whose systems
    /// record the repeated hour in summer time, or lines where an hour's error in the rows
    /// of that one hour a year is acceptable; an order rule still catches an arrival that
    /// this makes earlier than its alarm.
    Earliest,
}

impl Ambiguous {
    pub fn as_str(self) -> &'static str {
        match self {
            Ambiguous::Quarantine => "quarantine",
            Ambiguous::Earliest => "earliest",
        }
    }
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
    /// Whether a `timestamp` column holds wall-clock times of the line's `timezone`
    /// (Finnish time by default), as submissions usually do. Each is read as the instant it
    /// names, so durations across a change of the clocks are real ones (an alarm at
    /// 02:55 and an arrival at 04:05 on the night summer time starts are 10 minutes apart)
    /// and a month, day or hour taken of it (`to_char`, `CAST(… AS DATE)`, `in_period`) is
    /// the zone's. A text with its own UTC offset (`2025-03-30T02:55+02:00`, `…Z`) is taken
    /// as written. A time the clocks skipped puts the row in quarantine (rule
    /// `local-time-<column>`, reason `nonexistent-local-time`); one they showed twice is
    /// handled as `ambiguous` says.
    #[serde(default)]
    local: bool,
    /// For a `local` column: `quarantine` (the default) or `earliest`, what a time the
    /// clocks showed twice becomes.
    #[serde(default)]
    ambiguous: Option<Sp<Ambiguous>>,
    /// What the column holds.
    #[serde(default)]
    description: Option<Text>,
    /// The unit of a measure, e.g. `min`.
    #[serde(default)]
    unit: Option<String>,
    /// How the text is written when a plain cast does not read it: `finnish` numbers
    /// (`1 234 567,89`) for `decimal` and `integer`, `hl7` times (`20250314103005+0200`)
    /// for `date` and `timestamp`. A value that does not read in the format puts its row
    /// in quarantine (rule `type-<column>`).
    #[serde(default)]
    format: Option<Sp<ColumnFormat>>,
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
                    local: d.local,
                    ambiguous: d.ambiguous,
                    description: d.description,
                    unit: d.unit,
                    format: d.format,
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ColumnSpec, E> {
                use serde::de::IntoDeserializer;
                let t = ColumnType::deserialize(v.into_deserializer())?;
                Ok(ColumnSpec {
                    r#type: Sp::synthetic(t),
                    required: false,
                    personal: false,
                    local: false,
                    ambiguous: None,
                    description: None,
                    unit: None,
                    format: None,
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
pub use crate::steps::validate::rules::RuleSpec;

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
    /// The column holding each code's code system (a FHIR `Coding.system`): a mapping row
    /// applies only when it equals the code set's `system` column, so a code of another
    /// system (or of none) is unmapped.
    #[serde(default)]
    pub system: Option<Name>,
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
    /// Whether to add total rows over every combination of dimensions: the total of the
    /// dimension declared `area` is `SSS` (the whole country) and the others' `YHT`.
    #[serde(default)]
    pub totals: bool,
    /// The dimension that is an area (wellbeing services county, municipality…): its total
    /// is `SSS`, the whole country; other dimensions' totals are `YHT`. It also gets the
    /// `geo` role in JSON-stat and is the API's area filter.
    #[serde(default)]
    pub area: Option<Name>,
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
    /// Whose population the whole country's rate divides by: `all` areas (the default:
    /// events from every area are in the data, an area without any has none), or the areas
    /// `reported`, those the data has rows for (amounts each area submits: one that sent
    /// nothing, or whose submission was returned, is in neither the total nor its
    /// population).
    #[serde(default)]
    pub country: CountryPopulation,
}

/// The population of the whole country's rate.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum CountryPopulation {
    /// Every area's.
    #[default]
    All,
    /// The areas the data has rows for.
    Reported,
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
    /// The area dimension (`geo` in JSON-stat, the API's area filter, the page's map and
    /// funnel plot), where the input does not say: a `sql` step's rows have none of their
    /// own. It must be one of the published dimensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<Name>,
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
    /// Disclosure control switched off, with the reason why no person can be recognised
    /// (e.g. `Talousaineistossa ei ole henkilöitä.`). Nothing is suppressed; the reason is
    /// recorded in the release's manifest and shown in the catalog. Not with `min_count`,
    /// `count` or `persons`, and refused (V210) for a dataset that derives from personal
    /// columns or counts persons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off: Option<Sp<Text>>,
    /// Measures decided by a count of their own, `measure: count` (e.g. a question's share
    /// by the number who answered it): the measure alone is emptied, with the status
    /// `suppressed` in its column `status_<measure>`, where its count is 1 to
    /// `min_count - 1`, even where the cell is published. Not with `off`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub measures: IndexMap<Name, Name>,
    /// Deciding counts of `measures` that are not published: they decide, then are dropped
    /// from every published format, the catalog and the served APIs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpublished: Vec<Name>,
}

impl DisclosureSpec {
    /// Whether `min_count` is written in the line file (not the default).
    pub fn min_count_given(&self) -> bool {
        self.min_count.at.line > 0
    }
}

impl PublishSpec {
    /// The reason disclosure control is off, when the line switches it off.
    pub fn disclosure_off(&self) -> Option<&Text> {
        self.disclosure
            .as_ref()
            .and_then(|d| d.off.as_ref())
            .map(|t| &t.value)
    }

    /// How the engine describes a dataset whose disclosure control is off: `off: <reason>`
    /// (in Finnish), the same in the catalog, `show` and plan explanations.
    pub fn disclosure_off_note(&self) -> Option<String> {
        self.disclosure_off().map(|t| format!("off: {}", t.fi()))
    }
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
