//! The dashboard's JSON endpoints (`/admin/api/…`), for signed-in operators.
//!
//! Reads and actions reuse the public API's handlers acting as the service,
//! so they behave exactly as `/api/…` does; what the dashboard adds is the
//! session check (with CSRF on every action, see [`Operator`]) and an audit
//! log entry for every action that changed something.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, DurationRound, Utc};
use roundhouse_auth::Principal;
use roundhouse_core::JobStatus;
use roundhouse_db::{AuditEntry, DeleteOutcome, JobFilter};
use roundhouse_http::{AdminCaller, ApiError, ApiJson, ApiQuery, Caller};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::AdminState;
use super::session::Operator;
use crate::dto::{JobView, ScheduleRequest, ScheduleView};
use crate::live::view::EventView;
use crate::routes::{events, jobs, queues, schedules};

/// The charts' window.
const CHART_MINUTES: i32 = 60;
/// Most failed jobs one bulk retry requeues.
const BULK_RETRY_LIMIT: i64 = 10_000;
/// Events shown on a job's page (the live stream continues after them).
const TIMELINE_LIMIT: i64 = 1_000;

fn service() -> Caller {
    Caller(Principal::Service)
}

fn admin() -> AdminCaller {
    AdminCaller(Principal::Service)
}

fn parse_id(id: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id)
        .map_err(|_| ApiError::bad_request("invalid_id", format!("{what} id must be a UUID")))
}

/// One minute of the charts.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Minute {
    minute: DateTime<Utc>,
    completed: i64,
    failed: i64,
}

/// `GET /admin/api/overview`: every queue's counts (as `/api/queues/stats`)
/// and, per minute of the last hour, how many jobs completed and failed.
pub async fn overview(
    State(state): State<AdminState>,
    _operator: Operator,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(stats) = queues::stats(State(state.app.clone()), admin()).await?;
    let counts = state
        .app
        .db
        .finished_per_minute(None, CHART_MINUTES)
        .await?;
    // Every minute of the window, zeros included, so charts need no gaps logic.
    let now = Utc::now()
        .duration_trunc(Duration::minutes(1))
        .map_err(ApiError::internal)?;
    let minutes: Vec<Minute> = (0..CHART_MINUTES)
        .rev()
        .map(|ago| {
            let minute = now - Duration::minutes(i64::from(ago));
            let found = counts.iter().find(|c| c.minute == minute);
            Minute {
                minute,
                completed: found.map_or(0, |c| c.completed),
                failed: found.map_or(0, |c| c.failed),
            }
        })
        .collect();
    Ok(Json(json!({
        "queues": stats["queues"],
        "minutes": minutes,
        "generatedAt": Utc::now(),
    })))
}

/// Filters of the job list and of bulk retry.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobQuery {
    status: Option<String>,
    queue: Option<String>,
    job_type: Option<String>,
    user_id: Option<String>,
    /// Text the job's error contains (any case).
    q: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

impl JobQuery {
    fn filter(&self) -> Result<JobFilter, ApiError> {
        let text = |value: &Option<String>| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let status = text(&self.status)
            .map(|s| {
                s.parse::<JobStatus>()
                    .map_err(|e| ApiError::validation(format!("status: {e}")))
            })
            .transpose()?;
        Ok(JobFilter {
            user_id: text(&self.user_id),
            status,
            queue: text(&self.queue),
            job_type: text(&self.job_type),
            error_contains: text(&self.q),
            ..JobFilter::default()
        })
    }
}

/// `GET /admin/api/jobs?status=&queue=&jobType=&userId=&q=&limit=&cursor=`.
pub async fn list_jobs(
    State(state): State<AdminState>,
    _operator: Operator,
    ApiQuery(query): ApiQuery<JobQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (limit, before) = roundhouse_http::page_request(query.limit, query.cursor.as_deref())?;
    let filter = JobFilter {
        before,
        limit: limit + 1,
        ..query.filter()?
    };
    let mut rows = state.app.db.list_jobs(&filter).await?;
    let next_cursor = roundhouse_http::cut_page(&mut rows, limit, |row| row.id);
    let jobs: Vec<JobView> = rows.into_iter().map(JobView::from).collect();
    Ok(Json(json!({ "jobs": jobs, "nextCursor": next_cursor })))
}

/// `GET /admin/api/jobs/{id}`: the job and its timeline.
pub async fn get_job(
    State(state): State<AdminState>,
    _operator: Operator,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id, "job")?;
    let db = &state.app.db;
    let job = db
        .get_job(id, None)
        .await?
        .ok_or_else(|| ApiError::not_found("job"))?;
    let events = db.job_events(id, 0, TIMELINE_LIMIT).await?;
    let events: Vec<EventView<'_>> = events.iter().map(EventView::from).collect();
    Ok(Json(json!({ "job": JobView::from(job), "events": events })))
}

/// `GET /admin/api/jobs/{id}/events`: the job's live event stream (SSE), as
/// `/api/jobs/{id}/events`.
pub async fn job_events(
    State(state): State<AdminState>,
    _operator: Operator,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: ApiQuery<events::EventsQuery>,
) -> Result<Response, ApiError> {
    events::stream_events(State(state.app), service(), Path(id), headers, query).await
}

/// `POST /admin/api/jobs/{id}/retry`.
pub async fn retry_job(
    State(state): State<AdminState>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = jobs::retry_job(State(state.app.clone()), service(), Path(id.clone())).await?;
    operator
        .audit(&state, "job.retry", Some(&id), json!({}))
        .await;
    Ok(job)
}

/// `POST /admin/api/jobs/{id}/cancel`.
pub async fn cancel_job(
    State(state): State<AdminState>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = jobs::cancel_job(State(state.app.clone()), service(), Path(id.clone())).await?;
    operator
        .audit(&state, "job.cancel", Some(&id), json!({}))
        .await;
    Ok(job)
}

/// `DELETE /admin/api/jobs/{id}`: a finished job and its events; a job
/// still queued, scheduled or running is 409 (cancel it first).
pub async fn delete_job(
    State(state): State<AdminState>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let job_id = parse_id(&id, "job")?;
    match state.app.db.delete_job(job_id).await? {
        DeleteOutcome::Deleted(job) => {
            operator
                .audit(
                    &state,
                    "job.delete",
                    Some(&id),
                    json!({ "jobType": job.job_type, "queue": job.queue, "status": job.status }),
                )
                .await;
            Ok(Json(json!({ "id": job_id, "deleted": true })))
        }
        DeleteOutcome::NotFinished(job) => Err(ApiError::conflict(format!(
            "job is {}; cancel it before deleting it",
            job.status
        ))),
        DeleteOutcome::NotFound => Err(ApiError::not_found("job")),
    }
}

/// `POST /admin/api/jobs/retry-failed` with the list's filters as the body:
/// requeues every failed job that matches (up to 10,000 per request).
pub async fn retry_failed(
    State(state): State<AdminState>,
    operator: Operator,
    ApiJson(query): ApiJson<JobQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let filter = query.filter()?;
    let requeued = state
        .app
        .db
        .retry_failed_jobs(&filter, BULK_RETRY_LIMIT)
        .await?;
    for job in &requeued {
        state.app.announce_events(job.id, &job.queue);
        jobs::dispatch_if_queued(&state.app, job).await;
    }
    let details = json!({
        "queue": filter.queue,
        "jobType": filter.job_type,
        "userId": filter.user_id,
        "errorContains": filter.error_contains,
        "retried": requeued.len(),
    });
    operator
        .audit(&state, "jobs.retry_failed", None, details)
        .await;
    Ok(Json(json!({ "retried": requeued.len() })))
}

/// `POST /admin/api/queues/{name}/pause`.
pub async fn pause_queue(
    State(state): State<AdminState>,
    operator: Operator,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let answer = queues::pause(State(state.app.clone()), admin(), Path(name.clone())).await?;
    operator
        .audit(&state, "queue.pause", Some(&name), json!({}))
        .await;
    Ok(answer)
}

/// `POST /admin/api/queues/{name}/resume`.
pub async fn resume_queue(
    State(state): State<AdminState>,
    operator: Operator,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let answer = queues::resume(State(state.app.clone()), admin(), Path(name.clone())).await?;
    operator
        .audit(&state, "queue.resume", Some(&name), json!({}))
        .await;
    Ok(answer)
}

/// `GET /admin/api/schedules`: every schedule (the first 500).
pub async fn list_schedules(
    State(state): State<AdminState>,
    _operator: Operator,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = state.app.db.list_schedules(None, None, 500).await?;
    let schedules: Vec<ScheduleView> = rows.into_iter().map(ScheduleView::from).collect();
    Ok(Json(json!({ "schedules": schedules })))
}

async fn set_schedule_enabled(
    state: AdminState,
    operator: Operator,
    id: String,
    enabled: bool,
) -> Result<Json<ScheduleView>, ApiError> {
    let request: ScheduleRequest =
        serde_json::from_value(json!({ "enabled": enabled })).map_err(ApiError::internal)?;
    let view = schedules::update_schedule(
        State(state.app.clone()),
        service(),
        Path(id.clone()),
        ApiJson(request),
    )
    .await?;
    let action = if enabled {
        "schedule.enable"
    } else {
        "schedule.disable"
    };
    operator
        .audit(&state, action, Some(&id), json!({ "name": view.name }))
        .await;
    Ok(view)
}

/// `POST /admin/api/schedules/{id}/enable`.
pub async fn enable_schedule(
    State(state): State<AdminState>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    set_schedule_enabled(state, operator, id, true).await
}

/// `POST /admin/api/schedules/{id}/disable`.
pub async fn disable_schedule(
    State(state): State<AdminState>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    set_schedule_enabled(state, operator, id, false).await
}

/// `POST /admin/api/schedules/{id}/trigger`: one job now (202 with the job).
pub async fn trigger_schedule(
    State(state): State<AdminState>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let response =
        schedules::trigger_schedule(State(state.app.clone()), service(), Path(id.clone())).await?;
    operator
        .audit(&state, "schedule.trigger", Some(&id), json!({}))
        .await;
    Ok(response.into_response())
}

/// Query of the audit log: `before` is the previous page's last id.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    before: Option<i64>,
    limit: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditView {
    id: i64,
    at: DateTime<Utc>,
    actor: String,
    action: String,
    target: Option<String>,
    details: serde_json::Value,
    client_ip: Option<String>,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        Self {
            id: e.id,
            at: e.at,
            actor: e.actor,
            action: e.action,
            target: e.target,
            details: e.details,
            client_ip: e.client_ip,
        }
    }
}

/// `GET /admin/api/audit?before=&limit=`: newest first.
pub async fn audit_log(
    State(state): State<AdminState>,
    _operator: Operator,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::validation("limit: must be between 1 and 500"));
    }
    let entries = state.app.db.audit_entries(query.before, limit).await?;
    let next = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let entries: Vec<AuditView> = entries.into_iter().map(AuditView::from).collect();
    Ok(Json(json!({ "entries": entries, "nextBefore": next })))
}
