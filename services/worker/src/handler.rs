//! The interface job types implement.

use std::time::Duration;

use roundhouse_core::JobKind;
use roundhouse_db::Db;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How a failed attempt should be treated.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    /// Try again after the retry policy's backoff, if retries remain.
    #[error("{0}")]
    Retry(String),
    /// Try again after the given delay (e.g. an upstream's Retry-After).
    #[error("{0}")]
    RetryAfter(String, Duration),
    /// Retrying cannot help (bad input, upstream 4xx): fail the job now.
    #[error("{0}")]
    Permanent(String),
}

/// What a handler gets for one attempt.
pub struct JobContext {
    pub job_id: Uuid,
    /// This attempt's number (1-based, counts every attempt ever started).
    pub attempt: i32,
    /// The job's type: built in, or a custom one this worker registered.
    pub job_type: JobKind,
    pub user_id: Option<String>,
    pub payload: serde_json::Value,
    /// Cancelled when the job is cancelled, its lease is lost, it times out,
    /// or the worker must stop. Long handlers check it and return early.
    pub cancel: CancellationToken,
    /// The LLM providers configured for this worker.
    pub llm: roundhouse_llm::Providers,
    /// The job's queue (the routing key of its event notes).
    pub(crate) queue: String,
    pub(crate) db: Db,
    pub(crate) shared: std::sync::Arc<crate::startup::Shared>,
}

impl JobContext {
    /// The worker's settings.
    pub fn settings(&self) -> &roundhouse_config::Settings {
        &self.shared.settings
    }

    /// The HTTP client for URLs that come from job payloads: it refuses
    /// internal addresses unless `ROUNDHOUSE_OUTBOUND_ALLOWLIST` admits them.
    pub fn outbound(&self) -> &Outbound {
        &self.shared.outbound
    }

    /// Records progress (0–100) with an optional message. Writes from a
    /// superseded attempt are ignored by the database.
    pub async fn progress(&self, percent: u8, message: Option<&str>) {
        match self
            .db
            .record_progress(
                self.job_id,
                self.attempt,
                i16::from(percent.min(100)),
                message,
            )
            .await
        {
            Ok(true) => self.announce().await,
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, job_id = %self.job_id, "could not record progress");
            }
        }
    }

    /// Appends streamed output (e.g. LLM tokens) to the job's timeline as
    /// `chunk` events, which the job's event stream shows live.
    pub async fn chunks(&self, chunks: &[String]) {
        match self
            .db
            .append_chunks(self.job_id, self.attempt, chunks)
            .await
        {
            Ok(true) => self.announce().await,
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, job_id = %self.job_id, "could not record output chunks");
            }
        }
    }

    /// Appends a line to the job's timeline.
    pub async fn log(&self, message: &str) {
        match self.db.append_log(self.job_id, self.attempt, message).await {
            Ok(true) => self.announce().await,
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, job_id = %self.job_id, "could not record a log line")
            }
        }
    }

    async fn announce(&self) {
        self.shared.announce_events(self.job_id, &self.queue).await;
    }
}

/// A job type's implementation.
#[async_trait::async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Runs one attempt and returns the job's result.
    async fn run(&self, ctx: JobContext) -> Result<serde_json::Value, HandlerError>;
}

/// A registered handler: built in (the registry's statics) or added by the
/// process embedding the worker (the agent executor's `agent_run`).
#[derive(Clone)]
pub enum Handler {
    Builtin(&'static dyn JobHandler),
    Extra(std::sync::Arc<dyn JobHandler>),
}

impl Handler {
    /// The handler itself.
    pub fn get(&self) -> &dyn JobHandler {
        match self {
            Handler::Builtin(handler) => *handler,
            Handler::Extra(handler) => handler.as_ref(),
        }
    }
}

/// Handlers beyond the built-in registry: custom job types (a binary that
/// embeds the worker, `HTTP_HANDLERS`) or a built-in type the embedding
/// process runs itself (the agent executor's `agent_run`).
pub type ExtraHandlers = std::collections::HashMap<JobKind, Handler>;

/// Outbound HTTP to user-supplied URLs: the SSRF policy and a client that
/// enforces it at connect time and on redirects.
#[derive(Clone)]
pub struct Outbound {
    pub policy: roundhouse_outbound::OutboundPolicy,
    pub client: reqwest::Client,
}

impl Outbound {
    pub(crate) fn from_settings(settings: &roundhouse_config::Settings) -> anyhow::Result<Self> {
        let policy = settings.outbound_policy()?;
        let client = policy.client(
            reqwest::Client::builder()
                .user_agent(concat!("roundhouse/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(std::time::Duration::from_secs(10))
                .timeout(std::time::Duration::from_secs(60)),
        )?;
        Ok(Self { policy, client })
    }
}
