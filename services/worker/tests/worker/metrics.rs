//! The worker binary's `/metrics` after jobs ran: valid Prometheus text
//! with outcomes, run durations, enqueue → start waits, retries and LLM
//! tokens, at their exact values (the worker is a process of its own, so
//! nothing else records into its registry).

use std::time::{Duration, Instant};

use roundhouse_test_support::metrics::Metrics;
use serde_json::json;

use crate::helpers::Stack;

const WAIT: Duration = Duration::from_secs(30);

/// A port nothing listens on (the worker binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The worker's `/metrics`, once it answers.
async fn scrape(port: u16) -> Metrics {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match reqwest::get(&url).await {
            Ok(response) if response.status().is_success() => {
                return Metrics::parse(&response.text().await.expect("a body"));
            }
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("no /metrics on the worker's PORT {port}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_worker_reports_outcomes_durations_waits_retries_and_tokens_of_the_jobs_it_ran() {
    let stack = Stack::api_only().await;
    // Promotes the failed attempt's retry when its backoff is over.
    let scheduler = stack.scheduler().await;
    let port = free_port();
    let _worker = stack.worker_process(&[("PORT", &port.to_string())]);

    let noop = stack
        .enqueue_ok(json!({"jobType": "noop", "payload": {}}))
        .await;
    let flaky = stack
        .enqueue_ok(json!({"jobType": "fail", "payload": {"times": 1}, "maxRetries": 3}))
        .await;
    let llm = stack
        .enqueue_ok(json!({
            "jobType": "llm_processing",
            "payload": {"provider": "dev", "prompt": "hello world"}
        }))
        .await;
    for id in [noop, flaky, llm] {
        stack.wait_for_status(id, "completed", WAIT).await;
    }
    // Each attempt's metrics are recorded before its outcome is written.
    let metrics = scrape(port).await;
    scheduler.stop().await.unwrap();

    let jobs = |job_type, outcome| {
        metrics.value(
            "roundhouse_jobs_total",
            &[("job_type", job_type), ("outcome", outcome)],
        )
    };
    assert_eq!(jobs("noop", "completed"), Some(1.0), "{}", metrics.text());
    assert_eq!(jobs("fail", "retry"), Some(1.0));
    assert_eq!(jobs("fail", "completed"), Some(1.0));
    assert_eq!(jobs("llm_processing", "completed"), Some(1.0));
    assert_eq!(
        metrics.value("roundhouse_jobs_total", &[("outcome", "failed")]),
        None
    );
    assert_eq!(
        metrics.value(
            "roundhouse_jobs_total",
            &[("queue", "llm_processing"), ("job_type", "llm_processing")]
        ),
        Some(1.0),
        "labelled with the job's queue"
    );
    assert_eq!(
        metrics.value(
            "roundhouse_job_retries_total",
            &[("queue", "default"), ("job_type", "fail")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metrics.value("roundhouse_job_retries_total", &[]),
        Some(1.0)
    );

    // Run durations: successful attempts.
    for job_type in ["noop", "fail", "llm_processing"] {
        let duration =
            metrics.expect_histogram("roundhouse_job_duration_seconds", &[("job_type", job_type)]);
        assert_eq!(duration.count, 1.0, "{job_type}");
        assert_eq!(duration.buckets, 19, "{job_type}: seconds buckets");
    }
    // Waits: every attempt, the retry's from its promotion.
    let wait = |queue| {
        metrics
            .expect_histogram("roundhouse_job_wait_seconds", &[("queue", queue)])
            .count
    };
    assert_eq!(wait("default"), 3.0);
    assert_eq!(wait("llm_processing"), 1.0);

    // dev usage: the prompt's words, then the reply's ("Dev reply to: hello world").
    let tokens = |kind| {
        metrics.value(
            "roundhouse_llm_tokens_total",
            &[("provider", "dev"), ("model", "dev"), ("kind", kind)],
        )
    };
    assert_eq!(tokens("prompt"), Some(2.0));
    assert_eq!(tokens("completion"), Some(5.0));

    // The worker publishes nothing, but connects: broker series are there.
    assert!(
        metrics.value("roundhouse_broker_connects_total", &[]) >= Some(1.0),
        "{}",
        metrics.text()
    );
}
