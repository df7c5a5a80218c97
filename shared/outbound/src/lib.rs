//! Outbound HTTP to URLs that users supply (notification webhooks, data-sync
//! sources), guarded against server-side request forgery.
//!
//! A job payload can name any URL, and the worker runs inside the
//! operator's network, next to PostgreSQL, RabbitMQ and the cloud metadata
//! service. [`OutboundPolicy`] refuses every address that is not public
//! unicast — loopback, private (RFC 1918), carrier-grade NAT, link-local
//! (including `169.254.169.254`), unique-local, multicast, documentation and
//! reserved ranges, and IPv4 hidden inside IPv6 — unless the operator
//! allowlists the host or network (`ROUNDHOUSE_OUTBOUND_ALLOWLIST`).
//!
//! The check happens where it cannot be raced: [`OutboundPolicy::client`]
//! builds a `reqwest` client whose DNS resolver refuses forbidden answers, so
//! the address that was checked is the address connected to (no DNS
//! rebinding between check and connect). IP literals, which skip the
//! resolver, are checked by [`OutboundPolicy::check_url`] and on every
//! redirect. Proxies are disabled: a proxy would resolve the name instead.
//!
//! [`WebhookSigner`] signs outbound POSTs per the Standard Webhooks
//! specification, so receivers can verify them with any of its libraries.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use roundhouse_outbound::{OutboundError, OutboundPolicy};
//!
//! let policy = OutboundPolicy::default();
//! let url = "http://169.254.169.254/latest/meta-data/".parse().unwrap();
//! assert!(matches!(policy.check_url(&url).await, Err(OutboundError::Forbidden { .. })));
//! # }
//! ```

mod client;
mod error;
mod policy;
mod webhooks;

pub use client::{GuardedResolver, forbidden_in};
pub use error::OutboundError;
pub use policy::{OutboundPolicy, is_public};
pub use url::Url;
pub use webhooks::{SignatureError, WebhookSigner};
