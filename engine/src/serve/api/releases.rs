//! A release's status and revision note, changed by an operator.
//!
//! A run gives its release a status (`preliminary` or `final`) and an optional note; when
//! the figures are later confirmed or corrected, an operator with the `run` role for the
//! line says so here, without a new run. The manifest stays as written; the change is kept
//! beside it with who changed it (`publish::revision::set_label`) and every reader of releases shows it.

use axum::extract::State;

use crate::serve::extract::P;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tracing::{error, info};

use crate::publish::revision::{ReleaseLabel, ReleaseStatus, Set};
use crate::serve::AppState;
use crate::serve::auth::{authorize, read_body, refuse};
use crate::serve::error::{ApiError, Problem};

/// A release's new status and note (`{"status": "final", "note": "…"}`).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::serve) struct LabelRequest {
    /// `preliminary`, `final`, or `withdrawn` (no longer served).
    status: ReleaseStatus,
    /// The revision note (at most 500 characters, one paragraph, no personal data); absent
    /// or empty: none.
    #[serde(default)]
    note: Option<String>,
}

/// A path segment the store layout can hold: letters, digits, `-`, `_`, `.`, not `.`-led.
fn plain(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 128
        && !segment.starts_with('.')
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[utoipa::path(
    put,
    path = "/api/lines/{line}/releases/{period}/{run}/status",
    tag = "lines",
    summary = "Set a release's status and revision note",
    description = "Needs a token with the `run` role for the line. The release keeps its data; its status (`preliminary`, `final`, or `withdrawn`: no longer served) and note change, and every list of releases and the indicator API show them. The change is kept with the token's name and time beside the earlier ones.",
    security(("bearer" = [])),
    params(
        ("line" = String, Path, description = "The line's name"),
        ("period" = String, Path, description = "The release's period"),
        ("run" = String, Path, description = "The run that made the release"),
    ),
    request_body(content = inline(LabelRequest), content_type = "application/json"),
    responses(
        (status = 200, description = "The release as it now is", body = crate::publish::releases::Release),
        (status = 400, response = Problem),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 413, response = Problem),
        (status = 500, response = Problem),
    ),
)]
pub(in crate::serve) async fn put_release_status(
    State(app): AppState,
    P((line, period, run)): P<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let caller = match authorize(&app, &headers, "run", Some(&line)) {
        Ok(caller) => caller,
        Err(refusal) => return Err(refuse(&headers, body, refusal).await),
    };
    /// A status and a note of at most 500 characters.
    const MAX_LABEL_REQUEST: usize = 8 << 10;
    let body = read_body(body, MAX_LABEL_REQUEST).await?;
    if !app.lines.contains_key(&line) {
        return Err(ApiError::NoLine(line));
    }
    if !plain(&period) || !plain(&run) {
        return Err(ApiError::BadName);
    }
    let req: LabelRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadLabel(e.to_string()))?;
    let label =
        ReleaseLabel::new(req.status, req.note).map_err(|e| ApiError::BadLabel(e.to_string()))?;
    let status = label.status;
    let by = Some(caller.name.clone());
    match crate::publish::revision::set_label(&app.store, (&line, &period, &run), label, by).await {
        Ok(Set::Done) => {}
        Ok(Set::NoRelease) => return Err(ApiError::NoRelease(format!("{line}/{period}/{run}"))),
        Err(e) => {
            error!("{e}");
            return Err(ApiError::WriteStatus);
        }
    }
    info!(line = %line, period = %period, run = %run, %status, "release status set");
    let releases = crate::publish::releases::list_cached(&app.store, &line, &app.manifests)
        .await
        .map_err(|e| {
            error!("{e}");
            ApiError::ReadReleases
        })?;
    releases
        .into_iter()
        .find(|r| r.period == period && r.run_id == run)
        .map(|r| axum::Json(r).into_response())
        .ok_or_else(|| ApiError::NoRelease(format!("{line}/{period}/{run}")))
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn only_plain_segments_name_a_release() {
        assert!(plain("2025-03"));
        assert!(plain("20250301T101010123Z-abcdef12-0000abcd"));
        for bad in ["", "..", ".x", "a/b", "a%2Fb", "ä", &"x".repeat(129)] {
            assert!(!plain(bad), "{bad:?}");
        }
    }
}
