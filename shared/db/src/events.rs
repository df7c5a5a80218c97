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

    /// The events of several jobs at once, each after its own cursor: one
    /// statement for every job an api replica streams. In id order, at most
    /// `limit` rows (a caller that gets `limit` rows asks again).
    pub async fn events_after(
        &self,
        cursors: &[(Uuid, i64)],
        limit: i64,
    ) -> Result<Vec<EventRow>, DbError> {
        if cursors.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = cursors.iter().map(|(id, _)| *id).collect();
        let afters: Vec<i64> = cursors.iter().map(|(_, after)| *after).collect();
        Ok(sqlx::query_as(
            r#"
            SELECT e.id, e.job_id, e.attempt, e.kind, e.data, e.created_at
              FROM unnest($1::uuid[], $2::bigint[]) AS c(job_id, after)
              JOIN LATERAL (
                    SELECT * FROM job_events
                     WHERE job_id = c.job_id AND id > c.after
                     ORDER BY id
                     LIMIT $3
                   ) e ON true
             ORDER BY e.id
             LIMIT $3
            "#,
        )
        .bind(ids)
        .bind(afters)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The events after `after` of the jobs in queue `queue`, of `owner`'s
    /// jobs only when given, in id order: a WebSocket's queue subscription.
    pub async fn queue_events_after(
        &self,
        queue: &str,
        owner: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>, DbError> {
        Ok(sqlx::query_as(
            r#"
            SELECT e.id, e.job_id, e.attempt, e.kind, e.data, e.created_at
              FROM job_events e
              JOIN jobs j ON j.id = e.job_id
             WHERE e.id > $3 AND j.queue = $1 AND ($2::text IS NULL OR j.user_id = $2)
             ORDER BY e.id
             LIMIT $4
            "#,
        )
        .bind(queue)
        .bind(owner)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Job `job_id`'s status and progress as of event `at` (its last
    /// `status` and `progress` events up to that id; `None` where it has
    /// none): where a follower that starts mid-timeline starts from.
    pub async fn job_state_at(
        &self,
        job_id: Uuid,
        at: i64,
    ) -> Result<(Option<String>, Option<i32>), DbError> {
        Ok(sqlx::query_as(
            r#"
            SELECT (SELECT data->>'status' FROM job_events
                     WHERE job_id = $1 AND id <= $2 AND kind = 'status'
                     ORDER BY id DESC LIMIT 1),
                   (SELECT (data->>'progress')::int FROM job_events
                     WHERE job_id = $1 AND id <= $2 AND kind = 'progress'
                     ORDER BY id DESC LIMIT 1)
            "#,
        )
        .bind(job_id)
        .bind(at)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The newest event id of job `job_id`, or of all jobs for `None` (0
    /// when there is none): where a live-only subscription starts.
    pub async fn latest_event_id(&self, job_id: Option<Uuid>) -> Result<i64, DbError> {
        // Two statements, so each keeps its index (`job_events_by_job`, the key).
        let latest = match job_id {
            Some(job_id) => sqlx::query_scalar(
                "SELECT coalesce(max(id), 0)::bigint FROM job_events WHERE job_id = $1",
            )
            .bind(job_id),
            None => sqlx::query_scalar("SELECT coalesce(max(id), 0)::bigint FROM job_events"),
        };
        Ok(latest.fetch_one(&self.pool).await?)
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
