//! Publishes dispatch messages for jobs the API has just committed.
//!
//! The 202 is sent once the row is committed; publishing happens right after,
//! in batches, off the request path. A job whose publish fails, or that never
//! reaches this task (process crash, full channel), keeps a NULL
//! `dispatched_at` and the scheduler's sweep publishes it: nothing here needs
//! to survive a crash, and nothing is buffered beyond a bounded channel.
//!
//! The channel is small on purpose: when the broker is slower than the
//! inserts, enqueue requests wait for room (up to [`SEND_TIMEOUT`]) instead of
//! the backlog growing here until the sweep, seeing old undispatched rows,
//! publishes the same jobs a second time.

use roundhouse_broker::Broker;
use roundhouse_core::Dispatch;
use roundhouse_db::Db;
use tokio::sync::mpsc;

const MAX_BATCH: usize = 1000;
/// Dispatches waiting to be published, at most.
const CAPACITY: usize = 10_000;
/// How long an enqueue waits for room before leaving its job to the sweep.
pub const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::Sender<Dispatch>,
}

impl Dispatcher {
    pub fn spawn(db: Db, broker: Broker) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        (Self { tx }, tokio::spawn(run(db, broker, rx)))
    }

    /// Queues a dispatch, waiting briefly for room (back-pressure on
    /// enqueuers when the broker falls behind). A dispatch that finds no room
    /// is left to the sweep.
    pub async fn send(&self, dispatch: Dispatch) {
        if self.tx.send_timeout(dispatch, SEND_TIMEOUT).await.is_err() {
            metrics::counter!("roundhouse_dispatch_deferred_total").increment(1);
        }
    }
}

async fn run(db: Db, broker: Broker, mut rx: mpsc::Receiver<Dispatch>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let report = broker.publish_dispatches(&batch).await;
        batch.clear();
        if report.confirmed.is_empty() {
            continue;
        }
        // Marked off the publishing path, so the next batch goes out meanwhile.
        let db = db.clone();
        tokio::spawn(async move {
            if let Err(error) = db.mark_dispatched(&report.confirmed).await {
                // The messages are out; at worst the sweep sends duplicates,
                // which the workers' claims drop.
                tracing::warn!(%error, "could not mark jobs dispatched");
            }
        });
    }
}
