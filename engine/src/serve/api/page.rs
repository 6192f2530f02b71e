//! The reporting page (`/`), the catalog page (`/catalog`), their scripts and stylesheet,
//! and the API's description (`/openapi.json`).
//!
//! The pages, their scripts and stylesheet are compiled in from `engine/web/`; the OpenAPI
//! document is generated from the handlers (`serve::openapi`; `engine/web/openapi.json` is
//! its committed copy). Chart.js is served from the folder given with `--assets`, when there
//! is one. The pages run no inline script (their policy allows scripts from the daemon
//! only) and build their content from the API's JSON as text, never as markup.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::serve::AppState;
use crate::serve::error::ApiError;

pub(in crate::serve) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::serve::openapi::document(),
    )
        .into_response()
}

pub(in crate::serve) async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
            ),
        ],
        include_str!("../../../web/index.html"),
    )
        .into_response()
}

/// The catalog page: the catalog and its search (`catalog.js` reads `/api/catalog`). It
/// needs no inline style either, so its policy allows none.
pub(in crate::serve) async fn catalog_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
            ),
        ],
        include_str!("../../../web/catalog.html"),
    )
        .into_response()
}

pub(in crate::serve) async fn catalog_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../../web/catalog.js"),
    )
        .into_response()
}

/// The stylesheet both pages share.
pub(in crate::serve) async fn style_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../../web/style.css"),
    )
        .into_response()
}

pub(in crate::serve) async fn page_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../../web/report.js"),
    )
        .into_response()
}

/// The funnel plot of the reporting page (`report.js` draws one for a dataset with the
/// measures `osuus`, `n` and `odotettu` and an area dimension).
pub(in crate::serve) async fn funnel_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../../web/funnel.js"),
    )
        .into_response()
}

pub(in crate::serve) async fn chart_js(State(app): AppState) -> Result<Response, ApiError> {
    let Some(dir) = &app.assets else {
        return Err(ApiError::NoAssets);
    };
    match tokio::fs::read(dir.join("chart.umd.js")).await {
        Ok(b) => Ok((
            [
                (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                (header::CACHE_CONTROL, "max-age=3600"),
            ],
            b,
        )
            .into_response()),
        Err(_) => Err(ApiError::NoChart),
    }
}
