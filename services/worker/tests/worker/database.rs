//! The worker's PostgreSQL pool: sized from `WORKER_CONCURRENCY` unless
//! `DATABASE_MAX_CONNECTIONS` says otherwise, with the statement timeout and
//! the service's name on every connection.

use roundhouse_config::Service;
use roundhouse_test_support::TestEnv;

#[tokio::test]
async fn the_pool_is_sized_from_the_worker_concurrency() {
    let env = TestEnv::new().await.unwrap();
    let settings = env.settings();
    // The tests' WORKER_CONCURRENCY is 8: 4 + one per 16 slots.
    let expected = settings.database_pool_size(Service::Worker);
    assert_eq!(expected, 5);
    let app = roundhouse_worker::Application::build(settings)
        .await
        .unwrap();
    let db = app.db().clone();
    assert_eq!(db.pool().options().get_max_connections(), expected);
    assert_eq!(
        db.current_setting("statement_timeout").await.unwrap(),
        "30s"
    );
    assert_eq!(
        db.current_setting("application_name").await.unwrap(),
        "roundhouse-worker"
    );
    app.run_until_stopped(async {}).await.unwrap();
}

#[tokio::test]
async fn database_max_connections_overrides_the_workers_default() {
    let mut env = TestEnv::new().await.unwrap();
    env.set("DATABASE_MAX_CONNECTIONS", "2");
    let app = roundhouse_worker::Application::build(env.settings())
        .await
        .unwrap();
    assert_eq!(app.db().pool().options().get_max_connections(), 2);
    app.run_until_stopped(async {}).await.unwrap();
}
