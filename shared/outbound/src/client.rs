//! The guarded `reqwest` client: checks at connect time and on redirects.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;

use crate::{OutboundError, OutboundPolicy};

/// How many redirects a guarded client follows (each one re-checked).
const MAX_REDIRECTS: usize = 5;

/// A DNS resolver that answers only with addresses the policy allows. A
/// name with any forbidden address is refused whole, so a host cannot mix a
/// public address with an internal one and hope for the second.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<OutboundPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| OutboundError::Unresolvable {
                    host: host.clone(),
                    reason: e.to_string(),
                })?
                .collect();
            if !policy.allows_host(&host) {
                for addr in &addrs {
                    policy.check_addr(&host, addr.ip())?;
                }
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

impl OutboundPolicy {
    /// A client from `builder` that can only reach what this policy allows:
    /// the guarded resolver, re-checked redirects (at most 5), no proxy.
    pub fn client(&self, builder: reqwest::ClientBuilder) -> reqwest::Result<reqwest::Client> {
        let policy = Arc::new(self.clone());
        let resolver = GuardedResolver {
            policy: policy.clone(),
        };
        let redirects = redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error("too many redirects");
            }
            match policy.check_scheme_and_literal(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(refused) => attempt.error(refused),
            }
        });
        builder
            .dns_resolver(resolver)
            .redirect(redirects)
            .no_proxy()
            .build()
    }
}

/// The guard's refusal inside a failed request's error chain, if that is why
/// it failed (as opposed to a network error or a timeout).
pub fn forbidden_in(error: &reqwest::Error) -> Option<&OutboundError> {
    let mut source: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<OutboundError>() {
            return Some(refused);
        }
        source = cause.source();
    }
    None
}
