//! `/health`, `/health/live` and `/metrics`: what `roundhouse_telemetry`'s
//! `ops_router` serves for the worker and the scheduler, here as documented
//! routes of the executor's own router.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use roundhouse_http::docs::{HealthBody, LiveBody};

use crate::startup::AppState;

/// `GET /health`: 200 when PostgreSQL answers, else 503.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses(
        (status = 200, description = "PostgreSQL answers", body = HealthBody),
        (status = 503, description = "PostgreSQL is down", body = HealthBody),
    )
)]
pub async fn health(State(state): State<AppState>) -> Response {
    let result = state.db.check(Duration::from_secs(2)).await;
    let status = if result.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = roundhouse_telemetry::health_body(
        "agent-executor",
        result.is_ok(),
        result.err().as_deref(),
    );
    body["uptimeSeconds"] = state.started.elapsed().as_secs().into();
    (status, Json(body)).into_response()
}

/// `GET /health/live`: 200 while the process answers HTTP at all (for
/// liveness probes).
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    responses((status = 200, description = "The process answers", body = LiveBody))
)]
pub async fn live() -> impl IntoResponse {
    roundhouse_telemetry::live().await
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String),
    )
)]
pub async fn metrics() -> String {
    roundhouse_telemetry::metrics_handle().render()
}
