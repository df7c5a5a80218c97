//! `/api/jobs`: enqueue, inspect, list, cancel, retry.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use roundhouse_core::{ControlMessage, Dispatch, JobStatus};
use roundhouse_db::{CancelOutcome, EnqueueOutcome, JobFilter, JobRow, NewJob, RetryOutcome};
use uuid::Uuid;

use crate::dto::{
    BatchAcceptedView, BatchRequest, EnqueueRequest, EnqueuedView, JobPage, JobView, ListQuery,
};
use crate::extract::{ApiJson, ApiQuery, Caller};
use crate::inserter::InsertError;
use crate::startup::AppState;
use roundhouse_http::ApiError;
use roundhouse_http::docs::{
    BadRequest, Conflict, Forbidden, InternalError, NotFound, PayloadTooLarge, TooManyRequests,
    Unauthorized, Unavailable, Unprocessable, UnsupportedMediaType,
};

/// Hands a just-committed job to the dispatcher, unless it waits for its `runAt`.
pub(crate) async fn dispatch_if_queued(state: &AppState, job: &JobRow) {
    if job.status() == JobStatus::Queued {
        state
            .dispatcher
            .send(Dispatch {
                job_id: job.id,
                queue: job.queue.clone(),
                priority: job.priority,
                traceparent: job.traceparent.clone(),
            })
            .await;
    }
}

/// Users may only use queues an operator configured (a `queues` row, which
/// the built-in queues have); the service may create queues by using them.
pub(crate) async fn check_queues<'a>(
    state: &AppState,
    caller: &Caller,
    queues: impl IntoIterator<Item = &'a str>,
) -> Result<(), ApiError> {
    if caller.owner().is_none() {
        return Ok(());
    }
    let mut names: Vec<String> = queues.into_iter().map(str::to_owned).collect();
    names.sort();
    names.dedup();
    match state.db.unconfigured_queues(&names).await?.first() {
        Some(name) => Err(ApiError::validation(format!(
            "queue: `{name}` is not a configured queue"
        ))),
        None => Ok(()),
    }
}

/// `POST /api/jobs/enqueue`: 202 with the new job, or 200 with the existing
/// job for a repeated idempotency key.
#[utoipa::path(
    post,
    path = "/api/jobs/enqueue",
    tag = "jobs",
    security(("userJwt" = []), ("serviceToken" = [])),
    request_body = EnqueueRequest,
    responses(
        (status = 202, description = "Accepted: the job is stored", body = EnqueuedView),
        (status = 200, description = "A repeated `idempotencyKey`: the existing job", body = EnqueuedView),
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
pub async fn enqueue(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<EnqueueRequest>,
) -> Result<Response, ApiError> {
    let custom = state
        .job_types
        .for_names([request.job_type.as_str()])
        .await?;
    let mut job = request.into_new_job(&caller, &custom)?;
    job.traceparent = roundhouse_telemetry::current_traceparent();
    check_queues(&state, &caller, [job.queue.as_str()]).await?;
    let EnqueueOutcome { job, created } = if job.idempotency_key.is_none() {
        let job = state
            .inserter
            .insert(job)
            .await
            .map_err(|error| match error {
                InsertError::Unavailable => ApiError::unavailable(
                    "the job store is unavailable; nothing was stored, try again",
                ),
                InsertError::Failed(detail) => ApiError::internal(detail),
            })?;
        EnqueueOutcome { job, created: true }
    } else {
        state
            .db
            .enqueue_jobs(std::slice::from_ref(&job))
            .await?
            .pop()
            .ok_or_else(|| ApiError::internal("enqueue returned no row"))?
    };
    if created {
        count_enqueued(&job);
        dispatch_if_queued(&state, &job).await;
    }
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(EnqueuedView {
            job_id: job.id,
            job: job.into(),
        }),
    )
        .into_response())
}

/// `POST /api/jobs`: the same as `POST /api/jobs/enqueue`.
#[utoipa::path(
    post,
    path = "/api/jobs",
    tag = "jobs",
    security(("userJwt" = []), ("serviceToken" = [])),
    request_body = EnqueueRequest,
    responses(
        (status = 202, description = "Accepted: the job is stored", body = EnqueuedView),
        (status = 200, description = "A repeated `idempotencyKey`: the existing job", body = EnqueuedView),
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
pub async fn enqueue_alias(
    state: State<AppState>,
    caller: Caller,
    request: ApiJson<EnqueueRequest>,
) -> Result<Response, ApiError> {
    enqueue(state, caller, request).await
}

/// `POST /api/jobs/batch`: all jobs in one transaction, or none.
#[utoipa::path(
    post,
    path = "/api/jobs/batch",
    tag = "jobs",
    security(("userJwt" = []), ("serviceToken" = [])),
    request_body = BatchRequest,
    responses(
        (status = 202, description = "Accepted: all the jobs are stored", body = BatchAcceptedView),
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
pub async fn enqueue_batch(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<BatchRequest>,
) -> Result<Response, ApiError> {
    if request.jobs.is_empty() {
        return Err(ApiError::validation("jobs: must not be empty"));
    }
    if request.jobs.len() > state.settings.batch_max_jobs {
        return Err(ApiError::payload_too_large(format!(
            "jobs: at most {} jobs per batch",
            state.settings.batch_max_jobs
        )));
    }
    let custom = state
        .job_types
        .for_names(request.jobs.iter().map(|job| job.job_type.as_str()))
        .await?;
    let traceparent = roundhouse_telemetry::current_traceparent();
    let jobs = request
        .jobs
        .into_iter()
        .enumerate()
        .map(|(index, job)| {
            job.into_new_job(&caller, &custom)
                .map(|job| NewJob {
                    traceparent: traceparent.clone(),
                    ..job
                })
                .map_err(|error| error.prefixed(&format!("jobs[{index}]")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_queues(&state, &caller, jobs.iter().map(|job| job.queue.as_str())).await?;
    let outcomes = state.db.enqueue_jobs(&jobs).await?;
    for outcome in outcomes.iter().filter(|o| o.created) {
        count_enqueued(&outcome.job);
        dispatch_if_queued(&state, &outcome.job).await;
    }
    let ids: Vec<Uuid> = outcomes.iter().map(|o| o.job.id).collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchAcceptedView { job_ids: ids }),
    )
        .into_response())
}

/// Counts a new job in `roundhouse_jobs_enqueued_total{queue,job_type}`
/// (job types are the built-in ones and those an admin registered).
pub(crate) fn count_enqueued(job: &JobRow) {
    metrics::counter!(
        "roundhouse_jobs_enqueued_total",
        "queue" => job.queue.clone(),
        "job_type" => job.job_type.clone(),
    )
    .increment(1);
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::bad_request("invalid_id", "job id must be a UUID"))
}

/// `GET /api/jobs/{id}` and `/api/jobs/{id}/status`.
#[utoipa::path(
    get,
    path = "/api/jobs/{id}",
    tag = "jobs",
    security(("userJwt" = []), ("serviceToken" = [])),
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = parse_id(&id)?;
    let job = state
        .db
        .get_job(id, caller.owner())
        .await?
        .ok_or_else(|| ApiError::not_found("job"))?;
    Ok(Json(job.into()))
}

/// `GET /api/jobs/{id}/status`: the same as `GET /api/jobs/{id}`.
#[utoipa::path(
    get,
    path = "/api/jobs/{id}/status",
    tag = "jobs",
    security(("userJwt" = []), ("serviceToken" = [])),
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get_job_status(
    state: State<AppState>,
    caller: Caller,
    id: Path<String>,
) -> Result<Json<JobView>, ApiError> {
    get_job(state, caller, id).await
}

/// `GET /api/jobs`: newest first; users see their own jobs only.
#[utoipa::path(
    get,
    path = "/api/jobs",
    tag = "jobs",
    security(("userJwt" = []), ("serviceToken" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of jobs, newest first", body = JobPage),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<JobPage>, ApiError> {
    let (limit, before) = roundhouse_http::page_request(query.limit, query.cursor.as_deref())?;
    let status = query
        .status
        .as_deref()
        .map(str::parse::<JobStatus>)
        .transpose()
        .map_err(|e| ApiError::validation(format!("status: {e}")))?;
    let user_id = match caller.owner() {
        Some(own) => {
            if query.user_id.as_deref().is_some_and(|asked| asked != own) {
                return Err(ApiError::forbidden(
                    "userId: users can only list their own jobs",
                ));
            }
            Some(own.to_owned())
        }
        None => query.user_id,
    };
    let mut rows = state
        .db
        .list_jobs(&JobFilter {
            user_id,
            status,
            queue: query.queue,
            job_type: query.job_type,
            before,
            error_contains: None,
            limit: limit + 1,
        })
        .await?;
    let next_cursor = roundhouse_http::cut_page(&mut rows, limit, |row| row.id);
    Ok(Json(JobPage {
        jobs: rows.into_iter().map(JobView::from).collect(),
        next_cursor,
    }))
}

/// `DELETE /api/jobs/{id}`: cancel. 409 when the job already finished.
#[utoipa::path(
    delete,
    path = "/api/jobs/{id}",
    tag = "jobs",
    security(("userJwt" = []), ("serviceToken" = [])),
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The cancelled job", body = JobView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn cancel_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = parse_id(&id)?;
    match state.db.cancel_job(id, caller.owner()).await? {
        CancelOutcome::Cancelled { job, was_running } => {
            state.announce_events(job.id, &job.queue);
            if was_running {
                // Best effort: workers also notice at their next heartbeat.
                let broker = state.broker.clone();
                tokio::spawn(async move {
                    if let Err(error) = broker
                        .publish_control(&ControlMessage::Cancel { job_id: id })
                        .await
                    {
                        tracing::warn!(%error, job_id = %id, "cancel broadcast failed; the worker will notice at its next heartbeat");
                    }
                });
            }
            Ok(Json(job.into()))
        }
        CancelOutcome::AlreadyTerminal(job) => {
            Err(ApiError::conflict(format!("job is already {}", job.status)))
        }
        CancelOutcome::NotFound => Err(ApiError::not_found("job")),
    }
}

/// `POST /api/jobs/{id}/retry`: failed or cancelled → queued.
#[utoipa::path(
    post,
    path = "/api/jobs/{id}/retry",
    tag = "jobs",
    security(("userJwt" = []), ("serviceToken" = [])),
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job, queued again", body = JobView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn retry_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = parse_id(&id)?;
    match state.db.retry_job(id, caller.owner()).await? {
        RetryOutcome::Requeued(job) => {
            state.announce_events(job.id, &job.queue);
            dispatch_if_queued(&state, &job).await;
            Ok(Json(job.into()))
        }
        RetryOutcome::NotRetryable(job) => Err(ApiError::conflict(format!(
            "only failed or cancelled jobs can be retried; this one is {}",
            job.status
        ))),
        RetryOutcome::NotFound => Err(ApiError::not_found("job")),
    }
}
