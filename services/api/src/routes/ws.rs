//! `GET /ws?token=`: the job-events WebSocket (the session is in
//! `crate::socket`).
//!
//! The token (a user's access token or the service token) travels in the
//! query string because browsers cannot set headers on a WebSocket; it is
//! checked before the upgrade, with the per-address limit of the HTTP
//! routes, so a bad or missing one is a 401 answer, not a socket.

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use roundhouse_http::ErrorBody;
use roundhouse_http::docs::{BadRequest, TooManyRequests, Unauthorized, Unavailable};
use roundhouse_http::{ApiError, ApiQuery, client_ip};
use serde::Deserialize;

use crate::socket;
use crate::startup::AppState;

/// `?token=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConnectQuery {
    /// A user's access token or the service token (browsers cannot set
    /// headers on a WebSocket).
    pub token: Option<String>,
}

/// `GET /ws`.
#[utoipa::path(
    get,
    path = "/ws",
    tag = "jobs",
    params(ConnectQuery),
    responses(
        (status = 101, description = "A WebSocket of the caller's job updates: `job_update`, `job_complete` and `job_error` messages"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 426, description = "Not a WebSocket upgrade request", body = ErrorBody),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    )
)]
pub async fn connect(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    let ip = client_ip(&parts, state.settings.client_ip_header.as_str());
    if let Err(refusal) = state.limits.check_ip(ip) {
        return refusal.into_response();
    }
    let token = match ApiQuery::<ConnectQuery>::from_request_parts(&mut parts, &state).await {
        Ok(ApiQuery(query)) => query.token.unwrap_or_default(),
        Err(refusal) => return refusal.into_response(),
    };
    let principal = match state.auth.authenticate_token(&token).await {
        Ok(principal) => principal,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(refusal) => {
            let message = refusal.body_text();
            return ApiError::new(refusal.status(), "websocket_required", message).into_response();
        }
    };
    upgrade
        .max_message_size(64 * 1024)
        .on_upgrade(move |websocket| socket::serve(websocket, state, principal, token))
}
