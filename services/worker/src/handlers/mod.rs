//! The handler registry: the one place job types plug in.

mod data_sync;
mod diagnostic;
mod http;
mod llm;
mod maintenance;
mod notifications;
pub(crate) mod rag;

use std::time::Duration;

use roundhouse_config::Settings;
use roundhouse_core::{CustomJobType, JobKind, JobType};
use roundhouse_outbound::WebhookSigner;

use crate::handler::JobHandler;

/// The handlers `HTTP_HANDLERS` configures, one per custom job type.
pub(crate) fn http_handlers(
    settings: &Settings,
) -> anyhow::Result<Vec<(JobKind, http::HttpHandler)>> {
    let configured = settings.http_handlers()?;
    if configured.is_empty() {
        return Ok(Vec::new());
    }
    let secret = settings.http_handler_secret.as_deref().unwrap_or_default();
    let signer = WebhookSigner::from_secret(secret)
        .map_err(|e| anyhow::anyhow!("invalid setting HTTP_HANDLER_SECRET: {e}"))?;
    let timeout = Duration::from_secs(settings.http_handler_timeout_seconds);
    configured
        .into_iter()
        .map(|(name, url)| {
            let kind = CustomJobType::parse(&name).map_err(|_| {
                anyhow::anyhow!(
                    "invalid setting HTTP_HANDLERS: `{name}` is a built-in job type or not a valid name \
                     (lowercase letters, digits, `_ . - :`)"
                )
            })?;
            let handler =
                http::HttpHandler::new(url, signer.clone(), timeout, settings.roundhouse_url.clone())?;
            Ok((JobKind::Custom(kind), handler))
        })
        .collect()
}

/// The handler for `job_type`, or `None` when this build has none (the API
/// refuses such jobs; one that slipped in fails permanently).
pub(crate) fn handler_for(job_type: JobType) -> Option<&'static dyn JobHandler> {
    match job_type {
        JobType::Noop => Some(&diagnostic::Noop),
        JobType::Sleep => Some(&diagnostic::Sleep),
        JobType::Fail => Some(&diagnostic::Fail),
        JobType::Maintenance => Some(&maintenance::Maintenance),
        JobType::LlmProcessing => Some(&llm::LlmProcessing),
        JobType::RagIngestion => Some(&rag::RagIngestion),
        JobType::Notifications => Some(&notifications::Notifications),
        JobType::DataSync => Some(&data_sync::DataSync),
        JobType::AgentRun => None,
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
