//! The services' OpenAPI documents and docs pages.
//!
//! Routes are registered through [`ApiRoutes`], which builds the axum router
//! and the OpenAPI document from the same `#[utoipa::path]` annotations
//! (utoipa-axum's `routes!`) and records every (method, path) it hands to
//! axum, so that tests can check that the document and the router agree.
//! [`ApiRoutes::with_docs`] adds `GET /api/openapi.json` and `GET /api/docs`
//! (Swagger UI, its files compiled in: no CDN, works offline).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Extension, Path};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::PathItem;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, HeaderBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{PartialSchema, ToResponse};
use utoipa_axum::router::UtoipaMethodRouter;

use crate::ApiError;
use crate::error::{ErrorBody, ErrorDetail};

/// The security scheme of users' Supabase access tokens (`Authorization:
/// Bearer <JWT>`). `#[utoipa::path(security(...))]` takes the names as
/// literals: `"userJwt"`, `"serviceToken"`, `"backendSecret"`.
pub const USER_JWT: &str = "userJwt";
/// The security scheme of the service token (`Authorization: Bearer <token>`).
pub const SERVICE_TOKEN: &str = "serviceToken";
/// The security scheme of the agent executor's `X-Backend-Secret` header.
pub const BACKEND_SECRET: &str = "backendSecret";

/// One route a router serves: `GET /api/jobs/{id}` (the path as axum and
/// OpenAPI write it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// Upper case (`GET`).
    pub method: String,
    pub path: String,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// An axum router and its OpenAPI document, built together.
pub struct ApiRoutes<S> {
    router: Router<S>,
    openapi: OpenApi,
    served: BTreeSet<Route>,
}

impl<S: Clone + Send + Sync + 'static> ApiRoutes<S> {
    /// No routes yet; `openapi` holds the document's info and components
    /// (see [`base_document`]).
    pub fn new(openapi: OpenApi) -> Self {
        Self {
            router: Router::new(),
            openapi,
            served: BTreeSet::new(),
        }
    }

    /// Serves and documents the handlers of one path (`routes!(a, b)`).
    pub fn routes(mut self, (schemas, paths, method_router): UtoipaMethodRouter<S>) -> Self {
        for (path, item) in paths.paths {
            for method in methods(&item) {
                self.served.insert(Route {
                    method: method.to_owned(),
                    path: path.clone(),
                });
            }
            self.router = self.router.route(&path, method_router.clone());
            match self.openapi.paths.paths.get_mut(&path) {
                Some(existing) => existing.merge_operations(item),
                None => {
                    self.openapi.paths.paths.insert(path, item);
                }
            }
        }
        self.openapi
            .components
            .get_or_insert_with(Default::default)
            .schemas
            .extend(schemas);
        self
    }

    /// Applies `f` to the router: layers and the fallback apply to the routes
    /// registered so far, as in axum. Never add routes here: they would be
    /// served undocumented, and missing from [`ApiRoutes::served`].
    pub fn map_router(mut self, f: impl FnOnce(Router<S>) -> Router<S>) -> Self {
        self.router = f(self.router);
        self
    }

    /// Adds `GET /api/openapi.json` (this document) and `GET /api/docs` (a
    /// page rendering it, with its assets under `/api/docs/`).
    pub fn with_docs(self) -> Self {
        self.routes(utoipa_axum::routes!(openapi_json))
            .routes(utoipa_axum::routes!(docs_page))
            .routes(utoipa_axum::routes!(docs_asset))
    }

    /// Every (method, path) registered so far.
    pub fn served(&self) -> &BTreeSet<Route> {
        &self.served
    }

    /// The document as it stands.
    pub fn openapi(&self) -> &OpenApi {
        &self.openapi
    }

    /// The router, with the document it serves at `/api/openapi.json`.
    pub fn into_router(self) -> Router<S> {
        let json = self
            .openapi
            .to_json()
            .expect("an OpenAPI document serializes");
        self.router.layer(Extension(Document(Arc::from(json))))
    }
}

/// The methods of a path item's operations, upper case.
fn methods(item: &PathItem) -> impl Iterator<Item = &'static str> {
    [
        ("GET", item.get.is_some()),
        ("PUT", item.put.is_some()),
        ("POST", item.post.is_some()),
        ("DELETE", item.delete.is_some()),
        ("OPTIONS", item.options.is_some()),
        ("HEAD", item.head.is_some()),
        ("PATCH", item.patch.is_some()),
        ("TRACE", item.trace.is_some()),
    ]
    .into_iter()
    .filter_map(|(method, present)| present.then_some(method))
}

/// A service's document before its routes: title, description, version,
/// the error schemas and responses, and the bearer security schemes (users'
/// JWTs and the service token).
pub fn base_document(title: &str, description: &str) -> OpenApi {
    let mut openapi = utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title(title)
                .description(Some(description))
                .version(env!("CARGO_PKG_VERSION"))
                .license(Some(
                    utoipa::openapi::LicenseBuilder::new()
                        .name("Apache-2.0")
                        .identifier(Some("Apache-2.0"))
                        .build(),
                ))
                .build(),
        )
        .build();
    let components = openapi.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert("ErrorBody".to_owned(), ErrorBody::schema());
    components
        .schemas
        .insert("ErrorDetail".to_owned(), ErrorDetail::schema());
    for (name, response) in [
        BadRequest::response(),
        Unauthorized::response(),
        PaymentRequired::response(),
        Forbidden::response(),
        NotFound::response(),
        Conflict::response(),
        PayloadTooLarge::response(),
        UnsupportedMediaType::response(),
        Unprocessable::response(),
        TooManyRequests::response(),
        InternalError::response(),
        BadGateway::response(),
        Unavailable::response(),
    ] {
        components.responses.insert(name.to_owned(), response);
    }
    components.add_security_scheme(
        USER_JWT,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "A user's Supabase access token (HS256 or the project's JWKS keys; \
                     `aud` = `authenticated`).",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        SERVICE_TOKEN,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The service token (`ROUNDHOUSE_SERVICE_TOKEN` or \
                     `SUPABASE_SERVICE_ROLE_KEY`): acts for any user, sees everything.",
                ))
                .build(),
        ),
    );
    openapi
}

/// Adds the `X-Backend-Secret` security scheme (the agent executor's).
pub fn add_backend_secret(openapi: &mut OpenApi) {
    openapi
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            BACKEND_SECRET,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Backend-Secret",
                "`RAILWAY_BACKEND_SECRET`, which edge functions send with the user's token.",
            ))),
        );
}

/// Declares unit types naming the reusable error responses, for
/// `#[utoipa::path(responses((status = 404, response = NotFound)))]`: each is
/// an [`ErrorBody`] with a description (and `Retry-After` where it is sent).
macro_rules! error_responses {
    ($($(#[$doc:meta])* $name:ident = $description:literal $(, $header:literal => $meaning:literal)?;)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
                #[allow(unused_mut)]
                let mut response = ResponseBuilder::new()
                    .description($description)
                    .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))));
                $(
                    response = response.header(
                        $header,
                        HeaderBuilder::new()
                            .schema(Some(String::schema()))
                            .description(Some($meaning))
                            .build(),
                    );
                )?
                (stringify!($name), response.build().into())
            }
        }
    )*};
}

error_responses! {
    /// 400.
    BadRequest = "Malformed request: invalid JSON, query string, path id or header";
    /// 401.
    Unauthorized = "Missing, invalid or expired credentials", "WWW-Authenticate" => "`Bearer`";
    /// 402.
    PaymentRequired = "Not enough credits for the run";
    /// 403.
    Forbidden = "Authenticated, but not allowed to do this";
    /// 404.
    NotFound = "Not found (or not the caller's: its existence is not revealed)";
    /// 409.
    Conflict = "Conflicts with the resource's state";
    /// 413.
    PayloadTooLarge = "The body (or the batch) exceeds the size limit";
    /// 415.
    UnsupportedMediaType = "The body must be sent as `application/json`";
    /// 422.
    Unprocessable = "Well-formed but invalid; the message names the field";
    /// 429.
    TooManyRequests = "Rate limited", "Retry-After" => "Seconds to wait before trying again";
    /// 500.
    InternalError = "Internal error; the message carries a reference to quote (the detail is logged)";
    /// 502.
    BadGateway = "The LLM provider failed the run";
    /// 503.
    Unavailable = "A dependency is unavailable; try again", "Retry-After" => "Seconds to wait before trying again";
}

/// The document's JSON, as served.
#[derive(Clone)]
struct Document(Arc<str>);

/// `GET /api/openapi.json`.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "docs",
    responses(
        (status = 200, description = "This service's OpenAPI 3.1 document",
         content_type = "application/json", body = Object),
    )
)]
async fn openapi_json(Extension(Document(json)): Extension<Document>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json.to_string(),
    )
        .into_response()
}

/// The docs page; its assets are same-origin (`/api/docs/...`).
const DOCS_PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Roundhouse API docs</title>
<link rel="stylesheet" href="/api/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/api/docs/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script>
</body>
</html>
"#;

/// `GET /api/docs`.
#[utoipa::path(
    get,
    path = "/api/docs",
    tag = "docs",
    responses(
        (status = 200, description = "A page rendering `/api/openapi.json` (Swagger UI)",
         content_type = "text/html", body = String),
    )
)]
async fn docs_page() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        DOCS_PAGE,
    )
        .into_response()
}

/// The docs page's files: (name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js"),
    ),
    (
        "swagger-ui.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/swagger-ui/swagger-ui.css"),
    ),
    (
        "init.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/swagger-ui/init.js"),
    ),
];

/// `GET /api/docs/{file}`.
#[utoipa::path(
    get,
    path = "/api/docs/{file}",
    tag = "docs",
    params(("file" = String, Path, description = "`swagger-ui-bundle.js`, `swagger-ui.css` or `init.js`")),
    responses(
        (status = 200, description = "A file of the docs page",
         content((String = "text/javascript"), (String = "text/css"))),
        (status = 404, response = NotFound),
    )
)]
async fn docs_asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                // Versioned by the binary: an hour is safe and spares reloads.
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                ),
            ],
            *bytes,
        )
            .into_response(),
        None => ApiError::not_found("file").into_response(),
    }
}

/// The body of `GET /health` (built by `roundhouse_telemetry::health_body`;
/// this type documents it).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthBody {
    /// `healthy` or `unhealthy`.
    #[schema(example = "healthy")]
    pub status: String,
    /// RFC 3339.
    pub timestamp: String,
    #[schema(example = "api")]
    pub service: String,
    pub version: String,
    /// Why it is unhealthy.
    pub reason: Option<String>,
    /// Seconds since the process started (the agent executor's).
    pub uptime_seconds: Option<u64>,
}

/// The body of `GET /health/live`: `{"status": "ok"}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct LiveBody {
    #[schema(example = "ok")]
    pub status: String,
}
