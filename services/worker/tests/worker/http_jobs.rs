//! HTTP handlers: custom job types POSTed to an endpoint, signed per
//! Standard Webhooks, with progress called back through the api.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::Stack;

const SECRET_KEY: &[u8] = b"a test signing key of 32 bytes!!";

fn secret() -> String {
    format!("whsec_{}", STANDARD.encode(SECRET_KEY))
}

/// One request the fake endpoint received.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
}

/// What the fake endpoint answers, in order; the last answer repeats.
#[derive(Clone)]
struct Endpoint {
    received: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<Vec<(StatusCode, String)>>>,
    /// Calls the api's progress URL with the job's token before answering.
    report_progress: bool,
}

async fn hook(
    State(endpoint): State<Endpoint>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    endpoint.received.lock().unwrap().push(Received {
        headers: headers.clone(),
        body: body.to_vec(),
    });
    if endpoint.report_progress {
        let job: Value = serde_json::from_slice(&body).unwrap();
        let url = job["callback"]["url"].as_str().unwrap().to_owned();
        let token = job["callback"]["token"].as_str().unwrap().to_owned();
        let client = reqwest::Client::new();
        let status = client
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({"progress": 40, "message": "resizing", "log": "fetched the original"}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, reqwest::StatusCode::NO_CONTENT);
        // A forged token is refused.
        let forged = client
            .post(&url)
            .bearer_auth("rhcb_forged")
            .json(&json!({"progress": 90}))
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), reqwest::StatusCode::UNAUTHORIZED);
    }
    let mut answers = endpoint.answers.lock().unwrap();
    if answers.len() > 1 {
        answers.remove(0)
    } else {
        answers[0].clone()
    }
}

async fn endpoint(answers: Vec<(StatusCode, &str)>, report_progress: bool) -> (String, Endpoint) {
    let endpoint = Endpoint {
        received: Arc::default(),
        answers: Arc::new(Mutex::new(
            answers
                .into_iter()
                .map(|(s, b)| (s, b.to_owned()))
                .collect(),
        )),
        report_progress,
    };
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(endpoint.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, endpoint)
}

/// Starts a worker running `resize_image` through `url`, and waits until
/// the api accepts the type.
async fn http_worker(stack: &Stack, url: &str) -> crate::helpers::Running {
    let handlers = format!("resize_image={url}");
    let secret = secret();
    let worker = stack
        .worker_with(&[
            ("HTTP_HANDLERS", handlers.as_str()),
            ("HTTP_HANDLER_SECRET", secret.as_str()),
            ("ROUNDHOUSE_URL", stack.api_url.as_str()),
        ])
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stack
        .env
        .db
        .registered_job_types()
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "resize_image was never registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker
}

#[tokio::test]
async fn an_http_job_is_posted_signed_and_its_json_reply_is_the_result() {
    let stack = Stack::api_only().await;
    // Before any worker runs it, the custom type is unknown.
    let (status, body) = stack
        .enqueue(json!({"jobType": "resize_image", "payload": {}}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no worker has registered it")
    );

    let (url, endpoint) = endpoint(vec![(StatusCode::OK, r#"{"width": 640}"#)], true).await;
    let _worker = http_worker(&stack, &url).await;
    let id = stack
        .enqueue_ok(
            json!({"jobType": "resize_image", "payload": {"image": "cat.png"}, "userId": "user-1"}),
        )
        .await;
    let job = stack
        .wait_for_status(id, "completed", Duration::from_secs(15))
        .await;
    assert_eq!(job.result, Some(json!({"width": 640})));
    assert_eq!(job.queue, "default");

    let received = endpoint.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    let sent: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(sent["jobId"], id.to_string());
    assert_eq!(sent["jobType"], "resize_image");
    assert_eq!(sent["attempt"], 1);
    assert_eq!(sent["userId"], "user-1");
    assert_eq!(sent["payload"], json!({"image": "cat.png"}));

    // The signature, recomputed exactly as the documentation describes:
    // base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")).
    let header = |name: &str| request.headers[name].to_str().unwrap().to_owned();
    assert_eq!(header("webhook-id"), id.to_string());
    let timestamp = header("webhook-timestamp");
    let age = chrono::Utc::now().timestamp() - timestamp.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "timestamp is {age}s old");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET_KEY).unwrap();
    mac.update(format!("{}.{}.", header("webhook-id"), timestamp).as_bytes());
    mac.update(&request.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(header("webhook-signature"), expected);

    // The progress the endpoint reported is on the job's timeline.
    let events = stack.events(id).await;
    assert!(
        events.iter().any(|(kind, data)| kind == "progress"
            && data["progress"] == 40
            && data["message"] == "resizing"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(kind, data)| kind == "log" && data.to_string().contains("fetched the original")),
        "{events:?}"
    );
    // The attempt is over: its token no longer works.
    let token = sent["callback"]["token"].as_str().unwrap();
    let late = stack
        .http
        .post(format!("{}/api/jobs/{id}/progress", stack.api_url))
        .bearer_auth(token)
        .json(&json!({"progress": 99}))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 401);
}

#[tokio::test]
async fn a_500_is_retried_and_the_next_attempt_completes() {
    let stack = Stack::api_only().await;
    let (url, endpoint) = endpoint(
        vec![
            (StatusCode::INTERNAL_SERVER_ERROR, "busy"),
            (StatusCode::OK, ""),
        ],
        false,
    )
    .await;
    let _worker = http_worker(&stack, &url).await;
    // Retries wait in `scheduled` until the scheduler promotes them.
    let _scheduler = stack.scheduler().await;
    let id = stack.enqueue_ok(json!({"jobType": "resize_image"})).await;
    let job = stack
        .wait_for_status(id, "completed", Duration::from_secs(20))
        .await;
    assert_eq!(job.attempts, 2);
    assert_eq!(job.result, Some(Value::Null));
    let received = endpoint.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    // The same message id on every attempt, so the endpoint can deduplicate.
    assert_eq!(
        received[0].headers["webhook-id"],
        received[1].headers["webhook-id"]
    );
}

#[tokio::test]
async fn a_400_fails_the_job_at_once_with_the_endpoints_answer() {
    let stack = Stack::api_only().await;
    let (url, endpoint) =
        endpoint(vec![(StatusCode::BAD_REQUEST, "image is not a PNG")], false).await;
    let _worker = http_worker(&stack, &url).await;
    let id = stack
        .enqueue_ok(json!({"jobType": "resize_image", "maxRetries": 5}))
        .await;
    let job = stack
        .wait_for_status(id, "failed", Duration::from_secs(15))
        .await;
    assert_eq!(job.attempts, 1);
    let error = job.error.unwrap();
    assert!(
        error.contains("400") && error.contains("image is not a PNG"),
        "{error}"
    );
    assert_eq!(endpoint.received.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_429_and_a_408_are_retried() {
    let stack = Stack::api_only().await;
    let (url, endpoint) = endpoint(
        vec![
            (StatusCode::TOO_MANY_REQUESTS, "slow down"),
            (StatusCode::REQUEST_TIMEOUT, "timeout"),
            (StatusCode::OK, r#"{"ok": true}"#),
        ],
        false,
    )
    .await;
    let _worker = http_worker(&stack, &url).await;
    // Retries wait in `scheduled` until the scheduler promotes them.
    let _scheduler = stack.scheduler().await;
    let id = stack.enqueue_ok(json!({"jobType": "resize_image"})).await;
    let job = stack
        .wait_for_status(id, "completed", Duration::from_secs(30))
        .await;
    assert_eq!(job.attempts, 3);
    assert_eq!(endpoint.received.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn progress_callbacks_refuse_bad_input() {
    let stack = Stack::api_only().await;
    let id = uuid::Uuid::now_v7();
    let post = |path: String, token: Option<&str>, body: &str| {
        let mut request = stack
            .http
            .post(format!("{}{path}", stack.api_url))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let path = format!("/api/jobs/{id}/progress");
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(
            post(path.clone(), None, r#"{"progress": 1}"#)
                .await
                .unwrap()
        ),
        401
    );
    assert_eq!(
        status(
            post(path.clone(), Some("rhcb_x"), r#"{"progress": 1}"#)
                .await
                .unwrap()
        ),
        401
    );
    assert_eq!(
        status(
            post(path.clone(), Some("rhcb_x"), r#"{"progress": 101}"#)
                .await
                .unwrap()
        ),
        422
    );
    assert_eq!(
        status(post(path.clone(), Some("rhcb_x"), r#"{}"#).await.unwrap()),
        422
    );
    assert_eq!(
        status(
            post(path.clone(), Some("rhcb_x"), r#"{"progress": "#)
                .await
                .unwrap()
        ),
        400
    );
    assert_eq!(
        status(
            post(
                "/api/jobs/nope/progress".into(),
                Some("rhcb_x"),
                r#"{"progress": 1}"#
            )
            .await
            .unwrap()
        ),
        400
    );
}

#[tokio::test]
async fn http_handlers_for_built_in_types_or_without_a_secret_are_refused_at_start() {
    let stack = Stack::api_only().await;
    let mut env = stack.env.env();
    env.insert(
        "HTTP_HANDLERS".into(),
        "notifications=http://127.0.0.1:9/hook".into(),
    );
    env.insert("HTTP_HANDLER_SECRET".into(), secret());
    let settings = roundhouse_config::Settings::load_from(|name| env.get(name).cloned()).unwrap();
    let error = roundhouse_worker::Application::build(settings)
        .await
        .err()
        .expect("a built-in type cannot be an HTTP handler");
    assert!(error.to_string().contains("HTTP_HANDLERS"), "{error}");

    env.insert(
        "HTTP_HANDLERS".into(),
        "resize_image=http://127.0.0.1:9/hook".into(),
    );
    env.remove("HTTP_HANDLER_SECRET");
    let error = roundhouse_config::Settings::load_from(|name| env.get(name).cloned()).unwrap_err();
    assert_eq!(error.variable, "HTTP_HANDLER_SECRET");
}
