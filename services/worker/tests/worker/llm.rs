//! `llm_processing` jobs end to end: the dev provider, and a local fake
//! OpenAI-compatible server (never a real provider).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::helpers::Stack;

const FAKE_KEY: &str = "sk-fake-key-0123456789";

/// A fake `/v1/chat/completions`: answers each request with what `reply`
/// says for that request's number (0-based), counting requests.
async fn fake_openai(
    reply: impl Fn(usize) -> (StatusCode, &'static str, String) + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let reply = Arc::new(reply);
    let counter = calls.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let (status, content_type, body) = reply(n);
            async move { (status, [("content-type", content_type)], body).into_response() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

fn sse(chunks: &[&str]) -> String {
    let mut body = String::new();
    for chunk in chunks {
        let data =
            json!({"choices": [{"index": 0, "delta": {"content": chunk}, "finish_reason": null}]});
        body.push_str(&format!("data: {data}\n\n"));
    }
    let done = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    let usage = json!({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}});
    body.push_str(&format!(
        "data: {done}\n\ndata: {usage}\n\ndata: [DONE]\n\n"
    ));
    body
}

fn chunk_text(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(kind, _)| kind == "chunk")
        .map(|(_, data)| data["content"].as_str().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn an_llm_job_with_the_dev_provider_streams_its_answer_into_the_timeline() {
    let stack = Stack::api_only().await;
    let worker = stack.worker().await;
    let id = stack
        .enqueue_ok(json!({
            "jobType": "llm_processing",
            "payload": {"provider": "dev", "prompt": "Summarise the standup notes", "maxTokens": 64}
        }))
        .await;
    let job = stack
        .wait_for_status(id, "completed", Duration::from_secs(15))
        .await;
    assert_eq!(job.queue, "llm_processing", "the type's default queue");
    let result = job.result.unwrap();
    assert_eq!(
        result["output"],
        "Dev reply to: Summarise the standup notes"
    );
    assert_eq!(result["provider"], "dev");
    assert_eq!(result["usage"]["completionTokens"], 7, "one per word");
    assert_eq!(
        result["usage"]["totalTokens"],
        result["usage"]["promptTokens"].as_u64().unwrap() + 7
    );
    let events = stack.events(id).await;
    assert_eq!(chunk_text(&events), result["output"].as_str().unwrap());
    assert!(
        events
            .iter()
            .any(|(kind, data)| kind == "progress" && data["progress"] == 100)
    );
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn an_llm_job_against_an_openai_compatible_server_returns_its_output_and_usage() {
    let (url, calls) = fake_openai(|_| {
        (
            StatusCode::OK,
            "text/event-stream",
            sse(&["The ", "answer ", "is ", "42."]),
        )
    })
    .await;
    let stack = Stack::api_only().await;
    let providers = format!("fake={url}|{FAKE_KEY}");
    let worker = stack.worker_with(&[("LLM_PROVIDERS", &providers)]).await;
    let id = stack
        .enqueue_ok(json!({
            "jobType": "llm_processing",
            "payload": {"provider": "fake", "model": "gpt-test",
                        "messages": [{"role": "user", "content": "What is the answer?"}]}
        }))
        .await;
    let job = stack
        .wait_for_status(id, "completed", Duration::from_secs(15))
        .await;
    let result = job.result.unwrap();
    assert_eq!(result["output"], "The answer is 42.");
    assert_eq!(
        result["usage"],
        json!({"promptTokens": 12, "completionTokens": 4, "totalTokens": 16})
    );
    assert_eq!(result["finishReason"], "stop");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(chunk_text(&stack.events(id).await), "The answer is 42.");
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_key_fails_the_job_at_once_without_showing_the_key() {
    let (url, calls) = fake_openai(|_| {
        (
            StatusCode::UNAUTHORIZED,
            "application/json",
            json!({"error": {"message": format!("Incorrect API key provided: {FAKE_KEY}"), "type": "invalid_request_error"}})
                .to_string(),
        )
    })
    .await;
    let stack = Stack::api_only().await;
    let providers = format!("fake={url}|{FAKE_KEY}");
    let worker = stack.worker_with(&[("LLM_PROVIDERS", &providers)]).await;
    let id = stack
        .enqueue_ok(json!({
            "jobType": "llm_processing", "maxRetries": 3,
            "payload": {"provider": "fake", "model": "gpt-test", "prompt": "hi"}
        }))
        .await;
    let job = stack
        .wait_for_status(id, "failed", Duration::from_secs(15))
        .await;
    assert_eq!(job.attempts, 1, "a refused key is not retried");
    let error = job.error.unwrap();
    assert!(error.contains("401"), "{error}");
    assert!(error.contains("Incorrect API key"), "{error}");
    assert!(
        !error.contains(FAKE_KEY),
        "the key never reaches the job: {error}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn provider_outages_are_retried_by_the_job_and_then_fail_it() {
    let (url, calls) = fake_openai(|_| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            json!({"error": {"message": "overloaded"}}).to_string(),
        )
    })
    .await;
    let stack = Stack::api_only().await;
    let providers = format!("fake={url}");
    let worker = stack
        .worker_with(&[("LLM_PROVIDERS", &providers), ("LLM_MAX_RETRIES", "0")])
        .await;
    let scheduler = stack.scheduler().await;
    let id = stack
        .enqueue_ok(json!({
            "jobType": "llm_processing", "maxRetries": 1,
            "payload": {"provider": "fake", "model": "gpt-test", "prompt": "hi"}
        }))
        .await;
    let job = stack
        .wait_for_status(id, "failed", Duration::from_secs(20))
        .await;
    assert_eq!(job.attempts, 2, "the first attempt and one retry");
    assert!(job.error.unwrap().contains("503"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    worker.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}

#[tokio::test]
async fn a_bad_llm_payload_is_refused_at_enqueue_naming_the_field() {
    let stack = Stack::api_only().await;
    for (payload, field) in [
        (json!({"model": "m", "prompt": "p"}), "provider"),
        (json!({"provider": "openai", "prompt": "p"}), "model"),
        (json!({"provider": "dev"}), "messages"),
        (
            json!({"provider": "dev", "prompt": "p", "temperature": 7}),
            "temperature",
        ),
    ] {
        let (status, body) = stack
            .enqueue(json!({"jobType": "llm_processing", "payload": payload}))
            .await;
        assert_eq!(status, 422, "{payload}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{payload}: {message}");
    }
}
