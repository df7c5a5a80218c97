//! What the network providers share: one POST endpoint with its headers and
//! timeout, error mapping and scrubbing, and turning a server-sent event
//! stream into [`StreamEvent`]s.

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::{Completion, LlmError, StreamEvent};

/// A provider's completion endpoint.
pub(crate) struct Endpoint {
    /// The provider's registered name, used in error messages.
    pub name: String,
    pub client: reqwest::Client,
    /// The full URL requests are POSTed to.
    pub url: String,
    /// Authentication and version headers (marked sensitive).
    pub headers: HeaderMap,
    /// The API key, removed from every error message.
    pub secret: Option<String>,
    pub timeout: Duration,
}

impl Endpoint {
    /// POSTs `body` and parses the JSON answer, all within the timeout.
    pub async fn post_json<B: Serialize, R: DeserializeOwned>(
        &self,
        body: &B,
    ) -> Result<R, LlmError> {
        let exchange = async {
            let response = self.send(body).await?;
            let bytes = response
                .bytes()
                .await
                .map_err(|e| LlmError::from_reqwest(&self.name, &e))?;
            serde_json::from_slice(&bytes).map_err(|e| {
                LlmError::Protocol(format!("{}: unexpected completion JSON: {e}", self.name))
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(LlmError::Timeout))
            .map_err(|e| self.scrub(e))
    }

    /// POSTs `body` and decodes the event stream of the answer with
    /// `decoder`. The timeout applies to the answer's headers and then to
    /// each chunk of its body.
    pub async fn post_stream<B: Serialize, D: SseDecoder>(
        &self,
        body: &B,
        decoder: D,
    ) -> Result<BoxStream<'static, Result<StreamEvent, LlmError>>, LlmError> {
        let response = tokio::time::timeout(self.timeout, self.send(body))
            .await
            .unwrap_or(Err(LlmError::Timeout))
            .map_err(|e| self.scrub(e))?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if content_type.starts_with("application/json") || content_type.starts_with("text/html") {
            return Err(LlmError::Protocol(format!(
                "{}: expected an event stream, got {content_type}",
                self.name
            )));
        }
        let name = self.name.clone();
        let bytes = response
            .bytes_stream()
            .map_err(move |e| LlmError::from_reqwest(&name, &e));
        let events = with_idle_timeout(bytes, self.timeout).eventsource();
        Ok(decode(
            events,
            decoder,
            self.name.clone(),
            self.secret.clone(),
        ))
    }

    /// Sends the request; a non-2xx answer becomes the matching error.
    async fn send<B: Serialize>(&self, body: &B) -> Result<reqwest::Response, LlmError> {
        // A client span in the job's trace; the provider (or a gateway in
        // front of it) can continue it from the `traceparent` header.
        let span =
            tracing::info_span!("llm.request", otel.kind = "client", llm.provider = %self.name);
        let mut request = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .json(body);
        if let Some(traceparent) = roundhouse_telemetry::traceparent_of(&span) {
            request = request.header("traceparent", traceparent);
        }
        let response = request
            .send()
            .instrument(span)
            .await
            .map_err(|e| LlmError::from_reqwest(&self.name, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_default();
        Err(LlmError::from_response(&self.name, status, &headers, &body))
    }

    fn scrub(&self, error: LlmError) -> LlmError {
        error.scrub(self.secret.as_deref())
    }
}

/// Provider-specific reading of a server-sent event stream.
pub(crate) trait SseDecoder: Send + 'static {
    /// Reads one event.
    fn event(&mut self, event: &Event) -> Result<Decoded, LlmError>;

    /// The completion, once the stream has ended: `ended` tells whether the
    /// provider's end marker was seen (if not, the connection was closed and
    /// the decoder decides whether what it got is complete).
    fn finish(self, ended: bool) -> Result<Completion, LlmError>;
}

/// What one event meant.
pub(crate) enum Decoded {
    /// Nothing for the caller (pings, metadata, usage).
    Nothing,
    /// More output text.
    Delta(String),
    /// The provider's end marker.
    End,
}

type EventResult = Result<Event, EventStreamError<LlmError>>;

/// Turns `events` into [`StreamEvent`]s: deltas, then `Done`, or an `Err`
/// item, after which the stream ends.
fn decode<D: SseDecoder>(
    events: impl Stream<Item = EventResult> + Send + 'static,
    decoder: D,
    name: String,
    secret: Option<String>,
) -> BoxStream<'static, Result<StreamEvent, LlmError>> {
    struct Running<D> {
        events: Pin<Box<dyn Stream<Item = EventResult> + Send>>,
        decoder: D,
        name: String,
    }

    let state = Some(Running {
        events: Box::pin(events),
        decoder,
        name,
    });
    stream::unfold(state, |state| async move {
        let mut running = state?;
        loop {
            let item = match running.events.next().await {
                Some(Ok(event)) => match running.decoder.event(&event) {
                    Ok(Decoded::Nothing) => continue,
                    Ok(Decoded::Delta(text)) if text.is_empty() => continue,
                    Ok(Decoded::Delta(text)) => {
                        return Some((Ok(StreamEvent::Delta(text)), Some(running)));
                    }
                    Ok(Decoded::End) => running.decoder.finish(true).map(StreamEvent::Done),
                    Err(error) => Err(error),
                },
                Some(Err(EventStreamError::Transport(error))) => Err(error),
                Some(Err(error)) => Err(LlmError::Protocol(format!(
                    "{}: malformed event stream: {error}",
                    running.name
                ))),
                None => running.decoder.finish(false).map(StreamEvent::Done),
            };
            return Some((item, None));
        }
    })
    .map_err(move |e| e.scrub(secret.as_deref()))
    .boxed()
}

/// `bytes`, ending with [`LlmError::Timeout`] when no chunk arrives for
/// `idle`.
fn with_idle_timeout<S, B>(
    bytes: S,
    idle: Duration,
) -> impl Stream<Item = Result<B, LlmError>> + Send
where
    S: Stream<Item = Result<B, LlmError>> + Send + 'static,
    B: Send + 'static,
{
    stream::unfold(Some(Box::pin(bytes)), move |state| async move {
        let mut bytes = state?;
        match tokio::time::timeout(idle, bytes.next()).await {
            Ok(Some(item)) => Some((item, Some(bytes))),
            Ok(None) => None,
            Err(_) => Some((Err(LlmError::Timeout), None)),
        }
    })
}

/// Roughly how many tokens a text of `chars` characters is, for servers
/// that report no usage: a quarter of the characters, at least 1.
pub(crate) fn estimate_tokens(chars: usize) -> u32 {
    u32::try_from(chars / 4).unwrap_or(u32::MAX).max(1)
}
