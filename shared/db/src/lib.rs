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
mod dashboard;
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
pub use dashboard::{AuditEntry, DashboardSession, DeleteOutcome, MinuteCounts, NewAuditEntry};
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
pub use queues::{QueueDepth, QueueStats};
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

/// Pool sizing, connection recycling and per-connection timeouts.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Upper bound on open connections. Keep it small on Supabase plans:
    /// through the session pooler each one is a database connection.
    pub max_connections: u32,
    /// Connections kept open while idle. At 0 (the default) an idle service
    /// gives its connections back to the pooler's (or database's) budget.
    pub min_connections: u32,
    /// How long a query waits for a free connection (including connecting)
    /// before failing.
    pub acquire_timeout: Duration,
    /// An unused connection is closed after this long.
    pub idle_timeout: Option<Duration>,
    /// Every connection is replaced after this long, so that a pooler or
    /// failover that moved the database is followed and no backend grows
    /// for ever.
    pub max_lifetime: Option<Duration>,
    /// `statement_timeout` of every connection (`Some(ZERO)`: none; `None`:
    /// the server's or role's default). Migrations and `VACUUM` run without
    /// one; `data_sync` sets its own per transaction.
    pub statement_timeout: Option<Duration>,
    /// `idle_in_transaction_session_timeout`: the server ends a session that
    /// sits in an open transaction this long, so a leaked transaction cannot
    /// hold its locks (and a pooler slot) for ever.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// `application_name` of the connections, shown in `pg_stat_activity`.
    pub application_name: Option<String>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(5 * 60)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            statement_timeout: Some(Duration::from_secs(30)),
            idle_in_transaction_timeout: Some(Duration::from_secs(60)),
            application_name: None,
        }
    }
}

impl PoolSettings {
    /// The `SET` statements a new connection runs: one round trip, in the
    /// session (not startup `options`, which PgBouncer refuses or drops and
    /// Supavisor does not pass on; a session pooler keeps a `SET`).
    fn session_setup(&self) -> Option<String> {
        let set = |name: &str, value: Option<Duration>| {
            value.map(|v| format!("SET {name} = {};", v.as_millis()))
        };
        let statements: Vec<String> = [
            set("statement_timeout", self.statement_timeout),
            set(
                "idle_in_transaction_session_timeout",
                self.idle_in_transaction_timeout,
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!statements.is_empty()).then(|| statements.join(" "))
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
        let mut options: PgConnectOptions = url
            .parse::<PgConnectOptions>()?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        if let Some(name) = &settings.application_name {
            options = options.application_name(name);
        }
        let setup = settings.session_setup();
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(settings.min_connections)
            .acquire_timeout(settings.acquire_timeout)
            .idle_timeout(settings.idle_timeout)
            .max_lifetime(settings.max_lifetime)
            .after_connect(move |conn, _| {
                let setup = setup.clone();
                Box::pin(async move {
                    if let Some(setup) = setup {
                        sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
                            .execute(conn)
                            .await?;
                    }
                    Ok(())
                })
            })
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
    ///
    /// Runs without a statement timeout: building an index on a large table
    /// may take minutes. `lock_timeout` stays the server's (normally none):
    /// it would also cut short the advisory-lock wait of a second replica
    /// starting while the first migrates; what a migration waits for is
    /// bounded by the services' own statement and idle-in-transaction
    /// timeouts.
    pub async fn migrate(&self) -> Result<(), DbError> {
        let mut conn = self.unbounded_connection().await?;
        MIGRATOR.run(&mut *conn).await?;
        Ok(())
    }

    /// A connection without a statement timeout, for the few statements
    /// that may rightly run long (migrations, `VACUUM`). It is closed rather
    /// than returned to the pool, so the setting never reaches other queries.
    pub(crate) async fn unbounded_connection(
        &self,
    ) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, DbError> {
        let mut conn = self.pool.acquire().await?;
        conn.close_on_drop();
        sqlx::raw_sql("SET statement_timeout = 0")
            .execute(&mut *conn)
            .await?;
        Ok(conn)
    }

    /// The value of run-time setting `name` on a connection of the pool, as
    /// `SHOW` prints it (`30s`): what a service's connections really run
    /// with (diagnostics, tests).
    pub async fn current_setting(&self, name: &str) -> Result<String, DbError> {
        Ok(sqlx::query_scalar("SELECT current_setting($1)")
            .bind(name)
            .fetch_one(&self.pool)
            .await?)
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
