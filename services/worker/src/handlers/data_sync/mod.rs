//! `data_sync {syncType, source, target, filters?, batchSize?}`: batched,
//! checkpointed, idempotent syncs into a table of the target database
//! (`DATA_SYNC_DATABASE_URL`, by default Roundhouse's own).
//!
//! * `http_pull` (`http_pull.rs`) pages through a JSON API by cursor or page
//!   number, through the SSRF-guarded client.
//! * `sql_copy` (`sql_copy.rs`) reads a query over a `DATA_SYNC_SOURCES`
//!   database in key order, read-only.
//!
//! Each batch is upserted (`roundhouse_db::SyncDatabase`: rows already
//! holding the same values are left alone, so a rerun changes nothing) and
//! followed by a checkpoint (`sink.rs`). An attempt that dies — crash,
//! timeout, cancel, upstream error — is retried from the last checkpoint.
//!
//! Jobs of this type write tables and run queries, so only the service and
//! admins may enqueue them (the api's `requires_admin`), and the payload is
//! checked by `roundhouse_db::DataSyncJob::parse` both at enqueue and here.

mod http_pull;
mod sink;
mod sql_copy;

use std::time::Duration;

use roundhouse_db::{DataSyncJob, DbError, FieldPath, Ident, SyncSource};
use serde_json::Value;

use crate::handler::{HandlerError, JobContext, JobHandler};
use sink::Sink;

pub(crate) struct DataSync;

/// The operator's bounds on every sync.
struct Limits {
    max_batch: usize,
    statement_timeout: Duration,
}

#[async_trait::async_trait]
impl JobHandler for DataSync {
    async fn run(&self, ctx: JobContext) -> Result<Value, HandlerError> {
        let job = DataSyncJob::parse(&ctx.payload)
            .map_err(|e| HandlerError::Permanent(format!("data_sync payload.{e}")))?;
        let settings = ctx.settings();
        let limits = Limits {
            max_batch: settings.data_sync_max_batch.max(1),
            statement_timeout: Duration::from_millis(settings.data_sync_statement_timeout_ms),
        };
        let batch_size = job.batch_size.min(limits.max_batch);
        let mut sink = Sink::open(&ctx, &job, &limits).await?;
        let sync_type = job.source.sync_type();
        let outcome = if sink.checkpoint.finished {
            // A previous attempt finished the sync but not the job (it died
            // before its completion was recorded): report what it did.
            Ok(())
        } else {
            if sink.checkpoint.batches > 0 {
                ctx.log(&format!(
                    "{sync_type} into `{}`: resuming after batch {} ({} records read)",
                    sink.table(),
                    sink.checkpoint.batches,
                    sink.checkpoint.records_read
                ))
                .await;
            }
            match &job.source {
                SyncSource::HttpPull(source) => {
                    http_pull::run(&ctx, source, &job, batch_size, &mut sink).await
                }
                SyncSource::SqlCopy(source) => {
                    sql_copy::run(&ctx, source, &job, batch_size, &limits, &mut sink).await
                }
            }
        };
        let result = sink.result(sync_type);
        sink.close().await;
        outcome?;
        ctx.log(&format!(
            "{sync_type} into `{}`: {} records read in {} batches; {} inserted, {} updated, {} unchanged",
            result["table"].as_str().unwrap_or_default(),
            result["recordsRead"],
            result["batches"],
            result["inserted"],
            result["updated"],
            result["unchanged"]
        ))
        .await;
        Ok(result)
    }
}

/// A database error: permanent when the payload or the data is at fault
/// (retrying would fail the same way), else retried from the checkpoint.
fn db_error(error: DbError) -> HandlerError {
    if error.is_permanent_for_sync() {
        HandlerError::Permanent(format!("data_sync: {error}"))
    } else {
        HandlerError::Retry(format!("data_sync: {error}"))
    }
}

/// Between batches: stop if the attempt was stopped (cancel, timeout,
/// shutdown, lease lost). What is committed stays; a retry resumes from the
/// checkpoint.
async fn between_batches(ctx: &JobContext, sink: &Sink<'_>) -> Result<(), HandlerError> {
    if ctx.cancel.is_cancelled() {
        return Err(HandlerError::Retry(format!(
            "data_sync interrupted after {} batches; a retry resumes from the checkpoint",
            sink.checkpoint.batches
        )));
    }
    tokio::task::yield_now().await;
    Ok(())
}

/// A source record as a target row: the mapped columns, or the record's own
/// fields (matched to columns by name) when there is no mapping.
fn to_row(record: &Value, columns: Option<&[(Ident, FieldPath)]>) -> Result<Value, HandlerError> {
    match columns {
        Some(columns) => Ok(Value::Object(
            columns
                .iter()
                .map(|(column, from)| {
                    (
                        column.as_str().to_owned(),
                        from.lookup(record).cloned().unwrap_or(Value::Null),
                    )
                })
                .collect(),
        )),
        None if record.is_object() => Ok(record.clone()),
        None => Err(HandlerError::Permanent(
            "data_sync: a record is not a JSON object; map its values with target.columns".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn records_are_mapped_by_path_or_taken_whole() {
        let columns = vec![
            (Ident::parse("id").unwrap(), FieldPath::parse("id").unwrap()),
            (
                Ident::parse("email").unwrap(),
                FieldPath::parse("contact.email").unwrap(),
            ),
            (
                Ident::parse("phone").unwrap(),
                FieldPath::parse("contact.phone").unwrap(),
            ),
        ];
        let record = json!({"id": 7, "contact": {"email": "a@b.c"}, "extra": true});
        assert_eq!(
            to_row(&record, Some(&columns)).unwrap(),
            json!({"id": 7, "email": "a@b.c", "phone": null})
        );
        assert_eq!(to_row(&record, None).unwrap(), record);
        assert!(matches!(
            to_row(&json!([1, 2]), None),
            Err(HandlerError::Permanent(_))
        ));
    }
}
