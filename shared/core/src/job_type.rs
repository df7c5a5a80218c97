use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{QueueName, UnknownVariant};

/// The kinds of work Roundhouse knows how to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    /// An LLM completion through the provider layer.
    LlmProcessing,
    /// A batched, resumable data synchronisation.
    DataSync,
    /// E-mail, webhook, chat, SMS or push delivery.
    Notifications,
    /// Housekeeping: retention, stuck-job requeue, vacuum.
    Maintenance,
    /// Chunking and embedding of documents.
    RagIngestion,
    /// A heavy agent run, executed by the agent-executor.
    AgentRun,
    /// Does nothing and succeeds: smoke tests and benchmarks.
    Noop,
    /// Sleeps `{ms}` milliseconds, honouring cancellation.
    Sleep,
    /// Fails `{times}` times (or always), retryably or `{permanent: true}`.
    Fail,
}

impl JobType {
    /// Every job type.
    pub const ALL: [JobType; 9] = [
        JobType::LlmProcessing,
        JobType::DataSync,
        JobType::Notifications,
        JobType::Maintenance,
        JobType::RagIngestion,
        JobType::AgentRun,
        JobType::Noop,
        JobType::Sleep,
        JobType::Fail,
    ];

    /// The name used in JSON (`jobType`) and in the `jobs.job_type` column.
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::LlmProcessing => "llm_processing",
            JobType::DataSync => "data_sync",
            JobType::Notifications => "notifications",
            JobType::Maintenance => "maintenance",
            JobType::RagIngestion => "rag_ingestion",
            JobType::AgentRun => "agent_run",
            JobType::Noop => "noop",
            JobType::Sleep => "sleep",
            JobType::Fail => "fail",
        }
    }

    /// The queue a job of this type goes to when the request names none.
    pub fn default_queue(self) -> QueueName {
        let name = match self {
            JobType::LlmProcessing => "llm_processing",
            JobType::DataSync => "data_sync",
            JobType::Notifications => "notifications",
            JobType::Maintenance => "maintenance",
            JobType::RagIngestion => "rag_ingestion",
            JobType::AgentRun => "agents",
            JobType::Noop | JobType::Sleep | JobType::Fail => "default",
        };
        QueueName::parse(name).expect("built-in queue names are valid")
    }

    /// Retries after the first attempt when the request names none.
    pub fn default_max_retries(self) -> i32 {
        match self {
            // Provider hiccups are common and cheap to retry.
            JobType::LlmProcessing | JobType::Notifications => 5,
            JobType::DataSync | JobType::RagIngestion => 3,
            // An agent run costs credits: never repeat one silently.
            JobType::AgentRun => 0,
            JobType::Maintenance => 1,
            JobType::Noop | JobType::Sleep | JobType::Fail => 3,
        }
    }

    /// Attempt timeout when the request names none.
    pub fn default_timeout_seconds(self) -> i32 {
        match self {
            JobType::AgentRun => 4 * 3600,
            JobType::RagIngestion | JobType::DataSync | JobType::Maintenance => 3600,
            JobType::LlmProcessing => 600,
            JobType::Notifications => 120,
            JobType::Noop | JobType::Sleep | JobType::Fail => 300,
        }
    }

    /// Whether this build has a handler for the type. Types whose handlers
    /// ship in later releases are refused at enqueue time rather than
    /// accepted and failed later.
    pub fn is_available(self) -> bool {
        matches!(
            self,
            JobType::Noop
                | JobType::Sleep
                | JobType::Fail
                | JobType::Maintenance
                | JobType::LlmProcessing
                | JobType::RagIngestion
                | JobType::Notifications
                | JobType::DataSync
        )
    }
}

impl fmt::Display for JobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobType {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownVariant {
                kind: "job type",
                value: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_type_round_trips_and_has_a_valid_default_queue() {
        for t in JobType::ALL {
            assert_eq!(t.as_str().parse::<JobType>(), Ok(t));
            assert!(!t.default_queue().as_str().is_empty());
            assert!(t.default_timeout_seconds() > 0);
        }
    }

    #[test]
    fn agent_runs_go_to_the_agents_queue() {
        assert_eq!(JobType::AgentRun.default_queue().as_str(), "agents");
    }
}
