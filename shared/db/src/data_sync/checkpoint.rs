//! `data_sync_checkpoints`: how far each sync has got.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{Db, DbError};

/// A sync's progress after its last committed batch. The counters add up
/// over every attempt of the job.
#[derive(Debug, Clone, PartialEq, Eq, Default, sqlx::FromRow)]
pub struct SyncCheckpoint {
    /// The attempt that wrote it: the fencing token of the write.
    pub attempt: i32,
    /// Where the next batch starts (`{"cursor": …}`, `{"page": n}`,
    /// `{"lastKey": […]}`).
    pub position: Value,
    /// The source is exhausted.
    pub finished: bool,
    pub batches: i64,
    pub records_read: i64,
    pub inserted: i64,
    pub updated: i64,
    pub unchanged: i64,
    /// How many records the source has in all, when it says.
    pub total: Option<i64>,
}

impl Db {
    /// The job's checkpoint, if a batch of it was ever committed.
    pub async fn sync_checkpoint(&self, job_id: Uuid) -> Result<Option<SyncCheckpoint>, DbError> {
        Ok(sqlx::query_as(
            r#"
            SELECT attempt, position, finished, batches, records_read, inserted, updated,
                   unchanged, total
              FROM data_sync_checkpoints WHERE job_id = $1
            "#,
        )
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records `checkpoint` for attempt `checkpoint.attempt` of `job_id`.
    /// Returns false, writing nothing, when that attempt is no longer
    /// current (see [`save_checkpoint`]).
    pub async fn save_sync_checkpoint(
        &self,
        job_id: Uuid,
        checkpoint: &SyncCheckpoint,
    ) -> Result<bool, DbError> {
        let mut conn = self.pool.acquire().await?;
        save_checkpoint(&mut conn, job_id, checkpoint).await
    }
}

/// The fenced checkpoint write, on `conn` (inside the batch's transaction
/// when the target is this database).
///
/// Two fences, as for progress and completion: the job must still be
/// `processing` under this attempt, and a row written by a later attempt is
/// never overwritten. The second matters when a superseded attempt's
/// statement began before the job was re-claimed: its write then finds the
/// newer attempt's row and leaves it alone, so the checkpoint never moves
/// backwards.
pub(super) async fn save_checkpoint(
    conn: &mut PgConnection,
    job_id: Uuid,
    checkpoint: &SyncCheckpoint,
) -> Result<bool, DbError> {
    let written: Option<Uuid> = sqlx::query_scalar(
        r#"
        INSERT INTO data_sync_checkpoints AS c
               (job_id, attempt, position, finished, batches, records_read, inserted,
                updated, unchanged, total, updated_at)
        SELECT j.id, $2, $3, $4, $5, $6, $7, $8, $9, $10, now()
          FROM jobs j
         WHERE j.id = $1 AND j.attempts = $2 AND j.status = 'processing'
        ON CONFLICT (job_id) DO UPDATE
           SET attempt = excluded.attempt, position = excluded.position,
               finished = excluded.finished, batches = excluded.batches,
               records_read = excluded.records_read, inserted = excluded.inserted,
               updated = excluded.updated, unchanged = excluded.unchanged,
               total = excluded.total, updated_at = excluded.updated_at
         WHERE c.attempt <= excluded.attempt
        RETURNING c.job_id
        "#,
    )
    .bind(job_id)
    .bind(checkpoint.attempt)
    .bind(&checkpoint.position)
    .bind(checkpoint.finished)
    .bind(checkpoint.batches)
    .bind(checkpoint.records_read)
    .bind(checkpoint.inserted)
    .bind(checkpoint.updated)
    .bind(checkpoint.unchanged)
    .bind(checkpoint.total)
    .fetch_optional(conn)
    .await?;
    Ok(written.is_some())
}
