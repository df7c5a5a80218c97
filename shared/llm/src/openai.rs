//! OpenAI-compatible chat completions (`POST {base}/chat/completions`) and
//! embeddings (`POST {base}/embeddings`): OpenAI, the Lovable AI gateway,
//! Ollama, vLLM, OpenRouter, ….

use async_trait::async_trait;
use eventsource_stream::Event;
use futures::stream::BoxStream;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ErrorDetail;
use crate::http::{Decoded, Endpoint, SseDecoder, estimate_tokens};
use crate::{
    ChatMessage, ChatRequest, Completion, EmbeddingRequest, Embeddings, LlmError, Provider,
    StreamEvent, Usage,
};

/// A provider speaking the OpenAI chat completions API.
///
/// Usage comes from the server (`stream_options.include_usage` asks for it
/// when streaming). A server that reports none gets an estimate: a quarter
/// of the characters of the prompt (all messages) and of the output, at
/// least 1 token each.
pub(crate) struct OpenAiCompatible {
    endpoint: Endpoint,
    embeddings: Endpoint,
}

impl OpenAiCompatible {
    pub(crate) fn new(
        name: &str,
        base_url: &str,
        api_key: Option<String>,
        client: reqwest::Client,
        timeout: std::time::Duration,
    ) -> Result<Self, LlmError> {
        let mut headers = HeaderMap::new();
        if let Some(key) = &api_key {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                LlmError::InvalidConfig(format!("{name}: the API key is not a valid header value"))
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let base_url = base_url.trim_end_matches('/');
        let endpoint = |path: &str| Endpoint {
            name: name.to_owned(),
            client: client.clone(),
            url: format!("{base_url}/{path}"),
            headers: headers.clone(),
            secret: api_key.clone(),
            timeout,
        };
        Ok(Self {
            endpoint: endpoint("chat/completions"),
            embeddings: endpoint("embeddings"),
        })
    }
}

#[async_trait]
impl Provider for OpenAiCompatible {
    fn name(&self) -> &str {
        &self.endpoint.name
    }

    async fn complete(&self, request: &ChatRequest) -> Result<Completion, LlmError> {
        let response: WireCompletion = self
            .endpoint
            .post_json(&WireRequest::new(request, false))
            .await?;
        let choice = response.choices.into_iter().next();
        let finish_reason = choice.as_ref().and_then(|c| c.finish_reason.clone());
        let output = choice
            .and_then(|c| c.message)
            .and_then(|m| m.content)
            .unwrap_or_default();
        Ok(Completion {
            usage: response
                .usage
                .map_or_else(|| estimate_usage(&request.messages, &output), Usage::from),
            output,
            model: response.model.unwrap_or_else(|| request.model.clone()),
            finish_reason,
        })
    }

    async fn stream(
        &self,
        request: &ChatRequest,
    ) -> Result<BoxStream<'static, Result<StreamEvent, LlmError>>, LlmError> {
        let decoder = ChunkDecoder {
            name: self.endpoint.name.clone(),
            model: request.model.clone(),
            prompt_chars: prompt_chars(&request.messages),
            output: String::new(),
            usage: None,
            finish_reason: None,
        };
        self.endpoint
            .post_stream(&WireRequest::new(request, true), decoder)
            .await
    }

    async fn embed(&self, request: &EmbeddingRequest) -> Result<Embeddings, LlmError> {
        crate::embeddings::openai_embed(&self.embeddings, request).await
    }
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

impl<'a> WireRequest<'a> {
    fn new(request: &'a ChatRequest, stream: bool) -> Self {
        Self {
            model: &request.model,
            messages: &request.messages,
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            stream,
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
        }
    }
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Deserialize)]
struct WireCompletion {
    model: Option<String>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: Option<WireContent>,
    delta: Option<WireContent>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireContent {
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

impl From<WireUsage> for Usage {
    fn from(usage: WireUsage) -> Self {
        Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
        }
    }
}

/// One `data:` chunk of a stream.
#[derive(Deserialize)]
struct WireChunk {
    model: Option<String>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
    /// Some servers (OpenRouter, vLLM) report a failure mid-stream this way.
    error: Option<Value>,
}

/// Reads `data: {chunk}` events up to `data: [DONE]`.
struct ChunkDecoder {
    name: String,
    model: String,
    prompt_chars: usize,
    output: String,
    usage: Option<Usage>,
    finish_reason: Option<String>,
}

impl SseDecoder for ChunkDecoder {
    fn event(&mut self, event: &Event) -> Result<Decoded, LlmError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            return Ok(Decoded::End);
        }
        if data.is_empty() {
            return Ok(Decoded::Nothing);
        }
        let chunk: WireChunk = serde_json::from_str(data).map_err(|e| {
            LlmError::Protocol(format!("{}: unexpected stream chunk: {e}", self.name))
        })?;
        if let Some(error) = chunk.error {
            return Err(stream_error(&self.name, &error));
        }
        if let Some(model) = chunk.model.filter(|m| !m.is_empty()) {
            self.model = model;
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        let Some(choice) = chunk.choices.into_iter().next() else {
            return Ok(Decoded::Nothing);
        };
        if choice.finish_reason.is_some() {
            self.finish_reason = choice.finish_reason;
        }
        match choice.delta.and_then(|d| d.content) {
            Some(text) => {
                self.output.push_str(&text);
                Ok(Decoded::Delta(text))
            }
            None => Ok(Decoded::Nothing),
        }
    }

    fn finish(self, ended: bool) -> Result<Completion, LlmError> {
        // Without `[DONE]`, the answer is whole only if it said why it stopped.
        if !ended && self.finish_reason.is_none() {
            return Err(LlmError::Protocol(format!(
                "{}: the stream ended before the completion did",
                self.name
            )));
        }
        let usage = self.usage.unwrap_or_else(|| Usage {
            prompt_tokens: estimate_tokens(self.prompt_chars),
            completion_tokens: estimate_tokens(self.output.chars().count()),
        });
        Ok(Completion {
            output: self.output,
            usage,
            model: self.model,
            finish_reason: self.finish_reason,
        })
    }
}

/// The error for a `{"error": …}` chunk: its `code` is the HTTP status when
/// numeric (OpenRouter), else the failure counts as a 502.
fn stream_error(name: &str, error: &Value) -> LlmError {
    let detail = ErrorDetail::from_json(error);
    let message = format!(
        "{name} reported an error mid-stream: {}",
        detail.message.as_deref().unwrap_or("no detail")
    );
    let status = error
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c))
        .unwrap_or(502);
    match status {
        401 | 403 => LlmError::Unauthorized(message),
        400 | 404 | 422 => LlmError::BadRequest(message),
        429 => LlmError::RateLimited {
            retry_after: None,
            message,
        },
        status => LlmError::Upstream { status, message },
    }
}

fn prompt_chars(messages: &[ChatMessage]) -> usize {
    messages.iter().map(|m| m.content.chars().count()).sum()
}

fn estimate_usage(messages: &[ChatMessage], output: &str) -> Usage {
    Usage {
        prompt_tokens: estimate_tokens(prompt_chars(messages)),
        completion_tokens: estimate_tokens(output.chars().count()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder() -> ChunkDecoder {
        ChunkDecoder {
            name: "test".into(),
            model: "asked".into(),
            prompt_chars: 40,
            output: String::new(),
            usage: None,
            finish_reason: None,
        }
    }

    fn data(json: &str) -> Event {
        Event {
            data: json.into(),
            ..Event::default()
        }
    }

    #[test]
    fn usage_is_estimated_when_the_server_sends_none() {
        let mut decoder = decoder();
        let chunk = r#"{"model":"m1","choices":[{"delta":{"content":"twelve chars"},"finish_reason":"stop"}]}"#;
        assert!(
            matches!(decoder.event(&data(chunk)), Ok(Decoded::Delta(t)) if t == "twelve chars")
        );
        let completion = decoder.finish(false).unwrap();
        assert_eq!(completion.model, "m1");
        assert_eq!(
            completion.usage,
            Usage {
                prompt_tokens: 10,
                completion_tokens: 3
            }
        );
    }

    #[test]
    fn a_stream_cut_short_is_a_protocol_error() {
        let mut decoder = decoder();
        let chunk = r#"{"choices":[{"delta":{"content":"half"},"finish_reason":null}]}"#;
        decoder.event(&data(chunk)).unwrap();
        assert!(matches!(decoder.finish(false), Err(LlmError::Protocol(_))));
    }

    #[test]
    fn an_error_chunk_becomes_an_error() {
        let mut decoder = decoder();
        let chunk = r#"{"error":{"code":503,"message":"no provider available"}}"#;
        let error = decoder.event(&data(chunk)).err().unwrap();
        assert!(error.is_retryable());
        assert!(
            error.to_string().contains("no provider available"),
            "{error}"
        );
    }
}
