use roundhouse_llm::{ChatMessage, ChatRequest, LlmError, Usage};
use serde_json::json;

use crate::helpers::{
    FakeServer, OPENAI_KEY, Reply, collect, data, deltas_and_done, extra, openai, test_config,
};

fn request() -> ChatRequest {
    ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![
            ChatMessage::system("You are terse."),
            ChatMessage::user("Say hello"),
        ],
        max_tokens: Some(64),
        temperature: Some(0.5),
    }
}

/// The chunks OpenAI sends for "Hello there!" with `include_usage`.
fn hello_stream() -> Vec<String> {
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        data(
            &json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_1",
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
                "usage": null
            })
            .to_string(),
        )
    };
    vec![
        chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            json!(null),
        ),
        chunk(json!({"content": "Hello"}), json!(null)),
        chunk(json!({"content": " there"}), json!(null)),
        chunk(json!({"content": "!"}), json!(null)),
        chunk(json!({}), json!("stop")),
        data(
            &json!({
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                "model": "gpt-4o-mini-2024-07-18", "choices": [],
                "usage": {"prompt_tokens": 19, "completion_tokens": 3, "total_tokens": 22}
            })
            .to_string(),
        ),
        "data: [DONE]\n\n".to_owned(),
    ]
}

#[tokio::test]
async fn openai_stream_yields_deltas_then_the_servers_usage() {
    let server = FakeServer::start(vec![Reply::sse(hello_stream())]).await;
    let provider = openai(&server, test_config());

    let (deltas, done) = deltas_and_done(collect(&*provider, &request()).await.unwrap());

    assert_eq!(deltas, ["Hello", " there", "!"]);
    assert_eq!(done.output, "Hello there!");
    assert_eq!(
        done.usage,
        Usage {
            prompt_tokens: 19,
            completion_tokens: 3
        }
    );
    assert_eq!(done.model, "gpt-4o-mini-2024-07-18");
    assert_eq!(done.finish_reason.as_deref(), Some("stop"));

    let received = server.received();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent.method, axum::http::Method::POST);
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.headers["authorization"].to_str().unwrap(),
        format!("Bearer {OPENAI_KEY}")
    );
    assert_eq!(
        sent.body,
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Say hello"}
            ],
            "max_tokens": 64,
            "temperature": 0.5,
            "stream": true,
            "stream_options": {"include_usage": true}
        })
    );
}

#[tokio::test]
async fn events_split_across_chunks_are_reassembled() {
    let whole: String = hello_stream().concat();
    let (a, rest) = whole.split_at(37);
    let (b, c) = rest.split_at(301);
    let server = FakeServer::start(vec![Reply::sse([a, b, c])]).await;
    let provider = openai(&server, test_config());

    let (deltas, done) = deltas_and_done(collect(&*provider, &request()).await.unwrap());

    assert_eq!(deltas.concat(), "Hello there!");
    assert_eq!(done.output, "Hello there!");
}

#[tokio::test]
async fn openai_completion_reads_output_and_usage() {
    let server = FakeServer::start(vec![Reply::json(
        200,
        json!({
            "id": "chatcmpl-2", "object": "chat.completion", "created": 1,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!", "refusal": null},
                "logprobs": null, "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}
        }),
    )])
    .await;
    let provider = openai(&server, test_config());

    let completion = provider.complete(&request()).await.unwrap();

    assert_eq!(completion.output, "Hello!");
    assert_eq!(completion.usage.total(), 14);
    assert_eq!(completion.usage.prompt_tokens, 12);
    assert_eq!(completion.model, "gpt-4o-mini-2024-07-18");
    assert_eq!(completion.finish_reason.as_deref(), Some("stop"));
    let sent = &server.received()[0];
    assert_eq!(sent.body["stream"], json!(false));
    assert!(sent.body.get("stream_options").is_none());
}

#[tokio::test]
async fn a_refused_key_is_unauthorized_and_never_repeated() {
    // OpenAI's real 401 quotes the key it was given (partly masked); a proxy
    // might quote it whole.
    let server = FakeServer::start(vec![Reply::json(
        401,
        json!({"error": {
            "message": format!("Incorrect API key provided: {OPENAI_KEY}. You can find your API key at https://platform.openai.com/account/api-keys."),
            "type": "invalid_request_error", "param": null, "code": "invalid_api_key"
        }}),
    )])
    .await;
    let provider = openai(&server, test_config());

    let error = provider.complete(&request()).await.unwrap_err();

    let LlmError::Unauthorized(message) = &error else {
        panic!("expected Unauthorized, got {error:?}");
    };
    assert!(message.contains("Incorrect API key provided"), "{message}");
    assert!(!error.to_string().contains(OPENAI_KEY), "{error}");
    assert!(!format!("{error:?}").contains(OPENAI_KEY), "{error:?}");
    assert!(!error.is_retryable());
    assert_eq!(
        server.received().len(),
        1,
        "a permanent error is not retried"
    );

    let error = collect(&*provider, &request()).await.unwrap_err();
    assert!(matches!(&error, LlmError::Unauthorized(_)), "{error:?}");
    assert!(!format!("{error} {error:?}").contains(OPENAI_KEY));
}

#[tokio::test]
async fn a_provider_without_a_key_sends_no_authorization_and_usage_is_estimated() {
    // An Ollama-like server: no key, and no usage in the stream.
    let server = FakeServer::start(vec![Reply::sse([
        data(r#"{"model":"llama3.2","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi there"},"finish_reason":null}]}"#),
        data(r#"{"model":"llama3.2","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop"}]}"#),
        "data: [DONE]\n\n".to_owned(),
    ])])
    .await;
    let provider = extra(&server, None);
    assert_eq!(provider.name(), "local");

    let (_, done) = deltas_and_done(collect(&*provider, &request()).await.unwrap());

    assert_eq!(done.output, "Hi there");
    // "You are terse." + "Say hello" = 23 characters → 5; "Hi there" → 2.
    assert_eq!(
        done.usage,
        Usage {
            prompt_tokens: 5,
            completion_tokens: 2
        }
    );
    assert!(server.received()[0].headers.get("authorization").is_none());
}

#[tokio::test]
async fn a_json_answer_to_a_stream_request_is_a_protocol_error() {
    let server = FakeServer::start(vec![Reply::json(200, json!({"choices": []}))]).await;
    let provider = extra(&server, Some("local-key"));

    let error = collect(&*provider, &request()).await.unwrap_err();

    assert!(matches!(error, LlmError::Protocol(_)), "{error:?}");
}
