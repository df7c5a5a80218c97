use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{ALICE, BOB, assert_error, job_id, service, spawn_app, user};

fn timestamp(value: &serde_json::Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| panic!("not an RFC 3339 timestamp: {value}"))
        .with_timezone(&Utc)
}

#[tokio::test]
async fn the_service_enqueues_a_noop_job_and_gets_it_back_in_camel_case() {
    let app = spawn_app().await;

    let (status, body) = app
        .enqueue(
            service(),
            json!({"jobType": "noop", "payload": {"hello": "world"}}),
        )
        .await;

    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = job_id(&body);
    assert_eq!(body["id"], body["jobId"]);
    assert_eq!(body["status"], "queued");
    assert_eq!(body["jobType"], "noop");
    assert_eq!(body["queue"], "default");
    assert_eq!(body["payload"], json!({"hello": "world"}));
    assert_eq!(body["maxRetries"], 3);
    assert_eq!(body["attempts"], 0);
    assert_eq!(body["priority"], 0);
    assert_eq!(body["progress"], 0);
    assert!(body["userId"].is_null(), "{body}");
    for field in ["runAt", "createdAt", "timeoutSeconds"] {
        assert!(!body[field].is_null(), "`{field}` missing in {body}");
    }
    for snake in ["job_id", "job_type", "max_retries", "run_at", "created_at"] {
        assert!(
            body.get(snake).is_none(),
            "snake_case field `{snake}` in {body}"
        );
    }

    let row = app.job_row(id).await.expect("the job row exists");
    assert_eq!(row.status, "queued");
    assert_eq!(row.job_type, "noop");
    assert_eq!(row.queue, "default");
    assert_eq!(row.payload, json!({"hello": "world"}));
    assert!(row.user_id.is_none());
}

#[tokio::test]
async fn the_api_jobs_alias_enqueues_too() {
    let app = spawn_app().await;

    let response = app
        .post(
            "/api/jobs",
            Some(service()),
            &json!({"jobType": "noop", "payload": {}}),
        )
        .await;

    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text);
    let id = job_id(&response.body);
    assert_eq!(app.job_row(id).await.expect("row").status, "queued");
}

#[tokio::test]
async fn an_accepted_job_is_published_to_rabbitmq() {
    let app = spawn_app().await;

    let id = app.enqueue_noop(service()).await;

    // The dispatcher marks a job once the broker confirmed its message.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let row = app.job_row(id).await.expect("row");
        if row.dispatched_at.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job was never dispatched"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_user_enqueue_belongs_to_the_tokens_subject() {
    let app = spawn_app().await;

    let (status, body) = app
        .enqueue(&user(ALICE), json!({"jobType": "noop", "payload": {}}))
        .await;

    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["userId"], ALICE);
    let row = app.job_row(job_id(&body)).await.expect("row");
    assert_eq!(row.user_id.as_deref(), Some(ALICE));
}

#[tokio::test]
async fn a_user_may_name_themself_as_user_id() {
    let app = spawn_app().await;

    let (status, body) = app
        .enqueue(&user(ALICE), json!({"jobType": "noop", "userId": ALICE}))
        .await;

    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["userId"], ALICE);
}

#[tokio::test]
async fn a_user_cannot_enqueue_for_another_user() {
    let app = spawn_app().await;

    let (status, body) = app
        .enqueue(
            &user(ALICE),
            json!({"jobType": "noop", "payload": {}, "userId": BOB}),
        )
        .await;

    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error(&body, "forbidden");
    assert!(app.all_rows().await.is_empty(), "a job was stored");
}

#[tokio::test]
async fn the_service_can_enqueue_for_a_user() {
    let app = spawn_app().await;

    let (status, body) = app
        .enqueue(
            service(),
            json!({"jobType": "noop", "payload": {}, "userId": BOB}),
        )
        .await;

    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["userId"], BOB);
    let id = job_id(&body);
    assert_eq!(
        app.job_row(id).await.expect("row").user_id.as_deref(),
        Some(BOB)
    );
    // ... and that user then owns it.
    let (status, _) = app.get_job(&user(BOB), id).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_delayed_job_is_scheduled_for_later() {
    let app = spawn_app().await;
    let before = Utc::now();

    let (status, body) = app
        .enqueue(
            service(),
            json!({"jobType": "noop", "payload": {}, "delaySeconds": 60}),
        )
        .await;

    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "scheduled");
    let run_at = timestamp(&body["runAt"]);
    let expected = before + chrono::Duration::seconds(60);
    assert!(
        (run_at - expected).num_milliseconds().abs() < 5_000,
        "runAt {run_at} is not about {expected}"
    );
    let row = app.job_row(job_id(&body)).await.expect("row");
    assert_eq!(row.status, "scheduled");
    assert_eq!(row.run_at, run_at);
}

#[tokio::test]
async fn a_job_with_a_future_run_at_is_scheduled_at_that_time() {
    let app = spawn_app().await;
    let at = (Utc::now() + chrono::Duration::hours(2))
        .with_timezone(&Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);

    let (status, body) = app
        .enqueue(
            service(),
            json!({"jobType": "noop", "payload": {}, "runAt": at}),
        )
        .await;

    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "scheduled");
    assert_eq!(timestamp(&body["runAt"]), timestamp(&json!(at)));
    assert_eq!(
        app.job_row(job_id(&body)).await.expect("row").status,
        "scheduled"
    );
}

#[tokio::test]
async fn a_job_with_a_past_run_at_is_queued_at_once() {
    let app = spawn_app().await;
    let at = (Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();

    let (status, body) = app
        .enqueue(service(), json!({"jobType": "noop", "runAt": at}))
        .await;

    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "queued");
}

#[tokio::test]
async fn job_types_bring_their_defaults_and_requests_can_override_them() {
    let app = spawn_app().await;

    let (_, defaults) = app.enqueue(service(), json!({"jobType": "noop"})).await;
    assert_eq!(defaults["queue"], "default");
    assert_eq!(defaults["maxRetries"], 3);
    assert_eq!(defaults["timeoutSeconds"], 300);
    assert_eq!(defaults["priority"], 0);
    assert_eq!(defaults["payload"], json!({}));

    let (status, custom) = app
        .enqueue(
            service(),
            json!({
                "jobType": "sleep", "payload": {"ms": 10}, "queue": "custom0",
                "priority": 7, "maxRetries": 0, "timeoutSeconds": 30
            }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{custom}");
    assert_eq!(custom["queue"], "custom0");
    assert_eq!(custom["priority"], 7);
    assert_eq!(custom["maxRetries"], 0);
    assert_eq!(custom["timeoutSeconds"], 30);
    let row = app.job_row(job_id(&custom)).await.expect("row");
    assert_eq!(
        (row.queue.as_str(), row.priority, row.max_retries),
        ("custom0", 7, 0)
    );
}

#[tokio::test]
async fn a_zero_delay_is_queued_at_once() {
    let app = spawn_app().await;

    let (status, body) = app
        .enqueue(service(), json!({"jobType": "noop", "delaySeconds": 0}))
        .await;

    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "queued");
}

#[tokio::test]
async fn a_json_content_type_with_a_charset_is_accepted() {
    let app = spawn_app().await;

    let response = app
        .client
        .post(app.url("/api/jobs/enqueue"))
        .bearer_auth(service())
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"jobType": "noop"}"#)
        .send()
        .await
        .expect("an answer");

    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn users_may_only_use_queues_an_operator_configured() {
    let app = spawn_app().await;
    let alice = user(ALICE);

    let (status, body) = app
        .enqueue(&alice, json!({"jobType": "noop", "queue": "made-up"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_error(&body, "validation_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("made-up")
    );
    assert!(app.all_rows().await.is_empty(), "nothing stored");

    // Built-in queues are configured, and so is one an operator sets up.
    let (status, _) = app
        .enqueue(&alice, json!({"jobType": "noop", "queue": "notifications"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = app.set_paused(service(), "made-up", false).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .enqueue(&alice, json!({"jobType": "noop", "queue": "made-up"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // The service may use any valid queue name.
    let (status, _) = app
        .enqueue(service(), json!({"jobType": "noop", "queue": "ad-hoc"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_run_at_more_than_a_year_ahead_is_refused() {
    let app = spawn_app().await;
    let far = (Utc::now() + chrono::Duration::days(400)).to_rfc3339();
    let (status, body) = app
        .enqueue(service(), json!({"jobType": "noop", "runAt": far}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("runAt"));
}

#[tokio::test]
async fn concurrent_single_enqueues_each_get_their_own_job_back() {
    // Concurrent requests share INSERT statements (group commit): every
    // request must still be answered with its own row.
    let app = spawn_app().await;
    let requests = (0..200).map(|n| {
        let app = &app;
        async move {
            let (status, body) = app
                .enqueue(service(), json!({"jobType": "noop", "payload": {"n": n}}))
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            assert_eq!(
                body["payload"]["n"], n,
                "request {n} got another job: {body}"
            );
            job_id(&body)
        }
    });
    let mut ids = futures::future::join_all(requests).await;
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "200 distinct jobs");
    let rows = app.all_rows().await;
    assert_eq!(rows.len(), 200);
    for id in ids {
        let row = app.job_row(id).await.expect("stored");
        assert_eq!(row.status, "queued");
    }
}
