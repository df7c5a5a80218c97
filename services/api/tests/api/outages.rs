//! The api with RabbitMQ or PostgreSQL unreachable.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use roundhouse_api::AppState;
use roundhouse_broker::{Broker, BrokerSettings};
use roundhouse_db::{Db, PoolSettings};
use roundhouse_test_support::TestEnv;
use serde_json::json;

use crate::helpers::{
    ApiResponse, assert_error, assert_unavailable, client, job_id, serve_router, service,
    spawn_app_unwaited,
};

const CLOSED_AMQP_PORT: &str = "amqp://guest:guest@127.0.0.1:1/%2f";
const CLOSED_POSTGRES_PORT: &str = "postgres://postgres@127.0.0.1:1/x";

#[tokio::test]
async fn with_the_broker_down_jobs_are_still_accepted_and_left_for_the_sweep() {
    let app = spawn_app_unwaited(|env| {
        env.set("RABBITMQ_URL", CLOSED_AMQP_PORT);
    })
    .await;

    let (status, body) = app
        .enqueue(service(), json!({"jobType": "noop", "payload": {}}))
        .await;

    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = job_id(&body);
    // Give the dispatcher time to try (and fail) to publish.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let row = app.job_row(id).await.expect("the job is stored");
    assert_eq!(row.status, "queued");
    assert!(
        row.dispatched_at.is_none(),
        "marked dispatched without a broker"
    );
}

#[tokio::test]
async fn with_the_broker_down_health_is_unhealthy() {
    let app = spawn_app_unwaited(|env| {
        env.set("RABBITMQ_URL", CLOSED_AMQP_PORT);
    })
    .await;

    let response = app.get("/health", None).await;

    assert_eq!(
        response.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        response.text
    );
    assert_eq!(response.body["status"], "unhealthy");
    assert_eq!(response.body["service"], "api");

    let detailed = app.get("/health/detailed", Some(service())).await;
    assert_eq!(
        detailed.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        detailed.text
    );
    assert_eq!(detailed.body["dependencies"]["broker"]["status"], "down");
    assert_eq!(detailed.body["dependencies"]["database"]["status"], "up");
}

/// An api whose database is unreachable (built by hand: `Application::build`
/// would wait for the database to apply migrations).
async fn spawn_app_without_database(
    env: &TestEnv,
) -> (String, tokio_util::sync::CancellationToken) {
    let settings = env.settings();
    let db = Db::connect_lazy(
        CLOSED_POSTGRES_PORT,
        &PoolSettings {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(1),
            ..PoolSettings::default()
        },
    )
    .expect("a lazy pool");
    let broker = Broker::start(BrokerSettings {
        url: settings.rabbitmq_url.clone(),
        prefix: settings.rabbitmq_prefix.clone(),
        connection_name: "api-test-no-db".to_owned(),
        confirm_timeout: Duration::from_secs(5),
    });
    let (state, _) = AppState::assemble(settings, db, broker).expect("the state assembles");
    serve_router(state).await
}

#[tokio::test]
async fn with_the_database_down_enqueue_is_unavailable_with_retry_after() {
    let env = TestEnv::new().await.expect("a test environment");
    let (address, shutdown) = spawn_app_without_database(&env).await;
    let client = client();

    let started = Instant::now();
    let response = ApiResponse::read(
        client
            .post(format!("{address}/api/jobs/enqueue"))
            .bearer_auth(service())
            .json(&json!({"jobType": "noop", "payload": {}}))
            .send()
            .await
            .expect("an answer"),
    )
    .await;

    assert_unavailable(&response);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        !response.text.contains("127.0.0.1:1"),
        "leaks connection details: {}",
        response.text
    );

    let health = ApiResponse::read(
        client
            .get(format!("{address}/health"))
            .send()
            .await
            .expect("an answer"),
    )
    .await;
    assert_eq!(
        health.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        health.text
    );
    assert_eq!(health.body["status"], "unhealthy");
    // Liveness ignores dependencies: no restart storm during an outage.
    let live = client
        .get(format!("{address}/health/live"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(live.status(), StatusCode::OK);
    shutdown.cancel();
}

#[tokio::test]
async fn with_the_database_down_reads_are_unavailable_too() {
    let env = TestEnv::new().await.expect("a test environment");
    let (address, shutdown) = spawn_app_without_database(&env).await;
    let client = client();

    for path in [
        "/api/jobs",
        "/api/jobs/0190b0d4-0000-7000-8000-000000000000",
        "/api/queues/stats",
    ] {
        let response = ApiResponse::read(
            client
                .get(format!("{address}{path}"))
                .bearer_auth(service())
                .send()
                .await
                .expect("an answer"),
        )
        .await;
        assert_eq!(
            response.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {}",
            response.text
        );
        assert_error(&response.body, "unavailable");
        assert!(response.header("retry-after").is_some(), "{path}");
    }
    shutdown.cancel();
}
