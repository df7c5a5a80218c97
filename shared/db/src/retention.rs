//! Retention: deleting finished jobs and stray events in small batches.
//!
//! Each call is one short statement over at most `limit` rows, found through
//! an index, so a cleanup over millions of rows never holds long locks or a
//! long transaction; the `maintenance` job loops over them.

use crate::{Db, DbError};

/// Which finished jobs a retention pass deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishedClass {
    /// `completed` and `cancelled` jobs.
    CompletedOrCancelled,
    /// `failed` jobs (the dead-letter set, usually kept longer).
    Failed,
}

/// Rows one retention batch deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    pub jobs: u64,
    pub events: u64,
}

impl Db {
    /// Deletes up to `limit` jobs of `class` that finished more than
    /// `older_than_seconds` ago, oldest first, with their events. Rows locked
    /// by someone else (a manual retry) are skipped.
    pub async fn delete_finished_jobs(
        &self,
        class: FinishedClass,
        older_than_seconds: f64,
        limit: i64,
    ) -> Result<Deleted, DbError> {
        // The status test is a literal so the planner can match it to the
        // partial index `jobs_finished`.
        let sql = match class {
            FinishedClass::CompletedOrCancelled => {
                r#"
                WITH doomed AS (
                    SELECT id FROM jobs
                     WHERE status IN ('completed', 'cancelled')
                       AND completed_at < now() - make_interval(secs => $1)
                     ORDER BY completed_at
                     LIMIT $2
                     FOR UPDATE SKIP LOCKED
                ), events AS (
                    DELETE FROM job_events WHERE job_id IN (SELECT id FROM doomed) RETURNING 1
                ), gone AS (
                    DELETE FROM jobs WHERE id IN (SELECT id FROM doomed) RETURNING 1
                )
                SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM events)
                "#
            }
            FinishedClass::Failed => {
                r#"
                WITH doomed AS (
                    SELECT id FROM jobs
                     WHERE status = 'failed'
                       AND completed_at < now() - make_interval(secs => $1)
                     ORDER BY completed_at
                     LIMIT $2
                     FOR UPDATE SKIP LOCKED
                ), events AS (
                    DELETE FROM job_events WHERE job_id IN (SELECT id FROM doomed) RETURNING 1
                ), gone AS (
                    DELETE FROM jobs WHERE id IN (SELECT id FROM doomed) RETURNING 1
                )
                SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM events)
                "#
            }
        };
        let (jobs, events): (i64, i64) = sqlx::query_as(sql)
            .bind(older_than_seconds)
            .bind(limit)
            .fetch_one(&self.pool)
            .await?;
        Ok(Deleted {
            jobs: jobs as u64,
            events: events as u64,
        })
    }

    /// Deletes the events, among those with ids in `after + 1 ..= after +
    /// window`, whose job no longer exists (left by a crash between deletes,
    /// or by a manual `DELETE FROM jobs`). Returns how many it deleted and
    /// the cursor for the next window, `None` once past the last event.
    pub async fn delete_orphan_events(
        &self,
        after: i64,
        window: i64,
    ) -> Result<(u64, Option<i64>), DbError> {
        let (deleted, last): (i64, Option<i64>) = sqlx::query_as(
            r#"
            WITH scanned AS (
                SELECT id, job_id FROM job_events
                 WHERE id > $1 ORDER BY id LIMIT $2
            ), gone AS (
                DELETE FROM job_events e
                 USING scanned s
                 WHERE e.id = s.id
                   AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = s.job_id)
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM gone), (SELECT max(id) FROM scanned)
            "#,
        )
        .bind(after)
        .bind(window)
        .fetch_one(&self.pool)
        .await?;
        Ok((deleted as u64, last))
    }
}
