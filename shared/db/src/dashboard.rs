//! The dashboard's own state (sessions, audit log) and the queries only the
//! dashboard asks: per-minute throughput, job deletion, bulk retry.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::jobs::{push_job_filter, requeue_set};
use crate::{Db, DbError, JobFilter, JobRow};

/// A signed-in dashboard browser.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DashboardSession {
    /// Who signed in: `password`, `service` or `user:<id>`.
    pub actor: String,
    /// The synchroniser token state-changing requests must echo.
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// One audited dashboard action.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub details: serde_json::Value,
    pub client_ip: Option<String>,
}

/// An action to write to the audit log.
#[derive(Debug, Clone)]
pub struct NewAuditEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub details: serde_json::Value,
    pub client_ip: Option<&'a str>,
}

/// Jobs finished in one minute.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct MinuteCounts {
    /// The start of the minute.
    pub minute: DateTime<Utc>,
    pub completed: i64,
    pub failed: i64,
}

/// What [`Db::delete_job`] did.
#[derive(Debug)]
pub enum DeleteOutcome {
    Deleted(JobRow),
    /// Only finished jobs are deleted; a live one must be cancelled first.
    NotFinished(JobRow),
    NotFound,
}

impl Db {
    /// Stores a new session under the SHA-256 of its cookie token.
    pub async fn create_dashboard_session(
        &self,
        token_hash: &[u8],
        csrf_token: &str,
        actor: &str,
        ttl_seconds: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            r#"
            INSERT INTO dashboard_sessions (token_hash, csrf_token, actor, expires_at)
            VALUES ($1, $2, $3, now() + make_interval(secs => $4))
            "#,
        )
        .bind(token_hash)
        .bind(csrf_token)
        .bind(actor)
        .bind(ttl_seconds as f64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The unexpired session with this token hash.
    pub async fn dashboard_session(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<DashboardSession>, DbError> {
        Ok(sqlx::query_as(
            r#"
            SELECT actor, csrf_token, expires_at FROM dashboard_sessions
             WHERE token_hash = $1 AND expires_at > now()
            "#,
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Signs a session out.
    pub async fn delete_dashboard_session(&self, token_hash: &[u8]) -> Result<(), DbError> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets expired sessions; returns how many.
    pub async fn delete_expired_dashboard_sessions(&self) -> Result<u64, DbError> {
        Ok(
            sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= now()")
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// Appends one entry to the audit log.
    pub async fn record_audit(&self, entry: &NewAuditEntry<'_>) -> Result<(), DbError> {
        sqlx::query(
            r#"
            INSERT INTO audit_log (actor, action, target, details, client_ip)
            VALUES ($1, $2, $3, $4, $5)
            "#,
        )
        .bind(entry.actor)
        .bind(entry.action)
        .bind(entry.target)
        .bind(&entry.details)
        .bind(entry.client_ip)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest audit entries, newest first, below `before` when given.
    pub async fn audit_entries(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, DbError> {
        Ok(sqlx::query_as(
            r#"
            SELECT id, at, actor, action, target, details, client_ip FROM audit_log
             WHERE $1::bigint IS NULL OR id < $1
             ORDER BY id DESC LIMIT $2
            "#,
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Completed and failed jobs per minute over the last `minutes` minutes,
    /// optionally of one queue; minutes with neither are left out.
    pub async fn finished_per_minute(
        &self,
        queue: Option<&str>,
        minutes: i32,
    ) -> Result<Vec<MinuteCounts>, DbError> {
        // The status list matches the partial index `jobs_finished`.
        Ok(sqlx::query_as(
            r#"
            SELECT date_trunc('minute', completed_at) AS minute,
                   count(*) FILTER (WHERE status = 'completed') AS completed,
                   count(*) FILTER (WHERE status = 'failed') AS failed
              FROM jobs
             WHERE status IN ('completed', 'failed', 'cancelled')
               AND completed_at >= date_trunc('minute', now()) - make_interval(mins => $2 - 1)
               AND ($1::text IS NULL OR queue = $1)
             GROUP BY 1 ORDER BY 1
            "#,
        )
        .bind(queue)
        .bind(minutes)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes a finished job and its events.
    pub async fn delete_job(&self, id: Uuid) -> Result<DeleteOutcome, DbError> {
        let row: Option<JobRow> = sqlx::query_as(
            r#"
            WITH doomed AS (
                SELECT id FROM jobs
                 WHERE id = $1 AND status IN ('completed', 'failed', 'cancelled')
                 FOR UPDATE
            ), events AS (
                DELETE FROM job_events WHERE job_id IN (SELECT id FROM doomed)
            )
            DELETE FROM jobs WHERE id IN (SELECT id FROM doomed) RETURNING *
            "#,
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(job) => Ok(DeleteOutcome::Deleted(job)),
            None => match self.get_job(id, None).await? {
                Some(job) => Ok(DeleteOutcome::NotFinished(job)),
                None => Ok(DeleteOutcome::NotFound),
            },
        }
    }

    /// Requeues up to `limit` failed jobs matching `filter` (its status and
    /// cursor are ignored), oldest first, as [`Db::retry_job`] does one.
    /// Jobs another transaction holds are skipped, not waited for.
    pub async fn retry_failed_jobs(
        &self,
        filter: &JobFilter,
        limit: i64,
    ) -> Result<Vec<JobRow>, DbError> {
        let filter = JobFilter {
            status: None,
            before: None,
            ..filter.clone()
        };
        let mut sql: QueryBuilder<Postgres> =
            QueryBuilder::new("WITH picked AS (SELECT id FROM jobs WHERE status = 'failed'");
        push_job_filter(&mut sql, &filter);
        sql.push(" ORDER BY id LIMIT ")
            .push_bind(limit)
            .push(" FOR UPDATE SKIP LOCKED)")
            .push(concat!(
                ", requeued AS (UPDATE jobs j ",
                requeue_set!(),
                r#"
                      FROM picked
                     WHERE j.id = picked.id
                    RETURNING j.*
                ), event AS (
                    INSERT INTO job_events (job_id, attempt, kind, data)
                    SELECT id, attempts, 'status', '{"status": "queued", "reason": "bulk retry"}'::jsonb
                      FROM requeued
                )
                SELECT * FROM requeued ORDER BY id
                "#
            ));
        Ok(sql.build_query_as().fetch_all(&self.pool).await?)
    }
}
