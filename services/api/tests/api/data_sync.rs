//! `data_sync` at the api: only the service and admins may run it, and its
//! payload is checked at enqueue (the worker repeats the same checks).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN, ALICE, admin, assert_error, service, spawn_app, user};

fn payload() -> Value {
    json!({
        "syncType": "http_pull",
        "source": {
            "url": "https://api.example.com/customers",
            "pagination": {"type": "cursor", "cursorParam": "after", "nextCursorPath": "meta.next"},
            "recordsPath": "data",
            "headers": {"Authorization": "Bearer upstream-secret"}
        },
        "target": {"table": "customers", "key": ["id"]},
        "filters": {"status": "active"}
    })
}

#[tokio::test]
async fn only_the_service_and_admins_may_enqueue_data_sync_jobs() {
    let app = spawn_app().await;
    let (status, body) = app
        .enqueue(
            &user(ALICE),
            json!({"jobType": "data_sync", "payload": payload()}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error(&body, "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("jobType")
    );
    // Even with a payload that would be refused: who comes before what.
    let (status, _) = app
        .enqueue(&user(ALICE), json!({"jobType": "data_sync", "payload": {}}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .batch(
            &user(ALICE),
            json!({"jobs": [{"jobType": "noop"}, {"jobType": "data_sync", "payload": payload()}]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(app.all_rows().await.is_empty(), "a job was stored");

    let by_admin = app
        .enqueue_ok(
            &admin(),
            json!({"jobType": "data_sync", "payload": payload()}),
        )
        .await;
    let by_service = app
        .enqueue_ok(
            service(),
            json!({"jobType": "data_sync", "payload": payload()}),
        )
        .await;
    let row = app.job_row(by_admin).await.unwrap();
    assert_eq!(row.queue, "data_sync");
    assert_eq!(row.user_id.as_deref(), Some(ADMIN));
    assert_eq!(app.job_row(by_service).await.unwrap().max_retries, 3);
}

#[tokio::test]
async fn a_bad_data_sync_payload_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let with = |change: &dyn Fn(&mut Value)| {
        let mut p = payload();
        change(&mut p);
        p
    };
    let cases = [
        (
            with(&|p| drop(p.as_object_mut().unwrap().remove("target"))),
            "payload.target",
        ),
        (
            with(&|p| drop(p["target"].as_object_mut().unwrap().remove("key"))),
            "payload.target",
        ),
        (
            with(&|p| p["target"]["key"] = json!([])),
            "payload.target.key",
        ),
        (
            with(&|p| p["target"]["table"] = json!("jobs")),
            "payload.target.table",
        ),
        (
            with(&|p| p["target"]["table"] = json!("public.schedules")),
            "payload.target.table",
        ),
        (
            with(&|p| p["target"]["table"] = json!("x; DROP TABLE jobs")),
            "payload.target.table",
        ),
        (
            with(&|p| p["syncType"] = json!("rsync")),
            "payload.syncType",
        ),
        (
            with(&|p| p["source"]["url"] = json!("gopher://x")),
            "payload.source.url",
        ),
        (with(&|p| p["batchSize"] = json!(-5)), "payload.batchSize"),
        (
            json!({"syncType": "sql_copy", "source": {"query": " ; "},
                   "target": {"table": "t", "key": ["id"]}}),
            "payload.source.query",
        ),
    ];
    for (payload, field) in cases {
        let (status, body) = app
            .enqueue(
                service(),
                json!({"jobType": "data_sync", "payload": payload}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{payload} → {body}"
        );
        assert_error(&body, "validation_error");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{payload}: {message}");
        assert!(!message.contains("upstream-secret"), "{message}");
    }
    assert!(app.all_rows().await.is_empty());
}
