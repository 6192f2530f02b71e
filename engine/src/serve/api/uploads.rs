//! Uploads: a submitter puts a file into a line's inbox through the API.
//!
//! The file goes where a source of the line reads it for the period, under a plain name
//! that starts with one of the token's submitters (one county cannot write another's
//! file); the upload is authorised before its body is read, and a receipt is kept in the
//! store. The run follows as an arrival (see `serve::triggers`). A line that reads the
//! folder of each month of its period (`{period.months}`) takes uploads by month
//! (`…/inbox/2025-03/…` for a yearly line), each queueing the run of the year.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::{error, info};

use crate::serve::auth::{Caller, authorize, read_body, refuse};
use crate::serve::error::{ApiError, Problem};
use crate::serve::extract::P;
use crate::serve::{App, AppState, now_text, scrubbed};

/// The receipt of an upload, answered and kept in the store (`daemon/receipts/`).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(in crate::serve) struct Receipt {
    /// The receipt's id.
    receipt: String,
    /// The line whose inbox received the file.
    line: String,
    /// The period it was uploaded for.
    period: String,
    /// Where it was stored.
    path: String,
    /// Its size.
    bytes: usize,
    /// The SHA-256 of its bytes, in hex.
    sha256: String,
    /// When it was received.
    #[schema(format = DateTime)]
    received: String,
    /// The submitter it was uploaded for (the prefix of its name).
    submitter: String,
    /// The name of the token that uploaded it.
    token: String,
}

// The request body of an upload in the OpenAPI document; the handler reads the body as it
// comes, so this type is only described, never built.
/// The file's bytes.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub(in crate::serve) struct UploadBody(Vec<u8>);

fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s != "."
        && s != ".."
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Where an upload of `file` for `period` goes and whose it is, or the refusal:
/// the line exists, the names are plain, the file is the caller's (by its submitter
/// prefix) and a source of the line reads it there.
fn upload_target(
    app: &App,
    caller: &Caller,
    line: &str,
    period: &str,
    file: &str,
) -> Result<(String, String), ApiError> {
    let Some(e) = app.lines.get(line) else {
        return Err(ApiError::NoLine(line.to_string()));
    };
    if !safe_name(file) || !safe_name(period) {
        return Err(ApiError::BadName);
    }
    let Some(who) = caller.submitter_of(file) else {
        return Err(ApiError::NotYourFile {
            token: caller.name.clone(),
            submitters: caller
                .submitters
                .iter()
                .flatten()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let Some(path) = inbox_path(e, period, file)? else {
        let expected: Vec<String> = (e.inboxes.iter())
            .map(|i| {
                let run_period = i.run_period(period, e.period);
                let values = i.values(run_period.as_deref().unwrap_or(period), period);
                crate::store::fill(&i.template, &values)
            })
            .collect();
        return Err(ApiError::NoSource {
            file: file.to_string(),
            line: line.to_string(),
            expected: expected.join(", "),
        });
    };
    Ok((who, path))
}

/// Where a source of the line reads `file` for `period` (in an inbox of months,
/// `{period.months}`, `period` is the month, run for the line's period containing it), if
/// one does; a period that no inbox of the line takes is refused.
fn inbox_path(
    e: &crate::serve::LineEntry,
    period: &str,
    file: &str,
) -> Result<Option<String>, ApiError> {
    let mut refused = None;
    let mut taken = false;
    for inbox in &e.inboxes {
        let Some(run_period) = inbox.run_period(period, e.period) else {
            let unit = inbox
                .part
                .map_or("period", |p| crate::line::params::kind_name(p.unit()));
            let why = format!(
                "`{period}` is no {unit} of the line's periods (inbox `{}`)",
                inbox.template
            );
            refused = refused.or(Some(why));
            continue;
        };
        let params = vec![("period".to_string(), run_period.clone())];
        if let Err(err) = crate::plan::check::bind_params(&e.line, Some(&params)) {
            let why = err.to_string();
            refused = refused.or(Some(why));
            continue;
        }
        taken = true;
        let filled = crate::store::fill(&inbox.template, &inbox.values(&run_period, period));
        let dir = match filled.rfind('/') {
            Some(i) => &filled[..=i],
            None => "",
        };
        let path = format!("{dir}{file}");
        if inbox.pattern.is_match(&path) {
            return Ok(Some(path));
        }
    }
    if taken {
        return Ok(None); // the period is the line's: the file's name is what does not fit
    }
    let params = vec![("period".to_string(), period.to_string())];
    match (
        refused,
        crate::plan::check::bind_params(&e.line, Some(&params)),
    ) {
        (Some(why), _) => Err(ApiError::BadParams(why)),
        (None, Err(err)) => Err(ApiError::BadParams(err.to_string())),
        (None, Ok(_)) => Ok(None),
    }
}

#[utoipa::path(
    put,
    path = "/api/lines/{line}/inbox/{period}/{file}",
    tag = "uploads",
    summary = "Upload a file into the line's inbox",
    description = "Needs a token with the `upload` role for the line, whose submitters the file's name starts with (followed by `.`, `_` or `-`). The file goes where a source of the line reads it for the period, and the line runs as for an arrival.",
    security(("bearer" = [])),
    params(
        ("line" = String, Path, description = "The line's name"),
        ("period" = String, Path, description = "The period the file is for (a value of the line's `period` parameter)",
            pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$", max_length = 200),
        ("file" = String, Path, description = "The file's name",
            pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$", max_length = 200),
    ),
    request_body(
        content = inline(UploadBody),
        content_type = "application/octet-stream",
        description = "The file",
    ),
    responses(
        (status = 201, description = "Stored; the receipt", body = Receipt),
        (status = 400, response = Problem),
        (status = 401, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 408, description = "The body paused too long", body = Problem),
        (status = 413, description = "Larger than the daemon's upload limit", body = Problem),
        (status = 422, response = Problem),
        (status = 500, response = Problem),
    ),
)]
pub(in crate::serve) async fn put_upload(
    State(app): AppState,
    P((line, period, file)): P<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let target = authorize(&app, &headers, "upload", Some(&line)).and_then(|caller| {
        upload_target(&app, &caller, &line, &period, &file).map(|t| (caller, t))
    });
    let (caller, (who, path)) = match target {
        Ok(t) => t,
        Err(refusal) => return Err(refuse(&headers, body, refusal).await),
    };
    let body = read_body(body, app.max_upload).await?;
    let sha = hex::encode(Sha256::digest(&body));
    let bytes = body.len();
    if let Err(err) = app
        .store
        .inner
        .put(&ObjPath::from(path.as_str()), PutPayload::from(body))
        .await
    {
        error!("upload to {path}: {err}");
        return Err(ApiError::StoreUpload);
    }
    let received = now_text();
    let receipt = Receipt {
        receipt: app.new_id(),
        line: line.clone(),
        period: period.clone(),
        path: path.clone(),
        bytes,
        sha256: sha,
        received,
        submitter: who.clone(),
        token: caller.name,
    };
    app.put_json(&crate::store::layout::receipt(&receipt.receipt), &receipt)
        .await;
    {
        let m = app.metrics.lock().expect("metrics lock");
        m.uploads.inc();
        m.upload_bytes.inc_by(bytes as u64);
    }
    info!(line = %line, period = %period, path = %path, bytes, submitter = %who, "file received");
    Ok((StatusCode::CREATED, scrubbed(json!(receipt))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_inbox_are_refused() {
        for bad in [
            "..", ".", ".hidden", "a/b", "a\\b", "", "a b", "%2e%2e", "ä.csv",
        ] {
            assert!(!safe_name(bad), "{bad}");
        }
        for good in ["tehtavat.csv", "2025-03", "Patient.000.ndjson"] {
            assert!(safe_name(good), "{good}");
        }
    }
}
