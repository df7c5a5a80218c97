//! Listens for control broadcasts (cancellations) on this worker's private queue.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use roundhouse_core::ControlMessage;
use tokio_util::sync::CancellationToken;

use crate::running::StopReason;
use crate::startup::Shared;

pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let session = tokio::select! {
            s = shared.broker.session() => s,
            _ = stop.cancelled() => return,
        };
        let Some(session) = session else { return };
        let mut consumer = match session
            .consume_control(&format!("{}-control", shared.worker_id))
            .await
        {
            Ok(consumer) => consumer,
            Err(error) => {
                tracing::warn!(%error, "cannot consume control messages");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let delivery = tokio::select! {
                d = consumer.next() => d,
                _ = stop.cancelled() => return,
                _ = session.lost() => break,
            };
            let Some(Ok(delivery)) = delivery else { break };
            match serde_json::from_slice::<ControlMessage>(&delivery.data) {
                Ok(ControlMessage::Cancel { job_id }) => {
                    if shared.running.stop(job_id, StopReason::Superseded) {
                        tracing::info!(%job_id, "stopping cancelled job");
                    }
                }
                Err(error) => tracing::warn!(%error, "ignoring malformed control message"),
            }
        }
    }
}
