//! `llm_processing {provider, model, prompt | messages, system?, maxTokens?,
//! temperature?}` → `{output, usage, model, provider, finishReason}`.
//!
//! The completion is streamed: tokens are recorded as `chunk` events on the
//! job's timeline as they arrive (in small batches), with progress, so a
//! client following the job sees the answer being written. Provider 429/5xx
//! are retried by the provider layer first, then by the job's own retries;
//! refused keys and bad requests fail the job at once.

use std::time::{Duration, Instant};

use futures::StreamExt;
use roundhouse_llm::{LlmError, LlmJob, StreamEvent};
use serde_json::{Value, json};

use crate::handler::{HandlerError, JobContext, JobHandler};

/// Tokens are written to the timeline at least this often…
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// …or whenever this many are waiting.
const FLUSH_CHUNKS: usize = 64;

pub(crate) struct LlmProcessing;

#[async_trait::async_trait]
impl JobHandler for LlmProcessing {
    async fn run(&self, ctx: JobContext) -> Result<Value, HandlerError> {
        let job = LlmJob::parse(&ctx.payload)
            .map_err(|e| HandlerError::Permanent(format!("llm_processing payload: {e}")))?;
        let provider = ctx.llm.get(&job.provider).map_err(failure)?;
        let request = job.request();
        let mut stream = provider.stream(&request).await.map_err(failure)?;

        let mut pending: Vec<String> = Vec::new();
        let mut written = 0usize;
        let mut last_flush = Instant::now();
        // Progress while streaming: the share of maxTokens (≈ 4 characters
        // each) written so far, capped below 100 until the end.
        let expected_chars = job.max_tokens.unwrap_or(1024).max(1) as usize * 4;
        let completion = loop {
            let event = tokio::select! {
                event = stream.next() => event,
                _ = ctx.cancel.cancelled() => {
                    ctx.chunks(&pending).await;
                    return Err(HandlerError::Retry("llm_processing interrupted".into()));
                }
            };
            match event {
                Some(Ok(StreamEvent::Delta(text))) => {
                    written += text.len();
                    pending.push(text);
                    if pending.len() >= FLUSH_CHUNKS || last_flush.elapsed() >= FLUSH_EVERY {
                        ctx.chunks(&std::mem::take(&mut pending)).await;
                        last_flush = Instant::now();
                        let percent = (written * 100 / expected_chars).min(99) as u8;
                        ctx.progress(percent, Some(&format!("{written} characters")))
                            .await;
                    }
                }
                Some(Ok(StreamEvent::Done(completion))) => break completion,
                Some(Err(error)) => {
                    ctx.chunks(&pending).await;
                    return Err(failure(error));
                }
                None => {
                    return Err(HandlerError::Retry(
                        "the provider's stream ended without a completion".into(),
                    ));
                }
            }
        };
        ctx.chunks(&pending).await;
        ctx.progress(100, Some("done")).await;
        Ok(json!({
            "output": completion.output,
            "usage": {
                "promptTokens": completion.usage.prompt_tokens,
                "completionTokens": completion.usage.completion_tokens,
                "totalTokens": completion.usage.total(),
            },
            "model": completion.model,
            "provider": provider.name(),
            "finishReason": completion.finish_reason,
        }))
    }
}

/// A provider error as a job failure: retried when retrying can help, and
/// after the provider's `Retry-After` when it gave one.
fn failure(error: LlmError) -> HandlerError {
    let message = error.to_string();
    match (error.is_retryable(), error.retry_after()) {
        (true, Some(after)) => HandlerError::RetryAfter(message, after),
        (true, None) => HandlerError::Retry(message),
        (false, _) => HandlerError::Permanent(message),
    }
}
