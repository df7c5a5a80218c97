use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    ApiResponse, TestApp, assert_error, assert_error_shape, service, spawn_app, spawn_app_with,
};

/// Asserts that enqueueing `body` is refused with 422 and a message naming `field`.
async fn assert_refused(app: &TestApp, body: Value, field: &str) {
    let (status, answer) = app.enqueue(service(), body.clone()).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{body} → {answer}"
    );
    assert_error(&answer, "validation_error");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(field),
        "message of {body} does not name `{field}`: {message}"
    );
}

async fn post_raw(app: &TestApp, body: &str, content_type: Option<&str>) -> ApiResponse {
    let mut request = app
        .client
        .post(app.url("/api/jobs/enqueue"))
        .bearer_auth(service())
        .body(body.to_owned());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    ApiResponse::read(request.send().await.expect("the api answers")).await
}

#[tokio::test]
async fn malformed_json_is_a_bad_request() {
    let app = spawn_app().await;

    let response = post_raw(&app, r#"{"jobType": "noop",,}"#, Some("application/json")).await;

    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.text
    );
    assert_error(&response.body, "invalid_json");
    assert!(app.all_rows().await.is_empty());
}

#[tokio::test]
async fn fields_of_the_wrong_type_are_refused() {
    let app = spawn_app().await;
    assert_refused(&app, json!({"jobType": 5}), "jobType").await;
    assert_refused(
        &app,
        json!({"jobType": "noop", "priority": "high"}),
        "priority",
    )
    .await;
    assert_refused(
        &app,
        json!({"jobType": "noop", "maxRetries": 1.5}),
        "maxRetries",
    )
    .await;
    assert!(app.all_rows().await.is_empty());
}

#[tokio::test]
async fn unknown_fields_are_refused() {
    let app = spawn_app().await;
    assert_refused(&app, json!({"jobType": "noop", "colour": "blue"}), "colour").await;
}

#[tokio::test]
async fn a_missing_job_type_is_refused() {
    let app = spawn_app().await;
    assert_refused(&app, json!({"payload": {}}), "jobType").await;
}

#[tokio::test]
async fn an_unknown_job_type_is_refused() {
    let app = spawn_app().await;
    assert_refused(
        &app,
        json!({"jobType": "mine_bitcoin", "payload": {}}),
        "jobType",
    )
    .await;
}

#[tokio::test]
async fn a_job_type_without_a_handler_in_this_release_is_refused() {
    let app = spawn_app().await;
    assert_refused(
        &app,
        json!({"jobType": "agent_run", "payload": {"agentId": "a", "messages": []}}),
        "jobType",
    )
    .await;
}

#[tokio::test]
async fn timing_options_are_validated() {
    let app = spawn_app().await;
    assert_refused(
        &app,
        json!({"jobType": "noop", "delaySeconds": -1}),
        "delaySeconds",
    )
    .await;
    assert_refused(
        &app,
        json!({"jobType": "noop", "delaySeconds": 1e12}),
        "delaySeconds",
    )
    .await;
    assert_refused(
        &app,
        json!({"jobType": "noop", "delaySeconds": 5, "runAt": "2030-01-01T00:00:00Z"}),
        "delaySeconds",
    )
    .await;
    assert_refused(
        &app,
        json!({"jobType": "noop", "runAt": "next tuesday"}),
        "runAt",
    )
    .await;
    assert_refused(
        &app,
        json!({"jobType": "noop", "timeoutSeconds": 0}),
        "timeoutSeconds",
    )
    .await;
    assert!(app.all_rows().await.is_empty());
}

#[tokio::test]
async fn payloads_are_validated() {
    let app = spawn_app().await;
    assert_refused(
        &app,
        json!({"jobType": "sleep", "payload": {}}),
        "payload.ms",
    )
    .await;
    assert_refused(
        &app,
        json!({"jobType": "sleep", "payload": {"ms": "ten"}}),
        "payload.ms",
    )
    .await;
    assert_refused(
        &app,
        json!({"jobType": "noop", "payload": [1, 2]}),
        "payload",
    )
    .await;
    assert_refused(
        &app,
        json!({"jobType": "noop", "payload": "text"}),
        "payload",
    )
    .await;
    assert_refused(
        &app,
        json!({"jobType": "fail", "payload": {"times": "twice"}}),
        "payload.times",
    )
    .await;
}

#[tokio::test]
async fn numeric_options_must_be_in_range() {
    let app = spawn_app().await;
    assert_refused(
        &app,
        json!({"jobType": "noop", "maxRetries": 1000}),
        "maxRetries",
    )
    .await;
    assert_refused(
        &app,
        json!({"jobType": "noop", "maxRetries": -1}),
        "maxRetries",
    )
    .await;
    assert_refused(
        &app,
        json!({"jobType": "noop", "priority": 100000}),
        "priority",
    )
    .await;
    assert_refused(
        &app,
        json!({"jobType": "noop", "queue": "Not A Queue"}),
        "queue",
    )
    .await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_too_large() {
    let app = spawn_app_with(|env| {
        env.set("BODY_LIMIT_BYTES", "1024");
    })
    .await;
    let big = json!({"jobType": "noop", "payload": {"blob": "x".repeat(4096)}});

    let response = app.post("/api/jobs/enqueue", Some(service()), &big).await;

    assert_eq!(
        response.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        response.text
    );
    assert_error(&response.body, "payload_too_large");
    assert!(app.all_rows().await.is_empty());
    // A small body still goes through.
    app.enqueue_noop(service()).await;
}

#[tokio::test]
async fn a_body_without_a_json_content_type_is_refused() {
    let app = spawn_app().await;

    for content_type in [None, Some("text/plain")] {
        let response = post_raw(&app, r#"{"jobType": "noop"}"#, content_type).await;

        assert_eq!(
            response.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}: {}",
            response.text
        );
        assert_error(&response.body, "unsupported_media_type");
    }
    assert!(app.all_rows().await.is_empty());
}

#[tokio::test]
async fn a_job_id_that_is_not_a_uuid_is_a_bad_request() {
    let app = spawn_app().await;

    for (method, path) in [
        (Method::GET, "/api/jobs/not-a-uuid"),
        (Method::GET, "/api/jobs/not-a-uuid/status"),
        (Method::DELETE, "/api/jobs/not-a-uuid"),
        (Method::POST, "/api/jobs/not-a-uuid/retry"),
    ] {
        let response = app.send(method.clone(), path, Some(service()), None).await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{method} {path}: {}",
            response.text
        );
        assert_error(&response.body, "invalid_id");
    }
}

#[tokio::test]
async fn an_unknown_route_is_a_not_found_in_the_error_shape() {
    let app = spawn_app().await;

    let response = app.get("/api/nothing/here", Some(service())).await;

    assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.text);
    assert_error(&response.body, "not_found");
}

#[tokio::test]
async fn a_wrong_method_is_answered_in_the_error_shape() {
    let app = spawn_app().await;

    let response = app
        .send(Method::PUT, "/api/jobs/enqueue", Some(service()), None)
        .await;

    assert!(
        response.status.is_client_error(),
        "{} {}",
        response.status,
        response.text
    );
    assert_error_shape(&response.body);
}

/// RFC 9110 §15.5.6: a method the resource does not support is a 405 with an `Allow` header.
#[tokio::test]
async fn a_wrong_method_is_method_not_allowed() {
    let app = spawn_app().await;

    let response = app
        .send(Method::PUT, "/api/jobs/enqueue", Some(service()), None)
        .await;

    assert_eq!(
        response.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "{}",
        response.text
    );
    assert_error_shape(&response.body);
    let allow = response.header("allow").unwrap_or_default();
    assert!(allow.contains("POST"), "Allow: {allow:?}");
}

#[tokio::test]
async fn a_deeply_nested_body_is_refused() {
    let app = spawn_app().await;
    let depth = 1000;
    let body = format!(
        r#"{{"jobType": "noop", "payload": {{"deep": {}{}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );

    let response = post_raw(&app, &body, Some("application/json")).await;

    assert!(
        response.status.is_client_error(),
        "{} {}",
        response.status,
        response.text
    );
    assert_error_shape(&response.body);
    assert!(app.all_rows().await.is_empty());
}

#[tokio::test]
async fn invalid_list_queries_are_client_errors_in_the_error_shape() {
    let app = spawn_app().await;

    for query in [
        "limit=0",
        "limit=501",
        "limit=many",
        "status=bogus",
        "cursor=xyz",
        "sort=asc",
    ] {
        let (status, body) = app.list(service(), query).await;
        assert!(status.is_client_error(), "{query}: {status} {body}");
        assert_error_shape(&body);
    }
}
