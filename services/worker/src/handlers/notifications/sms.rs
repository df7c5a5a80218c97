//! `sms`: Twilio's Messages API, or any service that copies it:
//! `POST {TWILIO_BASE_URL}/2010-04-01/Accounts/{sid}/Messages.json`, form
//! fields `To`, `From`, `Body`, HTTP basic auth with the account SID and
//! auth token. The reply's `sid` is the result's `providerId`. The subject,
//! if any, is the text's first line.

use std::sync::LazyLock;

use roundhouse_config::Settings;
use roundhouse_outbound::Url;

use super::{Delivery, refused, required, unsent};
use crate::handler::HandlerError;

/// For the operator's SMS endpoint: not user input, so no SSRF guard (a
/// self-hosted gateway may well be internal).
static CLIENT: LazyLock<reqwest::Result<reqwest::Client>> = LazyLock::new(|| {
    reqwest::Client::builder()
        .user_agent(concat!("roundhouse/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .build()
});

pub(super) struct Twilio {
    messages_url: Url,
    account_sid: String,
    auth_token: String,
    from: String,
}

impl Twilio {
    pub(super) fn from_settings(settings: &Settings) -> Result<Self, HandlerError> {
        let account_sid = required(&settings.twilio_account_sid, "TWILIO_ACCOUNT_SID", "sms")?;
        let auth_token = required(&settings.twilio_auth_token, "TWILIO_AUTH_TOKEN", "sms")?;
        let from = required(&settings.twilio_from_number, "TWILIO_FROM_NUMBER", "sms")?;
        let mut messages_url = Url::parse(settings.twilio_base_url.trim())
            .map_err(|e| HandlerError::Permanent(format!("notifications: TWILIO_BASE_URL: {e}")))?;
        messages_url
            .path_segments_mut()
            .map_err(|()| {
                HandlerError::Permanent("notifications: TWILIO_BASE_URL cannot take a path".into())
            })?
            .pop_if_empty()
            .extend(["2010-04-01", "Accounts", account_sid, "Messages.json"]);
        Ok(Self {
            messages_url,
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            from: from.to_owned(),
        })
    }

    pub(super) async fn send(
        &self,
        to: &str,
        delivery: &Delivery<'_>,
    ) -> Result<Option<String>, HandlerError> {
        let what = format!("sms to {to}");
        let content = delivery.content;
        let text = match (&content.subject, &content.message) {
            (Some(subject), Some(message)) => format!("{subject}\n{message}"),
            (subject, message) => message.clone().or(subject.clone()).unwrap_or_default(),
        };
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("To", to)
            .append_pair("From", &self.from)
            .append_pair("Body", &text)
            .finish();
        let client = CLIENT
            .as_ref()
            .map_err(|e| HandlerError::Retry(format!("{what}: HTTP client: {e}")))?;
        let response = client
            .post(self.messages_url.clone())
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .map_err(|e| unsent(&what, e))?;
        if !response.status().is_success() {
            return Err(refused(&what, response).await);
        }
        // The message was accepted: an odd reply body loses only its id.
        let reply: serde_json::Value = response.json().await.unwrap_or_default();
        Ok(reply["sid"].as_str().map(str::to_owned))
    }
}
