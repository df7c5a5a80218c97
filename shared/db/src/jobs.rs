//! Jobs as users see them: enqueue, look up, list, cancel, retry by hand.

use chrono::{DateTime, Utc};
use roundhouse_core::JobStatus;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::{Db, DbError, JobRow};

/// A job to insert. The id is chosen by the caller (UUID v7).
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub queue: String,
    pub job_type: String,
    pub user_id: Option<String>,
    pub payload: serde_json::Value,
    pub priority: i32,
    pub max_retries: i32,
    pub timeout_seconds: i32,
    pub idempotency_key: Option<String>,
    /// Absolute start time; wins over `delay_ms`.
    pub run_at: Option<DateTime<Utc>>,
    /// Start after this many milliseconds, measured on the database clock.
    pub delay_ms: Option<i64>,
    pub traceparent: Option<String>,
}

/// What enqueueing one job did.
#[derive(Debug, Clone)]
pub struct EnqueueOutcome {
    /// The stored job: the new one, or the earlier job with the same
    /// idempotency key.
    pub job: JobRow,
    /// False when the idempotency key matched an existing job.
    pub created: bool,
}

/// Result of a cancel request.
#[derive(Debug, Clone)]
pub enum CancelOutcome {
    /// The job is now `cancelled`. `was_running` tells whether a worker must be told.
    Cancelled { job: JobRow, was_running: bool },
    /// The job had already finished.
    AlreadyTerminal(JobRow),
    /// No such job for this caller.
    NotFound,
}

/// Result of a manual retry.
#[derive(Debug, Clone)]
pub enum RetryOutcome {
    /// The job is queued again.
    Requeued(JobRow),
    /// Only failed or cancelled jobs can be retried by hand.
    NotRetryable(JobRow),
    /// No such job for this caller.
    NotFound,
}

/// Filters for listing jobs. `user_id` scopes a user's listing to their own jobs.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub user_id: Option<String>,
    pub status: Option<JobStatus>,
    pub queue: Option<String>,
    pub job_type: Option<String>,
    /// Only jobs with an id below this one (the previous page's last id).
    pub before: Option<Uuid>,
    /// Only jobs whose error contains this text (any case).
    pub error_contains: Option<String>,
    pub limit: i64,
}

/// The `SET` clause of a manual retry: the job is queued to run now, its
/// retry budget counts from here, and its last attempt's outcome is cleared.
/// Shared by [`Db::retry_job`] and the dashboard's bulk retry.
macro_rules! requeue_set {
    () => {
        "SET status = 'queued', attempt_base = attempts, run_at = now(), \
             queued_at = now(), dispatched_at = NULL, completed_at = NULL, \
             worker_id = NULL, lease_expires_at = NULL, error = NULL, \
             result = NULL, progress = 0, progress_message = NULL"
    };
}
pub(crate) use requeue_set;

impl Db {
    /// Inserts jobs in one transaction: all of them, or none.
    ///
    /// A job whose `(user, idempotency key)` already exists is not inserted;
    /// the existing job is returned instead, unless it was created for a
    /// different job type or payload, which is an
    /// [`DbError::IdempotencyConflict`] (and rolls the whole batch back).
    /// Jobs due now are stored `queued`, later ones `scheduled`.
    pub async fn enqueue_jobs(&self, jobs: &[NewJob]) -> Result<Vec<EnqueueOutcome>, DbError> {
        // One INSERT is atomic on its own; the transaction is only needed when
        // an idempotency conflict may have to roll the batch back.
        if jobs.iter().all(|job| job.idempotency_key.is_none()) {
            let inserted = Self::insert_jobs(&self.pool, jobs).await?;
            let mut by_id: std::collections::HashMap<Uuid, JobRow> =
                inserted.into_iter().map(|row| (row.id, row)).collect();
            return Ok(jobs
                .iter()
                .filter_map(|job| by_id.remove(&job.id))
                .map(|job| EnqueueOutcome { job, created: true })
                .collect());
        }
        let mut tx = self.pool.begin().await?;
        let inserted = Self::insert_jobs(&mut *tx, jobs).await?;
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut by_id: std::collections::HashMap<Uuid, JobRow> =
            inserted.into_iter().map(|row| (row.id, row)).collect();
        let mut missing = Vec::new();
        for (index, job) in jobs.iter().enumerate() {
            match by_id.remove(&job.id) {
                Some(row) => outcomes.push(Some(EnqueueOutcome {
                    job: row,
                    created: true,
                })),
                None => {
                    missing.push(index);
                    outcomes.push(None);
                }
            }
        }

        if !missing.is_empty() {
            // Each missing job lost an idempotency-key conflict: fetch the winner.
            let users: Vec<String> = missing
                .iter()
                .map(|&i| jobs[i].user_id.clone().unwrap_or_default())
                .collect();
            let keys: Vec<Option<String>> = missing
                .iter()
                .map(|&i| jobs[i].idempotency_key.clone())
                .collect();
            let existing: Vec<JobRow> = sqlx::query_as(
                r#"
                SELECT j.*
                  FROM jobs j
                  JOIN unnest($1::text[], $2::text[]) AS k(user_id, idempotency_key)
                    ON coalesce(j.user_id, '') = k.user_id
                   AND j.idempotency_key = k.idempotency_key
                "#,
            )
            .bind(&users)
            .bind(&keys)
            .fetch_all(&mut *tx)
            .await?;
            for &index in &missing {
                let wanted = &jobs[index];
                let found = existing.iter().find(|row| {
                    row.user_id.as_deref().unwrap_or_default()
                        == wanted.user_id.as_deref().unwrap_or_default()
                        && row.idempotency_key == wanted.idempotency_key
                });
                let key = wanted.idempotency_key.clone().unwrap_or_default();
                let Some(row) = found else {
                    return Err(DbError::IdempotencyConflict(key));
                };
                if row.job_type != wanted.job_type || row.payload != wanted.payload {
                    return Err(DbError::IdempotencyConflict(key));
                }
                outcomes[index] = Some(EnqueueOutcome {
                    job: row.clone(),
                    created: row.id == wanted.id,
                });
            }
        }
        tx.commit().await?;
        Ok(outcomes.into_iter().flatten().collect())
    }

    /// The multi-row INSERT behind [`Db::enqueue_jobs`]: rows that lost an
    /// idempotency-key conflict are skipped.
    pub(crate) async fn insert_jobs<'e>(
        executor: impl sqlx::PgExecutor<'e>,
        jobs: &[NewJob],
    ) -> Result<Vec<JobRow>, DbError> {
        let rows: Vec<JobRow> = sqlx::query_as(
            r#"
            INSERT INTO jobs (id, queue, job_type, user_id, payload, status, priority,
                              max_retries, run_at, timeout_seconds, idempotency_key,
                              queued_at, traceparent)
            SELECT n.id, n.queue, n.job_type, n.user_id, n.payload,
                   CASE WHEN t.run_at > now() THEN 'scheduled' ELSE 'queued' END,
                   n.priority, n.max_retries, t.run_at, n.timeout_seconds, n.idempotency_key,
                   CASE WHEN t.run_at > now() THEN NULL ELSE now() END,
                   n.traceparent
              FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[],
                          $6::int[], $7::int[], $8::int[], $9::text[],
                          $10::timestamptz[], $11::bigint[], $12::text[])
                   WITH ORDINALITY
                   AS n(id, queue, job_type, user_id, payload, priority, max_retries,
                        timeout_seconds, idempotency_key, run_at, delay_ms, traceparent, ord)
             CROSS JOIN LATERAL (
                   SELECT coalesce(n.run_at,
                                   now() + make_interval(secs => coalesce(n.delay_ms, 0) / 1000.0))
                          AS run_at) t
             ORDER BY n.ord
            ON CONFLICT (coalesce(user_id, ''), idempotency_key)
               WHERE idempotency_key IS NOT NULL DO NOTHING
            RETURNING *
            "#,
        )
        .bind(jobs.iter().map(|j| j.id).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.queue.clone()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.job_type.clone()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.user_id.clone()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.payload.clone()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.priority).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.max_retries).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.timeout_seconds).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.idempotency_key.clone())
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| j.run_at).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.delay_ms).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.traceparent.clone())
                .collect::<Vec<_>>(),
        )
        .fetch_all(executor)
        .await?;
        Ok(rows)
    }

    /// One job, if it exists and (when `owner` is given) belongs to that user.
    pub async fn get_job(&self, id: Uuid, owner: Option<&str>) -> Result<Option<JobRow>, DbError> {
        Ok(sqlx::query_as(
            r#"
            SELECT * FROM jobs
             WHERE id = $1 AND ($2::text IS NULL OR user_id = $2)
            "#,
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A page of jobs, newest first. Ids are UUID v7, so id order is creation order
    /// and the last id of a page is the cursor of the next.
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRow>, DbError> {
        // Built per request: a generic plan with "$n IS NULL OR ..." predicates
        // could not use the per-user and per-queue indexes.
        let mut sql: QueryBuilder<Postgres> = QueryBuilder::new("SELECT * FROM jobs WHERE true");
        push_job_filter(&mut sql, filter);
        sql.push(" ORDER BY id DESC LIMIT ").push_bind(filter.limit);
        Ok(sql.build_query_as().fetch_all(&self.pool).await?)
    }

    /// Cancels a job that has not finished. A queued or scheduled job will never
    /// run; a processing job's attempt is superseded at once (its completion
    /// will be refused) and its worker is expected to stop it.
    pub async fn cancel_job(
        &self,
        id: Uuid,
        owner: Option<&str>,
    ) -> Result<CancelOutcome, DbError> {
        #[derive(sqlx::FromRow)]
        struct Cancelled {
            #[sqlx(flatten)]
            job: JobRow,
            was_running: bool,
        }
        let row: Option<Cancelled> = sqlx::query_as(
            r#"
            WITH target AS (
                SELECT id, status AS old_status FROM jobs
                 WHERE id = $1 AND ($2::text IS NULL OR user_id = $2)
                   AND status IN ('queued', 'scheduled', 'processing')
                 FOR UPDATE
            ), cancelled AS (
                UPDATE jobs j
                   SET status = 'cancelled', completed_at = now(), lease_expires_at = NULL
                  FROM target
                 WHERE j.id = target.id
                RETURNING j.*
            ), event AS (
                INSERT INTO job_events (job_id, attempt, kind, data)
                SELECT id, attempts, 'status', '{"status": "cancelled"}'::jsonb FROM cancelled
            )
            SELECT cancelled.*, (target.old_status = 'processing') AS was_running
              FROM cancelled JOIN target USING (id)
            "#,
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(Cancelled { job, was_running }) => {
                Ok(CancelOutcome::Cancelled { job, was_running })
            }
            None => match self.get_job(id, owner).await? {
                Some(job) => Ok(CancelOutcome::AlreadyTerminal(job)),
                None => Ok(CancelOutcome::NotFound),
            },
        }
    }

    /// Moves a failed or cancelled job back to `queued` with a fresh retry budget.
    /// The attempt counter keeps counting (it is the fencing token).
    pub async fn retry_job(&self, id: Uuid, owner: Option<&str>) -> Result<RetryOutcome, DbError> {
        let row: Option<JobRow> = sqlx::query_as(
            concat!(
                "WITH requeued AS (UPDATE jobs ",
                requeue_set!(),
                r#"
                 WHERE id = $1 AND ($2::text IS NULL OR user_id = $2)
                   AND status IN ('failed', 'cancelled')
                RETURNING *
            ), event AS (
                INSERT INTO job_events (job_id, attempt, kind, data)
                SELECT id, attempts, 'status', '{"status": "queued", "reason": "manual retry"}'::jsonb
                  FROM requeued
            )
            SELECT * FROM requeued
            "#
            ),
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(job) => Ok(RetryOutcome::Requeued(job)),
            None => match self.get_job(id, owner).await? {
                Some(job) => Ok(RetryOutcome::NotRetryable(job)),
                None => Ok(RetryOutcome::NotFound),
            },
        }
    }
}

/// Appends `filter`'s predicates (all but its limit) to a `WHERE true` clause.
pub(crate) fn push_job_filter(sql: &mut QueryBuilder<Postgres>, filter: &JobFilter) {
    if let Some(user) = &filter.user_id {
        sql.push(" AND user_id = ").push_bind(user.clone());
    }
    if let Some(status) = filter.status {
        sql.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(queue) = &filter.queue {
        sql.push(" AND queue = ").push_bind(queue.clone());
    }
    if let Some(job_type) = &filter.job_type {
        sql.push(" AND job_type = ").push_bind(job_type.clone());
    }
    if let Some(before) = filter.before {
        sql.push(" AND id < ").push_bind(before);
    }
    if let Some(text) = &filter.error_contains {
        sql.push(" AND strpos(lower(error), lower(")
            .push_bind(text.clone())
            .push(")) > 0");
    }
}
