//! `/api/schedules`: cron schedules, changed at runtime, and manual triggers.
//!
//! The service and admins manage every schedule; a user manages their own
//! (another user's schedule is 404, as with jobs). The scheduler service
//! fires the ticks; this module only stores what it should fire.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use roundhouse_db::ScheduledJob;
use uuid::Uuid;

use crate::dto::{
    DeletedView, EnqueuedView, ScheduleListQuery, SchedulePage, ScheduleRequest, ScheduleView,
    ValidSchedule, job_type_for,
};
use crate::extract::{ApiJson, ApiQuery, Caller};
use crate::routes::jobs::{check_queues, count_enqueued, dispatch_if_queued};
use crate::startup::AppState;
use roundhouse_http::ApiError;
use roundhouse_http::docs::{
    BadRequest, Conflict, Forbidden, InternalError, NotFound, PayloadTooLarge, TooManyRequests,
    Unauthorized, Unavailable, Unprocessable, UnsupportedMediaType,
};

/// The owner a caller's schedule queries are scoped to: `None` (all) for the
/// service and admins, the user otherwise. Broader than jobs, where admins
/// see their own: operators look after everyone's schedules.
fn scope(caller: &Caller) -> Option<&str> {
    if caller.0.is_admin() {
        None
    } else {
        caller.owner()
    }
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id)
        .map_err(|_| ApiError::bad_request("invalid_id", "schedule id must be a UUID"))
}

/// The tick a schedule waits for first, from now.
fn first_tick(schedule: &ValidSchedule) -> Result<chrono::DateTime<Utc>, ApiError> {
    schedule
        .cron
        .next_after(Utc::now())
        .ok_or_else(|| ApiError::validation("cron: never fires"))
}

/// `GET /api/schedules`: oldest first.
#[utoipa::path(
    get,
    path = "/api/schedules",
    tag = "schedules",
    security(("userJwt" = []), ("serviceToken" = [])),
    params(ScheduleListQuery),
    responses(
        (status = 200, description = "A page of schedules, oldest first (users: their own)", body = SchedulePage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list_schedules(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ScheduleListQuery>,
) -> Result<Json<SchedulePage>, ApiError> {
    let (limit, after) = roundhouse_http::page_request(query.limit, query.cursor.as_deref())?;
    let mut rows = state
        .db
        .list_schedules(scope(&caller), after, limit + 1)
        .await?;
    let next_cursor = roundhouse_http::cut_page(&mut rows, limit, |row| row.id);
    Ok(Json(SchedulePage {
        schedules: rows.into_iter().map(ScheduleView::from).collect(),
        next_cursor,
    }))
}

/// `POST /api/schedules`: 201 with the schedule, waiting for its first tick.
#[utoipa::path(
    post,
    path = "/api/schedules",
    tag = "schedules",
    security(("userJwt" = []), ("serviceToken" = [])),
    request_body(content = ScheduleRequest, description = "`name`, `cron` and `jobType` are required"),
    responses(
        (status = 201, description = "The schedule, waiting for its first tick", body = ScheduleView),
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
pub async fn create_schedule(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<ScheduleRequest>,
) -> Result<Response, ApiError> {
    let custom = state
        .job_types
        .for_names(request.job_type.as_deref())
        .await?;
    let (owner, schedule) = request.into_new_schedule(&caller, &custom)?;
    check_queues(&state, &caller, [schedule.spec.queue.as_str()]).await?;
    let next_run_at = first_tick(&schedule)?;
    let row = state
        .db
        .create_schedule(
            Uuid::now_v7(),
            owner.as_deref(),
            &schedule.spec,
            Some(next_run_at),
        )
        .await?;
    tracing::info!(schedule_id = %row.id, name = %row.name, cron = %row.cron, "schedule created");
    Ok((StatusCode::CREATED, Json(ScheduleView::from(row))).into_response())
}

/// `GET /api/schedules/{id}`.
#[utoipa::path(
    get,
    path = "/api/schedules/{id}",
    tag = "schedules",
    security(("userJwt" = []), ("serviceToken" = [])),
    params(("id" = Uuid, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    let id = parse_id(&id)?;
    let row = state
        .db
        .get_schedule(id, scope(&caller))
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))?;
    Ok(Json(row.into()))
}

/// `PUT /api/schedules/{id}`: the fields present replace the stored ones.
///
/// `nextRunAt` is recomputed from now only when the cron or the timezone
/// changed. Otherwise the schedule keeps waiting for the tick it was waiting
/// for, even across a disable and re-enable: ticks that passed meanwhile are
/// then misfires, and the scheduler applies the schedule's misfire policy
/// to them (skip, run once, or catch up) instead of silently dropping them.
#[utoipa::path(
    put,
    path = "/api/schedules/{id}",
    tag = "schedules",
    security(("userJwt" = []), ("serviceToken" = [])),
    params(("id" = Uuid, Path, description = "The schedule's id")),
    request_body(content = ScheduleRequest, description = "The fields to change"),
    responses(
        (status = 200, description = "The updated schedule", body = ScheduleView),
        (status = 400, response = BadRequest),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn update_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ScheduleRequest>,
) -> Result<Json<ScheduleView>, ApiError> {
    let id = parse_id(&id)?;
    let scope = scope(&caller);
    let stored = state
        .db
        .get_schedule(id, scope)
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))?;
    let custom = state
        .job_types
        .for_names([request.job_type.as_deref().unwrap_or(&stored.job_type)])
        .await?;
    let schedule = request.into_update(&caller, &stored, &custom)?;
    if schedule.spec.queue != stored.queue {
        check_queues(&state, &caller, [schedule.spec.queue.as_str()]).await?;
    }
    let next_run_at =
        if schedule.spec.cron != stored.cron || schedule.spec.timezone != stored.timezone {
            Some(Some(first_tick(&schedule)?))
        } else {
            None
        };
    let row = state
        .db
        .update_schedule(id, scope, &schedule.spec, next_run_at)
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))?;
    tracing::info!(schedule_id = %row.id, name = %row.name, enabled = row.enabled, "schedule updated");
    Ok(Json(row.into()))
}

/// `DELETE /api/schedules/{id}`: jobs it already created stay.
#[utoipa::path(
    delete,
    path = "/api/schedules/{id}",
    tag = "schedules",
    security(("userJwt" = []), ("serviceToken" = [])),
    params(("id" = Uuid, Path, description = "The schedule's id")),
    responses(
        (status = 200, description = "Deleted; the jobs it created stay", body = DeletedView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn delete_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DeletedView>, ApiError> {
    let id = parse_id(&id)?;
    if !state.db.delete_schedule(id, scope(&caller)).await? {
        return Err(ApiError::not_found("schedule"));
    }
    tracing::info!(schedule_id = %id, "schedule deleted");
    Ok(Json(DeletedView { id, deleted: true }))
}

/// `POST /api/schedules/{id}/trigger`: one job now, outside the cron (also
/// for a disabled schedule); 202 with the job, as an enqueue answers.
#[utoipa::path(
    post,
    path = "/api/schedules/{id}/trigger",
    tag = "schedules",
    security(("userJwt" = []), ("serviceToken" = [])),
    params(("id" = Uuid, Path, description = "The schedule's id")),
    responses(
        (status = 202, description = "The job it created", body = EnqueuedView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn trigger_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let schedule = state
        .db
        .get_schedule(id, scope(&caller))
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))?;
    // The same gate as an enqueue: whoever owns the schedule, a user may
    // not start a job type reserved to operators.
    let custom = state
        .job_types
        .for_names([schedule.job_type.as_str()])
        .await?;
    let job_type = job_type_for(&caller, &schedule.job_type, &custom)?;
    let job = state
        .db
        .trigger_schedule(
            &schedule,
            &ScheduledJob {
                id: Uuid::now_v7(),
                tick: None,
                max_retries: schedule
                    .max_retries
                    .unwrap_or_else(|| job_type.default_max_retries()),
                timeout_seconds: schedule
                    .timeout_seconds
                    .unwrap_or_else(|| job_type.default_timeout_seconds()),
                // Now, on the database's clock: the job is queued at once.
                run_at: None,
            },
        )
        .await?;
    count_enqueued(&job);
    tracing::info!(schedule_id = %id, job_id = %job.id, "schedule triggered");
    dispatch_if_queued(&state, &job).await;
    Ok((
        StatusCode::ACCEPTED,
        Json(EnqueuedView {
            job_id: job.id,
            job: job.into(),
        }),
    )
        .into_response())
}
