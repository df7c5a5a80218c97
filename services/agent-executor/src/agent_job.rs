//! `agent_run {runId}`: the job behind `mode: "async"`, run by the worker
//! embedded in the executor (it consumes the `agents` queue).
//!
//! The run was recorded `queued`, with its credits reserved, in the
//! transaction that created the job. The handler moves it to `running`
//! (once: a second attempt finds it started and stops), executes it like a
//! streamed run (its chunks reach followers of
//! `GET /api/agent/runs/{runId}/stream`), and the job's result is the run's.
//! An attempt lost with its executor is not repeated: the heartbeat reaper
//! fails the run and refunds it.

use roundhouse_llm::ChatMessage;
use roundhouse_worker::{HandlerError, JobContext, JobHandler};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::runner::{Run, RunOutcome};
use crate::start::chat_request;
use crate::startup::AppState;

pub struct AgentRunJob {
    pub state: AppState,
}

#[async_trait::async_trait]
impl JobHandler for AgentRunJob {
    async fn run(&self, ctx: JobContext) -> Result<Value, HandlerError> {
        let state = &self.state;
        let run_id: Uuid = ctx
            .payload
            .get("runId")
            .and_then(Value::as_str)
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| {
                HandlerError::Permanent("agent_run payload: runId must be a run id".into())
            })?;
        let retry = |e: roundhouse_db::DbError| HandlerError::Retry(e.to_string());
        let row = state
            .db
            .get_run(run_id, None)
            .await
            .map_err(retry)?
            .ok_or_else(|| HandlerError::Permanent(format!("no agent run {run_id}")))?;
        match row.status.as_str() {
            "completed" => return Ok(result(run_id, &row.output, row.usage, row.credits_used)),
            "failed" => {
                return Err(HandlerError::Permanent(
                    row.error.unwrap_or_else(|| "the run failed".into()),
                ));
            }
            _ => {}
        }
        if !state.db.mark_run_running(run_id).await.map_err(retry)? {
            return Err(HandlerError::Permanent(
                "the run was already started by an earlier attempt".into(),
            ));
        }
        let conversation: Vec<ChatMessage> = serde_json::from_value(row.messages)
            .map_err(|e| HandlerError::Permanent(format!("stored messages: {e}")))?;
        let failed = |message: String| async move {
            let _ = state.db.fail_run(run_id, &message, "").await;
            HandlerError::Permanent(message)
        };
        let agent = match state.db.get_agent(row.agent_id).await.map_err(retry)? {
            Some(agent) => agent,
            None => return Err(failed("the agent was deleted".into()).await),
        };
        let provider = match state.providers.get(&agent.provider) {
            Ok(provider) => provider,
            Err(error) => return Err(failed(format!("the agent's provider: {error}")).await),
        };
        let run = Run {
            id: run_id,
            provider,
            request: chat_request(&agent, conversation),
        };
        let handle = state.runner.spawn(run, state.hub.open(run_id));
        match handle.await {
            Ok(RunOutcome::Completed {
                output,
                usage,
                credits_used,
            }) => Ok(json!({
                "runId": run_id,
                "output": output,
                "usage": usage,
                "creditsUsed": credits_used,
            })),
            Ok(RunOutcome::Failed(failure)) => Err(HandlerError::Permanent(failure.message())),
            Err(_) => Err(HandlerError::Permanent("the run's task was lost".into())),
        }
    }
}

fn result(run_id: Uuid, output: &str, usage: Option<Value>, credits_used: Option<i64>) -> Value {
    json!({
        "runId": run_id,
        "output": output,
        "usage": usage,
        "creditsUsed": credits_used,
    })
}
