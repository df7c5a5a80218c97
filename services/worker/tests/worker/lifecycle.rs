use std::time::Duration;

use serde_json::json;

use crate::helpers::Stack;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_noop_job_runs_to_completion_with_its_result() {
    let stack = Stack::api_only().await;
    let worker = stack.worker().await;
    let id = stack
        .enqueue_ok(json!({"jobType": "noop", "payload": {"n": 1}}))
        .await;

    let job = stack.wait_for_status(id, "completed", WAIT).await;
    assert_eq!(job.result, Some(json!({})));
    assert_eq!(job.attempts, 1);
    assert_eq!(job.progress, 100);
    assert!(
        job.worker_id
            .as_deref()
            .is_some_and(|w| w.starts_with("worker-"))
    );
    assert!(job.started_at.unwrap() <= job.completed_at.unwrap());

    let statuses: Vec<String> = stack
        .events(id)
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "status")
        .map(|(_, data)| data["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["processing", "completed"]);

    let (status, body) = stack
        .call(reqwest::Method::GET, &format!("/api/jobs/{id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "completed");
    assert_eq!(body["result"], json!({}));
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_failing_job_is_retried_with_backoff_then_fails_with_its_error() {
    let stack = Stack::api_only().await;
    let worker = stack.worker().await;
    let scheduler = stack.scheduler().await;
    let id = stack
        .enqueue_ok(json!({"jobType": "fail", "payload": {}, "maxRetries": 2}))
        .await;

    let job = stack.wait_for_status(id, "failed", WAIT).await;
    assert_eq!(job.attempts, 3, "one attempt plus two retries");
    assert_eq!(job.error.as_deref(), Some("failed on purpose (attempt 3)"));
    assert!(job.completed_at.is_some());
    let retries = stack
        .events(id)
        .await
        .into_iter()
        .filter(|(_, data)| data["status"] == "scheduled")
        .count();
    assert_eq!(retries, 2);
    worker.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}

#[tokio::test]
async fn a_job_that_fails_twice_succeeds_on_its_third_attempt() {
    let stack = Stack::api_only().await;
    let worker = stack.worker().await;
    let scheduler = stack.scheduler().await;
    let id = stack
        .enqueue_ok(json!({"jobType": "fail", "payload": {"times": 2}, "maxRetries": 5}))
        .await;
    let job = stack.wait_for_status(id, "completed", WAIT).await;
    assert_eq!(job.attempts, 3);
    assert_eq!(job.result, Some(json!({"succeededOnAttempt": 3})));
    assert_eq!(job.error, None, "a success clears the last attempt's error");
    worker.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}

#[tokio::test]
async fn a_permanent_error_fails_the_job_without_retrying() {
    let stack = Stack::api_only().await;
    let worker = stack.worker().await;
    let id = stack
        .enqueue_ok(json!({"jobType": "fail", "payload": {"permanent": true, "message": "bad input"}, "maxRetries": 5}))
        .await;
    let job = stack.wait_for_status(id, "failed", WAIT).await;
    assert_eq!(job.attempts, 1);
    assert_eq!(job.error.as_deref(), Some("bad input"));
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_delayed_job_does_not_start_before_its_run_at() {
    let stack = Stack::api_only().await;
    let worker = stack.worker().await;
    let scheduler = stack.scheduler().await;
    let id = stack
        .enqueue_ok(json!({"jobType": "noop", "delaySeconds": 1.5}))
        .await;
    assert_eq!(stack.job(id).await.status, "scheduled");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(stack.job(id).await.status, "scheduled", "must still wait");

    let job = stack.wait_for_status(id, "completed", WAIT).await;
    let waited = job.started_at.unwrap() - job.created_at;
    assert!(
        waited >= chrono::Duration::milliseconds(1500),
        "started after {waited}"
    );
    assert!(
        waited < chrono::Duration::milliseconds(3000),
        "started late: {waited}"
    );
    worker.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}

#[tokio::test]
async fn a_job_over_its_timeout_is_stopped_and_failed() {
    let stack = Stack::api_only().await;
    let worker = stack.worker().await;
    let id = stack
        .enqueue_ok(json!({"jobType": "sleep", "payload": {"ms": 20000}, "timeoutSeconds": 1, "maxRetries": 0}))
        .await;
    let job = stack
        .wait_for_status(id, "failed", Duration::from_secs(8))
        .await;
    assert_eq!(job.error.as_deref(), Some("timed out after 1s"));
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn progress_reported_by_a_handler_is_recorded_in_the_timeline() {
    let stack = Stack::api_only().await;
    let worker = stack.worker().await;
    let id = stack
        .enqueue_ok(json!({"jobType": "sleep", "payload": {"ms": 1000}}))
        .await;
    stack.wait_for_status(id, "completed", WAIT).await;
    let progress: Vec<i64> = stack
        .events(id)
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "progress")
        .map(|(_, data)| data["progress"].as_i64().unwrap())
        .collect();
    assert_eq!(progress, (1..=10).map(|i| i * 10).collect::<Vec<_>>());
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_batch_of_jobs_all_complete() {
    let stack = Stack::api_only().await;
    let worker = stack.worker().await;
    let jobs: Vec<_> = (0..50)
        .map(|i| json!({"jobType": "noop", "payload": {"i": i}}))
        .collect();
    let response = stack
        .http
        .post(format!("{}/api/jobs/batch", stack.api_url))
        .bearer_auth(roundhouse_test_support::SERVICE_TOKEN)
        .json(&json!({"jobs": jobs}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.unwrap();
    let ids: Vec<uuid::Uuid> = body["jobIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 50);
    for id in ids {
        let job = stack.wait_for_status(id, "completed", WAIT).await;
        assert_eq!(job.attempts, 1);
    }
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_paused_queue_holds_its_jobs_until_resumed() {
    let stack = Stack::api_only().await;
    let worker = stack.worker().await;
    let scheduler = stack.scheduler().await;
    let (status, _) = stack
        .call(reqwest::Method::POST, "/api/queues/default/pause")
        .await;
    assert_eq!(status, 200);
    let id = stack.enqueue_ok(json!({"jobType": "noop"})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let job = stack.job(id).await;
    assert_eq!(job.status, "queued", "a paused queue starts nothing");
    assert_eq!(job.attempts, 0);

    let (status, body) = stack
        .call(reqwest::Method::POST, "/api/queues/default/resume")
        .await;
    assert_eq!(status, 200, "{body}");
    let job = stack.wait_for_status(id, "completed", WAIT).await;
    assert_eq!(job.attempts, 1);
    worker.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}

#[tokio::test]
async fn a_job_whose_dispatch_was_never_published_is_sent_by_the_sweep() {
    // The API died between commit and publish: simulate by storing the job
    // directly, as the API would, with no dispatch message at all.
    let stack = Stack::api_only().await;
    let id = uuid::Uuid::now_v7();
    stack
        .env
        .db
        .enqueue_jobs(&[roundhouse_db::NewJob {
            id,
            queue: "default".into(),
            job_type: "noop".into(),
            user_id: None,
            payload: json!({}),
            priority: 0,
            max_retries: 0,
            timeout_seconds: 60,
            idempotency_key: None,
            run_at: None,
            delay_ms: None,
            traceparent: None,
        }])
        .await
        .unwrap();
    let worker = stack.worker().await;
    let scheduler = stack.scheduler().await;
    let job = stack.wait_for_status(id, "completed", WAIT).await;
    assert!(job.dispatched_at.is_some());
    worker.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}
