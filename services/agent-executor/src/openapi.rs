//! The executor's routes and its OpenAPI document, built together from the
//! handlers' `#[utoipa::path]` annotations: a route cannot be served without
//! being documented, nor documented without being served. `GET
//! /api/openapi.json` serves the document and `GET /api/docs` renders it.

use std::collections::BTreeSet;

use axum::Router;
use roundhouse_http::docs::{ApiRoutes, Route, add_backend_secret, base_document};
use utoipa::openapi::OpenApi;
use utoipa_axum::routes;

use crate::routes::{agents, credits, execute, health, runs, ws};
use crate::startup::AppState;

/// Every route of the executor, documented. `middleware` wraps the API's
/// routes; `/ws`, `/health*` and `/metrics` are registered after it, so that
/// request spans do not record `/ws`'s token and probes are not counted.
pub fn api_routes(
    middleware: impl FnOnce(Router<AppState>) -> Router<AppState>,
) -> ApiRoutes<AppState> {
    ApiRoutes::new(document())
        .routes(routes!(agents::list_agents, agents::create_agent))
        .routes(routes!(
            agents::get_agent,
            agents::update_agent,
            agents::delete_agent
        ))
        .routes(routes!(credits::get_credits))
        .routes(routes!(credits::grant_credits))
        .routes(routes!(execute::execute))
        .routes(routes!(runs::get_run))
        .routes(routes!(runs::stream_run))
        .with_docs()
        .map_router(middleware)
        .routes(routes!(ws::connect))
        .routes(routes!(health::health))
        .routes(routes!(health::live))
        .routes(routes!(health::metrics))
}

/// The executor's OpenAPI document, as `GET /api/openapi.json` serves it.
pub fn openapi() -> OpenApi {
    api_routes(|router| router).openapi().clone()
}

/// Every (method, path) the executor's router serves.
pub fn served_routes() -> BTreeSet<Route> {
    api_routes(|router| router).served().clone()
}

fn document() -> OpenApi {
    let mut openapi = base_document(
        "Roundhouse agent executor",
        "Runs heavy LLM agents for edge functions: sync, streamed (server-sent \
         events), async (a job) or over a WebSocket, with credits reserved before \
         a run and settled after it; plus agent and credit management.\n\n\
         JSON is camelCase. Every error is `{\"error\": {\"code\", \"message\"}}` \
         (`ErrorBody`). `POST /api/agent/execute` needs the user's token (or the \
         service token) and `X-Backend-Secret`.",
    );
    add_backend_secret(&mut openapi);
    openapi
}
