use std::time::{Duration, Instant};

use roundhouse_llm::{ChatMessage, ChatRequest, LlmConfig, LlmError};
use serde_json::json;

use crate::helpers::{FakeServer, Reply, collect, data, deltas_and_done, openai, test_config};

fn request() -> ChatRequest {
    ChatRequest::new("gpt-4o-mini", vec![ChatMessage::user("ping")])
}

fn ok() -> Reply {
    Reply::json(
        200,
        json!({
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        }),
    )
}

fn unavailable() -> Reply {
    Reply::json(
        503,
        json!({"error": {"message": "The server is overloaded", "type": "server_error"}}),
    )
}

#[tokio::test]
async fn a_rate_limit_is_retried_after_retry_after() {
    let server = FakeServer::start(vec![
        Reply::json(
            429,
            json!({"error": {"message": "Rate limit reached", "type": "requests"}}),
        )
        .header("retry-after", "1"),
        ok(),
    ])
    .await;
    let provider = openai(&server, test_config());
    let started = Instant::now();

    let completion = provider.complete(&request()).await.unwrap();

    assert_eq!(completion.output, "pong");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited only {:?}",
        started.elapsed()
    );
    assert_eq!(server.received().len(), 2);
}

#[tokio::test]
async fn upstream_failures_are_retried_with_backoff() {
    let server = FakeServer::start(vec![unavailable(), unavailable(), ok()]).await;
    let provider = openai(&server, test_config());

    let completion = provider.complete(&request()).await.unwrap();

    assert_eq!(completion.output, "pong");
    assert_eq!(server.received().len(), 3);
}

#[tokio::test]
async fn retries_give_up_after_max_retries() {
    let config = LlmConfig {
        max_retries: 2,
        ..test_config()
    };
    let server = FakeServer::start(vec![unavailable()]).await;
    let provider = openai(&server, config.clone());

    let error = provider.complete(&request()).await.unwrap_err();

    assert!(
        matches!(&error, LlmError::Upstream { status: 503, message } if message.contains("overloaded")),
        "{error:?}"
    );
    assert_eq!(server.received().len(), 3, "one attempt and two retries");

    let limited = FakeServer::start(vec![
        Reply::json(429, json!({"error": {"message": "Rate limit reached"}}))
            .header("retry-after", "0"),
    ])
    .await;
    let provider = openai(&limited, config);
    let error = provider.complete(&request()).await.unwrap_err();
    assert!(matches!(error, LlmError::RateLimited { .. }), "{error:?}");
    assert_eq!(error.retry_after(), Some(Duration::ZERO));
    assert_eq!(limited.received().len(), 3);
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let server = FakeServer::start(vec![Reply::json(
        404,
        json!({"error": {"message": "The model `gpt-9` does not exist", "type": "invalid_request_error", "code": "model_not_found"}}),
    )])
    .await;
    let provider = openai(&server, test_config());

    let error = provider.complete(&request()).await.unwrap_err();

    assert_eq!(
        error,
        LlmError::BadRequest("openai answered HTTP 404: The model `gpt-9` does not exist".into())
    );
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_event_is_retried() {
    let server = FakeServer::start(vec![
        unavailable(),
        Reply::sse([
            data(r#"{"choices":[{"index":0,"delta":{"content":"pong"},"finish_reason":"stop"}]}"#),
            data(r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#),
            "data: [DONE]\n\n".to_owned(),
        ]),
    ])
    .await;
    let provider = openai(&server, test_config());

    let (deltas, done) = deltas_and_done(collect(&*provider, &request()).await.unwrap());

    assert_eq!(deltas, ["pong"]);
    assert_eq!(done.usage.total(), 2);
    assert_eq!(server.received().len(), 2);
}
