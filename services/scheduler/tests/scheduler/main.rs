//! The scheduler's sweeps against the real PostgreSQL and RabbitMQ, driven
//! one tick at a time.

mod alerts;
mod cron;
mod metrics;

use std::time::{Duration, Instant};

use roundhouse_broker::{Broker, BrokerSettings};
use roundhouse_db::NewJob;
use roundhouse_scheduler::{Scheduler, TickReport};
use roundhouse_test_support::TestEnv;
use serde_json::json;
use uuid::Uuid;

async fn scheduler(env: &TestEnv) -> Scheduler {
    let settings = env.settings();
    let broker = Broker::start(BrokerSettings {
        url: settings.rabbitmq_url.clone(),
        prefix: settings.rabbitmq_prefix.clone(),
        connection_name: "scheduler-test".into(),
        confirm_timeout: Duration::from_secs(5),
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !broker.is_connected() {
        assert!(Instant::now() < deadline, "no broker");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Scheduler::new(env.db.clone(), broker, settings)
}

fn job(delay_ms: Option<i64>) -> NewJob {
    NewJob {
        id: Uuid::now_v7(),
        queue: "default".into(),
        job_type: "noop".into(),
        user_id: None,
        payload: json!({}),
        priority: 0,
        max_retries: 1,
        timeout_seconds: 60,
        idempotency_key: None,
        run_at: None,
        delay_ms,
        traceparent: None,
    }
}

async fn tick_both(a: &Scheduler, b: &Scheduler) -> (TickReport, TickReport) {
    let (x, y) = tokio::join!(a.run_once(), b.run_once());
    (x.unwrap(), y.unwrap())
}

#[tokio::test]
async fn two_schedulers_promote_each_due_job_exactly_once() {
    let env = TestEnv::new().await.unwrap();
    let (a, b) = (scheduler(&env).await, scheduler(&env).await);
    let jobs: Vec<NewJob> = (0..300).map(|_| job(Some(1500))).collect();
    env.db.enqueue_jobs(&jobs).await.unwrap();
    let (first, second) = tick_both(&a, &b).await;
    assert_eq!(first.promoted + second.promoted, 0, "nothing is due yet");

    tokio::time::sleep(Duration::from_millis(1600)).await;
    let mut promoted = 0;
    for _ in 0..5 {
        let (first, second) = tick_both(&a, &b).await;
        promoted += first.promoted + second.promoted;
    }
    assert_eq!(promoted, 300, "every due job promoted once, none twice");
    assert_eq!(env.db.count_jobs("default", "queued").await.unwrap(), 300);
}

#[tokio::test]
async fn two_schedulers_reap_each_expired_lease_exactly_once() {
    let env = TestEnv::new().await.unwrap();
    let jobs: Vec<NewJob> = (0..100).map(|_| job(None)).collect();
    env.db.enqueue_jobs(&jobs).await.unwrap();
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    // A worker claims them with a short lease and dies.
    let claimed = env.db.claim_jobs(&ids, "worker-dead", 0.2).await.unwrap();
    assert_eq!(claimed.len(), 100);
    tokio::time::sleep(Duration::from_millis(400)).await;

    let (a, b) = (scheduler(&env).await, scheduler(&env).await);
    let (first, second) = tick_both(&a, &b).await;
    assert_eq!(first.reaped_requeued + second.reaped_requeued, 100);
    let (first, second) = tick_both(&a, &b).await;
    assert_eq!(first.reaped_requeued + second.reaped_requeued, 0);
    let job = env.db.get_job(ids[0], None).await.unwrap().unwrap();
    assert_eq!(job.status, "queued");
    assert!(job.error.unwrap().contains("worker-dead"));
}

#[tokio::test]
async fn a_lost_lease_on_the_last_allowed_attempt_fails_the_job() {
    let env = TestEnv::new().await.unwrap();
    let mut last = job(None);
    last.max_retries = 0;
    env.db
        .enqueue_jobs(std::slice::from_ref(&last))
        .await
        .unwrap();
    env.db
        .claim_jobs(&[last.id], "worker-dead", 0.1)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = scheduler(&env).await.run_once().await.unwrap();
    assert_eq!(report.reaped_failed, 1);
    let row = env.db.get_job(last.id, None).await.unwrap().unwrap();
    assert_eq!(row.status, "failed");
    assert!(row.completed_at.is_some());
}

#[tokio::test]
async fn a_reaper_never_touches_a_job_that_completed_in_time() {
    // River #1302: a rescuer must not resurrect a job that just completed.
    let env = TestEnv::new().await.unwrap();
    let done = job(None);
    env.db
        .enqueue_jobs(std::slice::from_ref(&done))
        .await
        .unwrap();
    let claimed = env
        .db
        .claim_jobs(&[done.id], "worker-a", 0.2)
        .await
        .unwrap();
    env.db
        .complete_jobs(&[roundhouse_db::Completion {
            job_id: done.id,
            attempt: claimed[0].attempts,
            result: json!({"ok": true}),
        }])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = scheduler(&env).await.run_once().await.unwrap();
    assert_eq!(report.reaped_requeued + report.reaped_failed, 0);
    let row = env.db.get_job(done.id, None).await.unwrap().unwrap();
    assert_eq!(row.status, "completed");
}

#[tokio::test]
async fn unconfirmed_dispatches_are_resent_once_per_sweep_and_not_by_both_schedulers() {
    let env = TestEnv::new().await.unwrap();
    let (a, b) = (scheduler(&env).await, scheduler(&env).await);
    let jobs: Vec<NewJob> = (0..50).map(|_| job(None)).collect();
    env.db.enqueue_jobs(&jobs).await.unwrap();
    // Test settings give a one-second grace before a dispatch counts as lost.
    let (first, second) = tick_both(&a, &b).await;
    assert_eq!(
        first.redispatched + second.redispatched,
        0,
        "still within the grace period"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (first, second) = tick_both(&a, &b).await;
    assert_eq!(first.redispatched + second.redispatched, 50);
    assert_eq!(first.unconfirmed + second.unconfirmed, 0);
    let (first, second) = tick_both(&a, &b).await;
    assert_eq!(first.redispatched + second.redispatched, 0, "sent once");
}

#[tokio::test]
async fn dispatches_the_broker_does_not_confirm_are_retried_on_a_later_tick() {
    let env = TestEnv::new().await.unwrap();
    let jobs: Vec<NewJob> = (0..10).map(|_| job(None)).collect();
    env.db.enqueue_jobs(&jobs).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // A scheduler whose broker is unreachable claims them, fails, and gives them back.
    let mut settings = env.settings();
    settings.rabbitmq_url = "amqp://guest:guest@127.0.0.1:1/%2f".into();
    let offline = Scheduler::new(
        env.db.clone(),
        Broker::start(BrokerSettings {
            url: settings.rabbitmq_url.clone(),
            prefix: settings.rabbitmq_prefix.clone(),
            connection_name: "offline".into(),
            confirm_timeout: Duration::from_secs(1),
        }),
        settings,
    );
    let report = offline.run_once().await.unwrap();
    assert_eq!(report.redispatched, 10);
    assert_eq!(report.unconfirmed, 10);
    let report = scheduler(&env).await.run_once().await.unwrap();
    assert_eq!(report.redispatched, 10, "the next healthy tick sends them");
    assert_eq!(report.unconfirmed, 0);
}

#[tokio::test]
async fn agent_runs_of_a_lost_executor_are_failed_and_refunded_by_the_sweep() {
    let env = TestEnv::new().await.unwrap();
    let agent = env
        .db
        .create_agent(
            Uuid::now_v7(),
            "owner",
            &roundhouse_db::AgentSpec {
                name: "a".into(),
                system_prompt: String::new(),
                provider: "dev".into(),
                model: String::new(),
                temperature: None,
                max_tokens: None,
                is_heavy: true,
                is_published: false,
                railway_url: None,
            },
        )
        .await
        .unwrap();
    env.db.grant_credits("user", 10).await.unwrap();
    let started = env
        .db
        .start_run(&roundhouse_db::NewRun {
            id: Uuid::now_v7(),
            agent_id: agent.id,
            user_id: "user".into(),
            mode: "stream".into(),
            messages: json!([]),
            reserve: 4,
            job: None,
        })
        .await
        .unwrap();
    let roundhouse_db::RunStart::Started(run) = started else {
        panic!("covered")
    };
    let scheduler = scheduler(&env).await;
    assert_eq!(
        scheduler.run_once().await.unwrap().runs_reaped,
        0,
        "fresh heartbeat"
    );

    sqlx::query("UPDATE agent_runs SET heartbeat_at = now() - interval '2 minutes'")
        .execute(env.db.pool())
        .await
        .unwrap();
    assert_eq!(scheduler.run_once().await.unwrap().runs_reaped, 1);
    let run = env.db.get_run(run.id, None).await.unwrap().unwrap();
    assert_eq!(run.status, "failed");
    assert_eq!(env.db.credit_balance("user").await.unwrap(), 10);
}
