//! `/health`, `/health/live`, `/health/detailed` and `/metrics`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::extract::AdminCaller;
use crate::startup::AppState;
use roundhouse_http::ApiError;
use roundhouse_http::docs::{Forbidden, HealthBody, LiveBody, TooManyRequests, Unauthorized};

async fn database_latency(state: &AppState) -> Result<Duration, String> {
    state.db.check(Duration::from_secs(2)).await
}

/// `GET /health`: 200 when PostgreSQL answers and RabbitMQ is connected, else 503.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses(
        (status = 200, description = "PostgreSQL answers and RabbitMQ is connected", body = HealthBody),
        (status = 503, description = "A dependency is down", body = HealthBody),
    )
)]
pub async fn health(State(state): State<AppState>) -> Response {
    let database = database_latency(&state).await;
    let broker = state.broker.is_connected();
    let reason = match (&database, broker) {
        (Err(e), _) => Some(e.clone()),
        (Ok(_), false) => Some("broker disconnected".to_owned()),
        _ => None,
    };
    let status = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = roundhouse_telemetry::health_body("api", reason.is_none(), reason.as_deref());
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

/// The body of `GET /health/detailed` (documents the JSON built below).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DetailedHealth {
    /// `healthy` or `unhealthy`.
    pub status: String,
    pub timestamp: String,
    pub service: String,
    pub version: String,
    pub uptime_seconds: u64,
    pub dependencies: Dependencies,
    pub queues: Vec<QueueDepth>,
}

/// PostgreSQL and RabbitMQ.
#[derive(Serialize, ToSchema)]
pub struct Dependencies {
    pub database: DependencyStatus,
    pub broker: DependencyStatus,
}

/// One dependency.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependencyStatus {
    /// `up` or `down`.
    pub status: String,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
}

/// A queue's depth.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueDepth {
    pub name: String,
    pub waiting: i64,
    pub scheduled: i64,
    pub active: i64,
    pub paused: bool,
    pub oldest_waiting_ms: Option<f64>,
}

/// `GET /health/detailed`: dependencies with latency, queue depths, uptime.
#[utoipa::path(
    get,
    path = "/health/detailed",
    tag = "health",
    security(("serviceToken" = []), ("userJwt" = [])),
    responses(
        (status = 200, description = "Healthy", body = DetailedHealth),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, description = "A dependency is down (or token keys are unavailable)", body = DetailedHealth),
    )
)]
pub async fn detailed(
    State(state): State<AppState>,
    _admin: AdminCaller,
) -> Result<Response, ApiError> {
    let database = database_latency(&state).await;
    let broker = state.broker.is_connected();
    let healthy = database.is_ok() && broker;
    let queues = match &database {
        Ok(_) => state
            .db
            .queue_stats()
            .await
            .map(|stats| {
                stats
                    .into_iter()
                    .map(|q| {
                        serde_json::json!({
                            "name": q.name, "waiting": q.waiting, "scheduled": q.scheduled,
                            "active": q.active, "paused": q.paused,
                            "oldestWaitingMs": q.oldest_waiting_ms,
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let mut body = roundhouse_telemetry::health_body("api", healthy, None);
    body["uptimeSeconds"] = state.started.elapsed().as_secs().into();
    body["dependencies"] = serde_json::json!({
        "database": match &database {
            Ok(latency) => serde_json::json!({"status": "up", "latencyMs": latency.as_secs_f64() * 1000.0}),
            Err(reason) => serde_json::json!({"status": "down", "error": reason}),
        },
        "broker": {"status": if broker { "up" } else { "down" }},
    });
    body["queues"] = queues.into();
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(body)).into_response())
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
pub async fn metrics(State(state): State<AppState>) -> String {
    state.metrics.render()
}
