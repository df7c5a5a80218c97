//! CORS from `ALLOWED_ORIGINS`: an exact allowlist, never a reflection.

use reqwest::Method;

use crate::helpers::{ApiResponse, TestApp, spawn_app, spawn_app_with};

const ALLOWED: &str = "https://app.example.com";

async fn preflight(app: &TestApp, origin: &str) -> ApiResponse {
    ApiResponse::read(
        app.client
            .request(Method::OPTIONS, app.url("/api/jobs/enqueue"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
            .await
            .expect("an answer"),
    )
    .await
}

async fn simple_get(app: &TestApp, origin: &str) -> ApiResponse {
    ApiResponse::read(
        app.client
            .get(app.url("/health"))
            .header("origin", origin)
            .send()
            .await
            .expect("an answer"),
    )
    .await
}

async fn spawn_app_with_cors() -> TestApp {
    spawn_app_with(|env| {
        env.set(
            "ALLOWED_ORIGINS",
            format!("{ALLOWED}, https://admin.example.com"),
        );
    })
    .await
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_allowed() {
    let app = spawn_app_with_cors().await;

    let response = preflight(&app, ALLOWED).await;

    assert!(
        response.status.is_success(),
        "{} {}",
        response.status,
        response.text
    );
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some(ALLOWED)
    );
    let methods = response
        .header("access-control-allow-methods")
        .unwrap_or_default()
        .to_uppercase();
    assert!(methods.contains("POST"), "{methods}");
    let headers = response
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );
    let vary = response.header("vary").unwrap_or_default().to_lowercase();
    assert!(vary.contains("origin"), "no Vary: Origin ({vary})");

    let second = preflight(&app, "https://admin.example.com").await;
    assert_eq!(
        second.header("access-control-allow-origin"),
        Some("https://admin.example.com")
    );
}

#[tokio::test]
async fn a_simple_request_from_an_allowed_origin_is_allowed() {
    let app = spawn_app_with_cors().await;

    let response = simple_get(&app, ALLOWED).await;

    assert_eq!(
        response.header("access-control-allow-origin"),
        Some(ALLOWED)
    );
}

#[tokio::test]
async fn other_origins_are_never_reflected() {
    let app = spawn_app_with_cors().await;

    for origin in [
        "https://evil.example",
        "null",
        "https://app.example.com.evil.example",
        "http://app.example.com",
        "https://APP.example.com",
    ] {
        let response = preflight(&app, origin).await;
        assert_eq!(
            response.header("access-control-allow-origin"),
            None,
            "preflight from {origin}"
        );
        assert_eq!(response.header("access-control-allow-credentials"), None);
        let response = simple_get(&app, origin).await;
        assert_eq!(
            response.header("access-control-allow-origin"),
            None,
            "GET from {origin}"
        );
    }
}

#[tokio::test]
async fn without_allowed_origins_no_cors_headers_are_sent() {
    let app = spawn_app().await;

    for origin in [ALLOWED, "https://evil.example", "null"] {
        let response = preflight(&app, origin).await;
        assert_eq!(
            response.header("access-control-allow-origin"),
            None,
            "{origin}"
        );
        let response = simple_get(&app, origin).await;
        assert_eq!(
            response.header("access-control-allow-origin"),
            None,
            "{origin}"
        );
    }
}

#[tokio::test]
async fn error_answers_to_an_allowed_origin_are_readable_by_the_browser() {
    let app = spawn_app_with_cors().await;

    let response = ApiResponse::read(
        app.client
            .post(app.url("/api/jobs/enqueue"))
            .header("origin", ALLOWED)
            .json(&serde_json::json!({"jobType": "noop"}))
            .send()
            .await
            .expect("an answer"),
    )
    .await;

    assert_eq!(response.status, reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some(ALLOWED)
    );
}
