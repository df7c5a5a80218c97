//! The api's `/metrics` after jobs were enqueued: valid Prometheus text
//! with the enqueue, HTTP and publish series, and their exact values.
//!
//! The recorder is process-global: exact values hold because nextest runs
//! each test in its own process (`make test`).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use roundhouse_test_support::metrics::Metrics;
use serde_json::json;

use crate::helpers::{TestApp, service, spawn_app};

/// Scrapes until `ready` holds (10 s at most), then returns that scrape.
async fn scrape_until(app: &TestApp, ready: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = app.get("/metrics", None).await;
        assert_eq!(response.status, StatusCode::OK);
        let metrics = Metrics::parse(&response.text);
        if ready(&metrics) {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "the series never showed up:\n{}",
            metrics.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_enqueues_requests_and_publishes() {
    let app = spawn_app().await;
    let id = app.enqueue_noop(service()).await;
    let (status, body) = app
        .batch(
            service(),
            json!({"jobs": [
                {"jobType": "noop"},
                {"jobType": "sleep", "payload": {"ms": 5}},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, _) = app.get_job(service(), id).await;
    assert_eq!(status, StatusCode::OK);

    // Dispatches are confirmed by the broker after the responses.
    let metrics = scrape_until(&app, |m| {
        m.value("roundhouse_publish_confirmed_total", &[]) >= Some(3.0)
    })
    .await;

    let enqueued = |job_type| {
        metrics.value(
            "roundhouse_jobs_enqueued_total",
            &[("queue", "default"), ("job_type", job_type)],
        )
    };
    assert_eq!(enqueued("noop"), Some(2.0), "{}", metrics.text());
    assert_eq!(enqueued("sleep"), Some(1.0));
    assert_eq!(
        metrics.value("roundhouse_jobs_enqueued_total", &[]),
        Some(3.0),
        "batches count under their jobs' queues"
    );
    assert_eq!(
        metrics.value("roundhouse_publish_confirmed_total", &[]),
        Some(3.0)
    );
    assert_eq!(metrics.value("roundhouse_publish_failed_total", &[]), None);

    let request = |method, path, status| {
        metrics.expect_histogram(
            "roundhouse_http_request_duration_seconds",
            &[("method", method), ("path", path), ("status", status)],
        )
    };
    let enqueue = request("POST", "/api/jobs/enqueue", "202");
    assert_eq!(enqueue.count, 1.0);
    assert!(enqueue.sum > 0.0);
    // The bounds of every `*_seconds` histogram (shared/telemetry), plus +Inf.
    assert_eq!(enqueue.buckets, 19);
    assert_eq!(request("POST", "/api/jobs/batch", "202").count, 1.0);
    // The route's pattern, not the URL: ids never become series.
    assert_eq!(request("GET", "/api/jobs/{id}", "200").count, 1.0);
}
