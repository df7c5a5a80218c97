//! `mode: "async"`: the run is queued as an `agent_run` job, which the
//! executor's embedded worker runs; the client follows the run or the job.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{ALICE, alice, ask, broken_provider, id_of, spawn_app, spawn_app_with};

fn ask_async(agent: Uuid, message: &str) -> Value {
    let mut body = ask(agent, message);
    body["mode"] = json!("async");
    body
}

/// Waits until the executor's broker connection is up (it connects in the
/// background; before that, dispatches wait for the scheduler's sweep).
async fn broker_connected(app: &crate::helpers::TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.state.broker.is_connected() {
        assert!(Instant::now() < deadline, "no broker connection");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn finished_job(app: &crate::helpers::TestApp, id: Uuid) -> roundhouse_db::JobRow {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let job = app
            .env
            .db
            .get_job(id, None)
            .await
            .unwrap()
            .expect("the job exists");
        if matches!(job.status.as_str(), "completed" | "failed" | "cancelled") {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} is still {}",
            job.status
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn an_async_run_is_queued_as_a_job_that_the_executor_runs() {
    let app = spawn_app().await;
    let agent = app
        .create_agent(&alice(), json!({"name": "Background"}))
        .await;
    app.grant(ALICE, 1000).await;
    broker_connected(&app).await;

    let response = app
        .execute(&alice(), &ask_async(agent, "write the quarterly report"))
        .await;
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.body);
    let run_id = id_of(&response.body["runId"]);
    let job_id = id_of(&response.body["jobId"]);
    assert_eq!(
        response.header("x-run-id"),
        Some(run_id.to_string().as_str())
    );

    let job = finished_job(&app, job_id).await;
    assert_eq!(job.status, "completed", "{:?}", job.error);
    assert_eq!(job.job_type, "agent_run");
    assert_eq!(job.queue, "agents");
    assert_eq!(job.user_id.as_deref(), Some(ALICE));
    let result = job.result.unwrap();
    assert_eq!(result["runId"], run_id.to_string());
    assert_eq!(result["output"], "Dev reply to: write the quarterly report");

    let run = app.finished_run(&alice(), run_id).await;
    assert_eq!(run["status"], "completed");
    assert_eq!(run["mode"], "async");
    assert_eq!(run["output"], result["output"]);
    let used = run["creditsUsed"].as_i64().unwrap();
    assert!(used >= 1);
    assert_eq!(result["creditsUsed"], used);
    assert_eq!(app.balance(ALICE).await, 1000 - used);
}

#[tokio::test]
async fn an_async_run_without_credits_is_refused_and_queues_nothing() {
    let app = spawn_app().await;
    let agent = app.create_agent(&alice(), json!({"name": "Broke"})).await;
    let response = app.execute(&alice(), &ask_async(agent, "hi")).await;
    assert_eq!(response.status, StatusCode::PAYMENT_REQUIRED);
    let queued = app.env.db.count_jobs("agents", "queued").await.unwrap();
    assert_eq!(queued, 0);
    assert_eq!(app.balance(ALICE).await, 0);
}

#[tokio::test]
async fn a_failing_async_run_fails_its_job_and_is_refunded() {
    let broken = broken_provider().await;
    let app = spawn_app_with(|env| {
        env.set("LLM_PROVIDERS", format!("broken={broken}"));
        env.set("LLM_MAX_RETRIES", "0");
    })
    .await;
    let agent = app
        .create_agent(&alice(), json!({"name": "Doomed", "provider": "broken"}))
        .await;
    app.grant(ALICE, 500).await;
    broker_connected(&app).await;
    let response = app.execute(&alice(), &ask_async(agent, "hello")).await;
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.body);
    let job = finished_job(&app, id_of(&response.body["jobId"])).await;
    assert_eq!(job.status, "failed");
    assert_eq!(job.attempts, 1, "a paid run is never repeated silently");
    let run = app
        .finished_run(&alice(), id_of(&response.body["runId"]))
        .await;
    assert_eq!(run["status"], "failed");
    assert_eq!(app.balance(ALICE).await, 500, "refunded in full");
}
