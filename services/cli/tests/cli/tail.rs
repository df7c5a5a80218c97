use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::helpers::{Stack, cli};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_enqueue_then_tail_then_status_against_a_running_stack() {
    let stack = Stack::start().await;

    let enqueued = stack
        .cli(&["enqueue", "sleep", "--payload", r#"{"ms": 1500}"#])
        .await;
    let id = enqueued.ok().to_owned();
    uuid::Uuid::parse_str(&id).expect("enqueue prints the job id");

    let tail = stack.cli(&["tail", &id]).await;
    assert_eq!(tail.code, 0, "{tail:?}");
    assert!(
        tail.stdout.contains("progress"),
        "no progress shown: {tail:?}"
    );
    assert!(
        tail.stdout.trim_end().ends_with("completed"),
        "tail does not end with completed: {tail:?}"
    );

    let job = stack.cli(&["status", &id, "--json"]).await.json();
    assert_eq!(job["id"], id.as_str());
    assert_eq!(job["status"], "completed");
    assert_eq!(job["progress"], 100);
    let table = stack.cli(&["status", &id]).await;
    assert!(table.ok().contains("completed"), "{table:?}");
    // Tailing a job that already ended replays it and stops.
    let again = stack.cli(&["tail", &id]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.trim_end().ends_with("completed"), "{again:?}");

    let page = stack
        .cli(&["--json", "jobs", "--type", "sleep"])
        .await
        .json();
    let ids: Vec<_> = page["jobs"]
        .as_array()
        .expect("a page of jobs")
        .iter()
        .map(|job| job["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let table = stack.cli(&["jobs", "--status", "completed"]).await;
    assert!(table.ok().contains(&id), "{table:?}");
    let none = stack
        .cli(&["jobs", "--json", "--status", "failed"])
        .await
        .json();
    assert_eq!(none["jobs"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_wait_exits_1_when_the_job_fails() {
    let stack = Stack::start().await;

    let waited = stack
        .cli(&[
            "enqueue",
            "fail",
            "--payload",
            r#"{"permanent": true}"#,
            "--wait",
        ])
        .await;

    assert_eq!(waited.code, 1, "{waited:?}");
    let last = waited.stdout.trim_end().lines().last().unwrap_or_default();
    assert!(last.contains(" failed"), "{waited:?}");

    let json = stack
        .cli(&[
            "enqueue",
            "sleep",
            "--payload",
            r#"{"ms": 10}"#,
            "--wait",
            "--json",
        ])
        .await
        .json();
    assert_eq!(json["status"], "completed");
}

/// A stand-in API with the events endpoint: one job's stream, then the job.
async fn fake_api_with_events() -> String {
    const STREAM: &str = concat!(
        ": keep-alive\n\n",
        "id: 1\nevent: status\ndata: {\"id\":1,\"kind\":\"status\",\"attempt\":1,\"data\":{\"status\":\"processing\"},\"createdAt\":\"2026-01-01T00:00:00Z\"}\n\n",
        "id: 2\nevent: progress\ndata: {\"id\":2,\"kind\":\"progress\",\"attempt\":1,\"data\":{\"progress\":50,\"message\":\"half way\"},\"createdAt\":\"2026-01-01T00:00:01Z\"}\n\n",
        "id: 3\nevent: log\ndata: {\"id\":3,\"kind\":\"log\",\"attempt\":1,\"data\":{\"message\":\"a log line\"},\"createdAt\":\"2026-01-01T00:00:01Z\"}\n\n",
        "id: 4\nevent: status\ndata: {\"id\":4,\"kind\":\"status\",\"attempt\":1,\"data\":{\"status\":\"failed\",\"error\":\"boom\"},\"createdAt\":\"2026-01-01T00:00:02Z\"}\n\n",
    );
    let app = Router::new()
        .route(
            "/api/jobs/{id}/events",
            get(|| async {
                ([(header::CONTENT_TYPE, "text/event-stream")], STREAM).into_response()
            }),
        )
        .route(
            "/api/jobs/{id}",
            get(|| async {
                axum::Json(json!({"id": "j1", "status": "failed", "error": "boom", "attempts": 1}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_the_event_stream_when_the_api_has_one() {
    let url = fake_api_with_events().await;
    let env = [("ROUNDHOUSE_URL", url.as_str())];

    let tail = tokio::time::timeout(Duration::from_secs(30), cli(&env, &["tail", "j1"]))
        .await
        .unwrap();

    assert_eq!(tail.code, 1, "{tail:?}");
    let lines: Vec<_> = tail.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "status processing (attempt 1)",
            "progress  50% half way",
            "a log line",
            "status failed (attempt 1): boom",
            "job j1 failed: boom",
        ],
        "{tail:?}"
    );

    let json = cli(&env, &["tail", "j1", "--json"]).await;
    assert_eq!(json.code, 1, "{json:?}");
    let events: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let kinds: Vec<_> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["status", "progress", "log", "status"]);
}

/// A stand-in API from before the events endpoint: each poll of the job
/// shows the next of `states`, then the last one for good.
async fn fake_api_without_events(states: Vec<serde_json::Value>) -> String {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let polls = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/api/jobs/{id}",
        get(move || {
            let n = polls.fetch_add(1, Ordering::SeqCst);
            let state = states[n.min(states.len() - 1)].clone();
            async move { axum::Json(state) }
        }),
    );
    // Unknown routes answer 404 in the API's error shape, as the API does.
    let app = app.fallback(|| async {
        (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"code": "not_found", "message": "route not found"}})),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_polls_the_job_when_the_api_has_no_event_stream() {
    let job = |status: &str, attempts: i64, progress: i64, message: Option<&str>| {
        json!({"id": "j2", "status": status, "attempts": attempts, "progress": progress,
               "progressMessage": message, "error": null})
    };
    let url = fake_api_without_events(vec![
        job("queued", 0, 0, None),
        job("processing", 1, 0, None),
        job("processing", 1, 40, Some("reading")),
        job("processing", 1, 40, Some("reading")),
        job("cancelled", 1, 40, Some("reading")),
    ])
    .await;

    let tail = cli(&[("ROUNDHOUSE_URL", url.as_str())], &["tail", "j2"]).await;

    assert_eq!(tail.code, 1, "a cancelled job exits 1: {tail:?}");
    let lines: Vec<_> = tail.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "status queued",
            "status processing (attempt 1)",
            "progress  40% reading",
            "status cancelled (attempt 1)",
            "job j2 cancelled",
        ],
        "{tail:?}"
    );
}
