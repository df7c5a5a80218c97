use roundhouse_llm::{ChatMessage, ChatRequest, LlmError, StreamEvent, Usage};
use serde_json::json;

use crate::helpers::{
    ANTHROPIC_KEY, FakeServer, Reply, anthropic, collect, deltas_and_done, event, test_config,
};

fn request() -> ChatRequest {
    ChatRequest {
        model: "claude-sonnet-4-5".into(),
        messages: vec![
            ChatMessage::system("You are terse."),
            ChatMessage::system("Answer in English."),
            ChatMessage::user("Say hello"),
        ],
        max_tokens: None,
        temperature: Some(0.2),
    }
}

fn message_start() -> String {
    event(
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}"#,
    )
}

fn text_delta(text: &str) -> String {
    event(
        "content_block_delta",
        &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})
            .to_string(),
    )
}

#[tokio::test]
async fn anthropic_stream_follows_the_real_event_sequence() {
    let server = FakeServer::start(vec![Reply::sse([
        message_start(),
        event(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        event("ping", r#"{"type": "ping"}"#),
        text_delta("Hello"),
        text_delta(", world"),
        text_delta("!"),
        event(
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        event(
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
        ),
        event("message_stop", r#"{"type":"message_stop"}"#),
    ])])
    .await;
    let provider = anthropic(&server, test_config());

    let (deltas, done) = deltas_and_done(collect(&*provider, &request()).await.unwrap());

    assert_eq!(deltas, ["Hello", ", world", "!"]);
    assert_eq!(done.output, "Hello, world!");
    assert_eq!(
        done.usage,
        Usage {
            prompt_tokens: 25,
            completion_tokens: 15
        }
    );
    assert_eq!(done.model, "claude-sonnet-4-5-20250929");
    assert_eq!(done.finish_reason.as_deref(), Some("end_turn"));

    let received = server.received();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.headers["x-api-key"].to_str().unwrap(), ANTHROPIC_KEY);
    assert_eq!(
        sent.headers["anthropic-version"].to_str().unwrap(),
        "2023-06-01"
    );
    assert!(sent.headers.get("authorization").is_none());
    assert_eq!(
        sent.body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": "You are terse.\n\nAnswer in English.",
            "messages": [{"role": "user", "content": "Say hello"}],
            "temperature": 0.2,
            "stream": true
        })
    );
}

#[tokio::test]
async fn anthropic_completion_joins_the_text_blocks() {
    let server = FakeServer::start(vec![Reply::json(
        200,
        json!({
            "id": "msg_02", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " again"}],
            "stop_reason": "max_tokens", "stop_sequence": null,
            "usage": {"input_tokens": 30, "output_tokens": 2}
        }),
    )])
    .await;
    let provider = anthropic(&server, test_config());

    let completion = provider
        .complete(&ChatRequest {
            max_tokens: Some(2),
            ..request()
        })
        .await
        .unwrap();

    assert_eq!(completion.output, "Hello again");
    assert_eq!(completion.usage.total(), 32);
    assert_eq!(completion.finish_reason.as_deref(), Some("max_tokens"));
    let sent = &server.received()[0];
    assert_eq!(sent.body["max_tokens"], json!(2));
    assert_eq!(sent.body["stream"], json!(false));
}

#[tokio::test]
async fn an_error_event_after_deltas_ends_the_stream_with_an_error() {
    let server = FakeServer::start(vec![Reply::sse([
        message_start(),
        text_delta("Once upon"),
        text_delta(" a time"),
        event(
            "error",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ),
    ])])
    .await;
    let provider = anthropic(&server, test_config());

    let items = collect(&*provider, &request()).await.unwrap();

    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(items[0], Ok(StreamEvent::Delta("Once upon".into())));
    assert_eq!(items[1], Ok(StreamEvent::Delta(" a time".into())));
    let error = items[2].clone().unwrap_err();
    assert!(
        matches!(&error, LlmError::Upstream { status: 529, message } if message.contains("Overloaded")),
        "{error:?}"
    );
    assert_eq!(
        server.received().len(),
        1,
        "no retry once deltas have been yielded"
    );
}

#[tokio::test]
async fn an_anthropic_auth_error_never_shows_the_key() {
    let server = FakeServer::start(vec![Reply::json(
        401,
        json!({"type": "error", "error": {"type": "authentication_error", "message": format!("invalid x-api-key {ANTHROPIC_KEY}")}}),
    )])
    .await;
    let provider = anthropic(&server, test_config());

    let error = provider.complete(&request()).await.unwrap_err();

    assert!(matches!(&error, LlmError::Unauthorized(m) if m.contains("invalid x-api-key")));
    assert!(
        !format!("{error} {error:?}").contains(ANTHROPIC_KEY),
        "{error:?}"
    );
}
