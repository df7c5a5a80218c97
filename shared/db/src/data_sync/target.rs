//! The target side: checking a table against the catalog, and the
//! idempotent batched upsert.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use sqlx::{AssertSqlSafe, PgConnection, PgPool};

use super::checkpoint::{SyncCheckpoint, save_checkpoint};
use super::spec::SyncTarget;
use super::tables::{is_roundhouse_table, is_system_schema, quote};
use crate::{Db, DbError, PoolSettings};

/// A database a `data_sync` job reads from or writes to: Roundhouse's own
/// (sharing the worker's pool) or another one named in the settings.
#[derive(Debug, Clone)]
pub struct SyncDatabase {
    pub(super) pool: PgPool,
    pub(super) statement_timeout: Duration,
    /// Whether this pool is the worker's own (closing it is not ours to do).
    shared: bool,
}

impl SyncDatabase {
    /// A small lazily connecting pool (at most 2 connections: one job reads
    /// or writes one batch at a time) on another database.
    pub fn connect_lazy(url: &str, statement_timeout: Duration) -> Result<Self, DbError> {
        let db = Db::connect_lazy(
            url,
            &PoolSettings {
                max_connections: 2,
                acquire_timeout: Duration::from_secs(10),
                application_name: Some("roundhouse-data-sync".to_owned()),
                ..PoolSettings::default()
            },
        )?;
        Ok(Self {
            pool: db.pool,
            statement_timeout,
            shared: false,
        })
    }

    /// Roundhouse's own database, through `db`'s pool.
    pub fn of(db: &Db, statement_timeout: Duration) -> Self {
        Self {
            pool: db.pool.clone(),
            statement_timeout,
            shared: true,
        }
    }

    /// Closes a pool of our own (a shared one stays open).
    pub async fn close(&self) {
        if !self.shared {
            self.pool.close().await;
        }
    }

    /// Checks that `target` can take upserts: the table exists, is not one
    /// of Roundhouse's or PostgreSQL's own, has the mapped columns, and has
    /// a unique index (or primary key) on exactly the key columns, which the
    /// upsert names as its conflict target. A [`DbError::DataSync`] says what
    /// is wrong; retrying cannot help.
    pub async fn prepare_target(&self, target: &SyncTarget) -> Result<SyncTable, DbError> {
        let display = target.table.to_string();
        let Some(resolved) = resolve(&self.pool, &target.table.quoted()).await? else {
            return Err(DbError::DataSync(format!(
                "target table `{display}` does not exist; create it (with a unique index on {}) first",
                list(target.key.iter().map(|k| k.as_str()))
            )));
        };
        if is_system_schema(&resolved.schema) {
            return Err(DbError::DataSync(format!(
                "`{display}` is a PostgreSQL system table; data_sync does not write there"
            )));
        }
        if resolved.beside_migrations && is_roundhouse_table(&resolved.name) {
            return Err(DbError::DataSync(format!(
                "`{display}` is one of Roundhouse's own tables; data_sync never writes to them"
            )));
        }
        if !matches!(resolved.kind.as_str(), "r" | "p") {
            return Err(DbError::DataSync(format!(
                "`{display}` is not a table (views and foreign tables cannot take upserts)"
            )));
        }
        let columns: Vec<String> = sqlx::query_scalar(
            r#"
            SELECT attname::text FROM pg_attribute
             WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped
             ORDER BY attnum
            "#,
        )
        .bind(resolved.oid)
        .fetch_all(&self.pool)
        .await?;
        let known: BTreeSet<&str> = columns.iter().map(String::as_str).collect();
        let needed = target.key.iter().map(|k| k.as_str()).chain(
            target
                .mapped_columns()
                .into_iter()
                .flatten()
                .map(|c| c.as_str()),
        );
        for column in needed {
            if !known.contains(column) {
                return Err(DbError::DataSync(format!(
                    "target table `{display}` has no column `{column}`"
                )));
            }
        }
        let key: Vec<String> = target.key.iter().map(|k| k.as_str().to_owned()).collect();
        let has_unique_index: bool = sqlx::query_scalar(
            r#"
            SELECT EXISTS (
                SELECT 1 FROM pg_index i
                 WHERE i.indrelid = $1 AND i.indisunique AND i.indimmediate AND i.indisvalid
                   AND i.indpred IS NULL AND i.indexprs IS NULL
                   AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text)
                          FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                         WHERE k.n <= i.indnkeyatts)
                       = (SELECT array_agg(c ORDER BY c) FROM unnest($2::text[]) AS c)
            )
            "#,
        )
        .bind(resolved.oid)
        .bind(&key)
        .fetch_one(&self.pool)
        .await?;
        if !has_unique_index {
            return Err(DbError::DataSync(format!(
                "target table `{display}` has no unique index on exactly ({}); \
                 add one (CREATE UNIQUE INDEX … ON {display} ({})) so that upserts can find existing rows",
                list(key.iter().map(String::as_str)),
                key.join(", ")
            )));
        }
        Ok(SyncTable {
            quoted: format!("{}.{}", quote(&resolved.schema), quote(&resolved.name)),
            display,
            key,
            columns,
            mapped: target
                .mapped_columns()
                .map(|columns| columns.iter().map(|c| c.as_str().to_owned()).collect()),
        })
    }

    /// Upserts one batch in its own transaction.
    pub async fn upsert(&self, table: &SyncTable, rows: &[Value]) -> Result<UpsertCounts, DbError> {
        let mut tx = self.pool.begin().await?;
        set_statement_timeout(&mut tx, self.statement_timeout).await?;
        let counts = upsert_rows(&mut tx, table, rows).await?;
        tx.commit().await?;
        Ok(counts)
    }
}

impl Db {
    /// Upserts one batch into a table of this (Roundhouse's) database and
    /// records the checkpoint `next(counts)` in the same transaction, so the
    /// two commit together or not at all. Returns `None`, and writes
    /// nothing, when `job_id`'s attempt `checkpoint.attempt` is no longer
    /// current.
    pub async fn upsert_sync_batch(
        &self,
        table: &SyncTable,
        rows: &[Value],
        statement_timeout: Duration,
        job_id: uuid::Uuid,
        next: impl FnOnce(&UpsertCounts) -> SyncCheckpoint + Send,
    ) -> Result<Option<UpsertCounts>, DbError> {
        let mut tx = self.pool.begin().await?;
        set_statement_timeout(&mut tx, statement_timeout).await?;
        let counts = upsert_rows(&mut tx, table, rows).await?;
        if !save_checkpoint(&mut tx, job_id, &next(&counts)).await? {
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(counts))
    }
}

/// A target table that passed [`SyncDatabase::prepare_target`].
#[derive(Debug, Clone)]
pub struct SyncTable {
    /// `"schema"."table"`, as resolved when it was checked.
    quoted: String,
    display: String,
    key: Vec<String>,
    /// Every column, in table order.
    columns: Vec<String>,
    /// The columns a mapping writes, if the payload has one.
    mapped: Option<Vec<String>>,
}

impl SyncTable {
    /// The table as the payload named it.
    pub fn name(&self) -> &str {
        &self.display
    }

    /// The columns a batch writes: the mapped ones, or else the table's
    /// columns that some record of the batch names.
    fn columns_for(&self, rows: &[Value]) -> Vec<&str> {
        match &self.mapped {
            Some(mapped) => mapped.iter().map(String::as_str).collect(),
            None => self
                .columns
                .iter()
                .filter(|column| rows.iter().any(|row| row.get(column.as_str()).is_some()))
                .map(String::as_str)
                .collect(),
        }
    }
}

/// What one batch did to the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertCounts {
    /// Distinct keys in the batch (a key repeated within a batch counts
    /// once, its last record wins).
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Rows that already held exactly these values: not written at all.
    pub unchanged: u64,
}

struct Resolved {
    oid: sqlx::postgres::types::Oid,
    schema: String,
    name: String,
    kind: String,
    /// The table sits in the schema holding Roundhouse's migrations table.
    beside_migrations: bool,
}

async fn resolve(pool: &PgPool, quoted: &str) -> Result<Option<Resolved>, DbError> {
    let row: Option<(sqlx::postgres::types::Oid, String, String, String, bool)> = sqlx::query_as(
        r#"
            SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text,
                   EXISTS (SELECT 1 FROM pg_class m
                            WHERE m.relname = '_sqlx_migrations'
                              AND m.relnamespace = c.relnamespace)
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = to_regclass($1)
            "#,
    )
    .bind(quoted)
    .fetch_optional(pool)
    .await?;
    Ok(
        row.map(|(oid, schema, name, kind, beside_migrations)| Resolved {
            oid,
            schema,
            name,
            kind,
            beside_migrations,
        }),
    )
}

pub(super) async fn set_statement_timeout(
    conn: &mut PgConnection,
    timeout: Duration,
) -> Result<(), DbError> {
    sqlx::query("SELECT set_config('statement_timeout', $1, true)")
        .bind(timeout.as_millis().max(1).to_string())
        .execute(conn)
        .await?;
    Ok(())
}

async fn upsert_rows(
    conn: &mut PgConnection,
    table: &SyncTable,
    rows: &[Value],
) -> Result<UpsertCounts, DbError> {
    if rows.is_empty() {
        return Ok(UpsertCounts::default());
    }
    check_keys(table, rows)?;
    let columns = table.columns_for(rows);
    let sql = upsert_sql(table, &columns);
    let (distinct, inserted, updated): (i64, i64, i64) = sqlx::query_as(AssertSqlSafe(sql))
        .bind(Value::Array(rows.to_vec()))
        .fetch_one(conn)
        .await?;
    Ok(UpsertCounts {
        rows: distinct as u64,
        inserted: inserted as u64,
        updated: updated as u64,
        unchanged: (distinct - inserted - updated).max(0) as u64,
    })
}

/// Every record is an object with a value for each key column: a missing
/// key would insert a row that the next run cannot find again (NULLs never
/// conflict), breaking idempotency.
fn check_keys(table: &SyncTable, rows: &[Value]) -> Result<(), DbError> {
    for (i, row) in rows.iter().enumerate() {
        let Some(object) = row.as_object() else {
            return Err(DbError::DataSync(format!(
                "record {} of the batch is not a JSON object",
                i + 1
            )));
        };
        if let Some(key) = table
            .key
            .iter()
            .find(|key| object.get(key.as_str()).is_none_or(Value::is_null))
        {
            return Err(DbError::DataSync(format!(
                "record {} of the batch has no value for key column `{key}`",
                i + 1
            )));
        }
    }
    Ok(())
}

/// The upsert of a JSON array of records (`$1`) into `table`'s `columns`.
///
/// * Values are cast by PostgreSQL, not by us: `jsonb_populate_recordset`
///   turns each record into the table's row type, so a JSON string lands in
///   a `timestamptz` column as a timestamp, a number in a `text` column as
///   its digits, an object in a `jsonb` column as itself.
/// * A key repeated within the batch keeps its last record (`ON CONFLICT`
///   may not touch a row twice in one statement).
/// * A conflicting row is updated only when some written column changes.
///   The test is `*=` (the same binary image, NULLs equal) over the written
///   columns rather than `IS DISTINCT FROM`: it also works for types without
///   an equality operator (`json`, `point`), and columns the batch does not
///   write (a serial id, `synced_at DEFAULT now()`) do not count. An
///   unchanged row is not written at all, so a rerun changes nothing.
/// * `xmax = 0` tells a freshly inserted row from an updated one.
fn upsert_sql(table: &SyncTable, columns: &[&str]) -> String {
    let quoted = |names: &mut dyn Iterator<Item = &str>, prefix: &str| {
        names
            .map(|name| format!("{prefix}{}", quote(name)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let all = quoted(&mut columns.iter().copied(), "");
    let key = quoted(&mut table.key.iter().map(String::as_str), "");
    let key_in_input = quoted(&mut table.key.iter().map(String::as_str), "r.");
    let from_input = quoted(&mut columns.iter().copied(), "r.");
    let rest: Vec<&str> = columns
        .iter()
        .copied()
        .filter(|column| !table.key.iter().any(|key| key == column))
        .collect();
    let on_conflict = if rest.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        format!(
            "DO UPDATE SET {}\n WHERE NOT (ROW({})::record *= ROW({})::record)",
            rest.iter()
                .map(|c| format!("{} = excluded.{}", quote(c), quote(c)))
                .collect::<Vec<_>>()
                .join(", "),
            quoted(&mut rest.iter().copied(), "t."),
            quoted(&mut rest.iter().copied(), "excluded."),
        )
    };
    format!(
        r#"
        WITH input AS (
            SELECT DISTINCT ON ({key_in_input}) {from_input}
              FROM jsonb_populate_recordset(NULL::{table}, $1) WITH ORDINALITY AS r
             ORDER BY {key_in_input}, r.ordinality DESC
        ), written AS (
            INSERT INTO {table} AS t ({all})
            SELECT {all} FROM input
            ON CONFLICT ({key}) {on_conflict}
            RETURNING (t.xmax = 0) AS inserted
        )
        SELECT (SELECT count(*) FROM input),
               count(*) FILTER (WHERE inserted),
               count(*) FILTER (WHERE NOT inserted)
          FROM written
        "#,
        table = table.quoted,
    )
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(mapped: Option<&[&str]>) -> SyncTable {
        SyncTable {
            quoted: r#""public"."items""#.into(),
            display: "items".into(),
            key: vec!["id".into()],
            columns: vec!["id".into(), "name".into(), "serial".into()],
            mapped: mapped.map(|m| m.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn the_upsert_writes_only_the_columns_a_batch_names() {
        let rows = [serde_json::json!({"id": 1, "name": "a", "unknown": 2})];
        let t = table(None);
        assert_eq!(t.columns_for(&rows), ["id", "name"]);
        let sql = upsert_sql(&t, &t.columns_for(&rows));
        assert!(
            sql.contains(r#"INSERT INTO "public"."items" AS t ("id", "name")"#),
            "{sql}"
        );
        assert!(
            sql.contains(r#"ON CONFLICT ("id") DO UPDATE SET "name" = excluded."name""#),
            "{sql}"
        );
        assert!(
            sql.contains(r#"NOT (ROW(t."name")::record *= ROW(excluded."name")::record)"#),
            "{sql}"
        );
        assert!(!sql.contains("serial"), "{sql}");
    }

    #[test]
    fn a_key_only_batch_inserts_or_does_nothing() {
        let t = table(Some(&["id"]));
        let sql = upsert_sql(&t, &t.columns_for(&[]));
        assert!(sql.contains("DO NOTHING"), "{sql}");
    }

    #[test]
    fn records_without_their_key_are_refused() {
        let t = table(None);
        let error = check_keys(
            &t,
            &[
                serde_json::json!({"id": 1}),
                serde_json::json!({"id": null}),
            ],
        )
        .unwrap_err();
        assert!(error.to_string().contains("record 2"), "{error}");
        assert!(check_keys(&t, &[serde_json::json!([1])]).is_err());
    }
}
