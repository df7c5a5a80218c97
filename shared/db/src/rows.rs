use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A `jobs` row as stored. Wire types (HTTP DTOs) are built from it in the
/// services; it is never serialised directly.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub queue: String,
    pub job_type: String,
    pub user_id: Option<String>,
    pub payload: serde_json::Value,
    pub status: String,
    pub priority: i32,
    pub attempts: i32,
    pub attempt_base: i32,
    pub max_retries: i32,
    pub run_at: DateTime<Utc>,
    pub timeout_seconds: i32,
    pub idempotency_key: Option<String>,
    pub progress: i16,
    pub progress_message: Option<String>,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub worker_id: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub queued_at: Option<DateTime<Utc>>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub traceparent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The schedule that created the job, if one did.
    pub schedule_id: Option<Uuid>,
    /// The cron tick the job was created for (`None` for manual triggers).
    pub schedule_tick: Option<DateTime<Utc>>,
}

impl JobRow {
    /// The parsed status. The column's CHECK constraint makes failure impossible
    /// short of a schema change, which would be a bug worth a loud error.
    pub fn status(&self) -> roundhouse_core::JobStatus {
        self.status
            .parse()
            .unwrap_or_else(|e| panic!("jobs.status holds {e}"))
    }
}
