//! OpenLineage run events: START when a run begins, COMPLETE or FAIL when it ends, written
//! to `lineage/<line>/<run-id>/` in the store.
//!
//! Inputs are the sources (with their schema, row counts and the rules' outcomes as data
//! quality facets); outputs are the published datasets (schema and column lineage). Column
//! lineage is traced through the steps' logical plans (`plan::columns`): a renamed, mapped,
//! derived or aggregated column, or one a query computes, comes from the source columns its
//! plan reads.

use crate::run::record::RunInfo;
use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::artefacts::ArtefactError;
use crate::line::load::Line;
use crate::plan::StepPlan;
use crate::plan::columns::Origins;

const PRODUCER: &str = concat!("urn:valtava:engine:", env!("CARGO_PKG_VERSION"));
const SPEC: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";

fn facet(schema: &str, version: &str, body: Value) -> Value {
    let mut v = body;
    v["_producer"] = json!(PRODUCER);
    v["_schemaURL"] = json!(format!(
        "https://openlineage.io/spec/facets/{version}/{schema}.json#/$defs/{schema}"
    ));
    v
}

/// A UUID (version 4 layout) derived from the run id, so events of one run share it.
pub fn run_uuid(run_id: &str) -> String {
    let h = Sha256::digest(run_id.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// For each step and output column, the (source step, column) pairs it comes from: a
/// source's columns are their own origins; any other step's column has the origins of the
/// input columns its plan computes it from ([`crate::plan::columns`]).
pub fn column_lineage(
    line: &Line,
    plans: &BTreeMap<String, StepPlan>,
) -> BTreeMap<String, BTreeMap<String, Origins>> {
    let mut out: BTreeMap<String, BTreeMap<String, Origins>> = BTreeMap::new();
    for name in &line.dag.order {
        let spec = crate::line::load::step(&line.spec, name);
        let plan = &plans[name];
        let columns = if matches!(spec.body(), Some(crate::line::spec::Step::Source(_))) {
            (plan.output.fields().iter())
                .map(|f| {
                    let own = Origins::from([(name.clone(), f.name().clone())]);
                    (f.name().clone(), own)
                })
                .collect()
        } else {
            let computed = crate::plan::columns::origins(&plan.plan, &|t| out.contains_key(t));
            (plan.plan.schema().fields().iter())
                .zip(computed)
                .filter(|(f, _)| plan.output.field_with_name(f.name()).is_ok())
                .map(|(f, from)| {
                    let traced = (from.iter())
                        .filter_map(|(step, column)| out.get(step)?.get(column))
                        .flatten()
                        .cloned()
                        .collect();
                    (f.name().clone(), traced)
                })
                .collect()
        };
        out.insert(name.clone(), columns);
    }
    out
}

fn schema_facet(fields: &[(String, String)]) -> Value {
    facet(
        "SchemaDatasetFacet",
        "1-2-0",
        json!({ "fields": fields.iter().enumerate().map(|(i, (n, t))| json!({ "name": n, "type": t, "ordinal_position": i + 1 })).collect::<Vec<_>>() }),
    )
}

/// The START event.
pub fn start(info: &RunInfo, time: &str) -> Value {
    event("START", info, time, None, None)
}

/// The COMPLETE or FAIL event, with the run's report.
pub fn finish(info: &RunInfo, time: &str, report: &crate::run::RunReport) -> Value {
    let kind = if report.status == crate::run::RunStatus::Succeeded {
        "COMPLETE"
    } else {
        "FAIL"
    };
    event(
        kind,
        info,
        time,
        Some(report),
        report.error.as_ref().map(|e| e.to_string()),
    )
}

fn event(
    kind: &str,
    info: &RunInfo,
    time: &str,
    report: Option<&crate::run::RunReport>,
    error: Option<String>,
) -> Value {
    let (the_line, plans) = (info.line, info.plans);
    let line = &the_line.spec;
    let lineage = column_lineage(the_line, plans);
    let mut run_facets = serde_json::Map::new();
    if let Some(e) = error {
        run_facets.insert(
            "errorMessage".into(),
            facet(
                "ErrorMessageRunFacet",
                "1-0-1",
                json!({ "message": e, "programmingLanguage": "Rust" }),
            ),
        );
    }
    let inputs = input_datasets(info, report);
    let outputs = output_datasets(info, &lineage);
    let description = line
        .description
        .as_ref()
        .map(|d| d.fi().to_string())
        .unwrap_or_else(|| line.title.fi().to_string());
    json!({
        "eventType": kind,
        "eventTime": time,
        "producer": PRODUCER,
        "schemaURL": SPEC,
        "run": { "runId": run_uuid(info.run_id), "facets": run_facets },
        "job": {
            "namespace": "valtava",
            "name": line.line.value,
            "facets": { "documentation": facet("DocumentationJobFacet", "1-1-0", json!({ "description": description })) }
        },
        "inputs": inputs,
        "outputs": outputs,
    })
}

/// The input datasets of an event: the line's sources, with their schema and, at the end
/// of a run, their row counts and the outcomes of the rules that checked them.
fn input_datasets(info: &RunInfo, report: Option<&crate::run::RunReport>) -> Vec<Value> {
    let line = &info.line.spec;
    let mut inputs = Vec::new();
    for name in &info.line.dag.order {
        let Some(src) = &crate::line::load::step(line, name).source else {
            continue;
        };
        let fields: Vec<(String, String)> = src
            .columns
            .iter()
            .map(|(k, v)| (k.value.clone(), v.r#type.value.as_str().to_string()))
            .collect();
        let facets = json!({ "schema": schema_facet(&fields) });
        let mut input_facets = serde_json::Map::new();
        if let Some(r) = report {
            quality_facets(line, name, r, &mut input_facets);
        }
        for location in source_locations(info, name) {
            let mut input =
                json!({ "namespace": info.store_url, "name": location, "facets": facets });
            if !input_facets.is_empty() {
                input["inputFacets"] = Value::Object(input_facets.clone());
            }
            inputs.push(input);
        }
    }
    inputs
}

/// Adds the data quality facets of source step `name` from the run's report: its row
/// count and the rules of the steps that check its rows, as assertions.
fn quality_facets(
    line: &crate::line::spec::LineSpec,
    name: &str,
    r: &crate::run::RunReport,
    input_facets: &mut serde_json::Map<String, Value>,
) {
    if let Some(s) = r.steps.get(name) {
        input_facets.insert(
            "dataQualityMetrics".into(),
            facet("DataQualityMetricsInputDatasetFacet", "1-0-3", json!({ "rowCount": s.rows_in, "fileCount": s.objects.unwrap_or(0), "columnMetrics": {} })),
        );
    }
    // The rules of the steps that check this source's rows, as assertions.
    let mut assertions = Vec::new();
    for (step, s) in &r.steps {
        let spec = crate::line::load::step(line, step);
        let checks_this = spec
            .validate
            .as_ref()
            .is_some_and(|v| v.input.value == *name)
            || step == name;
        if !checks_this {
            continue;
        }
        let ids: Vec<String> = match &spec.validate {
            Some(v) => v.rules.iter().map(|r| r.id.value.clone()).collect(),
            None => s.violations.keys().cloned().collect(),
        };
        for id in ids {
            let broken = s.violations.get(&id).copied().unwrap_or(0);
            assertions.push(json!({ "assertion": id, "success": broken == 0 }));
        }
    }
    if !assertions.is_empty() {
        input_facets.insert(
            "dataQualityAssertions".into(),
            facet(
                "DataQualityAssertionsDatasetFacet",
                "1-1-0",
                json!({ "assertions": assertions }),
            ),
        );
    }
}

/// Where the rows of a step come from: its source's location; for a release source the
/// releases it reads, named as the publishing line's events name their outputs
/// (`releases/<line>/<period>/<run>/<dataset>`), or the dataset's name when they are not
/// known; else the step's name.
fn source_locations(info: &RunInfo, step: &str) -> Vec<String> {
    let src = crate::line::load::step(&info.line.spec, step)
        .source
        .as_ref();
    if let Some(r) = src.and_then(|s| s.release.as_ref())
        && !info.sources.contains_key(step)
    {
        return match info.releases.get(step) {
            Some(names) if !names.is_empty() => names.clone(),
            _ => vec![r.dataset.value.clone()],
        };
    }
    let location = info
        .sources
        .get(step)
        .cloned()
        .or_else(|| src.map(|s| crate::store::fill(&s.location, info.params)))
        .map(|l| crate::store::shown(&l, info.parts))
        .unwrap_or_else(|| step.to_string());
    vec![location]
}

/// The output datasets of an event: the published datasets with their schema and
/// column lineage.
fn output_datasets(
    info: &RunInfo,
    lineage: &BTreeMap<String, BTreeMap<String, Origins>>,
) -> Vec<Value> {
    let line = &info.line.spec;
    let mut outputs = Vec::new();
    for name in &info.line.dag.order {
        let Some(p) = &crate::line::load::step(line, name).publish else {
            continue;
        };
        let plan = &info.plans[name];
        let fields: Vec<(String, String)> = plan
            .output
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().to_string()))
            .collect();
        let mut col_facet = serde_json::Map::new();
        for (col, sources) in lineage.get(name).cloned().unwrap_or_default() {
            let fields: Vec<Value> = (sources.iter())
                .flat_map(|(step, field)| {
                    (source_locations(info, step).into_iter())
                        .map(move |name| json!({ "namespace": info.store_url, "name": name, "field": field }))
                })
                .collect();
            col_facet.insert(col, json!({ "inputFields": fields }));
        }
        let period = info
            .params
            .get("period")
            .cloned()
            .unwrap_or_else(|| "all".into());
        outputs.push(json!({
            "namespace": info.store_url,
            "name": format!("{}/{}", crate::store::layout::release(&line.line.value, &period, info.run_id), p.dataset.value),
            "facets": {
                "schema": schema_facet(&fields),
                "columnLineage": facet("ColumnLineageDatasetFacet", "1-2-0", json!({ "fields": col_facet })),
            }
        }));
    }
    outputs
}

/// Sends an event to an OpenLineage HTTP endpoint (`http://host:port/path`, as the
/// OpenLineage API takes it: `POST /api/v1/lineage`). Plain HTTP/1.1 on loopback or an
/// internal collector; TLS endpoints go through a local proxy.
pub async fn send(url: &str, event: &Value) -> Result<(), ArtefactError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ArtefactError::NotHttp {
            url: url.to_string(),
        })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/api/v1/lineage"),
    };
    let mut event = event.clone();
    crate::redact::scrub_json(&mut event);
    let body = serde_json::to_vec(&event).map_err(ArtefactError::Json)?;
    let connect = tokio::net::TcpStream::connect(authority);
    let mut stream = tokio::time::timeout(std::time::Duration::from_secs(5), connect)
        .await
        .map_err(|_| ArtefactError::ConnectTimeout {
            url: url.to_string(),
        })?
        .map_err(|source| ArtefactError::Connect {
            url: url.to_string(),
            source,
        })?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(ArtefactError::Io)?;
    stream.write_all(&body).await.map_err(ArtefactError::Io)?;
    let mut response = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut response),
    )
    .await
    .map_err(|_| ArtefactError::NoAnswer {
        url: url.to_string(),
    })?
    .map_err(ArtefactError::Io)?;
    let status_line = String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if (200..300).contains(&code) {
        Ok(())
    } else {
        Err(ArtefactError::Refused {
            url: url.to_string(),
            status_line,
        })
    }
}
