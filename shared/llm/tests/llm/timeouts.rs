use std::time::{Duration, Instant};

use roundhouse_llm::{ChatMessage, ChatRequest, LlmConfig, LlmError, StreamEvent};

use crate::helpers::{FakeServer, Reply, collect, data, openai, test_config};

fn request() -> ChatRequest {
    ChatRequest::new("gpt-4o-mini", vec![ChatMessage::user("ping")])
}

fn short_timeout() -> LlmConfig {
    LlmConfig {
        timeout: Duration::from_millis(300),
        max_retries: 0,
        ..test_config()
    }
}

#[tokio::test]
async fn a_stream_that_stalls_after_a_chunk_times_out() {
    let server = FakeServer::start(vec![
        Reply::sse([data(
            r#"{"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#,
        )])
        .then_stall(),
    ])
    .await;
    let provider = openai(
        &server,
        LlmConfig {
            max_retries: 3,
            ..short_timeout()
        },
    );
    let started = Instant::now();

    let items = collect(&*provider, &request()).await.unwrap();

    let elapsed = started.elapsed();
    assert_eq!(
        items,
        [Ok(StreamEvent::Delta("Hel".into())), Err(LlmError::Timeout)]
    );
    assert!(
        elapsed >= Duration::from_millis(280) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    assert_eq!(server.received().len(), 1, "no retry after a delta");
}

#[tokio::test]
async fn a_completion_whose_body_never_ends_times_out() {
    let server = FakeServer::start(vec![Reply::sse([r#"{"choices": ["#]).then_stall()]).await;
    let provider = openai(&server, short_timeout());
    let started = Instant::now();

    let error = provider.complete(&request()).await.unwrap_err();

    assert_eq!(error, LlmError::Timeout);
    assert!(error.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_stream_with_no_first_event_times_out_and_is_retried() {
    let server = FakeServer::start(vec![Reply::sse(Vec::<String>::new()).then_stall()]).await;
    let provider = openai(
        &server,
        LlmConfig {
            max_retries: 1,
            ..short_timeout()
        },
    );

    let error = collect(&*provider, &request()).await.unwrap_err();

    assert_eq!(error, LlmError::Timeout);
    assert_eq!(server.received().len(), 2);
}
