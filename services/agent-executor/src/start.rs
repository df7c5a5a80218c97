//! Starting a run, whichever transport asked for it: `POST
//! /api/agent/execute` and the WebSocket's `agent_execute` both come
//! through [`reserve_run`], so both apply the same checks (the conversation,
//! the agent's visibility, its provider), the same pricing, and reserve
//! credits with the run record in one statement.

use roundhouse_db::{NewRun, RunStart};
use roundhouse_http::ApiError;
use roundhouse_llm::{ChatMessage, ChatRequest};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::dto::check_messages;
use crate::error::ExecuteError;
use crate::follow::Follower;
use crate::hub::RunPublisher;
use crate::routes::agents::may_use;
use crate::runner::{Run, RunOutcome};
use crate::startup::AppState;

/// A run asked for by (or for) a user.
pub struct RunRequest {
    /// Whom the run is for: they must be allowed the agent, and pay.
    pub user_id: String,
    pub agent_id: Uuid,
    pub messages: Vec<ChatMessage>,
    /// Streamed to the client (recorded as the run's mode).
    pub stream: bool,
}

/// A run recorded with its credits reserved, not started yet.
pub struct ReservedRun {
    pub id: Uuid,
    run: Run,
    publisher: RunPublisher,
}

/// Checks a run request, prices it and records the run with its credits
/// reserved (refused when the balance does not cover them).
pub async fn reserve_run(
    state: &AppState,
    request: RunRequest,
) -> Result<ReservedRun, ExecuteError> {
    check_messages(&request.messages)?;
    let RunRequest {
        user_id,
        agent_id,
        messages: conversation,
        stream,
    } = request;
    let agent = state
        .db
        .get_agent(agent_id)
        .await?
        .filter(|agent| may_use(Some(&user_id), agent))
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let provider = state.providers.get(&agent.provider).map_err(|e| {
        ApiError::unavailable(format!("the agent's provider is not available: {e}"))
    })?;

    let recorded = serde_json::to_value(&conversation).expect("messages serialize");
    let mut messages = Vec::with_capacity(conversation.len() + 1);
    if !agent.system_prompt.is_empty() {
        messages.push(ChatMessage::system(agent.system_prompt.clone()));
    }
    messages.extend(conversation);
    let max_tokens = agent.max_tokens.and_then(|n| u32::try_from(n).ok());
    let reserve = state
        .pricing
        .reservation(&agent.model, &messages, max_tokens.map(u64::from));
    let chat = ChatRequest {
        model: agent.model.clone(),
        messages,
        max_tokens,
        temperature: agent.temperature,
    };

    let run_id = Uuid::now_v7();
    let started = state
        .db
        .start_run(&NewRun {
            id: run_id,
            agent_id: agent.id,
            user_id: user_id.clone(),
            mode: if stream { "stream" } else { "sync" }.to_owned(),
            messages: recorded,
            reserve,
            job_id: None,
        })
        .await?;
    if let RunStart::InsufficientCredits { balance, needed } = started {
        return Err(ExecuteError::InsufficientCredits { needed, balance });
    }
    tracing::info!(
        %run_id, agent_id = %agent.id, %user_id, stream, reserved = reserve,
        "agent run started"
    );
    Ok(ReservedRun {
        id: run_id,
        run: Run {
            id: run_id,
            provider,
            request: chat,
        },
        // Registered before the task starts, so a follower misses no chunk.
        publisher: state.hub.open(run_id),
    })
}

impl ReservedRun {
    /// Starts the run and returns a follower of it from its start. The run
    /// is detached: it goes on (and is stored) if the follower is dropped.
    pub fn follow(self, state: &AppState) -> Follower {
        let attachment = self.publisher.attach();
        drop(state.runner.spawn(self.run, self.publisher));
        Follower::from_start(
            state.db.clone(),
            state.hub.clone(),
            self.id,
            attachment,
            state.closing.clone(),
        )
    }

    /// Starts the run; the handle tells how it ended. Dropping the handle
    /// does not stop the run.
    pub fn spawn(self, state: &AppState) -> JoinHandle<RunOutcome> {
        state.runner.spawn(self.run, self.publisher)
    }
}
