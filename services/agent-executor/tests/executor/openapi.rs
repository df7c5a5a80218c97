//! The executor's `GET /api/openapi.json` and `GET /api/docs`: the document
//! is valid OpenAPI, matches the routes the router serves, and fuzzing the
//! running executor from it (schemathesis) finds no server error.
//!
//! The Python tools come from `scripts/install-test-tools.sh` (`make test`
//! runs it); without them these tests fail, saying so.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use reqwest::{Method, StatusCode};
use roundhouse_http::docs::Route;
use serde_json::Value;

use roundhouse_test_support::SERVICE_TOKEN;

use crate::helpers::{BACKEND_SECRET, TestApp, alice, spawn_app, spawn_app_with};

/// The methods an OpenAPI path item may hold.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// A pinned tool of `scripts/test-tools-requirements.txt`.
fn tool(name: &str) -> PathBuf {
    let bin = std::env::var_os("ROUNDHOUSE_TEST_TOOLS")
        .map(|venv| PathBuf::from(venv).join("bin"))
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-tools/venv/bin")
        });
    let path = bin.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `make test` or `scripts/install-test-tools.sh`, which install the \
         pinned Python test tools into target/test-tools/venv",
        path.display()
    );
    path
}

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

/// (method, path) of every operation of `document`.
fn documented_routes(document: &Value) -> BTreeSet<Route> {
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|method| item.get(**method).is_some())
                .map(|method| Route {
                    method: method.to_uppercase(),
                    path: path.clone(),
                })
        })
        .collect()
}

#[tokio::test]
async fn the_openapi_document_is_valid_openapi_3_1() {
    let app = spawn_app().await;
    let document = document(&app).await;
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        document["openapi"]
    );
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "roundhouse-executor-openapi-{}.json",
        app.env.prefix
    ));
    std::fs::write(&file, document.to_string()).expect("write the document");
    let output = tokio::process::Command::new(tool("openapi-spec-validator"))
        .arg(&file)
        .output()
        .await
        .expect("run openapi-spec-validator");
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn every_served_route_is_documented_and_every_documented_route_is_served() {
    let app = spawn_app().await;
    let documented = documented_routes(&document(&app).await);
    // What `router()` registers, recorded as it registers it.
    let served: BTreeSet<Route> = roundhouse_agent_executor::openapi::served_routes();
    let undocumented: Vec<String> = served
        .difference(&documented)
        .map(|r| r.to_string())
        .collect();
    let unserved: Vec<String> = documented
        .difference(&served)
        .map(|r| r.to_string())
        .collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "served but not documented: {undocumented:?}\ndocumented but not served: {unserved:?}"
    );
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

/// Runs schemathesis against the running `app` from its document, with
/// `headers`, checking only that no answer is a server error. Bounded (25
/// examples per operation and phase, a fixed seed for reproducible runs):
/// well under two minutes.
async fn fuzz(app: &TestApp, headers: &[String]) {
    let started = Instant::now();
    let mut command = tokio::process::Command::new(tool("schemathesis"));
    command
        // Its example database (`.schemathesis/`) goes to the tests' scratch
        // directory, not the source tree.
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .arg("run")
        .arg(app.url("/api/openapi.json"))
        .args(["--url", &app.address])
        .args(["--checks", "not_a_server_error"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "25"])
        .args(["--seed", "1"])
        .args(["--workers", "2"])
        // Event streams of the jobs (runs) it created stay open: end them soon.
        .args(["--request-timeout", "2"])
        .args(["--suppress-health-check", "all"])
        .args(["--warnings", "off"])
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", "");
    for header in headers {
        command.args(["-H", header]);
    }
    let output = command.output().await.expect("run schemathesis");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found problems ({:?}):\n{report}",
        output.status
    );
    eprintln!(
        "schemathesis passed in {:.0?}:\n{report}",
        started.elapsed()
    );
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
