//! The executor's `GET /api/openapi.json` and `GET /api/docs`: the document
//! is valid OpenAPI, matches the routes the router serves, and fuzzing the
//! running executor from it (schemathesis) finds no server error.
//!
//! The Python tools come from `scripts/install-test-tools.sh` (`make test`
//! runs it); without them these tests fail, saying so.

use std::collections::BTreeSet;
use std::path::Path;

use reqwest::{Method, StatusCode};
use roundhouse_http::docs::Route;
use roundhouse_test_support::openapi::{
    assert_fuzzing_finds_no_server_error, assert_same_routes, assert_valid_openapi,
    documented_routes,
};
use serde_json::Value;

use roundhouse_test_support::SERVICE_TOKEN;

use crate::helpers::{BACKEND_SECRET, TestApp, alice, spawn_app, spawn_app_with};

/// A GET without credentials: (status, content type, body).
async fn fetch(app: &TestApp, path: &str) -> (StatusCode, String, String) {
    let response = app
        .client
        .get(app.url(path))
        .send()
        .await
        .expect("the executor answers");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, response.text().await.expect("a body"))
}

async fn document(app: &TestApp) -> Value {
    let (status, content_type, text) = fetch(app, "/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    serde_json::from_str(&text).expect("the document is JSON")
}

#[tokio::test]
async fn the_openapi_document_is_valid_openapi_3_1() {
    let app = spawn_app().await;
    let document = document(&app).await;
    assert_valid_openapi(&document, Path::new(env!("CARGO_TARGET_TMPDIR"))).await;
}

#[tokio::test]
async fn every_served_route_is_documented_and_every_documented_route_is_served() {
    let app = spawn_app().await;
    let documented = documented_routes(&document(&app).await);
    // What `router()` registers, recorded as it registers it.
    let served: BTreeSet<Route> = roundhouse_agent_executor::openapi::served_routes();
    assert_same_routes(&served, &documented);
    assert!(
        served.len() >= 17,
        "only {} routes: {served:?}",
        served.len()
    );
    // And the running server answers each documented route itself, not
    // with its fallback (404 `route not found`) or a 405.
    for route in &documented {
        let path = route
            .path
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{file}", "init.js");
        let method = Method::from_bytes(route.method.as_bytes()).expect("a method");
        let response = app.send(method, &path, Some(SERVICE_TOKEN), None).await;
        assert_ne!(response.status, StatusCode::METHOD_NOT_ALLOWED, "{route}");
        assert!(
            !(response.status == StatusCode::NOT_FOUND
                && response.body["error"]["message"] == "route not found"),
            "{route} is documented but the router does not serve it"
        );
    }
}

#[tokio::test]
async fn the_docs_page_is_html_whose_assets_are_same_origin_and_load() {
    let app = spawn_app().await;
    let (status, content_type, page) = fetch(&app, "/api/docs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let assets = referenced_urls(&page);
    assert!(assets.len() >= 2, "no assets in {page}");
    for url in &assets {
        assert!(
            url.starts_with('/') && !url.starts_with("//"),
            "the docs page references {url}, which is not same-origin"
        );
        let (status, _, asset) = fetch(&app, url).await;
        assert_eq!(status, StatusCode::OK, "{url}");
        assert!(!asset.is_empty(), "{url} is empty");
    }
    // The page renders this service's document, fetched from the same origin.
    let (_, _, init) = fetch(&app, "/api/docs/init.js").await;
    assert!(init.contains("\"/api/openapi.json\""), "{init}");
    assert!(!init.contains("://"), "{init}");
}

/// The `src` and `href` attribute values of `html`.
fn referenced_urls(html: &str) -> Vec<String> {
    ["src=\"", "href=\""]
        .iter()
        .flat_map(|attribute| {
            html.split(attribute)
                .skip(1)
                .filter_map(|rest| rest.split('"').next())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Fuzzes the running `app` from its document, sending `headers`.
async fn fuzz(app: &TestApp, headers: &[String]) {
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    assert_fuzzing_finds_no_server_error(&app.address, headers, scratch).await;
}

/// Fuzzing sends thousands of requests: lift the rate limits, which would
/// otherwise answer most of them 429.
async fn spawn_unlimited_app() -> TestApp {
    spawn_app_with(|env| {
        env.set("RATE_LIMIT_PER_USER_PER_MINUTE", "10000000")
            .set("RATE_LIMIT_PER_IP_PER_MINUTE", "10000000");
    })
    .await
}

#[tokio::test]
async fn fuzzing_the_executor_as_the_service_finds_no_server_error() {
    let app = spawn_unlimited_app().await;
    fuzz(
        &app,
        &[
            format!("Authorization: Bearer {SERVICE_TOKEN}"),
            format!("X-Backend-Secret: {BACKEND_SECRET}"),
        ],
    )
    .await;
}

#[tokio::test]
async fn fuzzing_the_executor_as_a_user_finds_no_server_error() {
    let app = spawn_unlimited_app().await;
    fuzz(
        &app,
        &[
            format!("Authorization: Bearer {}", alice()),
            format!("X-Backend-Secret: {BACKEND_SECRET}"),
        ],
    )
    .await;
}
