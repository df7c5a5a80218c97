//! Per-user and per-address limits: 429 with `Retry-After`.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    ALICE, ApiResponse, BOB, TestApp, assert_error, service, spawn_app_with, user,
};

async fn enqueue_from(app: &TestApp, token: &str, ip: &str) -> ApiResponse {
    ApiResponse::read(
        app.client
            .post(app.url("/api/jobs/enqueue"))
            .bearer_auth(token)
            .header("x-real-ip", ip)
            .json(&json!({"jobType": "noop", "payload": {}}))
            .send()
            .await
            .expect("an answer"),
    )
    .await
}

fn assert_rate_limited(response: &ApiResponse) {
    assert_eq!(
        response.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        response.text
    );
    assert_error(&response.body, "rate_limited");
    let retry_after: u64 = response
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in whole seconds");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
}

#[tokio::test]
async fn a_user_over_their_limit_is_told_to_retry_later() {
    let app = spawn_app_with(|env| {
        env.set("RATE_LIMIT_PER_USER_PER_MINUTE", "3");
    })
    .await;
    let alice = user(ALICE);

    for n in 0..3 {
        let response = enqueue_from(&app, &alice, "198.51.100.1").await;
        assert_eq!(
            response.status,
            StatusCode::ACCEPTED,
            "request {n}: {}",
            response.text
        );
    }
    // The user, not the address, is limited: another address does not help.
    let response = enqueue_from(&app, &alice, "198.51.100.2").await;
    assert_rate_limited(&response);
    assert_eq!(app.all_rows().await.len(), 3);

    // Another user is not affected.
    let response = enqueue_from(&app, &user(BOB), "198.51.100.1").await;
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text);
}

#[tokio::test]
async fn the_service_token_is_not_rate_limited() {
    let app = spawn_app_with(|env| {
        env.set("RATE_LIMIT_PER_USER_PER_MINUTE", "3");
        env.set("RATE_LIMIT_PER_IP_PER_MINUTE", "3");
    })
    .await;

    for n in 0..10 {
        let response = enqueue_from(&app, service(), "198.51.100.1").await;
        assert_eq!(
            response.status,
            StatusCode::ACCEPTED,
            "request {n}: {}",
            response.text
        );
    }
    assert_eq!(app.all_rows().await.len(), 10);
}

#[tokio::test]
async fn failed_authentications_are_limited_per_address() {
    let app = spawn_app_with(|env| {
        env.set("RATE_LIMIT_PER_IP_PER_MINUTE", "3");
    })
    .await;

    let mut limited = None;
    for n in 0..6 {
        let response = enqueue_from(&app, "not-a-valid-token", "203.0.113.7").await;
        if response.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((n, response));
            break;
        }
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "{}",
            response.text
        );
    }
    let (n, response) = limited.expect("guessing tokens from one address was never limited");
    assert_eq!(n, 3, "limited after {n} attempts instead of 3");
    assert_rate_limited(&response);
    // Even a valid token is refused from that address for now.
    let response = enqueue_from(&app, &user(ALICE), "203.0.113.7").await;
    assert_rate_limited(&response);

    // Another address is not limited.
    let response = enqueue_from(&app, "not-a-valid-token", "203.0.113.8").await;
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        response.text
    );
    let response = enqueue_from(&app, &user(ALICE), "203.0.113.9").await;
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text);
}
