//! `/api/queues`: statistics and pause/resume (service or admin).

use axum::Json;
use axum::extract::{Path, State};
use roundhouse_core::QueueName;
use serde::Serialize;

use crate::extract::AdminCaller;
use crate::startup::AppState;
use roundhouse_http::ApiError;

#[derive(Serialize)]
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

/// `GET /api/queues/stats`.
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
pub async fn pause(
    State(state): State<AppState>,
    _admin: AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_paused(&state, &name, true).await
}

/// `POST /api/queues/{name}/resume`.
pub async fn resume(
    State(state): State<AppState>,
    _admin: AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_paused(&state, &name, false).await
}
