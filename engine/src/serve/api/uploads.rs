//! Uploads: a submitter puts a file into a line's inbox through the API.
//!
//! The file goes where a source of the line reads it for the period, under a plain name
//! that starts with one of the token's submitters (one county cannot write another's
//! file); the upload is authorised before its body is read, and a receipt is kept in the
//! store. The run follows as an arrival (see `serve::triggers`).

use std::collections::BTreeMap;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::{error, info};

use crate::serve::auth::{Caller, authorize, read_body, refuse};
use crate::serve::error::ApiError;
use crate::serve::{App, AppState, now_text, scrubbed};

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
    let params = vec![("period".to_string(), period.to_string())];
    if let Err(err) = crate::plan::check::bind_params(&e.line, Some(&params)) {
        return Err(ApiError::BadParams(err.to_string()));
    }
    // The object goes where a source of the line reads it.
    let values = BTreeMap::from([("period".to_string(), period.to_string())]);
    let mut target = None;
    for inbox in &e.inboxes {
        let filled = crate::store::fill(&inbox.template, &values);
        let dir = match filled.rfind('/') {
            Some(i) => &filled[..=i],
            None => "",
        };
        let path = format!("{dir}{file}");
        if inbox.pattern.is_match(&path) {
            target = Some(path);
            break;
        }
    }
    let Some(path) = target else {
        let expected: Vec<String> = e
            .inboxes
            .iter()
            .map(|i| crate::store::fill(&i.template, &values))
            .collect();
        return Err(ApiError::NoSource {
            file: file.to_string(),
            line: line.to_string(),
            expected: expected.join(", "),
        });
    };
    Ok((who, path))
}

pub(in crate::serve) async fn put_upload(
    State(app): AppState,
    UrlPath((line, period, file)): UrlPath<(String, String, String)>,
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
    let receipt = json!({
        "receipt": app.new_id(),
        "line": line,
        "period": period,
        "path": path,
        "bytes": bytes,
        "sha256": sha,
        "received": received,
        "submitter": who,
        "token": caller.name,
    });
    app.put_json(
        &crate::store::layout::receipt(receipt["receipt"].as_str().unwrap_or_default()),
        &receipt,
    )
    .await;
    {
        let m = app.metrics.lock().expect("metrics lock");
        m.uploads.inc();
        m.upload_bytes.inc_by(bytes as u64);
    }
    info!(line = %line, period = %period, path = %path, bytes, submitter = %who, "file received");
    Ok((StatusCode::CREATED, scrubbed(receipt)).into_response())
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
