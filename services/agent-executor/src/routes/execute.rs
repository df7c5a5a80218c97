//! `POST /api/agent/execute`: runs an agent for a user, answering when it is
//! done (sync) or as server-sent events (`stream: true`).
//!
//! Edge functions call this with the user's token and the backend secret.
//! The run's credits are reserved before it starts (402 when they are
//! not there); the run then executes in its own task, so a client that
//! goes away loses nothing: the run finishes, is stored, and its stream can
//! be re-attached (`GET /api/agent/runs/{runId}/stream`).

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::HeaderValue;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use roundhouse_db::{NewRun, RunStart};
use roundhouse_http::{ApiError, ApiJson, Caller};
use roundhouse_llm::{ChatMessage, ChatRequest};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::agents::may_use;
use super::runs::sse;
use crate::dto::{ExecuteMode, ExecuteRequest, RunResultView, acting_user};
use crate::error::ExecuteError;
use crate::follow::Follower;
use crate::runner::{Run, RunFailure, RunOutcome};
use crate::startup::AppState;

/// The header naming the run of an execute answer (also on refusals that
/// come after the run was recorded, such as a provider failure).
const RUN_ID_HEADER: &str = "x-run-id";

/// A request carrying `X-Backend-Secret` equal to `RAILWAY_BACKEND_SECRET`
/// (compared in constant time).
pub struct BackendSecret;

impl FromRequestParts<AppState> for BackendSecret {
    type Rejection = ExecuteError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ExecuteError> {
        let expected = state
            .settings
            .railway_backend_secret
            .as_deref()
            .map(str::trim)
            .filter(|secret| !secret.is_empty())
            .ok_or(ExecuteError::BackendSecretNotConfigured)?;
        let given = parts
            .headers
            .get("x-backend-secret")
            .map_or(&[][..], HeaderValue::as_bytes);
        if bool::from(given.ct_eq(expected.as_bytes())) {
            Ok(BackendSecret)
        } else {
            Err(ExecuteError::BadBackendSecret)
        }
    }
}

/// `POST /api/agent/execute`.
pub async fn execute(
    State(state): State<AppState>,
    caller: Caller,
    _secret: BackendSecret,
    ApiJson(request): ApiJson<ExecuteRequest>,
) -> Result<Response, ExecuteError> {
    request.check_messages()?;
    if request.mode == ExecuteMode::Async {
        return Err(ExecuteError::AsyncNotImplemented);
    }
    let user_id = acting_user(&caller, request.user_id.clone())?;
    let agent = state
        .db
        .get_agent(request.agent_id)
        .await?
        .filter(|agent| may_use(Some(&user_id), agent))
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let provider = state.providers.get(&agent.provider).map_err(|e| {
        ApiError::unavailable(format!("the agent's provider is not available: {e}"))
    })?;

    let conversation = serde_json::to_value(&request.messages).expect("messages serialize");
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if !agent.system_prompt.is_empty() {
        messages.push(ChatMessage::system(agent.system_prompt.clone()));
    }
    messages.extend(request.messages);
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
            mode: if request.stream { "stream" } else { "sync" }.to_owned(),
            messages: conversation,
            reserve,
            job_id: None,
        })
        .await?;
    if let RunStart::InsufficientCredits { balance, needed } = started {
        return Err(ExecuteError::InsufficientCredits { needed, balance });
    }
    tracing::info!(
        %run_id, agent_id = %agent.id, %user_id, stream = request.stream, reserved = reserve,
        "agent run started"
    );

    // Registered before the task starts, so a follower misses no chunk.
    let publisher = state.hub.open(run_id);
    let run = Run {
        id: run_id,
        provider,
        request: chat,
    };
    let mut response = if request.stream {
        let attachment = publisher.attach();
        // Detached: the run goes on if the client leaves.
        drop(state.runner.spawn(run, publisher));
        sse(Follower::from_start(
            state.db.clone(),
            state.hub.clone(),
            run_id,
            attachment,
            state.closing.clone(),
        ))
    } else {
        // If this request is dropped, so is the handle, not the run.
        let outcome = state
            .runner
            .spawn(run, publisher)
            .await
            .map_err(ApiError::internal)?;
        sync_answer(run_id, outcome)
    };
    response.headers_mut().insert(
        RUN_ID_HEADER,
        HeaderValue::from_str(&run_id.to_string()).expect("a UUID is a header value"),
    );
    Ok(response)
}

fn sync_answer(run_id: Uuid, outcome: RunOutcome) -> Response {
    match outcome {
        RunOutcome::Completed {
            output,
            usage,
            credits_used,
        } => Json(RunResultView {
            run_id,
            output,
            usage,
            credits_used,
        })
        .into_response(),
        RunOutcome::Failed(RunFailure::Provider(message)) => {
            ExecuteError::Provider(message).into_response()
        }
        RunOutcome::Failed(failure @ RunFailure::Interrupted) => {
            ApiError::unavailable(failure.message()).into_response()
        }
        RunOutcome::Failed(RunFailure::Internal) => {
            ApiError::internal(format!("agent run {run_id} failed internally")).into_response()
        }
    }
}
