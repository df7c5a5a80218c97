//! Sync and streamed runs end to end with the `dev` provider; credits under
//! concurrency; a failing provider.

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    ALICE, ApiResponse, alice, ask, ask_streamed, broken_provider, chunks, data, id_of,
    read_events, spawn_app, spawn_app_with,
};

#[tokio::test]
async fn a_sync_run_answers_the_dev_reply_and_charges_its_tokens() {
    let app = spawn_app().await;
    let agent = app
        .create_agent(
            &alice(),
            json!({"name": "Helper", "systemPrompt": "Be brief.", "maxTokens": 100}),
        )
        .await;
    assert_eq!(app.grant(ALICE, 100).await, 100);

    let response = app.execute(&alice(), &ask(agent, "hello world")).await;

    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let body = &response.body;
    assert_eq!(body["output"], "Dev reply to: hello world");
    // dev usage: words of every message (2 + 2), words of the reply (5).
    assert_eq!(
        body["usage"],
        json!({"promptTokens": 4, "completionTokens": 5, "totalTokens": 9})
    );
    assert_eq!(body["creditsUsed"], 1);
    assert_eq!(app.balance(ALICE).await, 99);
    assert!(app.state.hub.is_empty(), "a finished run leaves the hub");
    let run_id = id_of(&body["runId"]);
    assert_eq!(
        response.header("x-run-id"),
        Some(run_id.to_string().as_str())
    );

    let run = app.run(&alice(), run_id).await;
    assert_eq!(run.status, StatusCode::OK);
    assert_eq!(run.body["status"], "completed");
    assert_eq!(run.body["agentId"], agent.to_string());
    assert_eq!(run.body["output"], "Dev reply to: hello world");
    assert_eq!(run.body["usage"], body["usage"]);
    assert_eq!(run.body["creditsUsed"], 1);
    assert!(run.body["error"].is_null());
    assert!(run.body["completedAt"].is_string());
}

#[tokio::test]
async fn a_streamed_run_sends_start_then_numbered_chunks_then_done() {
    let app = spawn_app().await;
    let agent = app
        .create_agent(&alice(), json!({"name": "Streamer"}))
        .await;
    app.grant(ALICE, 100).await;

    let response = app
        .execute_request(&alice(), &ask_streamed(agent, "tell me more"))
        .send()
        .await
        .unwrap();
    let header_run_id = response.headers()["x-run-id"].to_str().unwrap().to_owned();
    let events = read_events(response).await;

    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.first(), Some(&"agent_start"), "{names:?}");
    assert_eq!(names.last(), Some(&"agent_done"), "{names:?}");
    assert!(
        names[1..names.len() - 1]
            .iter()
            .all(|n| *n == "agent_chunk"),
        "{names:?}"
    );
    let run_id = id_of(&data(&events[0])["runId"]);
    assert_eq!(run_id.to_string(), header_run_id);

    let chunks = chunks(&events);
    let ids: Vec<i32> = chunks.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=chunks.len() as i32).collect::<Vec<_>>());
    let text: String = chunks.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(text, "Dev reply to: tell me more");

    let done = data(events.last().unwrap());
    assert_eq!(done["runId"], run_id.to_string());
    assert_eq!(done["usage"]["totalTokens"], 9);
    assert_eq!(done["creditsUsed"], 1);
    let run = app.run(&alice(), run_id).await;
    assert_eq!(run.body["status"], "completed");
    assert_eq!(run.body["output"], text);
}

#[tokio::test]
async fn fifty_concurrent_runs_against_credits_for_ten_run_exactly_ten() {
    // 1000 credits per 1K tokens: "hi" (1 token) + maxTokens 4 reserves 5,
    // and the dev reply uses 1 + 4 tokens: each run costs all it reserved,
    // so no refund lets an eleventh run in, however the runs interleave.
    let app = spawn_app_with(|env| {
        env.set("MODEL_PRICING", "priced=1000");
    })
    .await;
    let agent = app
        .create_agent(
            &alice(),
            json!({"name": "Pricey", "model": "priced", "maxTokens": 4}),
        )
        .await;
    app.grant(ALICE, 50).await;

    let (token, body) = (alice(), ask(agent, "hi"));
    let watching = CancellationToken::new();
    let watcher = {
        let (db, watching) = (app.env.db.clone(), watching.clone());
        tokio::spawn(async move {
            let mut lowest = i64::MAX;
            while !watching.is_cancelled() {
                lowest = lowest.min(db.credit_balance(ALICE).await.unwrap());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            lowest
        })
    };
    let answers: Vec<ApiResponse> = join_all((0..50).map(|_| app.execute(&token, &body))).await;
    watching.cancel();
    assert!(watcher.await.unwrap() >= 0, "the balance went negative");

    let ok: Vec<&ApiResponse> = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .collect();
    let refused: Vec<&ApiResponse> = answers
        .iter()
        .filter(|a| a.status == StatusCode::PAYMENT_REQUIRED)
        .collect();
    assert_eq!(ok.len(), 10);
    assert_eq!(refused.len(), 40);
    assert!(refused.iter().all(|a| a.code() == "insufficient_credits"));
    let spent: i64 = ok
        .iter()
        .map(|a| a.body["creditsUsed"].as_i64().unwrap())
        .sum();
    assert_eq!(spent, 50);
    assert_eq!(app.balance(ALICE).await, 50 - spent);
}

#[tokio::test]
async fn a_failing_provider_answers_502_fails_the_run_and_refunds_it() {
    let broken = broken_provider().await;
    let app = spawn_app_with(|env| {
        env.set("LLM_PROVIDERS", format!("broken={broken}"));
        env.set("LLM_MAX_RETRIES", "0");
    })
    .await;
    let agent = app
        .create_agent(&alice(), json!({"name": "Doomed", "provider": "broken"}))
        .await;
    app.grant(ALICE, 10).await;

    let response = app.execute(&alice(), &ask(agent, "hello")).await;

    assert_eq!(
        response.status,
        StatusCode::BAD_GATEWAY,
        "{}",
        response.body
    );
    assert_eq!(response.code(), "provider_error");
    assert!(response.message().contains("on fire"), "{}", response.body);
    let run_id = response.header("x-run-id").unwrap().parse().unwrap();
    let run = app.finished_run(&alice(), run_id).await;
    assert_eq!(run["status"], "failed");
    assert!(run["error"].as_str().unwrap().contains("on fire"));
    assert_eq!(run["creditsUsed"], 0);
    assert_eq!(app.balance(ALICE).await, 10);

    // Streamed, the failure is the stream's last event.
    let response = app
        .execute_request(&alice(), &ask_streamed(agent, "hello"))
        .send()
        .await
        .unwrap();
    let events = read_events(response).await;
    let last = events.last().unwrap();
    assert_eq!(last.event, "agent_error");
    assert!(data(last)["message"].as_str().unwrap().contains("on fire"));
    assert_eq!(data(last)["code"], "provider_error");
    assert_eq!(app.balance(ALICE).await, 10);
}
