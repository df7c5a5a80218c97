//! Executing a run: in its own task, so that the request that started it
//! can go away (a client disconnecting mid-stream) without stopping it.
//!
//! The task streams the provider's reply, publishes each delta on the hub
//! at once (followers see it immediately) and stores the deltas in
//! PostgreSQL in small batches (re-attaching clients read them there). When
//! the provider is done, the last batch is stored *before* the run is
//! settled, so a settled run always has all its chunks in the database.
//! Settling charges the tokens used and refunds the rest of the
//! reservation; a failure refunds everything.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use roundhouse_db::Db;
use roundhouse_llm::{ChatRequest, Completion, Provider, StreamEvent, Usage};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::hub::{RunEvent, RunPublisher};
use crate::pricing::Pricing;

/// Chunks are stored at least this often while a reply streams…
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// …and as soon as this many are waiting.
const FLUSH_CHUNKS: usize = 32;
/// Attempts at settling a run before giving up (and logging).
const SETTLE_ATTEMPTS: u32 = 3;

/// Tokens a run used, as the API shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl From<Usage> for RunUsage {
    fn from(usage: Usage) -> Self {
        Self {
            prompt_tokens: usage.prompt_tokens.into(),
            completion_tokens: usage.completion_tokens.into(),
            total_tokens: usage.total().into(),
        }
    }
}

/// A run whose credits are reserved, ready to execute.
pub struct Run {
    pub id: Uuid,
    pub provider: Arc<dyn Provider>,
    /// The agent's system prompt and the conversation.
    pub request: ChatRequest,
}

/// How a run ended.
#[derive(Debug)]
pub enum RunOutcome {
    Completed {
        output: String,
        usage: RunUsage,
        credits_used: i64,
    },
    Failed(RunFailure),
}

/// Why a run failed. Every failure refunds the run's reservation.
#[derive(Debug, Clone)]
pub enum RunFailure {
    /// The provider refused, broke or timed out; the message is the
    /// provider layer's, which never contains a key.
    Provider(String),
    /// The executor stopped before the run finished.
    Interrupted,
    /// Our fault; the detail was logged.
    Internal,
}

impl RunFailure {
    /// What clients are told.
    pub fn message(&self) -> String {
        match self {
            RunFailure::Provider(message) => message.clone(),
            RunFailure::Interrupted => {
                "the agent executor stopped before the run finished; its credits were refunded"
                    .to_owned()
            }
            RunFailure::Internal => "internal error while running the agent".to_owned(),
        }
    }

    /// Its error code, as the HTTP API answers a sync run that failed so.
    pub fn code(&self) -> &'static str {
        match self {
            RunFailure::Provider(_) => "provider_error",
            RunFailure::Interrupted => "unavailable",
            RunFailure::Internal => "internal_error",
        }
    }

    /// The code of a failure known only by the message stored with its run
    /// (a run followed after it ended): the fixed messages are ours, any
    /// other is the provider's.
    pub fn stored_code(message: &str) -> &'static str {
        [RunFailure::Interrupted, RunFailure::Internal]
            .into_iter()
            .find(|failure| failure.message() == message)
            .map_or("provider_error", |failure| failure.code())
    }
}

/// Starts and tracks run tasks.
#[derive(Clone)]
pub struct Runner {
    db: Db,
    pricing: Arc<Pricing>,
    tasks: TaskTracker,
    /// Cancelled when the executor gives up waiting for runs at shutdown.
    interrupt: CancellationToken,
}

impl Runner {
    pub fn new(db: Db, pricing: Arc<Pricing>) -> Self {
        Self {
            db,
            pricing,
            tasks: TaskTracker::new(),
            interrupt: CancellationToken::new(),
        }
    }

    /// Executes `run` in its own task, publishing on `publisher`.
    pub fn spawn(&self, run: Run, publisher: RunPublisher) -> JoinHandle<RunOutcome> {
        let runner = self.clone();
        self.tasks.spawn(async move {
            let started = Instant::now();
            let run_id = run.id;
            let model = run.request.model.clone();
            let provider = run.provider.name().to_owned();
            // A panic fails this run (and refunds it) and nothing else.
            let result = AssertUnwindSafe(runner.execute(&run, &publisher))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    tracing::error!(%run_id, "agent run panicked");
                    Err((RunFailure::Internal, String::new()))
                });
            let outcome = runner.settle(run_id, &provider, &model, result).await;
            let label = match &outcome {
                RunOutcome::Completed {
                    usage,
                    credits_used,
                    ..
                } => {
                    publisher.finish(RunEvent::Completed {
                        usage: *usage,
                        credits_used: *credits_used,
                    });
                    tracing::info!(
                        %run_id,
                        duration_ms = started.elapsed().as_millis() as u64,
                        tokens = usage.total_tokens,
                        credits_used,
                        "agent run completed"
                    );
                    "completed"
                }
                RunOutcome::Failed(failure) => {
                    publisher.finish(RunEvent::Failed {
                        code: failure.code(),
                        message: failure.message(),
                    });
                    tracing::warn!(
                        %run_id,
                        duration_ms = started.elapsed().as_millis() as u64,
                        error = %failure.message(),
                        "agent run failed"
                    );
                    "failed"
                }
            };
            metrics::counter!("roundhouse_agent_runs_total", "outcome" => label).increment(1);
            metrics::histogram!("roundhouse_agent_run_duration_seconds", "outcome" => label)
                .record(started.elapsed().as_secs_f64());
            outcome
        })
    }

    /// Waits up to `grace` for the runs in progress, then interrupts the rest
    /// (they fail and are refunded) and waits for them to settle.
    pub async fn drain(&self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                runs = self.tasks.len(),
                "interrupting agent runs still going at shutdown"
            );
            self.interrupt.cancel();
            self.tasks.wait().await;
        }
    }

    /// Streams the reply, then stores the last chunks. A failure carries
    /// the output that arrived before it.
    async fn execute(
        &self,
        run: &Run,
        publisher: &RunPublisher,
    ) -> Result<Completion, (RunFailure, String)> {
        let mut chunks = ChunkWriter::new(&self.db, run.id, publisher);
        let result = tokio::select! {
            result = stream_reply(run, &mut chunks) => result,
            () = self.interrupt.cancelled() => Err(RunFailure::Interrupted),
        };
        chunks.flush().await;
        result.map_err(|failure| (failure, chunks.output))
    }

    /// Records how the run ended: completed (charging the tokens used,
    /// refunding the rest) or failed (refunding everything).
    async fn settle(
        &self,
        run_id: Uuid,
        provider: &str,
        model: &str,
        result: Result<Completion, (RunFailure, String)>,
    ) -> RunOutcome {
        let completion = match result {
            Ok(completion) => completion,
            Err((failure, output)) => {
                self.fail(run_id, &failure, &output).await;
                return RunOutcome::Failed(failure);
            }
        };
        let usage = RunUsage::from(completion.usage);
        let credits_used = self.pricing.charge(model, usage.total_tokens);
        let usage_json = serde_json::to_value(usage).expect("usage serializes");
        for attempt in 1..=SETTLE_ATTEMPTS {
            match self
                .db
                .complete_run(run_id, &completion.output, &usage_json, credits_used)
                .await
            {
                Ok(Some(row)) => {
                    let credits_used = row.credits_used.unwrap_or(credits_used);
                    // By provider only: agents and users are unbounded, and
                    // the agent's model is whatever its author typed.
                    metrics::counter!("roundhouse_credits_used_total", "provider" => provider.to_owned())
                        .increment(u64::try_from(credits_used).unwrap_or(0));
                    return RunOutcome::Completed {
                        output: completion.output,
                        usage,
                        credits_used,
                    };
                }
                Ok(None) => {
                    tracing::error!(%run_id, "agent run was already settled");
                    return RunOutcome::Failed(RunFailure::Internal);
                }
                Err(error) => {
                    tracing::warn!(%run_id, %error, attempt, "cannot settle agent run");
                    tokio::time::sleep(Duration::from_millis(200) * attempt).await;
                }
            }
        }
        tracing::error!(%run_id, "giving up settling agent run; it stays running");
        RunOutcome::Failed(RunFailure::Internal)
    }

    async fn fail(&self, run_id: Uuid, failure: &RunFailure, output: &str) {
        for attempt in 1..=SETTLE_ATTEMPTS {
            match self.db.fail_run(run_id, &failure.message(), output).await {
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(%run_id, %error, attempt, "cannot record agent run failure");
                    tokio::time::sleep(Duration::from_millis(200) * attempt).await;
                }
            }
        }
        tracing::error!(%run_id, "giving up recording agent run failure; it stays running");
    }
}

/// Reads the provider's stream into `chunks` until its completion.
async fn stream_reply(run: &Run, chunks: &mut ChunkWriter<'_>) -> Result<Completion, RunFailure> {
    let mut events = run
        .provider
        .stream(&run.request)
        .await
        .map_err(|e| RunFailure::Provider(e.to_string()))?;
    let mut flush_at: Option<tokio::time::Instant> = None;
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            () = tokio::time::sleep_until(flush_at.unwrap_or_else(tokio::time::Instant::now)),
                if flush_at.is_some() =>
            {
                chunks.flush().await;
                flush_at = None;
                continue;
            }
        };
        match event {
            Some(Ok(StreamEvent::Delta(text))) => {
                chunks.push(text);
                if chunks.waiting() >= FLUSH_CHUNKS {
                    chunks.flush().await;
                    flush_at = None;
                } else if flush_at.is_none() {
                    flush_at = Some(tokio::time::Instant::now() + FLUSH_EVERY);
                }
            }
            Some(Ok(StreamEvent::Done(completion))) => return Ok(completion),
            Some(Err(error)) => return Err(RunFailure::Provider(error.to_string())),
            None => {
                return Err(RunFailure::Provider(
                    "the provider's stream ended without a completion".to_owned(),
                ));
            }
        }
    }
}

/// Numbers a run's deltas, publishes them, and stores them in batches.
struct ChunkWriter<'a> {
    db: &'a Db,
    run_id: Uuid,
    publisher: &'a RunPublisher,
    /// Published, not yet stored; the first is number `first_seq`.
    batch: Vec<String>,
    first_seq: i32,
    output: String,
}

impl<'a> ChunkWriter<'a> {
    fn new(db: &'a Db, run_id: Uuid, publisher: &'a RunPublisher) -> Self {
        Self {
            db,
            run_id,
            publisher,
            batch: Vec::new(),
            first_seq: 1,
            output: String::new(),
        }
    }

    fn waiting(&self) -> usize {
        self.batch.len()
    }

    fn push(&mut self, text: String) {
        let seq = self.first_seq + self.batch.len() as i32;
        self.publisher.chunk(seq, Arc::from(text.as_str()));
        self.output.push_str(&text);
        self.batch.push(text);
    }

    /// Stores the waiting chunks. On failure they stay waiting (and in the
    /// hub, so followers here still get them) for the next flush; a run
    /// that ends without storing them still has its whole output.
    async fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        match self
            .db
            .append_run_chunks(self.run_id, self.first_seq, &self.batch)
            .await
        {
            Ok(()) => {
                let last = self.first_seq + self.batch.len() as i32 - 1;
                self.publisher.stored(last);
                self.first_seq = last + 1;
                self.batch.clear();
            }
            Err(error) => {
                tracing::warn!(run_id = %self.run_id, %error, "cannot store agent run chunks yet");
            }
        }
    }
}
