//! All of Roundhouse's SQL, and every job state transition.
//!
//! **Architecture invariant:** no other crate writes SQL. Each query is a small
//! named function here, with its statement in a raw string next to it. Every
//! write that a worker makes on behalf of an attempt is *fenced*: it names the
//! attempt number it believes it holds and matches zero rows if the job has
//! moved on (cancelled, reaped, re-claimed), so a late or duplicate writer can
//! never overwrite a newer truth.
//!
//! Queries use sqlx's function API rather than the compile-time macros so the
//! workspace builds without a database and so statements can run unprepared
//! behind a transaction pooler (see ARCHITECTURE.md).

mod agents;
mod alerts;
mod data_sync;
mod events;
mod job_types;
mod jobs;
mod lifecycle;
mod maintenance;
mod notifications;
mod queues;
mod rag;
mod retention;
mod rows;
mod schedules;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

pub use agents::{AgentRow, AgentRunRow, AgentSpec, NewRun, RunStart};
pub use alerts::{
    AlertPass, AlertWindow, FailedJob, FailureGroup, LongRunningJob, LostWorker, QueueBacklog,
};
pub use data_sync::{
    DEFAULT_BATCH_SIZE, DataSyncJob, FieldPath, HttpPull, Ident, JsonPath, MAX_BATCH_SIZE,
    Pagination, ROUNDHOUSE_TABLES, SourceKey, SqlCopy, SyncCheckpoint, SyncDatabase, SyncSource,
    SyncTable, SyncTarget, TableName, UpsertCounts, is_roundhouse_table,
};
pub use events::EventRow;
pub use job_types::{HandlerKind, RegisteredJobType};
pub use jobs::{CancelOutcome, EnqueueOutcome, JobFilter, NewJob, RetryOutcome};
pub use lifecycle::{ClaimedJob, Completion, FailOutcome};
pub use maintenance::Reaped;
pub use queues::QueueStats;
pub use rag::{
    NewRagChunk, NewRagDocument, RagAnalysisRow, RagChunkRow, RagDocumentRow, RagDocumentStart,
    RagHit, RagQuery,
};
pub use retention::{Deleted, FinishedClass};
pub use rows::JobRow;
pub use schedules::{FireReport, FiredJob, SchedulePlan, ScheduleRow, ScheduleSpec, ScheduledJob};

/// Errors from the database layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A query failed or the database could not be reached.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The same idempotency key was used for a different request.
    #[error("idempotency key `{0}` was already used for a different job")]
    IdempotencyConflict(String),
    /// A unique name is already taken.
    #[error("`{0}` already exists")]
    Duplicate(String),
    /// A `data_sync` target or record that cannot work as given (no such
    /// table, no unique index on the key, one of Roundhouse's own tables, a
    /// record without its key): retrying cannot help.
    #[error("{0}")]
    DataSync(String),
    /// The caller passed data the schema cannot hold (embeddings of one
    /// batch that differ in length); nothing was written.
    #[error("invalid data: {0}")]
    Invalid(String),
}

impl DbError {
    /// Maps a unique violation of `constraint` to [`DbError::Duplicate`]
    /// naming `value`; any other error passes through.
    pub(crate) fn duplicate_or(error: sqlx::Error, constraint: &str, value: &str) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.constraint() == Some(constraint) => {
                DbError::Duplicate(value.to_owned())
            }
            _ => DbError::Sqlx(error),
        }
    }

    /// True when the database could not be reached (as opposed to a query
    /// that failed): callers answer 503 and nothing was stored.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            DbError::Sqlx(
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
            )
        )
    }
}

/// The migrations under `/migrations`, embedded in every binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Pool sizing and timeouts.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Upper bound on open connections. Keep it small on Supabase plans.
    pub max_connections: u32,
    /// How long a query waits for a free connection before failing.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// A handle on the job database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pool: PgPool,
}

impl Db {
    /// Creates a lazily connecting pool: services start (and report unhealthy)
    /// while PostgreSQL is down, and connect once it is back.
    pub fn connect_lazy(url: &str, settings: &PoolSettings) -> Result<Self, DbError> {
        let options: PgConnectOptions = url
            .parse::<PgConnectOptions>()?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(0)
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    /// Wraps an existing pool (tests).
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The underlying pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations. Takes PostgreSQL's migration advisory lock,
    /// so concurrent starts serialise; run it on a direct or session-pooled
    /// connection (`DATABASE_MIGRATION_URL`).
    pub async fn migrate(&self) -> Result<(), DbError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// A cheap round trip for health checks.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// A round trip within `timeout`, as a health-check verdict: `Err` names
    /// what is wrong (`database unreachable` or `database timeout`).
    pub async fn check(&self, timeout: Duration) -> Result<Duration, String> {
        let started = std::time::Instant::now();
        match tokio::time::timeout(timeout, self.ping()).await {
            Ok(Ok(())) => Ok(started.elapsed()),
            Ok(Err(_)) => Err("database unreachable".to_owned()),
            Err(_) => Err("database timeout".to_owned()),
        }
    }

    /// Closes the pool, waiting for checked-out connections to return.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates database `name` through the admin connection at `admin_url`
/// (development and tests). `name` must be a plain identifier.
pub async fn create_database(admin_url: &str, name: &str) -> Result<(), DbError> {
    use sqlx::Connection;
    assert!(
        name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "database names are plain identifiers"
    );
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(())
}

/// Drops database `name`, disconnecting its sessions (tests).
pub async fn drop_database(admin_url: &str, name: &str) -> Result<(), DbError> {
    use sqlx::Connection;
    assert!(
        name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "database names are plain identifiers"
    );
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    admin.close().await?;
    Ok(())
}
