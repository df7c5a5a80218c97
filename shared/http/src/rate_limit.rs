//! Per-user and per-address request limits (GCRA, via `governor`). Limits
//! are per replica and in memory: they protect a replica from a flood, they
//! are not a billing quota.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// Per-user and per-address request budgets.
pub struct RateLimits {
    per_user: DefaultKeyedRateLimiter<String>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl RateLimits {
    /// `per_user` and `per_ip` requests per minute, each allowed as a burst.
    pub fn new(per_user: u32, per_ip: u32) -> Self {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).expect("at least 1"));
        Self {
            per_user: RateLimiter::keyed(quota(per_user)),
            per_ip: RateLimiter::keyed(quota(per_ip)),
            clock: DefaultClock::default(),
        }
    }

    pub fn check_user(&self, user: &str) -> Result<(), ApiError> {
        self.per_user
            .check_key(&user.to_owned())
            .map_err(|not_until| ApiError::rate_limited(not_until.wait_time_from(self.clock.now())))
    }

    pub fn check_ip(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(ip) = ip else { return Ok(()) };
        self.per_ip
            .check_key(&ip)
            .map_err(|not_until| ApiError::rate_limited(not_until.wait_time_from(self.clock.now())))
    }

    /// Forgets idle keys so the maps stay small.
    pub fn prune(&self) {
        self.per_user.retain_recent();
        self.per_ip.retain_recent();
        self.per_user.shrink_to_fit();
        self.per_ip.shrink_to_fit();
    }
}

/// How often idle rate-limit keys are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

impl RateLimits {
    /// Prunes idle keys every minute, in a task of its own (abort it at shutdown).
    pub fn spawn_pruner(self: &std::sync::Arc<Self>) -> tokio::task::JoinHandle<()> {
        let limits = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(PRUNE_EVERY);
            loop {
                every.tick().await;
                limits.prune();
            }
        })
    }
}
