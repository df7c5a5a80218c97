//! The scheduler's sweeps: promotion of due jobs, the lease reaper and the
//! dispatch sweep. Each selects its rows with `FOR UPDATE SKIP LOCKED` and
//! changes them in the same statement, so any number of schedulers can run
//! at once without doing the same work twice.

use roundhouse_core::Dispatch;
use uuid::Uuid;

use crate::{Db, DbError};

#[derive(sqlx::FromRow)]
struct DispatchRow {
    id: Uuid,
    queue: String,
    priority: i32,
    traceparent: Option<String>,
}

impl From<DispatchRow> for Dispatch {
    fn from(row: DispatchRow) -> Self {
        Dispatch {
            job_id: row.id,
            queue: row.queue,
            priority: row.priority,
            traceparent: row.traceparent,
        }
    }
}

/// What one reaper pass did.
#[derive(Debug, Default)]
pub struct Reaped {
    /// Jobs put back in their queue: they need dispatch messages.
    pub requeued: Vec<Dispatch>,
    /// Jobs whose last allowed attempt was lost: now `failed`.
    pub failed: Vec<Uuid>,
}

impl Db {
    /// Marks jobs whose dispatch message the broker confirmed. Rows locked by
    /// a concurrent claim or cancel are skipped rather than waited for (and
    /// can never deadlock with them): they are leaving `queued` anyway, and at
    /// worst the sweep sends a duplicate message that claims nothing.
    pub async fn mark_dispatched(&self, ids: &[Uuid]) -> Result<(), DbError> {
        sqlx::query(
            r#"
            UPDATE jobs SET dispatched_at = now()
             WHERE id IN (SELECT id FROM jobs
                           WHERE id = ANY($1) AND status || '' = 'queued'
                             AND dispatched_at IS NULL
                           FOR UPDATE SKIP LOCKED)
            "#,
        )
        .bind(ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a dispatch that was claimed but not confirmed, so the next
    /// sweep sends it again.
    pub async fn mark_undispatched(&self, ids: &[Uuid]) -> Result<(), DbError> {
        sqlx::query(
            r#"
            WITH locked AS (
                SELECT id FROM jobs WHERE id = ANY($1) AND status || '' = 'queued'
                 ORDER BY id FOR UPDATE
            )
            UPDATE jobs j SET dispatched_at = NULL
              FROM locked
             WHERE j.id = locked.id AND j.status || '' = 'queued'
            "#,
        )
        .bind(ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Moves up to `limit` due `scheduled` jobs to `queued`. They are marked
    /// dispatched in the same statement (the caller publishes them and calls
    /// [`Db::mark_undispatched`] for those the broker did not confirm).
    pub async fn promote_due_jobs(&self, limit: i64) -> Result<Vec<Dispatch>, DbError> {
        let rows: Vec<DispatchRow> = sqlx::query_as(
            r#"
            WITH due AS (
                SELECT id FROM jobs
                 WHERE status = 'scheduled' AND run_at <= now()
                 ORDER BY run_at
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED
            )
            UPDATE jobs j
               SET status = 'queued', queued_at = now(), dispatched_at = now(), worker_id = NULL
              FROM due
             WHERE j.id = due.id
            RETURNING j.id, j.queue, j.priority, j.traceparent
            "#,
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Dispatch::from).collect())
    }

    /// Reaps up to `limit` attempts whose lease expired (their worker died or
    /// hung). With retry budget left the job is queued again at once;
    /// otherwise it fails with an error naming the lost worker.
    pub async fn reap_expired_leases(&self, limit: i64) -> Result<Reaped, DbError> {
        #[derive(sqlx::FromRow)]
        struct ReapedRow {
            id: Uuid,
            queue: String,
            priority: i32,
            traceparent: Option<String>,
            status: String,
        }
        let rows: Vec<ReapedRow> = sqlx::query_as(
            r#"
            WITH expired AS (
                SELECT id,
                       CASE WHEN attempts - attempt_base <= max_retries
                            THEN 'queued' ELSE 'failed' END AS next
                  FROM jobs
                 WHERE status = 'processing' AND lease_expires_at < now()
                 ORDER BY lease_expires_at
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED
            ), reaped AS (
                UPDATE jobs j
                   SET status = expired.next,
                       error = 'lease expired: worker ' || coalesce(j.worker_id, '?')
                               || ' was lost during attempt ' || j.attempts,
                       lease_expires_at = NULL,
                       queued_at = CASE WHEN expired.next = 'queued' THEN now() END,
                       dispatched_at = CASE WHEN expired.next = 'queued' THEN now() END,
                       completed_at = CASE WHEN expired.next = 'failed' THEN now() END
                  FROM expired
                 WHERE j.id = expired.id
                RETURNING j.id, j.queue, j.priority, j.traceparent, j.status, j.attempts, j.error, j.worker_id
            ), event AS (
                -- The alerter's lost-worker detector reads these events
                -- (index `job_events_lease_lost`): keep `reason` as it is.
                INSERT INTO job_events (job_id, attempt, kind, data)
                SELECT id, attempts, 'status',
                       jsonb_build_object('status', status, 'error', error, 'reason', 'lease expired',
                                          'workerId', worker_id)
                  FROM reaped
            )
            SELECT id, queue, priority, traceparent, status FROM reaped
            "#,
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut reaped = Reaped::default();
        for row in rows {
            if row.status == "queued" {
                reaped.requeued.push(Dispatch {
                    job_id: row.id,
                    queue: row.queue,
                    priority: row.priority,
                    traceparent: row.traceparent,
                });
            } else {
                reaped.failed.push(row.id);
            }
        }
        Ok(reaped)
    }

    /// Claims up to `limit` queued jobs whose dispatch message is missing: never
    /// confirmed within `grace_seconds` of being queued (the process that
    /// queued them died, or the broker was down), or confirmed more than
    /// `redispatch_after_seconds` ago and still not claimed (the broker lost
    /// its queue). Jobs of paused queues wait for their resume.
    pub async fn claim_undispatched(
        &self,
        grace_seconds: f64,
        redispatch_after_seconds: f64,
        limit: i64,
    ) -> Result<Vec<Dispatch>, DbError> {
        let rows: Vec<DispatchRow> = sqlx::query_as(
            r#"
            WITH stale AS (
                SELECT id FROM jobs j
                 WHERE status = 'queued'
                   AND ((dispatched_at IS NULL
                         AND queued_at < now() - make_interval(secs => $1))
                        OR dispatched_at < now() - make_interval(secs => $2))
                   AND NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = j.queue AND q.paused)
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED
            )
            UPDATE jobs j SET dispatched_at = now()
              FROM stale
             WHERE j.id = stale.id
            RETURNING j.id, j.queue, j.priority, j.traceparent
            "#,
        )
        .bind(grace_seconds)
        .bind(redispatch_after_seconds)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Dispatch::from).collect())
    }
}
