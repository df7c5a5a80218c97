use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{ALICE, BOB, assert_error, job_id, service, spawn_app, user};

#[tokio::test]
async fn the_same_idempotency_key_gives_the_same_job() {
    let app = spawn_app().await;
    let request = json!({"jobType": "noop", "payload": {"n": 1}, "idempotencyKey": "order-42"});

    let (first_status, first) = app.enqueue(&user(ALICE), request.clone()).await;
    let (second_status, second) = app.enqueue(&user(ALICE), request).await;

    assert_eq!(first_status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(second_status, StatusCode::OK, "{second}");
    assert_eq!(job_id(&first), job_id(&second));
    assert_eq!(second["idempotencyKey"], "order-42");
    assert_eq!(app.all_rows().await.len(), 1);
}

#[tokio::test]
async fn an_idempotency_key_reused_with_another_payload_is_a_conflict() {
    let app = spawn_app().await;
    app.enqueue_ok(
        service(),
        json!({"jobType": "noop", "payload": {"n": 1}, "idempotencyKey": "k"}),
    )
    .await;

    let (status, body) = app
        .enqueue(
            service(),
            json!({"jobType": "noop", "payload": {"n": 2}, "idempotencyKey": "k"}),
        )
        .await;

    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error(&body, "conflict");
    assert_eq!(app.all_rows().await.len(), 1);
}

#[tokio::test]
async fn an_idempotency_key_reused_with_another_job_type_is_a_conflict() {
    let app = spawn_app().await;
    app.enqueue_ok(service(), json!({"jobType": "noop", "idempotencyKey": "k"}))
        .await;

    let (status, body) = app
        .enqueue(service(), json!({"jobType": "fail", "idempotencyKey": "k"}))
        .await;

    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error(&body, "conflict");
}

#[tokio::test]
async fn idempotency_keys_are_scoped_per_user() {
    let app = spawn_app().await;
    let request = json!({"jobType": "noop", "payload": {}, "idempotencyKey": "shared-key"});

    let (alice_status, alice) = app.enqueue(&user(ALICE), request.clone()).await;
    let (bob_status, bob) = app.enqueue(&user(BOB), request).await;

    assert_eq!(alice_status, StatusCode::ACCEPTED, "{alice}");
    assert_eq!(bob_status, StatusCode::ACCEPTED, "{bob}");
    assert_ne!(job_id(&alice), job_id(&bob));
    assert_eq!(app.all_rows().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_idempotency_key_create_exactly_one_job() {
    let app = spawn_app().await;
    let token = user(ALICE);
    let request = json!({"jobType": "noop", "payload": {"x": 1}, "idempotencyKey": "race"});

    let answers =
        futures::future::join_all((0..20).map(|_| app.enqueue(&token, request.clone()))).await;

    let ids: HashSet<_> = answers.iter().map(|(_, body)| job_id(body)).collect();
    assert_eq!(ids.len(), 1, "several jobs for one key: {answers:?}");
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .count();
    let replayed = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!((created, replayed), (1, 19), "{answers:?}");
    assert_eq!(app.all_rows().await.len(), 1);
}

#[tokio::test]
async fn an_empty_idempotency_key_is_refused() {
    let app = spawn_app().await;

    let (status, body) = app
        .enqueue(service(), json!({"jobType": "noop", "idempotencyKey": ""}))
        .await;

    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error(&body, "validation_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("idempotencyKey")
    );
}
