//! `data_sync`: batched, checkpointed upserts into a table of the target
//! database, from an HTTP API or a SQL query.
//!
//! * [`spec`]: the payload, parsed once for the api and the worker.
//! * [`tables`]: which names may be written (never Roundhouse's own tables).
//! * [`target`]: the catalog checks and the idempotent upsert.
//! * [`source`]: the `sql_copy` reads (read-only, keyset-paged).
//! * [`checkpoint`]: the fenced progress record a retry resumes from.

mod checkpoint;
mod source;
mod spec;
mod tables;
mod target;

pub use checkpoint::SyncCheckpoint;
pub use source::SourceKey;
pub use spec::{
    DEFAULT_BATCH_SIZE, DataSyncJob, FieldPath, HttpPull, JsonPath, MAX_BATCH_SIZE, Pagination,
    SqlCopy, SyncSource, SyncTarget,
};
pub use tables::{Ident, ROUNDHOUSE_TABLES, TableName, is_roundhouse_table};
pub use target::{SyncDatabase, SyncTable, UpsertCounts};

use crate::DbError;

impl DbError {
    /// Whether a `data_sync` batch that failed with this error would fail
    /// the same way if retried: the payload or the data is at fault (a
    /// refused or malformed target, a query with a syntax error, a value the
    /// column type rejects, a constraint the records break). Connection
    /// losses, timeouts, deadlocks and serialization failures are worth
    /// retrying from the checkpoint.
    pub fn is_permanent_for_sync(&self) -> bool {
        match self {
            DbError::DataSync(_) => true,
            DbError::Sqlx(sqlx::Error::Database(error)) => {
                let code = error.code().unwrap_or_default();
                // 22 data exception, 23 integrity constraint, 42 syntax
                // error or access rule, 25006 writing in a read-only
                // transaction, 2F/38/39 routine exceptions, 0A unsupported.
                ["22", "23", "42", "2F", "38", "39", "0A"]
                    .iter()
                    .any(|class| code.starts_with(class))
                    || code == "25006"
            }
            _ => false,
        }
    }
}
