//! What the scheduler's alerter asks of the database: the detectors'
//! queries, the dedup record of sent alerts and the global rate limit.
//!
//! A detector runs inside an [`AlertPass`]: one transaction that holds the
//! detector's `alert_state` row (`FOR UPDATE SKIP LOCKED`, so one replica
//! evaluates it at a time and the others skip it), reads its window, records
//! its alerts in `alerts`, takes budget, and commits only after the alerter
//! has tried to send. Dropping a pass rolls it all back: its window, its
//! dedup rows and its budget are left for the next pass.
//!
//! Event detectors (failed jobs, lost leases) read a window
//! `[watermark, cutoff)` of commit-ordered timestamps. A row becomes visible
//! when its transaction commits, which may be after a later timestamp was
//! already visible, so the cutoff is held below the start of every
//! transaction still in progress (from `pg_stat_activity`): whatever such a
//! transaction writes is stamped at or after its start, and falls into a
//! later window. See [`AlertPass::window`].

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Db, DbError};

/// How far back a detector looks at most: its first pass, or the first
/// after alerts were off for a while, reports the last hour, not all history.
const MAX_LOOKBACK_SECONDS: f64 = 3600.0;
/// The cutoff stays this far behind the database clock even when no
/// transaction is in progress: a margin for sessions whose start this role
/// cannot see in `pg_stat_activity`.
const SETTLE_SECONDS: f64 = 1.0;
/// … and at most this far, however old the oldest open transaction (an idle
/// `psql` session must not hold alerts back for ever). A row committed more
/// than this long after its transaction began can be missed.
const MAX_LAG_SECONDS: f64 = 60.0;
/// The `application_name` of alert passes: they write no job rows, so the
/// cutoff ignores them (one replica delivering does not hold another back).
const APPLICATION_NAME: &str = "roundhouse-alerter";

/// One detector's transaction; see the module docs. Dropping it rolls back.
pub struct AlertPass {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    detector: String,
    watermark: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for AlertPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertPass")
            .field("detector", &self.detector)
            .field("watermark", &self.watermark)
            .finish_non_exhaustive()
    }
}

/// An event window `[from, to)` on the database clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertWindow {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl AlertWindow {
    /// The window's length in seconds.
    pub fn seconds(&self) -> f64 {
        (self.to - self.from).num_milliseconds() as f64 / 1000.0
    }
}

/// A job that reached `failed` in a window.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FailedJob {
    pub id: Uuid,
    pub queue: String,
    pub job_type: String,
    pub attempts: i32,
    pub error: Option<String>,
    pub completed_at: DateTime<Utc>,
}

/// How many jobs of one queue and type failed in a window.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FailureGroup {
    pub queue: String,
    pub job_type: String,
    pub count: i64,
}

/// A job running longer than its queue's threshold.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LongRunningJob {
    pub id: Uuid,
    pub queue: String,
    pub job_type: String,
    pub attempts: i32,
    pub worker_id: Option<String>,
    pub running_seconds: f64,
    pub threshold_seconds: f64,
}

/// A queue whose oldest waiting job has waited longer than its threshold.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueueBacklog {
    pub queue: String,
    /// How long the oldest `queued` job has waited.
    pub oldest_seconds: f64,
    pub threshold_seconds: f64,
    /// Jobs waiting in the queue, counted up to [`QueueBacklog::COUNT_CAP`]
    /// (a count of a huge backlog every few seconds would cost more than it tells).
    pub waiting: i64,
}

impl QueueBacklog {
    /// `waiting` is at most this; equal means "at least".
    pub const COUNT_CAP: i64 = 100_000;
}

/// A worker whose leases the reaper expired in a window.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LostWorker {
    pub worker_id: String,
    /// Attempts reaped (requeued or failed).
    pub jobs: i64,
    /// Of those, jobs failed because it was their last allowed attempt.
    pub failed: i64,
}

impl Db {
    /// Starts a pass of `detector`, or `None` when another scheduler is
    /// evaluating it right now (it holds the detector's row).
    pub async fn begin_alert_pass(&self, detector: &str) -> Result<Option<AlertPass>, DbError> {
        // Outside the pass: a first insert racing another replica's must not
        // wait for that replica's whole pass.
        sqlx::query(
            r#"
            INSERT INTO alert_state (detector) VALUES ($1) ON CONFLICT (detector) DO NOTHING
            "#,
        )
        .bind(detector)
        .execute(&self.pool)
        .await?;
        let mut tx = self.pool.begin().await?;
        // A pass waits for the budget row while another replica sends; never
        // for longer than a delivery can take (and the statement timeout
        // leaves that to the lock timeout). It stays open, idle, while its
        // own messages go out: each is bounded by the alerter's timeouts, so
        // the idle limit only catches a pass that never ends.
        sqlx::query(
            r#"
            SELECT set_config('application_name', $1, true),
                   set_config('lock_timeout', '60s', true),
                   set_config('statement_timeout', '90s', true),
                   set_config('idle_in_transaction_session_timeout', '15min', true)
            "#,
        )
        .bind(APPLICATION_NAME)
        .execute(&mut *tx)
        .await?;
        let held: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
            r#"
            SELECT watermark FROM alert_state WHERE detector = $1 FOR UPDATE SKIP LOCKED
            "#,
        )
        .bind(detector)
        .fetch_optional(&mut *tx)
        .await?;
        Ok(held.map(|watermark| AlertPass {
            tx,
            detector: detector.to_owned(),
            watermark,
        }))
    }

    /// Deletes dedup rows whose condition has not been seen for
    /// `unseen_seconds` (their alert may fire again if it comes back).
    pub async fn prune_alerts(&self, unseen_seconds: f64) -> Result<u64, DbError> {
        Ok(sqlx::query(
            r#"
            DELETE FROM alerts WHERE last_seen_at < now() - make_interval(secs => $1)
            "#,
        )
        .bind(unseen_seconds)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}

impl AlertPass {
    /// The detector this pass holds.
    pub fn detector(&self) -> &str {
        &self.detector
    }

    /// The next event window: from the watermark (at most an hour back) to
    /// a cutoff below the start of every transaction still in progress,
    /// `SETTLE_SECONDS` behind the clock, at most `MAX_LAG_SECONDS` behind.
    /// `None` when it is empty.
    ///
    /// The cutoff is read in a statement of its own, before the window's
    /// rows are: a transaction that commits between the two is then either
    /// seen in progress (and excluded by the cutoff) or visible to the scan.
    pub async fn window(&mut self) -> Result<Option<AlertWindow>, DbError> {
        let (from, to): (DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
            r#"
            SELECT greatest(coalesce($1::timestamptz, '-infinity'),
                            now() - make_interval(secs => $2)),
                   greatest(now() - make_interval(secs => $4),
                            least(now() - make_interval(secs => $3),
                                  (SELECT min(xact_start) FROM pg_stat_activity
                                    WHERE datname = current_database()
                                      AND pid <> pg_backend_pid()
                                      AND backend_type = 'client backend'
                                      AND application_name <> $5
                                      AND xact_start IS NOT NULL)))
            "#,
        )
        .bind(self.watermark)
        .bind(MAX_LOOKBACK_SECONDS)
        .bind(SETTLE_SECONDS)
        .bind(MAX_LAG_SECONDS)
        .bind(APPLICATION_NAME)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok((to > from).then_some(AlertWindow { from, to }))
    }

    /// Moves the detector's watermark to `to` (kept only if the pass commits).
    pub async fn advance(&mut self, to: DateTime<Utc>) -> Result<(), DbError> {
        sqlx::query(
            r#"
            UPDATE alert_state SET watermark = $2, updated_at = now() WHERE detector = $1
            "#,
        )
        .bind(&self.detector)
        .bind(to)
        .execute(&mut *self.tx)
        .await?;
        self.watermark = Some(to);
        Ok(())
    }

    /// Per (queue, job type) counts of the jobs that reached `failed` in
    /// `window`, largest first.
    pub async fn failure_groups(
        &mut self,
        window: AlertWindow,
    ) -> Result<Vec<FailureGroup>, DbError> {
        Ok(sqlx::query_as(
            r#"
            SELECT queue, job_type, count(*) AS count
              FROM jobs
             WHERE status = 'failed' AND completed_at >= $1 AND completed_at < $2
             GROUP BY queue, job_type
             ORDER BY count(*) DESC, queue, job_type
            "#,
        )
        .bind(window.from)
        .bind(window.to)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    /// The first `limit` jobs that reached `failed` in `window`.
    pub async fn failed_jobs(
        &mut self,
        window: AlertWindow,
        limit: i64,
    ) -> Result<Vec<FailedJob>, DbError> {
        Ok(sqlx::query_as(
            r#"
            SELECT id, queue, job_type, attempts, left(error, 2000) AS error, completed_at
              FROM jobs
             WHERE status = 'failed' AND completed_at >= $1 AND completed_at < $2
             ORDER BY completed_at, id
             LIMIT $3
            "#,
        )
        .bind(window.from)
        .bind(window.to)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    /// Jobs `processing` for longer than their queue's threshold: the
    /// seconds in `overrides` for the queues it names, else `default_seconds`.
    /// Oldest first, at most `limit`.
    pub async fn long_running_jobs(
        &mut self,
        default_seconds: f64,
        overrides: &[(String, f64)],
        limit: i64,
    ) -> Result<Vec<LongRunningJob>, DbError> {
        let (queues, seconds): (Vec<String>, Vec<f64>) = overrides.iter().cloned().unzip();
        Ok(sqlx::query_as(
            r#"
            SELECT j.id, j.queue, j.job_type, j.attempts, j.worker_id,
                   extract(epoch FROM now() - j.started_at)::float8 AS running_seconds,
                   coalesce(o.seconds, $3)::float8 AS threshold_seconds
              FROM jobs j
              LEFT JOIN unnest($1::text[], $2::float8[]) AS o(queue, seconds) ON o.queue = j.queue
             WHERE j.status = 'processing'
               AND j.started_at < now() - make_interval(secs => coalesce(o.seconds, $3))
             ORDER BY j.started_at
             LIMIT $4
            "#,
        )
        .bind(queues)
        .bind(seconds)
        .bind(default_seconds)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    /// Unpaused queues whose oldest `queued` job has waited longer than the
    /// queue's threshold (`overrides`, else `default_seconds`). The queues
    /// holding waiting jobs are found by skipping through the
    /// `jobs_queued_dispatch` index, one probe per queue, never by reading
    /// the backlog.
    pub async fn queue_backlogs(
        &mut self,
        default_seconds: f64,
        overrides: &[(String, f64)],
    ) -> Result<Vec<QueueBacklog>, DbError> {
        let (queues, seconds): (Vec<String>, Vec<f64>) = overrides.iter().cloned().unzip();
        Ok(sqlx::query_as(
            r#"
            WITH RECURSIVE waiting AS (
                (SELECT queue FROM jobs WHERE status = 'queued' ORDER BY queue LIMIT 1)
                UNION ALL
                SELECT (SELECT j.queue FROM jobs j
                         WHERE j.status = 'queued' AND j.queue > w.queue
                         ORDER BY j.queue LIMIT 1)
                  FROM waiting w
                 WHERE w.queue IS NOT NULL
            ), oldest AS (
                SELECT w.queue,
                       (SELECT min(j.queued_at) FROM jobs j
                         WHERE j.status = 'queued' AND j.queue = w.queue) AS queued_at
                  FROM waiting w
                 WHERE w.queue IS NOT NULL
            )
            SELECT o.queue,
                   extract(epoch FROM now() - o.queued_at)::float8 AS oldest_seconds,
                   coalesce(t.seconds, $3)::float8 AS threshold_seconds,
                   (SELECT count(*) FROM (SELECT 1 FROM jobs j
                                           WHERE j.status = 'queued' AND j.queue = o.queue
                                           LIMIT $4) c) AS waiting
              FROM oldest o
              LEFT JOIN unnest($1::text[], $2::float8[]) AS t(queue, seconds) ON t.queue = o.queue
             WHERE o.queued_at < now() - make_interval(secs => coalesce(t.seconds, $3))
               AND NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = o.queue AND q.paused)
             ORDER BY o.queue
            "#,
        )
        .bind(queues)
        .bind(seconds)
        .bind(default_seconds)
        .bind(QueueBacklog::COUNT_CAP)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    /// The workers whose leases the reaper expired in `window` (from its
    /// `status` events, reason `lease expired`), most jobs first.
    pub async fn lost_workers(&mut self, window: AlertWindow) -> Result<Vec<LostWorker>, DbError> {
        // Events written before the reaper recorded `workerId` name the
        // worker only in their error message.
        Ok(sqlx::query_as(
            r#"
            SELECT coalesce(data ->> 'workerId',
                            substring(data ->> 'error' FROM 'worker (.*) was lost'),
                            '?') AS worker_id,
                   count(*) AS jobs,
                   count(*) FILTER (WHERE data ->> 'status' = 'failed') AS failed
              FROM job_events
             WHERE kind = 'status' AND (data ->> 'reason') = 'lease expired'
               AND created_at >= $1 AND created_at < $2
             GROUP BY 1
             ORDER BY count(*) DESC, 1
            "#,
        )
        .bind(window.from)
        .bind(window.to)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    /// Records that the conditions `fingerprints` (of `kind`) hold now, and
    /// returns those to announce: new ones, and with `rearm_after_seconds`
    /// those last announced longer ago than that (which re-opens a resolved
    /// one). Without it an alert is announced once for as long as its row
    /// lives.
    pub async fn record_alerts(
        &mut self,
        kind: &str,
        fingerprints: &[String],
        rearm_after_seconds: Option<f64>,
    ) -> Result<Vec<String>, DbError> {
        // ON CONFLICT DO UPDATE refuses to touch one row twice.
        let mut fingerprints = fingerprints.to_vec();
        fingerprints.sort();
        fingerprints.dedup();
        if fingerprints.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, bool)> = sqlx::query_as(
            r#"
            INSERT INTO alerts AS a (fingerprint, kind)
            SELECT f, $2 FROM unnest($1::text[]) AS f
            ON CONFLICT (fingerprint) DO UPDATE
               SET occurrences = a.occurrences + 1,
                   last_seen_at = now(),
                   last_sent_at = CASE WHEN a.last_sent_at < now() - make_interval(secs => $3)
                                       THEN now() ELSE a.last_sent_at END,
                   resolved_at = CASE WHEN a.last_sent_at < now() - make_interval(secs => $3)
                                      THEN NULL ELSE a.resolved_at END
            RETURNING fingerprint, last_sent_at = now()
            "#,
        )
        .bind(&fingerprints)
        .bind(kind)
        // NULL: `x < now() - NULL` is never true, so nothing re-arms.
        .bind(rearm_after_seconds)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(fingerprint, announce)| announce.then_some(fingerprint))
            .collect())
    }

    /// Marks the open alerts of `kind` that are not in `firing` resolved,
    /// and returns their fingerprints.
    pub async fn resolve_alerts(
        &mut self,
        kind: &str,
        firing: &[String],
    ) -> Result<Vec<String>, DbError> {
        Ok(sqlx::query_scalar(
            r#"
            UPDATE alerts SET resolved_at = now()
             WHERE kind = $1 AND resolved_at IS NULL AND fingerprint <> ALL($2)
            RETURNING fingerprint
            "#,
        )
        .bind(kind)
        .bind(firing)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    /// Takes one message from the hourly budget of `max_per_hour`: true
    /// when it may be sent; false when the budget is spent, in which case
    /// the message is counted as suppressed under `kind`. Holds the budget
    /// row until the pass ends, which serialises senders across replicas.
    pub async fn take_alert_budget(
        &mut self,
        kind: &str,
        max_per_hour: i32,
    ) -> Result<bool, DbError> {
        self.lock_budget().await?;
        Ok(sqlx::query_scalar(
            r#"
            UPDATE alert_budget b
               SET sent_at = r.recent || CASE WHEN cardinality(r.recent) < $2
                                              THEN ARRAY[now()] ELSE '{}' END,
                   suppressed = CASE WHEN cardinality(r.recent) < $2 THEN b.suppressed
                                     ELSE jsonb_set(b.suppressed, ARRAY[$1::text],
                                                    to_jsonb(coalesce((b.suppressed ->> $1)::int, 0) + 1))
                                END
              FROM (SELECT array(SELECT t FROM unnest(sent_at) AS t
                                  WHERE t > now() - interval '1 hour' ORDER BY t) AS recent
                      FROM alert_budget) r
            RETURNING cardinality(r.recent) < $2
            "#,
        )
        .bind(kind)
        .bind(max_per_hour)
        .fetch_one(&mut *self.tx)
        .await?)
    }

    /// When alerts were suppressed and the budget has room again: takes one
    /// message from it, clears the suppressed counts and returns them
    /// (kind, count) for the note that says so.
    pub async fn release_suppressed(
        &mut self,
        max_per_hour: i32,
    ) -> Result<Option<Vec<(String, i64)>>, DbError> {
        let none = |counts: &serde_json::Value| counts.as_object().is_none_or(|c| c.is_empty());
        // Usually nothing was suppressed: say so without queueing for the
        // lock behind another replica's delivery.
        let glimpse: serde_json::Value =
            sqlx::query_scalar(r#"SELECT suppressed FROM alert_budget"#)
                .fetch_one(&mut *self.tx)
                .await?;
        if none(&glimpse) {
            return Ok(None);
        }
        let suppressed = self.lock_budget().await?;
        if none(&suppressed) {
            return Ok(None);
        }
        let released: Option<bool> = sqlx::query_scalar(
            r#"
            UPDATE alert_budget b
               SET sent_at = r.recent || ARRAY[now()], suppressed = '{}'::jsonb
              FROM (SELECT array(SELECT t FROM unnest(sent_at) AS t
                                  WHERE t > now() - interval '1 hour' ORDER BY t) AS recent
                      FROM alert_budget) r
             WHERE cardinality(r.recent) < $1
            RETURNING true
            "#,
        )
        .bind(max_per_hour)
        .fetch_optional(&mut *self.tx)
        .await?;
        if released.is_none() {
            return Ok(None);
        }
        let mut counts: Vec<(String, i64)> = suppressed
            .as_object()
            .into_iter()
            .flatten()
            .map(|(kind, n)| (kind.clone(), n.as_i64().unwrap_or(0)))
            .collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(Some(counts))
    }

    /// Locks the budget row (waiting for another replica's pass to end) and
    /// returns its suppressed counts as they are now: in READ COMMITTED, a
    /// row locked after a wait is read in its newest version, and so are the
    /// later statements' reads of it.
    async fn lock_budget(&mut self) -> Result<serde_json::Value, DbError> {
        Ok(
            sqlx::query_scalar(r#"SELECT suppressed FROM alert_budget FOR UPDATE"#)
                .fetch_one(&mut *self.tx)
                .await?,
        )
    }

    /// Keeps what the pass did.
    pub async fn commit(self) -> Result<(), DbError> {
        self.tx.commit().await?;
        Ok(())
    }
}
