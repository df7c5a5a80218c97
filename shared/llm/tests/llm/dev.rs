use std::time::{Duration, Instant};

use roundhouse_llm::{
    ChatMessage, ChatRequest, Completion, DevProvider, LlmConfig, Provider, Usage,
};

use crate::helpers::{collect, deltas_and_done, providers};

fn request() -> ChatRequest {
    ChatRequest::new(
        "dev-model",
        vec![
            ChatMessage::system("Be nice."),
            ChatMessage::user("first question"),
            ChatMessage::assistant("Dev reply to: first question"),
            ChatMessage::user("what  is\nthe answer?"),
        ],
    )
}

#[tokio::test]
async fn the_dev_provider_replies_predictably() {
    let dev = providers(&LlmConfig::default()).get("dev").unwrap();
    assert_eq!(dev.name(), "dev");

    let completion = dev.complete(&request()).await.unwrap();

    assert_eq!(
        completion,
        Completion {
            output: "Dev reply to: what  is\nthe answer?".into(),
            // 2 + 2 + 5 + 4 words in, 7 words out.
            usage: Usage {
                prompt_tokens: 13,
                completion_tokens: 7
            },
            model: "dev-model".into(),
            finish_reason: Some("stop".into()),
        }
    );
    assert_eq!(dev.complete(&request()).await.unwrap(), completion);
}

#[tokio::test]
async fn dev_deltas_are_words_that_concatenate_to_the_output() {
    let dev = DevProvider::new(Duration::ZERO);
    let expected = dev.complete(&request()).await.unwrap();

    let (deltas, done) = deltas_and_done(collect(&dev, &request()).await.unwrap());

    assert_eq!(
        deltas,
        [
            "Dev ", "reply ", "to: ", "what  ", "is\n", "the ", "answer?"
        ]
    );
    assert_eq!(deltas.concat(), expected.output);
    assert_eq!(done, expected);
}

#[tokio::test]
async fn the_dev_provider_names_itself_when_no_model_is_given() {
    let dev = DevProvider::default();
    let completion = dev
        .complete(&ChatRequest::new("", vec![ChatMessage::user("hi")]))
        .await
        .unwrap();
    assert_eq!(completion.model, "dev");
    assert_eq!(completion.output, "Dev reply to: hi");

    let empty = dev.complete(&ChatRequest::new("", vec![])).await.unwrap();
    assert_eq!(empty.output, "Dev reply to: ");
    assert_eq!(empty.usage.prompt_tokens, 0);
}

#[tokio::test]
async fn the_dev_chunk_delay_paces_the_stream() {
    let config = LlmConfig {
        dev_chunk_delay: Duration::from_millis(30),
        ..LlmConfig::default()
    };
    let dev = providers(&config).get("dev").unwrap();
    let started = Instant::now();

    // "Dev reply to: hi" is 4 words: 3 pauses.
    let items = collect(
        &*dev,
        &ChatRequest::new("dev", vec![ChatMessage::user("hi")]),
    )
    .await
    .unwrap();

    assert_eq!(items.len(), 5);
    assert!(started.elapsed() >= Duration::from_millis(90));
}
