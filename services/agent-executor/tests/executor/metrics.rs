//! The executor's `/metrics` after a `dev` run: valid Prometheus text with
//! the run, LLM token, credit and HTTP series at their exact values.
//!
//! The recorder is process-global: exact values hold because nextest runs
//! each test in its own process (`make test`).

use reqwest::StatusCode;
use roundhouse_test_support::metrics::Metrics;
use serde_json::json;

use crate::helpers::{ALICE, alice, ask, spawn_app};

#[tokio::test]
async fn a_dev_run_shows_in_tokens_credits_runs_and_requests() {
    let app = spawn_app().await;
    let agent = app
        .create_agent(
            &alice(),
            json!({"name": "Helper", "systemPrompt": "Be brief.", "maxTokens": 100}),
        )
        .await;
    app.grant(ALICE, 100).await;
    let response = app.execute(&alice(), &ask(agent, "hello world")).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.body["creditsUsed"], 1);

    let scrape = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("the executor answers");
    assert_eq!(scrape.status(), StatusCode::OK);
    let metrics = Metrics::parse(&scrape.text().await.expect("a body"));

    // dev usage: the words of the system prompt and the message (2 + 2),
    // then of "Dev reply to: hello world"; the agent names no model.
    let tokens = |kind| {
        metrics.value(
            "roundhouse_llm_tokens_total",
            &[("provider", "dev"), ("model", "dev"), ("kind", kind)],
        )
    };
    assert_eq!(tokens("prompt"), Some(4.0), "{}", metrics.text());
    assert_eq!(tokens("completion"), Some(5.0));
    assert_eq!(
        metrics.value("roundhouse_credits_used_total", &[("provider", "dev")]),
        Some(1.0)
    );
    assert_eq!(
        metrics.value("roundhouse_agent_runs_total", &[("outcome", "completed")]),
        Some(1.0)
    );
    assert_eq!(
        metrics
            .expect_histogram(
                "roundhouse_agent_run_duration_seconds",
                &[("outcome", "completed")]
            )
            .count,
        1.0
    );
    let execute = metrics.expect_histogram(
        "roundhouse_http_request_duration_seconds",
        &[
            ("method", "POST"),
            ("path", "/api/agent/execute"),
            ("status", "200"),
        ],
    );
    assert_eq!(execute.count, 1.0);
    assert_eq!(
        metrics
            .expect_histogram(
                "roundhouse_http_request_duration_seconds",
                &[("path", "/api/agents"), ("status", "201")],
            )
            .count,
        1.0
    );
}
