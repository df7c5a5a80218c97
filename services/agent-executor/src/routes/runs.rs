//! `/api/agent/runs/{runId}`: a run's record, and its stream re-attached.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use roundhouse_http::{ApiError, ApiQuery, Caller};

use super::parse_id;
use crate::dto::{RunView, StreamQuery};
use crate::follow::Follower;
use crate::startup::AppState;

/// `GET /api/agent/runs/{runId}` (owner or service; another user's is 404).
pub async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    let id = parse_id(&id, "run")?;
    let row = state
        .db
        .get_run(id, caller.owner())
        .await?
        .ok_or_else(|| ApiError::not_found("run"))?;
    Ok(Json(row.into()))
}

/// `GET /api/agent/runs/{runId}/stream`: the run's chunks from
/// `Last-Event-ID` + 1 (else `?from=`, else the first), live while it runs,
/// then its final event.
pub async fn stream_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "run")?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i32>().ok())
                .filter(|seq| (0..i32::MAX).contains(seq))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_last_event_id",
                        "Last-Event-ID: must be a chunk number",
                    )
                })
        })
        .transpose()?;
    let from = match (last_event_id, query.from) {
        (Some(last), _) => last + 1,
        (None, Some(from)) if from < 0 => {
            return Err(ApiError::validation("from: must be zero or more"));
        }
        (None, from) => from.unwrap_or(0),
    };
    state
        .db
        .get_run(id, caller.owner())
        .await?
        .ok_or_else(|| ApiError::not_found("run"))?;
    let follower = Follower::new(
        state.db.clone(),
        state.hub.clone(),
        id,
        from,
        state.closing.clone(),
    );
    Ok(sse(follower))
}

/// A follower's events as a `text/event-stream` response, with keep-alive
/// comments so that proxies do not cut a quiet stream.
pub(crate) fn sse(follower: Follower) -> Response {
    let mut response = Sse::new(follower.into_stream())
        .keep_alive(KeepAlive::default())
        .into_response();
    // Tell buffering proxies (nginx and kin) to pass events through at once.
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    response
}
