//! `/api/queues`: statistics and pause/resume (service or admin).

use axum::Json;
use axum::extract::{Path, State};
use roundhouse_core::QueueName;
use serde::Serialize;
use utoipa::ToSchema;

use crate::extract::AdminCaller;
use crate::startup::AppState;
use roundhouse_http::ApiError;
use roundhouse_http::docs::{
    Forbidden, InternalError, TooManyRequests, Unauthorized, Unavailable, Unprocessable,
};

/// One queue's counts.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueView {
    pub name: String,
    pub waiting: i64,
    pub scheduled: i64,
    pub active: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub paused: bool,
    pub concurrency: Option<i32>,
    /// Completions per second over the last minute.
    pub rate: f64,
    /// Mean run time (ms) over the last five minutes.
    pub avg_duration_ms: Option<f64>,
    /// Age (ms) of the oldest waiting job.
    pub oldest_waiting_ms: Option<f64>,
}

/// `{queues: [...]}` (documents the answer of `stats`).
#[derive(Serialize, ToSchema)]
pub struct QueueStats {
    pub queues: Vec<QueueView>,
}

/// A queue after a pause or resume (documents the answer of `pause` and `resume`).
#[derive(Serialize, ToSchema)]
pub struct QueuePaused {
    pub name: String,
    pub paused: bool,
    /// Jobs waiting in it.
    pub waiting: i64,
}

/// `GET /api/queues/stats`.
#[utoipa::path(
    get,
    path = "/api/queues/stats",
    tag = "queues",
    security(("serviceToken" = []), ("userJwt" = [])),
    responses(
        (status = 200, description = "Every queue's counts", body = QueueStats),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 403, response = Forbidden),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn stats(
    State(state): State<AppState>,
    _admin: AdminCaller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let queues: Vec<QueueView> = state
        .db
        .queue_stats()
        .await?
        .into_iter()
        .map(|q| QueueView {
            name: q.name,
            waiting: q.waiting,
            scheduled: q.scheduled,
            active: q.active,
            completed: q.completed,
            failed: q.failed,
            cancelled: q.cancelled,
            paused: q.paused,
            concurrency: q.concurrency,
            rate: q.rate_per_second,
            avg_duration_ms: q.avg_duration_ms,
            oldest_waiting_ms: q.oldest_waiting_ms,
        })
        .collect();
    Ok(Json(serde_json::json!({ "queues": queues })))
}

async fn set_paused(
    state: &AppState,
    name: &str,
    paused: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    let queue = QueueName::parse(name).map_err(|e| ApiError::validation(format!("queue: {e}")))?;
    let waiting = state.db.set_queue_paused(queue.as_str(), paused).await?;
    tracing::info!(%queue, paused, "queue {}", if paused { "paused" } else { "resumed" });
    Ok(Json(serde_json::json!({
        "name": queue,
        "paused": paused,
        "waiting": waiting,
    })))
}

/// `POST /api/queues/{name}/pause`: workers stop starting its jobs (running ones finish).
#[utoipa::path(
    post,
    path = "/api/queues/{name}/pause",
    tag = "queues",
    security(("serviceToken" = []), ("userJwt" = [])),
    params(("name" = String, Path, description = "The queue's name")),
    responses(
        (status = 200, description = "Paused", body = QueuePaused),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn pause(
    State(state): State<AppState>,
    _admin: AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_paused(&state, &name, true).await
}

/// `POST /api/queues/{name}/resume`.
#[utoipa::path(
    post,
    path = "/api/queues/{name}/resume",
    tag = "queues",
    security(("serviceToken" = []), ("userJwt" = [])),
    params(("name" = String, Path, description = "The queue's name")),
    responses(
        (status = 200, description = "Resumed", body = QueuePaused),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    _admin: AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_paused(&state, &name, false).await
}
