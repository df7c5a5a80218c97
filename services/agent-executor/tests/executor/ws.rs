//! `GET /ws`: runs over a WebSocket, several at once, tagged by requestId;
//! refusals that leave the socket usable; runs that outlive the socket.

use reqwest::StatusCode;
use roundhouse_test_support::{JWT_SECRET, SERVICE_TOKEN, TokenClaims, token_with};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    ALICE, TestApp, WsMessage, alice, bob, chunk_text, id_of, of_request, spawn_app,
    spawn_app_with, ws_execute,
};

/// Twenty words: the dev reply streams as 23 chunks.
const LONG: &str = "a b c d e f g h i j k l m n o p q r s t";

/// An executor whose dev provider pauses between chunks, so that runs
/// overlap; Alice has an agent and 100 credits.
async fn slow_app() -> (TestApp, Uuid) {
    let app = spawn_app_with(|env| {
        env.set("DEV_PROVIDER_CHUNK_DELAY_MS", "20");
    })
    .await;
    let agent = app.create_agent(&alice(), json!({"name": "Slow"})).await;
    app.grant(ALICE, 100).await;
    (app, agent)
}

#[tokio::test]
async fn a_run_over_the_websocket_streams_its_reply_then_usage_and_credits() {
    let app = spawn_app().await;
    let agent = app.create_agent(&alice(), json!({"name": "A"})).await;
    app.grant(ALICE, 100).await;
    let mut socket = app.ws(&alice()).await;

    socket.send(&ws_execute("r1", agent, "hello world")).await;
    let messages = socket.read_until_done(&["r1"]).await;

    assert_eq!(messages[0]["type"], "agent_start", "{messages:?}");
    let run_id = id_of(&messages[0]["runId"]);
    assert!(
        messages
            .iter()
            .all(|m| m["requestId"] == "r1" && m["runId"] == run_id.to_string()),
        "{messages:?}"
    );
    let refs: Vec<_> = messages.iter().collect();
    assert_eq!(chunk_text(&refs), "Dev reply to: hello world");
    let seqs: Vec<_> = messages
        .iter()
        .filter(|m| m["type"] == "agent_chunk")
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=5).collect::<Vec<_>>());
    let done = messages.last().unwrap();
    assert_eq!(done["type"], "agent_done");
    assert_eq!(
        done["usage"],
        json!({"promptTokens": 2, "completionTokens": 5, "totalTokens": 7})
    );
    let credits = done["creditsUsed"].as_i64().unwrap();
    assert!(credits > 0);

    let run = app.finished_run(&alice(), run_id).await;
    assert_eq!(run["status"], "completed");
    assert_eq!(run["output"], "Dev reply to: hello world");
    assert_eq!(run["creditsUsed"], credits);
    assert_eq!(app.balance(ALICE).await, 100 - credits);
}

#[tokio::test]
async fn two_runs_share_one_socket_each_tagged_with_its_request() {
    let (app, agent) = slow_app().await;
    let mut socket = app.ws(&alice()).await;

    socket.send(&ws_execute("first", agent, LONG)).await;
    socket.send(&ws_execute("second", agent, "x y z")).await;
    let messages = socket.read_until_done(&["first", "second"]).await;

    let first = of_request(&messages, "first");
    let second = of_request(&messages, "second");
    assert_eq!(first.len() + second.len(), messages.len(), "all tagged");
    assert_eq!(chunk_text(&first), format!("Dev reply to: {LONG}"));
    assert_eq!(chunk_text(&second), "Dev reply to: x y z");
    for run in [&first, &second] {
        assert_eq!(run[0]["type"], "agent_start");
        assert_eq!(run.last().unwrap()["type"], "agent_done");
        assert!(run.iter().all(|m| m["runId"] == run[0]["runId"]));
    }
    assert_ne!(first[0]["runId"], second[0]["runId"]);
    // They ran at the same time: the short one ended inside the long one.
    let position = |wanted: &serde_json::Value| messages.iter().position(|m| m == wanted);
    assert!(
        position(second.last().unwrap()) < position(first.last().unwrap()),
        "{messages:?}"
    );
    assert!(position(second[0]) < position(first[first.len() - 2]));
}

#[tokio::test]
async fn a_bad_or_missing_token_or_the_service_token_is_refused_before_the_upgrade() {
    let app = spawn_app().await;
    let expired = token_with(
        TokenClaims {
            sub: ALICE,
            expires_in: -600,
            ..TokenClaims::default()
        },
        JWT_SECRET,
    );
    for url in [
        app.ws_url("garbage"),
        app.ws_url(&expired),
        app.ws_url(""),
        app.url("/ws").replace("http://", "ws://"),
    ] {
        match tokio_tungstenite::connect_async(&url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{url}");
            }
            other => panic!("{url}: expected a 401, got {other:?}"),
        }
    }
    match tokio_tungstenite::connect_async(app.ws_url(SERVICE_TOKEN)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
        }
        other => panic!("the service token: expected a 403, got {other:?}"),
    }
    // Plain HTTP with a good token: not a WebSocket handshake.
    let response = app.get(&format!("/ws?token={}", alice()), "").await;
    assert!(response.status.is_client_error(), "{}", response.status);
    assert_eq!(response.code(), "websocket_required");
}

#[tokio::test]
async fn an_unknown_agent_is_an_error_and_the_socket_stays_usable() {
    let app = spawn_app().await;
    let agent = app.create_agent(&alice(), json!({"name": "A"})).await;
    let private = app.create_agent(&bob(), json!({"name": "Bob's"})).await;
    app.grant(ALICE, 100).await;
    let mut socket = app.ws(&alice()).await;

    for (request, unknown) in [("nope", Uuid::now_v7()), ("bobs", private)] {
        socket.send(&ws_execute(request, unknown, "hi")).await;
        let error = socket.next_json().await;
        assert_eq!(error["type"], "agent_error");
        assert_eq!(error["requestId"], request);
        assert_eq!(error["code"], "not_found", "{error}");
        assert!(error.get("runId").is_none());
    }

    socket.send(&ws_execute("ok", agent, "hi")).await;
    let messages = socket.read_until_done(&["ok"]).await;
    assert_eq!(messages.last().unwrap()["type"], "agent_done");
    assert_eq!(app.balance(ALICE).await, 100 - 1);
}

#[tokio::test]
async fn insufficient_credits_are_an_error_of_that_request() {
    let app = spawn_app().await;
    let agent = app.create_agent(&alice(), json!({"name": "A"})).await;
    let mut socket = app.ws(&alice()).await;

    socket.send(&ws_execute("broke", agent, "hi")).await;
    let error = socket.next_json().await;

    assert_eq!(error["type"], "agent_error");
    assert_eq!(error["requestId"], "broke");
    assert_eq!(error["code"], "insufficient_credits", "{error}");
    assert!(error["message"].as_str().unwrap().contains("credits"));
    assert!(error.get("runId").is_none(), "no run was started");
    assert_eq!(app.balance(ALICE).await, 0);

    app.grant(ALICE, 10).await;
    socket.send(&ws_execute("paid", agent, "hi")).await;
    let messages = socket.read_until_done(&["paid"]).await;
    assert_eq!(messages.last().unwrap()["type"], "agent_done");
}

#[tokio::test]
async fn closing_the_socket_mid_run_does_not_stop_the_run() {
    let (app, agent) = slow_app().await;
    let mut socket = app.ws(&alice()).await;
    socket.send(&ws_execute("r", agent, LONG)).await;
    let start = socket.next_json().await;
    assert_eq!(start["type"], "agent_start");
    let run_id = id_of(&start["runId"]);
    assert_eq!(socket.next_json().await["type"], "agent_chunk");

    socket.close().await;
    assert_eq!(app.run(&alice(), run_id).await.body["status"], "running");

    let run = app.finished_run(&alice(), run_id).await;
    assert_eq!(run["status"], "completed");
    assert_eq!(run["output"], format!("Dev reply to: {LONG}"));
    assert!(run["creditsUsed"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn at_shutdown_a_socket_gets_the_end_of_its_runs_then_a_goodbye() {
    let (app, agent) = slow_app().await;
    let mut socket = app.ws(&alice()).await;
    socket.send(&ws_execute("r", agent, LONG)).await;
    assert_eq!(socket.next_json().await["type"], "agent_start");

    app.stop();
    let messages = socket.read_until_done(&["r"]).await;

    let refs: Vec<_> = messages.iter().collect();
    assert_eq!(chunk_text(&refs), format!("Dev reply to: {LONG}"));
    assert_eq!(messages.last().unwrap()["type"], "agent_done");
    match socket.next_raw().await {
        WsMessage::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_messages_are_answered_and_the_socket_stays_open() {
    let app = spawn_app().await;
    let agent = app.create_agent(&alice(), json!({"name": "A"})).await;
    app.grant(ALICE, 100).await;
    let mut socket = app.ws(&alice()).await;

    let malformed = [
        (WsMessage::text("not json"), None),
        (WsMessage::text(r#"{"type":"agent_dance"}"#), None),
        (
            WsMessage::text(r#"{"type":"agent_execute","requestId":"half"}"#),
            Some("half"),
        ),
        (
            WsMessage::text(
                json!({"type": "agent_execute", "requestId": "typo", "agentID": agent,
                       "messages": []})
                .to_string(),
            ),
            Some("typo"),
        ),
        (WsMessage::binary(vec![1, 2, 3]), None),
    ];
    for (message, request_id) in malformed {
        socket.send_raw(message).await;
        let error = socket.next_json().await;
        assert_eq!(error["type"], "agent_error");
        assert_eq!(error["code"], "invalid_message", "{error}");
        assert_eq!(error["requestId"].as_str(), request_id, "{error}");
    }
    // Well-formed but invalid: the HTTP API's validation error.
    let mut empty = ws_execute("empty", agent, "x");
    empty["messages"] = json!([]);
    socket.send(&empty).await;
    let error = socket.next_json().await;
    assert_eq!(error["code"], "validation_error", "{error}");

    socket.send(&ws_execute("fine", agent, "still here")).await;
    let messages = socket.read_until_done(&["fine"]).await;
    let refs: Vec<_> = messages.iter().collect();
    assert_eq!(chunk_text(&refs), "Dev reply to: still here");
}

#[tokio::test]
async fn a_request_id_still_running_on_the_socket_is_refused() {
    let (app, agent) = slow_app().await;
    let mut socket = app.ws(&alice()).await;
    socket.send(&ws_execute("same", agent, LONG)).await;
    assert_eq!(socket.next_json().await["type"], "agent_start");

    socket.send(&ws_execute("same", agent, "again")).await;
    let messages = socket.read_until_done(&["same"]).await;

    let refusal = messages
        .iter()
        .find(|m| m["type"] == "agent_error")
        .expect("a refusal");
    assert_eq!(refusal["code"], "invalid_message");
    assert!(refusal.get("runId").is_none());
    // …and the first run's own end is still to come.
    let done = socket.read_until_done(&["same"]).await;
    assert_eq!(done.last().unwrap()["type"], "agent_done");
}

#[tokio::test]
async fn each_run_counts_against_the_users_rate_limit() {
    let app = spawn_app_with(|env| {
        env.set("RATE_LIMIT_PER_USER_PER_MINUTE", "2");
    })
    .await;
    // Made by the service, so that Alice's budget is all for the runs.
    let agent = app
        .create_agent(SERVICE_TOKEN, json!({"name": "A", "userId": ALICE}))
        .await;
    app.grant(ALICE, 100).await;
    let mut socket = app.ws(&alice()).await;

    let mut codes = Vec::new();
    for request in ["1", "2"] {
        socket.send(&ws_execute(request, agent, "hi")).await;
        let messages = socket.read_until_done(&[request]).await;
        codes.push(messages.last().unwrap()["type"].clone());
    }
    socket.send(&ws_execute("3", agent, "hi")).await;
    let error = socket.next_json().await;

    assert_eq!(codes, ["agent_done", "agent_done"]);
    assert_eq!(error["code"], "rate_limited", "{error}");
    assert!(error["retryAfter"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn a_failing_provider_is_an_error_of_the_run() {
    let broken = crate::helpers::broken_provider().await;
    let app = spawn_app_with(|env| {
        env.set("LLM_PROVIDERS", format!("broken={broken}"));
        env.set("LLM_MAX_RETRIES", "0");
    })
    .await;
    let agent = app
        .create_agent(&alice(), json!({"name": "Doomed", "provider": "broken"}))
        .await;
    app.grant(ALICE, 10).await;
    let mut socket = app.ws(&alice()).await;

    socket.send(&ws_execute("doomed", agent, "hi")).await;
    let messages = socket.read_until_done(&["doomed"]).await;

    let error = messages.last().unwrap();
    assert_eq!(error["type"], "agent_error");
    assert_eq!(error["code"], "provider_error");
    assert!(error["message"].as_str().unwrap().contains("on fire"));
    assert_eq!(error["runId"], messages[0]["runId"]);
    assert_eq!(app.balance(ALICE).await, 10, "refunded");
}

#[tokio::test]
async fn pings_are_answered() {
    let app = spawn_app().await;
    let mut socket = app.ws(&alice()).await;
    socket
        .send_raw(WsMessage::Ping(b"are you there".to_vec().into()))
        .await;
    match socket.next_raw().await {
        WsMessage::Pong(payload) => assert_eq!(&payload[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
}
