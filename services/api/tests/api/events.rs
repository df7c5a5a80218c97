//! Live job events: `GET /api/jobs/{id}/events` (SSE) and `GET /ws`.
//!
//! Job state is driven through the db crate (claim, progress, logs, chunks,
//! completion, failure), as a worker would, so every event is known.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use roundhouse_api::Application;
use roundhouse_db::Completion;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{ALICE, BOB, TestApp, service, spawn_app, user};

/// One server-sent event.
#[derive(Debug, Clone)]
struct SseEvent {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

impl SseEvent {
    fn id(&self) -> i64 {
        self.id
            .as_deref()
            .expect("an id")
            .parse()
            .expect("a numeric id")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("JSON data")
    }
}

/// Reads a `text/event-stream` response event by event.
struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<axum::body::Bytes>>,
    buffer: String,
}

impl SseReader {
    /// The next event (comments skipped); `None` when the stream ended.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    event: None,
                    data: String::new(),
                };
                let mut fields = 0;
                for line in block.lines() {
                    let (name, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match name {
                        "id" => event.id = Some(value.to_owned()),
                        "event" => event.event = Some(value.to_owned()),
                        "data" => event.data.push_str(value),
                        _ => continue,
                    }
                    fields += 1;
                }
                if fields > 0 {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.next())
                .await
                .expect("an event within 10 s")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk.expect("read the stream")).expect("UTF-8"));
        }
    }

    /// The next event, which must come.
    async fn expect(&mut self) -> SseEvent {
        self.next().await.expect("the stream goes on")
    }
}

async fn open_events(
    app: &TestApp,
    token: &str,
    id: Uuid,
    last_event_id: Option<i64>,
) -> reqwest::Response {
    let mut request = app
        .client
        .get(app.url(&format!("/api/jobs/{id}/events")))
        .bearer_auth(token)
        .timeout(Duration::from_secs(60));
    if let Some(last) = last_event_id {
        request = request.header("Last-Event-ID", last.to_string());
    }
    request.send().await.expect("send the request")
}

async fn events(app: &TestApp, token: &str, id: Uuid, last: Option<i64>) -> SseReader {
    let response = open_events(app, token, id, last).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    SseReader {
        body: response.bytes_stream().boxed(),
        buffer: String::new(),
    }
}

/// The ids of job `id`'s events after `after`, from the table.
async fn stored_ids(app: &TestApp, id: Uuid, after: i64) -> Vec<i64> {
    app.env
        .db
        .job_events(id, after, 1000)
        .await
        .expect("read the events")
        .iter()
        .map(|e| e.id)
        .collect()
}

async fn complete(app: &TestApp, id: Uuid, attempt: i32) {
    let done = app
        .env
        .db
        .complete_jobs(&[Completion {
            job_id: id,
            attempt,
            result: json!({"ok": true}),
        }])
        .await
        .expect("complete the job");
    assert_eq!(done, vec![id]);
}

#[tokio::test]
async fn a_client_connected_mid_job_gets_the_history_then_the_rest_live() {
    let app = spawn_app().await;
    let alice = user(ALICE);
    let id = app.enqueue_noop(&alice).await;
    let attempt = app.claim(id).await;
    let db = &app.env.db;
    assert!(
        db.record_progress(id, attempt, 10, Some("started"))
            .await
            .unwrap()
    );
    assert!(db.append_log(id, attempt, "line one").await.unwrap());

    let mut stream = events(&app, &alice, id, None).await;
    let history: Vec<SseEvent> = vec![
        stream.expect().await,
        stream.expect().await,
        stream.expect().await,
    ];
    let kinds: Vec<_> = history.iter().map(|e| e.event.clone().unwrap()).collect();
    assert_eq!(kinds, ["status", "progress", "log"]);
    assert_eq!(history[0].json()["data"]["status"], "processing");
    assert_eq!(history[0].json()["attempt"], attempt);
    assert!(history[0].json()["createdAt"].is_string());
    assert_eq!(history[1].json()["data"]["progress"], 10);

    // The rest arrives live, while the stream is open.
    assert!(db.record_progress(id, attempt, 60, None).await.unwrap());
    let live = stream.expect().await;
    assert_eq!(live.event.as_deref(), Some("progress"));
    assert_eq!(live.json()["data"]["progress"], 60);
    assert!(
        db.append_chunks(id, attempt, &["Hel".into(), "lo".into()])
            .await
            .unwrap()
    );
    let chunks = [stream.expect().await, stream.expect().await];
    assert_eq!(chunks[0].json()["data"]["content"], "Hel");
    assert_eq!(chunks[1].json()["data"]["content"], "lo");
    complete(&app, id, attempt).await;
    let last = stream.expect().await;
    assert_eq!(last.event.as_deref(), Some("status"));
    assert_eq!(last.json()["data"]["status"], "completed");
    // The terminal event ends the stream.
    assert!(
        stream.next().await.is_none(),
        "the stream ends after completion"
    );

    let mut sent: Vec<i64> = history.iter().map(SseEvent::id).collect();
    sent.extend([live.id(), chunks[0].id(), chunks[1].id(), last.id()]);
    assert_eq!(
        sent,
        stored_ids(&app, id, 0).await,
        "every event once, in order"
    );
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_gets_exactly_the_missed_events() {
    let app = spawn_app().await;
    let alice = user(ALICE);
    let id = app.enqueue_noop(&alice).await;
    let attempt = app.claim(id).await;
    let db = &app.env.db;
    assert!(db.record_progress(id, attempt, 5, None).await.unwrap());

    let mut stream = events(&app, &alice, id, None).await;
    let _processing = stream.expect().await;
    let seen = stream.expect().await;
    drop(stream);

    // Missed while disconnected.
    assert!(db.append_log(id, attempt, "while away").await.unwrap());
    assert!(db.record_progress(id, attempt, 70, None).await.unwrap());
    assert!(db.append_chunks(id, attempt, &["x".into()]).await.unwrap());
    let missed = stored_ids(&app, id, seen.id()).await;
    assert_eq!(missed.len(), 3);

    let mut stream = events(&app, &alice, id, Some(seen.id())).await;
    let mut replayed = Vec::new();
    for _ in 0..missed.len() {
        replayed.push(stream.expect().await.id());
    }
    assert_eq!(replayed, missed, "exactly the missed events, in order");
    complete(&app, id, attempt).await;
    let last = stream.expect().await;
    assert_eq!(last.json()["data"]["status"], "completed");
    assert!(stream.next().await.is_none());

    // `?after=` does the same for clients that cannot set the header, and a
    // finished job's stream replays and ends.
    let response = app
        .client
        .get(app.url(&format!("/api/jobs/{id}/events?after={}", seen.id())))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    let ids: Vec<i64> = text
        .lines()
        .filter_map(|line| {
            line.strip_prefix("id: ")
                .or_else(|| line.strip_prefix("id:"))
        })
        .map(|id| id.trim().parse().unwrap())
        .collect();
    assert_eq!(ids, stored_ids(&app, id, seen.id()).await);
}

#[tokio::test]
async fn another_users_job_events_are_404_and_the_service_sees_any() {
    let app = spawn_app().await;
    let id = app.enqueue_noop(&user(ALICE)).await;

    let response = open_events(&app, &user(BOB), id, None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let response = open_events(&app, &user(ALICE), Uuid::now_v7(), None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = app
        .client
        .get(app.url(&format!("/api/jobs/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = app
        .client
        .get(app.url(&format!("/api/jobs/{id}/events")))
        .bearer_auth(user(ALICE))
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    app.make_completed(id).await;
    let mut stream = events(&app, service(), id, None).await;
    assert_eq!(stream.expect().await.json()["data"]["status"], "processing");
    assert_eq!(stream.expect().await.json()["data"]["status"], "completed");
    assert!(stream.next().await.is_none());
}

/// A test WebSocket client.
struct Socket {
    inner: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Socket {
    async fn open(address: &str, token: &str) -> Self {
        let url = format!(
            "ws://{}/ws?token={token}",
            address.trim_start_matches("http://")
        );
        let (inner, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("the WebSocket opens");
        Self { inner }
    }

    async fn send(&mut self, message: Value) {
        self.inner
            .send(WsMessage::text(message.to_string()))
            .await
            .expect("send on the socket");
    }

    async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.inner.next())
                .await
                .expect("a message within 10 s")
                .expect("the socket is open")
                .expect("a message");
            match message {
                WsMessage::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                WsMessage::Ping(_) | WsMessage::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Nothing arrives for a while.
    async fn silent(&mut self) {
        let waited = tokio::time::timeout(Duration::from_millis(800), self.next()).await;
        assert!(waited.is_err(), "unexpected message: {:?}", waited.ok());
    }

    async fn subscribe_job(&mut self, id: Uuid) {
        self.send(json!({"type": "subscribe", "jobId": id})).await;
        let ack = self.next().await;
        assert_eq!(ack, json!({"type": "subscribed", "jobId": id}));
    }
}

/// (type, status, progress, event kind) of a job message.
fn summary(message: &Value) -> (String, String, i64, String) {
    (
        message["type"].as_str().unwrap().to_owned(),
        message["status"].as_str().unwrap().to_owned(),
        message["progress"].as_i64().unwrap(),
        message["event"]["kind"].as_str().unwrap_or("").to_owned(),
    )
}

fn expected(kind: &str, status: &str, progress: i64, event: &str) -> (String, String, i64, String) {
    (kind.into(), status.into(), progress, event.into())
}

#[tokio::test]
async fn job_update_complete_and_error_arrive_in_order_for_the_users_own_jobs() {
    let app = spawn_app().await;
    let alice = user(ALICE);
    let done = app.enqueue_noop(&alice).await;
    let doomed = app.enqueue_noop(&alice).await;
    let bobs = app.enqueue_noop(&user(BOB)).await;
    let mut socket = Socket::open(&app.address, &alice).await;

    socket.subscribe_job(done).await;
    socket.subscribe_job(doomed).await;
    socket
        .send(json!({"type": "subscribe", "jobId": bobs}))
        .await;
    let refused = socket.next().await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "not_found");
    assert_eq!(refused["jobId"], json!(bobs));

    let db = &app.env.db;
    let attempt = app.claim(done).await;
    assert!(
        db.record_progress(done, attempt, 40, Some("halfway"))
            .await
            .unwrap()
    );
    assert!(db.append_log(done, attempt, "a line").await.unwrap());
    complete(&app, done, attempt).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let message = socket.next().await;
        assert_eq!(message["jobId"], json!(done));
        got.push(summary(&message));
    }
    assert_eq!(
        got,
        [
            expected("job_update", "processing", 0, "status"),
            expected("job_update", "processing", 40, "progress"),
            expected("job_update", "processing", 40, "log"),
            expected("job_complete", "completed", 100, "status"),
        ]
    );

    let attempt = app.claim(doomed).await;
    db.fail_job(doomed, attempt, "boom", false, 0.0)
        .await
        .unwrap();
    let first = socket.next().await;
    let second = socket.next().await;
    assert_eq!(
        summary(&first),
        expected("job_update", "processing", 0, "status")
    );
    assert_eq!(
        summary(&second),
        expected("job_error", "failed", 0, "status")
    );
    assert_eq!(second["event"]["data"]["error"], "boom");
    assert!(first["event"]["id"].as_i64() < second["event"]["id"].as_i64());

    // Bob's job is none of Alice's business.
    app.make_completed(bobs).await;
    socket.silent().await;
}

#[tokio::test]
async fn a_queue_subscription_delivers_only_the_users_own_jobs() {
    let app = spawn_app().await;
    let alice = user(ALICE);
    let mut socket = Socket::open(&app.address, &alice).await;
    let queue = app
        .job_row(app.enqueue_noop(&alice).await)
        .await
        .unwrap()
        .queue;
    socket
        .send(json!({"type": "subscribe", "queue": queue}))
        .await;
    assert_eq!(
        socket.next().await,
        json!({"type": "subscribed", "queue": queue})
    );

    let bobs = app.enqueue_noop(&user(BOB)).await;
    let mine = app.enqueue_noop(&alice).await;
    app.make_completed(bobs).await;
    app.make_completed(mine).await;
    let update = socket.next().await;
    let complete = socket.next().await;
    assert_eq!(update["jobId"], json!(mine));
    assert_eq!(
        summary(&update),
        expected("job_update", "processing", 0, "status")
    );
    assert_eq!(complete["jobId"], json!(mine));
    assert_eq!(summary(&complete).0, "job_complete");

    // Unsubscribed: nothing more.
    socket
        .send(json!({"type": "unsubscribe", "queue": queue}))
        .await;
    assert_eq!(
        socket.next().await,
        json!({"type": "unsubscribed", "queue": queue})
    );
    let another = app.enqueue_noop(&alice).await;
    app.make_completed(another).await;
    socket.silent().await;
}

/// A second api replica on the same database and RabbitMQ prefix.
struct Replica {
    address: String,
    state: roundhouse_api::AppState,
    stop: CancellationToken,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn second_replica(app: &TestApp) -> Replica {
    let application = Application::build(app.env.settings())
        .await
        .expect("the second replica builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    let state = application.state().clone();
    let stop = CancellationToken::new();
    tokio::spawn(application.run_until_stopped(stop.clone().cancelled_owned()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !state.broker.is_connected() {
        assert!(
            std::time::Instant::now() < deadline,
            "replica 2 has no broker"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Replica {
        address,
        state,
        stop,
    }
}

#[tokio::test]
async fn with_two_api_replicas_job_events_reach_a_client_on_either() {
    let app = spawn_app().await;
    let replica = second_replica(&app).await;
    let alice = user(ALICE);
    let id = app.enqueue_noop(&alice).await;
    let mut on_first = Socket::open(&app.address, &alice).await;
    let mut on_second = Socket::open(&replica.address, &alice).await;
    on_first.subscribe_job(id).await;
    on_second.subscribe_job(id).await;

    let attempt = app.claim(id).await;
    assert!(
        app.env
            .db
            .record_progress(id, attempt, 50, None)
            .await
            .unwrap()
    );
    complete(&app, id, attempt).await;
    for socket in [&mut on_first, &mut on_second] {
        let got: Vec<_> = [
            socket.next().await,
            socket.next().await,
            socket.next().await,
        ]
        .iter()
        .map(summary)
        .collect();
        assert_eq!(
            got,
            [
                expected("job_update", "processing", 0, "status"),
                expected("job_update", "processing", 50, "progress"),
                expected("job_complete", "completed", 100, "status"),
            ]
        );
    }

    // The wake-up notes fan out through RabbitMQ to every replica's own queue.
    let mut notes = replica.state.feed.notes();
    notes.borrow_and_update();
    app.state.announce_events(id, "default");
    tokio::time::timeout(Duration::from_secs(5), notes.changed())
        .await
        .expect("replica 2 hears replica 1's note")
        .unwrap();

    // And SSE on the second replica replays what the first one served.
    let response = reqwest::Client::new()
        .get(format!("{}/api/jobs/{id}/events", replica.address))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    let kinds = text
        .lines()
        .filter(|line| line.starts_with("event:"))
        .count();
    assert_eq!(kinds, 3, "{text}");
}

#[tokio::test]
async fn a_socket_without_a_valid_token_is_refused_before_the_upgrade() {
    let app = spawn_app().await;
    for token in ["", "not-a-token"] {
        let url = format!(
            "ws://{}/ws?token={token}",
            app.address.trim_start_matches("http://")
        );
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED.as_u16());
            }
            other => panic!("expected a 401, got {other:?}"),
        }
    }
    // The service token follows any job.
    let id = app.enqueue_noop(&user(ALICE)).await;
    let mut socket = Socket::open(&app.address, service()).await;
    socket.subscribe_job(id).await;
    app.make_completed(id).await;
    assert_eq!(summary(&socket.next().await).0, "job_update");
    assert_eq!(summary(&socket.next().await).0, "job_complete");
}
