//! Custom job types run by an HTTP endpoint, in any language
//! (`HTTP_HANDLERS=resize_image=https://…`).
//!
//! Each attempt is one POST of
//! `{jobId, jobType, attempt, maxRetries, userId, payload, callback: {url?, token}}`
//! signed per Standard Webhooks (`webhook-id` = the job id, stable across
//! attempts so the endpoint can deduplicate; `webhook-timestamp`;
//! `webhook-signature: v1,<base64 HMAC-SHA256>` over `id.timestamp.body`).
//! A 2xx JSON reply is the job's result (an empty body is `null`); 4xx other
//! than 408 and 429 fails the job for good; 429 retries after its
//! `Retry-After`; everything else (5xx, timeouts, refused connections)
//! retries with the job's backoff.
//!
//! The callback token lets the endpoint report progress while it works:
//! `POST {ROUNDHOUSE_URL}/api/jobs/{id}/progress` with `Authorization:
//! Bearer <token>`. It is random per attempt and only its SHA-256 is stored (hashed by the
//! database),
//! so a superseded attempt's token stops working.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use reqwest::StatusCode;
use roundhouse_outbound::WebhookSigner;
use serde_json::{Value, json};

use crate::handler::{HandlerError, JobContext, JobHandler};

/// The most of an error reply's body kept in the job's error.
const ERROR_BODY_LIMIT: usize = 500;

/// Posts jobs of one custom type to its endpoint.
pub(crate) struct HttpHandler {
    pub(crate) url: String,
    pub(crate) signer: WebhookSigner,
    /// Not the SSRF-guarded client: the operator configured this endpoint,
    /// and it is often on a private network (a sidecar, an internal service).
    pub(crate) client: reqwest::Client,
    /// Where the endpoint calls back (`ROUNDHOUSE_URL`), if known.
    pub(crate) api_url: Option<String>,
}

impl HttpHandler {
    pub(crate) fn new(
        url: String,
        signer: WebhookSigner,
        timeout: Duration,
        api_url: Option<String>,
    ) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("roundhouse/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(timeout)
            .build()?;
        Ok(Self {
            url,
            signer,
            client,
            api_url: api_url.map(|url| url.trim_end_matches('/').to_owned()),
        })
    }
}

#[async_trait::async_trait]
impl JobHandler for HttpHandler {
    async fn run(&self, ctx: JobContext) -> Result<Value, HandlerError> {
        let token = new_token();
        ctx.db
            .issue_callback_token(ctx.job_id, ctx.attempt, &token)
            .await
            .map_err(|e| HandlerError::Retry(format!("could not issue a callback token: {e}")))?;
        let callback_url = self
            .api_url
            .as_ref()
            .map(|api| format!("{api}/api/jobs/{}/progress", ctx.job_id));
        let body = serde_json::to_vec(&json!({
            "jobId": ctx.job_id,
            "jobType": ctx.job_type.as_str(),
            "attempt": ctx.attempt,
            "userId": ctx.user_id,
            "payload": ctx.payload,
            "callback": { "url": callback_url, "token": token },
        }))
        .expect("a JSON value serialises");
        let id = ctx.job_id.to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in self.signer.headers(&id, timestamp, &body) {
            request = request.header(name, value);
        }
        // The endpoint can continue the job's trace.
        if let Some(traceparent) = roundhouse_telemetry::current_traceparent() {
            request = request.header("traceparent", traceparent);
        }
        let response = tokio::select! {
            response = request.body(body).send() => response,
            _ = ctx.cancel.cancelled() => {
                return Err(HandlerError::Retry("interrupted while the endpoint was working".into()));
            }
        };
        let response = response.map_err(|e| {
            HandlerError::Retry(format!("{} did not answer: {}", self.url, error_chain(&e)))
        })?;
        outcome(response).await
    }
}

/// The job's result or failure from the endpoint's answer.
async fn outcome(response: reqwest::Response) -> Result<Value, HandlerError> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = response
        .text()
        .await
        .map_err(|e| HandlerError::Retry(format!("reading the endpoint's answer: {e}")))?;
    if status.is_success() {
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        return serde_json::from_str(&text).map_err(|e| {
            HandlerError::Permanent(format!(
                "the endpoint answered {status} with invalid JSON: {e}"
            ))
        });
    }
    let message = format!("the endpoint answered {status}: {}", excerpt(&text));
    match status {
        StatusCode::TOO_MANY_REQUESTS => Err(match retry_after {
            Some(after) => HandlerError::RetryAfter(message, after),
            None => HandlerError::Retry(message),
        }),
        StatusCode::REQUEST_TIMEOUT => Err(HandlerError::Retry(message)),
        status if status.is_client_error() => Err(HandlerError::Permanent(message)),
        _ => Err(HandlerError::Retry(message)),
    }
}

/// A fresh 256-bit bearer token.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("rhcb_{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(ERROR_BODY_LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A request error with its causes ("error sending request: connection
/// refused"), which reqwest's own message leaves out.
fn error_chain(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
