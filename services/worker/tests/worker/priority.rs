use std::time::Duration;

use serde_json::json;

use crate::helpers::Stack;

#[tokio::test]
async fn higher_priority_jobs_start_first_when_a_queue_is_backed_up() {
    let stack = Stack::api_only().await;
    // Back the queue up while no worker runs.
    let mut low = Vec::new();
    for i in 0..5 {
        low.push(
            stack
                .enqueue_ok(json!({"jobType": "sleep", "payload": {"ms": 50}, "queue": "custom0", "priority": 1, "idempotencyKey": format!("low{i}")}))
                .await,
        );
    }
    let high = stack
        .enqueue_ok(
            json!({"jobType": "sleep", "payload": {"ms": 50}, "queue": "custom0", "priority": 8}),
        )
        .await;
    // Wait until every dispatch message is confirmed in the queue.
    for id in low.iter().chain([&high]) {
        stack
            .wait_for(*id, Duration::from_secs(10), |j| j.dispatched_at.is_some())
            .await;
    }

    let worker = stack
        .worker_with(&[("WORKER_QUEUES", "custom0"), ("WORKER_CONCURRENCY", "1")])
        .await;
    let high_job = stack
        .wait_for_status(high, "completed", Duration::from_secs(15))
        .await;
    for id in &low {
        let job = stack
            .wait_for_status(*id, "completed", Duration::from_secs(15))
            .await;
        assert!(
            high_job.started_at.unwrap() < job.started_at.unwrap(),
            "the priority 8 job started after a priority 1 job"
        );
    }
    worker.stop().await.unwrap();
}
