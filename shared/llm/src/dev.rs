//! The `dev` provider: deterministic replies with no key and no network.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::{self, BoxStream};

use crate::embeddings::dev_embedding;
use crate::{
    ChatRequest, Completion, EmbeddingRequest, Embeddings, LlmError, Provider, Role, StreamEvent,
    Usage,
};

/// A provider that answers without a network, always the same way, so that
/// everything built on LLMs runs (and is tested) without a key.
///
/// The reply is exactly `"Dev reply to: {m}"`, where `m` is the content of
/// the last [`Role::User`] message (empty when there is none), with nothing
/// before or after it. `max_tokens` and `temperature` are ignored.
///
/// * `model` is the requested model, or `"dev"` when that is empty;
///   `finish_reason` is `"stop"`.
/// * `usage.prompt_tokens` is the number of whitespace-separated words in
///   all messages (system messages included); `usage.completion_tokens` the
///   number of words in the reply.
/// * A stream yields the reply word by word, each delta a word with the
///   whitespace that follows it (`"Dev "`, `"reply "`, `"to: "`, …), so the
///   deltas concatenate to the reply; then `Done` with the same completion
///   that [`Provider::complete`] returns. With a chunk delay, the stream
///   pauses that long before each delta after the first.
///
/// `Dev reply to: hello world` → deltas `Dev `, `reply `, `to: `, `hello `,
/// `world`; usage 2 prompt + 5 completion tokens.
///
/// Embeddings are [`dev_embedding`](crate::dev_embedding)s: deterministic,
/// of length 1, and closer for texts that share words, so retrieval built on
/// them ranks lexically similar text higher. `model` is echoed (`"dev"` when
/// empty); `prompt_tokens` counts the inputs' words.
#[derive(Debug, Clone, Default)]
pub struct DevProvider {
    chunk_delay: Duration,
}

impl DevProvider {
    /// The `dev` provider, pausing `chunk_delay` between streamed words.
    pub fn new(chunk_delay: Duration) -> Self {
        Self { chunk_delay }
    }

    fn reply(request: &ChatRequest) -> Completion {
        let last_user = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map_or("", |m| m.content.as_str());
        let output = format!("Dev reply to: {last_user}");
        let prompt_words: usize = request.messages.iter().map(|m| words(&m.content)).sum();
        Completion {
            usage: Usage {
                prompt_tokens: saturate(prompt_words),
                completion_tokens: saturate(words(&output)),
            },
            output,
            model: if request.model.is_empty() {
                "dev".to_owned()
            } else {
                request.model.clone()
            },
            finish_reason: Some("stop".to_owned()),
        }
    }
}

#[async_trait]
impl Provider for DevProvider {
    fn name(&self) -> &str {
        "dev"
    }

    async fn complete(&self, request: &ChatRequest) -> Result<Completion, LlmError> {
        Ok(Self::reply(request))
    }

    async fn stream(
        &self,
        request: &ChatRequest,
    ) -> Result<BoxStream<'static, Result<StreamEvent, LlmError>>, LlmError> {
        let completion = Self::reply(request);
        let delay = self.chunk_delay;
        let deltas: Vec<String> = split_words(&completion.output)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let deltas =
            stream::iter(deltas.into_iter().enumerate()).then(move |(i, delta)| async move {
                if i > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok(StreamEvent::Delta(delta))
            });
        let done = stream::once(async move { Ok(StreamEvent::Done(completion)) });
        Ok(deltas.chain(done).boxed())
    }

    async fn embed(&self, request: &EmbeddingRequest) -> Result<Embeddings, LlmError> {
        Ok(Embeddings {
            vectors: request.inputs.iter().map(|t| dev_embedding(t)).collect(),
            model: if request.model.is_empty() {
                "dev".to_owned()
            } else {
                request.model.clone()
            },
            prompt_tokens: saturate(request.inputs.iter().map(|t| words(t)).sum()),
        })
    }
}

fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Splits `text` into words, each keeping the whitespace after it (leading
/// whitespace stays with the first word); the pieces concatenate to `text`.
fn split_words(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut after_space = false;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if after_space && !space && i > start && !text[start..i].trim().is_empty() {
            pieces.push(&text[start..i]);
            start = i;
        }
        after_space = space;
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_the_whitespace_that_follows_them() {
        assert_eq!(
            split_words("Dev reply to: hi  there\nyou "),
            ["Dev ", "reply ", "to: ", "hi  ", "there\n", "you "]
        );
        assert_eq!(split_words("  lead"), ["  lead"]);
        assert_eq!(split_words("one"), ["one"]);
        assert!(split_words("").is_empty());
    }
}
