//! Batches successful completions into one fenced UPDATE.
//!
//! A finished attempt is queued here and its slot freed at once; the
//! completer writes whatever has accumulated in a single statement, so under
//! load hundreds of completions share one commit, and at low load a
//! completion is written immediately. A failed write is retried until it
//! succeeds or the worker stops: a finished job is never forgotten while
//! this process lives (and if it dies, the lease brings the job back).

use std::time::Duration;

use roundhouse_broker::Broker;
use roundhouse_core::JobEventsNote;
use roundhouse_db::{Completion, Db};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const MAX_BATCH: usize = 1000;

/// The running completer.
pub(crate) struct Completer {
    task: tokio::task::JoinHandle<()>,
    close: CancellationToken,
}

impl Completer {
    /// Stops taking completions, writes the ones already queued, and returns
    /// (giving up after `timeout` if the database stays unreachable: those
    /// jobs' leases expire and they run again).
    pub(crate) async fn finish(self, timeout: Duration) {
        self.close.cancel();
        let _ = tokio::time::timeout(timeout, self.task).await;
    }
}

pub(crate) fn spawn(db: Db, broker: Broker) -> (mpsc::Sender<(Completion, String)>, Completer) {
    let (tx, rx) = mpsc::channel(10_000);
    let close = CancellationToken::new();
    let task = tokio::spawn(run(db, broker, rx, close.clone()));
    (tx, Completer { task, close })
}

async fn run(
    db: Db,
    broker: Broker,
    mut rx: mpsc::Receiver<(Completion, String)>,
    close: CancellationToken,
) {
    let mut received_batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let received = tokio::select! {
            n = rx.recv_many(&mut received_batch, MAX_BATCH) => n,
            _ = close.cancelled(), if !rx.is_closed() => {
                // No more sends; what is queued is still received below.
                rx.close();
                continue;
            }
        };
        if received == 0 {
            return;
        }
        let (batch, queues): (Vec<Completion>, Vec<String>) = received_batch.drain(..).unzip();
        metrics::histogram!("roundhouse_completion_batch_size").record(batch.len() as f64);
        let mut delay = Duration::from_millis(50);
        loop {
            match db.complete_jobs(&batch).await {
                Ok(accepted) => {
                    // Wake the api replicas streaming these jobs.
                    let notes: Vec<JobEventsNote> = batch
                        .iter()
                        .zip(&queues)
                        .filter(|(c, _)| accepted.contains(&c.job_id))
                        .map(|(c, queue)| JobEventsNote {
                            job_id: c.job_id,
                            queue: queue.clone(),
                        })
                        .collect();
                    broker.announce_job_events(&notes).await;
                    let refused = batch.len() - accepted.len();
                    if refused > 0 {
                        metrics::counter!("roundhouse_completions_refused_total")
                            .increment(refused as u64);
                        tracing::info!(
                            refused,
                            "completions of superseded attempts were refused (cancelled or reaped jobs)"
                        );
                    }
                    break;
                }
                Err(error) => {
                    tracing::error!(%error, pending = batch.len(), retry_in = ?delay, "could not record completions");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
