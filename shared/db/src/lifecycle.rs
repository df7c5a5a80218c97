//! A job's life inside a worker: claim, heartbeat, progress, completion,
//! failure and hand-back. Every write after the claim is fenced by
//! `(id, attempt)` and by `status = 'processing'`.
//!
//! Deadlocks: statements that may wait for each other's row locks must not
//! lock overlapping rows in different orders (PostgreSQL only notices after
//! `deadlock_timeout`, stalling both for a second). Claims and completions
//! never overlap (one takes `queued` rows, the other `processing` rows);
//! `mark_dispatched` and the heartbeat skip locked rows instead of waiting;
//! batches are passed in id order.
//!
//! Plans: a statement given a list of ids must reach them through the
//! primary key. Conditions on `status` in those statements are written as
//! `status || '' = …` so that PostgreSQL cannot use the partial indexes
//! (`WHERE status = 'queued'`, …) instead: with stale statistics (a burst of
//! 100k inserts before autovacuum's analyze) it would otherwise scan the whole
//! backlog for every claim.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Db, DbError};

/// A job a worker now holds a lease on.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedJob {
    pub id: Uuid,
    pub queue: String,
    pub job_type: String,
    pub user_id: Option<String>,
    pub payload: serde_json::Value,
    /// This attempt's number: the fencing token for every later write.
    pub attempts: i32,
    pub attempt_base: i32,
    pub max_retries: i32,
    pub timeout_seconds: i32,
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub traceparent: Option<String>,
}

/// A successful attempt, to be recorded in a batch.
#[derive(Debug, Clone)]
pub struct Completion {
    pub job_id: Uuid,
    pub attempt: i32,
    pub result: serde_json::Value,
}

/// Where a failed attempt left its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// A retry is scheduled.
    RetryScheduled,
    /// Retries are exhausted or the error was permanent: the job is `failed`.
    Failed,
    /// The attempt was no longer current (cancelled, reaped or re-claimed):
    /// nothing was written.
    Superseded,
}

impl Db {
    /// Claims the given queued jobs for `worker_id` with a lease of
    /// `lease_seconds`. Jobs that are not `queued` any more (a duplicate or
    /// stale dispatch message, a cancelled job) or whose queue is paused are
    /// skipped: the caller drops their messages.
    pub async fn claim_jobs(
        &self,
        ids: &[Uuid],
        worker_id: &str,
        lease_seconds: f64,
    ) -> Result<Vec<ClaimedJob>, DbError> {
        Ok(sqlx::query_as(
            r#"
            WITH claimed AS (
                UPDATE jobs j
                   SET status = 'processing', attempts = j.attempts + 1, worker_id = $2,
                       started_at = now(), lease_expires_at = now() + make_interval(secs => $3),
                       progress = 0, progress_message = NULL
                 WHERE j.id = ANY($1) AND j.status || '' = 'queued'
                   AND NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = j.queue AND q.paused)
                RETURNING j.id, j.queue, j.job_type, j.user_id, j.payload, j.attempts,
                          j.attempt_base, j.max_retries, j.timeout_seconds, j.queued_at,
                          j.started_at, j.traceparent
            ), event AS (
                INSERT INTO job_events (job_id, attempt, kind, data)
                SELECT id, attempts, 'status',
                       jsonb_build_object('status', 'processing', 'workerId', $2::text)
                  FROM claimed
            )
            SELECT * FROM claimed
            "#,
        )
        .bind({
            let mut sorted = ids.to_vec();
            sorted.sort();
            sorted
        })
        .bind(worker_id)
        .bind(lease_seconds)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records successful attempts in one statement. Returns the ids whose
    /// completion was accepted; a completion from a superseded attempt is refused.
    pub async fn complete_jobs(&self, completions: &[Completion]) -> Result<Vec<Uuid>, DbError> {
        let mut completions: Vec<&Completion> = completions.iter().collect();
        completions.sort_by_key(|c| c.job_id);
        let ids: Vec<Uuid> = completions.iter().map(|c| c.job_id).collect();
        let attempts: Vec<i32> = completions.iter().map(|c| c.attempt).collect();
        let results: Vec<serde_json::Value> =
            completions.iter().map(|c| c.result.clone()).collect();
        Ok(sqlx::query_scalar(
            r#"
            WITH done AS (
                UPDATE jobs j
                   SET status = 'completed', result = c.result, completed_at = now(),
                       progress = 100, lease_expires_at = NULL, error = NULL
                  FROM unnest($1::uuid[], $2::int[], $3::jsonb[]) AS c(id, attempt, result)
                 WHERE j.id = c.id AND j.attempts = c.attempt AND j.status || '' = 'processing'
                RETURNING j.id, j.attempts
            ), event AS (
                INSERT INTO job_events (job_id, attempt, kind, data)
                SELECT id, attempts, 'status', '{"status": "completed"}'::jsonb FROM done
            )
            SELECT id FROM done
            "#,
        )
        .bind(ids)
        .bind(attempts)
        .bind(results)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records a failed attempt. A `retryable` failure with budget left is
    /// rescheduled `retry_in_seconds` from now; otherwise the job is `failed`.
    pub async fn fail_job(
        &self,
        job_id: Uuid,
        attempt: i32,
        error: &str,
        retryable: bool,
        retry_in_seconds: f64,
    ) -> Result<FailOutcome, DbError> {
        let status: Option<String> = sqlx::query_scalar(
            r#"
            WITH failed AS (
                UPDATE jobs j
                   SET status = t.next, error = $3, lease_expires_at = NULL,
                       run_at = CASE WHEN t.next = 'scheduled'
                                     THEN now() + make_interval(secs => $5) ELSE j.run_at END,
                       completed_at = CASE WHEN t.next = 'failed' THEN now() END
                  FROM (SELECT CASE WHEN $4 AND attempts - attempt_base <= max_retries
                                    THEN 'scheduled' ELSE 'failed' END AS next
                          FROM jobs WHERE id = $1) t
                 WHERE j.id = $1 AND j.attempts = $2 AND j.status = 'processing'
                RETURNING j.id, j.attempts, j.status, j.run_at
            ), event AS (
                INSERT INTO job_events (job_id, attempt, kind, data)
                SELECT id, attempts, 'status',
                       jsonb_build_object('status', status, 'error', $3::text,
                                          'retryAt', CASE WHEN status = 'scheduled' THEN run_at END)
                  FROM failed
            )
            SELECT status FROM failed
            "#,
        )
        .bind(job_id)
        .bind(attempt)
        .bind(error)
        .bind(retryable)
        .bind(retry_in_seconds)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match status.as_deref() {
            Some("scheduled") => FailOutcome::RetryScheduled,
            Some(_) => FailOutcome::Failed,
            None => FailOutcome::Superseded,
        })
    }

    /// Extends the leases of the attempts a worker is running and reports
    /// the attempts that are no longer current (cancelled, or reaped and
    /// perhaps re-claimed): those must be stopped. A row that another
    /// statement holds locked at this instant is skipped, not waited for, and
    /// reported neither way; the next heartbeat will see it.
    pub async fn heartbeat(
        &self,
        running: &[(Uuid, i32)],
        lease_seconds: f64,
    ) -> Result<Vec<Uuid>, DbError> {
        let ids: Vec<Uuid> = running.iter().map(|(id, _)| *id).collect();
        let attempts: Vec<i32> = running.iter().map(|(_, a)| *a).collect();
        Ok(sqlx::query_scalar(
            r#"
            WITH lockable AS (
                SELECT j.id, (j.status = 'processing' AND j.attempts = h.attempt) AS current
                  FROM jobs j
                  JOIN unnest($1::uuid[], $2::int[]) AS h(id, attempt) ON h.id = j.id
                 WHERE j.id = ANY($1)
                   FOR UPDATE OF j SKIP LOCKED
            ), extended AS (
                UPDATE jobs j
                   SET lease_expires_at = now() + make_interval(secs => $3)
                  FROM lockable l
                 WHERE j.id = l.id AND l.current
            )
            SELECT id FROM lockable WHERE NOT current
            UNION ALL
            SELECT h.id FROM unnest($1::uuid[]) AS h(id)
             WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = h.id)
            "#,
        )
        .bind(ids)
        .bind(attempts)
        .bind(lease_seconds)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records progress (0–100) and an optional message for the current attempt.
    pub async fn record_progress(
        &self,
        job_id: Uuid,
        attempt: i32,
        progress: i16,
        message: Option<&str>,
    ) -> Result<bool, DbError> {
        let updated: Option<Uuid> = sqlx::query_scalar(
            r#"
            WITH updated AS (
                UPDATE jobs SET progress = $3, progress_message = $4
                 WHERE id = $1 AND attempts = $2 AND status = 'processing'
                RETURNING id, attempts
            ), event AS (
                INSERT INTO job_events (job_id, attempt, kind, data)
                SELECT id, attempts, 'progress',
                       jsonb_build_object('progress', $3::int, 'message', $4::text)
                  FROM updated
            )
            SELECT id FROM updated
            "#,
        )
        .bind(job_id)
        .bind(attempt)
        .bind(progress.clamp(0, 100))
        .bind(message)
        .fetch_optional(&self.pool)
        .await?;
        Ok(updated.is_some())
    }

    /// Hands running attempts back to the queue (graceful shutdown). The hand-back
    /// does not consume the job's retry budget. Returns the requeued ids, which
    /// need dispatch messages.
    pub async fn release_jobs(&self, running: &[(Uuid, i32)]) -> Result<Vec<Uuid>, DbError> {
        let ids: Vec<Uuid> = running.iter().map(|(id, _)| *id).collect();
        let attempts: Vec<i32> = running.iter().map(|(_, a)| *a).collect();
        Ok(sqlx::query_scalar(
            r#"
            WITH released AS (
                UPDATE jobs j
                   SET status = 'queued', attempt_base = j.attempt_base + 1, worker_id = NULL,
                       lease_expires_at = NULL, queued_at = now(), dispatched_at = NULL
                  FROM unnest($1::uuid[], $2::int[]) AS r(id, attempt)
                 WHERE j.id = r.id AND j.attempts = r.attempt AND j.status || '' = 'processing'
                RETURNING j.id, j.attempts
            ), event AS (
                INSERT INTO job_events (job_id, attempt, kind, data)
                SELECT id, attempts, 'status',
                       '{"status": "queued", "reason": "handed back at worker shutdown"}'::jsonb
                  FROM released
            )
            SELECT id FROM released
            "#,
        )
        .bind(ids)
        .bind(attempts)
        .fetch_all(&self.pool)
        .await?)
    }
}
