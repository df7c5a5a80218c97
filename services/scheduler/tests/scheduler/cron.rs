//! Cron schedules against the real PostgreSQL and RabbitMQ: firing on time,
//! exactly once per tick with several schedulers, misfire policies across a
//! `kill -9`, and what the database refuses.

use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use roundhouse_core::CronSchedule;
use roundhouse_db::{ScheduleRow, ScheduleSpec};
use roundhouse_test_support::TestEnv;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::scheduler;

fn spec(name: &str, cron: &str, policy: &str, grace_seconds: i32) -> ScheduleSpec {
    ScheduleSpec {
        name: name.to_owned(),
        cron: cron.to_owned(),
        timezone: "UTC".to_owned(),
        queue: "default".to_owned(),
        job_type: "noop".to_owned(),
        payload: json!({"from": name}),
        priority: 3,
        max_retries: None,
        timeout_seconds: None,
        enabled: true,
        misfire_policy: policy.to_owned(),
        misfire_grace_seconds: grace_seconds,
        catch_up_limit: 100,
        jitter_seconds: 0,
    }
}

/// Stores `spec` waiting for its next tick, as the API does.
async fn create(env: &TestEnv, spec: &ScheduleSpec) -> ScheduleRow {
    let next = CronSchedule::parse(&spec.cron, &spec.timezone)
        .unwrap()
        .next_after(Utc::now());
    env.db
        .create_schedule(Uuid::now_v7(), None, spec, next)
        .await
        .unwrap()
}

/// The jobs a schedule created: (tick, created_at), oldest tick first.
async fn fired(env: &TestEnv, schedule: Uuid) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    sqlx::query_as(
        "SELECT schedule_tick, created_at FROM jobs WHERE schedule_id = $1 ORDER BY schedule_tick",
    )
    .bind(schedule)
    .fetch_all(env.db.pool())
    .await
    .unwrap()
}

/// Seconds between consecutive ticks.
fn gaps(ticks: &[(DateTime<Utc>, DateTime<Utc>)]) -> Vec<i64> {
    ticks
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).num_seconds())
        .collect()
}

/// Runs an in-process scheduler loop for `duration`.
async fn run_for(env: &TestEnv, duration: Duration) {
    let scheduler = scheduler(env).await;
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { scheduler.run(stop).await }
    });
    tokio::time::sleep(duration).await;
    stop.cancel();
    task.await.unwrap();
}

fn scheduler_process(env: &TestEnv) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_roundhouse-scheduler"));
    command
        .env_clear()
        .envs(env.env())
        .kill_on_drop(true)
        .stdin(Stdio::null());
    if std::env::var_os("TEST_LOG").is_none() {
        command.stdout(Stdio::null()).stderr(Stdio::null());
    }
    command.spawn().expect("start roundhouse-scheduler")
}

async fn kill(mut child: tokio::process::Child) {
    child.start_kill().expect("kill -9");
    child.wait().await.unwrap();
}

#[tokio::test]
async fn an_every_second_schedule_fires_each_second_and_on_time() {
    let env = TestEnv::new().await.unwrap();
    let schedule = create(&env, &spec("every-second", "* * * * * *", "skip", 1)).await;
    run_for(&env, Duration::from_millis(4500)).await;

    let ticks = fired(&env, schedule.id).await;
    assert!(ticks.len() >= 4, "fired {} times in 4.5 s", ticks.len());
    assert!(
        gaps(&ticks).iter().all(|&gap| gap == 1),
        "one job per second, none missing or doubled: {:?}",
        gaps(&ticks)
    );
    for (tick, created) in &ticks {
        assert_eq!(tick.timestamp_subsec_nanos(), 0, "ticks are whole seconds");
        let late = *created - *tick;
        assert!(
            late >= TimeDelta::zero() && late < TimeDelta::milliseconds(1000),
            "tick {tick} fired {late} late"
        );
    }
    let job: (String, Option<String>, serde_json::Value, i32, i32) = sqlx::query_as(
        "SELECT job_type, user_id, payload, priority, max_retries FROM jobs WHERE schedule_id = $1 LIMIT 1",
    )
    .bind(schedule.id)
    .fetch_one(env.db.pool())
    .await
    .unwrap();
    assert_eq!(
        job,
        ("noop".into(), None, json!({"from": "every-second"}), 3, 3),
        "jobs carry the schedule's settings and the job type's default retries"
    );
    let row = env
        .db
        .get_schedule(schedule.id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.last_run_at, Some(ticks.last().unwrap().0));
    assert!(row.next_run_at.unwrap() > row.last_run_at.unwrap());
    assert!(row.last_job_id.is_some());
}

#[tokio::test]
async fn fired_jobs_are_published_and_marked_dispatched() {
    let env = TestEnv::new().await.unwrap();
    let schedule = create(&env, &spec("dispatched", "* * * * * *", "skip", 1)).await;
    run_for(&env, Duration::from_millis(2500)).await;
    let undispatched: (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE dispatched_at IS NULL) FROM jobs WHERE schedule_id = $1",
    )
    .bind(schedule.id)
    .fetch_one(env.db.pool())
    .await
    .unwrap();
    assert!(undispatched.0 >= 2);
    assert_eq!(
        undispatched.1, 0,
        "every fired job's dispatch was confirmed"
    );
}

#[tokio::test]
async fn two_scheduler_processes_fire_each_tick_exactly_once() {
    let env = TestEnv::new().await.unwrap();
    let mut schedules = Vec::new();
    for (i, cron) in ["* * * * * *", "*/2 * * * * *", "* * * * * *"]
        .into_iter()
        .enumerate()
    {
        schedules.push(create(&env, &spec(&format!("shared-{i}"), cron, "skip", 5)).await);
    }
    let (a, b) = (scheduler_process(&env), scheduler_process(&env));
    tokio::time::sleep(Duration::from_secs(6)).await;
    kill(a).await;
    kill(b).await;

    for schedule in &schedules {
        let ticks = fired(&env, schedule.id).await;
        let step = if schedule.cron.starts_with("*/2") {
            2
        } else {
            1
        };
        assert!(
            ticks.len() >= 6 / step as usize - 1,
            "{}: {ticks:?}",
            schedule.cron
        );
        assert!(
            gaps(&ticks).iter().all(|&gap| gap == step),
            "{}: every tick exactly once: {:?}",
            schedule.cron,
            gaps(&ticks)
        );
    }
    let (duplicates,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE schedule_id IS NOT NULL
          GROUP BY schedule_id, schedule_tick HAVING count(*) > 1) d",
    )
    .fetch_one(env.db.pool())
    .await
    .unwrap();
    assert_eq!(duplicates, 0);
}

#[tokio::test]
async fn a_killed_scheduler_restarts_without_refiring_and_applies_each_misfire_policy() {
    let env = TestEnv::new().await.unwrap();
    let skip = create(&env, &spec("skip", "* * * * * *", "skip", 1)).await;
    let once = create(&env, &spec("run-once", "* * * * * *", "run_once", 1)).await;
    let all = create(&env, &spec("catch-up", "* * * * * *", "catch_up", 1)).await;

    let first = scheduler_process(&env);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    kill(first).await;
    let killed_at = Utc::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restarted_at = Utc::now();
    let second = scheduler_process(&env);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    kill(second).await;

    let span = |ticks: &[(DateTime<Utc>, DateTime<Utc>)]| {
        (ticks.last().unwrap().0 - ticks[0].0).num_seconds() + 1
    };
    // catch_up: every second from the first tick to the last, once each.
    let all_ticks = fired(&env, all.id).await;
    assert!(
        gaps(&all_ticks).iter().all(|&gap| gap == 1),
        "catch_up fires every missed tick: {:?}",
        gaps(&all_ticks)
    );
    assert!(
        all_ticks
            .iter()
            .any(|(tick, _)| *tick > killed_at + TimeDelta::seconds(1)
                && *tick < restarted_at - TimeDelta::seconds(1))
    );

    // skip: one hole where the scheduler was down (less the one-second grace).
    let skip_ticks = fired(&env, skip.id).await;
    let holes: Vec<i64> = gaps(&skip_ticks).into_iter().filter(|&g| g > 1).collect();
    assert_eq!(holes.len(), 1, "skip: {:?}", gaps(&skip_ticks));
    let skipped = span(&skip_ticks) - skip_ticks.len() as i64;
    assert!(
        skipped >= 3,
        "about five seconds down, one of grace: skipped {skipped}"
    );

    // run_once: the same hole, but its latest tick fired once.
    let once_ticks = fired(&env, once.id).await;
    let once_missing = span(&once_ticks) - once_ticks.len() as i64;
    let holes: Vec<i64> = gaps(&once_ticks).into_iter().filter(|&g| g > 1).collect();
    assert_eq!(holes.len(), 1, "run_once: {:?}", gaps(&once_ticks));
    let after_hole = gaps(&once_ticks).iter().position(|&g| g > 1).unwrap() + 1;
    let (coalesced, created) = once_ticks[after_hole];
    assert!(
        created - coalesced > TimeDelta::seconds(1),
        "the tick after the hole is the coalesced missed one, fired late on restart"
    );
    assert!(
        (once_missing - (skipped - 1)).abs() <= 1,
        "run_once misses one tick fewer than skip ({once_missing} vs {skipped})"
    );

    for schedule in [&skip, &once, &all] {
        let (duplicates,): (i64,) = sqlx::query_as(
            "SELECT count(*) - count(DISTINCT schedule_tick) FROM jobs WHERE schedule_id = $1",
        )
        .bind(schedule.id)
        .fetch_one(env.db.pool())
        .await
        .unwrap();
        assert_eq!(duplicates, 0, "{}: no tick fired twice", schedule.name);
    }
}

#[tokio::test]
async fn a_tick_that_already_has_its_job_is_never_fired_again() {
    let env = TestEnv::new().await.unwrap();
    let schedule = create(&env, &spec("once-only", "* * * * * *", "catch_up", 60)).await;
    run_for(&env, Duration::from_millis(2200)).await;
    let before = fired(&env, schedule.id).await;
    assert!(before.len() >= 2);

    // As if a replica had read the schedule before the advance committed:
    // wind its clock back over ticks that already have their jobs.
    sqlx::query("UPDATE schedules SET next_run_at = $2 WHERE id = $1")
        .bind(schedule.id)
        .bind(before[0].0)
        .execute(env.db.pool())
        .await
        .unwrap();
    let scheduler = scheduler(&env).await;
    scheduler.run_once().await.unwrap();
    let after = fired(&env, schedule.id).await;
    for (tick, created) in &before {
        let copies: Vec<_> = after.iter().filter(|(t, _)| t == tick).collect();
        assert_eq!(
            copies,
            [&(*tick, *created)],
            "tick {tick} keeps its one job"
        );
    }
    let row = env
        .db
        .get_schedule(schedule.id, None)
        .await
        .unwrap()
        .unwrap();
    assert!(row.next_run_at.unwrap() > Utc::now() - TimeDelta::seconds(1));
}

#[tokio::test]
async fn a_disabled_schedule_waits_and_re_enabling_applies_its_misfire_policy() {
    let env = TestEnv::new().await.unwrap();
    let mut paused = spec("paused", "* * * * * *", "run_once", 1);
    paused.enabled = false;
    let schedule = create(&env, &paused).await;
    run_for(&env, Duration::from_millis(3500)).await;
    assert!(
        fired(&env, schedule.id).await.is_empty(),
        "disabled: nothing fires"
    );

    paused.enabled = true;
    env.db
        .update_schedule(schedule.id, None, &paused, None)
        .await
        .unwrap()
        .unwrap();
    run_for(&env, Duration::from_millis(300)).await;
    let ticks = fired(&env, schedule.id).await;
    // One coalesced job for the ~3 missed seconds (fired more than the
    // one-second grace after its tick), plus the tick(s) within the grace.
    let missed: Vec<_> = ticks
        .iter()
        .filter(|(tick, created)| *created - *tick > TimeDelta::seconds(1))
        .collect();
    assert_eq!(
        missed.len(),
        1,
        "run_once coalesces the missed ticks: {ticks:?}"
    );
    assert!(ticks.len() <= 3, "{ticks:?}");
}

#[tokio::test]
async fn seeded_maintenance_schedules_get_their_first_tick_without_firing() {
    let env = TestEnv::new().await.unwrap();
    let scheduler = scheduler(&env).await;
    let report = scheduler.run_once().await.unwrap();
    assert_eq!(report.fired, 0);
    let seeded = env.db.list_schedules(None, None, 100).await.unwrap();
    let names: Vec<&str> = seeded.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"cleanup_completed_jobs") && names.contains(&"requeue_stuck_jobs"));
    for schedule in &seeded {
        assert_eq!(schedule.job_type, "maintenance");
        assert_eq!(schedule.owner_id, None);
        let next = schedule.next_run_at.expect("first tick computed");
        let expected = CronSchedule::parse(&schedule.cron, "UTC")
            .unwrap()
            .next_after(Utc::now() - TimeDelta::seconds(5))
            .unwrap();
        assert!(
            (next - expected).num_seconds().abs() <= 300,
            "{next} vs {expected}"
        );
    }
}

#[tokio::test]
async fn a_schedule_that_can_no_longer_be_planned_is_disabled_with_the_reason() {
    let env = TestEnv::new().await.unwrap();
    let schedule = create(&env, &spec("broken", "* * * * * *", "skip", 1)).await;
    sqlx::query("UPDATE schedules SET timezone = 'Atlantis/Capital' WHERE id = $1")
        .bind(schedule.id)
        .execute(env.db.pool())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    scheduler(&env).await.run_once().await.unwrap();
    let row = env
        .db
        .get_schedule(schedule.id, None)
        .await
        .unwrap()
        .unwrap();
    assert!(!row.enabled);
    assert!(row.last_error.unwrap().contains("Atlantis/Capital"));
    assert!(fired(&env, schedule.id).await.is_empty());
}

#[tokio::test]
async fn a_cron_changed_through_the_api_is_followed_from_the_next_tick() {
    let env = TestEnv::new().await.unwrap();
    let api = roundhouse_api::startup::Application::build(env.settings())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", api.port());
    let stop_api = CancellationToken::new();
    tokio::spawn(api.run_until_stopped(stop_api.clone().cancelled_owned()));
    let http = reqwest::Client::new();
    let token = roundhouse_test_support::SERVICE_TOKEN;

    // Once a year: nothing fires while the scheduler runs.
    let created: serde_json::Value = http
        .post(format!("{base}/api/schedules"))
        .bearer_auth(token)
        .json(&json!({"name": "retimed", "cron": "0 0 1 1 *", "jobType": "noop"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();

    let scheduler = scheduler(&env).await;
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { scheduler.run(stop).await }
    });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(fired(&env, id).await.is_empty());

    // Every second from now on, without restarting anything.
    let changed_at = Utc::now();
    let response = http
        .put(format!("{base}/api/schedules/{id}"))
        .bearer_auth(token)
        .json(&json!({"cron": "* * * * * *"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_millis(3300)).await;
    stop.cancel();
    running.await.unwrap();
    stop_api.cancel();

    let ticks = fired(&env, id).await;
    assert!(ticks.len() >= 3, "{ticks:?}");
    assert!(gaps(&ticks).iter().all(|&gap| gap == 1), "{ticks:?}");
    let first = ticks[0].0;
    assert!(
        first > changed_at && first <= changed_at + TimeDelta::seconds(1),
        "the first job is the new cron's first tick after the change ({first} vs {changed_at})"
    );
}

#[tokio::test]
async fn the_scheduler_service_reports_health_and_cron_metrics_on_its_port() {
    let env = TestEnv::new().await.unwrap();
    create(&env, &spec("observed", "* * * * * *", "skip", 1)).await;
    // A schedule that missed ten minutes of ticks, with no grace: all skipped.
    let mut stale = spec("stale", "* * * * *", "skip", 0);
    stale.payload = json!({});
    let row = create(&env, &stale).await;
    sqlx::query("UPDATE schedules SET next_run_at = now() - interval '10 minutes' WHERE id = $1")
        .bind(row.id)
        .execute(env.db.pool())
        .await
        .unwrap();

    let app = roundhouse_scheduler::Application::build(env.settings())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(stop.clone().cancelled_owned()));
    tokio::time::sleep(Duration::from_millis(2300)).await;

    let http = reqwest::Client::new();
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["service"], "scheduler");
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    stop.cancel();
    running.await.unwrap().unwrap();

    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from:\n{metrics}"))
    };
    assert!(value("roundhouse_schedule_ticks_fired_total") >= 2.0);
    assert!(value("roundhouse_schedule_tick_lateness_seconds_count") >= 2.0);
    assert!(metrics.contains("roundhouse_schedule_tick_lateness_seconds_bucket{le=\"0.1\"}"));
    assert!(value("roundhouse_schedule_misfires_skipped_total") >= 10.0);
    let skipped = fired(&env, row.id).await;
    assert!(
        skipped
            .iter()
            .all(|(tick, _)| *tick > Utc::now() - TimeDelta::seconds(70)),
        "the stale schedule fired none of its missed ticks: {skipped:?}"
    );
}
