//! The `notifications` payload, parsed once: by the API when the job is
//! enqueued (a bad field answers 422) and by the worker before it sends.
//!
//! ```json
//! {"type": "email", "recipients": ["ada@example.com"], "subject": "Hi {{ name }}",
//!  "message": "…", "html": "…", "variables": {"name": "Ada"}}
//! ```
//!
//! `recipient` (one) or `recipients` (several, of the same channel): an
//! e-mail address for `email`, an `http(s)` URL for `webhook`, `slack` and
//! `discord`, an E.164 number for `sms`, a browser `PushSubscription`
//! (`{endpoint, keys: {p256dh, auth}}`, as an object or its JSON text) for
//! `push`. Templates are rendered by the worker; here they are only text.
//! Checks that need the network (DNS, the SSRF guard) or the worker's
//! settings happen when the job runs.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// Most recipients one job may name: a bigger fan-out is several jobs,
/// each retried on its own.
pub const MAX_RECIPIENTS: usize = 100;
/// Longest recipient (an address, a URL, a push endpoint), in bytes.
pub const MAX_RECIPIENT_LEN: usize = 2048;
/// Longest subject template, in bytes (an e-mail header line is 998).
pub const MAX_SUBJECT_LEN: usize = 998;
/// Longest message or HTML template, in bytes.
pub const MAX_BODY_LEN: usize = 256 * 1024;

/// How a notification is delivered (the payload's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Email,
    Webhook,
    Slack,
    Discord,
    Sms,
    Push,
}

impl Channel {
    pub const ALL: [Channel; 6] = [
        Channel::Email,
        Channel::Webhook,
        Channel::Slack,
        Channel::Discord,
        Channel::Sms,
        Channel::Push,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
            Channel::Slack => "slack",
            Channel::Discord => "discord",
            Channel::Sms => "sms",
            Channel::Push => "push",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A browser's `PushSubscription`: where to POST, and the keys to encrypt
/// for (both base64url, as `subscription.toJSON()` gives them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSubscription {
    pub endpoint: String,
    /// The browser's P-256 public key (65 bytes, uncompressed).
    pub p256dh: String,
    /// The authentication secret (16 bytes).
    pub auth: String,
}

/// One recipient of a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// `ada@example.com` or `Ada Lovelace <ada@example.com>`.
    Email(String),
    /// A webhook, Slack or Discord URL.
    Url(String),
    /// An E.164 phone number (`+14155550100`).
    Phone(String),
    Push(PushSubscription),
}

impl Recipient {
    /// What names this recipient in results and in delivery records: the
    /// address, URL or number as given, or a subscription's endpoint (which
    /// is unique per subscription).
    pub fn key(&self) -> &str {
        match self {
            Recipient::Email(s) | Recipient::Url(s) | Recipient::Phone(s) => s,
            Recipient::Push(subscription) => &subscription.endpoint,
        }
    }
}

/// A parsed `notifications` payload.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationJob {
    pub channel: Channel,
    /// At least one, at most [`MAX_RECIPIENTS`], in the payload's order
    /// (repeats included: the worker sends to each recipient once).
    pub recipients: Vec<Recipient>,
    /// Template of the subject (e-mail subject, push title, first line of
    /// chat and SMS messages).
    pub subject: Option<String>,
    /// Template of the message (the plain-text body).
    pub message: Option<String>,
    /// Template of an HTML alternative (`email` only).
    pub html: Option<String>,
    /// Extra JSON passed through (`webhook` and `push` only).
    pub data: Option<Value>,
    /// The templates' variables.
    pub variables: Map<String, Value>,
}

/// A payload field that is missing or malformed. Displays as
/// `field: reason` (the API prefixes `payload.`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct PayloadError {
    /// The field at fault, as a path (`recipients[2].keys.auth`).
    pub field: String,
    pub reason: String,
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> PayloadError {
    PayloadError {
        field: field.into(),
        reason: reason.into(),
    }
}

const FIELDS: [&str; 8] = [
    "type",
    "recipient",
    "recipients",
    "subject",
    "message",
    "html",
    "data",
    "variables",
];

impl NotificationJob {
    /// Parses and checks a payload.
    pub fn parse(payload: &Value) -> Result<Self, PayloadError> {
        let object = payload
            .as_object()
            .ok_or_else(|| bad("payload", "must be a JSON object"))?;
        if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(bad(
                unknown.as_str(),
                format!("unknown field; expected one of {}", FIELDS.join(", ")),
            ));
        }
        let channel = match object.get("type") {
            None => return Err(bad("type", "required: one of email, webhook, slack, discord, sms, push")),
            Some(Value::String(name)) => Channel::ALL
                .into_iter()
                .find(|c| c.as_str() == name)
                .ok_or_else(|| {
                    bad(
                        "type",
                        format!("unknown channel `{name}`; expected email, webhook, slack, discord, sms or push"),
                    )
                })?,
            Some(_) => return Err(bad("type", "must be a string")),
        };

        let recipients = match (object.get("recipient"), object.get("recipients")) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "recipients",
                    "give either recipient or recipients, not both",
                ));
            }
            (None, None) => return Err(bad("recipient", "required (or recipients: [...])")),
            (Some(one), None) => vec![parse_recipient(channel, "recipient", one)?],
            (None, Some(Value::Array(many))) => {
                if many.is_empty() {
                    return Err(bad("recipients", "must not be empty"));
                }
                if many.len() > MAX_RECIPIENTS {
                    return Err(bad(
                        "recipients",
                        format!(
                            "at most {MAX_RECIPIENTS} per job; split larger fan-outs into several jobs"
                        ),
                    ));
                }
                many.iter()
                    .enumerate()
                    .map(|(i, r)| parse_recipient(channel, &format!("recipients[{i}]"), r))
                    .collect::<Result<_, _>>()?
            }
            (None, Some(_)) => return Err(bad("recipients", "must be an array")),
        };

        let subject = text(object, "subject", MAX_SUBJECT_LEN)?;
        let message = text(object, "message", MAX_BODY_LEN)?;
        let html = text(object, "html", MAX_BODY_LEN)?;
        let data = object.get("data").filter(|d| !d.is_null()).cloned();
        let variables = match object.get("variables") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => return Err(bad("variables", "must be an object of template variables")),
        };

        if html.is_some() && channel != Channel::Email {
            return Err(bad(
                "html",
                format!("only email takes an html body, not {channel}"),
            ));
        }
        if data.is_some() && !matches!(channel, Channel::Webhook | Channel::Push) {
            return Err(bad(
                "data",
                format!("only webhook and push take data, not {channel}"),
            ));
        }
        match channel {
            Channel::Email => {
                if subject.is_none() {
                    return Err(bad("subject", "required for email"));
                }
                if message.is_none() && html.is_none() {
                    return Err(bad("message", "required for email (or html)"));
                }
            }
            Channel::Webhook | Channel::Push => {
                if message.is_none() && data.is_none() {
                    return Err(bad("message", format!("required for {channel} (or data)")));
                }
            }
            Channel::Slack | Channel::Discord | Channel::Sms => {
                if message.is_none() {
                    return Err(bad("message", format!("required for {channel}")));
                }
            }
        }
        Ok(Self {
            channel,
            recipients,
            subject,
            message,
            html,
            data,
            variables,
        })
    }
}

/// An optional string field: absent or null is `None`; empty is refused
/// (a template that renders empty is the sender's business).
fn text(
    object: &Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<Option<String>, PayloadError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(bad(field, "must not be empty")),
        Some(Value::String(s)) if s.len() > max => {
            Err(bad(field, format!("longer than {max} bytes")))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(field, "must be a string")),
    }
}

fn parse_recipient(
    channel: Channel,
    field: &str,
    value: &Value,
) -> Result<Recipient, PayloadError> {
    let string = || -> Result<String, PayloadError> {
        let Value::String(raw) = value else {
            return Err(bad(field, "must be a string"));
        };
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(bad(field, "must not be empty"));
        }
        if raw.len() > MAX_RECIPIENT_LEN {
            return Err(bad(field, format!("longer than {MAX_RECIPIENT_LEN} bytes")));
        }
        Ok(raw.to_owned())
    };
    let checked = |check: fn(&str) -> Result<(), String>, make: fn(String) -> Recipient| {
        let raw = string()?;
        check(&raw).map_err(|reason| bad(field, reason))?;
        Ok(make(raw))
    };
    match channel {
        Channel::Email => checked(check_email, Recipient::Email),
        Channel::Webhook | Channel::Slack | Channel::Discord => checked(check_url, Recipient::Url),
        Channel::Sms => checked(check_phone, Recipient::Phone),
        Channel::Push => parse_subscription(field, value).map(Recipient::Push),
    }
}

/// `local@domain`, optionally as `Display Name <local@domain>`. A shape
/// check: the mailer parses it again, and the receiving server decides.
fn check_email(raw: &str) -> Result<(), String> {
    if raw.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    let address = match (raw.rfind('<'), raw.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        (None, None) => raw,
        _ => return Err(format!("`{raw}` is not an e-mail address")),
    };
    let valid = match address.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && local.len() <= 64
                && !domain.is_empty()
                && domain.len() <= 253
                && !address.contains(char::is_whitespace)
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && domain
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '.' || c == '-')
        }
        None => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!("`{address}` is not an e-mail address"))
    }
}

/// An absolute `http(s)` URL with a host. Whether the host may be reached is
/// the worker's SSRF guard's decision, after DNS resolution.
fn check_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme `{}` is not http or https", url.scheme()));
    }
    if url.host().is_none() {
        return Err("the URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are not allowed".into());
    }
    Ok(())
}

/// E.164: `+`, a country code that does not start with 0, at most 15 digits.
fn check_phone(raw: &str) -> Result<(), String> {
    let digits = raw.strip_prefix('+').unwrap_or("");
    if (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
    {
        Ok(())
    } else {
        Err(format!(
            "`{raw}` is not an E.164 phone number like +14155550100"
        ))
    }
}

fn parse_subscription(field: &str, value: &Value) -> Result<PushSubscription, PayloadError> {
    // Accept `JSON.stringify(subscription)` as well as the object itself.
    let parsed;
    let value = match value {
        Value::String(json) => {
            parsed = serde_json::from_str::<Value>(json).map_err(|_| {
                bad(
                    field,
                    "must be a PushSubscription: {endpoint, keys: {p256dh, auth}}",
                )
            })?;
            &parsed
        }
        other => other,
    };
    let Value::Object(object) = value else {
        return Err(bad(
            field,
            "must be a PushSubscription: {endpoint, keys: {p256dh, auth}}",
        ));
    };
    let string = |value: Option<&Value>, name: &str| -> Result<String, PayloadError> {
        match value {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            Some(_) => Err(bad(format!("{field}.{name}"), "must be a non-empty string")),
            None => Err(bad(format!("{field}.{name}"), "required")),
        }
    };
    let endpoint = string(object.get("endpoint"), "endpoint")?;
    if endpoint.len() > MAX_RECIPIENT_LEN {
        return Err(bad(
            format!("{field}.endpoint"),
            format!("longer than {MAX_RECIPIENT_LEN} bytes"),
        ));
    }
    check_url(&endpoint).map_err(|reason| bad(format!("{field}.endpoint"), reason))?;
    let keys = object.get("keys").and_then(Value::as_object);
    let keys = keys.ok_or_else(|| bad(format!("{field}.keys"), "required: {p256dh, auth}"))?;
    let p256dh = string(keys.get("p256dh"), "keys.p256dh")?;
    let auth = string(keys.get("auth"), "keys.auth")?;
    check_key(&p256dh, 65).map_err(|reason| bad(format!("{field}.keys.p256dh"), reason))?;
    check_key(&auth, 16).map_err(|reason| bad(format!("{field}.keys.auth"), reason))?;
    Ok(PushSubscription {
        endpoint,
        p256dh,
        auth,
    })
}

/// A base64url key of `len` bytes (padding tolerated, as browsers differ).
fn check_key(encoded: &str, len: usize) -> Result<(), String> {
    match URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('=')) {
        Ok(bytes) if bytes.len() == len => Ok(()),
        Ok(bytes) => Err(format!("must be {len} bytes, got {}", bytes.len())),
        Err(_) => Err("must be base64url".into()),
    }
}

/// Decodes a subscription key checked by [`NotificationJob::parse`].
pub fn decode_key(encoded: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('=')).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const P256DH: &str =
        "BLn9b-VR0ca83knDNZ32dCHGyjJp-1riX9ZTN40MqV8K_LpQmLqxC_DoHvqvFXO_nGdAB4W9dogZb_sM-uV4JbY";
    const AUTH: &str = "_ordMnz7uTCmrpBTeUV4Bw";

    fn field_of(payload: Value) -> String {
        NotificationJob::parse(&payload).unwrap_err().field
    }

    #[test]
    fn each_channel_parses_its_recipients() {
        let email = NotificationJob::parse(&json!({
            "type": "email", "recipients": ["ada@example.com", "Grace Hopper <grace@navy.mil>"],
            "subject": "Hi {{ name }}", "message": "Hello", "html": "<p>Hello</p>",
            "variables": {"name": "Ada"}
        }))
        .unwrap();
        assert_eq!(email.channel, Channel::Email);
        assert_eq!(email.recipients[1].key(), "Grace Hopper <grace@navy.mil>");
        assert_eq!(email.variables["name"], "Ada");

        let slack = NotificationJob::parse(&json!({
            "type": "slack", "recipient": "https://hooks.slack.com/services/T/B/x", "message": "deployed"
        }))
        .unwrap();
        assert_eq!(
            slack.recipients,
            vec![Recipient::Url(
                "https://hooks.slack.com/services/T/B/x".into()
            )]
        );

        let sms = NotificationJob::parse(
            &json!({"type": "sms", "recipient": "+14155550100", "message": "x"}),
        )
        .unwrap();
        assert_eq!(sms.recipients[0].key(), "+14155550100");

        let subscription = json!({"endpoint": "https://push.example/abc", "keys": {"p256dh": P256DH, "auth": AUTH}});
        let push = NotificationJob::parse(&json!({
            "type": "push", "recipients": [subscription, subscription.to_string()], "data": {"url": "/inbox"}
        }))
        .unwrap();
        assert_eq!(push.recipients[0], push.recipients[1]);
        assert_eq!(push.recipients[0].key(), "https://push.example/abc");
    }

    #[test]
    fn malformed_payloads_name_the_field() {
        assert_eq!(
            field_of(json!({"recipient": "a@b.c", "message": "x"})),
            "type"
        );
        assert_eq!(
            field_of(json!({"type": "fax", "recipient": "x", "message": "x"})),
            "type"
        );
        assert_eq!(
            field_of(json!({"type": "email", "subject": "s", "message": "x"})),
            "recipient"
        );
        assert_eq!(
            field_of(
                json!({"type": "email", "recipient": "not-an-address", "subject": "s", "message": "x"})
            ),
            "recipient"
        );
        assert_eq!(
            field_of(
                json!({"type": "email", "recipients": ["a@b.c", "a b@c.d"], "subject": "s", "message": "x"})
            ),
            "recipients[1]"
        );
        assert_eq!(
            field_of(json!({"type": "email", "recipient": "a@b.c", "message": "x"})),
            "subject"
        );
        assert_eq!(
            field_of(json!({"type": "slack", "recipient": "ftp://x.example/", "message": "x"})),
            "recipient"
        );
        assert_eq!(
            field_of(
                json!({"type": "webhook", "recipient": "https://u:p@x.example/", "message": "x"})
            ),
            "recipient"
        );
        assert_eq!(
            field_of(json!({"type": "discord", "recipient": "https://x.example/"})),
            "message"
        );
        assert_eq!(
            field_of(json!({"type": "sms", "recipient": "555-0100", "message": "x"})),
            "recipient"
        );
        assert_eq!(
            field_of(
                json!({"type": "sms", "recipient": "+14155550100", "message": "x", "html": "<p>"})
            ),
            "html"
        );
        assert_eq!(
            field_of(
                json!({"type": "slack", "recipient": "https://x.example/", "message": "x", "data": {}})
            ),
            "data"
        );
        assert_eq!(
            field_of(
                json!({"type": "push", "recipient": {"endpoint": "https://p.example/", "keys": {"p256dh": "AAAA", "auth": AUTH}}, "message": "x"})
            ),
            "recipient.keys.p256dh"
        );
        assert_eq!(
            field_of(
                json!({"type": "webhook", "recipient": "https://x.example/", "message": "x", "variables": []})
            ),
            "variables"
        );
        assert_eq!(
            field_of(
                json!({"type": "webhook", "recipient": "https://x.example/", "message": "x", "sender": "me"})
            ),
            "sender"
        );
        assert_eq!(
            field_of(
                json!({"type": "webhook", "recipient": "https://x.example/", "recipients": [], "message": "x"})
            ),
            "recipients"
        );
        let many: Vec<String> = (0..=MAX_RECIPIENTS)
            .map(|i| format!("https://x.example/{i}"))
            .collect();
        assert_eq!(
            field_of(json!({"type": "webhook", "recipients": many, "message": "x"})),
            "recipients"
        );
    }
}
