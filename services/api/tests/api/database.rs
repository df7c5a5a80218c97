//! The api's PostgreSQL pool: sized for the api unless
//! `DATABASE_MAX_CONNECTIONS` says otherwise, with the statement timeout
//! and the service's name on every connection.

use roundhouse_config::Service;

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn the_pool_has_the_apis_default_size_and_connection_settings() {
    let app = spawn_app().await;
    let expected = app.env.settings().database_pool_size(Service::Api);
    assert_eq!(expected, 5);
    let db = &app.state.db;
    assert_eq!(db.pool().options().get_max_connections(), expected);
    assert_eq!(
        db.current_setting("statement_timeout").await.unwrap(),
        "30s"
    );
    assert_eq!(
        db.current_setting("application_name").await.unwrap(),
        "roundhouse-api"
    );
}

#[tokio::test]
async fn database_max_connections_and_the_statement_timeout_are_honoured() {
    let app = spawn_app_with(|env| {
        env.set("DATABASE_MAX_CONNECTIONS", "3")
            .set("DATABASE_STATEMENT_TIMEOUT_MS", "1500");
    })
    .await;
    let db = &app.state.db;
    assert_eq!(db.pool().options().get_max_connections(), 3);
    assert_eq!(
        db.current_setting("statement_timeout").await.unwrap(),
        "1500ms"
    );
}
