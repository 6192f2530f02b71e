//! The extractors of a request's query string and path parameters.
//!
//! axum's own `Query` and `Path` answer a request they cannot read in plain text (`Failed
//! to deserialize query string…`), which a client reading the API's `{"error": {"code",
//! "message"}}` cannot tell from any other failure. These wrap them and answer as every
//! other error does: [`Q`] and [`P`] with an [`ApiError`] (`bad-query`, `bad-path`), and
//! [`PxPath`] with a [`PxError`] in the PxWeb API's problem shape. Handlers take these,
//! never axum's.
//!
//! [`Q`] is also stricter than `Query` about text: a query string whose percent-encoding is
//! not UTF-8 (`?q=%E4` from a Latin-1 client) is refused, where `Query` would put U+FFFD in
//! its place and search for a character nobody typed.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use tracing::error;

use crate::serve::error::{ApiError, PxError};

/// How much of axum's reason an answer repeats: the reason may quote the request.
const REASON: usize = 120;

/// The query string as `T` (axum's `Query`), or 400 `bad-query`.
#[derive(Debug)]
pub(in crate::serve) struct Q<T>(pub T);

/// The path parameters as `T` (axum's `Path`), or 400 `bad-path`.
#[derive(Debug)]
pub(in crate::serve) struct P<T>(pub T);

/// The path parameters as `T`, or the PxWeb API's 400 `bad-request` problem.
#[derive(Debug)]
pub(in crate::serve) struct PxPath<T>(pub T);

impl<T, S> FromRequestParts<S> for Q<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or_default();
        if !decodes_to_utf8(raw) {
            return Err(ApiError::BadQueryString(
                "it is not UTF-8 once percent-decoded".to_string(),
            ));
        }
        match Query::<T>::try_from_uri(&parts.uri) {
            Ok(Query(v)) => Ok(Q(v)),
            Err(e) => Err(ApiError::BadQueryString(reason(&e.body_text()))),
        }
    }
}

/// What a path parameter that cannot be read answers: the caller's mistake (not UTF-8, not
/// the type the route takes) as its reason, a route whose parameters do not fit its handler
/// (a bug) as `None`, logged.
fn path_failure(e: &axum::extract::rejection::PathRejection) -> Option<String> {
    if e.status().is_client_error() {
        Some(reason(&e.body_text()))
    } else {
        error!(
            "a route's path parameters do not fit its handler: {}",
            e.body_text()
        );
        None
    }
}

impl<T, S> FromRequestParts<S> for P<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(P(v)),
            Err(e) => Err(match path_failure(&e) {
                Some(why) => ApiError::BadPath(why),
                None => ApiError::PathParams,
            }),
        }
    }
}

impl<T, S> FromRequestParts<S> for PxPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = PxError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(PxPath(v)),
            Err(e) => Err(match path_failure(&e) {
                Some(why) => PxError::BadRequest(format!("the path cannot be read: {why}")),
                None => PxError::Body(ApiError::PathParams),
            }),
        }
    }
}

/// axum's reason without its leading phrase (`Failed to deserialize query string: `), at
/// most [`REASON`] characters, control characters replaced.
fn reason(text: &str) -> String {
    let text = text.split_once(": ").map_or(text, |(_, why)| why);
    let mut out: String = text
        .chars()
        .take(REASON)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(REASON).is_some() {
        out.push('…');
    }
    out
}

/// Whether a query string, its `%XX` escapes decoded, is UTF-8 (a `%` without two hex
/// digits after it stays as it is, as `form_urlencoded` leaves it).
fn decodes_to_utf8(query: &str) -> bool {
    fn hex(c: &u8) -> Option<u8> {
        (*c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let b = query.as_bytes();
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1).and_then(hex), b.get(i + 2).and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push(high * 16 + low);
                i += 3;
            }
            (c, _, _) => {
                decoded.push(c);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&decoded).is_ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use axum::http::{Request, StatusCode};
    use axum::response::IntoResponse;

    use super::*;

    /// The parts of a GET of `uri`.
    fn parts(uri: &str) -> Parts {
        Request::get(uri).body(()).unwrap().into_parts().0
    }

    async fn query(uri: &str) -> Result<BTreeMap<String, String>, ApiError> {
        let mut p = parts(uri);
        Q::<BTreeMap<String, String>>::from_request_parts(&mut p, &())
            .await
            .map(|Q(v)| v)
    }

    /// A query string that is not UTF-8, or not what the handler takes, is refused with the
    /// API's code; before, `Query` answered plain text (and took `%FF` for U+FFFD).
    #[tokio::test]
    async fn a_query_string_that_cannot_be_read_is_bad_query() {
        for uri in ["/x?q=%FF", "/x?q=%E4iti", "/x?%C3=1"] {
            let e = query(uri).await.unwrap_err();
            assert_eq!(e.code(), "bad-query", "{uri}");
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{uri}");
        }
        let mut p = parts("/x?limit=paljon");
        let e = Q::<BTreeMap<String, u32>>::from_request_parts(&mut p, &())
            .await
            .unwrap_err();
        assert_eq!(e.code(), "bad-query");
        // axum's reason, without its leading phrase.
        let message = e.to_string();
        assert!(message.contains("invalid digit"), "{message}");
        assert!(!message.contains("Failed to deserialize"), "{message}");
        // UTF-8, `+` and a lone `%` read as before.
        let ok = query("/x?q=%C3%A4iti+ja&r=100%").await.unwrap();
        assert_eq!(ok["q"], "äiti ja");
        assert_eq!(ok["r"], "100%");
        assert!(query("/x").await.unwrap().is_empty());
    }

    #[test]
    fn reasons_are_bounded_and_printable() {
        let long = format!("Invalid URL: a\u{1b}{}", "b".repeat(500));
        let r = reason(&long);
        assert!(r.starts_with("a?b"), "{r}");
        assert_eq!(r.chars().count(), REASON + 1);
        assert!(decodes_to_utf8("q=%e2%82%ac"));
        assert!(!decodes_to_utf8("q=%e2%82"));
    }

    /// A route whose parameters do not fit its handler is a bug: a server error in the
    /// API's shape, not the caller's `bad-path` (a value that is not UTF-8 is that:
    /// `tests/daemon.rs`, which needs the router to read the parameters).
    #[tokio::test]
    async fn a_path_without_parameters_is_a_server_error() {
        let mut p = parts("/a/b");
        let e = P::<String>::from_request_parts(&mut p, &())
            .await
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let r = e.into_response();
        assert_eq!(
            r.headers().get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
        let mut p = parts("/a/b");
        let e = PxPath::<String>::from_request_parts(&mut p, &())
            .await
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
