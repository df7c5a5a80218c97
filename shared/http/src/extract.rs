//! Request extractors: authenticated callers (with rate limits), and JSON
//! bodies and query strings whose rejections use the API's error shape.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use roundhouse_auth::Principal;
use serde::de::DeserializeOwned;

use roundhouse_auth::Authenticator;

use crate::error::ApiError;
use crate::rate_limit::RateLimits;

/// What a service's state provides for authenticating callers.
pub trait Gatekeeper: Send + Sync {
    fn authenticator(&self) -> &Authenticator;
    fn rate_limits(&self) -> &RateLimits;
    /// The trusted proxy's client-address header (`CLIENT_IP_HEADER`), or "".
    fn client_ip_header(&self) -> &str;
}

/// The authenticated caller of a request.
pub struct Caller(pub Principal);

impl Caller {
    /// The user a query must be scoped to: `Some(user)` for users, `None`
    /// for the service (which sees everything).
    pub fn owner(&self) -> Option<&str> {
        match &self.0 {
            Principal::Service => None,
            Principal::User(user) => Some(&user.id),
        }
    }
}

impl<S: Gatekeeper> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let ip = client_ip(parts, state.client_ip_header());
        let limits = state.rate_limits();
        match state.authenticator().authenticate_header(header).await {
            // Trusted backends are not rate limited.
            Ok(Principal::Service) => Ok(Caller(Principal::Service)),
            Ok(Principal::User(user)) => {
                limits.check_ip(ip)?;
                limits.check_user(&user.id)?;
                Ok(Caller(Principal::User(user)))
            }
            Err(error) => {
                // Failed attempts count against the address: no free guessing.
                limits.check_ip(ip)?;
                Err(error.into())
            }
        }
    }
}

/// A caller allowed to operate queues: the service, or an admin user.
pub struct AdminCaller(pub Principal);

impl<S: Gatekeeper> FromRequestParts<S> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Caller(principal) = Caller::from_request_parts(parts, state).await?;
        if principal.is_admin() {
            Ok(AdminCaller(principal))
        } else {
            Err(ApiError::forbidden(
                "this endpoint is for the service token or admins",
            ))
        }
    }
}

/// The client's address: from the trusted proxy's header when configured
/// (Railway's edge sets `X-Real-IP` and overwrites any client-sent value),
/// else the TCP peer. `X-Forwarded-For` is never trusted: clients can prepend to it.
pub fn client_ip(parts: &Parts, header: &str) -> Option<IpAddr> {
    if !header.is_empty()
        && let Some(ip) = parts
            .headers
            .get(header)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    {
        return Some(ip);
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// `Json<T>` whose rejections are API errors: 400 for malformed JSON, 415
/// for a missing content type, 413 for an oversize body, 422 for a body of
/// the wrong shape (naming the field).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match &rejection {
        JsonRejection::JsonDataError(error) => ApiError::validation(
            std::error::Error::source(error)
                .map(|e| e.to_string())
                .unwrap_or_else(|| error.body_text()),
        ),
        JsonRejection::JsonSyntaxError(_) => ApiError::bad_request(
            "invalid_json",
            format!("the body is not valid JSON: {}", rejection.body_text()),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::unsupported_media_type(
            "send the body as JSON with `Content-Type: application/json`",
        ),
        _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::payload_too_large("the body exceeds the size limit")
        }
        _ => ApiError::bad_request("invalid_body", rejection.body_text()),
    }
}

/// `Query<T>` whose rejections are 400s in the API's shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection: QueryRejection| {
                ApiError::bad_request("invalid_query", rejection.body_text())
            })
    }
}
