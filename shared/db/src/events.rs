use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Db, DbError};

/// One entry of a job's timeline.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub job_id: Uuid,
    pub attempt: i32,
    pub kind: String,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl Db {
    /// A job's timeline in order, after event id `after` (0 for all).
    pub async fn job_events(
        &self,
        job_id: Uuid,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>, DbError> {
        Ok(sqlx::query_as(
            r#"
            SELECT id, job_id, attempt, kind, data, created_at
              FROM job_events
             WHERE job_id = $1 AND id > $2
             ORDER BY id
             LIMIT $3
            "#,
        )
        .bind(job_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Appends a log line to the timeline of attempt `attempt`, if that attempt
    /// is still the job's current one.
    pub async fn append_log(
        &self,
        job_id: Uuid,
        attempt: i32,
        message: &str,
    ) -> Result<bool, DbError> {
        let inserted = sqlx::query(
            r#"
            INSERT INTO job_events (job_id, attempt, kind, data)
            SELECT id, attempts, 'log', jsonb_build_object('message', $3::text)
              FROM jobs
             WHERE id = $1 AND attempts = $2
            "#,
        )
        .bind(job_id)
        .bind(attempt)
        .bind(message)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// Appends streamed output (LLM tokens) to the timeline of attempt
    /// `attempt` as `chunk` events `{content}`, in order, if that attempt is
    /// still the job's current one.
    pub async fn append_chunks(
        &self,
        job_id: Uuid,
        attempt: i32,
        chunks: &[String],
    ) -> Result<bool, DbError> {
        if chunks.is_empty() {
            return Ok(true);
        }
        let inserted = sqlx::query(
            r#"
            INSERT INTO job_events (job_id, attempt, kind, data)
            SELECT j.id, j.attempts, 'chunk', jsonb_build_object('content', c.content)
              FROM jobs j, unnest($3::text[]) WITH ORDINALITY AS c(content, ord)
             WHERE j.id = $1 AND j.attempts = $2
             ORDER BY c.ord
            "#,
        )
        .bind(job_id)
        .bind(attempt)
        .bind(chunks)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted > 0)
    }
}
