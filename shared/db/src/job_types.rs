//! Custom job types that workers register, and the per-attempt callback
//! tokens of HTTP handlers.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Db, DbError};

/// How a custom job type is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerKind {
    /// POSTed to an endpoint from `HTTP_HANDLERS`.
    Http,
    /// A handler compiled into a worker binary.
    Embedded,
}

impl HandlerKind {
    fn as_str(self) -> &'static str {
        match self {
            HandlerKind::Http => "http",
            HandlerKind::Embedded => "embedded",
        }
    }
}

/// A `job_types` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RegisteredJobType {
    pub name: String,
    pub queue: String,
    pub handler: String,
    pub registered_by: String,
    pub registered_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

impl Db {
    /// Records that `worker_id` runs these custom types (name, default
    /// queue, kind). The latest registration's queue wins.
    pub async fn register_job_types(
        &self,
        worker_id: &str,
        types: &[(String, String, HandlerKind)],
    ) -> Result<(), DbError> {
        if types.is_empty() {
            return Ok(());
        }
        sqlx::query(
            r#"
            INSERT INTO job_types (name, queue, handler, registered_by)
            SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[])
            ON CONFLICT (name) DO UPDATE
               SET queue = excluded.queue, handler = excluded.handler,
                   registered_by = excluded.registered_by, last_seen_at = now()
            "#,
        )
        .bind(types.iter().map(|t| t.0.clone()).collect::<Vec<_>>())
        .bind(types.iter().map(|t| t.1.clone()).collect::<Vec<_>>())
        .bind(types.iter().map(|t| t.2.as_str()).collect::<Vec<_>>())
        .bind(vec![worker_id.to_owned(); types.len()])
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every registered custom type.
    pub async fn registered_job_types(&self) -> Result<Vec<RegisteredJobType>, DbError> {
        Ok(sqlx::query_as(
            r#"
            SELECT name, queue, handler, registered_by, registered_at, last_seen_at
              FROM job_types ORDER BY name
            "#,
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Stores the SHA-256 of `attempt`'s callback token, replacing an
    /// earlier attempt's.
    pub async fn issue_callback_token(
        &self,
        job_id: Uuid,
        attempt: i32,
        token: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            r#"
            INSERT INTO job_callback_tokens (job_id, attempt, token_hash)
            VALUES ($1, $2, sha256(convert_to($3, 'UTF8')))
            ON CONFLICT (job_id) DO UPDATE
               SET attempt = excluded.attempt, token_hash = excluded.token_hash,
                   created_at = now()
             WHERE job_callback_tokens.attempt <= excluded.attempt
            "#,
        )
        .bind(job_id)
        .bind(attempt)
        .bind(token)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The attempt whose callback token is `token`, if the job is running
    /// that attempt now. Compared by hash: the token itself is never stored,
    /// and comparing digests leaks no timing about the token's bytes.
    pub async fn callback_attempt(
        &self,
        job_id: Uuid,
        token: &str,
    ) -> Result<Option<i32>, DbError> {
        Ok(sqlx::query_scalar(
            r#"
            SELECT t.attempt
              FROM job_callback_tokens t
              JOIN jobs j ON j.id = t.job_id
             WHERE t.job_id = $1 AND t.token_hash = sha256(convert_to($2, 'UTF8'))
               AND j.attempts = t.attempt AND j.status = 'processing'
            "#,
        )
        .bind(job_id)
        .bind(token)
        .fetch_optional(&self.pool)
        .await?)
    }
}
