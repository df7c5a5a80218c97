//! The API's routes and its OpenAPI document, built together from the
//! handlers' `#[utoipa::path]` annotations: a route cannot be served without
//! being documented, nor documented without being served. `router()` in
//! `startup.rs` adds the middleware; `GET /api/openapi.json` serves the
//! document and `GET /api/docs` renders it.

use std::collections::BTreeSet;

use roundhouse_http::docs::{ApiRoutes, Route, base_document};
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::routes;

use crate::routes::{callbacks, events, health, jobs, queues, rag, schedules, ws};
use crate::startup::AppState;

/// The security scheme of the per-attempt token an HTTP job handler reports
/// progress with (`POST /api/jobs/{id}/progress`).
pub const CALLBACK_TOKEN: &str = "callbackToken";

/// Every route of the API (the `/admin` dashboard aside, which is a router
/// of its own and not part of the document), documented, with no middleware.
pub fn api_routes() -> ApiRoutes<AppState> {
    ApiRoutes::new(document())
        .routes(routes!(jobs::enqueue_alias, jobs::list_jobs))
        .routes(routes!(jobs::enqueue))
        .routes(routes!(jobs::enqueue_batch))
        .routes(routes!(jobs::get_job, jobs::cancel_job))
        .routes(routes!(jobs::get_job_status))
        .routes(routes!(jobs::retry_job))
        .routes(routes!(events::stream_events))
        .routes(routes!(ws::connect))
        .routes(routes!(callbacks::report_progress))
        .routes(routes!(rag::search))
        .routes(routes!(queues::stats))
        .routes(routes!(queues::pause))
        .routes(routes!(queues::resume))
        .routes(routes!(
            schedules::list_schedules,
            schedules::create_schedule
        ))
        .routes(routes!(
            schedules::get_schedule,
            schedules::update_schedule,
            schedules::delete_schedule
        ))
        .routes(routes!(schedules::trigger_schedule))
        .routes(routes!(health::health))
        .routes(routes!(health::live))
        .routes(routes!(health::detailed))
        .routes(routes!(health::metrics))
        .with_docs()
}

/// The API's OpenAPI document, as `GET /api/openapi.json` serves it.
pub fn openapi() -> OpenApi {
    api_routes().openapi().clone()
}

/// Every (method, path) the API's router serves, `/admin/...` excepted.
pub fn served_routes() -> BTreeSet<Route> {
    api_routes().served().clone()
}

fn document() -> OpenApi {
    let mut openapi = base_document(
        "Roundhouse API",
        "Enqueue, inspect, cancel and retry background jobs; follow them live \
         (server-sent events, WebSocket); manage queues and cron schedules.\n\n\
         JSON is camelCase. Every error is `{\"error\": {\"code\", \"message\"}}` \
         (`ErrorBody`). Users authenticate with their Supabase access token, \
         backends with the service token, both as `Authorization: Bearer`.",
    );
    openapi
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            CALLBACK_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The token an HTTP job handler received with its attempt; \
                         valid for that job while the attempt runs.",
                    ))
                    .build(),
            ),
        );
    openapi
}
