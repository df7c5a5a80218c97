//! Wire types of the HTTP API (camelCase JSON), separate from database rows.

use chrono::{DateTime, Utc};
use roundhouse_core::{CronSchedule, JobKind, JobType, MisfirePolicy, QueueName};

use crate::job_types::CustomTypes;
use roundhouse_db::{JobRow, NewJob, ScheduleRow, ScheduleSpec};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::extract::Caller;
use roundhouse_http::ApiError;

/// Longest accepted delay: one year.
const MAX_DELAY_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// A job as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub id: Uuid,
    pub queue: String,
    pub job_type: String,
    pub user_id: Option<String>,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// `queued`, `scheduled`, `running`, `completed`, `failed` or `cancelled`.
    pub status: String,
    pub priority: i32,
    pub attempts: i32,
    pub max_retries: i32,
    pub run_at: DateTime<Utc>,
    pub timeout_seconds: i32,
    pub idempotency_key: Option<String>,
    pub progress: i16,
    pub progress_message: Option<String>,
    /// What the handler returned (any JSON).
    #[schema(value_type = Option<Value>)]
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub worker_id: Option<String>,
    /// The schedule that created the job, if one did.
    pub schedule_id: Option<Uuid>,
}

impl From<JobRow> for JobView {
    fn from(row: JobRow) -> Self {
        Self {
            id: row.id,
            queue: row.queue,
            job_type: row.job_type,
            user_id: row.user_id,
            payload: row.payload,
            status: row.status,
            priority: row.priority,
            attempts: row.attempts,
            max_retries: row.max_retries,
            run_at: row.run_at,
            timeout_seconds: row.timeout_seconds,
            idempotency_key: row.idempotency_key,
            progress: row.progress,
            progress_message: row.progress_message,
            result: row.result,
            error: row.error,
            created_at: row.created_at,
            started_at: row.started_at,
            completed_at: row.completed_at,
            worker_id: row.worker_id,
            schedule_id: row.schedule_id,
        }
    }
}

/// The answer to an enqueue: `{jobId, status, ...job}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnqueuedView {
    pub job_id: Uuid,
    #[serde(flatten)]
    pub job: JobView,
}

/// The body of `POST /api/jobs/enqueue` (and of each entry of a batch).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnqueueRequest {
    /// A built-in type (`noop`, `sleep`, `llm_processing`, …) or a custom
    /// type a worker registered.
    #[schema(example = "noop")]
    pub job_type: String,
    /// The handler's input, a JSON object (default `{}`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
    /// Default: the job type's queue.
    pub queue: Option<String>,
    /// -1000 to 1000 (default 0); higher runs first.
    pub priority: Option<i32>,
    /// Run after this many seconds (up to one year); not with `runAt`.
    pub delay_seconds: Option<f64>,
    /// Run at this time (within one year); not with `delaySeconds`.
    pub run_at: Option<DateTime<Utc>>,
    /// 0 to 100 (default: the job type's).
    pub max_retries: Option<i32>,
    /// 1 to 604800 (default: the job type's).
    pub timeout_seconds: Option<i32>,
    /// 1-255 characters: the same key from the same user gives the same job.
    pub idempotency_key: Option<String>,
    /// The service only: the user the job runs as.
    pub user_id: Option<String>,
}

/// The body of `POST /api/jobs/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub jobs: Vec<EnqueueRequest>,
}

/// The answer to a batch: the jobs' ids, in the order of the request.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchAcceptedView {
    pub job_ids: Vec<Uuid>,
}

impl EnqueueRequest {
    /// Validates the request for `caller`; the message of a refusal names the field.
    pub fn into_new_job(self, caller: &Caller, custom: &CustomTypes) -> Result<NewJob, ApiError> {
        let job_type = job_type_for(caller, &self.job_type, custom)?;
        let payload = job_payload(&job_type, self.payload)?;
        let queue = job_queue(&job_type, self.queue.as_deref(), custom)?;
        let priority = self.priority.unwrap_or(0);
        check_priority(priority)?;
        if self.delay_seconds.is_some() && self.run_at.is_some() {
            return Err(ApiError::validation(
                "give either delaySeconds or runAt, not both",
            ));
        }
        if self
            .run_at
            .is_some_and(|at| at > chrono::Utc::now() + chrono::Duration::days(365))
        {
            return Err(ApiError::validation("runAt: must be within one year"));
        }
        let delay_ms = match self.delay_seconds {
            Some(delay) if !delay.is_finite() || delay < 0.0 => {
                return Err(ApiError::validation("delaySeconds: must be zero or more"));
            }
            Some(delay) if delay > MAX_DELAY_SECONDS => {
                return Err(ApiError::validation(
                    "delaySeconds: must be at most one year",
                ));
            }
            Some(delay) => Some((delay * 1000.0).round() as i64),
            None => None,
        };
        let max_retries = self
            .max_retries
            .unwrap_or_else(|| job_type.default_max_retries());
        check_max_retries(max_retries)?;
        let timeout_seconds = self
            .timeout_seconds
            .unwrap_or_else(|| job_type.default_timeout_seconds());
        check_timeout_seconds(timeout_seconds)?;
        if let Some(key) = &self.idempotency_key
            && (key.is_empty() || key.len() > 255)
        {
            return Err(ApiError::validation(
                "idempotencyKey: must be 1-255 characters",
            ));
        }
        let user_id = job_owner(caller, self.user_id)?;
        Ok(NewJob {
            id: Uuid::now_v7(),
            queue: queue.to_string(),
            job_type: job_type.to_string(),
            user_id,
            payload,
            priority,
            max_retries,
            timeout_seconds,
            idempotency_key: self.idempotency_key,
            run_at: self.run_at,
            delay_ms,
            traceparent: None,
        })
    }
}

/// The job type named `name`, if `caller` may run it.
///
/// The one gate on who may run what, shared by enqueues, schedules and
/// triggers. Authorization comes before availability: a user learns nothing
/// about types they may not use anyway.
pub fn job_type_for(
    caller: &Caller,
    name: &str,
    custom: &CustomTypes,
) -> Result<JobKind, ApiError> {
    let unknown = || ApiError::validation(format!("jobType: unknown job type `{name}`"));
    let job_type = match JobKind::parse(name).map_err(|_| unknown())? {
        JobKind::Builtin(job_type) => job_type,
        JobKind::Custom(custom_type) => {
            // A custom type is accepted once a worker that runs it has
            // registered it, so a typo is refused instead of waiting forever.
            return match custom.queue(custom_type.as_str()) {
                Some(_) => Ok(JobKind::Custom(custom_type)),
                None => Err(ApiError::validation(format!(
                    "jobType: unknown job type `{name}`: no worker has registered it \
                     (start a worker with HTTP_HANDLERS or a handler for it)"
                ))),
            };
        }
    };
    if requires_admin(job_type) && !caller.0.is_admin() {
        return Err(ApiError::forbidden(format!(
            "jobType: only the service or an admin may run `{job_type}` jobs"
        )));
    }
    if !job_type.is_available() {
        return Err(ApiError::validation(format!(
            "jobType: `{job_type}` is not available in this release"
        )));
    }
    Ok(JobKind::Builtin(job_type))
}

/// Types whose jobs act beyond their owner's data (`maintenance` deletes and
/// requeues everyone's jobs; `data_sync` writes tables and runs queries).
fn requires_admin(job_type: JobType) -> bool {
    match job_type {
        JobType::Maintenance | JobType::DataSync => true,
        JobType::LlmProcessing
        | JobType::Notifications
        | JobType::RagIngestion
        | JobType::AgentRun
        | JobType::Noop
        | JobType::Sleep
        | JobType::Fail => false,
    }
}

/// The payload of a `job_type` job: a JSON object (`{}` when absent) of the
/// shape the type's handler needs.
fn job_payload(
    job_type: &JobKind,
    payload: Option<serde_json::Value>,
) -> Result<serde_json::Value, ApiError> {
    let payload = payload.unwrap_or_else(|| serde_json::json!({}));
    if !payload.is_object() {
        return Err(ApiError::validation("payload: must be a JSON object"));
    }
    if let Some(job_type) = job_type.builtin() {
        validate_payload(job_type, &payload)?;
    }
    Ok(payload)
}

/// The queue named `name`, or the job type's default queue (for a custom
/// type, the queue its worker registered).
fn job_queue(
    job_type: &JobKind,
    name: Option<&str>,
    custom: &CustomTypes,
) -> Result<QueueName, ApiError> {
    match name {
        Some(name) => {
            QueueName::parse(name).map_err(|e| ApiError::validation(format!("queue: {e}")))
        }
        None => Ok(custom
            .queue(job_type.as_str())
            .cloned()
            .unwrap_or_else(|| job_type.default_queue())),
    }
}

fn check_priority(priority: i32) -> Result<(), ApiError> {
    if !(-1000..=1000).contains(&priority) {
        return Err(ApiError::validation(
            "priority: must be between -1000 and 1000",
        ));
    }
    Ok(())
}

fn check_max_retries(max_retries: i32) -> Result<(), ApiError> {
    if !(0..=100).contains(&max_retries) {
        return Err(ApiError::validation(
            "maxRetries: must be between 0 and 100",
        ));
    }
    Ok(())
}

fn check_timeout_seconds(timeout_seconds: i32) -> Result<(), ApiError> {
    if !(1..=7 * 24 * 3600).contains(&timeout_seconds) {
        return Err(ApiError::validation(
            "timeoutSeconds: must be between 1 and 604800",
        ));
    }
    Ok(())
}

/// The user a job runs as: the caller, or (for the service only) `asked`.
fn job_owner(caller: &Caller, asked: Option<String>) -> Result<Option<String>, ApiError> {
    let user_id = match (caller.owner(), asked) {
        (None, user_id) => user_id,
        (Some(own), None) => Some(own.to_owned()),
        (Some(own), Some(asked)) if asked == own => Some(asked),
        (Some(_), Some(_)) => {
            return Err(ApiError::forbidden(
                "userId: only the service may act for another user",
            ));
        }
    };
    if user_id
        .as_ref()
        .is_some_and(|u| u.is_empty() || u.len() > 255)
    {
        return Err(ApiError::validation("userId: must be 1-255 characters"));
    }
    Ok(user_id)
}

/// Shape checks for the payloads of types whose handlers need fields.
fn validate_payload(job_type: JobType, payload: &serde_json::Value) -> Result<(), ApiError> {
    match job_type {
        JobType::Sleep => match payload.get("ms").and_then(|v| v.as_u64()) {
            Some(ms) if ms <= 24 * 3600 * 1000 => Ok(()),
            _ => Err(ApiError::validation(
                "payload.ms: sleep needs a whole number of milliseconds up to one day",
            )),
        },
        JobType::Fail => {
            if payload.get("times").is_some_and(|v| !v.is_i64()) {
                return Err(ApiError::validation("payload.times: must be an integer"));
            }
            if payload.get("permanent").is_some_and(|v| !v.is_boolean()) {
                return Err(ApiError::validation("payload.permanent: must be a boolean"));
            }
            Ok(())
        }
        JobType::LlmProcessing => roundhouse_llm::LlmJob::parse(payload)
            .map(|_| ())
            .map_err(|e| ApiError::validation(format!("payload.{e}"))),
        JobType::Notifications => roundhouse_core::notification::NotificationJob::parse(payload)
            .map(|_| ())
            .map_err(|e| ApiError::validation(format!("payload.{e}"))),
        JobType::RagIngestion => roundhouse_llm::RagJob::parse(payload)
            .map(|_| ())
            .map_err(|e| ApiError::validation(format!("payload.{e}"))),
        JobType::DataSync => roundhouse_db::DataSyncJob::parse(payload)
            .map(|_| ())
            .map_err(|e| ApiError::validation(format!("payload.{e}"))),
        _ => Ok(()),
    }
}

/// Query of `GET /api/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs in this status.
    pub status: Option<String>,
    /// Only jobs of this queue.
    pub queue: Option<String>,
    /// Only jobs of this type.
    pub job_type: Option<String>,
    /// The service: only this user's jobs (users see their own only).
    pub user_id: Option<String>,
    /// 1-500 (default 50).
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of jobs.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

/// The body of `POST /api/schedules` and `PUT /api/schedules/{id}`.
///
/// A create needs `name`, `cron` and `jobType`; the rest have defaults. An
/// update is partial: the fields present replace the stored ones, absent
/// (or `null`) fields keep them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleRequest {
    pub name: Option<String>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub queue: Option<String>,
    pub job_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
    pub priority: Option<i32>,
    pub max_retries: Option<i32>,
    pub timeout_seconds: Option<i32>,
    pub enabled: Option<bool>,
    /// `skip`, `run_once` or `catch_up`.
    pub misfire_policy: Option<String>,
    pub misfire_grace_seconds: Option<i32>,
    pub catch_up_limit: Option<i32>,
    pub jitter_seconds: Option<i32>,
    pub user_id: Option<String>,
}

/// A schedule that passed validation: its settings and its parsed cron.
#[derive(Debug)]
pub struct ValidSchedule {
    pub spec: ScheduleSpec,
    pub cron: CronSchedule,
}

impl ScheduleRequest {
    /// Validates a new schedule for `caller`; returns its owner (the user its
    /// jobs run as) and settings.
    pub fn into_new_schedule(
        self,
        caller: &Caller,
        custom: &CustomTypes,
    ) -> Result<(Option<String>, ValidSchedule), ApiError> {
        let owner = job_owner(caller, self.user_id.clone())?;
        let required = |value: &Option<String>, field: &str| {
            value
                .clone()
                .ok_or_else(|| ApiError::validation(format!("{field}: is required")))
        };
        // An unknown type fails validation below, before the queue is looked at.
        let default_queue = self
            .job_type
            .as_deref()
            .and_then(|name| JobKind::parse(name).ok())
            .and_then(|job_type| job_queue(&job_type, None, custom).ok())
            .map(|queue| queue.to_string())
            .unwrap_or_default();
        let base = ScheduleSpec {
            name: required(&self.name, "name")?,
            cron: required(&self.cron, "cron")?,
            timezone: "UTC".to_owned(),
            queue: default_queue,
            job_type: required(&self.job_type, "jobType")?,
            payload: serde_json::json!({}),
            priority: 0,
            max_retries: None,
            timeout_seconds: None,
            enabled: true,
            misfire_policy: MisfirePolicy::default().as_str().to_owned(),
            misfire_grace_seconds: 60,
            catch_up_limit: 100,
            jitter_seconds: 0,
        };
        Ok((owner, validate_schedule(caller, self.merge(base), custom)?))
    }

    /// Validates an update of `stored` by `caller`: the stored settings with
    /// the fields present in the request replaced.
    pub fn into_update(
        self,
        caller: &Caller,
        stored: &ScheduleRow,
        custom: &CustomTypes,
    ) -> Result<ValidSchedule, ApiError> {
        if self
            .user_id
            .as_ref()
            .is_some_and(|asked| Some(asked) != stored.owner_id.as_ref())
        {
            return Err(ApiError::validation(
                "userId: a schedule's owner cannot be changed; create a new schedule",
            ));
        }
        validate_schedule(caller, self.merge(ScheduleSpec::of(stored)), custom)
    }

    fn merge(self, base: ScheduleSpec) -> ScheduleSpec {
        ScheduleSpec {
            name: self.name.unwrap_or(base.name),
            cron: self.cron.unwrap_or(base.cron),
            timezone: self.timezone.unwrap_or(base.timezone),
            queue: self.queue.unwrap_or(base.queue),
            job_type: self.job_type.unwrap_or(base.job_type),
            payload: self.payload.unwrap_or(base.payload),
            priority: self.priority.unwrap_or(base.priority),
            max_retries: self.max_retries.or(base.max_retries),
            timeout_seconds: self.timeout_seconds.or(base.timeout_seconds),
            enabled: self.enabled.unwrap_or(base.enabled),
            misfire_policy: self.misfire_policy.unwrap_or(base.misfire_policy),
            misfire_grace_seconds: self
                .misfire_grace_seconds
                .unwrap_or(base.misfire_grace_seconds),
            catch_up_limit: self.catch_up_limit.unwrap_or(base.catch_up_limit),
            jitter_seconds: self.jitter_seconds.unwrap_or(base.jitter_seconds),
        }
    }
}

/// Checks every setting of `spec` (job fields with the enqueue rules); the
/// message of a refusal names the field. Normalises the queue name.
fn validate_schedule(
    caller: &Caller,
    mut spec: ScheduleSpec,
    custom: &CustomTypes,
) -> Result<ValidSchedule, ApiError> {
    let name_chars = spec.name.chars().count();
    if spec.name.trim().is_empty() || name_chars > 200 {
        return Err(ApiError::validation(
            "name: must be 1-200 characters, not all blank",
        ));
    }
    let cron = CronSchedule::parse(&spec.cron, &spec.timezone)
        .map_err(|e| ApiError::validation(format!("{}: {e}", e.field())))?;
    let job_type = job_type_for(caller, &spec.job_type, custom)?;
    spec.job_type = job_type.to_string();
    spec.queue = job_queue(&job_type, Some(&spec.queue), custom)?.to_string();
    spec.payload = job_payload(&job_type, Some(spec.payload))?;
    check_priority(spec.priority)?;
    spec.max_retries.map(check_max_retries).transpose()?;
    spec.timeout_seconds
        .map(check_timeout_seconds)
        .transpose()?;
    spec.misfire_policy.parse::<MisfirePolicy>().map_err(|e| {
        ApiError::validation(format!(
            "misfirePolicy: {e}; use skip, run_once or catch_up"
        ))
    })?;
    if !(0..=3600).contains(&spec.misfire_grace_seconds) {
        return Err(ApiError::validation(
            "misfireGraceSeconds: must be between 0 and 3600",
        ));
    }
    if !(1..=1000).contains(&spec.catch_up_limit) {
        return Err(ApiError::validation(
            "catchUpLimit: must be between 1 and 1000",
        ));
    }
    if !(0..=3600).contains(&spec.jitter_seconds) {
        return Err(ApiError::validation(
            "jitterSeconds: must be between 0 and 3600",
        ));
    }
    Ok(ValidSchedule { spec, cron })
}

/// A schedule as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleView {
    pub id: Uuid,
    pub name: String,
    pub cron: String,
    pub timezone: String,
    /// The cron in plain English ("At 02:30 AM").
    pub description: Option<String>,
    pub queue: String,
    pub job_type: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub priority: i32,
    /// `null`: the job type's default.
    pub max_retries: Option<i32>,
    /// `null`: the job type's default.
    pub timeout_seconds: Option<i32>,
    pub enabled: bool,
    pub misfire_policy: String,
    pub misfire_grace_seconds: i32,
    pub catch_up_limit: i32,
    pub jitter_seconds: i32,
    /// The owner, whom the jobs run as (`null`: the service).
    pub user_id: Option<String>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_job_id: Option<Uuid>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ScheduleRow> for ScheduleView {
    fn from(row: ScheduleRow) -> Self {
        let description = CronSchedule::parse(&row.cron, &row.timezone)
            .ok()
            .map(|cron| cron.describe());
        Self {
            id: row.id,
            name: row.name,
            cron: row.cron,
            timezone: row.timezone,
            description,
            queue: row.queue,
            job_type: row.job_type,
            payload: row.payload,
            priority: row.priority,
            max_retries: row.max_retries,
            timeout_seconds: row.timeout_seconds,
            enabled: row.enabled,
            misfire_policy: row.misfire_policy,
            misfire_grace_seconds: row.misfire_grace_seconds,
            catch_up_limit: row.catch_up_limit,
            jitter_seconds: row.jitter_seconds,
            user_id: row.owner_id,
            next_run_at: row.next_run_at,
            last_run_at: row.last_run_at,
            last_job_id: row.last_job_id,
            last_error: row.last_error,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Query of `GET /api/schedules`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ScheduleListQuery {
    /// 1-500 (default 50).
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of schedules, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulePage {
    pub schedules: Vec<ScheduleView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

/// The answer to a delete.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedView {
    pub id: Uuid,
    /// Always `true`.
    pub deleted: bool,
}
