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

/// Lowers the broker's delivery-acknowledgement timeout for the length of a
/// test, and restores the default even if the test fails.
struct ConsumerTimeout;

impl ConsumerTimeout {
    fn set(milliseconds: u64) -> Self {
        rabbitmqctl(&[
            "eval",
            &format!("application:set_env(rabbit, consumer_timeout, {milliseconds})."),
        ]);
        ConsumerTimeout
    }
}

impl Drop for ConsumerTimeout {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args([
                "eval",
                "application:set_env(rabbit, consumer_timeout, 1800000).",
            ])
            .stdout(std::process::Stdio::null())
            .status();
    }
}

#[tokio::test]
#[ignore = "changes RabbitMQ's consumer timeout for ~80 s: run with `make test-chaos`"]
async fn chaos_a_job_outlasting_the_broker_consumer_timeout_runs_once() {
    use futures::StreamExt;

    let stack = Stack::api_only().await;
    let _timeout = ConsumerTimeout::set(5_000);
    let worker = stack.worker().await;

    // Control: a consumer that holds a delivery unacknowledged loses its
    // channel once the broker's timeout check runs (about once a minute).
    let connection =
        lapin::Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", Default::default())
            .await
            .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let topology = roundhouse_broker::Topology::new(stack.env.prefix.clone());
    topology.declare_exchanges(&channel).await.unwrap();
    topology
        .declare_job_queue(&channel, "custom3")
        .await
        .unwrap();
    let held = stack
        .enqueue_ok(json!({"jobType": "noop", "queue": "custom3"}))
        .await;
    let mut holder = channel
        .basic_consume(
            topology.job_queue("custom3").into(),
            "holder".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), holder.next())
        .await
        .expect("the control consumer gets the message");
    assert!(matches!(first, Some(Ok(_))));

    // The real job runs for 75 s on the worker, which acknowledged its
    // delivery when it claimed the job.
    let id = stack
        .enqueue_ok(json!({"jobType": "sleep", "payload": {"ms": 75_000}, "timeoutSeconds": 300}))
        .await;
    let job = stack
        .wait_for_status(id, "completed", Duration::from_secs(120))
        .await;
    assert_eq!(job.attempts, 1, "never redelivered and run again");

    assert!(
        !channel.status().connected(),
        "the control channel should have been closed by the consumer timeout, proving it was active"
    );
    assert_eq!(
        stack.job(held).await.attempts,
        0,
        "nobody else consumed custom3"
    );
    let _ = connection.close(200, "done".into()).await;
    worker.stop().await.unwrap();
}
