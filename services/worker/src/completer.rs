//! Batches successful completions into one fenced UPDATE.
//!
//! A finished attempt is queued here and its slot freed at once; the
//! completer writes whatever has accumulated in a single statement, so under
//! load hundreds of completions share one commit, and at low load a
//! completion is written immediately. A failed write is retried until it
//! succeeds or the worker stops: a finished job is never forgotten while
//! this process lives (and if it dies, the lease brings the job back).

use std::time::Duration;

use roundhouse_db::{Completion, Db};
use tokio::sync::mpsc;

const MAX_BATCH: usize = 1000;

pub(crate) fn spawn(db: Db) -> (mpsc::Sender<Completion>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(10_000);
    let task = tokio::spawn(run(db, rx));
    (tx, task)
}

async fn run(db: Db, mut rx: mpsc::Receiver<Completion>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Ends when every sender is dropped and the channel is drained.
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        metrics::histogram!("roundhouse_completion_batch_size").record(batch.len() as f64);
        let mut delay = Duration::from_millis(50);
        loop {
            match db.complete_jobs(&batch).await {
                Ok(accepted) => {
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
        batch.clear();
    }
}
