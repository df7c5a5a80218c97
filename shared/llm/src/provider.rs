//! The [`Provider`] trait every LLM backend implements.

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::{ChatRequest, Completion, EmbeddingRequest, Embeddings, LlmError, StreamEvent};

/// An LLM backend: OpenAI-compatible, Anthropic, or the offline `dev`
/// provider. Get one from [`Providers::get`](crate::Providers::get).
///
/// Providers from the registry already retry retryable failures (with
/// backoff, honouring `Retry-After`) and apply the configured timeout, so
/// callers need not.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The name the provider is registered under (`openai`, `ollama`, `dev`).
    fn name(&self) -> &str;

    /// Asks for a whole completion and waits for it.
    async fn complete(&self, request: &ChatRequest) -> Result<Completion, LlmError>;

    /// Asks for a completion as a stream: [`StreamEvent::Delta`]s as the text
    /// arrives, then one [`StreamEvent::Done`] with the whole output and the
    /// usage. An error before anything arrived is returned here; an error
    /// later is the stream's last item.
    async fn stream(
        &self,
        request: &ChatRequest,
    ) -> Result<BoxStream<'static, Result<StreamEvent, LlmError>>, LlmError>;

    /// Embeds each input of `request`: one vector per input, in order, all
    /// of one length ([`Embeddings`] says what providers check). OpenAI-compatible
    /// providers call `POST {base}/embeddings`; `dev` computes a lexical
    /// embedding offline. Providers without an embeddings API (Anthropic)
    /// answer [`LlmError::Unsupported`], the default.
    async fn embed(&self, request: &EmbeddingRequest) -> Result<Embeddings, LlmError> {
        let _ = request;
        Err(LlmError::Unsupported(format!(
            "{}: this provider has no embeddings API",
            self.name()
        )))
    }
}
