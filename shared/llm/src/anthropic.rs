//! Anthropic Messages (`POST {base}/v1/messages`).

use async_trait::async_trait;
use eventsource_stream::Event;
use futures::stream::BoxStream;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ErrorDetail;
use crate::http::{Decoded, Endpoint, SseDecoder};
use crate::{ChatRequest, Completion, LlmError, Provider, Role, StreamEvent, Usage};

/// The API version we speak (`anthropic-version` header).
const API_VERSION: &str = "2023-06-01";

/// Anthropic requires `max_tokens`; this is sent when the request has none.
const DEFAULT_MAX_TOKENS: u32 = 1024;

/// The Anthropic Messages API. System messages go, joined by blank lines,
/// into the top-level `system` field; the others are sent in order.
pub(crate) struct Anthropic {
    endpoint: Endpoint,
}

impl Anthropic {
    pub(crate) fn new(
        base_url: &str,
        api_key: String,
        client: reqwest::Client,
        timeout: std::time::Duration,
    ) -> Result<Self, LlmError> {
        let mut key = HeaderValue::from_str(&api_key).map_err(|_| {
            LlmError::InvalidConfig("anthropic: the API key is not a valid header value".into())
        })?;
        key.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static("x-api-key"), key);
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(API_VERSION),
        );
        Ok(Self {
            endpoint: Endpoint {
                name: "anthropic".to_owned(),
                client,
                url: format!("{}/v1/messages", base_url.trim_end_matches('/')),
                headers,
                secret: Some(api_key),
                timeout,
            },
        })
    }
}

#[async_trait]
impl Provider for Anthropic {
    fn name(&self) -> &str {
        &self.endpoint.name
    }

    async fn complete(&self, request: &ChatRequest) -> Result<Completion, LlmError> {
        let response: WireMessage = self
            .endpoint
            .post_json(&WireRequest::new(request, false))
            .await?;
        let output = response
            .content
            .iter()
            .filter(|block| block.kind == "text")
            .filter_map(|block| block.text.as_deref())
            .collect();
        Ok(Completion {
            output,
            usage: response.usage.into(),
            model: response.model.unwrap_or_else(|| request.model.clone()),
            finish_reason: response.stop_reason,
        })
    }

    async fn stream(
        &self,
        request: &ChatRequest,
    ) -> Result<BoxStream<'static, Result<StreamEvent, LlmError>>, LlmError> {
        let decoder = EventDecoder {
            model: request.model.clone(),
            output: String::new(),
            usage: Usage::default(),
            stop_reason: None,
        };
        self.endpoint
            .post_stream(&WireRequest::new(request, true), decoder)
            .await
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<WireTurn<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    stream: bool,
}

#[derive(Serialize)]
struct WireTurn<'a> {
    role: &'static str,
    content: &'a str,
}

impl<'a> WireRequest<'a> {
    fn new(request: &'a ChatRequest, stream: bool) -> Self {
        let system: Vec<&str> = request
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(|m| m.content.as_str())
            .collect();
        Self {
            model: &request.model,
            max_tokens: request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            messages: request
                .messages
                .iter()
                .filter(|m| m.role != Role::System)
                .map(|m| WireTurn {
                    role: m.role.as_str(),
                    content: &m.content,
                })
                .collect(),
            temperature: request.temperature,
            stream,
        }
    }
}

#[derive(Deserialize)]
struct WireMessage {
    model: Option<String>,
    #[serde(default)]
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    input_tokens: Option<u32>,
    output_tokens: Option<u32>,
}

impl From<WireUsage> for Usage {
    fn from(usage: WireUsage) -> Self {
        Usage {
            prompt_tokens: usage.input_tokens.unwrap_or(0),
            completion_tokens: usage.output_tokens.unwrap_or(0),
        }
    }
}

/// One streamed event, told apart by its `type` (which repeats the SSE
/// `event:` name).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: WireMessage,
    },
    ContentBlockDelta {
        delta: WireDelta,
    },
    MessageDelta {
        #[serde(default)]
        delta: WireStop,
        #[serde(default)]
        usage: WireUsage,
    },
    MessageStop,
    Error {
        error: Value,
    },
    /// `ping`, `content_block_start`, `content_block_stop` and any event
    /// type added later: nothing to do.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireStop {
    stop_reason: Option<String>,
}

/// Reads the event sequence `message_start`, (`content_block_start`,
/// `content_block_delta`…, `content_block_stop`)…, `message_delta`,
/// `message_stop`, with `ping`s anywhere and possibly an `error`.
struct EventDecoder {
    model: String,
    output: String,
    usage: Usage,
    stop_reason: Option<String>,
}

impl SseDecoder for EventDecoder {
    fn event(&mut self, event: &Event) -> Result<Decoded, LlmError> {
        let parsed: WireEvent = serde_json::from_str(&event.data).map_err(|e| {
            LlmError::Protocol(format!(
                "anthropic: unexpected `{}` event: {e}",
                event.event
            ))
        })?;
        match parsed {
            WireEvent::MessageStart { message } => {
                if let Some(model) = message.model.filter(|m| !m.is_empty()) {
                    self.model = model;
                }
                self.update_usage(message.usage);
                Ok(Decoded::Nothing)
            }
            WireEvent::ContentBlockDelta { delta } if delta.kind == "text_delta" => {
                let text = delta.text.unwrap_or_default();
                self.output.push_str(&text);
                Ok(Decoded::Delta(text))
            }
            WireEvent::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                self.update_usage(usage);
                Ok(Decoded::Nothing)
            }
            WireEvent::MessageStop => Ok(Decoded::End),
            WireEvent::Error { error } => Err(error_event(&error)),
            WireEvent::ContentBlockDelta { .. } | WireEvent::Other => Ok(Decoded::Nothing),
        }
    }

    fn finish(self, ended: bool) -> Result<Completion, LlmError> {
        if !ended && self.stop_reason.is_none() {
            return Err(LlmError::Protocol(
                "anthropic: the stream ended before the message did".into(),
            ));
        }
        Ok(Completion {
            output: self.output,
            usage: self.usage,
            model: self.model,
            finish_reason: self.stop_reason,
        })
    }
}

impl EventDecoder {
    /// Usage counts in events are cumulative: the latest one present wins.
    fn update_usage(&mut self, usage: WireUsage) {
        if let Some(input) = usage.input_tokens {
            self.usage.prompt_tokens = input;
        }
        if let Some(output) = usage.output_tokens {
            self.usage.completion_tokens = output;
        }
    }
}

/// The error for an `error` event, by Anthropic's error type.
fn error_event(error: &Value) -> LlmError {
    let detail = ErrorDetail::from_json(error);
    let message = format!(
        "anthropic reported an error mid-stream: {}",
        detail.message.as_deref().unwrap_or("no detail")
    );
    match detail.kind.as_deref().unwrap_or_default() {
        "authentication_error" | "permission_error" => LlmError::Unauthorized(message),
        "invalid_request_error" | "not_found_error" | "request_too_large" => {
            LlmError::BadRequest(message)
        }
        "rate_limit_error" => LlmError::RateLimited {
            retry_after: None,
            message,
        },
        "overloaded_error" => LlmError::Upstream {
            status: 529,
            message,
        },
        _ => LlmError::Upstream {
            status: 500,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChatMessage;

    #[test]
    fn system_messages_are_joined_into_the_system_field() {
        let request = ChatRequest::new(
            "claude",
            vec![
                ChatMessage::system("Be brief."),
                ChatMessage::user("Hi"),
                ChatMessage::system("Be kind."),
                ChatMessage::assistant("Hello"),
            ],
        );
        let body = serde_json::to_value(WireRequest::new(&request, false)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "model": "claude",
                "max_tokens": 1024,
                "system": "Be brief.\n\nBe kind.",
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"}
                ],
                "stream": false
            })
        );
    }

    #[test]
    fn an_overloaded_error_event_is_retryable() {
        let error = error_event(&serde_json::json!({
            "type": "overloaded_error", "message": "Overloaded"
        }));
        assert_eq!(
            error,
            LlmError::Upstream {
                status: 529,
                message: "anthropic reported an error mid-stream: Overloaded".into()
            }
        );
        assert!(error.is_retryable());
    }
}
