//! How events look on the wire, for SSE and the WebSocket alike.

use chrono::{DateTime, Utc};
use roundhouse_core::JobStatus;
use roundhouse_db::EventRow;
use serde::Serialize;
use uuid::Uuid;

/// An event as sent: `{id, kind, attempt, data, createdAt}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView<'a> {
    pub id: i64,
    pub kind: &'a str,
    pub attempt: i32,
    pub data: &'a serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl<'a> From<&'a EventRow> for EventView<'a> {
    fn from(row: &'a EventRow) -> Self {
        Self {
            id: row.id,
            kind: &row.kind,
            attempt: row.attempt,
            data: &row.data,
            created_at: row.created_at,
        }
    }
}

/// The status a `status` event moves its job to.
pub fn status_of(row: &EventRow) -> Option<JobStatus> {
    if row.kind != "status" {
        return None;
    }
    row.data
        .get("status")
        .and_then(|status| status.as_str())
        .and_then(|status| status.parse().ok())
}

/// Whether `row` moves its job to a terminal status.
pub fn is_terminal(row: &EventRow) -> bool {
    status_of(row).is_some_and(JobStatus::is_terminal)
}

/// A job's status and progress as its events are followed.
#[derive(Debug, Clone)]
pub struct JobState {
    pub status: String,
    pub progress: i16,
}

impl JobState {
    /// Job `job_id`'s state as of event `at`; `status` when no event says.
    pub async fn at(
        db: &roundhouse_db::Db,
        job_id: Uuid,
        at: i64,
        status: &str,
    ) -> Result<Self, roundhouse_db::DbError> {
        let (known, progress) = db.job_state_at(job_id, at).await?;
        Ok(Self {
            status: known.unwrap_or_else(|| status.to_owned()),
            progress: progress.unwrap_or(0).clamp(0, 100) as i16,
        })
    }

    /// Applies an event.
    pub fn apply(&mut self, row: &EventRow) {
        if let Some(status) = status_of(row) {
            self.status = status.as_str().to_owned();
            if status == JobStatus::Completed {
                self.progress = 100;
            }
        } else if row.kind == "progress"
            && let Some(progress) = row.data.get("progress").and_then(|p| p.as_i64())
        {
            self.progress = progress.clamp(0, 100) as i16;
        }
    }
}

/// A WebSocket message about a job: `job_update`, `job_complete` or `job_error`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobMessage<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub job_id: Uuid,
    pub status: &'a str,
    pub progress: i16,
    pub event: Option<EventView<'a>>,
}

impl<'a> JobMessage<'a> {
    /// The message for `state` after `event` (or a snapshot without one).
    pub fn new(job_id: Uuid, state: &'a JobState, event: Option<&'a EventRow>) -> Self {
        let kind = match state.status.parse::<JobStatus>() {
            Ok(JobStatus::Completed) => "job_complete",
            Ok(JobStatus::Failed | JobStatus::Cancelled) => "job_error",
            _ => "job_update",
        };
        // A terminal kind only for the event that ended the job (or a snapshot).
        let kind = match event {
            Some(row) if !is_terminal(row) => "job_update",
            _ => kind,
        };
        Self {
            kind,
            job_id,
            status: &state.status,
            progress: state.progress,
            event: event.map(EventView::from),
        }
    }
}
