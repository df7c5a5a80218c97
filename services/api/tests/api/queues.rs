use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, admin, assert_error, service, spawn_app};

async fn stats_of(app: &TestApp, queue: &str) -> Value {
    let response = app.get("/api/queues/stats", Some(service())).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    response.body["queues"]
        .as_array()
        .unwrap_or_else(|| panic!("no queues array in {}", response.text))
        .iter()
        .find(|q| q["name"] == queue)
        .cloned()
        .unwrap_or_else(|| panic!("queue {queue} missing from {}", response.text))
}

#[tokio::test]
async fn queue_stats_count_jobs_by_state() {
    let app = spawn_app().await;
    app.enqueue_noop(service()).await;
    app.enqueue_noop(service()).await;
    app.enqueue_ok(service(), json!({"jobType": "noop", "delaySeconds": 600}))
        .await;
    let running = app.enqueue_noop(service()).await;
    app.claim(running).await;
    let done = app.enqueue_noop(service()).await;
    app.make_completed(done).await;
    let failed = app.enqueue_noop(service()).await;
    app.make_failed(failed).await;
    let cancelled = app.enqueue_noop(service()).await;
    app.cancel(service(), cancelled).await;
    app.enqueue_ok(service(), json!({"jobType": "noop", "queue": "custom2"}))
        .await;

    let default = stats_of(&app, "default").await;

    assert_eq!(default["waiting"], 2, "{default}");
    assert_eq!(default["scheduled"], 1, "{default}");
    assert_eq!(default["active"], 1, "{default}");
    assert_eq!(default["completed"], 1, "{default}");
    assert_eq!(default["failed"], 1, "{default}");
    assert_eq!(default["cancelled"], 1, "{default}");
    assert_eq!(default["paused"], false);
    assert!(default.get("concurrency").is_some(), "{default}");
    assert!(
        default["rate"].as_f64().is_some_and(|r| r > 0.0),
        "{default}"
    );

    let custom = stats_of(&app, "custom2").await;
    assert_eq!(custom["waiting"], 1, "{custom}");
    assert_eq!(custom["completed"], 0, "{custom}");

    let idle = stats_of(&app, "notifications").await;
    assert_eq!(idle["waiting"], 0, "{idle}");
    assert_eq!(idle["rate"], 0.0, "{idle}");
}

#[tokio::test]
async fn a_queue_is_paused_and_resumed() {
    let app = spawn_app().await;
    app.enqueue_noop(service()).await;

    let (status, body) = app.set_paused(service(), "default", true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["paused"], true);
    assert_eq!(body["name"], "default");
    assert_eq!(body["waiting"], 1);
    let paused = |app: &TestApp| {
        let db = app.env.db.clone();
        async move {
            db.queue_stats()
                .await
                .expect("stats")
                .into_iter()
                .find(|q| q.name == "default")
                .expect("default queue")
                .paused
        }
    };
    assert!(paused(&app).await);
    assert_eq!(stats_of(&app, "default").await["paused"], true);

    let (status, body) = app.set_paused(&admin(), "default", false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["paused"], false);
    assert!(!paused(&app).await);
}

#[tokio::test]
async fn pausing_a_queue_nobody_configured_creates_its_settings() {
    let app = spawn_app().await;

    let (status, body) = app.set_paused(service(), "custom3", true).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<String> = app
        .env
        .db
        .queue_concurrency()
        .await
        .expect("queues")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert!(names.contains(&"custom3".to_owned()), "{names:?}");
    assert_eq!(stats_of(&app, "custom3").await["paused"], true);
}

#[tokio::test]
async fn an_invalid_queue_name_is_refused() {
    let app = spawn_app().await;

    for name in ["UPPER", "dots.are.routing", &"x".repeat(65)] {
        let (status, body) = app.set_paused(service(), name, true).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {body}");
        assert_error(&body, "validation_error");
    }
}
