use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{ALICE, assert_error, service, spawn_app, spawn_app_with, user};

fn ids(body: &Value) -> Vec<Uuid> {
    body["jobIds"]
        .as_array()
        .unwrap_or_else(|| panic!("no jobIds in {body}"))
        .iter()
        .map(|id| id.as_str().and_then(|s| s.parse().ok()).expect("a UUID"))
        .collect()
}

#[tokio::test]
async fn a_batch_of_valid_jobs_is_stored_in_order() {
    let app = spawn_app().await;

    let (status, body) = app
        .batch(
            service(),
            json!({"jobs": [
                {"jobType": "noop", "payload": {"n": 0}},
                {"jobType": "sleep", "payload": {"ms": 5}},
                {"jobType": "noop", "payload": {"n": 2}, "delaySeconds": 30},
            ]}),
        )
        .await;

    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let ids = ids(&body);
    assert_eq!(ids.len(), 3);
    let first = app.job_row(ids[0]).await.expect("row 0");
    let second = app.job_row(ids[1]).await.expect("row 1");
    let third = app.job_row(ids[2]).await.expect("row 2");
    assert_eq!(first.payload, json!({"n": 0}));
    assert_eq!(second.job_type, "sleep");
    assert_eq!(third.status, "scheduled");
    assert_eq!(app.all_rows().await.len(), 3);
}

#[tokio::test]
async fn a_user_batch_belongs_to_the_user() {
    let app = spawn_app().await;

    let (status, body) = app
        .batch(
            &user(ALICE),
            json!({"jobs": [{"jobType": "noop"}, {"jobType": "noop"}]}),
        )
        .await;

    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    for id in ids(&body) {
        assert_eq!(
            app.job_row(id).await.expect("row").user_id.as_deref(),
            Some(ALICE)
        );
    }
}

#[tokio::test]
async fn one_invalid_entry_rejects_the_whole_batch_and_is_named() {
    let app = spawn_app().await;

    let (status, body) = app
        .batch(
            service(),
            json!({"jobs": [
                {"jobType": "noop"},
                {"jobType": "no_such_type"},
                {"jobType": "noop"},
            ]}),
        )
        .await;

    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error(&body, "validation_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("jobs[1]"), "{message}");
    assert!(
        app.all_rows().await.is_empty(),
        "part of the batch was stored"
    );
}

#[tokio::test]
async fn an_idempotency_conflict_in_a_batch_stores_nothing() {
    let app = spawn_app().await;
    app.enqueue_ok(
        service(),
        json!({"jobType": "noop", "payload": {"v": 1}, "idempotencyKey": "k"}),
    )
    .await;

    let (status, body) = app
        .batch(
            service(),
            json!({"jobs": [
                {"jobType": "noop", "payload": {"fresh": true}},
                {"jobType": "noop", "payload": {"v": 2}, "idempotencyKey": "k"},
            ]}),
        )
        .await;

    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error(&body, "conflict");
    assert_eq!(app.all_rows().await.len(), 1, "the batch was partly stored");
}

#[tokio::test]
async fn an_empty_batch_is_refused() {
    let app = spawn_app().await;

    let (status, body) = app.batch(service(), json!({"jobs": []})).await;

    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error(&body, "validation_error");
}

#[tokio::test]
async fn a_batch_over_the_limit_is_too_large() {
    let app = spawn_app_with(|env| {
        env.set("BATCH_MAX_JOBS", "5");
    })
    .await;
    let jobs: Vec<Value> = (0..6)
        .map(|n| json!({"jobType": "noop", "payload": {"n": n}}))
        .collect();

    let (status, body) = app.batch(service(), json!({ "jobs": jobs })).await;

    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_error(&body, "payload_too_large");
    assert!(app.all_rows().await.is_empty());

    let (status, body) = app
        .batch(service(), json!({ "jobs": jobs[..5].to_vec() }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}
