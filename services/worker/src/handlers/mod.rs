//! The handler registry: the one place job types plug in.

mod diagnostic;
mod llm;
mod maintenance;

use roundhouse_core::JobType;

use crate::handler::JobHandler;

/// The handler for `job_type`, or `None` when this build has none (the API
/// refuses such jobs; one that slipped in fails permanently).
pub(crate) fn handler_for(job_type: JobType) -> Option<&'static dyn JobHandler> {
    match job_type {
        JobType::Noop => Some(&diagnostic::Noop),
        JobType::Sleep => Some(&diagnostic::Sleep),
        JobType::Fail => Some(&diagnostic::Fail),
        JobType::Maintenance => Some(&maintenance::Maintenance),
        JobType::LlmProcessing => Some(&llm::LlmProcessing),
        JobType::DataSync | JobType::Notifications | JobType::RagIngestion | JobType::AgentRun => {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_available_job_type_has_a_handler() {
        for job_type in JobType::ALL {
            assert_eq!(
                handler_for(job_type).is_some(),
                job_type.is_available(),
                "{job_type}"
            );
        }
    }
}
