//! Request extractors: authenticated callers (with rate limits), and JSON
//! bodies and query strings whose rejections use the API's error shape.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
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
/// the wrong shape (naming the field) or with a NUL character in a string,
/// which PostgreSQL cannot store in `text` or `jsonb` (refused here, once,
/// rather than failing a statement later).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::unsupported_media_type(
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large("the body exceeds the size limit")
            } else {
                ApiError::bad_request("invalid_body", rejection.body_text())
            }
        })?;
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes).map_err(json_rejection)?;
        // In JSON a NUL can only be written `\u0000`: only then look closer.
        if bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000"))
            && serde_json::from_slice::<serde_json::Value>(&bytes)
                .is_ok_and(|body| holds_nul(&body))
        {
            return Err(ApiError::validation(
                "strings must not contain NUL characters (\\u0000)",
            ));
        }
        Ok(ApiJson(value))
    }
}

/// Whether the content type is JSON (`application/json`, `…+json`), as
/// axum's `Json` decides.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

/// Whether any string or key in `value` holds a NUL character.
fn holds_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) => text.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(holds_nul),
        serde_json::Value::Object(fields) => fields
            .iter()
            .any(|(key, value)| key.contains('\0') || holds_nul(value)),
        _ => false,
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

/// `Query<T>` whose rejections are 400s in the API's shape (as is a NUL
/// character, `%00`, which PostgreSQL cannot store).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // `%00` decodes to NUL, which PostgreSQL cannot store or compare.
        if parts
            .uri
            .query()
            .is_some_and(|query| query.to_ascii_lowercase().contains("%00"))
        {
            return Err(ApiError::bad_request(
                "invalid_query",
                "the query string must not contain NUL characters (%00)",
            ));
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection: QueryRejection| {
                ApiError::bad_request("invalid_query", rejection.body_text())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_found_in_strings_and_keys_at_any_depth() {
        assert!(holds_nul(&serde_json::json!({"a": ["x", {"b": "c\u{0}"}]})));
        assert!(holds_nul(&serde_json::json!({"a\u{0}": 1})));
        assert!(!holds_nul(&serde_json::json!({"a": ["\\u0000", 1, null]})));
    }

    #[test]
    fn json_content_types_are_recognised_as_axum_does() {
        let json = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().expect("a header value"));
            is_json(&headers)
        };
        assert!(json("application/json"));
        assert!(json("Application/JSON; charset=utf-8"));
        assert!(json("application/merge-patch+json"));
        assert!(!json("text/plain"));
        assert!(!json("application/jsonx"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
