//! The queue gauges of `/metrics`: `roundhouse_queue_depth{queue,state}`
//! and `roundhouse_queue_oldest_waiting_seconds{queue}`, read from the job
//! table. The scheduler sets them because it is the one service that already
//! sweeps that table on a timer; with several replicas each reports the same
//! values, so dashboards take `max by (queue)`.

use std::collections::BTreeSet;
use std::time::Duration;

use roundhouse_db::{Db, DbError};
use tokio_util::sync::CancellationToken;

/// How often the gauges are refreshed: well under the usual 15–30 s scrape
/// interval, and one cheap query (it reads only the partial indexes of
/// unfinished jobs) every few seconds costs the database nothing.
pub const QUEUE_GAUGES_EVERY: Duration = Duration::from_secs(5);

/// The gauges, and every queue they have reported so far.
#[derive(Debug, Default)]
pub struct QueueGauges {
    /// A queue that no longer has a row (not configured, no unfinished
    /// jobs) is set to 0 rather than left at its last value.
    reported: BTreeSet<String>,
}

impl QueueGauges {
    /// Reads the depths once and sets every gauge.
    pub async fn refresh(&mut self, db: &Db) -> Result<(), DbError> {
        let depths = db.queue_depths().await?;
        let mut gone = std::mem::take(&mut self.reported);
        for depth in depths {
            gone.remove(&depth.queue);
            set(
                &depth.queue,
                [
                    depth.waiting as f64,
                    depth.scheduled as f64,
                    depth.running as f64,
                ],
                depth.oldest_waiting_seconds,
            );
            self.reported.insert(depth.queue);
        }
        for queue in gone {
            set(&queue, [0.0; 3], 0.0);
            self.reported.insert(queue);
        }
        Ok(())
    }

    /// Refreshes every [`QUEUE_GAUGES_EVERY`] until `stop` is cancelled.
    pub async fn run(mut self, db: Db, stop: CancellationToken) {
        let mut every = tokio::time::interval(QUEUE_GAUGES_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.cancelled() => return,
            }
            if let Err(error) = self.refresh(&db).await {
                // Stale gauges until the database answers again; `up` and
                // the health check say why.
                tracing::debug!(%error, "could not read queue depths");
            }
        }
    }
}

/// The state label values, in the order of `set`'s counts.
const STATES: [&str; 3] = ["waiting", "scheduled", "running"];

fn set(queue: &str, counts: [f64; 3], oldest_waiting_seconds: f64) {
    for (state, count) in STATES.into_iter().zip(counts) {
        metrics::gauge!("roundhouse_queue_depth", "queue" => queue.to_owned(), "state" => state)
            .set(count);
    }
    metrics::gauge!("roundhouse_queue_oldest_waiting_seconds", "queue" => queue.to_owned())
        .set(oldest_waiting_seconds);
}
