//! The API's OpenAPI 3.1 document (`/openapi.json`), generated from the handlers with
//! `utoipa`.
//!
//! Each handler carries a `#[utoipa::path(…)]` attribute (method, path, parameters, request
//! body, answers, the `bearer` token where it needs one); the types it answers derive
//! `utoipa::ToSchema` (`Job`, `Line`, `Receipt`, `Error`, …), and error answers name the
//! reusable response `Problem` ([`Problem`], the body `serve::problem` writes). [`ApiDoc`]
//! lists them all; [`document`] is what the daemon serves, generated once.
//!
//! `engine/web/openapi.json` is the committed copy, for readers of the repository and for
//! clients generated from it; a unit test fails when it differs from the generated document.
//! Regenerate it after changing a handler's attribute or an answer's type:
//!
//! ```text
//! VALTAVA_WRITE_OPENAPI=1 cargo test -p valtava --lib serve::openapi
//! ```

use std::sync::LazyLock;

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::serve::error::{Problem, PxProblem};

/// The API's description: every path of the router that the API documents (not the page
/// and its assets), the schemas they answer and the `bearer` security scheme.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Valtava daemon",
        version = "1",
        description = "Production lines of Finnish social- and health-care statistics: runs, releases, quality reports, an indicator API (JSON-stat 2.0 or CSV) PxWeb API 2.0 and a catalog of the lines. Writes need a bearer token."
    ),
    paths(
        crate::serve::metrics::healthz,
        crate::serve::metrics::metrics,
        crate::serve::api::lines::get_lines,
        crate::serve::api::lines::get_line,
        crate::serve::api::runs::post_run,
        crate::serve::api::lines::get_releases,
        crate::serve::api::releases::put_release_status,
        crate::serve::api::uploads::put_upload,
        crate::serve::api::runs::get_runs,
        crate::serve::api::runs::get_run,
        crate::serve::api::runs::get_quality,
        crate::serve::api::lines::get_datasets,
        crate::serve::api::lines::get_datasets_v1,
        crate::serve::api::indicators::get_indicator,
        crate::serve::api::catalog::get_catalog,
        crate::serve::api::catalog::get_lineage,
        crate::serve::api::catalog::quality::get_dataset_quality,
        crate::serve::pxweb::tables::get_config,
        crate::serve::pxweb::tables::get_tables,
        crate::serve::pxweb::tables::get_table,
        crate::serve::pxweb::metadata::get_metadata,
        crate::serve::pxweb::metadata::get_default_selection,
        crate::serve::pxweb::data::get_data,
        crate::serve::pxweb::data::post_data,
        crate::serve::pxweb::codelists::get_codelist,
    ),
    components(
        schemas(
            crate::serve::error::Problem,
            crate::serve::jobs::Job,
            crate::serve::api::lines::LineInfo,
            crate::serve::api::lines::LineText,
            crate::serve::api::lines::LineParam,
            crate::serve::api::lines::DatasetEntry,
            crate::publish::releases::Release,
            crate::serve::api::runs::RunRequest,
            crate::serve::api::runs::RangeJobs,
            crate::serve::api::uploads::Receipt,
            crate::serve::api::catalog::CatalogAnswer,
            crate::serve::api::catalog::CatalogLine,
            crate::serve::api::catalog::CatalogCodeset,
            crate::serve::api::catalog::CatalogDataset,
            crate::serve::api::catalog::CatalogColumn,
            crate::serve::api::catalog::ColumnRole,
            crate::serve::api::catalog::DatasetLinks,
            crate::serve::api::catalog::CatalogMatch,
            crate::serve::api::catalog::MatchField,
            crate::serve::api::catalog::DatasetLineage,
            crate::serve::api::catalog::ColumnLineage,
            crate::serve::api::catalog::SourceColumn,
            crate::serve::api::catalog::quality::QualitySummary,
            crate::serve::api::catalog::quality::SourceQuality,
            crate::serve::api::catalog::quality::StepCounts,
            crate::serve::api::catalog::quality::ReasonCount,
            crate::serve::error::PxProblem,
            crate::serve::pxweb::tables::PxTable,
            crate::serve::pxweb::tables::PxTablesResponse,
            crate::serve::pxweb::tables::PxTableResponse,
            crate::serve::pxweb::tables::PxConfig,
            crate::serve::pxweb::metadata::PxDataset,
            crate::serve::pxweb::metadata::PxSelectionResponse,
            crate::serve::pxweb::selection::PxVariablesSelection,
            crate::serve::pxweb::codelists::PxCodelist,
        ),
        responses(Problem, PxProblem),
    ),
    modifiers(&BearerToken),
    tags(
        (name = "operations", description = "For operators: liveness and metrics"),
        (name = "lines", description = "The lines the daemon runs and their releases"),
        (name = "runs", description = "Runs: queueing one (a `run` token), reading them and their quality reports (a `read` token)"),
        (name = "uploads", description = "Files put into a line's inbox (an `upload` token, for its submitters)"),
        (name = "indicators", description = "The indicator API: published datasets as JSON-stat 2.0 or CSV"),
        (name = "catalog", description = "The catalog of lines, datasets and columns, with a search; a dataset's column lineage and quality summary"),
        (name = "pxweb", description = "PxWeb API 2.0: the published datasets as tables (JSON-stat 2.0, csv, xlsx or PX), for the clients of the Nordic statistics offices; errors are RFC 7807 problems"),
    ),
)]
pub(crate) struct ApiDoc;

/// Adds the `bearer` security scheme the writing (and operational) paths name: a token from
/// the daemon's token file, sent as `Authorization: Bearer <token>`.
struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        const ABOUT: &str = "A token from the daemon's token file, with the role the path \
            needs (`run`, `read`, `upload` or `admin`)";
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(ABOUT))
            .build();
        openapi
            .components
            .get_or_insert_default()
            .add_security_scheme("bearer", SecurityScheme::Http(bearer));
    }
}

/// The document as the daemon serves it and as `engine/web/openapi.json` holds it (without
/// the file's final newline): pretty JSON, generated at the first request.
pub(crate) fn document() -> &'static str {
    static DOCUMENT: LazyLock<String> =
        LazyLock::new(|| ApiDoc::openapi().to_pretty_json().unwrap_or_default());
    &DOCUMENT
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// With `VALTAVA_WRITE_OPENAPI` set, the test writes the generated document to
    /// `engine/web/openapi.json` instead of comparing it.
    #[test]
    fn committed_document_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("web/openapi.json");
        let current = format!("{}\n", super::document());
        if std::env::var_os("VALTAVA_WRITE_OPENAPI").is_some() {
            std::fs::write(&path, &current).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == current,
            "engine/web/openapi.json is stale: run `VALTAVA_WRITE_OPENAPI=1 cargo test -p valtava --lib serve::openapi` to regenerate it"
        );
    }

    #[test]
    fn the_document_names_every_api_route_and_its_schemas() {
        let doc: serde_json::Value = serde_json::from_str(super::document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/healthz",
            "/metrics",
            "/api/lines",
            "/api/lines/{line}",
            "/api/lines/{line}/runs",
            "/api/lines/{line}/releases",
            "/api/lines/{line}/inbox/{period}/{file}",
            "/api/runs",
            "/api/runs/{id}",
            "/api/runs/{id}/quality",
            "/api/datasets",
            "/api/v1/datasets",
            "/api/v1/datasets/{id}",
            "/api/catalog",
            "/api/datasets/{id}/lineage",
            "/api/datasets/{id}/quality",
            "/api/v2/config",
            "/api/v2/tables",
            "/api/v2/tables/{id}",
            "/api/v2/tables/{id}/metadata",
            "/api/v2/tables/{id}/defaultselection",
            "/api/v2/tables/{id}/data",
            "/api/v2/codelists/{id}",
        ] {
            assert!(paths.contains_key(p), "{p}");
        }
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for s in [
            "Error",
            "Job",
            "Line",
            "Receipt",
            "CatalogAnswer",
            "DatasetLineage",
            "QualitySummary",
            "PxProblem",
            "PxDataset",
            "PxTable",
            "PxVariablesSelection",
        ] {
            assert!(schemas.contains_key(s), "{s}");
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(
            doc["components"]["responses"]["Problem"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error"
        );
        assert_eq!(
            doc["components"]["responses"]["PxProblem"]["content"]["application/problem+json"]["schema"]
                ["$ref"],
            "#/components/schemas/PxProblem"
        );
        let data = &doc["paths"]["/api/v2/tables/{id}/data"];
        assert!(data["get"].is_object() && data["post"].is_object());
    }
}
