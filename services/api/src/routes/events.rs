//! `GET /api/jobs/{id}/events`: a job's timeline as server-sent events.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::response::sse::Event;
use futures::stream;
use roundhouse_http::docs::{
    BadRequest, InternalError, NotFound, TooManyRequests, Unauthorized, Unavailable, Unprocessable,
};
use roundhouse_http::{ApiError, ApiQuery, Caller};
use serde::Deserialize;
use uuid::Uuid;

use crate::live::view::{EventView, is_terminal};
use crate::startup::AppState;

/// `?after=`: where to start for clients that cannot set `Last-Event-ID`
/// (browsers' `EventSource` sets it only when it reconnects by itself).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Start after this event id (0: from the first).
    pub after: Option<i64>,
}

/// The job's events after `Last-Event-ID` (else `?after=`, else all of
/// them), then live: `id:` the event id, `event:` its kind, `data:` the
/// event as JSON. The stream ends after the job's terminal status event.
/// Another user's job is 404.
#[utoipa::path(
    get,
    path = "/api/jobs/{id}/events",
    tag = "jobs",
    security(("userJwt" = []), ("serviceToken" = [])),
    params(
        ("id" = Uuid, Path, description = "The job's id"),
        EventsQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event id (wins over `after`)"),
    ),
    responses(
        (status = 200, description = "Server-sent events: `id:` the event id, `event:` `status`, `progress`, `log` or `chunk`, `data:` `{id, kind, attempt, data, createdAt}`; ends after the job's terminal status",
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
pub async fn stream_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Response, ApiError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::bad_request("invalid_id", "job id must be a UUID"))?;
    let after = match roundhouse_http::last_event_id::<i64>(&headers, "an event id")? {
        Some(last) if last < 0 => {
            return Err(ApiError::bad_request(
                "invalid_last_event_id",
                "Last-Event-ID: must be an event id",
            ));
        }
        Some(last) => last,
        None => match query.after {
            Some(after) if after < 0 => {
                return Err(ApiError::validation("after: must be zero or more"));
            }
            after => after.unwrap_or(0),
        },
    };
    state
        .db
        .get_job(id, caller.owner())
        .await?
        .ok_or_else(|| ApiError::not_found("job"))?;
    let follower = state.feed.follow(id, after);
    let events = stream::unfold(Some((state, follower)), move |progress| async move {
        let (state, mut follower) = progress?;
        let row = match follower.next().await? {
            Ok(row) => row,
            Err(error) => {
                // Ends the stream; the client reconnects with Last-Event-ID.
                tracing::warn!(%error, job_id = %id, "cannot read job events");
                return None;
            }
        };
        let event = Event::default()
            .id(row.id.to_string())
            .event(row.kind.as_str())
            .data(serde_json::to_string(&EventView::from(&*row)).unwrap_or_default());
        let done = is_terminal(&row) && ended(&state, id, row.id).await;
        Some((event, (!done).then_some((state, follower))))
    });
    Ok(roundhouse_http::event_stream(events))
}

/// Whether terminal event `last` is the job's last: a job retried by hand
/// after failing goes on, and so does its stream.
async fn ended(state: &AppState, id: Uuid, last: i64) -> bool {
    match state.db.job_events(id, last, 1).await {
        Ok(later) => later.is_empty(),
        Err(_) => true,
    }
}
