//! Consumes job event notes on this replica's private auto-delete queue
//! (bound to `{prefix}.events`) and wakes the feed. Reconnects with the
//! broker; while RabbitMQ is away, the feed's poll carries on alone.

use std::time::Duration;

use futures::StreamExt;
use roundhouse_broker::Broker;
use roundhouse_core::JobEventsNote;

use super::Feed;

/// Runs until the feed closes.
pub async fn run(broker: Broker, feed: Feed) {
    let closing = feed.closing().clone();
    let tag = format!("api-{}-events", std::process::id());
    loop {
        let session = tokio::select! {
            session = broker.session() => session,
            () = closing.cancelled() => return,
        };
        let Some(session) = session else { return };
        let mut consumer = match session.consume_job_events(&tag).await {
            Ok(consumer) => consumer,
            Err(error) => {
                tracing::warn!(%error, "cannot consume job event notes");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = closing.cancelled() => return,
                }
            }
        };
        // Notes sent while no queue existed are lost: poll once now.
        feed.wake();
        loop {
            let delivery = tokio::select! {
                delivery = consumer.next() => delivery,
                () = session.lost() => break,
                () = closing.cancelled() => return,
            };
            let Some(Ok(delivery)) = delivery else { break };
            match serde_json::from_slice::<JobEventsNote>(&delivery.data) {
                Ok(note) => feed.note(note.job_id),
                Err(error) => tracing::debug!(%error, "ignoring a malformed job event note"),
            }
        }
    }
}
