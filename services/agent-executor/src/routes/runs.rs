//! `/api/agent/runs/{runId}`: a run's record, and its stream re-attached.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::response::sse::Event;
use futures::StreamExt;
use roundhouse_http::docs::{
    BadRequest, InternalError, NotFound, TooManyRequests, Unauthorized, Unavailable, Unprocessable,
};
use roundhouse_http::{ApiError, ApiQuery, Caller};
use serde_json::json;
use uuid::Uuid;

use super::parse_id;
use crate::dto::{RunView, StreamQuery};
use crate::follow::{Follower, Update};
use crate::startup::AppState;

/// `GET /api/agent/runs/{runId}` (owner or service; another user's is 404).
#[utoipa::path(
    get,
    path = "/api/agent/runs/{id}",
    tag = "runs",
    security(("userJwt" = []), ("serviceToken" = [])),
    params(("id" = Uuid, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run", body = RunView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
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
#[utoipa::path(
    get,
    path = "/api/agent/runs/{id}/stream",
    tag = "runs",
    security(("userJwt" = []), ("serviceToken" = [])),
    params(
        ("id" = Uuid, Path, description = "The run's id"),
        StreamQuery,
        ("Last-Event-ID" = Option<i32>, Header, description = "Resume after this chunk number (wins over `from`)"),
    ),
    responses(
        (status = 200, description = "Server-sent events: `agent_start` {runId}, `agent_chunk` {content} (id: the chunk number), then `agent_done` {runId, usage, creditsUsed} or `agent_error` {runId, message, code}",
         content_type = "text/event-stream", body = String),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn stream_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "run")?;
    let last_event_id = roundhouse_http::last_event_id::<i32>(&headers, "a chunk number")?
        .map(|seq| {
            (0..i32::MAX).contains(&seq).then_some(seq).ok_or_else(|| {
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

/// A follower's updates as a `text/event-stream` response: `agent_start`
/// {runId}, `agent_chunk` {content} with the chunk number as the event id,
/// then `agent_done` {runId, usage, creditsUsed} or `agent_error` {runId,
/// message, code}; with keep-alive comments so that proxies do not cut a
/// quiet stream.
pub(crate) fn sse(follower: Follower) -> Response {
    let run_id = follower.run_id();
    roundhouse_http::event_stream(
        follower
            .into_stream()
            .map(move |update| sse_event(run_id, update)),
    )
}

fn sse_event(run_id: Uuid, update: Update) -> Event {
    let (name, data) = match update {
        Update::Started => ("agent_start", json!({ "runId": run_id })),
        Update::Chunk { seq, content } => {
            return Event::default()
                .event("agent_chunk")
                .id(seq.to_string())
                .data(json!({ "content": &*content }).to_string());
        }
        Update::Done {
            usage,
            credits_used,
        } => (
            "agent_done",
            json!({ "runId": run_id, "usage": usage, "creditsUsed": credits_used }),
        ),
        Update::Failed { code, message } => (
            "agent_error",
            json!({ "runId": run_id, "message": message, "code": code }),
        ),
    };
    Event::default().event(name).data(data.to_string())
}
