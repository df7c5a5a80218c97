//! Built-in job types for smoke tests and benchmarks.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::handler::{HandlerError, JobContext, JobHandler};

/// `noop`: succeeds at once.
pub(crate) struct Noop;

#[async_trait::async_trait]
impl JobHandler for Noop {
    async fn run(&self, _ctx: JobContext) -> Result<Value, HandlerError> {
        Ok(json!({}))
    }
}

/// `sleep {ms}`: sleeps, reporting progress, and stops early when cancelled.
pub(crate) struct Sleep;

#[derive(Deserialize)]
struct SleepPayload {
    ms: u64,
}

#[async_trait::async_trait]
impl JobHandler for Sleep {
    async fn run(&self, ctx: JobContext) -> Result<Value, HandlerError> {
        let SleepPayload { ms } = serde_json::from_value(ctx.payload.clone())
            .map_err(|e| HandlerError::Permanent(format!("sleep payload: {e}")))?;
        // Report progress in up to ten steps for sleeps long enough to watch.
        let steps = if ms >= 1000 { 10 } else { 1 };
        let step = Duration::from_millis(ms / steps);
        for done in 1..=steps {
            tokio::select! {
                _ = tokio::time::sleep(step) => {}
                _ = ctx.cancel.cancelled() => {
                    return Err(HandlerError::Retry("sleep interrupted".into()));
                }
            }
            if steps > 1 {
                let percent = (done * 100 / steps) as u8;
                ctx.progress(
                    percent,
                    Some(&format!("slept {}ms", step.as_millis() as u64 * done)),
                )
                .await;
            }
        }
        Ok(json!({ "sleptMs": ms }))
    }
}

/// `fail {times?, permanent?, message?}`: fails its first `times` attempts
/// (every attempt when absent), permanently when asked.
pub(crate) struct Fail;

#[derive(Deserialize)]
struct FailPayload {
    times: Option<i32>,
    #[serde(default)]
    permanent: bool,
    message: Option<String>,
}

#[async_trait::async_trait]
impl JobHandler for Fail {
    async fn run(&self, ctx: JobContext) -> Result<Value, HandlerError> {
        let payload: FailPayload = serde_json::from_value(ctx.payload.clone())
            .map_err(|e| HandlerError::Permanent(format!("fail payload: {e}")))?;
        let message = payload
            .message
            .unwrap_or_else(|| format!("failed on purpose (attempt {})", ctx.attempt));
        match payload.times {
            Some(times) if ctx.attempt > times => Ok(json!({ "succeededOnAttempt": ctx.attempt })),
            _ if payload.permanent => Err(HandlerError::Permanent(message)),
            _ => Err(HandlerError::Retry(message)),
        }
    }
}
