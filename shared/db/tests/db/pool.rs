//! Connection hygiene: the per-connection timeouts are in force on real
//! connections, and the statements that may rightly run long escape them.

use std::time::Duration;

use roundhouse_db::{Db, PoolSettings};
use roundhouse_test_support::TestEnv;

/// A pool on the test's database with `statement_timeout` at `timeout`.
fn pool_with_timeout(env: &TestEnv, timeout: Duration) -> Db {
    Db::connect_lazy(
        &env.database_url,
        &PoolSettings {
            max_connections: 2,
            statement_timeout: Some(timeout),
            application_name: Some("roundhouse-pool-test".to_owned()),
            ..PoolSettings::default()
        },
    )
    .unwrap()
}

/// The SQLSTATE of a failed query.
fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    }
}

#[tokio::test]
async fn a_statement_longer_than_the_statement_timeout_is_cancelled() {
    let env = TestEnv::new().await.unwrap();
    let db = pool_with_timeout(&env, Duration::from_millis(200));

    let error = sqlx::query("SELECT pg_sleep(2)")
        .execute(db.pool())
        .await
        .unwrap_err();
    // 57014 query_canceled: "canceling statement due to statement timeout".
    assert_eq!(sqlstate(&error).as_deref(), Some("57014"), "{error}");
    assert!(error.to_string().contains("statement timeout"), "{error}");

    // Shorter statements run, and the connection is still usable.
    sqlx::query("SELECT pg_sleep(0.05)")
        .execute(db.pool())
        .await
        .unwrap();
    let (timeout, name): (String, String) = sqlx::query_as(
        "SELECT current_setting('statement_timeout'), current_setting('application_name')",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(timeout, "200ms");
    assert_eq!(name, "roundhouse-pool-test");
}

#[tokio::test]
async fn a_connection_left_idle_in_a_transaction_is_ended_by_the_server() {
    let env = TestEnv::new().await.unwrap();
    let db = Db::connect_lazy(
        &env.database_url,
        &PoolSettings {
            max_connections: 1,
            idle_in_transaction_timeout: Some(Duration::from_millis(300)),
            ..PoolSettings::default()
        },
    )
    .unwrap();

    let mut tx = db.pool().begin().await.unwrap();
    sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        sqlx::query("SELECT 1").execute(&mut *tx).await.is_err(),
        "the server should have ended the idle transaction's session"
    );
    drop(tx);
    // The pool replaces the dead connection.
    db.ping().await.unwrap();
}

#[tokio::test]
async fn the_defaults_bound_statements_and_idle_transactions() {
    let env = TestEnv::new().await.unwrap();
    let db = Db::connect_lazy(&env.database_url, &PoolSettings::default()).unwrap();
    let (statement, idle): (String, String) = sqlx::query_as(
        "SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout')",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!((statement.as_str(), idle.as_str()), ("30s", "1min"));
}

#[tokio::test]
async fn vacuum_runs_without_the_statement_timeout() {
    let env = TestEnv::new().await.unwrap();
    // Enough dead events that VACUUM ANALYZE takes far longer than 1 ms.
    sqlx::query(
        r#"
        INSERT INTO job_events (job_id, attempt, kind, data)
        SELECT gen_random_uuid(), 1, 'log', jsonb_build_object('n', n, 'pad', repeat('x', 200))
          FROM generate_series(1, 20000) n
        "#,
    )
    .execute(env.db.pool())
    .await
    .unwrap();
    sqlx::query("DELETE FROM job_events WHERE id % 2 = 0")
        .execute(env.db.pool())
        .await
        .unwrap();
    let db = pool_with_timeout(&env, Duration::from_millis(1));
    let error = sqlx::query("SELECT pg_sleep(0.1)")
        .execute(db.pool())
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("57014"), "{error}");

    db.vacuum_job_tables().await.unwrap();
    // The unbounded connection was closed, not handed back: every
    // connection the pool gives out still has the timeout.
    for _ in 0..3 {
        let timeout: String = sqlx::query_scalar("SELECT current_setting('statement_timeout')")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(timeout, "1ms");
    }
}

#[tokio::test]
async fn migrations_run_without_the_statement_timeout() {
    let env = TestEnv::new().await.unwrap();
    // A fresh, empty database, migrated through a pool whose statements may
    // take 1 ms: creating every table and index takes longer than that.
    let name = format!("{}_m", env.database_name);
    roundhouse_db::create_database(&env.database_url, &name)
        .await
        .unwrap();
    let url = format!(
        "{}/{name}",
        &env.database_url[..env.database_url.rfind('/').unwrap()]
    );
    let db = Db::connect_lazy(
        &url,
        &PoolSettings {
            max_connections: 1,
            statement_timeout: Some(Duration::from_millis(1)),
            ..PoolSettings::default()
        },
    )
    .unwrap();
    let migrated = db.migrate().await;
    db.close().await;
    roundhouse_db::drop_database(&env.database_url, &name)
        .await
        .unwrap();
    migrated.unwrap();
}
