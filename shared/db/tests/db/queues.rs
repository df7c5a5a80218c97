//! The queue depths behind the scheduler's gauges.

use roundhouse_db::{NewJob, QueueDepth};
use roundhouse_test_support::TestEnv;
use serde_json::json;
use uuid::Uuid;

fn job(queue: &str, delay_ms: Option<i64>) -> NewJob {
    NewJob {
        id: Uuid::now_v7(),
        queue: queue.into(),
        job_type: "noop".into(),
        user_id: None,
        payload: json!({}),
        priority: 0,
        max_retries: 0,
        timeout_seconds: 60,
        idempotency_key: None,
        run_at: None,
        delay_ms,
        traceparent: None,
    }
}

fn of<'a>(depths: &'a [QueueDepth], queue: &str) -> &'a QueueDepth {
    depths
        .iter()
        .find(|d| d.queue == queue)
        .unwrap_or_else(|| panic!("no depth for {queue}: {depths:?}"))
}

#[tokio::test]
async fn queue_depths_count_unfinished_jobs_by_state_and_age_the_oldest_waiting_one() {
    let env = TestEnv::new().await.unwrap();
    let jobs = [
        job("default", None),
        job("default", None),
        job("default", Some(600_000)),
        job("default", None),
        job("default", None),
        job("custom0", None),
    ];
    env.db.enqueue_jobs(&jobs).await.unwrap();
    sqlx::query("UPDATE jobs SET queued_at = now() - interval '90 seconds' WHERE id = $1")
        .bind(jobs[0].id)
        .execute(env.db.pool())
        .await
        .unwrap();
    env.db.claim_jobs(&[jobs[3].id], "w", 60.0).await.unwrap();
    // Finished jobs are not counted.
    env.db.claim_jobs(&[jobs[4].id], "w", 60.0).await.unwrap();
    env.db
        .fail_job(jobs[4].id, 1, "no", false, 0.0)
        .await
        .unwrap();

    let depths = env.db.queue_depths().await.unwrap();

    let default = of(&depths, "default");
    assert_eq!(
        (default.waiting, default.scheduled, default.running),
        (2, 1, 1)
    );
    assert!(
        (90.0..120.0).contains(&default.oldest_waiting_seconds),
        "{default:?}"
    );
    let custom = of(&depths, "custom0");
    assert_eq!(
        (custom.waiting, custom.scheduled, custom.running),
        (1, 0, 0)
    );
    // A configured queue without jobs is listed, at zero.
    let idle = of(&depths, "notifications");
    assert_eq!(
        (
            idle.waiting,
            idle.scheduled,
            idle.running,
            idle.oldest_waiting_seconds
        ),
        (0, 0, 0, 0.0)
    );
}
