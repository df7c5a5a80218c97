//! Delivery records of `notifications` jobs: which recipients a provider
//! has already accepted a message for, under a job's dedup key (see
//! `migrations/20261126000003_notifications.sql`).

use uuid::Uuid;

use crate::{Db, DbError};

impl Db {
    /// The job's idempotency key (`None` when it has none, or when the job
    /// is gone). The worker's claim does not carry it; only `notifications`
    /// needs it, to dedup deliveries across jobs.
    pub async fn job_idempotency_key(&self, job_id: Uuid) -> Result<Option<String>, DbError> {
        let key: Option<Option<String>> =
            sqlx::query_scalar(r#"SELECT idempotency_key FROM jobs WHERE id = $1"#)
                .bind(job_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(key.flatten())
    }

    /// Which of `recipients` already received this notification:
    /// `(recipient, the job that sent it, the provider's id)`.
    pub async fn delivered_notifications(
        &self,
        dedup_key: &str,
        channel: &str,
        recipients: &[String],
    ) -> Result<Vec<(String, Uuid, Option<String>)>, DbError> {
        Ok(sqlx::query_as(
            r#"
            SELECT recipient, job_id, provider_id FROM notification_deliveries
             WHERE dedup_key = $1 AND channel = $2 AND recipient = ANY($3)
            "#,
        )
        .bind(dedup_key)
        .bind(channel)
        .bind(recipients)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records that the provider accepted the notification for `recipient`.
    /// False when it was already recorded (by an earlier attempt or job).
    pub async fn record_notification_delivery(
        &self,
        dedup_key: &str,
        channel: &str,
        recipient: &str,
        job_id: Uuid,
        provider_id: Option<&str>,
    ) -> Result<bool, DbError> {
        let inserted = sqlx::query(
            r#"
            INSERT INTO notification_deliveries (dedup_key, channel, recipient, job_id, provider_id)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (dedup_key, channel, md5(recipient)) DO NOTHING
            "#,
        )
        .bind(dedup_key)
        .bind(channel)
        .bind(recipient)
        .bind(job_id)
        .bind(provider_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// Deletes up to `limit` delivery records older than `older_than_seconds`
    /// (retention); returns how many.
    pub async fn delete_old_deliveries(
        &self,
        older_than_seconds: f64,
        limit: i64,
    ) -> Result<u64, DbError> {
        let deleted = sqlx::query(
            r#"
            DELETE FROM notification_deliveries
             WHERE ctid IN (
                SELECT ctid FROM notification_deliveries
                 WHERE delivered_at < now() - make_interval(secs => $1)
                 LIMIT $2
                   FOR UPDATE SKIP LOCKED)
            "#,
        )
        .bind(older_than_seconds)
        .bind(limit)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(deleted)
    }
}
