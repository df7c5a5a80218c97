//! `POST /api/jobs/{id}/progress`: progress and log lines from an HTTP
//! handler while it works on a job.
//!
//! The caller is the endpoint the worker posted the job to, authenticated
//! by the bearer token it received for that attempt (not a user JWT): it may
//! report on that one job while that attempt runs, and nothing else.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use uuid::Uuid;

use roundhouse_http::docs::{
    BadRequest, InternalError, PayloadTooLarge, Unauthorized, Unavailable, Unprocessable,
    UnsupportedMediaType,
};
use roundhouse_http::{ApiError, ApiJson};

use crate::startup::AppState;

/// The body: at least one of the fields.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProgressReport {
    /// 0–100.
    pub progress: Option<i64>,
    /// Shown next to the progress (`"page 3/10"`).
    pub message: Option<String>,
    /// A line for the job's timeline.
    pub log: Option<String>,
}

/// The longest message or log line accepted.
const MAX_TEXT: usize = 4096;

#[utoipa::path(
    post,
    path = "/api/jobs/{id}/progress",
    tag = "jobs",
    security(("callbackToken" = [])),
    params(("id" = Uuid, Path, description = "The job's id")),
    request_body = ProgressReport,
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, response = BadRequest),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 401, response = Unauthorized),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn report_progress(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(report): ApiJson<ProgressReport>,
) -> Result<StatusCode, ApiError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::bad_request("invalid_id", "job id must be a UUID"))?;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing callback token",
            )
        })?;
    if report.progress.is_none() && report.message.is_none() && report.log.is_none() {
        return Err(ApiError::validation(
            "give at least one of progress, message and log",
        ));
    }
    if report.progress.is_some_and(|p| !(0..=100).contains(&p)) {
        return Err(ApiError::validation("progress: must be between 0 and 100"));
    }
    for (field, text) in [("message", &report.message), ("log", &report.log)] {
        if text.as_ref().is_some_and(|t| t.len() > MAX_TEXT) {
            return Err(ApiError::validation(format!(
                "{field}: at most {MAX_TEXT} bytes"
            )));
        }
    }
    let attempt = state.db.callback_attempt(id, token).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "invalid or expired callback token (the attempt may have finished)",
        )
    })?;
    if report.progress.is_some() || report.message.is_some() {
        // Without a new number, a message keeps the current progress.
        let progress = match report.progress {
            Some(progress) => progress as i16,
            None => state
                .db
                .get_job(id, None)
                .await?
                .map_or(0, |job| job.progress),
        };
        state
            .db
            .record_progress(id, attempt, progress, report.message.as_deref())
            .await?;
    }
    if let Some(line) = &report.log {
        state.db.append_log(id, attempt, line).await?;
    }
    if let Some(job) = state.db.get_job(id, None).await? {
        state.announce_events(id, &job.queue);
    }
    Ok(StatusCode::NO_CONTENT)
}
