//! One consumer loop per queue: take deliveries while slots are free, claim
//! them in one statement, acknowledge, and start the claimed attempts.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use roundhouse_broker::{BasicAckOptions, BasicNackOptions, Delivery};
use roundhouse_core::{DispatchMessage, QueueName};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::execute::execute;
use crate::startup::Shared;

/// Most deliveries claimed in one statement.
const MAX_CLAIM_BATCH: usize = 256;
/// An ack or nack that takes longer is on a dead channel.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn run(
    shared: Arc<Shared>,
    queue: QueueName,
    slots: usize,
    tasks: TaskTracker,
    stop: CancellationToken,
) {
    let semaphore = Arc::new(Semaphore::new(slots));
    // Prefetch matches the slots: deliveries beyond them would only wait
    // unacknowledged in this process.
    let prefetch = u16::try_from(slots).unwrap_or(u16::MAX);
    let tag = format!("{}-{}", shared.worker_id, queue);
    loop {
        let session = tokio::select! {
            s = shared.broker.session() => s,
            _ = stop.cancelled() => return,
        };
        let Some(session) = session else { return };
        let subscribed = tokio::time::timeout(
            Duration::from_secs(10),
            session.consume_job_queue(queue.as_str(), prefetch, &tag),
        )
        .await;
        let mut consumer = match subscribed {
            Ok(Ok(consumer)) => consumer,
            Ok(Err(error)) => {
                tracing::warn!(%error, %queue, "cannot consume queue; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => {
                tracing::warn!(%queue, "subscribing timed out; retrying");
                continue;
            }
        };
        tracing::info!(%queue, slots, "consuming");
        loop {
            // A slot first, then a delivery: never take work we cannot start.
            let permit = tokio::select! {
                p = semaphore.clone().acquire_owned() => p.expect("semaphore is never closed"),
                _ = stop.cancelled() => return,
            };
            let first = tokio::select! {
                d = consumer.next() => d,
                _ = stop.cancelled() => return,
                _ = session.lost() => {
                    tracing::warn!(%queue, "connection lost; resubscribing");
                    break;
                }
            };
            let first = match first {
                Some(Ok(delivery)) => delivery,
                Some(Err(error)) => {
                    tracing::warn!(%error, %queue, "consumer failed; resubscribing");
                    break;
                }
                None => {
                    tracing::warn!(%queue, "consumer ended (connection lost?); resubscribing");
                    break;
                }
            };
            let mut batch = vec![(first, permit)];
            // Take whatever else is already here, as long as slots remain.
            while batch.len() < MAX_CLAIM_BATCH {
                let Ok(permit) = semaphore.clone().try_acquire_owned() else {
                    break;
                };
                match consumer.next().now_or_never() {
                    Some(Some(Ok(delivery))) => batch.push((delivery, permit)),
                    _ => break,
                }
            }
            if !claim_and_start(&shared, &queue, batch, &tasks).await {
                tracing::warn!(%queue, "channel unusable; resubscribing");
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Claims the batch, starts what was claimed, and acknowledges the
/// deliveries. Returns false when the channel can no longer be used.
async fn claim_and_start(
    shared: &Arc<Shared>,
    queue: &QueueName,
    batch: Vec<(Delivery, OwnedSemaphorePermit)>,
    tasks: &TaskTracker,
) -> bool {
    let ids: Vec<Uuid> = batch
        .iter()
        .filter_map(|(delivery, _)| {
            match serde_json::from_slice::<DispatchMessage>(&delivery.data) {
                Ok(message) => Some(message.job_id),
                Err(error) => {
                    tracing::warn!(%error, %queue, "dropping a malformed dispatch message");
                    None
                }
            }
        })
        .collect();
    metrics::histogram!("roundhouse_claim_batch_size").record(batch.len() as f64);
    let claimed = match shared
        .db
        .claim_jobs(
            &ids,
            &shared.worker_id,
            shared.settings.worker_lease().as_secs_f64(),
        )
        .await
    {
        Ok(claimed) => claimed,
        Err(error) => {
            // Nothing was claimed: give the messages back to the broker.
            tracing::error!(%error, %queue, "claim failed; requeueing deliveries");
            for (delivery, _) in &batch {
                let nack = delivery.acker.nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                });
                if !matches!(tokio::time::timeout(ACK_TIMEOUT, nack).await, Ok(Ok(_))) {
                    return false;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            return true;
        }
    };
    let skipped = batch.len() - claimed.len();
    if skipped > 0 {
        metrics::counter!("roundhouse_dispatch_dropped_total", "queue" => queue.to_string())
            .increment(skipped as u64);
    }
    // The claims are committed: start the jobs whatever happens to the
    // deliveries from here on.
    let (deliveries, mut permits): (Vec<Delivery>, Vec<OwnedSemaphorePermit>) =
        batch.into_iter().unzip();
    for job in claimed {
        let permit = permits.pop().expect("one permit per delivery");
        tasks.spawn(execute(shared.clone(), job, permit));
    }
    // PostgreSQL's lease now protects these jobs, so the deliveries can go
    // (one multiple-ack covers the whole batch, since every earlier delivery
    // on this channel has been handled already). Unclaimed deliveries were
    // stale duplicates or for a paused queue. An ack that fails or hangs
    // means the channel is gone: the broker will redeliver, and the claims
    // will drop the duplicates.
    let last = deliveries.last().expect("batch is never empty");
    match tokio::time::timeout(
        ACK_TIMEOUT,
        last.acker.ack(BasicAckOptions { multiple: true }),
    )
    .await
    {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => {
            tracing::debug!(%error, "ack failed");
            false
        }
        Err(_) => false,
    }
}
