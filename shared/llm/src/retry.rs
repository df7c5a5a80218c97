//! Retries for network providers: exponential backoff with jitter (from
//! `backon`), replaced by the provider's `Retry-After` when it sent one.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use futures::stream::{self, BoxStream};

use crate::{
    ChatRequest, Completion, EmbeddingRequest, Embeddings, LlmError, Provider, StreamEvent,
};

/// The longest backoff between two attempts (before jitter).
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// `inner`, retried on [`LlmError::is_retryable`] failures up to
/// `max_retries` times.
///
/// A stream is retried only while nothing has come out of it: the first
/// item is awaited before [`Provider::stream`] returns, and an error after
/// that is passed on to the caller, who has already seen output.
pub(crate) struct Retrying {
    inner: Arc<dyn Provider>,
    max_retries: u32,
    base: Duration,
}

impl Retrying {
    pub(crate) fn new(inner: Arc<dyn Provider>, max_retries: u32, base: Duration) -> Self {
        Self {
            inner,
            max_retries,
            base,
        }
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(MAX_BACKOFF.max(self.base))
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(usize::try_from(self.max_retries).unwrap_or(usize::MAX))
    }

    /// The wait before the next attempt: the provider's `Retry-After` when
    /// it sent one, else the backoff's; `None` once retries are spent.
    fn delay(error: &LlmError, backoff: Option<Duration>) -> Option<Duration> {
        backoff.map(|delay| error.retry_after().unwrap_or(delay))
    }

    fn log_retry(&self, error: &LlmError, delay: Duration) {
        tracing::warn!(
            provider = self.inner.name(),
            error = %error,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "LLM request failed; retrying"
        );
    }
}

#[async_trait]
impl Provider for Retrying {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn complete(&self, request: &ChatRequest) -> Result<Completion, LlmError> {
        (|| self.inner.complete(request))
            .retry(self.backoff())
            .when(LlmError::is_retryable)
            .adjust(Self::delay)
            .notify(|error, delay| self.log_retry(error, delay))
            .await
    }

    async fn embed(&self, request: &EmbeddingRequest) -> Result<Embeddings, LlmError> {
        (|| self.inner.embed(request))
            .retry(self.backoff())
            .when(LlmError::is_retryable)
            .adjust(Self::delay)
            .notify(|error, delay| self.log_retry(error, delay))
            .await
    }

    async fn stream(
        &self,
        request: &ChatRequest,
    ) -> Result<BoxStream<'static, Result<StreamEvent, LlmError>>, LlmError> {
        let attempt = || async {
            let mut events = self.inner.stream(request).await?;
            match events.next().await {
                Some(Ok(first)) => Ok(stream::iter([Ok(first)]).chain(events).boxed()),
                Some(Err(error)) => Err(error),
                None => Err(LlmError::Protocol(format!(
                    "{}: the stream ended without an event",
                    self.inner.name()
                ))),
            }
        };
        attempt
            .retry(self.backoff())
            .when(LlmError::is_retryable)
            .adjust(Self::delay)
            .notify(|error, delay| self.log_retry(error, delay))
            .await
    }
}
