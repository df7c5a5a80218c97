//! `sql_copy`: a query over a source database, copied in key order,
//! `batchSize` rows at a time, each batch read in a read-only transaction
//! under the statement timeout (see `roundhouse_db::SyncDatabase`).
//!
//! The checkpoint holds the last key copied; a retry asks for the rows
//! after it. The key must be unique and non-null in the query's result (the
//! target's unique index makes it so on the target side; on the source side
//! a repeated key would make keyset paging skip rows, so choose the key the
//! source table is unique on).

use roundhouse_db::{DataSyncJob, SqlCopy, SyncDatabase};
use serde_json::{Value, json};

use super::sink::Sink;
use super::{Limits, between_batches, db_error, to_row};
use crate::handler::{HandlerError, JobContext};

pub(super) async fn run(
    ctx: &JobContext,
    source: &SqlCopy,
    job: &DataSyncJob,
    batch_size: usize,
    limits: &Limits,
    sink: &mut Sink<'_>,
) -> Result<(), HandlerError> {
    let reader = open_source(ctx, source, limits)?;
    let copied = copy(ctx, &reader, source, job, batch_size, sink).await;
    reader.close().await;
    copied
}

/// The source database: a `DATA_SYNC_SOURCES` entry, or the target
/// database. Like the target, a database other than Roundhouse's gets a
/// small pool for this attempt only.
fn open_source(
    ctx: &JobContext,
    source: &SqlCopy,
    limits: &Limits,
) -> Result<SyncDatabase, HandlerError> {
    let settings = ctx.settings();
    let url = match &source.database {
        None => settings.data_sync_database_url().to_owned(),
        Some(name) => {
            let sources = settings
                .data_sync_sources()
                .map_err(|e| HandlerError::Permanent(format!("data_sync: {e}")))?;
            let names: Vec<&str> = sources.iter().map(|(name, _)| name.as_str()).collect();
            match sources.iter().find(|(known, _)| known == name) {
                Some((_, url)) => url.clone(),
                None => {
                    return Err(HandlerError::Permanent(format!(
                        "data_sync source.database: `{name}` is not in DATA_SYNC_SOURCES ({})",
                        if names.is_empty() {
                            "which is empty".to_owned()
                        } else {
                            format!("which names {}", names.join(", "))
                        }
                    )));
                }
            }
        }
    };
    if url == settings.database_url {
        return Ok(SyncDatabase::of(&ctx.db, limits.statement_timeout));
    }
    SyncDatabase::connect_lazy(&url, limits.statement_timeout)
        .map_err(|e| HandlerError::Permanent(format!("data_sync source.database: {e}")))
}

async fn copy(
    ctx: &JobContext,
    reader: &SyncDatabase,
    source: &SqlCopy,
    job: &DataSyncJob,
    batch_size: usize,
    sink: &mut Sink<'_>,
) -> Result<(), HandlerError> {
    let Some(key) = reader
        .source_key(&source.query, &source.key_columns)
        .await
        .map_err(db_error)?
    else {
        // The query returns nothing at all.
        let position = sink.checkpoint.position.clone();
        return sink.write(Vec::new(), 0, position, true, Some(0)).await;
    };
    let total = match sink.checkpoint.total {
        Some(total) => Some(total),
        // For progress only: a count that times out costs the percentage.
        None => reader.count_source(&source.query).await.ok(),
    };
    let mapping = job.target.columns.as_deref();
    let mut last: Option<Value> = sink
        .checkpoint
        .position
        .get("lastKey")
        .filter(|key| !key.is_null())
        .cloned();
    loop {
        between_batches(ctx, sink).await?;
        let records = reader
            .read_source_batch(&source.query, &key, last.as_ref(), batch_size as i64)
            .await
            .map_err(db_error)?;
        let finished = records.len() < batch_size;
        for record in &records {
            if let Some(column) = key
                .columns()
                .iter()
                .find(|column| record.get(column.as_str()).is_none_or(Value::is_null))
            {
                return Err(HandlerError::Permanent(format!(
                    "data_sync: the source query returned a row whose key column `{column}` is NULL; \
                     keyset paging needs a non-null, unique key (source.keyColumns)"
                )));
            }
        }
        if let Some(record) = records.last() {
            last = Some(Value::Array(
                key.columns()
                    .iter()
                    .map(|column| record[column.as_str()].clone())
                    .collect(),
            ));
        }
        let rows = records
            .iter()
            .map(|record| to_row(record, mapping))
            .collect::<Result<Vec<_>, _>>()?;
        let read = rows.len();
        sink.write(rows, read, json!({ "lastKey": last }), finished, total)
            .await?;
        if finished {
            return Ok(());
        }
    }
}
