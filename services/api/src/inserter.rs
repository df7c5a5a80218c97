//! Group commit for single enqueues.
//!
//! Concurrent `POST /api/jobs/enqueue` requests without an idempotency key
//! are stored together: whatever arrived while the previous INSERTs ran goes
//! into one multi-row INSERT, and each request is answered once the
//! statement holding its row has committed. At low load a request is
//! inserted at once, alone; under load one statement and one WAL flush
//! serve hundreds of requests. (Requests with an idempotency key take the
//! transactional path in `Db::enqueue_jobs` on their own.)

use std::sync::Arc;

use roundhouse_db::{Db, DbError, JobRow, NewJob};
use tokio::sync::{Semaphore, mpsc, oneshot};

const MAX_BATCH: usize = 500;
/// INSERT statements in flight at once.
const CONCURRENCY: usize = 4;

/// Why a grouped insert failed, for every request in the group.
#[derive(Debug, Clone)]
pub enum InsertError {
    /// PostgreSQL could not be reached: nothing was stored.
    Unavailable,
    /// The statement failed; the detail is for the log.
    Failed(String),
}

type Reply = oneshot::Sender<Result<JobRow, InsertError>>;

#[derive(Clone)]
pub struct Inserter {
    tx: mpsc::Sender<(NewJob, Reply)>,
}

impl Inserter {
    pub fn spawn(db: Db) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(db, rx));
        Self { tx }
    }

    /// Stores one job (without an idempotency key) and returns its row once committed.
    pub async fn insert(&self, job: NewJob) -> Result<JobRow, InsertError> {
        debug_assert!(job.idempotency_key.is_none());
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((job, reply))
            .await
            .map_err(|_| InsertError::Failed("inserter stopped".into()))?;
        answer
            .await
            .map_err(|_| InsertError::Failed("inserter dropped the request".into()))?
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<(NewJob, Reply)>) {
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        // Wait for a free statement slot first: requests pile up meanwhile
        // and form the next, larger group.
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let group: Vec<(NewJob, Reply)> = std::mem::take(&mut batch);
        let db = db.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (jobs, replies): (Vec<NewJob>, Vec<Reply>) = group.into_iter().unzip();
            metrics::histogram!("roundhouse_enqueue_group_size").record(jobs.len() as f64);
            match db.enqueue_jobs(&jobs).await {
                Ok(outcomes) => {
                    // enqueue_jobs answers in input order, one row per job.
                    for (outcome, reply) in outcomes.into_iter().zip(replies) {
                        let _ = reply.send(Ok(outcome.job));
                    }
                }
                Err(error) => {
                    let shared = match &error {
                        e if e.is_unavailable() => InsertError::Unavailable,
                        other => InsertError::Failed(other.to_string()),
                    };
                    log_failure(&error, jobs.len());
                    for reply in replies {
                        let _ = reply.send(Err(shared.clone()));
                    }
                }
            }
        });
    }
}

fn log_failure(error: &DbError, count: usize) {
    tracing::error!(%error, count, "grouped enqueue failed; nothing in the group was stored");
}
