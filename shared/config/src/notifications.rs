//! Settings of the `notifications` job type's providers: SMTP, Twilio, Web
//! Push (VAPID) and the generic webhook signing secret.
//!
//! Every provider is optional: a worker without, say, SMTP settings still
//! starts, and an `email` job fails permanently with a message naming the
//! missing variable. What is set must be well-formed, or the service stops
//! at start like for any other setting.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::{Settings, SettingsError, invalid};

/// How the worker secures its SMTP connection (`SMTP_TLS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    Starttls,
    /// TLS from the first byte ("SMTPS", port 465).
    Tls,
    /// No encryption: local relays and test sinks only.
    None,
}

/// A setting's value, unless it is unset or blank.
fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Decodes `VAPID_PRIVATE_KEY`: the raw P-256 private scalar (32 bytes) in
/// base64url, as `web-push generate-vapid-keys` prints it.
pub fn decode_vapid_private_key(key: &str) -> Result<Vec<u8>, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(key.trim().trim_end_matches('='))
        .map_err(|_| "must be base64url (a raw 32-byte P-256 private key)".to_owned())?;
    if bytes.len() != 32 {
        return Err(format!(
            "must be a raw 32-byte P-256 private key in base64url, got {} bytes",
            bytes.len()
        ));
    }
    Ok(bytes)
}

impl Settings {
    pub(crate) fn validate_notifications(&self) -> Result<(), SettingsError> {
        if self.smtp_port == 0 {
            return Err(invalid("SMTP_PORT", "must be a TCP port"));
        }
        if let Some(from) = present(&self.smtp_from)
            && !from.contains('@')
        {
            return Err(invalid(
                "SMTP_FROM",
                "must be an address like `Roundhouse <noreply@example.com>`",
            ));
        }
        if present(&self.smtp_username).is_some() != present(&self.smtp_password).is_some() {
            return Err(invalid(
                "SMTP_PASSWORD",
                "SMTP_USERNAME and SMTP_PASSWORD are set together or not at all",
            ));
        }
        let base = self.twilio_base_url.trim();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(invalid("TWILIO_BASE_URL", "expected a https/http URL"));
        }
        if let Some(key) = present(&self.vapid_private_key) {
            decode_vapid_private_key(key).map_err(|e| invalid("VAPID_PRIVATE_KEY", e))?;
        }
        if let Some(subject) = present(&self.vapid_subject)
            && !(subject.starts_with("mailto:") || subject.starts_with("https://"))
        {
            return Err(invalid(
                "VAPID_SUBJECT",
                "must be a mailto: or https: URL the push service can contact",
            ));
        }
        if let Some(secret) = present(&self.notification_webhook_secret)
            && (!secret.starts_with("whsec_")
                || roundhouse_outbound::WebhookSigner::from_secret(secret).is_err())
        {
            return Err(invalid(
                "NOTIFICATION_WEBHOOK_SECRET",
                "must be a Standard Webhooks secret: `whsec_` followed by base64",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::tests::load;

    #[test]
    fn notification_providers_default_to_unset_with_standard_ports() {
        let settings = load(&[]).unwrap();
        assert_eq!(settings.smtp_port, 587);
        assert_eq!(settings.smtp_tls, SmtpTls::Starttls);
        assert_eq!(settings.twilio_base_url, "https://api.twilio.com");
        assert!(settings.smtp_host.is_none() && settings.vapid_private_key.is_none());

        let settings = load(&[
            ("SMTP_HOST", "smtp.example.com"),
            ("SMTP_PORT", "465"),
            ("SMTP_TLS", "tls"),
            ("SMTP_USERNAME", "apikey"),
            ("SMTP_PASSWORD", "secret"),
            ("SMTP_FROM", "Roundhouse <noreply@example.com>"),
            (
                "VAPID_PRIVATE_KEY",
                "RS0WdYWWo1HajXg3NZR1olzCf31i-ZBGDkFyCs7j1jw",
            ),
            ("VAPID_SUBJECT", "mailto:ops@example.com"),
            (
                "NOTIFICATION_WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
        ])
        .unwrap();
        assert_eq!((settings.smtp_port, settings.smtp_tls), (465, SmtpTls::Tls));
        let debug = format!("{settings:?}");
        assert!(!debug.contains("secret") && !debug.contains("RS0WdY") && !debug.contains("whsec"));
    }

    #[test]
    fn malformed_notification_settings_are_named() {
        for (var, value) in [
            ("SMTP_TLS", "ssl"),
            ("SMTP_PORT", "70000"),
            ("SMTP_FROM", "nobody"),
            ("SMTP_PASSWORD", "only-a-password"),
            ("TWILIO_BASE_URL", "api.twilio.com"),
            ("VAPID_PRIVATE_KEY", "c2hvcnQ"),
            ("VAPID_PRIVATE_KEY", "not base64!"),
            ("VAPID_SUBJECT", "ops@example.com"),
            ("NOTIFICATION_WEBHOOK_SECRET", "hunter2"),
        ] {
            let error = load(&[(var, value)]).unwrap_err();
            assert_eq!(error.variable, var, "{var}={value}: {error}");
        }
    }
}
