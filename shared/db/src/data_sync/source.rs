//! The `sql_copy` source side: a payload's query, read in key order.
//!
//! Every read is its own short `READ ONLY` transaction under the statement
//! timeout: the query cannot write (`INSERT … RETURNING` or a writing CTE
//! fails), and no snapshot is held open across batches, so a sync of hours
//! does not stop VACUUM on the source. Batches are consistent by key rather
//! than by snapshot: a row is copied as it was when its batch was read.

use serde_json::Value;
use sqlx::{AssertSqlSafe, PgConnection, Postgres, Transaction};

use super::tables::{Ident, quote};
use super::target::{SyncDatabase, set_statement_timeout};
use crate::DbError;

/// The query's key columns with their PostgreSQL types, as the source
/// reports them: what keyset paging compares against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceKey {
    columns: Vec<String>,
    /// `pg_typeof` of each column, as PostgreSQL spells (and quotes) it.
    types: Vec<String>,
}

impl SourceKey {
    /// The key column names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }
}

impl SyncDatabase {
    /// The types of `query`'s `key` columns, read off its first row; `None`
    /// when the query returns no rows.
    pub async fn source_key(
        &self,
        query: &str,
        key: &[Ident],
    ) -> Result<Option<SourceKey>, DbError> {
        let types = key
            .iter()
            .map(|k| format!("pg_typeof(s.{})::text", k.quoted()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT ARRAY[{types}] FROM (\n{query}\n) s LIMIT 1");
        let mut tx = self.read_only().await?;
        let found: Option<Vec<String>> = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_optional(&mut *tx)
            .await?;
        tx.rollback().await?;
        Ok(found.map(|types| SourceKey {
            columns: key.iter().map(|k| k.as_str().to_owned()).collect(),
            types,
        }))
    }

    /// How many rows `query` returns (for progress).
    pub async fn count_source(&self, query: &str) -> Result<i64, DbError> {
        let sql = format!("SELECT count(*) FROM (\n{query}\n) s");
        let mut tx = self.read_only().await?;
        let count: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&mut *tx)
            .await?;
        tx.rollback().await?;
        Ok(count)
    }

    /// Up to `limit` rows of `query` whose key comes after `after` (a JSON
    /// array of key values; from the start when `None`), in key order, each
    /// row as a JSON object of its columns.
    ///
    /// The query is wrapped, not rewritten: `SELECT … FROM (<query>) s WHERE
    /// (key) > (last) ORDER BY key LIMIT n`. PostgreSQL pushes the condition
    /// and the order into a simple query, so an index on the key serves each
    /// batch without rescanning what was copied. The last key travels as
    /// JSON and is cast back to each column's own type, so the comparison
    /// uses that type's ordering (and collation), the same as `ORDER BY`.
    pub async fn read_source_batch(
        &self,
        query: &str,
        key: &SourceKey,
        after: Option<&Value>,
        limit: i64,
    ) -> Result<Vec<Value>, DbError> {
        let columns = key
            .columns
            .iter()
            .map(|c| format!("s.{}", quote(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let condition = match after {
            Some(_) => {
                let bounds = key
                    .types
                    .iter()
                    .enumerate()
                    .map(|(i, ty)| format!("($2::jsonb ->> {i})::{ty}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("WHERE ({columns}) > ({bounds})")
            }
            None => String::new(),
        };
        let sql = format!(
            "SELECT to_jsonb(s) FROM (\n{query}\n) s {condition} ORDER BY {columns} LIMIT $1"
        );
        let mut tx = self.read_only().await?;
        let mut statement = sqlx::query_scalar(AssertSqlSafe(sql)).bind(limit);
        if let Some(after) = after {
            statement = statement.bind(after);
        }
        let rows: Vec<Value> = statement.fetch_all(&mut *tx).await?;
        tx.rollback().await?;
        Ok(rows)
    }

    async fn read_only(&self) -> Result<Transaction<'static, Postgres>, DbError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION READ ONLY")
            .execute(&mut *tx as &mut PgConnection)
            .await?;
        set_statement_timeout(&mut tx, self.statement_timeout).await?;
        Ok(tx)
    }
}
