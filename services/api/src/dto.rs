//! Wire types of the HTTP API (camelCase JSON), separate from database rows.

use chrono::{DateTime, Utc};
use roundhouse_core::{JobType, QueueName};
use roundhouse_db::{JobRow, NewJob};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::Caller;

/// Longest accepted delay: one year.
const MAX_DELAY_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// A job as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub id: Uuid,
    pub queue: String,
    pub job_type: String,
    pub user_id: Option<String>,
    pub payload: serde_json::Value,
    pub status: String,
    pub priority: i32,
    pub attempts: i32,
    pub max_retries: i32,
    pub run_at: DateTime<Utc>,
    pub timeout_seconds: i32,
    pub idempotency_key: Option<String>,
    pub progress: i16,
    pub progress_message: Option<String>,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub worker_id: Option<String>,
}

impl From<JobRow> for JobView {
    fn from(row: JobRow) -> Self {
        Self {
            id: row.id,
            queue: row.queue,
            job_type: row.job_type,
            user_id: row.user_id,
            payload: row.payload,
            status: row.status,
            priority: row.priority,
            attempts: row.attempts,
            max_retries: row.max_retries,
            run_at: row.run_at,
            timeout_seconds: row.timeout_seconds,
            idempotency_key: row.idempotency_key,
            progress: row.progress,
            progress_message: row.progress_message,
            result: row.result,
            error: row.error,
            created_at: row.created_at,
            started_at: row.started_at,
            completed_at: row.completed_at,
            worker_id: row.worker_id,
        }
    }
}

/// The answer to an enqueue: `{jobId, status, ...job}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnqueuedView {
    pub job_id: Uuid,
    #[serde(flatten)]
    pub job: JobView,
}

/// The body of `POST /api/jobs/enqueue` (and of each entry of a batch).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnqueueRequest {
    pub job_type: String,
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
    pub queue: Option<String>,
    pub priority: Option<i32>,
    pub delay_seconds: Option<f64>,
    pub run_at: Option<DateTime<Utc>>,
    pub max_retries: Option<i32>,
    pub timeout_seconds: Option<i32>,
    pub idempotency_key: Option<String>,
    pub user_id: Option<String>,
}

/// The body of `POST /api/jobs/batch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub jobs: Vec<EnqueueRequest>,
}

impl EnqueueRequest {
    /// Validates the request for `caller`; the message of a refusal names the field.
    pub fn into_new_job(self, caller: &Caller) -> Result<NewJob, ApiError> {
        let job_type: JobType = self.job_type.parse().map_err(|_| {
            ApiError::validation(format!("jobType: unknown job type `{}`", self.job_type))
        })?;
        if !job_type.is_available() {
            return Err(ApiError::validation(format!(
                "jobType: `{job_type}` is not available in this release"
            )));
        }
        let payload = self.payload.unwrap_or_else(|| serde_json::json!({}));
        if !payload.is_object() {
            return Err(ApiError::validation("payload: must be a JSON object"));
        }
        validate_payload(job_type, &payload)?;
        let queue = match self.queue {
            Some(name) => {
                QueueName::parse(&name).map_err(|e| ApiError::validation(format!("queue: {e}")))?
            }
            None => job_type.default_queue(),
        };
        let priority = self.priority.unwrap_or(0);
        if !(-1000..=1000).contains(&priority) {
            return Err(ApiError::validation(
                "priority: must be between -1000 and 1000",
            ));
        }
        if self.delay_seconds.is_some() && self.run_at.is_some() {
            return Err(ApiError::validation(
                "give either delaySeconds or runAt, not both",
            ));
        }
        if self
            .run_at
            .is_some_and(|at| at > chrono::Utc::now() + chrono::Duration::days(365))
        {
            return Err(ApiError::validation("runAt: must be within one year"));
        }
        let delay_ms = match self.delay_seconds {
            Some(delay) if !delay.is_finite() || delay < 0.0 => {
                return Err(ApiError::validation("delaySeconds: must be zero or more"));
            }
            Some(delay) if delay > MAX_DELAY_SECONDS => {
                return Err(ApiError::validation(
                    "delaySeconds: must be at most one year",
                ));
            }
            Some(delay) => Some((delay * 1000.0).round() as i64),
            None => None,
        };
        let max_retries = self
            .max_retries
            .unwrap_or_else(|| job_type.default_max_retries());
        if !(0..=100).contains(&max_retries) {
            return Err(ApiError::validation(
                "maxRetries: must be between 0 and 100",
            ));
        }
        let timeout_seconds = self
            .timeout_seconds
            .unwrap_or_else(|| job_type.default_timeout_seconds());
        if !(1..=7 * 24 * 3600).contains(&timeout_seconds) {
            return Err(ApiError::validation(
                "timeoutSeconds: must be between 1 and 604800",
            ));
        }
        if let Some(key) = &self.idempotency_key
            && (key.is_empty() || key.len() > 255)
        {
            return Err(ApiError::validation(
                "idempotencyKey: must be 1-255 characters",
            ));
        }
        let user_id = match (caller.owner(), self.user_id) {
            (None, user_id) => user_id,
            (Some(own), None) => Some(own.to_owned()),
            (Some(own), Some(asked)) if asked == own => Some(asked),
            (Some(_), Some(_)) => {
                return Err(ApiError::forbidden(
                    "userId: only the service may enqueue for another user",
                ));
            }
        };
        if user_id
            .as_ref()
            .is_some_and(|u| u.is_empty() || u.len() > 255)
        {
            return Err(ApiError::validation("userId: must be 1-255 characters"));
        }
        Ok(NewJob {
            id: Uuid::now_v7(),
            queue: queue.to_string(),
            job_type: job_type.to_string(),
            user_id,
            payload,
            priority,
            max_retries,
            timeout_seconds,
            idempotency_key: self.idempotency_key,
            run_at: self.run_at,
            delay_ms,
            traceparent: None,
        })
    }
}

/// Shape checks for the payloads of types whose handlers need fields.
fn validate_payload(job_type: JobType, payload: &serde_json::Value) -> Result<(), ApiError> {
    match job_type {
        JobType::Sleep => match payload.get("ms").and_then(|v| v.as_u64()) {
            Some(ms) if ms <= 24 * 3600 * 1000 => Ok(()),
            _ => Err(ApiError::validation(
                "payload.ms: sleep needs a whole number of milliseconds up to one day",
            )),
        },
        JobType::Fail => {
            if payload.get("times").is_some_and(|v| !v.is_i64()) {
                return Err(ApiError::validation("payload.times: must be an integer"));
            }
            if payload.get("permanent").is_some_and(|v| !v.is_boolean()) {
                return Err(ApiError::validation("payload.permanent: must be a boolean"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Query of `GET /api/jobs`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    pub status: Option<String>,
    pub queue: Option<String>,
    pub job_type: Option<String>,
    pub user_id: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// A page of jobs.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}
