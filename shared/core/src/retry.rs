use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Exponential backoff with jitter between attempts of a failing job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Delay before the first retry (before jitter).
    pub base: Duration,
    /// Upper bound on the delay (before jitter).
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The delay before the retry that follows failed attempt number
    /// `attempt` (1-based): `base · 2^(attempt-1)`, capped at `max`, plus up to
    /// 100 % random jitter so that a burst of failures does not retry in
    /// lockstep.
    pub fn delay_after(&self, attempt: i32) -> Duration {
        let n = usize::try_from(attempt.max(1)).unwrap_or(1);
        ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(n - 1)
            .unwrap_or(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_jitter_bounds() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(10),
        };
        for attempt in 1..=5 {
            let floor = Duration::from_millis(100 * 2u64.pow(attempt as u32 - 1));
            let delay = policy.delay_after(attempt);
            assert!(delay >= floor && delay <= floor * 2, "{attempt}: {delay:?}");
        }
    }

    #[test]
    fn delays_are_capped() {
        let policy = RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(5),
        };
        assert!(policy.delay_after(30) <= Duration::from_secs(10));
    }
}
