//! The HTTP services' one error type, rendered as SPEC §4's
//! `{"error": {"code": "...", "message": "..."}}`.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use roundhouse_auth::AuthError;
use roundhouse_db::DbError;
use serde::Serialize;

/// The body of every error answer: `{"error": {"code", "message"}}` (the
/// OpenAPI documents' `ErrorBody`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `validation_error`, `not_found`, `rate_limited`, …
    #[schema(example = "not_found")]
    pub code: String,
    /// For people; a 5xx message is generic, with a reference to quote.
    #[schema(example = "job not found")]
    pub message: String,
}

/// An error answer. A 5xx body is generic; its detail is logged once, here,
/// with a reference the client can quote.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<Duration>,
}

impl ApiError {
    /// Any status, with a `code` clients can match on.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: the body or query could not be parsed.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422: well-formed but invalid input; the message names the field.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            message,
        )
    }

    /// 405 (the caller adds `Allow`).
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this method is not allowed on this path",
        )
    }

    /// 415.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404. Also the answer for another user's job: its existence is not revealed.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 413.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(retry_after: Duration) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests; slow down",
        );
        error.retry_after = Some(retry_after);
        error
    }

    /// 503: a dependency we cannot work without is down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        error.retry_after = Some(Duration::from_secs(5));
        error
    }

    /// 500. `detail` is logged, never sent.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        let reference = uuid::Uuid::new_v4();
        tracing::error!(%reference, error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("internal error (reference {reference})"),
        )
    }

    /// The same error with `prefix: ` in front of its message (which batch
    /// entry was at fault).
    pub fn prefixed(mut self, prefix: &str) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code (`validation_error`, `rate_limited`, …).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message as sent (generic for 5xx answers).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// When to try again, for 429 and 503 answers.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(after) = self.retry_after {
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::IdempotencyConflict(key) => ApiError::conflict(format!(
                "idempotencyKey `{key}` was already used for a different job"
            )),
            DbError::Duplicate(name) => {
                ApiError::conflict(format!("name: `{name}` is already taken"))
            }
            error if error.is_unavailable() => {
                tracing::error!(%error, "database unavailable");
                ApiError::unavailable("the job store is unavailable; nothing was stored, try again")
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing bearer token",
            ),
            AuthError::Invalid(_) => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "invalid or expired token",
            ),
            AuthError::Forbidden(reason) => ApiError::forbidden(reason),
            AuthError::KeysUnavailable => {
                ApiError::unavailable("token signing keys are unavailable; try again")
            }
        }
    }
}
