//! Starting the executor, and what it serves besides the API.

use reqwest::StatusCode;
use roundhouse_agent_executor::Application;
use roundhouse_test_support::TestEnv;

use crate::helpers::{alice, spawn_app};

#[tokio::test]
async fn malformed_llm_settings_stop_the_executor_naming_the_variable() {
    let mut env = TestEnv::new().await.unwrap();
    env.set("LLM_PROVIDERS", "ollama");
    let Err(error) = Application::build(env.settings()).await else {
        panic!("the executor started with LLM_PROVIDERS=ollama");
    };
    assert!(format!("{error:#}").contains("LLM_PROVIDERS"), "{error:#}");
}

#[tokio::test]
async fn health_metrics_and_error_shapes_are_served() {
    let app = spawn_app().await;
    let health = app.send(reqwest::Method::GET, "/health", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "healthy");
    assert_eq!(health.body["service"], "agent-executor");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);

    let wrong_method = app.delete("/api/credits", &alice()).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.code(), "method_not_allowed");
    let unknown = app.get("/api/nothing", &alice()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.code(), "not_found");
}

#[tokio::test]
async fn one_pool_of_the_executors_default_size_serves_it_and_its_embedded_worker() {
    let app = spawn_app().await;
    let expected = app
        .env
        .settings()
        .database_pool_size(roundhouse_config::Service::AgentExecutor);
    assert_eq!(expected, 4);
    let db = &app.state.db;
    assert_eq!(db.pool().options().get_max_connections(), expected);
    assert_eq!(
        db.current_setting("statement_timeout").await.unwrap(),
        "30s"
    );
    assert_eq!(
        db.current_setting("application_name").await.unwrap(),
        "roundhouse-agent-executor"
    );
}
