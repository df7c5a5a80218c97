//! [`LlmError`]: what went wrong, and whether trying again can help.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// The longest `Retry-After` we honour; a server asking for more gets this.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The longest provider message we keep in an error.
const MAX_MESSAGE_CHARS: usize = 500;

/// Everything that can go wrong while asking a provider for a completion.
///
/// Messages are short, name the provider, and carry the provider's own
/// explanation when it sent one. They never contain the API key: every
/// occurrence of the configured key is replaced by `[redacted]` before an
/// error leaves a provider, and request headers are never included.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// The provider refused the credentials (HTTP 401 or 403). Permanent.
    #[error("credentials refused: {0}")]
    Unauthorized(String),
    /// The provider refused the request itself (HTTP 400, 404, 422: unknown
    /// model, context too long, bad parameter). Permanent.
    #[error("request rejected: {0}")]
    BadRequest(String),
    /// Too many requests (HTTP 429). Retryable, after `retry_after` when the
    /// provider said how long (capped at 60 s).
    #[error("rate limited: {message}")]
    RateLimited {
        /// The provider's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
        /// What the provider said.
        message: String,
    },
    /// Any other HTTP failure, or an error the provider reported in the middle
    /// of a stream. Retryable for 5xx, 408 and 409.
    #[error("provider error: {message}")]
    Upstream {
        /// The HTTP status (for an error event inside a stream, the status the
        /// provider would have used: 529 overloaded, 500 otherwise).
        status: u16,
        /// What the provider said.
        message: String,
    },
    /// No answer within the configured timeout (the whole request for a
    /// completion; the first byte, or the next chunk, for a stream).
    /// Retryable.
    #[error("the LLM provider did not answer in time")]
    Timeout,
    /// The connection failed or broke. Retryable.
    #[error("network error: {0}")]
    Network(String),
    /// The provider answered something we could not understand (malformed
    /// JSON or event stream, a stream cut short). Permanent.
    #[error("malformed response: {0}")]
    Protocol(String),
    /// No provider has this name.
    #[error("unknown LLM provider `{0}`")]
    UnknownProvider(String),
    /// A known provider that this deployment has no credentials for, e.g.
    /// `openai: set OPENAI_API_KEY`.
    #[error("LLM provider not configured: {0}")]
    NotConfigured(String),
    /// The provider cannot do what was asked (embeddings from a provider
    /// without an embeddings API). Permanent.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The configuration itself is wrong (a malformed `LLM_PROVIDERS` entry,
    /// a base URL that is not an http(s) URL).
    #[error("invalid LLM configuration: {0}")]
    InvalidConfig(String),
}

impl LlmError {
    /// Whether the same request may succeed if sent again: rate limits,
    /// timeouts, network failures and upstream 5xx, 408 and 409.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::RateLimited { .. } | LlmError::Timeout | LlmError::Network(_) => true,
            LlmError::Upstream { status, .. } => *status >= 500 || matches!(status, 408 | 409),
            LlmError::Unauthorized(_)
            | LlmError::BadRequest(_)
            | LlmError::Protocol(_)
            | LlmError::UnknownProvider(_)
            | LlmError::NotConfigured(_)
            | LlmError::Unsupported(_)
            | LlmError::InvalidConfig(_) => false,
        }
    }

    /// How long the provider asked us to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// This error with every occurrence of `secret` replaced by `[redacted]`.
    pub(crate) fn scrub(self, secret: Option<&str>) -> Self {
        let Some(secret) = secret.filter(|s| !s.is_empty()) else {
            return self;
        };
        let clean = |s: String| s.replace(secret, "[redacted]");
        match self {
            LlmError::Unauthorized(m) => LlmError::Unauthorized(clean(m)),
            LlmError::BadRequest(m) => LlmError::BadRequest(clean(m)),
            LlmError::RateLimited {
                retry_after,
                message,
            } => LlmError::RateLimited {
                retry_after,
                message: clean(message),
            },
            LlmError::Upstream { status, message } => LlmError::Upstream {
                status,
                message: clean(message),
            },
            LlmError::Timeout => LlmError::Timeout,
            LlmError::Network(m) => LlmError::Network(clean(m)),
            LlmError::Protocol(m) => LlmError::Protocol(clean(m)),
            LlmError::UnknownProvider(m) => LlmError::UnknownProvider(clean(m)),
            LlmError::NotConfigured(m) => LlmError::NotConfigured(clean(m)),
            LlmError::Unsupported(m) => LlmError::Unsupported(clean(m)),
            LlmError::InvalidConfig(m) => LlmError::InvalidConfig(clean(m)),
        }
    }

    /// The error for a non-2xx answer from `provider`, with the provider's own
    /// message when its body is a JSON error (`{"error": {"message": …}}` as
    /// OpenAI and Anthropic send, or `{"error": "…"}`, `{"message": …}`,
    /// `{"detail": …}` as other OpenAI-compatible servers do).
    pub(crate) fn from_response(
        provider: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Self {
        let detail = ErrorDetail::parse(body);
        let what = detail
            .message
            .clone()
            .or_else(|| text_excerpt(body))
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("no detail").to_owned());
        let message = format!("{provider} answered HTTP {}: {what}", status.as_u16());
        match status.as_u16() {
            401 | 403 => LlmError::Unauthorized(message),
            400 | 404 | 422 => LlmError::BadRequest(message),
            // OpenAI answers 429 when the account is out of credit: waiting
            // does not help, so it is not a rate limit.
            429 if detail.is_quota() => LlmError::Upstream {
                status: 429,
                message,
            },
            429 => LlmError::RateLimited {
                retry_after: parse_retry_after(headers, SystemTime::now()),
                message,
            },
            status => LlmError::Upstream { status, message },
        }
    }

    /// The error for a failed `reqwest` call (connect, send, read).
    pub(crate) fn from_reqwest(provider: &str, error: &reqwest::Error) -> Self {
        if error.is_timeout() {
            return LlmError::Timeout;
        }
        let mut message = format!("{provider}: {error}");
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        LlmError::Network(message)
    }
}

/// The interesting parts of a provider's JSON error body.
#[derive(Debug, Default)]
pub(crate) struct ErrorDetail {
    /// The human explanation.
    pub message: Option<String>,
    /// The machine kind (`error.type` or `error.code`), e.g.
    /// `insufficient_quota`, `overloaded_error`.
    pub kind: Option<String>,
}

impl ErrorDetail {
    /// Reads `body` if it is a JSON error; anything else gives no detail.
    pub(crate) fn parse(body: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => Self::from_json(&value),
            Err(_) => Self::default(),
        }
    }

    /// Reads an already parsed JSON error (a body or a stream's error event).
    pub(crate) fn from_json(value: &Value) -> Self {
        let error = value.get("error").unwrap_or(value);
        let message = match error {
            Value::String(s) => Some(s.clone()),
            _ => ["message", "detail", "msg"]
                .iter()
                .find_map(|key| error.get(key).or_else(|| value.get(key)))
                .map(|m| match m {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }),
        };
        let kind = ["type", "code"]
            .iter()
            .filter_map(|key| error.get(key).and_then(Value::as_str))
            .find(|kind| *kind != "error")
            .map(str::to_owned);
        Self {
            message: message.map(|m| truncate(m.trim())),
            kind,
        }
    }

    fn is_quota(&self) -> bool {
        self.kind.as_deref() == Some("insufficient_quota")
    }
}

/// A short excerpt of a non-JSON body (an HTML error page, plain text).
fn text_excerpt(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    (!text.is_empty()).then(|| truncate(text))
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// How long the server asked us to wait: `retry-after-ms` (milliseconds, as
/// OpenAI sends), else `Retry-After` as seconds or an HTTP date, capped at
/// [`MAX_RETRY_AFTER`].
pub(crate) fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
    let number = |value: &str| {
        value
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .map(|n| n.min(MAX_RETRY_AFTER.as_secs_f64() * 1000.0))
    };
    let delay = if let Some(ms) = header("retry-after-ms").and_then(number) {
        Duration::from_secs_f64(ms / 1000.0)
    } else {
        let value = header("retry-after")?;
        match number(value) {
            Some(seconds) => Duration::from_secs_f64(seconds),
            None => {
                let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
                let at = SystemTime::from(at.to_utc());
                at.duration_since(now).unwrap_or(Duration::ZERO)
            }
        }
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date() {
        let now = SystemTime::from(
            chrono::DateTime::parse_from_rfc3339("2025-10-21T07:28:00Z")
                .unwrap()
                .to_utc(),
        );
        let after = |pairs| parse_retry_after(&headers(pairs), now);
        assert_eq!(after(&[("retry-after", "3")]), Some(Duration::from_secs(3)));
        assert_eq!(
            after(&[("retry-after", "0.5")]),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            after(&[("retry-after", "Tue, 21 Oct 2025 07:28:10 GMT")]),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            after(&[("retry-after", "Tue, 21 Oct 2025 07:27:00 GMT")]),
            Some(Duration::ZERO)
        );
        assert_eq!(
            after(&[("retry-after-ms", "250"), ("retry-after", "9")]),
            Some(Duration::from_millis(250))
        );
        assert_eq!(after(&[("retry-after", "soon")]), None);
        assert_eq!(after(&[]), None);
    }

    #[test]
    fn retry_after_is_capped_at_a_minute() {
        let after = parse_retry_after(&headers(&[("retry-after", "86400")]), SystemTime::now());
        assert_eq!(after, Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn statuses_map_to_kinds_of_error() {
        let error = |code: u16, body: &str| {
            LlmError::from_response(
                "openai",
                StatusCode::from_u16(code).unwrap(),
                &headers(&[("retry-after", "2")]),
                body.as_bytes(),
            )
        };
        let openai = r#"{"error": {"message": "No such model", "type": "invalid_request_error"}}"#;
        assert_eq!(
            error(404, openai),
            LlmError::BadRequest("openai answered HTTP 404: No such model".into())
        );
        assert!(matches!(error(403, "nope"), LlmError::Unauthorized(m) if m.ends_with("nope")));
        assert_eq!(
            error(429, r#"{"error": {"message": "slow down"}}"#).retry_after(),
            Some(Duration::from_secs(2))
        );
        let quota =
            r#"{"error": {"message": "You exceeded your quota", "type": "insufficient_quota"}}"#;
        assert!(!error(429, quota).is_retryable());
        assert!(error(503, "").is_retryable());
        assert!(error(408, "").is_retryable());
        assert!(!error(413, "").is_retryable());
        assert_eq!(
            error(502, "").to_string(),
            "provider error: openai answered HTTP 502: Bad Gateway"
        );
    }

    #[test]
    fn error_bodies_of_various_servers_are_understood() {
        let message = |body: &str| ErrorDetail::parse(body.as_bytes()).message;
        let anthropic = r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#;
        assert_eq!(message(anthropic).as_deref(), Some("invalid x-api-key"));
        assert_eq!(
            ErrorDetail::parse(anthropic.as_bytes()).kind.as_deref(),
            Some("authentication_error")
        );
        assert_eq!(
            message(r#"{"error": "model 'x' not found"}"#).as_deref(),
            Some("model 'x' not found")
        );
        assert_eq!(
            message(r#"{"object": "error", "message": "bad"}"#).as_deref(),
            Some("bad")
        );
        assert_eq!(
            message(r#"{"detail": "Not Found"}"#).as_deref(),
            Some("Not Found")
        );
        assert_eq!(message("<html>"), None);
    }

    #[test]
    fn scrubbing_removes_every_occurrence_of_the_secret() {
        let error = LlmError::Unauthorized("bad key sk-123, really sk-123".into());
        assert_eq!(
            error.scrub(Some("sk-123")).to_string(),
            "credentials refused: bad key [redacted], really [redacted]"
        );
        let error = LlmError::Network("x".into());
        assert_eq!(error.clone().scrub(Some("")), error);
    }
}
