//! Wire types of the executor's API (camelCase JSON), separate from
//! database rows, and their validation.

use chrono::{DateTime, Utc};
use roundhouse_db::{AgentRow, AgentRunRow, AgentSpec};
use roundhouse_http::{ApiError, Caller};
use roundhouse_llm::{ChatMessage, Providers};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::runner::RunUsage;

/// Most messages a run may carry.
const MAX_MESSAGES: usize = 1000;

/// An agent as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    pub id: Uuid,
    pub name: String,
    /// Shown to the owner and the service only: a published agent's prompt
    /// may be its author's work.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    pub provider: String,
    pub model: String,
    pub temperature: Option<f32>,
    pub max_tokens: Option<i32>,
    pub is_heavy: bool,
    pub is_published: bool,
    pub railway_url: Option<String>,
    /// The owner.
    pub user_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<AgentRow> for AgentView {
    fn from(row: AgentRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            system_prompt: Some(row.system_prompt),
            provider: row.provider,
            model: row.model,
            temperature: row.temperature,
            max_tokens: row.max_tokens,
            is_heavy: row.is_heavy,
            is_published: row.is_published,
            railway_url: row.railway_url,
            user_id: row.owner_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl AgentView {
    /// The agent as `viewer` (`None`: the service) may see it: without its
    /// system prompt unless the viewer owns it.
    pub fn for_viewer(row: AgentRow, viewer: Option<&str>) -> Self {
        let owns = viewer.is_none_or(|user| user == row.owner_id);
        let mut view = Self::from(row);
        if !owns {
            view.system_prompt = None;
        }
        view
    }
}

/// The body of `POST /api/agents` and `PUT /api/agents/{id}`.
///
/// A create needs `name` (and, from the service, `userId`); `provider`
/// defaults to `dev`. An update is partial: absent fields keep their value;
/// `temperature`, `maxTokens` and `railwayUrl` are cleared by `null`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentRequest {
    /// 1-200 characters; required to create.
    pub name: Option<String>,
    pub system_prompt: Option<String>,
    /// A configured provider (default `dev`).
    pub provider: Option<String>,
    pub model: Option<String>,
    /// 0 to 2.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f32>)]
    pub temperature: Option<Option<f32>>,
    /// 1 to 200000.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i32>)]
    pub max_tokens: Option<Option<i32>>,
    pub is_heavy: Option<bool>,
    pub is_published: Option<bool>,
    /// An http(s) URL.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub railway_url: Option<Option<String>>,
    /// The service: the owner of a new agent (required then).
    pub user_id: Option<String>,
}

/// Absent → `None` (with `#[serde(default)]`), `null` → `Some(None)`.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

impl AgentRequest {
    /// Validates a new agent for `caller`; returns its owner and settings.
    pub fn into_new_agent(
        self,
        caller: &Caller,
        providers: &Providers,
    ) -> Result<(String, AgentSpec), ApiError> {
        let owner = acting_user(caller, self.user_id.clone())?;
        let base = AgentSpec {
            name: self
                .name
                .clone()
                .ok_or_else(|| ApiError::validation("name: is required"))?,
            system_prompt: String::new(),
            provider: "dev".to_owned(),
            model: String::new(),
            temperature: None,
            max_tokens: None,
            is_heavy: false,
            is_published: false,
            railway_url: None,
        };
        Ok((owner, validate_agent(self.merge(base), providers)?))
    }

    /// Validates an update of `stored`: its settings with the fields
    /// present in the request replaced.
    pub fn into_update(
        self,
        stored: &AgentRow,
        providers: &Providers,
    ) -> Result<AgentSpec, ApiError> {
        if self
            .user_id
            .as_ref()
            .is_some_and(|asked| *asked != stored.owner_id)
        {
            return Err(ApiError::validation(
                "userId: an agent's owner cannot be changed",
            ));
        }
        validate_agent(self.merge(AgentSpec::of(stored)), providers)
    }

    fn merge(self, base: AgentSpec) -> AgentSpec {
        AgentSpec {
            name: self.name.unwrap_or(base.name),
            system_prompt: self.system_prompt.unwrap_or(base.system_prompt),
            provider: self.provider.unwrap_or(base.provider),
            model: self.model.unwrap_or(base.model),
            temperature: self.temperature.unwrap_or(base.temperature),
            max_tokens: self.max_tokens.unwrap_or(base.max_tokens),
            is_heavy: self.is_heavy.unwrap_or(base.is_heavy),
            is_published: self.is_published.unwrap_or(base.is_published),
            railway_url: self.railway_url.unwrap_or(base.railway_url),
        }
    }
}

/// Checks every setting; the message of a refusal names the field.
/// Normalises the provider name.
fn validate_agent(mut spec: AgentSpec, providers: &Providers) -> Result<AgentSpec, ApiError> {
    if spec.name.trim().is_empty() || spec.name.chars().count() > 200 {
        return Err(ApiError::validation(
            "name: must be 1-200 characters, not all blank",
        ));
    }
    spec.provider = spec.provider.trim().to_ascii_lowercase();
    providers
        .get(&spec.provider)
        .map_err(|e| ApiError::validation(format!("provider: {e}")))?;
    if spec.model.chars().count() > 200 {
        return Err(ApiError::validation(
            "model: must be at most 200 characters",
        ));
    }
    if spec.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        return Err(ApiError::validation("temperature: must be between 0 and 2"));
    }
    if spec.max_tokens.is_some_and(|n| !(1..=200_000).contains(&n)) {
        return Err(ApiError::validation(
            "maxTokens: must be between 1 and 200000",
        ));
    }
    if let Some(url) = &spec.railway_url
        && (!(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2048)
    {
        return Err(ApiError::validation(
            "railwayUrl: must be an http(s) URL of at most 2048 characters",
        ));
    }
    Ok(spec)
}

/// The user a caller acts for: a user for themselves (naming another user
/// is 403), the service for the `userId` it names (required).
pub fn acting_user(caller: &Caller, asked: Option<String>) -> Result<String, ApiError> {
    let user = match (caller.owner(), asked) {
        (None, Some(asked)) => asked,
        (None, None) => {
            return Err(ApiError::validation(
                "userId: is required when the service acts for a user",
            ));
        }
        (Some(own), None) => own.to_owned(),
        (Some(own), Some(asked)) if asked == own => asked,
        (Some(_), Some(_)) => {
            return Err(ApiError::forbidden(
                "userId: only the service may act for another user",
            ));
        }
    };
    if user.is_empty() || user.len() > 255 {
        return Err(ApiError::validation("userId: must be 1-255 characters"));
    }
    Ok(user)
}

/// Query of `GET /api/agents`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AgentListQuery {
    /// Published agents of anyone, instead of the caller's own.
    #[serde(default)]
    pub published: bool,
    /// 1-500 (default 50).
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of agents, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentPage {
    pub agents: Vec<AgentView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<Uuid>,
}

/// The answer to a delete.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedView {
    pub id: Uuid,
    /// Always `true`.
    pub deleted: bool,
}

/// Query of `GET /api/credits`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CreditsQuery {
    /// The service: whose balance (required then).
    pub user_id: Option<String>,
}

/// The body of `POST /api/credits/grant`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrantRequest {
    pub user_id: String,
    pub amount: i64,
}

/// A user's balance.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreditsView {
    pub user_id: String,
    pub balance: i64,
}

/// How `POST /api/agent/execute` answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecuteMode {
    /// Answer when the run is done.
    #[default]
    Sync,
    /// 202 and a job on the `agents` queue.
    Async,
}

/// The body of `POST /api/agent/execute`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecuteRequest {
    pub agent_id: Uuid,
    /// The conversation (1-1000 messages).
    #[schema(value_type = Vec<MessageSchema>)]
    pub messages: Vec<ChatMessage>,
    /// Answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    pub mode: ExecuteMode,
    /// The user the service runs the agent for.
    pub user_id: Option<String>,
}

/// `roundhouse_llm::ChatMessage` as the documents show it.
#[derive(ToSchema)]
#[schema(as = ChatMessage)]
pub struct MessageSchema {
    pub role: RoleSchema,
    pub content: String,
}

/// `roundhouse_llm::Role` as the documents show it.
#[derive(ToSchema)]
#[schema(as = Role)]
#[allow(dead_code)]
pub enum RoleSchema {
    #[schema(rename = "system")]
    System,
    #[schema(rename = "user")]
    User,
    #[schema(rename = "assistant")]
    Assistant,
}

/// The answer of an async run: follow it with `GET /api/agent/runs/{runId}`
/// or the job APIs.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueuedRunView {
    pub run_id: Uuid,
    pub job_id: Uuid,
}

/// Checks a run's conversation; the message of a refusal names the field.
pub fn check_messages(messages: &[ChatMessage]) -> Result<(), ApiError> {
    if messages.is_empty() {
        return Err(ApiError::validation(
            "messages: must hold at least one message",
        ));
    }
    if messages.len() > MAX_MESSAGES {
        return Err(ApiError::validation(format!(
            "messages: at most {MAX_MESSAGES} messages"
        )));
    }
    Ok(())
}

/// The answer of a sync run.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunResultView {
    pub run_id: Uuid,
    pub output: String,
    pub usage: RunUsage,
    pub credits_used: i64,
}

/// A run as `GET /api/agent/runs/{runId}` shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub run_id: Uuid,
    pub agent_id: Uuid,
    pub user_id: String,
    pub mode: String,
    pub status: String,
    pub output: String,
    /// `{promptTokens, completionTokens, totalTokens}` once settled.
    #[schema(value_type = Option<Object>)]
    pub usage: Option<serde_json::Value>,
    pub credits_reserved: i64,
    pub credits_used: Option<i64>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<AgentRunRow> for RunView {
    fn from(row: AgentRunRow) -> Self {
        Self {
            run_id: row.id,
            agent_id: row.agent_id,
            user_id: row.user_id,
            mode: row.mode,
            status: row.status,
            output: row.output,
            usage: row.usage,
            credits_reserved: row.credits_reserved,
            credits_used: row.credits_used,
            error: row.error,
            created_at: row.created_at,
            completed_at: row.completed_at,
        }
    }
}

/// Query of `GET /api/agent/runs/{runId}/stream`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// The first chunk number to send (`Last-Event-ID` + 1 wins over it).
    pub from: Option<i32>,
}

/// Query of `GET /ws`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConnectQuery {
    /// The user's access token (browsers cannot set headers on a WebSocket).
    pub token: Option<String>,
}

/// A message from a WebSocket client.
#[derive(Debug, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum ClientMessage {
    /// Run an agent; the answers carry `request_id`.
    AgentExecute {
        request_id: String,
        agent_id: Uuid,
        messages: Vec<ChatMessage>,
    },
}

/// A message to a WebSocket client. Each names the request it answers.
#[derive(Debug, Serialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum ServerMessage<'a> {
    /// The run was recorded, its credits reserved.
    AgentStart { request_id: &'a str, run_id: Uuid },
    /// The next piece of output; `seq` numbers chunks from 1, as the event
    /// ids of `GET /api/agent/runs/{runId}/stream` do.
    AgentChunk {
        request_id: &'a str,
        run_id: Uuid,
        seq: i32,
        content: &'a str,
    },
    /// The run completed and was settled.
    AgentDone {
        request_id: &'a str,
        run_id: Uuid,
        usage: &'a serde_json::Value,
        credits_used: i64,
    },
    /// The request was refused (no `runId`) or its run failed (credits
    /// refunded). `code` is the HTTP API's error code for the same case,
    /// or `invalid_message`.
    AgentError {
        /// Absent when a malformed message did not name one.
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        run_id: Option<Uuid>,
        code: &'a str,
        message: &'a str,
        /// Seconds to wait before asking again (`rate_limited`, `unavailable`).
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
}
