//! Runs one claimed attempt and records its outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use roundhouse_core::{JobKind, RetryPolicy};
use roundhouse_db::{ClaimedJob, Completion, FailOutcome};
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use crate::handler::{Handler, HandlerError, JobContext};
use crate::handlers::handler_for;
use crate::running::StopReason;
use crate::startup::Shared;

/// How long a handler may take to notice its cancel token before it is aborted.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

enum Outcome {
    Succeeded(serde_json::Value),
    Failed(HandlerError),
    /// Stopped from outside; the stop reason says what to write.
    Stopped,
}

pub(crate) async fn execute(shared: Arc<Shared>, job: ClaimedJob, _permit: OwnedSemaphorePermit) {
    let started = Instant::now();
    // The claim wrote the attempt's `processing` event.
    shared.announce_events(job.id, &job.queue).await;
    if let Some(queued_at) = job.queued_at {
        let wait = (job.started_at - queued_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
        metrics::histogram!("roundhouse_job_wait_seconds", "queue" => job.queue.clone())
            .record(wait.max(0.0));
    }
    let token = shared.hard_stop.child_token();
    shared.running.insert(job.id, job.attempts, token.clone());
    // Each attempt is a span in the trace the job was enqueued in, so its
    // retries and its handler's outbound calls line up under the request.
    let span = tracing::info_span!(
        "job.run",
        otel.kind = "consumer",
        job_id = %job.id,
        queue = %job.queue,
        job_type = %job.job_type,
        attempt = job.attempts,
    );
    if let Some(parent) = &job.traceparent {
        roundhouse_telemetry::set_parent(&span, parent);
    }

    let outcome = match JobKind::parse(&job.job_type) {
        Ok(job_type) => match shared.extra_handlers.get(&job_type).cloned().or_else(|| {
            job_type
                .builtin()
                .and_then(handler_for)
                .map(Handler::Builtin)
        }) {
            Some(handler) => {
                let ctx = JobContext {
                    job_id: job.id,
                    attempt: job.attempts,
                    job_type,
                    user_id: job.user_id.clone(),
                    payload: job.payload.clone(),
                    cancel: token.clone(),
                    llm: shared.llm.clone(),
                    queue: job.queue.clone(),
                    db: shared.db.clone(),
                    shared: shared.clone(),
                };
                // Spawned so that a panic fails this attempt, not the worker.
                let mut task = tokio::spawn(
                    async move { handler.get().run(ctx).await }.instrument(span.clone()),
                );
                let timeout = Duration::from_secs(job.timeout_seconds.max(1) as u64);
                tokio::select! {
                    joined = &mut task => match joined {
                        Ok(Ok(result)) => Outcome::Succeeded(result),
                        Ok(Err(error)) if token.is_cancelled() => {
                            tracing::debug!(%error, "handler returned after stop");
                            Outcome::Stopped
                        }
                        Ok(Err(error)) => Outcome::Failed(error),
                        Err(join) => Outcome::Failed(HandlerError::Retry(if join.is_panic() {
                            "handler panicked".to_owned()
                        } else {
                            "handler task was aborted".to_owned()
                        })),
                    },
                    _ = tokio::time::sleep(timeout) => {
                        token.cancel();
                        stop_within_grace(task).await;
                        Outcome::Failed(HandlerError::Retry(format!(
                            "timed out after {}s", job.timeout_seconds
                        )))
                    }
                    _ = token.cancelled() => {
                        stop_within_grace(task).await;
                        Outcome::Stopped
                    }
                }
            }
            None => Outcome::Failed(HandlerError::Permanent(format!(
                "job type `{}` has no handler in this worker",
                job.job_type
            ))),
        },
        Err(error) => Outcome::Failed(HandlerError::Permanent(error.to_string())),
    };
    let stop_reason = shared.running.remove(job.id);
    let elapsed = started.elapsed();
    let labels = [
        ("queue", job.queue.clone()),
        ("job_type", job.job_type.clone()),
    ];

    match (outcome, stop_reason) {
        (Outcome::Succeeded(result), _) => {
            metrics::counter!("roundhouse_jobs_total", &labels_with(&labels, "completed"))
                .increment(1);
            metrics::histogram!("roundhouse_job_duration_seconds", &labels)
                .record(elapsed.as_secs_f64());
            tracing::info!(
                target: "roundhouse_worker::job",
                job_id = %job.id, queue = %job.queue, job_type = %job.job_type,
                attempt = job.attempts, duration_ms = elapsed.as_millis() as u64,
                "job completed"
            );
            // The channel only closes after every execute task has finished.
            let _ = shared
                .completions
                .send((
                    Completion {
                        job_id: job.id,
                        attempt: job.attempts,
                        result,
                    },
                    job.queue.clone(),
                ))
                .await;
        }
        (_, Some(StopReason::Superseded)) | (Outcome::Stopped, None) => {
            metrics::counter!("roundhouse_jobs_total", &labels_with(&labels, "stopped"))
                .increment(1);
            tracing::info!(
                target: "roundhouse_worker::job",
                job_id = %job.id, queue = %job.queue, attempt = job.attempts,
                duration_ms = elapsed.as_millis() as u64,
                "job stopped: cancelled or no longer owned by this worker"
            );
            let _ = shared
                .db
                .append_log(
                    job.id,
                    job.attempts,
                    "worker stopped the attempt after cancellation",
                )
                .await;
            shared.announce_events(job.id, &job.queue).await;
        }
        (_, Some(StopReason::Shutdown)) => {
            // Handed back to the queue by the shutdown path.
            tracing::info!(job_id = %job.id, "job interrupted by shutdown");
        }
        (Outcome::Failed(error), None) => {
            record_failure(&shared, &job, error, elapsed, &labels).await
        }
    }
}

fn labels_with(labels: &[(&'static str, String); 2], outcome: &str) -> Vec<(&'static str, String)> {
    let mut all = labels.to_vec();
    all.push(("outcome", outcome.to_owned()));
    all
}

async fn stop_within_grace(
    mut task: tokio::task::JoinHandle<Result<serde_json::Value, HandlerError>>,
) {
    if tokio::time::timeout(CANCEL_GRACE, &mut task).await.is_err() {
        task.abort();
    }
}

async fn record_failure(
    shared: &Shared,
    job: &ClaimedJob,
    error: HandlerError,
    elapsed: Duration,
    labels: &[(&'static str, String); 2],
) {
    let (retryable, delay) = match &error {
        HandlerError::Retry(_) => (
            true,
            shared
                .retry_policy()
                .delay_after(job.attempts - job.attempt_base),
        ),
        HandlerError::RetryAfter(_, delay) => (true, *delay),
        HandlerError::Permanent(_) => (false, Duration::ZERO),
    };
    let message = error.to_string();
    let mut wait = Duration::from_millis(50);
    let outcome = loop {
        match shared
            .db
            .fail_job(
                job.id,
                job.attempts,
                &message,
                retryable,
                delay.as_secs_f64(),
            )
            .await
        {
            Ok(outcome) => break outcome,
            Err(db_error) if !shared.hard_stop.is_cancelled() => {
                tracing::error!(error = %db_error, job_id = %job.id, "could not record a failure; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(db_error) => {
                tracing::error!(error = %db_error, job_id = %job.id, "could not record a failure before exit; the lease will expire and the job will be retried");
                return;
            }
        }
    };
    let label = match outcome {
        FailOutcome::RetryScheduled => "retry",
        FailOutcome::Failed => "failed",
        FailOutcome::Superseded => "superseded",
    };
    metrics::counter!("roundhouse_jobs_total", &labels_with(labels, label)).increment(1);
    if outcome != FailOutcome::Superseded {
        shared.announce_events(job.id, &job.queue).await;
    }
    if outcome == FailOutcome::RetryScheduled {
        // The same attempts as `roundhouse_jobs_total{outcome="retry"}`, under
        // the name operators look for; requeues of lost leases are the
        // scheduler's `roundhouse_leases_reaped_total`.
        metrics::counter!("roundhouse_job_retries_total", labels).increment(1);
    }
    tracing::warn!(
        target: "roundhouse_worker::job",
        job_id = %job.id, queue = %job.queue, job_type = %job.job_type, attempt = job.attempts,
        duration_ms = elapsed.as_millis() as u64, outcome = label,
        retry_in_ms = if outcome == FailOutcome::RetryScheduled { delay.as_millis() as u64 } else { 0 },
        error = %message,
        "job attempt failed"
    );
}

impl Shared {
    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(self.settings.worker_retry_base_ms),
            max: Duration::from_millis(self.settings.worker_retry_max_ms),
        }
    }
}
