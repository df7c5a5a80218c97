//! `/health`, `/health/detailed` and `/metrics`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::extract::AdminCaller;
use crate::startup::AppState;
use roundhouse_http::ApiError;

async fn database_latency(state: &AppState) -> Result<Duration, String> {
    state.db.check(Duration::from_secs(2)).await
}

/// `GET /health`: 200 when PostgreSQL answers and RabbitMQ is connected, else 503.
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

/// `GET /health/detailed`: dependencies with latency, queue depths, uptime.
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
pub async fn metrics(State(state): State<AppState>) -> String {
    state.metrics.render()
}
