use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::UnknownVariant;

/// Where a job is in its life.
///
/// ```text
///  scheduled ──(runAt due)──▶ queued ──(claimed)──▶ processing ──▶ completed
///      ▲                        ▲                       │  │
///      └──(retryable failure)───┼───────────────────────┘  └──▶ failed (retries exhausted / permanent)
///                               └──(lease expired: worker lost)
///  queued | scheduled | processing ──(cancel)──▶ cancelled
///  failed | cancelled ──(manual retry)──▶ queued
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Due and waiting for a worker.
    Queued,
    /// Waiting for `runAt` (a delayed job or a retry backoff).
    Scheduled,
    /// Claimed by a worker that holds a lease on it.
    Processing,
    /// Finished with a result.
    Completed,
    /// Retries exhausted or a permanent error: the dead-letter set.
    Failed,
    /// Cancelled by its owner or an operator.
    Cancelled,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Scheduled,
        JobStatus::Queued,
        JobStatus::Processing,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// The name used in JSON and in the `jobs.status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Scheduled => "scheduled",
            JobStatus::Processing => "processing",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// A terminal job never changes again, except by a manual retry.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// Whether a manual retry may move this job back to `queued`.
    pub fn is_retryable_by_hand(self) -> bool {
        matches!(self, JobStatus::Failed | JobStatus::Cancelled)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownVariant {
                kind: "status",
                value: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_name() {
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>(), Ok(status));
        }
        assert!("running".parse::<JobStatus>().is_err());
    }

    #[test]
    fn only_completed_failed_and_cancelled_are_terminal() {
        let terminal: Vec<_> = JobStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [
                JobStatus::Completed,
                JobStatus::Failed,
                JobStatus::Cancelled
            ]
        );
    }
}
