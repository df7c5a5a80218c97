//! The executor's own refusals (402, 501, 502, and a 401 about the backend
//! secret), rendered through `roundhouse_http::ApiError`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use roundhouse_http::ApiError;

/// Why `POST /api/agent/execute` (or an SSE follow-up) refused.
#[derive(Debug)]
pub enum ExecuteError {
    /// Any refusal the shared error type covers.
    Api(ApiError),
    /// `X-Backend-Secret` missing or wrong (401).
    BadBackendSecret,
    /// `RAILWAY_BACKEND_SECRET` is not set: the endpoint is off (503).
    BackendSecretNotConfigured,
    /// The balance does not cover the run's reservation (402).
    InsufficientCredits { needed: i64, balance: i64 },
    /// The provider failed the run (502); the message is the provider
    /// layer's, which never contains a key.
    Provider(String),
}

impl From<ApiError> for ExecuteError {
    fn from(error: ApiError) -> Self {
        ExecuteError::Api(error)
    }
}

impl From<roundhouse_db::DbError> for ExecuteError {
    fn from(error: roundhouse_db::DbError) -> Self {
        ExecuteError::Api(error.into())
    }
}

impl From<ExecuteError> for ApiError {
    fn from(error: ExecuteError) -> Self {
        let (status, code, message) = match error {
            ExecuteError::Api(error) => return error,
            ExecuteError::BadBackendSecret => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong X-Backend-Secret".to_owned(),
            ),
            ExecuteError::BackendSecretNotConfigured => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not_configured",
                "RAILWAY_BACKEND_SECRET is not configured".to_owned(),
            ),
            ExecuteError::InsufficientCredits { needed, balance } => (
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_credits",
                format!("this run needs {needed} credits, balance {balance}"),
            ),
            ExecuteError::Provider(message) => (StatusCode::BAD_GATEWAY, "provider_error", message),
        };
        ApiError::new(status, code, message)
    }
}

impl IntoResponse for ExecuteError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
