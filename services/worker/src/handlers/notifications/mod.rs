//! `notifications {type, recipient | recipients, subject?, message?, html?,
//! data?, variables?}` → `{type, sent, skippedDuplicate, recipients:
//! [{recipient, status: sent | skipped_duplicate, providerId?}]}`.
//!
//! One job, one channel (`email`, `webhook`, `slack`, `discord`, `sms`,
//! `push`), one message per recipient. The payload is parsed by
//! `roundhouse_core::notification` (the API checked it at enqueue), the
//! templates rendered (`template.rs`), then every recipient is sent to:
//!
//! * **SSRF.** Every URL from the payload (webhook, Slack and Discord URLs,
//!   push endpoints) is checked by the outbound policy before anything is
//!   sent, and sent with the guarded client, whose resolver checks again at
//!   connect time. One refused URL fails the job permanently and nothing
//!   goes out. Operator-configured endpoints (SMTP relay, Twilio) are not
//!   user input and use plain connections.
//! * **Dedup.** A delivery is recorded in `notification_deliveries` right
//!   after the provider accepts it, under the job's idempotency key (scoped
//!   by user) or, without one, its id. A retry skips the recipients already
//!   served; so does another job with the same key, even after retention
//!   deleted the first. Delivery is at least once: a crash between the
//!   provider's answer and the record means one duplicate.
//! * **Failures.** A provider's 4xx is permanent; 408, 429 and 5xx are
//!   retried (after `Retry-After` when given), as are network errors. When
//!   some recipients fail, the others still get their message; the job is
//!   retried if any failure may pass, and fails otherwise.

mod email;
mod push;
mod sms;
mod template;
mod webhook;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use roundhouse_core::notification::{Channel, NotificationJob, Recipient};
use roundhouse_outbound::{OutboundError, Url, forbidden_in};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::handler::{HandlerError, JobContext, JobHandler};
use template::Content;

/// Recipients of one job sent to at once.
const CONCURRENCY: usize = 8;
/// How much of a provider's error body goes into the job's error.
const ERROR_BODY_CHARS: usize = 300;

pub(crate) struct Notifications;

#[async_trait::async_trait]
impl JobHandler for Notifications {
    async fn run(&self, ctx: JobContext) -> Result<Value, HandlerError> {
        let job = NotificationJob::parse(&ctx.payload)
            .map_err(|e| HandlerError::Permanent(format!("notifications payload.{e}")))?;
        let content = template::render(&job)
            .map_err(|e| HandlerError::Permanent(format!("notifications payload.{e}")))?;
        let sender = Sender::for_channel(job.channel, &ctx)?;
        let unreachable = guard(&ctx, &job.recipients).await?;

        let idempotency_key = ctx
            .db
            .job_idempotency_key(ctx.job_id)
            .await
            .map_err(|e| HandlerError::Retry(format!("notifications: {e}")))?;
        let dedup_key = dedup_key(
            ctx.user_id.as_deref(),
            idempotency_key.as_deref(),
            ctx.job_id,
        );
        let channel = job.channel.as_str();
        let keys: Vec<String> = job.recipients.iter().map(|r| r.key().to_owned()).collect();
        // Recipient → (the job that served it, the provider's id).
        let mut delivered: HashMap<String, (uuid::Uuid, Option<String>)> = ctx
            .db
            .delivered_notifications(&dedup_key, channel, &keys)
            .await
            .map_err(|e| HandlerError::Retry(format!("notifications: {e}")))?
            .into_iter()
            .map(|(recipient, job_id, provider_id)| (recipient, (job_id, provider_id)))
            .collect();

        // Each recipient once: the first time it is named, unless an earlier
        // attempt or job already served it. (Indices rather than references
        // keep the stream's closure free of higher-ranked lifetimes.)
        let mut seen = HashSet::new();
        let pending: Vec<usize> = (0..job.recipients.len())
            .filter(|&i| {
                let key = job.recipients[i].key();
                seen.insert(key) && !delivered.contains_key(key)
            })
            .collect();
        let total = pending.len();
        let mut failures: Vec<HandlerError> = Vec::new();
        let (ctx, sender, content, dedup_key) = (&ctx, &sender, &content, &dedup_key);
        let sends = futures::stream::iter(pending)
            .map(|i| {
                let recipient = &job.recipients[i];
                let unreachable = unreachable.get(recipient.key()).cloned();
                let delivery = Delivery {
                    channel,
                    recipient,
                    content,
                    data: job.data.as_ref(),
                    job_id: ctx.job_id,
                    id: delivery_id(dedup_key, channel, recipient.key()),
                };
                send_one(ctx, sender, dedup_key, delivery, unreachable)
            })
            .buffer_unordered(CONCURRENCY);
        let mut sends = std::pin::pin!(sends);
        let mut sent_now: HashMap<String, Option<String>> = HashMap::new();
        let mut done = 0;
        loop {
            let next = tokio::select! {
                next = sends.next() => next,
                _ = ctx.cancel.cancelled() => {
                    return Err(HandlerError::Retry(format!(
                        "notifications interrupted after {} of {total} recipients",
                        sent_now.len()
                    )));
                }
            };
            let Some((recipient, outcome)) = next else {
                break;
            };
            match outcome {
                Ok(provider_id) => {
                    sent_now.insert(recipient.key().to_owned(), provider_id);
                }
                Err(error) => {
                    ctx.log(&error.to_string()).await;
                    failures.push(error);
                }
            }
            done += 1;
            if total > 1 {
                let percent = (done * 100 / total) as u8;
                ctx.progress(percent, Some(&format!("{done} of {total} recipients")))
                    .await;
            }
        }
        if !failures.is_empty() {
            return Err(combine(failures, total));
        }

        // `sent` when this job sent it (now or in an earlier attempt),
        // `skipped_duplicate` when another job did or the payload named the
        // recipient twice.
        for (key, provider_id) in sent_now {
            delivered.insert(key, (ctx.job_id, provider_id));
        }
        let mut reported = HashSet::new();
        let mut outcomes = Vec::with_capacity(job.recipients.len());
        let (mut sent, mut skipped) = (0, 0);
        for recipient in &job.recipients {
            let key = recipient.key();
            let (by, provider_id) = delivered.get(key).cloned().unwrap_or_default();
            let status = if by == ctx.job_id && reported.insert(key) {
                sent += 1;
                "sent"
            } else {
                skipped += 1;
                "skipped_duplicate"
            };
            let mut outcome = json!({"recipient": key, "status": status});
            if let Some(id) = provider_id {
                outcome["providerId"] = json!(id);
            }
            outcomes.push(outcome);
        }
        Ok(json!({
            "type": channel,
            "sent": sent,
            "skippedDuplicate": skipped,
            "recipients": outcomes,
        }))
    }
}

/// Sends to one recipient (unless its host could not be resolved) and
/// records the delivery.
async fn send_one<'a>(
    ctx: &JobContext,
    sender: &Sender,
    dedup_key: &str,
    delivery: Delivery<'a>,
    unreachable: Option<HandlerError>,
) -> (&'a Recipient, Result<Option<String>, HandlerError>) {
    let recipient = delivery.recipient;
    if let Some(error) = unreachable {
        return (recipient, Err(error));
    }
    let sent = sender.send(&delivery).await;
    if let Ok(provider_id) = &sent {
        record(
            ctx,
            dedup_key,
            delivery.channel,
            recipient,
            provider_id.as_deref(),
        )
        .await;
    }
    (recipient, sent)
}

/// What one send needs.
struct Delivery<'a> {
    channel: &'static str,
    recipient: &'a Recipient,
    content: &'a Content,
    data: Option<&'a Value>,
    job_id: uuid::Uuid,
    /// Stable for this (dedup key, channel, recipient): the webhook id and
    /// e-mail Message-ID, so receivers can drop a duplicate we could not
    /// avoid.
    id: String,
}

/// The channel's provider, set up from the worker's settings.
enum Sender {
    Email(std::sync::Arc<email::Mailer>),
    Webhook(webhook::Poster),
    Sms(sms::Twilio),
    Push(push::Pusher),
}

impl Sender {
    fn for_channel(channel: Channel, ctx: &JobContext) -> Result<Self, HandlerError> {
        let settings = ctx.settings();
        let client = ctx.outbound().client.clone();
        Ok(match channel {
            Channel::Email => Sender::Email(email::Mailer::for_settings(settings)?),
            Channel::Webhook => Sender::Webhook(webhook::Poster::generic(client, settings)?),
            Channel::Slack => Sender::Webhook(webhook::Poster::slack(client)),
            Channel::Discord => Sender::Webhook(webhook::Poster::discord(client)),
            Channel::Sms => Sender::Sms(sms::Twilio::from_settings(settings)?),
            Channel::Push => Sender::Push(push::Pusher::from_settings(client, settings)?),
        })
    }

    /// Sends one message; `Ok` carries the provider's id for it, if any.
    async fn send(&self, delivery: &Delivery<'_>) -> Result<Option<String>, HandlerError> {
        match (self, delivery.recipient) {
            (Sender::Email(mailer), Recipient::Email(to)) => mailer.send(to, delivery).await,
            (Sender::Webhook(poster), Recipient::Url(url)) => poster.send(url, delivery).await,
            (Sender::Sms(twilio), Recipient::Phone(to)) => twilio.send(to, delivery).await,
            (Sender::Push(pusher), Recipient::Push(subscription)) => {
                pusher.send(subscription, delivery).await
            }
            _ => Err(HandlerError::Permanent(
                "notifications: the recipient does not match the channel".into(),
            )),
        }
    }
}

/// A setting a channel cannot do without.
fn required<'a>(
    value: &'a Option<String>,
    variable: &str,
    channel: &str,
) -> Result<&'a str, HandlerError> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            HandlerError::Permanent(format!(
                "notifications: {channel} needs {variable}, which this worker does not set"
            ))
        })
}

/// Checks every URL of the payload against the SSRF policy before anything
/// is sent. A refused URL fails the job (nothing is sent); a host that does
/// not resolve now may later, so it fails only its own recipient, retryably
/// (returned by recipient key).
async fn guard(
    ctx: &JobContext,
    recipients: &[Recipient],
) -> Result<HashMap<String, HandlerError>, HandlerError> {
    let policy = &ctx.outbound().policy;
    let mut unreachable = HashMap::new();
    let mut refused = Vec::new();
    for recipient in recipients {
        let raw = match recipient {
            Recipient::Url(url) => url,
            Recipient::Push(subscription) => &subscription.endpoint,
            Recipient::Email(_) | Recipient::Phone(_) => continue,
        };
        let what = describe(recipient);
        let checked = match Url::parse(raw) {
            Ok(url) => policy.check_url(&url).await,
            Err(e) => Err(OutboundError::BadUrl(e.to_string())),
        };
        match checked {
            Ok(()) => {}
            Err(error) if error.is_retryable() => {
                unreachable.insert(
                    recipient.key().to_owned(),
                    HandlerError::Retry(format!("{what}: {error}")),
                );
            }
            Err(error) => refused.push(format!("{what}: {error}")),
        }
    }
    if refused.is_empty() {
        Ok(unreachable)
    } else {
        Err(HandlerError::Permanent(format!(
            "notifications refused by the outbound guard (nothing was sent): {}",
            refused.join("; ")
        )))
    }
}

/// The key deliveries are recorded under: the idempotency key scoped by
/// user (length-prefixed, so no user/key split is ambiguous), or the job id.
fn dedup_key(user_id: Option<&str>, idempotency_key: Option<&str>, job_id: uuid::Uuid) -> String {
    match idempotency_key {
        Some(key) => {
            let user = user_id.unwrap_or_default();
            format!("key:{}:{user}:{key}", user.len())
        }
        None => format!("job:{job_id}"),
    }
}

fn delivery_id(dedup_key: &str, channel: &str, recipient: &str) -> String {
    let digest = Sha256::new()
        .chain_update(dedup_key)
        .chain_update([0])
        .chain_update(channel)
        .chain_update([0])
        .chain_update(recipient)
        .finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Records a delivery the provider accepted. The message is out either way:
/// if the record cannot be written (after a few tries) the send still
/// counts, and only a retry of this job could repeat it.
async fn record(
    ctx: &JobContext,
    dedup_key: &str,
    channel: &str,
    recipient: &Recipient,
    provider_id: Option<&str>,
) {
    for attempt in 1..=3 {
        match ctx
            .db
            .record_notification_delivery(
                dedup_key,
                channel,
                recipient.key(),
                ctx.job_id,
                provider_id,
            )
            .await
        {
            Ok(_) => return,
            Err(error) if attempt == 3 => {
                tracing::warn!(%error, job_id = %ctx.job_id, "could not record a notification delivery; a retry may repeat it");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200 * attempt)).await,
        }
    }
}

/// One error for the failed recipients: retried if any of them may
/// succeed later (after the longest `Retry-After` asked), else permanent.
fn combine(mut failures: Vec<HandlerError>, total: usize) -> HandlerError {
    if failures.len() == 1 && total == 1 {
        return failures.remove(0);
    }
    let message = format!(
        "notifications: {} of {total} recipients failed: {}",
        failures.len(),
        failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
    let wait = failures
        .iter()
        .filter_map(|f| match f {
            HandlerError::RetryAfter(_, after) => Some(*after),
            _ => None,
        })
        .max();
    let retryable = failures
        .iter()
        .any(|f| !matches!(f, HandlerError::Permanent(_)));
    match (retryable, wait) {
        (true, Some(after)) => HandlerError::RetryAfter(message, after),
        (true, None) => HandlerError::Retry(message),
        (false, _) => HandlerError::Permanent(message),
    }
}

/// A recipient as errors and logs show it: a URL without its path and
/// query, which for Slack and Discord hold the webhook's secret.
fn describe(recipient: &Recipient) -> String {
    match recipient {
        Recipient::Email(to) => format!("email to {to}"),
        Recipient::Phone(to) => format!("sms to {to}"),
        Recipient::Url(url) => format!("webhook {}", redact(url)),
        Recipient::Push(subscription) => format!("push to {}", redact(&subscription.endpoint)),
    }
}

fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(url) => {
            let origin = url.origin().ascii_serialization();
            if url.path() == "/" && url.query().is_none() {
                format!("{origin}/")
            } else {
                format!("{origin}/…")
            }
        }
        Err(_) => "an invalid URL".into(),
    }
}

/// A provider's non-success answer as a job failure: 408, 429 and 5xx are
/// retried (after `Retry-After` when given), any other status is permanent.
async fn refused(what: &str, response: reqwest::Response) -> HandlerError {
    let status = response.status();
    let wait = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    let body: String = body
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(ERROR_BODY_CHARS)
        .collect();
    let message = if body.is_empty() {
        format!("{what}: HTTP {status}")
    } else {
        format!("{what}: HTTP {status}: {body}")
    };
    let retryable = status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT;
    match (retryable, wait) {
        (true, Some(after)) => HandlerError::RetryAfter(message, after),
        (true, None) => HandlerError::Retry(message),
        (false, _) => HandlerError::Permanent(message),
    }
}

/// A request that got no answer: the outbound guard's refusal is permanent
/// (unless it is a failed DNS lookup); timeouts and network errors retry.
fn unsent(what: &str, error: reqwest::Error) -> HandlerError {
    if let Some(refusal) = forbidden_in(&error) {
        let message = format!("{what}: {refusal}");
        return if refusal.is_retryable() {
            HandlerError::Retry(message)
        } else {
            HandlerError::Permanent(message)
        };
    }
    // Without the URL: it may hold a webhook's secret.
    let error = error.without_url();
    let mut message = format!("{what}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    HandlerError::Retry(message)
}

/// `Retry-After` in seconds or as an HTTP date, capped at an hour.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
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
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .unwrap_or_default()
        }
    };
    Some(wait.min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keys_scope_idempotency_keys_by_user_unambiguously() {
        let job = uuid::Uuid::nil();
        assert_eq!(dedup_key(Some("u"), Some("k"), job), "key:1:u:k");
        assert_ne!(
            dedup_key(Some("a:b"), Some("c"), job),
            dedup_key(Some("a"), Some("b:c"), job)
        );
        assert_eq!(dedup_key(None, Some("k"), job), "key:0::k");
        assert_eq!(dedup_key(Some("u"), None, job), format!("job:{job}"));
        assert_eq!(delivery_id("job:x", "email", "a@b.c").len(), 32);
    }

    #[test]
    fn urls_are_shown_without_their_secret_path() {
        assert_eq!(
            redact("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(redact("http://127.0.0.1:8080/"), "http://127.0.0.1:8080/");
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        headers.insert("retry-after", later.parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn mixed_failures_retry_and_permanent_ones_fail() {
        let permanent = || HandlerError::Permanent("a: HTTP 400".into());
        let later = || HandlerError::RetryAfter("b: HTTP 429".into(), Duration::from_secs(5));
        assert!(matches!(
            combine(vec![permanent(), later()], 3),
            HandlerError::RetryAfter(_, after) if after == Duration::from_secs(5)
        ));
        let error = combine(vec![permanent(), permanent()], 2);
        assert!(
            matches!(&error, HandlerError::Permanent(m) if m.starts_with("notifications: 2 of 2 recipients failed"))
        );
        assert!(
            matches!(combine(vec![permanent()], 1), HandlerError::Permanent(m) if m == "a: HTTP 400")
        );
    }
}
