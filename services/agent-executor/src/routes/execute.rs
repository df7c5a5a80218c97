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
use roundhouse_core::{Dispatch, JobType};
use roundhouse_http::docs::{
    BadGateway, BadRequest, Forbidden, InternalError, NotFound, PayloadTooLarge, PaymentRequired,
    TooManyRequests, Unauthorized, Unavailable, Unprocessable, UnsupportedMediaType,
};
use roundhouse_http::{ApiError, ApiJson, Caller};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::runs::sse;
use crate::dto::{ExecuteMode, ExecuteRequest, QueuedRunView, RunResultView, acting_user};
use crate::error::ExecuteError;
use crate::runner::{RunFailure, RunOutcome};
use crate::start::{RunRequest, queue_run, reserve_run};
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
#[utoipa::path(
    post,
    path = "/api/agent/execute",
    tag = "runs",
    security(("userJwt" = [], "backendSecret" = []), ("serviceToken" = [], "backendSecret" = [])),
    request_body = ExecuteRequest,
    responses(
        (status = 200, description = "`stream: false`: the finished run (JSON); `stream: true`: server-sent events `agent_start`, `agent_chunk` {content}, then `agent_done` {runId, usage, creditsUsed} or `agent_error`",
         headers(("X-Run-Id" = Uuid, description = "The run's id")),
         content((RunResultView = "application/json"), (String = "text/event-stream"))),
        (status = 202, description = "`mode: \"async\"`: the run and its job are queued",
         headers(("X-Run-Id" = Uuid, description = "The run's id")),
         body = QueuedRunView),
        (status = 400, response = BadRequest),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 402, response = PaymentRequired),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
        (status = 502, response = BadGateway),
        (status = 503, response = Unavailable),
    )
)]
pub async fn execute(
    State(state): State<AppState>,
    caller: Caller,
    _secret: BackendSecret,
    ApiJson(request): ApiJson<ExecuteRequest>,
) -> Result<Response, ExecuteError> {
    if request.mode == ExecuteMode::Async {
        return queue(&state, &caller, request).await;
    }
    let reserved = reserve_run(
        &state,
        RunRequest {
            user_id: acting_user(&caller, request.user_id)?,
            agent_id: request.agent_id,
            messages: request.messages,
            stream: request.stream,
        },
    )
    .await?;
    let run_id = reserved.id;
    let mut response = if request.stream {
        sse(reserved.follow(&state))
    } else {
        // If this request is dropped, so is the handle, not the run.
        let outcome = reserved.spawn(&state).await.map_err(ApiError::internal)?;
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

/// `mode: "async"`: records the run and its `agent_run` job, dispatches the
/// job, and answers 202 `{runId, jobId}`. The run is followed through the
/// job APIs or `GET /api/agent/runs/{runId}` (and its `/stream`).
async fn queue(
    state: &AppState,
    caller: &Caller,
    request: ExecuteRequest,
) -> Result<Response, ExecuteError> {
    let (run_id, job_id) = queue_run(
        state,
        RunRequest {
            user_id: acting_user(caller, request.user_id)?,
            agent_id: request.agent_id,
            messages: request.messages,
            stream: false,
        },
    )
    .await?;
    // A dispatch the broker does not confirm is sent by the scheduler's sweep.
    let report = state
        .broker
        .publish_dispatches(&[Dispatch {
            job_id,
            queue: JobType::AgentRun.default_queue().to_string(),
            priority: 0,
            traceparent: None,
        }])
        .await;
    if let Err(error) = state.db.mark_dispatched(&report.confirmed).await {
        tracing::warn!(%error, %job_id, "could not mark the run's job dispatched");
    }
    let mut response = (
        axum::http::StatusCode::ACCEPTED,
        Json(QueuedRunView { run_id, job_id }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&run_id.to_string()) {
        response.headers_mut().insert(RUN_ID_HEADER, value);
    }
    Ok(response)
}
