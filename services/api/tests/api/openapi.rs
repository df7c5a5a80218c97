//! `GET /api/openapi.json` and `GET /api/docs`: the document is valid
//! OpenAPI, matches the routes the router serves, and fuzzing the running
//! api from it (schemathesis) finds no server error.
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
use serde_json::{Value, json};

use crate::helpers::{ALICE, TestApp, service, spawn_app, spawn_app_with, user};

async fn document(app: &TestApp) -> Value {
    let response = app.get("/api/openapi.json", None).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "content type {:?}",
        response.header("content-type")
    );
    response.body
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
    // What `router()` registers, recorded as it registers it. The `/admin`
    // dashboard is a router of its own (HTML, session auth), deliberately
    // outside the API's document: it is excluded explicitly.
    let served: BTreeSet<Route> = roundhouse_api::openapi::served_routes()
        .into_iter()
        .filter(|route| !route.path.starts_with("/admin"))
        .collect();
    assert_same_routes(&served, &documented);
    assert!(
        served.len() >= 25,
        "only {} routes: {served:?}",
        served.len()
    );
    // And the running server answers each documented route itself, not
    // with its fallback (404 `route not found`) or a 405.
    for route in &documented {
        let path = route
            .path
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{name}", "default")
            .replace("{file}", "init.js");
        let method = Method::from_bytes(route.method.as_bytes()).expect("a method");
        let response = app.send(method, &path, Some(service()), None).await;
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
    let page = app.get("/api/docs", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        page.header("content-type")
    );
    let assets = referenced_urls(&page.text);
    assert!(assets.len() >= 2, "no assets in {}", page.text);
    for url in &assets {
        assert!(
            url.starts_with('/') && !url.starts_with("//"),
            "the docs page references {url}, which is not same-origin"
        );
        let asset = app.get(url, None).await;
        assert_eq!(asset.status, StatusCode::OK, "{url}");
        assert!(!asset.text.is_empty(), "{url} is empty");
    }
    // The page renders this service's document, fetched from the same origin.
    let init = app.get("/api/docs/init.js", None).await;
    assert!(init.text.contains("\"/api/openapi.json\""), "{}", init.text);
    assert!(!init.text.contains("://"), "{}", init.text);
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

/// Found by the fuzzing below: PostgreSQL cannot store NUL characters (in
/// `text` or `jsonb`), so they are refused at the edge, 422 in a body and
/// 400 in a query string, instead of failing a statement with a 500.
#[tokio::test]
async fn nul_characters_are_refused_instead_of_failing_the_database() {
    let app = spawn_app().await;
    for (path, body) in [
        (
            "/api/jobs/enqueue",
            json!({"jobType": "noop", "payload": {"note": "a\u{0}b"}}),
        ),
        (
            "/api/jobs/enqueue",
            json!({"jobType": "noop", "payload": {"a\u{0}": 1}}),
        ),
        (
            "/api/jobs/enqueue",
            json!({"jobType": "noop", "idempotencyKey": "a\u{0}b"}),
        ),
        (
            "/api/jobs/batch",
            json!({"jobs": [{"jobType": "noop", "queue": "a\u{0}b"}]}),
        ),
        (
            "/api/schedules",
            json!({"name": "a\u{0}b", "cron": "* * * * *", "jobType": "noop"}),
        ),
    ] {
        let response = app.post(path, Some(service()), &body).await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path} {body}: {}",
            response.text
        );
        assert_eq!(response.body["error"]["code"], "validation_error");
    }
    let response = app.get("/api/jobs?queue=a%00b", Some(service())).await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.text
    );
    assert_eq!(response.body["error"]["code"], "invalid_query");
    // An escaped backslash followed by `u0000` is no NUL.
    let response = app
        .post(
            "/api/jobs/enqueue",
            Some(service()),
            &json!({"jobType": "noop", "payload": {"note": "\\u0000"}}),
        )
        .await;
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text);
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
async fn fuzzing_the_api_as_the_service_finds_no_server_error() {
    let app = spawn_unlimited_app().await;
    fuzz(&app, &[format!("Authorization: Bearer {}", service())]).await;
}

#[tokio::test]
async fn fuzzing_the_api_as_a_user_finds_no_server_error() {
    let app = spawn_unlimited_app().await;
    fuzz(&app, &[format!("Authorization: Bearer {}", user(ALICE))]).await;
}
