//! `push`: Web Push (RFC 8030) to a browser's `PushSubscription`, the body
//! encrypted for the subscription's keys (RFC 8291, `aes128gcm`) and the
//! request signed with the operator's VAPID key (RFC 8292).
//!
//! The body is the JSON `{title?, body?, data?}` (subject, message, data)
//! that the app's service worker reads with `event.data.json()`. A push
//! service's 404 or 410 means the subscription is gone: permanent, and the
//! app should forget it.
//!
//! `web-push-native` (RustCrypto) rather than the `web-push` crate, which
//! needs OpenSSL. Its encryption is used as is; the VAPID header is made
//! here, because the crate's leaves a non-default port out of the token's
//! audience (RFC 8292 §2: the push resource's origin, port included).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use roundhouse_config::Settings;
use roundhouse_core::notification::{PushSubscription, decode_key};
use roundhouse_outbound::Url;
use serde_json::json;
use web_push_native::jwt_simple::algorithms::{
    ECDSAP256KeyPairLike, ECDSAP256PublicKeyLike, ES256KeyPair,
};
use web_push_native::jwt_simple::claims::Claims;
use web_push_native::p256::PublicKey;
use web_push_native::{Auth, WebPushBuilder};

use super::{Delivery, describe, refused, required, unsent};
use crate::handler::HandlerError;

/// How long the push service keeps a message for an offline browser (the
/// `TTL` header; also the VAPID token's lifetime, which RFC 8292 caps at a
/// day).
const TTL: Duration = Duration::from_secs(12 * 3600);
/// The most plaintext one `aes128gcm` record of 4096 bytes holds (RFC 8291:
/// 4096 minus the 86-byte header, the padding delimiter and the tag).
const MAX_PAYLOAD: usize = 3993;

pub(super) struct Pusher {
    client: reqwest::Client,
    key: ES256KeyPair,
    /// The VAPID public key as the `k` parameter sends it.
    public_key: String,
    subject: String,
}

impl Pusher {
    pub(super) fn from_settings(
        client: reqwest::Client,
        settings: &Settings,
    ) -> Result<Self, HandlerError> {
        let private = required(&settings.vapid_private_key, "VAPID_PRIVATE_KEY", "push")?;
        let subject = required(&settings.vapid_subject, "VAPID_SUBJECT", "push")?;
        let key = roundhouse_config::decode_vapid_private_key(private)
            .map_err(|e| e.to_string())
            .and_then(|raw| ES256KeyPair::from_bytes(&raw).map_err(|e| e.to_string()))
            .map_err(|e| {
                HandlerError::Permanent(format!("notifications: VAPID_PRIVATE_KEY {e}"))
            })?;
        let public_key =
            URL_SAFE_NO_PAD.encode(key.public_key().public_key().to_bytes_uncompressed());
        Ok(Self {
            client,
            key,
            public_key,
            subject: subject.to_owned(),
        })
    }

    pub(super) async fn send(
        &self,
        subscription: &PushSubscription,
        delivery: &Delivery<'_>,
    ) -> Result<Option<String>, HandlerError> {
        let what = describe(delivery.recipient);
        let permanent = |reason: String| HandlerError::Permanent(format!("{what}: {reason}"));
        let content = delivery.content;
        let mut body = json!({});
        if let Some(title) = &content.subject {
            body["title"] = json!(title);
        }
        if let Some(message) = &content.message {
            body["body"] = json!(message);
        }
        if let Some(data) = delivery.data {
            body["data"] = data.clone();
        }
        let body = serde_json::to_vec(&body).expect("JSON values serialise");
        if body.len() > MAX_PAYLOAD {
            return Err(permanent(format!(
                "the push message is {} bytes; push services take at most {MAX_PAYLOAD}",
                body.len()
            )));
        }

        let public = decode_key(&subscription.p256dh)
            .and_then(|bytes| PublicKey::from_sec1_bytes(&bytes).ok())
            .ok_or_else(|| permanent("keys.p256dh is not a P-256 public key".into()))?;
        let auth = decode_key(&subscription.auth)
            .filter(|bytes| bytes.len() == 16)
            .map(Auth::from_iter)
            .ok_or_else(|| permanent("keys.auth is not 16 bytes".into()))?;
        // Through `Url` first, as the SSRF guard saw it (IDNA hosts in
        // punycode), then as the `http::Uri` the builder takes.
        let endpoint = Url::parse(&subscription.endpoint)
            .map_err(|e| e.to_string())
            .and_then(|url| url.as_str().parse().map_err(|e| format!("{e}")))
            .map_err(|e| permanent(format!("the endpoint is not a URI ({e})")))?;
        let request = WebPushBuilder::new(endpoint, public, auth)
            .with_valid_duration(TTL)
            .build(body)
            .map_err(|e| permanent(format!("could not encrypt the message: {e}")))?;
        let mut request = reqwest::Request::try_from(request)
            .map_err(|e| permanent(format!("the endpoint is not usable: {e}")))?;
        let authorization = self
            .vapid(&subscription.endpoint)
            .map_err(|e| permanent(format!("could not sign the VAPID token: {e}")))?;
        request.headers_mut().insert(
            reqwest::header::AUTHORIZATION,
            authorization
                .parse()
                .map_err(|_| permanent("the VAPID header is not a header value".into()))?,
        );
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|e| unsent(&what, e))?;
        let status = response.status();
        if status.is_success() {
            // RFC 8030 §5: the push message's resource.
            return Ok(response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned));
        }
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
            return Err(permanent(format!(
                "the subscription has expired or was unsubscribed (HTTP {status}); forget it"
            )));
        }
        Err(refused(&what, response).await)
    }

    /// `Authorization: vapid t=<ES256 JWT for the endpoint's origin>, k=<public key>`.
    fn vapid(&self, endpoint: &str) -> Result<String, String> {
        let origin = Url::parse(endpoint)
            .map_err(|e| e.to_string())?
            .origin()
            .ascii_serialization();
        let claims = Claims::create(TTL.into())
            .with_audience(origin)
            .with_subject(&self.subject);
        let token = self.key.sign(claims).map_err(|e| e.to_string())?;
        Ok(format!("vapid t={token}, k={}", self.public_key))
    }
}
