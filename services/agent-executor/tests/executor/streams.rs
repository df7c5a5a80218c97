//! A run outlives its client; its stream can be re-attached from any chunk,
//! while it runs or after.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::StatusCode;
use roundhouse_db::{NewRun, RunStart};
use roundhouse_test_support::SERVICE_TOKEN;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    ALICE, TestApp, alice, ask_streamed, bob, chunks, data, read_events, spawn_app_with,
};

/// Twenty words: the dev reply streams as 23 chunks.
const LONG: &str = "a b c d e f g h i j k l m n o p q r s t";

async fn slow_app() -> (TestApp, Uuid) {
    let app = spawn_app_with(|env| {
        env.set("DEV_PROVIDER_CHUNK_DELAY_MS", "20");
    })
    .await;
    let agent = app.create_agent(&alice(), json!({"name": "Slow"})).await;
    app.grant(ALICE, 100).await;
    (app, agent)
}

fn reattach(app: &TestApp, token: &str, run_id: Uuid, query: &str) -> reqwest::RequestBuilder {
    app.client
        .get(app.url(&format!("/api/agent/runs/{run_id}/stream{query}")))
        .bearer_auth(token)
}

#[tokio::test]
async fn a_run_survives_its_client_disconnecting_and_can_be_reattached() {
    let (app, agent) = slow_app().await;
    let response = app
        .execute_request(&alice(), &ask_streamed(agent, LONG))
        .send()
        .await
        .unwrap();
    let run_id: Uuid = response.headers()["x-run-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut events = response.bytes_stream().eventsource();
    loop {
        let event = events.next().await.expect("an event").expect("an event");
        if event.event == "agent_chunk" {
            break;
        }
    }
    drop(events);
    assert_eq!(app.run(&alice(), run_id).await.body["status"], "running");

    let run = app.finished_run(&alice(), run_id).await;
    assert_eq!(run["status"], "completed");
    let output = format!("Dev reply to: {LONG}");
    assert_eq!(run["output"], output);

    let response = reattach(&app, &alice(), run_id, "")
        .header("last-event-id", "2")
        .send()
        .await
        .unwrap();
    let events = read_events(response).await;
    let chunks = chunks(&events);
    assert_eq!(
        chunks.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        (3..=23).collect::<Vec<_>>()
    );
    let text: String = chunks.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(format!("Dev reply {text}"), output);
    let last = events.last().unwrap();
    assert_eq!(last.event, "agent_done");
    assert_eq!(data(last)["runId"], run_id.to_string());
    assert_eq!(data(last)["creditsUsed"], run["creditsUsed"]);
}

#[tokio::test]
async fn reattaching_to_a_running_run_continues_live_without_gaps_or_repeats() {
    let (app, agent) = slow_app().await;
    let response = app
        .execute_request(&alice(), &ask_streamed(agent, LONG))
        .send()
        .await
        .unwrap();
    let run_id: Uuid = response.headers()["x-run-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut first = response.bytes_stream().eventsource();
    let mut seen = 0;
    while seen < 3 {
        let event = first.next().await.expect("an event").expect("an event");
        seen += usize::from(event.event == "agent_chunk");
    }

    // Mid-run: part from the database or the unstored chunks, the rest live.
    let (whole, tail) = tokio::join!(
        async {
            read_events(
                reattach(&app, &alice(), run_id, "?from=1")
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        },
        async {
            let response = reattach(&app, &alice(), run_id, "?from=1")
                .header("last-event-id", "5")
                .send()
                .await
                .unwrap();
            read_events(response).await
        },
    );
    assert_eq!(app.run(&alice(), run_id).await.body["status"], "completed");

    let ids = |events: &[eventsource_stream::Event]| -> Vec<i32> {
        chunks(events).iter().map(|(id, _)| *id).collect()
    };
    assert_eq!(ids(&whole), (1..=23).collect::<Vec<_>>());
    assert_eq!(ids(&tail), (6..=23).collect::<Vec<_>>());
    let text: String = chunks(&whole).iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(text, format!("Dev reply to: {LONG}"));
    for events in [&whole, &tail] {
        assert_eq!(events.last().unwrap().event, "agent_done");
    }
    // The first client, still connected, gets the end too.
    let rest: Vec<_> = first.map(|e| e.unwrap()).collect().await;
    assert_eq!(rest.last().unwrap().event, "agent_done");
}

#[tokio::test]
async fn a_run_executing_elsewhere_is_followed_from_the_database() {
    let (app, agent) = slow_app().await;
    // A run another replica started: recorded, but not in this one's hub.
    let run_id = Uuid::now_v7();
    let started = app
        .env
        .db
        .start_run(&NewRun {
            id: run_id,
            agent_id: agent,
            user_id: ALICE.to_owned(),
            mode: "stream".to_owned(),
            messages: json!([{"role": "user", "content": "hi"}]),
            reserve: 10,
            job: None,
        })
        .await
        .unwrap();
    assert!(matches!(started, RunStart::Started(_)));
    let db = app.env.db.clone();
    db.append_run_chunks(run_id, 1, &["one ".into(), "two ".into()])
        .await
        .unwrap();
    let elsewhere = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        db.append_run_chunks(run_id, 3, &["three".into()])
            .await
            .unwrap();
        db.complete_run(run_id, "one two three", &json!({"totalTokens": 3}), 1)
            .await
            .unwrap();
    });

    let events = read_events(reattach(&app, &alice(), run_id, "").send().await.unwrap()).await;
    elsewhere.await.unwrap();

    assert_eq!(
        chunks(&events),
        [
            (1, "one ".to_owned()),
            (2, "two ".to_owned()),
            (3, "three".to_owned())
        ]
    );
    let done = data(events.last().unwrap());
    assert_eq!(events.last().unwrap().event, "agent_done");
    assert_eq!(done["creditsUsed"], 1);
    assert_eq!(done["usage"], json!({"totalTokens": 3}));
}

#[tokio::test]
async fn another_users_run_is_not_found() {
    let (app, agent) = slow_app().await;
    let response = app
        .execute(
            &alice(),
            &json!({"agentId": agent, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK);
    let run_id: Uuid = response.header("x-run-id").unwrap().parse().unwrap();

    assert_eq!(app.run(&bob(), run_id).await.status, StatusCode::NOT_FOUND);
    let stream = reattach(&app, &bob(), run_id, "").send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.run(SERVICE_TOKEN, run_id).await.status, StatusCode::OK);
    assert_eq!(
        app.run(&alice(), Uuid::now_v7()).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_long_run_keeps_its_heartbeat_fresh_so_the_reaper_leaves_it_alone() {
    // 23 chunks, 600 ms apart: the run outlives one heartbeat period (10 s).
    let app = spawn_app_with(|env| {
        env.set("DEV_PROVIDER_CHUNK_DELAY_MS", "600");
    })
    .await;
    let agent = app.create_agent(&alice(), json!({"name": "Long"})).await;
    app.grant(ALICE, 100).await;
    let response = app
        .execute_request(&alice(), &ask_streamed(agent, LONG))
        .send()
        .await
        .unwrap();
    let run_id: Uuid = response.headers()["x-run-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // As if the last heartbeat were long ago.
    sqlx::query("UPDATE agent_runs SET heartbeat_at = now() - interval '1 hour' WHERE id = $1")
        .bind(run_id)
        .execute(app.env.db.pool())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(11)).await;
    let row = app.env.db.get_run(run_id, None).await.unwrap().unwrap();
    assert_eq!(row.status, "running");
    let age = chrono::Utc::now() - row.heartbeat_at.expect("a heartbeat");
    assert!(age < chrono::TimeDelta::seconds(11), "renewed {age} ago");
    assert!(
        app.env
            .db
            .reap_stale_runs(60.0, 10)
            .await
            .unwrap()
            .is_empty(),
        "a live run is not reaped"
    );
    drop(response);
}
