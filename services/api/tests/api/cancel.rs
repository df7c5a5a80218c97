//! Cancel (`DELETE /api/jobs/{id}`) and manual retry.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{ALICE, assert_error, service, spawn_app, user};

#[tokio::test]
async fn a_queued_job_is_cancelled() {
    let app = spawn_app().await;
    let id = app.enqueue_noop(&user(ALICE)).await;

    let (status, job) = app.cancel(&user(ALICE), id).await;

    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["id"], id.to_string());
    assert_eq!(job["status"], "cancelled");
    assert!(!job["completedAt"].is_null(), "{job}");
    let row = app.job_row(id).await.expect("row");
    assert_eq!(row.status, "cancelled");
    assert!(row.completed_at.is_some());
}

#[tokio::test]
async fn a_scheduled_job_is_cancelled() {
    let app = spawn_app().await;
    let id = app
        .enqueue_ok(service(), json!({"jobType": "noop", "delaySeconds": 600}))
        .await;

    let (status, job) = app.cancel(service(), id).await;

    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(app.job_row(id).await.expect("row").status, "cancelled");
}

#[tokio::test]
async fn a_running_job_is_cancelled_and_its_attempt_superseded() {
    let app = spawn_app().await;
    let id = app.enqueue_noop(service()).await;
    let attempt = app.claim(id).await;

    let (status, job) = app.cancel(service(), id).await;

    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["status"], "cancelled");
    // The worker's late completion is refused.
    let accepted = app
        .env
        .db
        .complete_jobs(&[roundhouse_db::Completion {
            job_id: id,
            attempt,
            result: json!({}),
        }])
        .await
        .expect("complete");
    assert!(accepted.is_empty());
    assert_eq!(app.job_row(id).await.expect("row").status, "cancelled");
}

#[tokio::test]
async fn cancelling_a_cancelled_job_is_a_conflict() {
    let app = spawn_app().await;
    let id = app.enqueue_noop(&user(ALICE)).await;
    let (status, _) = app.cancel(&user(ALICE), id).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = app.cancel(&user(ALICE), id).await;

    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error(&body, "conflict");
    assert_eq!(app.job_row(id).await.expect("row").status, "cancelled");
}

#[tokio::test]
async fn cancelling_a_completed_job_is_a_conflict() {
    let app = spawn_app().await;
    let id = app.enqueue_noop(service()).await;
    app.make_completed(id).await;

    let (status, body) = app.cancel(service(), id).await;

    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error(&body, "conflict");
    assert_eq!(app.job_row(id).await.expect("row").status, "completed");
}

#[tokio::test]
async fn a_cancelled_job_can_be_retried() {
    let app = spawn_app().await;
    let id = app.enqueue_noop(&user(ALICE)).await;
    app.cancel(&user(ALICE), id).await;

    let (status, job) = app.retry(&user(ALICE), id).await;

    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["id"], id.to_string());
    assert_eq!(job["status"], "queued");
    assert!(job["completedAt"].is_null(), "{job}");
    let row = app.job_row(id).await.expect("row");
    assert_eq!(row.status, "queued");
    assert!(row.completed_at.is_none());
}

#[tokio::test]
async fn a_failed_job_can_be_retried_with_a_fresh_budget() {
    let app = spawn_app().await;
    let id = app.enqueue_noop(service()).await;
    app.make_failed(id).await;
    assert_eq!(app.job_row(id).await.expect("row").status, "failed");

    let (status, job) = app.retry(service(), id).await;

    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["status"], "queued");
    assert!(job["error"].is_null(), "{job}");
    let row = app.job_row(id).await.expect("row");
    assert_eq!(row.status, "queued");
    assert_eq!(row.attempt_base, row.attempts);
}

#[tokio::test]
async fn retrying_a_job_that_has_not_failed_is_a_conflict() {
    let app = spawn_app().await;
    let queued = app.enqueue_noop(service()).await;
    let completed = app.enqueue_noop(service()).await;
    app.make_completed(completed).await;

    for (id, state) in [(queued, "queued"), (completed, "completed")] {
        let (status, body) = app.retry(service(), id).await;
        assert_eq!(status, StatusCode::CONFLICT, "{state}: {body}");
        assert_error(&body, "conflict");
        assert_eq!(app.job_row(id).await.expect("row").status, state);
    }
}
