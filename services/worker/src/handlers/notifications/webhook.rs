//! `webhook`, `slack` and `discord`: a JSON POST to a URL from the payload,
//! through the SSRF-guarded client.
//!
//! * `webhook` sends the Standard Webhooks envelope `{type: "notification",
//!   timestamp, data: {jobId, subject?, message?, data?}}`, signed with
//!   `NOTIFICATION_WEBHOOK_SECRET` (`webhook-id`, `webhook-timestamp`,
//!   `webhook-signature` headers; the id is the same on every retry, so a
//!   receiver can drop a repeat).
//! * `slack` sends `{text}` (the subject in bold on the first line), for
//!   Slack's incoming webhooks and the services that copy them (Mattermost).
//! * `discord` sends `{content}`, for Discord's channel webhooks.

use roundhouse_config::Settings;
use roundhouse_outbound::WebhookSigner;
use serde_json::{Value, json};

use super::{Delivery, describe, refused, required, unsent};
use crate::handler::HandlerError;

/// The body's shape, and for generic webhooks the signer.
enum Style {
    Generic(WebhookSigner),
    Slack,
    Discord,
}

pub(super) struct Poster {
    client: reqwest::Client,
    style: Style,
}

impl Poster {
    pub(super) fn generic(
        client: reqwest::Client,
        settings: &Settings,
    ) -> Result<Self, HandlerError> {
        let secret = required(
            &settings.notification_webhook_secret,
            "NOTIFICATION_WEBHOOK_SECRET",
            "webhook",
        )?;
        let signer = WebhookSigner::from_secret(secret).map_err(|e| {
            HandlerError::Permanent(format!("notifications: NOTIFICATION_WEBHOOK_SECRET: {e}"))
        })?;
        Ok(Self {
            client,
            style: Style::Generic(signer),
        })
    }

    pub(super) fn slack(client: reqwest::Client) -> Self {
        Self {
            client,
            style: Style::Slack,
        }
    }

    pub(super) fn discord(client: reqwest::Client) -> Self {
        Self {
            client,
            style: Style::Discord,
        }
    }

    pub(super) async fn send(
        &self,
        url: &str,
        delivery: &Delivery<'_>,
    ) -> Result<Option<String>, HandlerError> {
        let what = describe(delivery.recipient);
        let content = delivery.content;
        let chat = |bold: &str| match (&content.subject, &content.message) {
            (Some(subject), Some(message)) => format!("{bold}{subject}{bold}\n{message}"),
            (None, Some(message)) => message.clone(),
            (Some(subject), None) => subject.clone(),
            (None, None) => String::new(),
        };
        let mut request = self.client.post(url);
        let body = match &self.style {
            Style::Slack => json!({ "text": chat("*") }),
            Style::Discord => json!({ "content": chat("**") }),
            Style::Generic(_) => {
                let mut data = json!({ "jobId": delivery.job_id });
                for (field, value) in [
                    ("subject", content.subject.clone().map(Value::String)),
                    ("message", content.message.clone().map(Value::String)),
                    ("data", delivery.data.cloned()),
                ] {
                    if let Some(value) = value {
                        data[field] = value;
                    }
                }
                json!({
                    "type": "notification",
                    "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "data": data,
                })
            }
        };
        let body = serde_json::to_vec(&body).expect("JSON values serialise");
        if let Style::Generic(signer) = &self.style {
            let id = format!("msg_{}", delivery.id);
            let timestamp = chrono::Utc::now().timestamp();
            for (name, value) in signer.headers(&id, timestamp, &body) {
                request = request.header(name, value);
            }
        }
        let response = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| unsent(&what, e))?;
        if response.status().is_success() {
            Ok(None)
        } else {
            Err(refused(&what, response).await)
        }
    }
}
