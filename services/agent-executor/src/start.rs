//! Starting a run, whichever transport asked for it: `POST
//! /api/agent/execute` and the WebSocket's `agent_execute` both come
//! through [`reserve_run`], so both apply the same checks (the conversation,
//! the agent's visibility, its provider), the same pricing, and reserve
//! credits with the run record in one statement.

use roundhouse_core::JobType;
use roundhouse_db::{AgentRow, NewJob, NewRun, RunStart};
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

/// A checked and priced run request, not recorded yet.
struct Prepared {
    user_id: String,
    agent_id: Uuid,
    /// The conversation as the client sent it (stored with the run).
    recorded: serde_json::Value,
    reserve: i64,
    run: Run,
}

/// Checks a request (the conversation, the agent's visibility, its
/// provider) and prices it.
async fn prepare(state: &AppState, request: RunRequest) -> Result<Prepared, ExecuteError> {
    check_messages(&request.messages)?;
    let RunRequest {
        user_id,
        agent_id,
        messages: conversation,
        stream: _,
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
    let request = chat_request(&agent, conversation);
    let reserve = state.pricing.reservation(
        &agent.model,
        &request.messages,
        request.max_tokens.map(u64::from),
    );
    let run_id = Uuid::now_v7();
    Ok(Prepared {
        user_id,
        agent_id: agent.id,
        recorded,
        reserve,
        run: Run {
            id: run_id,
            provider,
            request,
        },
    })
}

/// The provider request for `agent`: its system prompt, then the conversation.
pub fn chat_request(agent: &AgentRow, conversation: Vec<ChatMessage>) -> ChatRequest {
    let mut messages = Vec::with_capacity(conversation.len() + 1);
    if !agent.system_prompt.is_empty() {
        messages.push(ChatMessage::system(agent.system_prompt.clone()));
    }
    messages.extend(conversation);
    ChatRequest {
        model: agent.model.clone(),
        messages,
        max_tokens: agent.max_tokens.and_then(|n| u32::try_from(n).ok()),
        temperature: agent.temperature,
    }
}

/// Checks a run request, prices it and records the run with its credits
/// reserved (refused when the balance does not cover them).
pub async fn reserve_run(
    state: &AppState,
    request: RunRequest,
) -> Result<ReservedRun, ExecuteError> {
    let stream = request.stream;
    let prepared = prepare(state, request).await?;
    let run_id = prepared.run.id;
    record(
        state,
        &prepared,
        if stream { "stream" } else { "sync" },
        None,
    )
    .await?;
    tracing::info!(
        %run_id, agent_id = %prepared.agent_id, user_id = %prepared.user_id, stream,
        reserved = prepared.reserve, "agent run started"
    );
    Ok(ReservedRun {
        id: run_id,
        run: prepared.run,
        // Registered before the task starts, so a follower misses no chunk.
        publisher: state.hub.open(run_id),
    })
}

/// Checks and prices a run for `mode: "async"`, and records it `queued`
/// together with its `agent_run` job (one transaction): an executor's
/// embedded worker starts it. Returns the run's and the job's ids.
pub async fn queue_run(
    state: &AppState,
    request: RunRequest,
) -> Result<(Uuid, Uuid), ExecuteError> {
    let prepared = prepare(state, request).await?;
    let (run_id, job_id) = (prepared.run.id, Uuid::now_v7());
    let job = NewJob {
        id: job_id,
        queue: JobType::AgentRun.default_queue().to_string(),
        job_type: JobType::AgentRun.to_string(),
        user_id: Some(prepared.user_id.clone()),
        payload: serde_json::json!({ "runId": run_id }),
        priority: 0,
        // A run is paid for once: a lost attempt fails (and refunds) it.
        max_retries: JobType::AgentRun.default_max_retries(),
        timeout_seconds: JobType::AgentRun.default_timeout_seconds(),
        idempotency_key: None,
        run_at: None,
        delay_ms: None,
        traceparent: None,
    };
    record(state, &prepared, "async", Some(job)).await?;
    tracing::info!(
        %run_id, %job_id, agent_id = %prepared.agent_id, user_id = %prepared.user_id,
        reserved = prepared.reserve, "agent run queued"
    );
    Ok((run_id, job_id))
}

/// Records the run with its reservation (and its job, for async runs).
async fn record(
    state: &AppState,
    prepared: &Prepared,
    mode: &str,
    job: Option<NewJob>,
) -> Result<(), ExecuteError> {
    let started = state
        .db
        .start_run(&NewRun {
            id: prepared.run.id,
            agent_id: prepared.agent_id,
            user_id: prepared.user_id.clone(),
            mode: mode.to_owned(),
            messages: prepared.recorded.clone(),
            reserve: prepared.reserve,
            job,
        })
        .await?;
    match started {
        RunStart::Started(_) => Ok(()),
        RunStart::InsufficientCredits { balance, needed } => {
            Err(ExecuteError::InsufficientCredits { needed, balance })
        }
    }
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
