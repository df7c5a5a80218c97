//! Where a sync's batches go: the target table, and the checkpoint that
//! follows each batch.

use std::time::Duration;

use roundhouse_db::{DataSyncJob, SyncCheckpoint, SyncDatabase, SyncTable, UpsertCounts};
use serde_json::{Value, json};

use super::{Limits, db_error};
use crate::handler::{HandlerError, JobContext};

/// The target table of one attempt, and the job's progress so far.
pub(super) struct Sink<'a> {
    ctx: &'a JobContext,
    target: SyncDatabase,
    table: SyncTable,
    /// The target is Roundhouse's own database: batch and checkpoint commit
    /// in one transaction.
    same_database: bool,
    statement_timeout: Duration,
    max_batch: usize,
    /// The last checkpoint committed (or an empty one before the first).
    pub(super) checkpoint: SyncCheckpoint,
    percent: u8,
}

impl<'a> Sink<'a> {
    /// Connects to the target database, checks the target table and reads
    /// the job's checkpoint.
    ///
    /// A target database other than Roundhouse's gets a pool of its own for
    /// this attempt, closed when it ends, rather than one cached per URL:
    /// syncs are long and few, so a connection set-up per attempt costs
    /// nothing that matters, and no idle connections to the user's database
    /// outlive the work.
    pub(super) async fn open(
        ctx: &'a JobContext,
        job: &DataSyncJob,
        limits: &Limits,
    ) -> Result<Sink<'a>, HandlerError> {
        let settings = ctx.settings();
        let url = settings.data_sync_database_url();
        let same_database = url == settings.database_url;
        let target = if same_database {
            SyncDatabase::of(&ctx.db, limits.statement_timeout)
        } else {
            SyncDatabase::connect_lazy(url, limits.statement_timeout).map_err(|e| {
                HandlerError::Permanent(format!("data_sync: DATA_SYNC_DATABASE_URL: {e}"))
            })?
        };
        let prepared = async {
            let table = target.prepare_target(&job.target).await?;
            let checkpoint = ctx.db.sync_checkpoint(ctx.job_id).await?;
            Ok::<_, roundhouse_db::DbError>((table, checkpoint))
        }
        .await;
        let (table, checkpoint) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                target.close().await;
                return Err(db_error(error));
            }
        };
        let checkpoint = checkpoint.unwrap_or_else(|| SyncCheckpoint {
            position: Value::Null,
            ..SyncCheckpoint::default()
        });
        Ok(Sink {
            ctx,
            target,
            table,
            same_database,
            statement_timeout: limits.statement_timeout,
            max_batch: limits.max_batch,
            percent: 0,
            checkpoint,
        })
    }

    /// The target table as the payload names it.
    pub(super) fn table(&self) -> &str {
        self.table.name()
    }

    /// Upserts one batch of `rows` (mapped from `read` source records) and
    /// then records that the sync continues at `position` (or is
    /// `finished`), then reports progress.
    pub(super) async fn write(
        &mut self,
        rows: Vec<Value>,
        read: usize,
        position: Value,
        finished: bool,
        total: Option<i64>,
    ) -> Result<(), HandlerError> {
        // A page larger than DATA_SYNC_MAX_BATCH is upserted in parts; only
        // the last carries the checkpoint. The earlier parts commit on their
        // own, which is harmless: a replay finds them unchanged.
        let split = rows.len().saturating_sub(1) / self.max_batch * self.max_batch;
        let (head, last) = rows.split_at(split);
        let mut counts = UpsertCounts::default();
        for part in head.chunks(self.max_batch) {
            add(
                &mut counts,
                self.target
                    .upsert(&self.table, part)
                    .await
                    .map_err(db_error)?,
            );
        }
        let previous = self.checkpoint.clone();
        let next = |counts: &UpsertCounts| SyncCheckpoint {
            attempt: self.ctx.attempt,
            position: position.clone(),
            finished,
            batches: previous.batches + i64::from(read > 0),
            records_read: previous.records_read + read as i64,
            inserted: previous.inserted + counts.inserted as i64,
            updated: previous.updated + counts.updated as i64,
            unchanged: previous.unchanged + counts.unchanged as i64,
            total: total.or(previous.total),
        };
        let saved = if self.same_database {
            let before = counts;
            self.ctx
                .db
                .upsert_sync_batch(
                    &self.table,
                    last,
                    self.statement_timeout,
                    self.ctx.job_id,
                    |part| {
                        let mut all = before;
                        add(&mut all, *part);
                        next(&all)
                    },
                )
                .await
                .map_err(db_error)?
                .map(|part| add(&mut counts, part))
                .is_some()
        } else {
            // Another database: its upsert and our checkpoint cannot share a
            // transaction. Upsert first, checkpoint second. A crash between
            // the two leaves the checkpoint one batch behind; the next attempt
            // replays that batch, and the idempotent upsert finds its rows
            // unchanged. (The other order could lose a batch.)
            add(
                &mut counts,
                self.target
                    .upsert(&self.table, last)
                    .await
                    .map_err(db_error)?,
            );
            self.ctx
                .db
                .save_sync_checkpoint(self.ctx.job_id, &next(&counts))
                .await
                .map_err(db_error)?
        };
        if !saved {
            return Err(HandlerError::Retry(
                "data_sync: this attempt was superseded; its last batch was not checkpointed"
                    .into(),
            ));
        }
        self.checkpoint = next(&counts);
        self.report_progress().await;
        Ok(())
    }

    async fn report_progress(&mut self) {
        let checkpoint = &self.checkpoint;
        let percent = match checkpoint.total {
            Some(total) if total > 0 => (checkpoint.records_read * 100 / total).min(99) as u8,
            // No total: an estimate that rises with every batch and never
            // claims to be done (64% after 10 batches, 88% after 20).
            _ => (99.0 * (1.0 - 0.9f64.powi(checkpoint.batches.min(1000) as i32))) as u8,
        };
        self.percent = self.percent.max(percent);
        let message = format!(
            "{} records (batch {})",
            checkpoint.records_read, checkpoint.batches
        );
        self.ctx.progress(self.percent, Some(&message)).await;
    }

    /// The job's result: `{syncType, recordsRead, inserted, updated,
    /// unchanged, batches, checkpoint}`.
    pub(super) fn result(&self, sync_type: &str) -> Value {
        let c = &self.checkpoint;
        json!({
            "syncType": sync_type,
            "table": self.table.name(),
            "recordsRead": c.records_read,
            "inserted": c.inserted,
            "updated": c.updated,
            "unchanged": c.unchanged,
            "batches": c.batches,
            "total": c.total,
            "checkpoint": c.position,
        })
    }

    /// Closes the target pool if it is one of our own.
    pub(super) async fn close(self) {
        self.target.close().await;
    }
}

fn add(sum: &mut UpsertCounts, part: UpsertCounts) {
    sum.rows += part.rows;
    sum.inserted += part.inserted;
    sum.updated += part.updated;
    sum.unchanged += part.unchanged;
}
