//! Server-sent event streams as the api and the agent-executor send them.

use std::convert::Infallible;
use std::str::FromStr;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;

use crate::ApiError;

/// The `Last-Event-ID` header as a `T` (`None` when absent); anything the
/// client sent that is not one is a 400 `invalid_last_event_id` saying
/// `what` an id must be ("a chunk number").
pub fn last_event_id<T: FromStr>(headers: &HeaderMap, what: &str) -> Result<Option<T>, ApiError> {
    headers
        .get("last-event-id")
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<T>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_last_event_id",
                        format!("Last-Event-ID: must be {what}"),
                    )
                })
        })
        .transpose()
}

/// `events` as a `text/event-stream` response, with a keep-alive comment
/// after 15 s of silence (so proxies do not cut a quiet stream) and the
/// header that tells buffering proxies (nginx and kin) to pass events
/// through at once.
pub fn event_stream<S>(events: S) -> Response
where
    S: Stream<Item = Event> + Send + 'static,
{
    use futures::StreamExt;
    let mut response = Sse::new(events.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::default())
        .into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
