//! `data_sync`: the upsert's counters and type casting, the target checks,
//! the internal-table list, and the fenced checkpoint.

use std::time::Duration;

use roundhouse_db::{
    DataSyncJob, DbError, NewJob, ROUNDHOUSE_TABLES, SyncCheckpoint, SyncDatabase, SyncTable,
    UpsertCounts, is_roundhouse_table,
};
use roundhouse_test_support::TestEnv;
use serde_json::{Value, json};
use uuid::Uuid;

const TIMEOUT: Duration = Duration::from_secs(10);

async fn exec(env: &TestEnv, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(env.db.pool())
        .await
        .unwrap();
}

fn target(table: &str, key: &[&str], columns: Option<Value>) -> roundhouse_db::SyncTarget {
    let mut target = json!({"table": table, "key": key});
    if let Some(columns) = columns {
        target["columns"] = columns;
    }
    DataSyncJob::parse(&json!({
        "syncType": "sql_copy",
        "source": {"query": "SELECT 1 AS id"},
        "target": target
    }))
    .unwrap()
    .target
}

async fn prepare(env: &TestEnv, table: &str, key: &[&str]) -> Result<SyncTable, DbError> {
    SyncDatabase::of(&env.db, TIMEOUT)
        .prepare_target(&target(table, key, None))
        .await
}

fn counts(rows: u64, inserted: u64, updated: u64, unchanged: u64) -> UpsertCounts {
    UpsertCounts {
        rows,
        inserted,
        updated,
        unchanged,
    }
}

#[tokio::test]
async fn the_upsert_counts_inserts_updates_and_unchanged_rows_and_a_rerun_writes_nothing() {
    let env = TestEnv::new().await.unwrap();
    exec(
        &env,
        "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric,
                             synced_at timestamptz NOT NULL DEFAULT clock_timestamp())",
    )
    .await;
    let target = SyncDatabase::of(&env.db, TIMEOUT);
    let table = prepare(&env, "items", &["id"]).await.unwrap();
    let batch = vec![
        json!({"id": 1, "name": "one", "price": 1.5}),
        json!({"id": 2, "name": "two", "price": 2}),
        json!({"id": 3, "name": "three", "price": null}),
    ];
    assert_eq!(
        target.upsert(&table, &batch).await.unwrap(),
        counts(3, 3, 0, 0)
    );
    let xmins: Vec<String> = sqlx::query_scalar("SELECT xmin::text FROM items ORDER BY id")
        .fetch_all(env.db.pool())
        .await
        .unwrap();

    // The same batch again: nothing is written at all (the rows keep their
    // versions, and the column the batch does not write is not compared).
    assert_eq!(
        target.upsert(&table, &batch).await.unwrap(),
        counts(3, 0, 0, 3)
    );
    let again: Vec<String> = sqlx::query_scalar("SELECT xmin::text FROM items ORDER BY id")
        .fetch_all(env.db.pool())
        .await
        .unwrap();
    assert_eq!(xmins, again, "an unchanged row is not rewritten");

    let changed = vec![
        json!({"id": 1, "name": "one", "price": 1.5}),
        json!({"id": 2, "name": "TWO", "price": 2}),
        json!({"id": 4, "name": "four", "price": 4}),
    ];
    assert_eq!(
        target.upsert(&table, &changed).await.unwrap(),
        counts(3, 1, 1, 1)
    );

    // A key repeated within one batch: its last record wins, counted once.
    let repeated = vec![
        json!({"id": 5, "name": "first"}),
        json!({"id": 5, "name": "last"}),
    ];
    assert_eq!(
        target.upsert(&table, &repeated).await.unwrap(),
        counts(1, 1, 0, 0)
    );
    let names: Vec<(i32, String)> = sqlx::query_as("SELECT id, name FROM items ORDER BY id")
        .fetch_all(env.db.pool())
        .await
        .unwrap();
    assert_eq!(
        names,
        vec![
            (1, "one".into()),
            (2, "TWO".into()),
            (3, "three".into()),
            (4, "four".into()),
            (5, "last".into())
        ]
    );
    // A record without its key is refused, not inserted as a NULL key.
    let error = target
        .upsert(&table, &[json!({"name": "keyless"})])
        .await
        .unwrap_err();
    assert!(matches!(error, DbError::DataSync(_)), "{error}");
}

#[tokio::test]
async fn json_values_are_cast_to_each_column_type_by_postgresql() {
    let env = TestEnv::new().await.unwrap();
    exec(
        &env,
        r#"CREATE TABLE typed (
               id bigint, region text, n int, label text, at timestamptz, day date,
               active boolean, doc jsonb, raw json, amount numeric(12,2), tags text[],
               ratio double precision, uid uuid,
               PRIMARY KEY (region, id))"#,
    )
    .await;
    let target = SyncDatabase::of(&env.db, TIMEOUT);
    let table = prepare(&env, "typed", &["region", "id"]).await.unwrap();
    let record = json!({
        "id": "9007199254740993", "region": "eu", "n": 42, "label": 7,
        "at": "2024-02-29T12:34:56.789+02:00", "day": "2024-03-01",
        "active": true, "doc": {"nested": [1, "two", null]}, "raw": {"b": 1, "a": 2},
        "amount": 1234.5, "tags": ["x", "y"], "ratio": 0.1,
        "uid": "0190a6d2-7c1e-7000-8000-000000000001"
    });
    assert_eq!(
        target
            .upsert(&table, std::slice::from_ref(&record))
            .await
            .unwrap(),
        counts(1, 1, 0, 0)
    );
    let stored: Value = sqlx::query_scalar(
        r#"SELECT jsonb_build_object(
               'id', id, 'n', n, 'label', label,
               'at', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS'),
               'day', day::text, 'active', active, 'doc', doc, 'raw', raw::text,
               'amount', amount::text, 'tags', tags, 'ratio', ratio, 'uid', uid,
               'idType', pg_typeof(id)::text)
             FROM typed"#,
    )
    .fetch_one(env.db.pool())
    .await
    .unwrap();
    assert_eq!(
        stored,
        json!({
            "id": 9007199254740993i64, "n": 42, "label": "7",
            "at": "2024-02-29T10:34:56.789", "day": "2024-03-01", "active": true,
            "doc": {"nested": [1, "two", null]}, "raw": r#"{"a": 2, "b": 1}"#,
            "amount": "1234.50", "tags": ["x", "y"], "ratio": 0.1,
            "uid": "0190a6d2-7c1e-7000-8000-000000000001", "idType": "bigint"
        })
    );
    // The same values again, including the json column (which has no `=`):
    // unchanged. A changed json value is an update.
    assert_eq!(
        target
            .upsert(&table, std::slice::from_ref(&record))
            .await
            .unwrap(),
        counts(1, 0, 0, 1)
    );
    let mut changed = record.clone();
    changed["raw"] = json!({"a": 3});
    assert_eq!(
        target.upsert(&table, &[changed]).await.unwrap(),
        counts(1, 0, 1, 0)
    );
    // A value the column cannot take is a permanent error.
    let mut bad = record;
    bad["n"] = json!("forty-two");
    let error = target.upsert(&table, &[bad]).await.unwrap_err();
    assert!(error.is_permanent_for_sync(), "{error}");
}

#[tokio::test]
async fn targets_are_checked_against_the_catalog() {
    let env = TestEnv::new().await.unwrap();
    exec(
        &env,
        "CREATE TABLE no_index (id int, name text);
         CREATE TABLE other_key (id int, code text UNIQUE);
         CREATE TABLE partial (id int, live boolean);
         CREATE UNIQUE INDEX partial_live ON partial (id) WHERE live;
         CREATE TABLE good (a int, b text, extra text);
         CREATE UNIQUE INDEX good_ab ON good (b, a) INCLUDE (extra);
         CREATE VIEW a_view AS SELECT * FROM good;
         CREATE SCHEMA crm;
         CREATE TABLE crm.\"People\" (id int PRIMARY KEY, name text);",
    )
    .await;
    let refused = |result: Result<SyncTable, DbError>, expected: &str| match result {
        Err(DbError::DataSync(message)) => {
            assert!(
                message.contains(expected),
                "{message} (expected {expected})"
            )
        }
        other => panic!("expected a refusal mentioning {expected}, got {other:?}"),
    };
    refused(prepare(&env, "missing", &["id"]).await, "does not exist");
    refused(prepare(&env, "no_index", &["id"]).await, "no unique index");
    refused(prepare(&env, "other_key", &["id"]).await, "no unique index");
    refused(prepare(&env, "partial", &["id"]).await, "no unique index");
    refused(prepare(&env, "good", &["a"]).await, "no unique index");
    refused(prepare(&env, "a_view", &["a"]).await, "not a table");
    refused(prepare(&env, "good", &["a", "zz"]).await, "no column `zz`");
    // Roundhouse's own tables, however they are reached: here a schema
    // that holds a migrations table (as Roundhouse's schema would).
    exec(
        &env,
        "CREATE SCHEMA ops;
         CREATE TABLE ops._sqlx_migrations (version bigint);
         CREATE TABLE ops.jobs (id int PRIMARY KEY);
         CREATE TABLE crm.jobs (id int PRIMARY KEY);",
    )
    .await;
    refused(prepare(&env, "ops.jobs", &["id"]).await, "Roundhouse");
    prepare(&env, "crm.jobs", &["id"]).await.unwrap();

    prepare(&env, "good", &["a", "b"]).await.unwrap();
    prepare(&env, "crm.People", &["id"]).await.unwrap();
    let mapped = SyncDatabase::of(&env.db, TIMEOUT)
        .prepare_target(&target(
            "crm.People",
            &["id"],
            Some(json!({"id": "id", "nickname": "nick"})),
        ))
        .await;
    refused(mapped, "no column `nickname`");
}

#[tokio::test]
async fn the_internal_table_list_covers_every_table_the_migrations_create() {
    let env = TestEnv::new().await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1",
    )
    .fetch_all(env.db.pool())
    .await
    .unwrap();
    assert!(tables.contains(&"jobs".to_owned()), "{tables:?}");
    let missing: Vec<&String> = tables.iter().filter(|t| !is_roundhouse_table(t)).collect();
    assert!(
        missing.is_empty(),
        "add these tables to roundhouse_db::ROUNDHOUSE_TABLES: {missing:?}"
    );

    // And by the migrations' own text, in case a table lives elsewhere.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let sql = std::fs::read_to_string(&path).unwrap().to_lowercase();
        for statement in sql.split("create table").skip(1) {
            let name = statement
                .trim_start()
                .trim_start_matches("if not exists")
                .trim_start()
                .split(|c: char| c.is_whitespace() || c == '(')
                .next()
                .unwrap()
                .trim_start_matches("public.")
                .trim_matches('"');
            assert!(
                is_roundhouse_table(name),
                "{} creates `{name}`, missing from ROUNDHOUSE_TABLES",
                path.display()
            );
        }
    }
    assert!(ROUNDHOUSE_TABLES.contains(&"data_sync_checkpoints"));
}

async fn running_job(env: &TestEnv) -> Uuid {
    let id = Uuid::now_v7();
    env.db
        .enqueue_jobs(&[NewJob {
            id,
            queue: "data_sync".into(),
            job_type: "data_sync".into(),
            user_id: None,
            payload: json!({}),
            priority: 0,
            max_retries: 3,
            timeout_seconds: 60,
            idempotency_key: None,
            run_at: None,
            delay_ms: None,
            traceparent: None,
        }])
        .await
        .unwrap();
    let claimed = env.db.claim_jobs(&[id], "test", 30.0).await.unwrap();
    assert_eq!(claimed[0].attempts, 1);
    id
}

fn checkpoint(attempt: i32, batches: i64) -> SyncCheckpoint {
    SyncCheckpoint {
        attempt,
        position: json!({"page": batches + 1}),
        batches,
        records_read: batches * 10,
        ..SyncCheckpoint::default()
    }
}

#[tokio::test]
async fn a_superseded_attempt_never_moves_the_checkpoint() {
    let env = TestEnv::new().await.unwrap();
    let id = running_job(&env).await;
    assert_eq!(env.db.sync_checkpoint(id).await.unwrap(), None);
    assert!(
        env.db
            .save_sync_checkpoint(id, &checkpoint(1, 3))
            .await
            .unwrap()
    );
    assert_eq!(
        env.db.sync_checkpoint(id).await.unwrap(),
        Some(checkpoint(1, 3))
    );

    // The job is re-claimed (attempt 2), which moves on to batch 5.
    exec(
        &env,
        &format!("UPDATE jobs SET attempts = 2 WHERE id = '{id}'"),
    )
    .await;
    assert!(
        env.db
            .save_sync_checkpoint(id, &checkpoint(2, 5))
            .await
            .unwrap()
    );
    // Attempt 1, late, tries to record its batch 4: refused.
    assert!(
        !env.db
            .save_sync_checkpoint(id, &checkpoint(1, 4))
            .await
            .unwrap()
    );
    assert_eq!(
        env.db.sync_checkpoint(id).await.unwrap(),
        Some(checkpoint(2, 5))
    );

    // Even a write that passed the job fence before the re-claim cannot
    // overwrite a later attempt's row.
    exec(
        &env,
        &format!(
            "UPDATE data_sync_checkpoints SET attempt = 3 WHERE job_id = '{id}';
             UPDATE jobs SET attempts = 2 WHERE id = '{id}'"
        ),
    )
    .await;
    assert!(
        !env.db
            .save_sync_checkpoint(id, &checkpoint(2, 6))
            .await
            .unwrap()
    );

    // A job that is no longer processing takes no checkpoint.
    exec(
        &env,
        &format!("UPDATE jobs SET status = 'cancelled' WHERE id = '{id}'"),
    )
    .await;
    assert!(
        !env.db
            .save_sync_checkpoint(id, &checkpoint(3, 7))
            .await
            .unwrap()
    );

    // The checkpoint goes with its job.
    exec(&env, &format!("DELETE FROM jobs WHERE id = '{id}'")).await;
    assert_eq!(env.db.sync_checkpoint(id).await.unwrap(), None);
}

#[tokio::test]
async fn a_batch_and_its_checkpoint_commit_together_or_not_at_all() {
    let env = TestEnv::new().await.unwrap();
    exec(&env, "CREATE TABLE items (id int PRIMARY KEY, name text)").await;
    let table = prepare(&env, "items", &["id"]).await.unwrap();
    let id = running_job(&env).await;
    let rows = [json!({"id": 1, "name": "a"}), json!({"id": 2, "name": "b"})];
    let written = env
        .db
        .upsert_sync_batch(&table, &rows, TIMEOUT, id, |counts| SyncCheckpoint {
            attempt: 1,
            position: json!({"page": 2}),
            batches: 1,
            records_read: 2,
            inserted: counts.inserted as i64,
            ..SyncCheckpoint::default()
        })
        .await
        .unwrap();
    assert_eq!(written, Some(counts(2, 2, 0, 0)));
    assert_eq!(
        env.db.sync_checkpoint(id).await.unwrap().unwrap().inserted,
        2
    );

    // Superseded: the batch is rolled back with its refused checkpoint.
    exec(
        &env,
        &format!("UPDATE jobs SET attempts = 2 WHERE id = '{id}'"),
    )
    .await;
    let written = env
        .db
        .upsert_sync_batch(
            &table,
            &[json!({"id": 3, "name": "c"})],
            TIMEOUT,
            id,
            |_| checkpoint(1, 2),
        )
        .await
        .unwrap();
    assert_eq!(written, None);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(env.db.pool())
        .await
        .unwrap();
    assert_eq!(count, 2, "the superseded batch was not committed");
}

#[tokio::test]
async fn source_reads_are_keyset_paged_read_only_and_typed() {
    let env = TestEnv::new().await.unwrap();
    exec(
        &env,
        "CREATE TABLE src (region text, id int, at timestamptz, PRIMARY KEY (region, id));
         INSERT INTO src SELECT r, i, timestamptz '2024-01-01' + i * interval '1 hour'
           FROM unnest(ARRAY['eu', 'us', 'Ap']) r, generate_series(1, 5) i;",
    )
    .await;
    let source = SyncDatabase::of(&env.db, TIMEOUT);
    let query = "SELECT region, id, at FROM src";
    let key_columns = [
        roundhouse_db::Ident::parse("region").unwrap(),
        roundhouse_db::Ident::parse("id").unwrap(),
    ];
    let key = source
        .source_key(query, &key_columns)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(source.count_source(query).await.unwrap(), 15);
    let mut last: Option<Value> = None;
    let mut seen = Vec::new();
    loop {
        let rows = source
            .read_source_batch(query, &key, last.as_ref(), 4)
            .await
            .unwrap();
        if rows.is_empty() {
            break;
        }
        let row = rows.last().unwrap();
        last = Some(json!([row["region"], row["id"]]));
        seen.extend(rows.iter().map(|r| {
            (
                r["region"].as_str().unwrap().to_owned(),
                r["id"].as_i64().unwrap(),
            )
        }));
    }
    let expected: Vec<(String, i64)> =
        sqlx::query_as::<_, (String, i32)>("SELECT region, id FROM src ORDER BY region, id")
            .fetch_all(env.db.pool())
            .await
            .unwrap()
            .into_iter()
            .map(|(r, i)| (r, i64::from(i)))
            .collect();
    assert_eq!(
        seen, expected,
        "every row once, in the source's own key order"
    );

    // The query runs read-only: a writing query fails, permanently.
    let writer = "WITH gone AS (DELETE FROM src RETURNING *) SELECT * FROM gone";
    let error = source.source_key(writer, &key_columns).await.unwrap_err();
    assert!(error.is_permanent_for_sync(), "{error}");
    assert_eq!(source.count_source(query).await.unwrap(), 15);
    assert!(
        source
            .source_key("SELECT * FROM src WHERE false", &key_columns)
            .await
            .unwrap()
            .is_none()
    );
}
