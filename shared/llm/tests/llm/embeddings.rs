//! `Provider::embed` over real HTTP against the fake server, and the `dev`
//! provider's offline embeddings through the registry.

use roundhouse_llm::{
    DEV_EMBEDDING_DIMENSIONS, EmbeddingRequest, LlmConfig, LlmError, cosine_similarity,
};
use serde_json::{Value, json};

use crate::helpers::{
    ANTHROPIC_KEY, FakeServer, OPENAI_KEY, Reply, anthropic, extra, openai, providers, test_config,
};

fn request() -> EmbeddingRequest {
    EmbeddingRequest::new(
        "text-embedding-3-small",
        vec!["first text".into(), "second text".into()],
    )
}

/// An OpenAI `/embeddings` answer with `vectors` (numbered in order).
fn answer(vectors: &[Vec<f32>], usage: Option<u32>) -> Value {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v}))
        .collect();
    let mut body = json!({"object": "list", "data": data, "model": "text-embedding-3-small"});
    if let Some(tokens) = usage {
        body["usage"] = json!({"prompt_tokens": tokens, "total_tokens": tokens});
    }
    body
}

#[tokio::test]
async fn openai_embeddings_are_posted_to_the_embeddings_endpoint_and_kept_in_input_order() {
    let mut body = answer(&[vec![0.1, 0.2, 0.3], vec![0.4, 0.5, 0.6]], Some(4));
    // The server may list them in any order; the indexes decide.
    body["data"].as_array_mut().unwrap().reverse();
    let server = FakeServer::start(vec![Reply::json(200, body)]).await;
    let provider = openai(&server, test_config());

    let embeddings = provider.embed(&request()).await.unwrap();

    assert_eq!(
        embeddings.vectors,
        vec![vec![0.1, 0.2, 0.3], vec![0.4, 0.5, 0.6]]
    );
    assert_eq!(embeddings.dimensions(), 3);
    assert_eq!(embeddings.prompt_tokens, 4);
    assert_eq!(embeddings.model, "text-embedding-3-small");
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/v1/embeddings");
    assert_eq!(
        received[0].body,
        json!({"model": "text-embedding-3-small", "input": ["first text", "second text"],
               "encoding_format": "float"})
    );
    assert_eq!(
        received[0].headers["authorization"],
        format!("Bearer {OPENAI_KEY}")
    );
}

#[tokio::test]
async fn an_llm_providers_entry_embeds_too_and_usage_is_estimated_when_absent() {
    let server = FakeServer::start(vec![Reply::json(
        200,
        answer(&[vec![1.0], vec![0.5]], None),
    )])
    .await;
    let provider = extra(&server, None);

    let embeddings = provider.embed(&request()).await.unwrap();

    assert_eq!(embeddings.vectors.len(), 2);
    // 21 characters of input, a quarter of them.
    assert_eq!(embeddings.prompt_tokens, 5);
    assert_eq!(server.received()[0].path, "/v1/embeddings");
    assert!(!server.received()[0].headers.contains_key("authorization"));
}

#[tokio::test]
async fn embedding_requests_are_retried_on_5xx_and_refused_at_once_on_4xx() {
    let unavailable = Reply::json(503, json!({"error": {"message": "overloaded"}}));
    let ok = Reply::json(200, answer(&[vec![1.0], vec![2.0]], Some(2)));
    let server = FakeServer::start(vec![unavailable.clone(), unavailable, ok]).await;
    let provider = openai(&server, test_config());
    assert_eq!(provider.embed(&request()).await.unwrap().vectors.len(), 2);
    assert_eq!(server.received().len(), 3);

    let server = FakeServer::start(vec![Reply::json(
        400,
        json!({"error": {"message": "This model's maximum context length is 8192 tokens"}}),
    )])
    .await;
    let provider = openai(&server, test_config());
    let error = provider.embed(&request()).await.unwrap_err();
    assert!(matches!(error, LlmError::BadRequest(_)), "{error:?}");
    assert!(!error.is_retryable());
    assert_eq!(server.received().len(), 1, "a 4xx is not retried");
}

#[tokio::test]
async fn a_refused_key_never_appears_in_the_embedding_error() {
    let server = FakeServer::start(vec![Reply::json(
        401,
        json!({"error": {"message": format!("Incorrect API key provided: {OPENAI_KEY}")}}),
    )])
    .await;
    let provider = openai(&server, test_config());
    let error = provider.embed(&request()).await.unwrap_err();
    assert!(matches!(error, LlmError::Unauthorized(_)), "{error:?}");
    assert!(!format!("{error} {error:?}").contains(OPENAI_KEY));
}

#[tokio::test]
async fn an_answer_with_the_wrong_number_of_embeddings_is_a_protocol_error() {
    let server = FakeServer::start(vec![Reply::json(200, answer(&[vec![1.0]], Some(1)))]).await;
    let provider = openai(&server, test_config());
    let error = provider.embed(&request()).await.unwrap_err();
    assert!(matches!(error, LlmError::Protocol(_)), "{error:?}");
    assert_eq!(server.received().len(), 1, "not retried");
}

#[tokio::test]
async fn anthropic_has_no_embeddings_and_says_so_without_a_request() {
    let server = FakeServer::start(vec![Reply::json(500, json!({}))]).await;
    let provider = anthropic(&server, test_config());
    let error = provider.embed(&request()).await.unwrap_err();
    assert!(matches!(error, LlmError::Unsupported(_)), "{error:?}");
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("anthropic"), "{error}");
    assert!(!error.to_string().contains(ANTHROPIC_KEY));
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn the_dev_provider_embeds_offline_and_deterministically() {
    let dev = providers(&LlmConfig::default()).get("dev").unwrap();
    let request = EmbeddingRequest::new(
        "",
        vec![
            "The invoice was paid on Friday".into(),
            "When was the invoice paid?".into(),
            "Our cat sleeps all afternoon".into(),
        ],
    );

    let first = dev.embed(&request).await.unwrap();
    let again = dev.embed(&request).await.unwrap();

    assert_eq!(first, again);
    assert_eq!(first.model, "dev");
    assert_eq!(first.dimensions(), DEV_EMBEDDING_DIMENSIONS);
    assert_eq!(first.prompt_tokens, 6 + 5 + 5);
    let [paid, question, cat] = &first.vectors[..] else {
        panic!("three vectors")
    };
    assert!(cosine_similarity(question, paid) > cosine_similarity(question, cat));
}
