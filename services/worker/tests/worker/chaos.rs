//! Tests that stop and start the shared RabbitMQ: `#[ignore]`d, run alone by
//! `make test-chaos`.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::Stack;

fn rabbitmqctl(args: &[&str]) {
    let status = std::process::Command::new("rabbitmqctl")
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("rabbitmqctl");
    assert!(status.success(), "rabbitmqctl {args:?}");
}

/// Starts the broker's application again even if the test fails.
struct RestartGuard;

impl Drop for RestartGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .arg("start_app")
            .status();
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["await_startup"])
            .status();
    }
}

#[tokio::test]
#[ignore = "restarts RabbitMQ: run with `make test-chaos`"]
async fn chaos_jobs_enqueued_before_during_and_after_a_broker_restart_all_complete() {
    let stack = Stack::api_only().await;
    let worker = stack.worker().await;
    let scheduler = stack.scheduler().await;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            stack
                .enqueue_ok(json!({"jobType": "noop", "payload": {"phase": "before", "i": i}}))
                .await,
        );
    }

    let guard = RestartGuard;
    rabbitmqctl(&["stop_app"]);
    // While the broker is down the API keeps accepting jobs into PostgreSQL
    // and reports itself unhealthy.
    let down = Instant::now();
    loop {
        let health = stack
            .http
            .get(format!("{}/health", stack.api_url))
            .send()
            .await
            .unwrap();
        if health.status() == 503 {
            break;
        }
        assert!(
            down.elapsed() < Duration::from_secs(10),
            "health never reported the broker down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..30 {
        ids.push(
            stack
                .enqueue_ok(json!({"jobType": "noop", "payload": {"phase": "during", "i": i}}))
                .await,
        );
    }
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);
    drop(guard);

    for i in 0..30 {
        ids.push(
            stack
                .enqueue_ok(json!({"jobType": "noop", "payload": {"phase": "after", "i": i}}))
                .await,
        );
    }
    for id in &ids {
        let job = stack
            .wait_for_status(*id, "completed", Duration::from_secs(60))
            .await;
        assert!(job.attempts >= 1);
    }
    let recovered = Instant::now();
    loop {
        let health = stack
            .http
            .get(format!("{}/health", stack.api_url))
            .send()
            .await
            .unwrap();
        if health.status() == 200 {
            break;
        }
        assert!(
            recovered.elapsed() < Duration::from_secs(30),
            "health never recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}
