//! `/api/agents`: agents for apps that don't keep their own agents table.
//!
//! A user manages their own agents and may read (and run) anyone's
//! published ones; the service manages all. Another user's agent is 404 for
//! anything the caller may not do with it, so its existence is not revealed.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use roundhouse_db::AgentRow;
use roundhouse_http::{ApiError, ApiJson, ApiQuery, Caller};
use uuid::Uuid;

use super::parse_id;
use crate::dto::{AgentListQuery, AgentPage, AgentRequest, AgentView, DeletedView};
use crate::startup::AppState;
use roundhouse_http::docs::{
    BadRequest, Conflict, Forbidden, InternalError, NotFound, PayloadTooLarge, TooManyRequests,
    Unauthorized, Unavailable, Unprocessable, UnsupportedMediaType,
};
use roundhouse_http::page_request;

/// Whether `caller` may run (and read) `agent`: the service, its owner, or
/// anyone when it is published.
pub(crate) fn may_use(user: Option<&str>, agent: &AgentRow) -> bool {
    agent.is_published || user.is_none_or(|user| user == agent.owner_id)
}

/// `GET /api/agents`: the caller's own (the service: all), oldest first;
/// `?published=true`: published agents of anyone.
#[utoipa::path(
    get,
    path = "/api/agents",
    tag = "agents",
    security(("userJwt" = []), ("serviceToken" = [])),
    params(AgentListQuery),
    responses(
        (status = 200, description = "A page of agents, oldest first", body = AgentPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list_agents(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AgentListQuery>,
) -> Result<Json<AgentPage>, ApiError> {
    let (limit, after) = page_request(query.limit, query.cursor.as_deref())?;
    let mut rows = if query.published {
        state.db.list_published_agents(after, limit + 1).await?
    } else {
        state
            .db
            .list_agents(caller.owner(), after, limit + 1)
            .await?
    };
    let next_cursor = roundhouse_http::cut_page(&mut rows, limit, |row| row.id);
    Ok(Json(AgentPage {
        agents: rows
            .into_iter()
            .map(|row| AgentView::for_viewer(row, caller.owner()))
            .collect(),
        next_cursor,
    }))
}

/// `POST /api/agents`: 201 with the agent.
#[utoipa::path(
    post,
    path = "/api/agents",
    tag = "agents",
    security(("userJwt" = []), ("serviceToken" = [])),
    request_body = AgentRequest,
    responses(
        (status = 201, description = "The agent", body = AgentView),
        (status = 400, response = BadRequest),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn create_agent(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<AgentRequest>,
) -> Result<Response, ApiError> {
    let (owner, spec) = request.into_new_agent(&caller, &state.providers)?;
    let row = state.db.create_agent(Uuid::now_v7(), &owner, &spec).await?;
    tracing::info!(agent_id = %row.id, owner = %row.owner_id, "agent created");
    Ok((StatusCode::CREATED, Json(AgentView::from(row))).into_response())
}

/// `GET /api/agents/{id}`.
#[utoipa::path(
    get,
    path = "/api/agents/{id}",
    tag = "agents",
    security(("userJwt" = []), ("serviceToken" = [])),
    params(("id" = Uuid, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "The agent (its system prompt for its owner and the service only)", body = AgentView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get_agent(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AgentView>, ApiError> {
    let id = parse_id(&id, "agent")?;
    let row = state
        .db
        .get_agent(id)
        .await?
        .filter(|agent| may_use(caller.owner(), agent))
        .ok_or_else(|| ApiError::not_found("agent"))?;
    Ok(Json(AgentView::for_viewer(row, caller.owner())))
}

/// `PUT /api/agents/{id}`: the fields present replace the stored ones.
#[utoipa::path(
    put,
    path = "/api/agents/{id}",
    tag = "agents",
    security(("userJwt" = []), ("serviceToken" = [])),
    params(("id" = Uuid, Path, description = "The agent's id")),
    request_body = AgentRequest,
    responses(
        (status = 200, description = "The updated agent", body = AgentView),
        (status = 400, response = BadRequest),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn update_agent(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<AgentRequest>,
) -> Result<Json<AgentView>, ApiError> {
    let id = parse_id(&id, "agent")?;
    let owner = caller.owner();
    let stored = state
        .db
        .get_agent(id)
        .await?
        .filter(|agent| owner.is_none_or(|owner| owner == agent.owner_id))
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let spec = request.into_update(&stored, &state.providers)?;
    // Scoped in the statement too: the agent may be deleted meanwhile.
    let row = state
        .db
        .update_agent(id, owner, &spec)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    tracing::info!(agent_id = %row.id, "agent updated");
    Ok(Json(row.into()))
}

/// `DELETE /api/agents/{id}`: its runs stay.
#[utoipa::path(
    delete,
    path = "/api/agents/{id}",
    tag = "agents",
    security(("userJwt" = []), ("serviceToken" = [])),
    params(("id" = Uuid, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "Deleted; its runs stay", body = DeletedView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn delete_agent(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeletedView>, ApiError> {
    let id = parse_id(&id, "agent")?;
    if !state.db.delete_agent(id, caller.owner()).await? {
        return Err(ApiError::not_found("agent"));
    }
    tracing::info!(agent_id = %id, "agent deleted");
    Ok(Json(DeletedView { id, deleted: true }))
}
