//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): the
//! receiver gets `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`,
//! keyed with the base64-decoded part of a `whsec_…` secret.
//!
//! Written here rather than taken from the `standardwebhooks` crate: that
//! crate pins its own HTTP and time types, and signing is twenty lines of
//! HMAC that the test suite checks against the specification's published
//! example.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signing secret or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signing secret must be `whsec_` followed by base64")]
    BadSecret,
    #[error("missing or malformed webhook headers")]
    MissingHeaders,
    #[error("the timestamp is outside the tolerance")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// Signs (and, for receivers and tests, verifies) webhook requests.
#[derive(Clone)]
pub struct WebhookSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSigner(..)")
    }
}

impl WebhookSigner {
    /// A signer for a `whsec_<base64>` secret (the prefix is optional, as
    /// the specification's libraries accept).
    pub fn from_secret(secret: &str) -> Result<Self, SignatureError> {
        let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SignatureError::BadSecret)?;
        if key.is_empty() {
            return Err(SignatureError::BadSecret);
        }
        Ok(Self { key })
    }

    /// The `webhook-signature` value: `v1,<base64>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(id, timestamp, body)))
    }

    /// The three headers to send with `body`.
    pub fn headers(&self, id: &str, timestamp: i64, body: &[u8]) -> [(&'static str, String); 3] {
        [
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", self.sign(id, timestamp, body)),
        ]
    }

    /// Verifies a received request as a receiver would: one of the
    /// space-separated `v1,` signatures matches (in constant time) and the
    /// timestamp is within `tolerance_seconds` of `now`.
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        signatures: &str,
        body: &[u8],
        now: i64,
        tolerance_seconds: i64,
    ) -> Result<(), SignatureError> {
        let timestamp: i64 = timestamp
            .parse()
            .map_err(|_| SignatureError::MissingHeaders)?;
        if (now - timestamp).abs() > tolerance_seconds {
            return Err(SignatureError::Stale);
        }
        let expected = self.mac(id, timestamp, body);
        let matches = signatures
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| STANDARD.decode(s).ok())
            .any(|given| subtle::ConstantTimeEq::ct_eq(given.as_slice(), &expected[..]).into());
        if matches {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example from the Standard Webhooks specification and its
    // reference libraries' tests.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signatures_match_the_specification_example() {
        let signer = WebhookSigner::from_secret(SECRET).unwrap();
        assert_eq!(signer.sign(ID, TIMESTAMP, BODY), SIGNATURE);
    }

    #[test]
    fn verification_accepts_the_signature_and_refuses_tampering() {
        let signer = WebhookSigner::from_secret(SECRET).unwrap();
        let verify = |sig: &str, body: &[u8], now: i64| {
            signer.verify(ID, &TIMESTAMP.to_string(), sig, body, now, 300)
        };
        assert_eq!(verify(SIGNATURE, BODY, TIMESTAMP), Ok(()));
        assert_eq!(
            verify(&format!("v1,bm9wZQ== {SIGNATURE}"), BODY, TIMESTAMP),
            Ok(())
        );
        assert_eq!(
            verify(SIGNATURE, b"{}", TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SIGNATURE, BODY, TIMESTAMP + 301),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn secrets_must_be_base64() {
        assert_eq!(
            WebhookSigner::from_secret("whsec_not base64!").unwrap_err(),
            SignatureError::BadSecret
        );
        assert!(WebhookSigner::from_secret("whsec_").is_err());
    }
}
