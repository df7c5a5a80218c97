//! Cron firing: turns a due schedule into the jobs its ticks call for.
//!
//! The database half (locking due schedules, inserting one job per tick,
//! advancing `next_run_at`, all in one transaction) is
//! [`roundhouse_db::Db::fire_due_schedules`]; this module is the planning
//! half it calls back: which ticks fire under the schedule's misfire policy,
//! with what job settings, and which tick comes next.

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use roundhouse_core::{CronSchedule, JobKind, Misfire, MisfirePolicy};
use roundhouse_db::{SchedulePlan, ScheduleRow, ScheduledJob};
use uuid::Uuid;

/// Plans one due schedule at database time `now`. A schedule that cannot be
/// planned (its cron, timezone or job type is no longer valid, or it will
/// never fire again) comes back with an `error`, which parks it.
pub(crate) fn plan(schedule: &ScheduleRow, now: DateTime<Utc>) -> SchedulePlan {
    let park = |error: String| SchedulePlan {
        error: Some(error),
        ..SchedulePlan::default()
    };
    let cron = match CronSchedule::parse(&schedule.cron, &schedule.timezone) {
        Ok(cron) => cron,
        Err(error) => return park(error.to_string()),
    };
    let job_type = match JobKind::parse(&schedule.job_type) {
        Ok(job_type) => job_type,
        Err(error) => return park(error.to_string()),
    };
    let Some(due) = schedule.next_run_at else {
        // First sight of a seeded schedule: wait for its next tick.
        return match cron.next_after(now) {
            Some(next) => SchedulePlan {
                next_run_at: Some(next),
                ..SchedulePlan::default()
            },
            None => park(format!("cron `{}` never fires again", schedule.cron)),
        };
    };
    let misfire = Misfire {
        policy: schedule
            .misfire_policy
            .parse()
            .unwrap_or(MisfirePolicy::RunOnce),
        grace: TimeDelta::seconds(i64::from(schedule.misfire_grace_seconds.max(0))),
        catch_up_limit: schedule.catch_up_limit.max(1) as u32,
    };
    let ticks = cron.plan(due, now, &misfire);
    let max_retries = schedule
        .max_retries
        .unwrap_or_else(|| job_type.default_max_retries());
    let timeout_seconds = schedule
        .timeout_seconds
        .unwrap_or_else(|| job_type.default_timeout_seconds());
    let jitter_ms = i64::from(schedule.jitter_seconds.max(0)) * 1000;
    let mut rng = rand::rng();
    let jobs = ticks
        .fire
        .iter()
        .map(|&tick| ScheduledJob {
            id: Uuid::now_v7(),
            tick: Some(tick),
            max_retries,
            timeout_seconds,
            run_at: Some(if jitter_ms > 0 {
                tick + TimeDelta::milliseconds(rng.random_range(0..=jitter_ms))
            } else {
                tick
            }),
        })
        .collect();
    SchedulePlan {
        jobs,
        skipped: ticks.skipped,
        error: ticks
            .next_run_at
            .is_none()
            .then(|| format!("cron `{}` never fires again", schedule.cron)),
        next_run_at: ticks.next_run_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, next_run_at: Option<DateTime<Utc>>) -> ScheduleRow {
        let at = Utc::now();
        ScheduleRow {
            id: Uuid::now_v7(),
            name: "test".into(),
            owner_id: None,
            cron: cron.into(),
            timezone: "UTC".into(),
            queue: "default".into(),
            job_type: "noop".into(),
            payload: serde_json::json!({}),
            priority: 0,
            max_retries: None,
            timeout_seconds: Some(7),
            enabled: true,
            misfire_policy: "skip".into(),
            misfire_grace_seconds: 0,
            catch_up_limit: 100,
            jitter_seconds: 0,
            next_run_at,
            last_run_at: None,
            last_job_id: None,
            last_error: None,
            created_at: at,
            updated_at: at,
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_seeded_schedule_only_learns_its_next_tick() {
        let plan = plan(&schedule("*/5 * * * *", None), utc("2026-01-01T00:01:00Z"));
        assert!(plan.jobs.is_empty());
        assert_eq!(plan.next_run_at, Some(utc("2026-01-01T00:05:00Z")));
        assert_eq!(plan.error, None);
    }

    #[test]
    fn a_due_tick_becomes_a_job_with_the_schedules_settings() {
        let due = utc("2026-01-01T00:05:00Z");
        let plan = plan(&schedule("*/5 * * * *", Some(due)), due);
        assert_eq!(plan.jobs.len(), 1);
        let job = &plan.jobs[0];
        assert_eq!(job.tick, Some(due));
        assert_eq!(job.run_at, Some(due));
        assert_eq!(job.timeout_seconds, 7);
        assert_eq!(
            job.max_retries,
            roundhouse_core::JobType::Noop.default_max_retries()
        );
        assert_eq!(plan.next_run_at, Some(utc("2026-01-01T00:10:00Z")));
    }

    #[test]
    fn jitter_delays_the_job_but_not_the_tick() {
        let due = utc("2026-01-01T00:05:00Z");
        let mut row = schedule("*/5 * * * *", Some(due));
        row.jitter_seconds = 30;
        for _ in 0..20 {
            let job = &plan(&row, due).jobs[0];
            assert_eq!(job.tick, Some(due));
            let run_at = job.run_at.unwrap();
            assert!(run_at >= due && run_at <= due + TimeDelta::seconds(30));
        }
    }

    #[test]
    fn an_invalid_stored_schedule_is_parked_with_the_reason() {
        let mut row = schedule("*/5 * * * *", Some(utc("2026-01-01T00:05:00Z")));
        row.timezone = "Nowhere/Land".into();
        let plan = plan(&row, utc("2026-01-01T00:05:00Z"));
        assert!(plan.jobs.is_empty());
        assert!(plan.error.unwrap().contains("Nowhere/Land"));
        assert_eq!(plan.next_run_at, None);
    }
}
