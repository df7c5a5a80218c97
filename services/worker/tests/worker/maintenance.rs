//! The `maintenance` job type, run by a real worker against real PostgreSQL.
//! The jobs it acts on are planted with SQL in the `default` queue, which the
//! worker of these tests does not consume, so only the maintenance job moves
//! them.

use std::collections::BTreeSet;
use std::time::Duration;

use roundhouse_db::NewJob;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Running, Stack};

const WAIT: Duration = Duration::from_secs(20);

/// The API, and a worker that consumes only the `maintenance` queue.
async fn maintenance_stack() -> (Stack, Running) {
    let stack = Stack::api_only().await;
    let worker = stack.worker_with(&[("WORKER_QUEUES", "maintenance")]).await;
    (stack, worker)
}

/// Enqueues a maintenance job with the service token and waits for it to
/// finish either way.
async fn run_maintenance(stack: &Stack, payload: Value) -> roundhouse_db::JobRow {
    let id = stack
        .enqueue_ok(json!({"jobType": "maintenance", "payload": payload, "maxRetries": 3}))
        .await;
    stack
        .wait_for(id, WAIT, |job| {
            matches!(job.status.as_str(), "completed" | "failed")
        })
        .await
}

/// Inserts a `noop` job in the `default` queue and returns its id.
async fn plant_job(stack: &Stack, max_retries: i32) -> Uuid {
    let id = Uuid::now_v7();
    stack
        .env
        .db
        .enqueue_jobs(&[NewJob {
            id,
            queue: "default".to_owned(),
            job_type: "noop".to_owned(),
            user_id: None,
            payload: json!({}),
            priority: 0,
            max_retries,
            timeout_seconds: 60,
            idempotency_key: None,
            run_at: None,
            delay_ms: None,
            traceparent: None,
        }])
        .await
        .unwrap();
    id
}

/// Inserts a job whose status, creation and completion lie `days` in the past.
async fn plant_finished(stack: &Stack, status: &str, days: i32) -> Uuid {
    let id = plant_job(stack, 3).await;
    sqlx::query(
        r#"
        UPDATE jobs SET status = $2, attempts = 1,
                        created_at = now() - make_interval(days => $3 + 1),
                        started_at = now() - make_interval(days => $3),
                        completed_at = now() - make_interval(days => $3)
         WHERE id = $1
        "#,
    )
    .bind(id)
    .bind(status)
    .bind(days)
    .execute(stack.env.db.pool())
    .await
    .unwrap();
    id
}

/// Sets a job created long ago to `status` without finishing it.
async fn age_unfinished(stack: &Stack, id: Uuid, status: &str) {
    sqlx::query(
        r#"
        UPDATE jobs SET status = $2,
                        created_at = now() - interval '400 days',
                        run_at = CASE WHEN $2 = 'scheduled' THEN now() + interval '1 day'
                                      ELSE now() - interval '400 days' END,
                        attempts = CASE WHEN $2 = 'processing' THEN 1 ELSE 0 END,
                        worker_id = CASE WHEN $2 = 'processing' THEN 'worker-elsewhere' END,
                        started_at = CASE WHEN $2 = 'processing' THEN now() END,
                        lease_expires_at = CASE WHEN $2 = 'processing'
                                                THEN now() + interval '1 hour' END
         WHERE id = $1
        "#,
    )
    .bind(id)
    .bind(status)
    .execute(stack.env.db.pool())
    .await
    .unwrap();
}

/// Puts a job in `processing` on attempt 1 with a lease that ran out
/// `seconds_ago` seconds ago (negative: a lease still running).
async fn plant_processing(stack: &Stack, max_retries: i32, seconds_ago: f64) -> Uuid {
    let id = plant_job(stack, max_retries).await;
    sqlx::query(
        r#"
        UPDATE jobs SET status = 'processing', attempts = 1, worker_id = 'worker-lost',
                        started_at = now() - interval '20 minutes', dispatched_at = now(),
                        lease_expires_at = now() - make_interval(secs => $2)
         WHERE id = $1
        "#,
    )
    .bind(id)
    .bind(seconds_ago)
    .execute(stack.env.db.pool())
    .await
    .unwrap();
    id
}

/// Adds `count` log events to the timeline of `job_id` (which may not exist).
async fn plant_events(stack: &Stack, job_id: Uuid, count: i32) {
    sqlx::query(
        r#"
        INSERT INTO job_events (job_id, attempt, kind, data)
        SELECT $1, 1, 'log', jsonb_build_object('message', 'planted ' || n)
          FROM generate_series(1, $2) AS n
        "#,
    )
    .bind(job_id)
    .bind(count)
    .execute(stack.env.db.pool())
    .await
    .unwrap();
}

async fn job_ids(stack: &Stack) -> BTreeSet<Uuid> {
    sqlx::query_scalar("SELECT id FROM jobs")
        .fetch_all(stack.env.db.pool())
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn event_count(stack: &Stack, job_id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM job_events WHERE job_id = $1")
        .bind(job_id)
        .fetch_one(stack.env.db.pool())
        .await
        .unwrap()
}

async fn log_lines(stack: &Stack, job_id: Uuid) -> Vec<String> {
    stack
        .events(job_id)
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "log")
        .map(|(_, data)| data["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn cleanup_deletes_exactly_the_jobs_past_retention_and_nothing_else() {
    let (stack, worker) = maintenance_stack().await;

    let mut doomed = BTreeSet::new();
    for (status, days) in [
        ("completed", 8),
        ("completed", 8),
        ("completed", 31),
        ("cancelled", 8),
        ("cancelled", 9),
        ("failed", 31),
        ("failed", 45),
    ] {
        doomed.insert(plant_finished(&stack, status, days).await);
    }
    let mut kept = BTreeSet::new();
    for (status, days) in [
        ("completed", 6),
        ("cancelled", 6),
        ("failed", 29),
        // Past the completed retention but within the failed one.
        ("failed", 8),
    ] {
        kept.insert(plant_finished(&stack, status, days).await);
    }
    // Unfinished jobs survive however old they are.
    for status in ["queued", "scheduled", "processing"] {
        let id = plant_job(&stack, 3).await;
        age_unfinished(&stack, id, status).await;
        kept.insert(id);
    }
    for &id in doomed.iter().chain(&kept) {
        plant_events(&stack, id, 2).await;
    }
    // Notification delivery records: three past `deliveryRetentionDays`, one not.
    for (recipient, days) in [
        ("a@x.test", 91),
        ("b@x.test", 95),
        ("c@x.test", 200),
        ("d@x.test", 89),
    ] {
        sqlx::query(
            "INSERT INTO notification_deliveries (dedup_key, channel, recipient, job_id, delivered_at)
             VALUES ('job:k', 'email', $1, $2, now() - make_interval(days => $3))",
        )
        .bind(recipient)
        .bind(Uuid::now_v7())
        .bind(days)
        .execute(stack.env.db.pool())
        .await
        .unwrap();
    }

    let job = run_maintenance(
        &stack,
        json!({
            "action": "cleanup_completed_jobs",
            "parameters": {"retentionDays": 7, "failedRetentionDays": 30, "deliveryRetentionDays": 90, "batchSize": 2}
        }),
    )
    .await;
    assert_eq!(job.status, "completed", "error: {:?}", job.error);
    assert_eq!(job.attempts, 1);
    // Five completed/cancelled in batches of 2 (2, 2, 1), two failed (2, 0),
    // three deliveries (2, 1).
    assert_eq!(
        job.result,
        Some(json!({
            "deletedJobs": {"completedOrCancelled": 5, "failed": 2},
            "deletedEvents": 14,
            "deletedDeliveries": 3,
            "batches": 7,
        }))
    );
    let deliveries: Vec<String> =
        sqlx::query_scalar("SELECT recipient FROM notification_deliveries")
            .fetch_all(stack.env.db.pool())
            .await
            .unwrap();
    assert_eq!(deliveries, ["d@x.test"]);

    let mut expected = kept.clone();
    expected.insert(job.id);
    assert_eq!(job_ids(&stack).await, expected);
    for &id in &doomed {
        assert_eq!(
            event_count(&stack, id).await,
            0,
            "events of deleted job {id}"
        );
    }
    for &id in &kept {
        assert_eq!(event_count(&stack, id).await, 2, "events of kept job {id}");
    }
    let logs = log_lines(&stack, job.id).await;
    assert!(
        logs.iter().any(|line| line
            == "cleanup: deleted 5 completed or cancelled jobs, 2 failed jobs, 14 events and 3 notification deliveries in 7 batches"),
        "{logs:?}"
    );
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn cleanup_with_default_parameters_keeps_a_week_of_jobs() {
    let (stack, worker) = maintenance_stack().await;
    let old = plant_finished(&stack, "completed", 8).await;
    let recent = plant_finished(&stack, "completed", 6).await;
    let failed = plant_finished(&stack, "failed", 8).await;

    let job = run_maintenance(&stack, json!({"action": "cleanup_completed_jobs"})).await;
    assert_eq!(job.status, "completed", "error: {:?}", job.error);
    assert_eq!(
        job.result.unwrap()["deletedJobs"]["completedOrCancelled"],
        1
    );
    let ids = job_ids(&stack).await;
    assert!(!ids.contains(&old));
    assert!(ids.contains(&recent) && ids.contains(&failed));
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn requeue_stuck_jobs_puts_jobs_with_expired_leases_back_for_the_dispatch_sweep() {
    let (stack, worker) = maintenance_stack().await;
    let with_retries = plant_processing(&stack, 3, 60.0).await;
    let out_of_retries = plant_processing(&stack, 0, 60.0).await;
    let healthy = plant_processing(&stack, 3, -3600.0).await;

    let job = run_maintenance(
        &stack,
        json!({"action": "requeue_stuck_jobs", "parameters": {"batchSize": 1}}),
    )
    .await;
    assert_eq!(job.status, "completed", "error: {:?}", job.error);
    assert_eq!(job.result, Some(json!({"requeued": 1, "failed": 1})));

    let requeued = stack.job(with_retries).await;
    assert_eq!(requeued.status, "queued");
    assert_eq!(requeued.lease_expires_at, None);
    assert_eq!(
        requeued.dispatched_at, None,
        "left for the scheduler's sweep to dispatch"
    );
    assert!(
        requeued
            .error
            .as_deref()
            .is_some_and(|e| e.contains("lease expired: worker worker-lost")),
        "{:?}",
        requeued.error
    );
    let failed = stack.job(out_of_retries).await;
    assert_eq!(failed.status, "failed");
    assert!(failed.completed_at.is_some());
    assert_eq!(stack.job(healthy).await.status, "processing");
    worker.stop().await.unwrap();

    // The scheduler's sweep dispatches the requeued job, and a worker runs it.
    let scheduler = stack.scheduler().await;
    let worker = stack.worker().await;
    let done = stack.wait_for_status(with_retries, "completed", WAIT).await;
    assert_eq!(done.attempts, 2);
    worker.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}

#[tokio::test]
async fn vacuum_events_deletes_the_events_of_missing_jobs_only() {
    let (stack, worker) = maintenance_stack().await;
    let live = plant_job(&stack, 3).await;
    plant_events(&stack, live, 3).await;
    for _ in 0..3 {
        plant_events(&stack, Uuid::now_v7(), 2).await;
    }
    plant_events(&stack, live, 2).await;

    let job = run_maintenance(
        &stack,
        json!({"action": "vacuum_events", "parameters": {"batchSize": 2}}),
    )
    .await;
    assert_eq!(job.status, "completed", "error: {:?}", job.error);
    assert_eq!(
        job.result,
        Some(json!({"deletedEvents": 6, "vacuumed": true}))
    );
    assert_eq!(event_count(&stack, live).await, 5);
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job_events e WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = e.job_id)",
    )
    .fetch_one(stack.env.db.pool())
    .await
    .unwrap();
    assert_eq!(orphans, 0);
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_bad_maintenance_payload_fails_the_job_at_once_and_deletes_nothing() {
    let (stack, worker) = maintenance_stack().await;
    let old = plant_finished(&stack, "completed", 400).await;

    for (payload, error) in [
        (
            json!({"action": "drop_everything"}),
            "maintenance payload: unknown variant `drop_everything`",
        ),
        (
            json!({"action": "cleanup_completed_jobs", "parameters": {"retentionDays": -1}}),
            "maintenance parameters.retentionDays: must be a number of days between 0 and 36500, got -1",
        ),
        (
            json!({"action": "cleanup_completed_jobs", "parameters": {"retentionDay": 7}}),
            "maintenance parameters: unknown field `retentionDay`",
        ),
        (
            json!({"action": "requeue_stuck_jobs", "parameters": {"batchSize": 0}}),
            "maintenance parameters.batchSize: must be between 1 and 10000, got 0",
        ),
    ] {
        let job = run_maintenance(&stack, payload.clone()).await;
        assert_eq!(job.status, "failed", "{payload}");
        assert_eq!(
            job.attempts, 1,
            "a permanent error is not retried: {payload}"
        );
        let message = job.error.unwrap_or_default();
        assert!(message.starts_with(error), "{payload}: {message}");
    }
    assert!(job_ids(&stack).await.contains(&old));
    worker.stop().await.unwrap();
}
