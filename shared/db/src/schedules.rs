//! Cron schedules: their CRUD, and the scheduler's firing transaction.
//!
//! Firing is exactly-once per tick by construction: the due schedules are
//! locked with `FOR UPDATE SKIP LOCKED`, their jobs inserted and their
//! `next_run_at` advanced in one transaction, and `jobs_schedule_tick`
//! (unique on schedule and tick) refuses a second job for a tick even if two
//! writers ever raced past the lock.

use chrono::{DateTime, Utc};
use roundhouse_core::Dispatch;
use uuid::Uuid;

use crate::{Db, DbError, JobRow};

/// A `schedules` row as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScheduleRow {
    pub id: Uuid,
    pub name: String,
    pub owner_id: Option<String>,
    pub cron: String,
    pub timezone: String,
    pub queue: String,
    pub job_type: String,
    pub payload: serde_json::Value,
    pub priority: i32,
    pub max_retries: Option<i32>,
    pub timeout_seconds: Option<i32>,
    pub enabled: bool,
    pub misfire_policy: String,
    pub misfire_grace_seconds: i32,
    pub catch_up_limit: i32,
    pub jitter_seconds: i32,
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_job_id: Option<Uuid>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A schedule's settings, as written by create and update. Validation (cron,
/// timezone, job type, queue) is the caller's.
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub queue: String,
    pub job_type: String,
    pub payload: serde_json::Value,
    pub priority: i32,
    pub max_retries: Option<i32>,
    pub timeout_seconds: Option<i32>,
    pub enabled: bool,
    pub misfire_policy: String,
    pub misfire_grace_seconds: i32,
    pub catch_up_limit: i32,
    pub jitter_seconds: i32,
}

impl ScheduleSpec {
    /// The settings of a stored schedule (the base an update edits).
    pub fn of(row: &ScheduleRow) -> Self {
        Self {
            name: row.name.clone(),
            cron: row.cron.clone(),
            timezone: row.timezone.clone(),
            queue: row.queue.clone(),
            job_type: row.job_type.clone(),
            payload: row.payload.clone(),
            priority: row.priority,
            max_retries: row.max_retries,
            timeout_seconds: row.timeout_seconds,
            enabled: row.enabled,
            misfire_policy: row.misfire_policy.clone(),
            misfire_grace_seconds: row.misfire_grace_seconds,
            catch_up_limit: row.catch_up_limit,
            jitter_seconds: row.jitter_seconds,
        }
    }
}

/// One job to create for a schedule: a tick's, or a manual trigger's (no tick).
#[derive(Debug, Clone)]
pub struct ScheduledJob {
    pub id: Uuid,
    pub tick: Option<DateTime<Utc>>,
    pub max_retries: i32,
    pub timeout_seconds: i32,
    /// When the job may start (the tick, plus any jitter); `None`: now, on
    /// the database clock.
    pub run_at: Option<DateTime<Utc>>,
}

/// The planner's verdict on one due schedule.
#[derive(Debug, Clone, Default)]
pub struct SchedulePlan {
    /// Jobs to create, oldest tick first.
    pub jobs: Vec<ScheduledJob>,
    /// Missed ticks the misfire policy dropped.
    pub skipped: u64,
    /// The tick to wait for next; `None` parks the schedule (it never fires
    /// again, or could not be planned: see `error`).
    pub next_run_at: Option<DateTime<Utc>>,
    /// Why the schedule could not be planned.
    pub error: Option<String>,
}

/// A job a tick created.
#[derive(Debug, Clone)]
pub struct FiredJob {
    pub schedule_id: Uuid,
    pub schedule_name: String,
    pub job_id: Uuid,
    pub tick: DateTime<Utc>,
    /// How long after its tick the job was created.
    pub lateness: chrono::TimeDelta,
    /// Present when the job is queued now (absent while jitter delays it).
    pub dispatch: Option<Dispatch>,
}

/// What one firing pass did.
#[derive(Debug, Clone, Default)]
pub struct FireReport {
    /// Schedules that were due and planned.
    pub schedules: usize,
    pub fired: Vec<FiredJob>,
    /// Missed ticks dropped by misfire policies.
    pub skipped: u64,
    /// Schedules parked because they could not be planned.
    pub errors: Vec<(Uuid, String)>,
}

impl Db {
    /// Stores a new schedule. A name already used by the same owner is
    /// [`DbError::Duplicate`].
    pub async fn create_schedule(
        &self,
        id: Uuid,
        owner: Option<&str>,
        spec: &ScheduleSpec,
        next_run_at: Option<DateTime<Utc>>,
    ) -> Result<ScheduleRow, DbError> {
        sqlx::query_as(
            r#"
            INSERT INTO schedules (id, owner_id, name, cron, timezone, queue, job_type, payload,
                                   priority, max_retries, timeout_seconds, enabled,
                                   misfire_policy, misfire_grace_seconds, catch_up_limit,
                                   jitter_seconds, next_run_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
            RETURNING *
            "#,
        )
        .bind(id)
        .bind(owner)
        .bind(&spec.name)
        .bind(&spec.cron)
        .bind(&spec.timezone)
        .bind(&spec.queue)
        .bind(&spec.job_type)
        .bind(&spec.payload)
        .bind(spec.priority)
        .bind(spec.max_retries)
        .bind(spec.timeout_seconds)
        .bind(spec.enabled)
        .bind(&spec.misfire_policy)
        .bind(spec.misfire_grace_seconds)
        .bind(spec.catch_up_limit)
        .bind(spec.jitter_seconds)
        .bind(next_run_at)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| DbError::duplicate_or(e, "schedules_name", &spec.name))
    }

    /// One schedule, if it exists and (when `owner` is given) belongs to that user.
    pub async fn get_schedule(
        &self,
        id: Uuid,
        owner: Option<&str>,
    ) -> Result<Option<ScheduleRow>, DbError> {
        Ok(sqlx::query_as(
            "SELECT * FROM schedules WHERE id = $1 AND ($2::text IS NULL OR owner_id = $2)",
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A page of schedules in creation order (ids are UUID v7), after `after`.
    pub async fn list_schedules(
        &self,
        owner: Option<&str>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<ScheduleRow>, DbError> {
        Ok(sqlx::query_as(
            r#"
            SELECT * FROM schedules
             WHERE ($1::text IS NULL OR owner_id = $1) AND ($2::uuid IS NULL OR id > $2)
             ORDER BY id
             LIMIT $3
            "#,
        )
        .bind(owner)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Rewrites a schedule's settings. `next_run_at` is replaced only when
    /// `Some` (the cron or timezone changed); otherwise the schedule keeps
    /// waiting for the tick it was waiting for. Clears `last_error`.
    pub async fn update_schedule(
        &self,
        id: Uuid,
        owner: Option<&str>,
        spec: &ScheduleSpec,
        next_run_at: Option<Option<DateTime<Utc>>>,
    ) -> Result<Option<ScheduleRow>, DbError> {
        sqlx::query_as(
            r#"
            UPDATE schedules
               SET name = $3, cron = $4, timezone = $5, queue = $6, job_type = $7,
                   payload = $8, priority = $9, max_retries = $10, timeout_seconds = $11,
                   enabled = $12, misfire_policy = $13, misfire_grace_seconds = $14,
                   catch_up_limit = $15, jitter_seconds = $16,
                   next_run_at = CASE WHEN $17 THEN $18 ELSE next_run_at END,
                   last_error = NULL, updated_at = now()
             WHERE id = $1 AND ($2::text IS NULL OR owner_id = $2)
            RETURNING *
            "#,
        )
        .bind(id)
        .bind(owner)
        .bind(&spec.name)
        .bind(&spec.cron)
        .bind(&spec.timezone)
        .bind(&spec.queue)
        .bind(&spec.job_type)
        .bind(&spec.payload)
        .bind(spec.priority)
        .bind(spec.max_retries)
        .bind(spec.timeout_seconds)
        .bind(spec.enabled)
        .bind(&spec.misfire_policy)
        .bind(spec.misfire_grace_seconds)
        .bind(spec.catch_up_limit)
        .bind(spec.jitter_seconds)
        .bind(next_run_at.is_some())
        .bind(next_run_at.flatten())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| DbError::duplicate_or(e, "schedules_name", &spec.name))
    }

    /// Deletes a schedule. Jobs it already created stay.
    pub async fn delete_schedule(&self, id: Uuid, owner: Option<&str>) -> Result<bool, DbError> {
        let done = sqlx::query(
            "DELETE FROM schedules WHERE id = $1 AND ($2::text IS NULL OR owner_id = $2)",
        )
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Creates a job for `schedule` outside its cron (a manual trigger). The
    /// job is queued undispatched; the caller publishes it.
    pub async fn trigger_schedule(
        &self,
        schedule: &ScheduleRow,
        job: &ScheduledJob,
    ) -> Result<JobRow, DbError> {
        let mut tx = self.pool.begin().await?;
        let rows =
            Self::insert_schedule_jobs(&mut *tx, std::slice::from_ref(schedule), &[(0, job)])
                .await?;
        sqlx::query("UPDATE schedules SET last_job_id = $2 WHERE id = $1")
            .bind(schedule.id)
            .bind(job.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.into_iter()
            .next()
            .ok_or_else(|| DbError::Sqlx(sqlx::Error::RowNotFound))
    }

    /// Fires up to `limit` due schedules in one transaction: locks them
    /// (skipping rows another scheduler or an API update holds), asks `plan`
    /// what each should fire given the database's `now`, inserts those jobs
    /// and advances the schedules. Queued jobs are left undispatched; the
    /// caller publishes them and calls [`Db::mark_dispatched`].
    ///
    /// Schedules whose `next_run_at` was never computed (the seeded ones) are
    /// due too: `plan` sees them with `next_run_at = None`.
    pub async fn fire_due_schedules(
        &self,
        limit: i64,
        mut plan: impl FnMut(&ScheduleRow, DateTime<Utc>) -> SchedulePlan,
    ) -> Result<FireReport, DbError> {
        #[derive(sqlx::FromRow)]
        struct Due {
            #[sqlx(flatten)]
            schedule: ScheduleRow,
            db_now: DateTime<Utc>,
        }
        let mut tx = self.pool.begin().await?;
        let due: Vec<Due> = sqlx::query_as(
            r#"
            SELECT s.*, now() AS db_now FROM schedules s
             WHERE enabled AND (next_run_at <= now() OR next_run_at IS NULL)
             ORDER BY next_run_at NULLS FIRST
             LIMIT $1
             FOR UPDATE SKIP LOCKED
            "#,
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let Some(now) = due.first().map(|d| d.db_now) else {
            return Ok(FireReport::default());
        };
        let schedules: Vec<ScheduleRow> = due.into_iter().map(|d| d.schedule).collect();
        let plans: Vec<SchedulePlan> = schedules.iter().map(|s| plan(s, now)).collect();

        let wanted: Vec<(usize, &ScheduledJob)> = plans
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.jobs.iter().map(move |job| (i, job)))
            .collect();
        let inserted = Self::insert_schedule_jobs(&mut *tx, &schedules, &wanted).await?;

        let mut report = FireReport {
            schedules: schedules.len(),
            ..FireReport::default()
        };
        let names: std::collections::HashMap<Uuid, &str> =
            schedules.iter().map(|s| (s.id, s.name.as_str())).collect();
        let mut last_job: std::collections::HashMap<Uuid, Uuid> = Default::default();
        for row in inserted {
            let (Some(schedule_id), Some(tick)) = (row.schedule_id, row.schedule_tick) else {
                continue;
            };
            let name = names
                .get(&schedule_id)
                .copied()
                .unwrap_or_default()
                .to_owned();
            last_job.insert(schedule_id, row.id);
            report.fired.push(FiredJob {
                schedule_id,
                schedule_name: name,
                job_id: row.id,
                tick,
                lateness: now - tick,
                dispatch: (row.status == "queued").then(|| Dispatch {
                    job_id: row.id,
                    queue: row.queue.clone(),
                    priority: row.priority,
                    traceparent: row.traceparent.clone(),
                }),
            });
        }
        report.fired.sort_by_key(|f| (f.tick, f.job_id));

        let mut ids = Vec::with_capacity(schedules.len());
        let mut next = Vec::with_capacity(schedules.len());
        let mut last_tick = Vec::with_capacity(schedules.len());
        let mut last_ids = Vec::with_capacity(schedules.len());
        let mut errors = Vec::with_capacity(schedules.len());
        for (schedule, plan) in schedules.iter().zip(&plans) {
            report.skipped += plan.skipped;
            if let Some(error) = &plan.error {
                report.errors.push((schedule.id, error.clone()));
            }
            ids.push(schedule.id);
            next.push(plan.next_run_at);
            last_tick.push(plan.jobs.iter().filter_map(|j| j.tick).max());
            last_ids.push(last_job.get(&schedule.id).copied());
            errors.push(plan.error.clone());
        }
        sqlx::query(
            r#"
            UPDATE schedules s
               SET next_run_at = u.next_run_at,
                   enabled = s.enabled AND u.error IS NULL,
                   last_run_at = coalesce(u.last_run_at, s.last_run_at),
                   last_job_id = coalesce(u.last_job_id, s.last_job_id),
                   last_error = u.error
              FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::uuid[], $5::text[])
                   AS u(id, next_run_at, last_run_at, last_job_id, error)
             WHERE s.id = u.id
            "#,
        )
        .bind(&ids)
        .bind(&next)
        .bind(&last_tick)
        .bind(&last_ids)
        .bind(&errors)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(report)
    }

    /// Seconds until the scheduler next has something to do: the earliest
    /// enabled schedule's tick or delayed job's `runAt`, measured on the
    /// database clock (negative when overdue; `None` when nothing waits).
    pub async fn seconds_until_next_due(&self) -> Result<Option<f64>, DbError> {
        let (seconds,): (Option<f64>,) = sqlx::query_as(
            r#"
            SELECT extract(epoch FROM least(
                       (SELECT min(next_run_at) FROM schedules WHERE enabled),
                       (SELECT min(run_at) FROM jobs WHERE status = 'scheduled')
                   ) - now())::float8
            "#,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(seconds)
    }

    /// Inserts schedule jobs; `jobs` pairs an index into `schedules` with the
    /// job. A tick that already has its job is skipped (not returned).
    async fn insert_schedule_jobs<'e>(
        executor: impl sqlx::PgExecutor<'e>,
        schedules: &[ScheduleRow],
        jobs: &[(usize, &ScheduledJob)],
    ) -> Result<Vec<JobRow>, DbError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let s = |f: &dyn Fn(&ScheduleRow) -> String| -> Vec<String> {
            jobs.iter().map(|&(i, _)| f(&schedules[i])).collect()
        };
        let rows: Vec<JobRow> = sqlx::query_as(
            r#"
            INSERT INTO jobs (id, queue, job_type, user_id, payload, status, priority,
                              max_retries, run_at, timeout_seconds, queued_at,
                              schedule_id, schedule_tick)
            SELECT n.id, n.queue, n.job_type, n.user_id, n.payload,
                   CASE WHEN t.run_at > now() THEN 'scheduled' ELSE 'queued' END,
                   n.priority, n.max_retries, t.run_at, n.timeout_seconds,
                   CASE WHEN t.run_at > now() THEN NULL ELSE now() END,
                   n.schedule_id, n.tick
              FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[],
                          $6::int[], $7::int[], $8::int[], $9::timestamptz[],
                          $10::uuid[], $11::timestamptz[])
                   AS n(id, queue, job_type, user_id, payload, priority, max_retries,
                        timeout_seconds, run_at, schedule_id, tick)
             CROSS JOIN LATERAL (SELECT coalesce(n.run_at, now()) AS run_at) t
            ON CONFLICT (schedule_id, schedule_tick) WHERE schedule_tick IS NOT NULL DO NOTHING
            RETURNING *
            "#,
        )
        .bind(jobs.iter().map(|&(_, j)| j.id).collect::<Vec<_>>())
        .bind(s(&|s| s.queue.clone()))
        .bind(s(&|s| s.job_type.clone()))
        .bind(
            jobs.iter()
                .map(|&(i, _)| schedules[i].owner_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            jobs.iter()
                .map(|&(i, _)| schedules[i].payload.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            jobs.iter()
                .map(|&(i, _)| schedules[i].priority)
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|&(_, j)| j.max_retries).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|&(_, j)| j.timeout_seconds)
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|&(_, j)| j.run_at).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|&(i, _)| schedules[i].id)
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|&(_, j)| j.tick).collect::<Vec<_>>())
        .fetch_all(executor)
        .await?;
        Ok(rows)
    }
}

impl Db {
    /// For jobs created by cron ticks at or after `since` (the benchmark):
    /// milliseconds from tick to job creation, to the broker's confirmation
    /// of its dispatch, and to its start (each when it happened).
    pub async fn tick_lateness_ms(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(f64, Option<f64>, Option<f64>)>, DbError> {
        Ok(sqlx::query_as(
            r#"
            SELECT extract(epoch FROM created_at - schedule_tick)::float8 * 1000,
                   extract(epoch FROM dispatched_at - schedule_tick)::float8 * 1000,
                   extract(epoch FROM started_at - schedule_tick)::float8 * 1000
              FROM jobs
             WHERE schedule_tick >= $1
            "#,
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Disables every schedule (the benchmark's cleanup).
    pub async fn disable_all_schedules(&self) -> Result<u64, DbError> {
        let done = sqlx::query("UPDATE schedules SET enabled = false WHERE enabled")
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
