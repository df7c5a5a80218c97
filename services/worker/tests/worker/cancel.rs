use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::Stack;

#[tokio::test]
async fn a_cancelled_scheduled_job_never_runs() {
    let stack = Stack::api_only().await;
    let worker = stack.worker().await;
    let scheduler = stack.scheduler().await;
    let id = stack
        .enqueue_ok(json!({"jobType": "noop", "delaySeconds": 0.5}))
        .await;
    let (status, body) = stack
        .call(reqwest::Method::DELETE, &format!("/api/jobs/{id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let job = stack.job(id).await;
    assert_eq!(job.status, "cancelled");
    assert_eq!(job.attempts, 0, "it never started");
    worker.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}

#[tokio::test]
async fn a_cancelled_queued_job_never_runs_even_if_its_message_arrives() {
    let stack = Stack::api_only().await;
    // No worker yet: the dispatch message waits in the queue.
    let id = stack.enqueue_ok(json!({"jobType": "noop"})).await;
    let (status, _) = stack
        .call(reqwest::Method::DELETE, &format!("/api/jobs/{id}"))
        .await;
    assert_eq!(status, 200);
    let worker = stack.worker().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let job = stack.job(id).await;
    assert_eq!(job.status, "cancelled");
    assert_eq!(job.attempts, 0);
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_running_job_stops_within_two_seconds_of_its_cancel() {
    let stack = Stack::api_only().await;
    let worker = stack.worker().await;
    let id = stack
        .enqueue_ok(json!({"jobType": "sleep", "payload": {"ms": 60000}}))
        .await;
    stack
        .wait_for_status(id, "processing", Duration::from_secs(10))
        .await;

    let cancelled_at = Instant::now();
    let (status, body) = stack
        .call(reqwest::Method::DELETE, &format!("/api/jobs/{id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled");
    // The worker records that it stopped the attempt.
    loop {
        let stopped = stack.events(id).await.into_iter().any(|(kind, data)| {
            kind == "log" && data["message"] == "worker stopped the attempt after cancellation"
        });
        if stopped {
            break;
        }
        assert!(
            cancelled_at.elapsed() < Duration::from_secs(2),
            "worker did not stop the job in 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let job = stack.job(id).await;
    assert_eq!(job.status, "cancelled");
    assert_eq!(job.result, None);

    let (status, _) = stack
        .call(reqwest::Method::DELETE, &format!("/api/jobs/{id}"))
        .await;
    assert_eq!(status, 409, "cancelling a finished job conflicts");
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_cancel_reaches_the_worker_through_its_heartbeat_when_the_broadcast_is_missed() {
    // Cancel in the database only (as if the broadcast were lost): the
    // worker's next heartbeat finds the attempt superseded and stops it.
    let stack = Stack::api_only().await;
    let worker = stack.worker().await;
    let id = stack
        .enqueue_ok(json!({"jobType": "sleep", "payload": {"ms": 60000}}))
        .await;
    stack
        .wait_for_status(id, "processing", Duration::from_secs(10))
        .await;
    stack.env.db.cancel_job(id, None).await.unwrap();
    let started = Instant::now();
    loop {
        let stopped = stack
            .events(id)
            .await
            .into_iter()
            .any(|(kind, _)| kind == "log");
        if stopped {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "heartbeat did not stop the job"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_cancelled_job_can_be_retried_by_hand_and_then_completes() {
    let stack = Stack::api_only().await;
    let id = stack.enqueue_ok(json!({"jobType": "noop"})).await;
    stack
        .call(reqwest::Method::DELETE, &format!("/api/jobs/{id}"))
        .await;
    let worker = stack.worker().await;
    let (status, body) = stack
        .call(reqwest::Method::POST, &format!("/api/jobs/{id}/retry"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "queued");
    let job = stack
        .wait_for_status(id, "completed", Duration::from_secs(10))
        .await;
    assert_eq!(job.attempts, 1);
    worker.stop().await.unwrap();
}
