//! POSTs alert messages to the operator's webhook, with a few quick retries.
//!
//! The URL comes from `ALERT_WEBHOOK_URL`, set by the operator, so an
//! ordinary client is used (not the SSRF-guarded one for users' URLs). It
//! holds the webhook's secret: errors are logged without it.
//!
//! Delivery is bounded: a request times out after `REQUEST_TIMEOUT`, and a
//! message gets `RETRIES` more attempts after a 429, a 5xx or a network
//! error, waiting the backoff or the server's `Retry-After`. A server that
//! asks for a longer wait than `MAX_INLINE_WAIT` pauses the alerter until
//! then instead: nothing is lost, as an undelivered pass is rolled back and
//! evaluated again.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use backon::{ExponentialBuilder, Retryable};

use super::message::{Message, WebhookFormat};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const RETRIES: usize = 2;
const MAX_INLINE_WAIT: Duration = Duration::from_secs(5);

/// Why a message was not delivered.
#[derive(Debug)]
pub enum DeliveryError {
    /// The webhook answered with an error status.
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused, timeout, reset.
    Network(String),
    /// A 429 asked the alerter to wait; it is waiting.
    Paused,
}

impl DeliveryError {
    fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::Status { status, .. } => *status == 429 || *status >= 500,
            DeliveryError::Network(_) => true,
            DeliveryError::Paused => false,
        }
    }
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveryError::Status { status, .. } => write!(f, "the webhook answered HTTP {status}"),
            DeliveryError::Network(error) => write!(f, "the webhook did not answer: {error}"),
            DeliveryError::Paused => write!(f, "the webhook asked us to wait (Retry-After)"),
        }
    }
}

impl std::error::Error for DeliveryError {}

/// The alert webhook.
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    format: WebhookFormat,
    paused_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    pub fn new(url: &str, format: WebhookFormat) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("roundhouse-scheduler/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            url: url.trim().to_owned(),
            format,
            paused_until: Mutex::new(None),
        })
    }

    /// True while a server's `Retry-After` asks us to wait.
    pub fn is_paused(&self) -> bool {
        let mut paused = self.paused_until.lock().expect("not poisoned");
        match *paused {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *paused = None;
                false
            }
            None => false,
        }
    }

    /// Sends `message`, retrying briefly; see the module docs.
    pub async fn send(&self, message: &Message) -> Result<(), DeliveryError> {
        if self.is_paused() {
            return Err(DeliveryError::Paused);
        }
        let body = message.body(self.format);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(MAX_INLINE_WAIT)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(RETRIES);
        (|| self.post(&body))
            .retry(backoff)
            .when(DeliveryError::is_retryable)
            .adjust(|error, delay| {
                let retry_after = match error {
                    DeliveryError::Status { retry_after, .. } => *retry_after,
                    _ => None,
                };
                match (retry_after, delay) {
                    (_, None) => None,
                    (Some(wait), Some(_)) if wait > MAX_INLINE_WAIT => {
                        self.pause(wait);
                        None
                    }
                    (Some(wait), Some(_)) => Some(wait),
                    (None, delay) => delay,
                }
            })
            .notify(|error, delay| {
                tracing::info!(
                    %error,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "alert not delivered yet; retrying"
                );
            })
            .await
    }

    fn pause(&self, wait: Duration) {
        *self.paused_until.lock().expect("not poisoned") = Some(Instant::now() + wait);
    }

    async fn post(&self, body: &serde_json::Value) -> Result<(), DeliveryError> {
        let response = self
            .client
            .post(&self.url)
            .json(body)
            .send()
            .await
            .map_err(|error| DeliveryError::Network(error.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = parse_retry_after(response.headers(), SystemTime::now());
        if status.as_u16() == 429
            && let Some(wait) = retry_after
            && wait > MAX_INLINE_WAIT
        {
            self.pause(wait);
        }
        Err(DeliveryError::Status {
            status: status.as_u16(),
            retry_after,
        })
    }
}

/// `Retry-After` in seconds or as an HTTP date; at most an hour.
fn parse_retry_after(headers: &reqwest::header::HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match value.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => Duration::from_secs_f64(seconds),
        Ok(_) => return None,
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            SystemTime::from(at.to_utc())
                .duration_since(now)
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut headers = HeaderMap::new();
        assert_eq!(parse_retry_after(&headers, now), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1.5"));
        assert_eq!(
            parse_retry_after(&headers, now),
            Some(Duration::from_millis(1500))
        );
        // 1_700_000_000 is Tue, 14 Nov 2023 22:13:20 GMT.
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Tue, 14 Nov 2023 22:13:50 GMT"),
        );
        assert_eq!(
            parse_retry_after(&headers, now),
            Some(Duration::from_secs(30))
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&headers, now), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("999999"));
        assert_eq!(
            parse_retry_after(&headers, now),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn only_rate_limits_server_errors_and_silence_are_retried() {
        let status = |status| DeliveryError::Status {
            status,
            retry_after: None,
        };
        assert!(status(429).is_retryable());
        assert!(status(503).is_retryable());
        assert!(!status(404).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(DeliveryError::Network("refused".into()).is_retryable());
        assert!(!DeliveryError::Paused.is_retryable());
    }
}
