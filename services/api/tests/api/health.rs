use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{ALICE, admin, assert_error, service, spawn_app, user};

#[tokio::test]
async fn health_is_healthy_once_the_broker_is_connected() {
    let app = spawn_app().await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let response = loop {
        let response = app.get("/health", None).await;
        if response.status == StatusCode::OK || Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    let body = &response.body;
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["service"], "api");
    assert!(
        body["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{body}"
    );
    let timestamp = body["timestamp"].as_str().expect("a timestamp");
    chrono::DateTime::parse_from_rfc3339(timestamp).expect("an RFC 3339 timestamp");
}

#[tokio::test]
async fn detailed_health_needs_the_service_token_or_an_admin() {
    let app = spawn_app().await;

    let anonymous = app.get("/health/detailed", None).await;
    assert_eq!(
        anonymous.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        anonymous.text
    );
    assert_error(&anonymous.body, "unauthorized");

    let normal = app.get("/health/detailed", Some(&user(ALICE))).await;
    assert_eq!(normal.status, StatusCode::FORBIDDEN, "{}", normal.text);

    let by_admin = app.get("/health/detailed", Some(&admin())).await;
    assert_eq!(by_admin.status, StatusCode::OK, "{}", by_admin.text);
}

#[tokio::test]
async fn detailed_health_reports_dependencies_and_queues() {
    let app = spawn_app().await;
    app.enqueue_noop(service()).await;

    let response = app.get("/health/detailed", Some(service())).await;

    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    let body = &response.body;
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["dependencies"]["database"]["status"], "up", "{body}");
    assert!(
        body["dependencies"]["database"]["latencyMs"]
            .as_f64()
            .is_some(),
        "{body}"
    );
    assert_eq!(body["dependencies"]["broker"]["status"], "up", "{body}");
    assert!(body["uptimeSeconds"].as_u64().is_some(), "{body}");
    let default = body["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|q| q["name"] == "default")
        .expect("the default queue");
    assert_eq!(default["waiting"], 1, "{body}");
}

#[tokio::test]
async fn metrics_are_served_as_prometheus_text() {
    let app = spawn_app().await;
    app.get("/health", None).await;
    app.enqueue_noop(service()).await;

    let response = app.get("/metrics", None).await;

    assert_eq!(response.status, StatusCode::OK);
    assert!(
        response
            .text
            .contains("roundhouse_http_request_duration_seconds"),
        "{}",
        response.text
    );
    assert!(
        response.text.contains("roundhouse_jobs_enqueued_total"),
        "{}",
        response.text
    );
}
