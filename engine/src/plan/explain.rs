//! `valtava plan`: what a line will do, without running it — every step's output schema
//! (types, personal flags), its rules, and where data is present, how much of it there is.

use std::fmt::Write as _;

use serde::Serialize;

use crate::line::params::ParamValue;
use crate::plan::check::Checked;

/// One column of a step's output.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    pub r#type: String,
    pub personal: bool,
}

/// What is known of a source's data.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct DataEstimate {
    /// The location filled with the parameters; one that is read for each month (quarter)
    /// of the period shows them as a glob's alternatives, `inbox/x/{2025-01,2025-02}/*.csv`.
    pub location: String,
    pub objects: u64,
    pub bytes: u64,
    /// Rows: exact from Parquet footers, else estimated from a sample of the first object.
    pub rows: Option<u64>,
    pub exact: bool,
    /// The locations read, with their objects, when the location stands for several
    /// (`{period.months}`); empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<LocationData>,
}

/// One of the locations a source reads, and how many objects and bytes it holds.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct LocationData {
    pub location: String,
    pub objects: u64,
    pub bytes: u64,
}

/// What a release source reads: the published dataset, its `periods` as written, the
/// periods a run with the given parameters wants and, with a store, the releases it would
/// read (period, run id, the publishing line) and the wanted periods that have none.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct ReleaseInfo {
    pub dataset: String,
    pub periods: String,
    pub wanted: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<ReleaseRead>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

/// One release a release source would read.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReleaseRead {
    pub period: String,
    pub run_id: String,
    pub line: String,
}

impl ReleaseInfo {
    /// Without a store: the periods `r` wants for a run of period `run` (for `all`, or
    /// `sub` of periods not yet known, none until the store says which have releases).
    pub fn of(r: &crate::line::spec::ReleaseSourceSpec, run: Option<&ParamValue>) -> Self {
        let none = std::collections::BTreeSet::new();
        let chosen = crate::line::release::choose(r.periods.value, run, &none);
        ReleaseInfo {
            dataset: r.dataset.value.clone(),
            periods: r.periods.value.describe(),
            wanted: chosen.missing,
            ..Default::default()
        }
    }
}

/// One step of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct StepInfo {
    pub name: String,
    pub kind: String,
    pub inputs: Vec<String>,
    pub columns: Vec<ColumnInfo>,
    pub rules: Vec<String>,
    /// A publish step's disclosure control: the deciding counts (the first count, then the
    /// counts of persons) and the threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disclosure: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<DataEstimate>,
    /// A release source's releases, instead of `data`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseInfo>,
}

fn type_name(t: &arrow::datatypes::DataType) -> String {
    use arrow::datatypes::DataType as D;
    match t {
        D::Utf8 | D::LargeUtf8 | D::Utf8View => "string".into(),
        D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => {
            "integer".into()
        }
        D::Float16 | D::Float32 | D::Float64 => "decimal".into(),
        D::Boolean => "boolean".into(),
        D::Date32 | D::Date64 => "date".into(),
        D::Timestamp(_, Some(zone)) => format!("timestamp ({zone})"),
        D::Timestamp(..) => "timestamp".into(),
        other => other.to_string(),
    }
}

/// The steps of a checked line, in run order.
pub fn steps(c: &Checked) -> Vec<StepInfo> {
    c.line
        .dag
        .order
        .iter()
        .map(|name| {
            let spec = crate::line::load::step(&c.line.spec, name);
            let plan = &c.plans[name];
            let columns = plan
                .output
                .fields()
                .iter()
                .map(|f| ColumnInfo {
                    name: f.name().clone(),
                    r#type: type_name(f.data_type()),
                    personal: plan.personal.contains(f.name()),
                })
                .collect();
            let mut rules: Vec<String> = plan
                .rules
                .iter()
                .map(|r| format!("{} ({:?})", r.id, r.severity).to_lowercase())
                .collect();
            rules.extend(
                plan.dataset_checks
                    .iter()
                    .map(|d| format!("{} (dataset, {:?})", d.id, d.severity).to_lowercase()),
            );
            StepInfo {
                name: name.clone(),
                kind: spec
                    .kinds()
                    .first()
                    .map(|k| k.as_str().to_string())
                    .unwrap_or_default(),
                inputs: spec.inputs().iter().map(|i| i.value.clone()).collect(),
                columns,
                rules,
                disclosure: (plan.disclosure.as_ref())
                    .map(|d| format!("{} < {} suppressed", d.counts.join(", "), d.min_count))
                    .or_else(|| spec.publish.as_ref().and_then(|p| p.disclosure_off_note())),
                data: None,
                release: (spec.source.as_ref())
                    .and_then(|s| s.release.as_ref())
                    .map(|r| ReleaseInfo::of(r, None)),
            }
        })
        .collect()
}

/// Looks at the objects a source would read: `shown` is its location as people read it,
/// `locations` the ones it stands for ([`crate::store::expand`]).
pub async fn estimate(
    store: &crate::store::Store,
    shown: &str,
    locations: &[String],
    format: &str,
) -> Option<DataEstimate> {
    use object_store::ObjectStoreExt;
    let listing = crate::store::list_all(store, locations).await.ok()?;
    let objects = &listing.objects;
    let mut e = DataEstimate {
        location: shown.to_string(),
        objects: objects.len() as u64,
        ..Default::default()
    };
    e.bytes = objects.iter().map(|(_, o)| o.size).sum();
    if locations.len() > 1 {
        e.locations = (listing.locations.iter().enumerate())
            .map(|(i, (text, _))| {
                let mine = objects.iter().filter(|(j, _)| *j == i);
                LocationData {
                    location: text.clone(),
                    objects: mine.clone().count() as u64,
                    bytes: mine.map(|(_, o)| o.size).sum(),
                }
            })
            .collect();
    }
    if objects.is_empty() {
        return Some(e);
    }
    let store_of = |i: usize| listing.locations[i].1.store.inner.clone();
    if format == "parquet" {
        let mut rows = 0u64;
        for (i, o) in objects {
            let object = valtava_plugin::SourceObject {
                store: store_of(*i),
                path: o.location.clone(),
                size: o.size,
                name: o.location.to_string(),
            };
            rows += valtava_parquet::row_count(&object).await.ok()?;
        }
        e.rows = Some(rows);
        e.exact = true;
    } else if matches!(format, "csv" | "ndjson" | "fhir") {
        let (i, first) = &objects[0];
        let sample = store_of(*i)
            .get_range(&first.location, 0..first.size.min(256 * 1024))
            .await
            .ok()?;
        let lines = sample.iter().filter(|&&b| b == b'\n').count().max(1) as f64;
        let per_line = sample.len() as f64 / lines;
        let header = if format == "csv" {
            objects.len() as f64
        } else {
            0.0
        };
        e.rows = Some(((e.bytes as f64 / per_line) - header).max(0.0).round() as u64);
        e.exact = first.size <= 256 * 1024 && objects.len() == 1;
    }
    Some(e)
}

/// The plan for a terminal (stable order and layout).
pub fn render(line: &str, steps: &[StepInfo]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "line {line}: {} steps", steps.len());
    for s in steps {
        let _ = writeln!(
            out,
            "\n{} ({}){}",
            s.name,
            s.kind,
            if s.inputs.is_empty() {
                String::new()
            } else {
                format!(" ← {}", s.inputs.join(", "))
            }
        );
        if let Some(d) = &s.data {
            let rows = match (d.rows, d.exact) {
                (Some(r), true) => format!("{r} rows"),
                (Some(r), false) => format!("≈ {r} rows"),
                (None, _) => "rows unknown".into(),
            };
            let _ = writeln!(
                out,
                "  data: {} object(s), {} bytes, {rows} at {}",
                d.objects, d.bytes, d.location
            );
            for l in &d.locations {
                let _ = writeln!(
                    out,
                    "    {}: {} object(s), {} bytes",
                    l.location, l.objects, l.bytes
                );
            }
        }
        if let Some(r) = &s.release {
            render_release(&mut out, r);
        }
        for c in &s.columns {
            let text = format!(
                "  {:<28} {:<10} {}",
                c.name,
                c.r#type,
                if c.personal { "personal" } else { "" }
            );
            let _ = writeln!(out, "{}", text.trim_end());
        }
        for r in &s.rules {
            let _ = writeln!(out, "  rule {r}");
        }
        if let Some(d) = &s.disclosure {
            let _ = writeln!(out, "  disclosure {d}");
        }
    }
    out
}

/// A release source's lines of the plan: the dataset and periods, then each release it
/// would read, or the periods it wants.
fn render_release(out: &mut String, r: &ReleaseInfo) {
    let from = r
        .line
        .as_ref()
        .map(|l| format!(" of line {l}"))
        .unwrap_or_default();
    let _ = writeln!(out, "  release: {} ({}){from}", r.dataset, r.periods);
    for x in &r.releases {
        let _ = writeln!(
            out,
            "    reads {} run {} of line {}",
            x.period, x.run_id, x.line
        );
    }
    if r.releases.is_empty() && !r.wanted.is_empty() {
        let _ = writeln!(out, "    periods {}", r.wanted.join(", "));
    }
    if !r.missing.is_empty() {
        let _ = writeln!(out, "    no current release of {}", r.missing.join(", "));
    }
}
