//! `email`: one message per recipient through the operator's SMTP relay
//! (`SMTP_*`), with STARTTLS (required), implicit TLS or, for local relays,
//! none. The plain text and the optional HTML go as `multipart/alternative`.
//!
//! The relay's 5xx answers are permanent (unknown mailbox, refused
//! credentials); 4xx answers, refused connections, TLS failures and
//! timeouts are retried.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use roundhouse_config::{Settings, SmtpTls};

use super::{Delivery, required};
use crate::handler::HandlerError;

/// How long one SMTP command may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// An SMTP transport and the From mailbox.
pub(super) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// The mailer for these settings. Mailers are kept for the life of the
    /// process, so jobs share the transport's pool of open (authenticated,
    /// encrypted) connections instead of paying a handshake each.
    pub(super) fn for_settings(settings: &Settings) -> Result<Arc<Self>, HandlerError> {
        static MAILERS: OnceLock<Mutex<HashMap<String, Arc<Mailer>>>> = OnceLock::new();
        let host = required(&settings.smtp_host, "SMTP_HOST", "email")?;
        let from = required(&settings.smtp_from, "SMTP_FROM", "email")?;
        let username = settings.smtp_username.as_deref().unwrap_or_default();
        let password = settings.smtp_password.as_deref().unwrap_or_default();
        let key = [
            host,
            &settings.smtp_port.to_string(),
            &format!("{:?}", settings.smtp_tls),
            username,
            password,
            from,
        ]
        .join("\n");
        let mut mailers = MAILERS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(mailer) = mailers.get(&key) {
            return Ok(mailer.clone());
        }
        let from: Mailbox = from.parse().map_err(|e| {
            HandlerError::Permanent(format!("notifications: SMTP_FROM `{from}`: {e}"))
        })?;
        let builder = match settings.smtp_tls {
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
            SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                host,
            )),
        }
        .map_err(|e| HandlerError::Permanent(format!("notifications: SMTP_HOST `{host}`: {e}")))?;
        let mut builder = builder.port(settings.smtp_port).timeout(Some(SMTP_TIMEOUT));
        if !username.is_empty() {
            builder =
                builder.credentials(Credentials::new(username.to_owned(), password.to_owned()));
        }
        let mailer = Arc::new(Mailer {
            transport: builder.build(),
            from,
        });
        mailers.insert(key, mailer.clone());
        Ok(mailer)
    }

    pub(super) async fn send(
        &self,
        to: &str,
        delivery: &Delivery<'_>,
    ) -> Result<Option<String>, HandlerError> {
        let what = format!("email to {to}");
        let mailbox: Mailbox = to
            .parse()
            .map_err(|e| HandlerError::Permanent(format!("{what}: not a mailbox ({e})")))?;
        let content = delivery.content;
        let message_id = format!("<{}@{}>", delivery.id, self.from.email.domain());
        let builder = Message::builder()
            .from(self.from.clone())
            .to(mailbox)
            .subject(content.subject.clone().unwrap_or_default())
            .message_id(Some(message_id.clone()));
        let message = match (&content.message, &content.html) {
            (Some(text), Some(html)) => builder.multipart(MultiPart::alternative_plain_html(
                text.clone(),
                html.clone(),
            )),
            (None, Some(html)) => builder.singlepart(SinglePart::html(html.clone())),
            (text, None) => builder
                .header(ContentType::TEXT_PLAIN)
                .body(text.clone().unwrap_or_default()),
        }
        .map_err(|e| HandlerError::Permanent(format!("{what}: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(Some(message_id)),
            Err(error) if error.is_permanent() => {
                Err(HandlerError::Permanent(format!("{what}: {error}")))
            }
            Err(error) => Err(HandlerError::Retry(format!("{what}: {error}"))),
        }
    }
}
