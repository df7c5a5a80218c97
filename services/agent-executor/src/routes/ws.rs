//! `GET /ws?token=<user JWT>`: the WebSocket of SPEC §5 (the session itself
//! is in `socket.rs`).
//!
//! The token is checked before the upgrade, with the same authenticator
//! and per-address limit as the HTTP routes: a bad or missing one is a 401
//! answer, not a socket. No backend secret: browsers connect directly and
//! cannot set headers on a WebSocket. The service token is refused (403):
//! it must not travel in URLs, which proxies log.

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use roundhouse_auth::Principal;
use roundhouse_http::ErrorBody;
use roundhouse_http::docs::{BadRequest, TooManyRequests, Unauthorized, Unavailable};
use roundhouse_http::{ApiError, ApiQuery, client_ip};

use crate::dto::ConnectQuery;
use crate::socket;
use crate::startup::AppState;

/// `GET /ws`.
#[utoipa::path(
    get,
    path = "/ws",
    tag = "runs",
    params(ConnectQuery),
    responses(
        (status = 101, description = "A WebSocket: send `{\"type\": \"agent_execute\", requestId, agentId, messages}`; receive `agent_start`, `agent_chunk`, `agent_done` or `agent_error` messages naming the `requestId`"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, description = "The service token (it must not travel in URLs)", body = ErrorBody),
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
    match state.auth.authenticate_token(&token).await {
        Ok(Principal::User(_)) => {}
        Ok(Principal::Service) => {
            return ApiError::forbidden(socket::SERVICE_REFUSED).into_response();
        }
        Err(error) => return ApiError::from(error).into_response(),
    }
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(refusal) => {
            let message = refusal.body_text();
            return ApiError::new(refusal.status(), "websocket_required", message).into_response();
        }
    };
    upgrade
        .max_message_size(state.settings.body_limit_bytes)
        .on_upgrade(move |websocket| {
            let sockets = state.sockets.clone();
            sockets.track_future(socket::serve(websocket, state, token))
        })
}
