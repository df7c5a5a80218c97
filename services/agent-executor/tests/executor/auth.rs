//! Who may execute what: the backend secret, user tokens, agents' owners
//! and publication, credits, and malformed requests.

use reqwest::StatusCode;
use roundhouse_test_support::{SERVICE_TOKEN, TokenClaims, token_with};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{ALICE, BOB, alice, ask, bob, spawn_app, spawn_app_with};

#[tokio::test]
async fn execute_needs_the_backend_secret() {
    let app = spawn_app().await;
    let agent = app.create_agent(&alice(), json!({"name": "A"})).await;
    app.grant(ALICE, 100).await;
    let body = ask(agent, "hi");

    for secret in [None, Some("wrong"), Some("test-backend-secret-012345678")] {
        let mut request = app
            .client
            .post(app.url("/api/agent/execute"))
            .bearer_auth(alice())
            .json(&body);
        if let Some(secret) = secret {
            request = request.header("x-backend-secret", secret);
        }
        let response = crate::helpers::ApiResponse::read(request.send().await.unwrap()).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{secret:?}");
        assert_eq!(response.code(), "unauthorized");
        assert!(response.message().contains("X-Backend-Secret"));
    }
    assert_eq!(app.balance(ALICE).await, 100, "nothing was reserved");
    assert_eq!(app.execute(&alice(), &body).await.status, StatusCode::OK);
}

#[tokio::test]
async fn execute_is_unavailable_while_the_backend_secret_is_not_configured() {
    let app = spawn_app_with(|env| {
        env.set("RAILWAY_BACKEND_SECRET", "");
    })
    .await;
    let agent = app.create_agent(&alice(), json!({"name": "A"})).await;
    let response = app.execute(&alice(), &ask(agent, "hi")).await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.message(),
        "RAILWAY_BACKEND_SECRET is not configured"
    );
}

#[tokio::test]
async fn a_bad_or_missing_user_token_is_refused() {
    let app = spawn_app().await;
    let agent = app.create_agent(&alice(), json!({"name": "A"})).await;
    let forged = token_with(
        TokenClaims {
            sub: ALICE,
            ..TokenClaims::default()
        },
        "not-the-project-secret-but-long-enough!!",
    );
    let expired = token_with(
        TokenClaims {
            sub: ALICE,
            expires_in: -600,
            ..TokenClaims::default()
        },
        roundhouse_test_support::JWT_SECRET,
    );
    for token in [forged.as_str(), expired.as_str(), "garbage"] {
        let response = app.execute(token, &ask(agent, "hi")).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
        assert_eq!(response.code(), "unauthorized");
    }
    let response = crate::helpers::ApiResponse::read(
        app.client
            .post(app.url("/api/agent/execute"))
            .header("x-backend-secret", crate::helpers::BACKEND_SECRET)
            .json(&ask(agent, "hi"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unpublished_agents_run_only_for_their_owner_and_published_ones_for_anyone() {
    let app = spawn_app().await;
    let agent = app.create_agent(&alice(), json!({"name": "Private"})).await;
    app.grant(BOB, 100).await;

    let response = app.execute(&bob(), &ask(agent, "hi")).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert_eq!(response.code(), "not_found");
    assert_eq!(app.balance(BOB).await, 100);

    let published = app
        .put(
            &format!("/api/agents/{agent}"),
            &alice(),
            &json!({"isPublished": true}),
        )
        .await;
    assert_eq!(published.status, StatusCode::OK);
    let response = app.execute(&bob(), &ask(agent, "hi")).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.body["output"], "Dev reply to: hi");
    assert_eq!(app.balance(BOB).await, 99, "the caller pays, not the owner");
}

#[tokio::test]
async fn an_unknown_agent_is_not_found() {
    let app = spawn_app().await;
    app.grant(ALICE, 100).await;
    let response = app.execute(&alice(), &ask(Uuid::now_v7(), "hi")).await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn too_few_credits_answer_402_with_the_need_and_the_balance() {
    let app = spawn_app().await;
    // "hello" is 2 estimated tokens, plus 998 of output: 1000 tokens at 1 per 1K.
    let agent = app
        .create_agent(&alice(), json!({"name": "A", "maxTokens": 998}))
        .await;
    let response = app.execute(&alice(), &ask(agent, "hello")).await;
    assert_eq!(response.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(response.code(), "insufficient_credits");
    assert_eq!(response.message(), "this run needs 1 credits, balance 0");
    assert!(response.header("x-run-id").is_none(), "no run was recorded");
}

#[tokio::test]
async fn malformed_or_invalid_execute_bodies_are_refused() {
    let app = spawn_app().await;
    let agent = app.create_agent(&alice(), json!({"name": "A"})).await;
    app.grant(ALICE, 100).await;

    let response = crate::helpers::ApiResponse::read(
        app.client
            .post(app.url("/api/agent/execute"))
            .bearer_auth(alice())
            .header("x-backend-secret", crate::helpers::BACKEND_SECRET)
            .header("content-type", "application/json")
            .body("{\"agentId\": ")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.code(), "invalid_json");

    let empty = app
        .execute(&alice(), &json!({"agentId": agent, "messages": []}))
        .await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(empty.message().starts_with("messages"), "{}", empty.body);

    let bad_role = app
        .execute(
            &alice(),
            &json!({"agentId": agent, "messages": [{"role": "robot", "content": "x"}]}),
        )
        .await;
    assert_eq!(bad_role.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_role.message().contains("role"), "{}", bad_role.body);
    assert_eq!(app.balance(ALICE).await, 100);
}

#[tokio::test]
async fn the_service_runs_agents_for_the_user_it_names() {
    let app = spawn_app().await;
    let agent = app.create_agent(&alice(), json!({"name": "A"})).await;
    app.grant(ALICE, 100).await;

    let mut body = ask(agent, "hi");
    let response = app.execute(SERVICE_TOKEN, &body).await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response.message().starts_with("userId"));

    body["userId"] = json!(ALICE);
    let response = app.execute(SERVICE_TOKEN, &body).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(app.balance(ALICE).await, 99);

    // Acting for Bob, the service may not run Alice's unpublished agent.
    body["userId"] = json!(BOB);
    assert_eq!(
        app.execute(SERVICE_TOKEN, &body).await.status,
        StatusCode::NOT_FOUND
    );
    // A user may not act for another.
    body["userId"] = json!(ALICE);
    assert_eq!(
        app.execute(&bob(), &body).await.status,
        StatusCode::FORBIDDEN
    );
}
