//! One trace from the enqueue request through RabbitMQ into the worker and
//! its outbound calls (spans collected by an in-memory exporter).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use roundhouse_config::LogFormat;
use roundhouse_test_support::SERVICE_TOKEN;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::Stack;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn in_trace<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans
        .iter()
        .filter(|s| s.name == name && s.span_context.trace_id().to_string() == TRACE_ID)
        .collect()
}

async fn enqueue_traced(stack: &Stack, body: Value) -> Uuid {
    let response = stack
        .http
        .post(format!("{}/api/jobs", stack.api_url))
        .bearer_auth(SERVICE_TOKEN)
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    body["jobId"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_trace_id_sent_with_the_enqueue_request_reaches_the_workers_spans_and_outbound_calls() {
    let exporter = InMemorySpanExporter::default();
    let telemetry = roundhouse_telemetry::init_with_exporter(
        LogFormat::Pretty,
        "info",
        "roundhouse-test",
        exporter.clone(),
    );
    // An HTTP handler endpoint that records the trace context it receives.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let recorder = seen.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap| {
            let recorder = recorder.clone();
            async move {
                if let Some(value) = headers.get("traceparent") {
                    recorder
                        .lock()
                        .unwrap()
                        .push(value.to_str().unwrap().to_owned());
                }
                axum::Json(json!({"ok": true}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let stack = Stack::api_only().await;
    let handlers = format!("traced_hook={hook}");
    let _worker = stack
        .worker_with(&[
            ("HTTP_HANDLERS", handlers.as_str()),
            ("HTTP_HANDLER_SECRET", "whsec_dGVzdCBzZWNyZXQ="),
        ])
        .await;
    let id = enqueue_traced(&stack, json!({"jobType": "noop"})).await;
    let job = stack
        .wait_for_status(id, "completed", Duration::from_secs(15))
        .await;
    // The job row keeps the context of the request's span, in the caller's trace.
    let stored = job
        .traceparent
        .expect("the job row stores the trace context");
    assert!(stored.starts_with(&format!("00-{TRACE_ID}-")), "{stored}");

    // A custom type runs once its worker registered it.
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
            "traced_hook never registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hooked = enqueue_traced(&stack, json!({"jobType": "traced_hook"})).await;
    stack
        .wait_for_status(hooked, "completed", Duration::from_secs(15))
        .await;

    telemetry.flush();
    let spans = exporter.get_finished_spans().unwrap();
    let requests = in_trace(&spans, "http.request");
    assert!(
        requests
            .iter()
            .any(|s| s.parent_span_id.to_string() == CALLER_SPAN),
        "the api's request span continues the caller's span: {requests:?}"
    );
    let publishes = in_trace(&spans, "amqp.publish");
    assert!(
        publishes.len() >= 2,
        "both dispatches are traced: {publishes:?}"
    );
    let runs = in_trace(&spans, "job.run");
    assert_eq!(runs.len(), 2, "one run span per job: {runs:?}");
    assert!(runs.iter().any(|run| {
        run.attributes
            .iter()
            .any(|kv| kv.key.as_str() == "job_id" && kv.value.as_str() == id.to_string())
    }));
    // The endpoint received the context of the run that called it.
    let received = seen.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert!(
        received[0].starts_with(&format!("00-{TRACE_ID}-")),
        "{received:?}"
    );
    let hook_run = runs
        .iter()
        .find(|run| received[0].contains(&run.span_context.span_id().to_string()))
        .expect("the endpoint's parent is the job's run span");
    assert_eq!(hook_run.span_context.trace_id().to_string(), TRACE_ID);
}

#[tokio::test]
async fn jobs_run_normally_when_the_trace_collector_is_unreachable() {
    // Nothing listens on port 9: every export fails.
    let mut env = std::collections::HashMap::new();
    env.insert("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9");
    let settings = roundhouse_config::Settings::load_from(|name| {
        env.get(name).map(|v| v.to_string()).or_else(|| {
            (name == "ROUNDHOUSE_CONFIG").then(|| "/nonexistent/roundhouse.toml".to_owned())
        })
    })
    .unwrap();
    let telemetry = roundhouse_telemetry::init_service(&settings, "roundhouse-test");

    let stack = Stack::api_only().await;
    let _worker = stack.worker().await;
    let ids: Vec<Uuid> = futures::future::join_all(
        (0..50).map(|_| enqueue_traced(&stack, json!({"jobType": "noop"}))),
    )
    .await;
    for id in ids {
        stack
            .wait_for_status(id, "completed", Duration::from_secs(20))
            .await;
    }
    // Shutting the exporter down gives up within its timeout.
    drop(telemetry);
}
