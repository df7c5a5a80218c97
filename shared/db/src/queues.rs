//! Queue settings (pause, concurrency) and statistics.

use crate::{Db, DbError};

/// Counts and rates for one queue.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueueStats {
    pub name: String,
    pub paused: bool,
    pub concurrency: Option<i32>,
    pub waiting: i64,
    pub scheduled: i64,
    pub active: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Completions per second over the last minute.
    pub rate_per_second: f64,
    /// Mean run time of the attempts completed in the last five minutes.
    pub avg_duration_ms: Option<f64>,
    /// Age of the oldest waiting job.
    pub oldest_waiting_ms: Option<f64>,
}

/// How many jobs of one queue are waiting, scheduled and running, and how
/// long its oldest waiting job has waited: the queue gauges of `/metrics`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct QueueDepth {
    pub queue: String,
    /// Status `queued`.
    pub waiting: i64,
    /// Status `scheduled` (delayed, or backing off before a retry).
    pub scheduled: i64,
    /// Status `processing`.
    pub running: i64,
    /// Seconds since the oldest waiting job was queued; 0 when none waits.
    pub oldest_waiting_seconds: f64,
}

impl Db {
    /// [`QueueDepth`] of every configured queue and every queue holding
    /// unfinished jobs. One aggregate per status, so that each reads only its
    /// partial index (`jobs_queued_dispatch`, `jobs_scheduled_due`,
    /// `jobs_processing_lease`) and the cost follows the unfinished jobs, not
    /// the table's history (one `status IN (…)` aggregate scans the table).
    pub async fn queue_depths(&self) -> Result<Vec<QueueDepth>, DbError> {
        Ok(sqlx::query_as(
            r#"
            WITH waiting AS (
                SELECT queue, count(*) AS n, min(queued_at) AS oldest
                  FROM jobs WHERE status = 'queued' GROUP BY queue
            ), scheduled AS (
                SELECT queue, count(*) AS n FROM jobs WHERE status = 'scheduled' GROUP BY queue
            ), running AS (
                SELECT queue, count(*) AS n FROM jobs WHERE status = 'processing' GROUP BY queue
            ), names AS (
                SELECT name FROM queues
                UNION SELECT queue FROM waiting
                UNION SELECT queue FROM scheduled
                UNION SELECT queue FROM running
            )
            SELECT n.name AS queue,
                   coalesce(w.n, 0)::bigint AS waiting,
                   coalesce(s.n, 0)::bigint AS scheduled,
                   coalesce(r.n, 0)::bigint AS running,
                   greatest(coalesce(extract(epoch FROM now() - w.oldest), 0), 0)::float8
                       AS oldest_waiting_seconds
              FROM names n
              LEFT JOIN waiting w ON w.queue = n.name
              LEFT JOIN scheduled s ON s.queue = n.name
              LEFT JOIN running r ON r.queue = n.name
             ORDER BY n.name
            "#,
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

impl Db {
    /// Statistics for every known queue (configured or holding jobs).
    pub async fn queue_stats(&self) -> Result<Vec<QueueStats>, DbError> {
        Ok(sqlx::query_as(
            r#"
            WITH counts AS (
                SELECT queue, status, count(*) AS n FROM jobs GROUP BY queue, status
            ), recent AS (
                SELECT queue,
                       count(*) FILTER (WHERE completed_at > now() - interval '1 minute') / 60.0 AS rate,
                       avg(extract(epoch FROM completed_at - started_at) * 1000.0) AS avg_ms
                  FROM jobs
                 WHERE status = 'completed' AND completed_at > now() - interval '5 minutes'
                 GROUP BY queue
            ), oldest AS (
                SELECT queue, extract(epoch FROM now() - min(queued_at)) * 1000.0 AS age_ms
                  FROM jobs WHERE status = 'queued' GROUP BY queue
            ), names AS (
                SELECT name FROM queues UNION SELECT DISTINCT queue FROM counts
            )
            SELECT n.name,
                   coalesce(q.paused, false) AS paused,
                   q.concurrency,
                   coalesce(sum(c.n) FILTER (WHERE c.status = 'queued'), 0)::bigint AS waiting,
                   coalesce(sum(c.n) FILTER (WHERE c.status = 'scheduled'), 0)::bigint AS scheduled,
                   coalesce(sum(c.n) FILTER (WHERE c.status = 'processing'), 0)::bigint AS active,
                   coalesce(sum(c.n) FILTER (WHERE c.status = 'completed'), 0)::bigint AS completed,
                   coalesce(sum(c.n) FILTER (WHERE c.status = 'failed'), 0)::bigint AS failed,
                   coalesce(sum(c.n) FILTER (WHERE c.status = 'cancelled'), 0)::bigint AS cancelled,
                   coalesce(max(r.rate), 0)::float8 AS rate_per_second,
                   max(r.avg_ms)::float8 AS avg_duration_ms,
                   max(o.age_ms)::float8 AS oldest_waiting_ms
              FROM names n
              LEFT JOIN queues q ON q.name = n.name
              LEFT JOIN counts c ON c.queue = n.name
              LEFT JOIN recent r ON r.queue = n.name
              LEFT JOIN oldest o ON o.queue = n.name
             GROUP BY n.name, q.paused, q.concurrency
             ORDER BY n.name
            "#,
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Pauses or resumes a queue (creating its settings row if needed). On
    /// resume, the queue's waiting jobs are marked undispatched: messages that
    /// arrived while it was paused were dropped, so the dispatch sweep sends
    /// them again. Returns the queue's waiting job count.
    pub async fn set_queue_paused(&self, name: &str, paused: bool) -> Result<i64, DbError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            r#"
            INSERT INTO queues (name, paused) VALUES ($1, $2)
            ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()
            "#,
        )
        .bind(name)
        .bind(paused)
        .execute(&mut *tx)
        .await?;
        let waiting = if paused {
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE queue = $1 AND status = 'queued'")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?
        } else {
            sqlx::query(
                r#"
                WITH locked AS (
                    SELECT id FROM jobs WHERE queue = $1 AND status = 'queued'
                     ORDER BY id FOR UPDATE
                )
                UPDATE jobs j SET dispatched_at = NULL
                  FROM locked
                 WHERE j.id = locked.id AND j.status = 'queued'
                "#,
            )
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected() as i64
        };
        tx.commit().await?;
        Ok(waiting)
    }

    /// Per-queue concurrency overrides set by an operator.
    pub async fn queue_concurrency(&self) -> Result<Vec<(String, Option<i32>)>, DbError> {
        Ok(
            sqlx::query_as("SELECT name, concurrency FROM queues ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

impl Db {
    /// Enqueue-to-start delay (ms) of each started job among `ids`,
    /// measured on the database clock (benchmarks).
    pub async fn start_delays_ms(&self, ids: &[uuid::Uuid]) -> Result<Vec<f64>, DbError> {
        Ok(sqlx::query_scalar(
            r#"
            SELECT (extract(epoch FROM started_at - created_at) * 1000.0)::float8
              FROM jobs
             WHERE id = ANY($1) AND started_at IS NOT NULL
            "#,
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many jobs of `queue` have status `status` (benchmarks, tests).
    pub async fn count_jobs(&self, queue: &str, status: &str) -> Result<i64, DbError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE queue = $1 AND status = $2")
                .bind(queue)
                .bind(status)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

impl Db {
    /// Which of `names` have no settings row (no operator configured them).
    pub async fn unconfigured_queues(&self, names: &[String]) -> Result<Vec<String>, DbError> {
        Ok(sqlx::query_scalar(
            r#"
            SELECT n FROM unnest($1::text[]) AS n
             WHERE NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = n)
            "#,
        )
        .bind(names)
        .fetch_all(&self.pool)
        .await?)
    }
}

impl Db {
    /// `VACUUM ANALYZE` of the job tables (benchmarks on machines without
    /// autovacuum; production relies on autovacuum). Without a statement
    /// timeout: on large tables it takes minutes, and blocks nobody.
    pub async fn vacuum_job_tables(&self) -> Result<(), DbError> {
        let mut conn = self.unbounded_connection().await?;
        sqlx::query("VACUUM ANALYZE jobs, job_events")
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}
