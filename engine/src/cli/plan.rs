//! `valtava plan`: what a line will do without running it: every step's output columns
//! (types, personal flags) and rules, and with `--store` how much data its sources would
//! read, so a reviewer or an operator sees a line's effect and cost before it runs.
//!
//! This is the command; the planner itself is [`crate::plan`], always named by its full
//! path here.

use std::path::Path;
use std::process::ExitCode;

use super::common::{error, print_diags, read_source};
use super::{DiagFormat, PlanFormat};

/// Prints the steps of `line`, with the data of its sources in `store` if one is given;
/// exit 1 for an invalid line, 2 for bad parameters or store.
pub(super) fn run(
    line: &Path,
    store: Option<String>,
    params: &[(String, String)],
    format: PlanFormat,
) -> ExitCode {
    let checked = match crate::plan::check::check(line) {
        Ok(c) => c,
        Err(d) => {
            print_diags(&d, DiagFormat::Human, &read_source);
            return ExitCode::from(1);
        }
    };
    let mut steps = crate::plan::explain::steps(&checked);
    wanted_periods(&checked, &mut steps, params);
    if let Some(store) = store
        && let Err(code) = estimate(&checked, &mut steps, &store, params)
    {
        return code;
    }
    match format {
        PlanFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&steps).unwrap_or_default()
        ),
        PlanFormat::Text => print!(
            "{}",
            crate::plan::explain::render(&checked.line.spec.line, &steps)
        ),
    }
    ExitCode::SUCCESS
}

/// Fills in how much data each source step would read from `store`, its location filled
/// with the parameters (and read for each month of the period for `{period.months}`).
fn estimate(
    checked: &crate::plan::check::Checked,
    steps: &mut [crate::plan::explain::StepInfo],
    store: &str,
    params: &[(String, String)],
) -> Result<(), ExitCode> {
    let values = match crate::plan::check::bind_params(&checked.line, Some(params)) {
        Ok(v) => v,
        Err(e) => {
            error(&e);
            return Err(ExitCode::from(2));
        }
    };
    let fill: std::collections::BTreeMap<String, String> =
        values.iter().map(|(k, v)| (k.clone(), v.text())).collect();
    let parts = crate::line::params::location_parts(&values);
    let store = match crate::store::open(store) {
        Ok(s) => s,
        Err(e) => {
            error(&e);
            return Err(ExitCode::from(2));
        }
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Err(ExitCode::from(1));
    };
    for s in steps.iter_mut() {
        let source = checked.line.spec.steps[s.name.as_str()].source.as_ref();
        if let Some(r) = source.and_then(|s| s.release.as_ref()) {
            match runtime.block_on(crate::run::release::reading(&store, &fill, r)) {
                Ok(found) => releases_read(s, found),
                Err(e) => {
                    error(&e);
                    return Err(ExitCode::from(2));
                }
            }
        } else if let Some(src) = source {
            let location = crate::store::fill(&src.location, &fill);
            s.data = runtime.block_on(crate::plan::explain::estimate(
                &store,
                &crate::store::shown(&location, &parts),
                &crate::store::expand(&location, &parts),
                &src.format,
            ));
        }
    }
    Ok(())
}

/// The periods each release source wants with the given parameters (none when they do
/// not bind: the plan is shown without them).
fn wanted_periods(
    checked: &crate::plan::check::Checked,
    steps: &mut [crate::plan::explain::StepInfo],
    params: &[(String, String)],
) {
    let values = crate::plan::check::bind_params(&checked.line, Some(params)).unwrap_or_default();
    let run = values.get(crate::line::release::PERIOD_PARAM);
    for s in steps.iter_mut() {
        let source = checked.line.spec.steps[s.name.as_str()].source.as_ref();
        if let Some(r) = source.and_then(|s| s.release.as_ref()) {
            s.release = Some(crate::plan::explain::ReleaseInfo::of(r, run));
        }
    }
}

/// Fills in the releases a release source would read (`found`, from the store): which
/// line publishes its dataset, each period's current release, the wanted periods without.
fn releases_read(
    s: &mut crate::plan::explain::StepInfo,
    found: Option<crate::run::release::Reading>,
) {
    let Some(info) = s.release.as_mut() else {
        return;
    };
    let Some(found) = found else {
        info.missing = info.wanted.clone();
        return;
    };
    info.releases = (found.read.into_iter())
        .map(|(period, run_id)| crate::plan::explain::ReleaseRead {
            period,
            run_id,
            line: found.line.clone(),
        })
        .collect();
    info.missing = found.missing;
    info.line = Some(found.line);
}
