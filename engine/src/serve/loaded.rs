//! The lines the daemon serves, loaded and planned once at start.
//!
//! Every answer about a line (its datasets' dimensions, areas and measures, its inboxes,
//! the datasets it reads from other lines' releases, its catalog entry) comes from the line
//! planned here once with example parameter values, never from a line file read per
//! request. A name two files give, and lines reading each other's releases in a cycle, are
//! not served.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use tracing::error;

use crate::line::load::Line;
use crate::line::spec::ParamKind;
use crate::serve::error::ServeError;
use crate::serve::triggers::{Inbox, inbox_of};

pub(in crate::serve) struct LineEntry {
    pub(in crate::serve) path: PathBuf,
    pub(in crate::serve) line: Line,
    pub(in crate::serve) schedule: Option<crate::line::cron::Schedule>,
    pub(in crate::serve) period: Option<ParamKind>,
    pub(in crate::serve) inboxes: Vec<Inbox>,
    pub(in crate::serve) codesets: BTreeMap<String, Arc<datafusion::datasource::MemTable>>,
    /// Each dataset the line publishes, as its planned publish step shapes it.
    pub(in crate::serve) datasets: BTreeMap<String, TableShape>,
    /// The datasets its release sources read (of other lines, or its own earlier periods).
    pub(in crate::serve) reads: BTreeSet<String>,
    /// The line's entry in the catalog (`/api/catalog`): its code sets, datasets, columns
    /// and their lineage, as `valtava catalog` describes them.
    pub(in crate::serve) catalog: crate::artefacts::catalog::LineEntry,
}

/// A published table's shape, from its planned publish step: the one place the API learns
/// a dataset's dimensions and area from.
#[derive(Debug, Clone, Default)]
pub(in crate::serve) struct TableShape {
    /// The dimensions, in their order in the table.
    pub(in crate::serve) dimensions: Vec<String>,
    /// The dimension that is an area, if the line declares one.
    pub(in crate::serve) area: Option<String>,
    /// The measures: the numeric columns that are not dimensions, in their order.
    pub(in crate::serve) measures: Vec<String>,
}

/// A line planned with example parameter values, or why it cannot be.
fn planned(line: Line) -> Result<crate::plan::check::Checked, Vec<crate::diag::Diagnostic>> {
    match crate::plan::check::bind_params(&line, None) {
        Ok(params) => {
            let values = crate::line::params::expression_values(&params);
            crate::plan::check::plan_all(line, vec![], &values, b"serve")
        }
        Err(e) => Err(vec![crate::diag::Diagnostic::error(
            crate::diag::Code::V302,
            &line.file,
            line.spec.line.at,
            e.to_string(),
        )]),
    }
}

/// The shape of every table a checked line publishes, by dataset.
pub(super) fn published_tables(
    checked: &crate::plan::check::Checked,
) -> BTreeMap<String, TableShape> {
    let mut out = BTreeMap::new();
    for (name, step) in &checked.line.spec.steps {
        let (Some(p), Some(plan)) = (&step.publish, checked.plans.get(name.value.as_str())) else {
            continue;
        };
        out.insert(
            p.dataset.value.clone(),
            TableShape {
                dimensions: plan.dimensions.clone(),
                area: plan.area.clone(),
                measures: plan
                    .plan
                    .schema()
                    .fields()
                    .iter()
                    .filter(|f| f.data_type().is_numeric() && !plan.dimensions.contains(f.name()))
                    // Unpublished deciding counts (`__d_…`) are not in any release.
                    .filter(|f| !f.name().starts_with("__"))
                    .map(|f| f.name().clone())
                    .collect(),
            },
        );
    }
    out
}

pub(super) fn load_lines(dir: &FsPath) -> Result<BTreeMap<String, LineEntry>, ServeError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| ServeError::LinesFolder {
            dir: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut loaded: Vec<LineEntry> = Vec::new();
    for path in files {
        let line = match crate::line::load::load(&path) {
            Ok((line, _)) => line,
            Err(d) => {
                let first = d.first().map(|d| d.message.clone()).unwrap_or_default();
                error!(file = %path.display(), "line not served: {first}");
                continue;
            }
        };
        // Planned once, with example parameter values: what each published table's
        // dimensions, area and measures are comes from its planned publish step.
        let checked = match planned(line) {
            Ok(c) => c,
            Err(d) => {
                let first = d.first().map(|d| d.message.clone()).unwrap_or_default();
                error!(file = %path.display(), "line not served: {first}");
                continue;
            }
        };
        loaded.push(line_entry(path, checked));
    }
    // A name two files give is served by neither: the daemon must not pick one unseen.
    // Nor is a line in a cycle of lines reading each other's releases: each publication
    // would start the other again, without end.
    let lines: Vec<&Line> = loaded.iter().map(|e| &e.line).collect();
    let mut ambiguous = BTreeSet::new();
    let across = crate::plan::across::release_diagnostics(&lines, false);
    let refused = crate::plan::check::shared_names(&lines).into_iter().chain(
        across
            .into_iter()
            .filter(|d| d.code == crate::diag::Code::V112),
    );
    for d in refused {
        error!(file = %d.file, "line not served: {}", d.message);
        if let Some(e) = loaded.iter().find(|e| e.line.file == d.file) {
            ambiguous.insert(e.line.spec.line.value.clone());
        }
    }
    Ok(loaded
        .into_iter()
        .filter(|e| !ambiguous.contains(&e.line.spec.line.value))
        .map(|e| (e.line.spec.line.value.clone(), e))
        .collect())
}

/// What the daemon keeps of a line it serves, from the line planned once at load.
fn line_entry(path: PathBuf, checked: crate::plan::check::Checked) -> LineEntry {
    let datasets = published_tables(&checked);
    // The catalog entry now, while the plans and the loaded code sets are at hand: a
    // request for the catalog reads no line file or code set.
    let catalog = crate::artefacts::catalog::line_entry(&checked);
    let codesets = (checked.codesets.into_iter())
        .map(|(k, v)| (k, v.table))
        .collect();
    let line = checked.line;
    let schedule = line
        .spec
        .schedule
        .as_ref()
        .and_then(|s| s.value.parse().ok());
    let period = line
        .spec
        .params
        .iter()
        .find(|(k, _)| k.value == "period")
        .map(|(_, p)| p.kind.value);
    let inboxes = line
        .spec
        .steps
        .values()
        .filter_map(|s| s.source.as_ref())
        .filter(|s| s.release.is_none())
        .filter_map(|s| inbox_of(&s.location.value))
        .collect();
    let reads = (line.spec.steps.values())
        .filter_map(|s| s.source.as_ref()?.release.as_ref())
        .map(|r| r.dataset.value.clone())
        .collect();
    LineEntry {
        path,
        line,
        schedule,
        period,
        inboxes,
        codesets,
        datasets,
        reads,
        catalog,
    }
}
