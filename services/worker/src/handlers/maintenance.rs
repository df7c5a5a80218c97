//! `maintenance {action, parameters}`: retention, stuck-job requeue and
//! event vacuum.
//!
//! Every action is a loop of short statements over at most `batchSize` rows
//! (see `roundhouse_db::retention`), so it is safe on millions of rows: no
//! statement holds locks for long, other work interleaves between batches, and
//! a run that is stopped halfway has committed what it did and resumes on its
//! retry.

use roundhouse_db::{DbError, FinishedClass};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::handler::{HandlerError, JobContext, JobHandler};

const SECONDS_PER_DAY: f64 = 86_400.0;
/// Longer retentions are almost certainly a unit mistake, and would overflow
/// PostgreSQL's interval arithmetic long before they meant anything.
const MAX_RETENTION_DAYS: f64 = 36_500.0;
const MAX_BATCH_SIZE: i64 = 10_000;

pub(crate) struct Maintenance;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Payload {
    action: Action,
    #[serde(default)]
    parameters: Option<Value>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    CleanupCompletedJobs,
    RequeueStuckJobs,
    VacuumEvents,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CleanupParameters {
    /// For `completed` and `cancelled` jobs.
    #[serde(default = "seven")]
    retention_days: f64,
    #[serde(default = "thirty")]
    failed_retention_days: f64,
    /// For the notification delivery records that keep a reused
    /// idempotency key from notifying twice.
    #[serde(default = "ninety")]
    delivery_retention_days: f64,
    #[serde(default = "thousand")]
    batch_size: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RequeueParameters {
    #[serde(default = "thousand")]
    batch_size: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VacuumParameters {
    /// How many event ids each step of the walk covers.
    #[serde(default = "five_thousand")]
    batch_size: i64,
    #[serde(default = "yes")]
    vacuum: bool,
}

fn seven() -> f64 {
    7.0
}
fn ninety() -> f64 {
    90.0
}
fn thirty() -> f64 {
    30.0
}
fn thousand() -> i64 {
    1000
}
fn five_thousand() -> i64 {
    5000
}
fn yes() -> bool {
    true
}

#[async_trait::async_trait]
impl JobHandler for Maintenance {
    async fn run(&self, ctx: JobContext) -> Result<Value, HandlerError> {
        let payload: Payload = parse("payload", ctx.payload.clone())?;
        let parameters = payload.parameters.unwrap_or_else(|| json!({}));
        match payload.action {
            Action::CleanupCompletedJobs => {
                cleanup_completed_jobs(&ctx, parse("parameters", parameters)?).await
            }
            Action::RequeueStuckJobs => {
                requeue_stuck_jobs(&ctx, parse("parameters", parameters)?).await
            }
            Action::VacuumEvents => vacuum_events(&ctx, parse("parameters", parameters)?).await,
        }
    }
}

fn parse<T: DeserializeOwned>(what: &str, value: Value) -> Result<T, HandlerError> {
    serde_json::from_value(value)
        .map_err(|e| HandlerError::Permanent(format!("maintenance {what}: {e}")))
}

fn retention_seconds(field: &str, days: f64) -> Result<f64, HandlerError> {
    if !(0.0..=MAX_RETENTION_DAYS).contains(&days) {
        return Err(HandlerError::Permanent(format!(
            "maintenance parameters.{field}: must be a number of days between 0 and {MAX_RETENTION_DAYS}, got {days}"
        )));
    }
    Ok(days * SECONDS_PER_DAY)
}

fn batch_size(size: i64) -> Result<i64, HandlerError> {
    if !(1..=MAX_BATCH_SIZE).contains(&size) {
        return Err(HandlerError::Permanent(format!(
            "maintenance parameters.batchSize: must be between 1 and {MAX_BATCH_SIZE}, got {size}"
        )));
    }
    Ok(size)
}

/// A database error fails the attempt retryably: the batches already done
/// are committed, and the retry carries on from there.
fn retry(error: DbError) -> HandlerError {
    HandlerError::Retry(format!("maintenance: {error}"))
}

/// Between batches: give up the attempt if it was stopped (what is done
/// stays done; a retry finishes the rest), else let other tasks run.
async fn between_batches(ctx: &JobContext, batches: u64) -> Result<(), HandlerError> {
    if ctx.cancel.is_cancelled() {
        return Err(HandlerError::Retry(format!(
            "maintenance interrupted after {batches} batches"
        )));
    }
    tokio::task::yield_now().await;
    Ok(())
}

async fn cleanup_completed_jobs(
    ctx: &JobContext,
    parameters: CleanupParameters,
) -> Result<Value, HandlerError> {
    let passes = [
        (
            FinishedClass::CompletedOrCancelled,
            retention_seconds("retentionDays", parameters.retention_days)?,
        ),
        (
            FinishedClass::Failed,
            retention_seconds("failedRetentionDays", parameters.failed_retention_days)?,
        ),
    ];
    let limit = batch_size(parameters.batch_size)?;
    let mut deleted_jobs = [0u64; 2];
    let mut deleted_events = 0u64;
    let mut batches = 0u64;
    for (pass, (class, older_than)) in passes.into_iter().enumerate() {
        loop {
            between_batches(ctx, batches).await?;
            let deleted = ctx
                .db
                .delete_finished_jobs(class, older_than, limit)
                .await
                .map_err(retry)?;
            batches += 1;
            deleted_jobs[pass] += deleted.jobs;
            deleted_events += deleted.events;
            // A short batch means the class is done for now; rows skipped
            // because someone held them locked wait for the next run.
            if (deleted.jobs as i64) < limit {
                break;
            }
        }
        let message = match class {
            FinishedClass::CompletedOrCancelled => {
                format!("deleted {} completed or cancelled jobs", deleted_jobs[0])
            }
            FinishedClass::Failed => format!("deleted {} failed jobs", deleted_jobs[1]),
        };
        ctx.progress(50 * (pass as u8 + 1), Some(&message)).await;
    }
    let delivery_age =
        retention_seconds("deliveryRetentionDays", parameters.delivery_retention_days)?;
    let mut deleted_deliveries = 0u64;
    loop {
        between_batches(ctx, batches).await?;
        let deleted = ctx
            .db
            .delete_old_deliveries(delivery_age, limit)
            .await
            .map_err(retry)?;
        batches += 1;
        deleted_deliveries += deleted;
        if (deleted as i64) < limit {
            break;
        }
    }
    ctx.log(&format!(
        "cleanup: deleted {} completed or cancelled jobs, {} failed jobs, {} events and {} notification deliveries in {} batches",
        deleted_jobs[0], deleted_jobs[1], deleted_events, deleted_deliveries, batches
    ))
    .await;
    Ok(json!({
        "deletedJobs": {
            "completedOrCancelled": deleted_jobs[0],
            "failed": deleted_jobs[1],
        },
        "deletedEvents": deleted_events,
        "deletedDeliveries": deleted_deliveries,
        "batches": batches,
    }))
}

/// Attempts whose lease expired go back to `queued` (or `failed` with no
/// retries left), as the scheduler's reaper does. The worker does not
/// publish their dispatches: it clears `dispatched_at`, and the scheduler's
/// dispatch sweep sends them after its grace period. Should that step fail,
/// the jobs stay marked as dispatched and the sweep still resends them, only
/// later (after its redispatch interval).
async fn requeue_stuck_jobs(
    ctx: &JobContext,
    parameters: RequeueParameters,
) -> Result<Value, HandlerError> {
    let limit = batch_size(parameters.batch_size)?;
    let (mut requeued, mut failed, mut batches) = (0u64, 0u64, 0u64);
    loop {
        between_batches(ctx, batches).await?;
        let reaped = ctx.db.reap_expired_leases(limit).await.map_err(retry)?;
        batches += 1;
        let ids: Vec<_> = reaped.requeued.iter().map(|d| d.job_id).collect();
        if !ids.is_empty() {
            ctx.db.mark_undispatched(&ids).await.map_err(retry)?;
        }
        requeued += ids.len() as u64;
        failed += reaped.failed.len() as u64;
        if ((ids.len() + reaped.failed.len()) as i64) < limit {
            break;
        }
    }
    let message = format!("requeued {requeued} stuck jobs, failed {failed} out of retries");
    ctx.progress(100, Some(&message)).await;
    ctx.log(&format!("requeue: {message}")).await;
    Ok(json!({ "requeued": requeued, "failed": failed }))
}

/// Deletes events whose job is gone, walking the events by id window by
/// window, then optionally vacuums the job tables.
async fn vacuum_events(
    ctx: &JobContext,
    parameters: VacuumParameters,
) -> Result<Value, HandlerError> {
    let window = batch_size(parameters.batch_size)?;
    let (mut cursor, mut deleted, mut batches) = (0i64, 0u64, 0u64);
    loop {
        between_batches(ctx, batches).await?;
        let (gone, next) = ctx
            .db
            .delete_orphan_events(cursor, window)
            .await
            .map_err(retry)?;
        batches += 1;
        deleted += gone;
        match next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    let message = format!("deleted {deleted} orphan events");
    if parameters.vacuum {
        ctx.progress(50, Some(&message)).await;
        // A plain VACUUM blocks neither reads nor writes.
        ctx.db.vacuum_job_tables().await.map_err(retry)?;
        ctx.progress(100, Some("vacuumed the job tables")).await;
    } else {
        ctx.progress(100, Some(&message)).await;
    }
    ctx.log(&format!(
        "vacuum_events: {message} in {batches} batches{}",
        if parameters.vacuum {
            ", then vacuumed the job tables"
        } else {
            ""
        }
    ))
    .await;
    Ok(json!({ "deletedEvents": deleted, "vacuumed": parameters.vacuum }))
}
