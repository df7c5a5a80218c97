//! A job-events WebSocket session (`GET /ws`).
//!
//! The client subscribes to jobs (`{"type":"subscribe","jobId"}`, with an
//! optional `after` event id to replay from) and to queues
//! (`{"type":"subscribe","queue"}`), and unsubscribes the same way. Each
//! subscription is a task that reads the job's events (through the
//! replica's [`crate::live::Feed`]) or the queue's (polling the table,
//! woken by the same notes) and queues `job_update`, `job_complete` and
//! `job_error` messages for one writer task, through a bounded channel: a
//! slow client makes its subscriptions wait, never buffers grow. Messages
//! about one job leave in event order, and a job followed both by id and
//! through its queue is sent once.
//!
//! Users see only their own jobs: a subscription to another user's job is
//! refused as not found, and a queue subscription delivers only the user's
//! jobs in that queue. The service token sees every job.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use roundhouse_auth::Principal;
use roundhouse_core::QueueName;
use roundhouse_db::EventRow;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use uuid::Uuid;

use crate::live::feed::POLL_EVERY;
use crate::live::view::{JobMessage, JobState, is_terminal};
use crate::startup::AppState;

/// Messages waiting for a slow client before its subscriptions pause.
const OUTGOING_CAPACITY: usize = 64;
/// How often the server pings (proxies keep the socket; pongs prove the client).
const PING_EVERY: Duration = Duration::from_secs(30);
/// A client heard from neither by message nor by pong for this long is gone.
const SILENCE_LIMIT: Duration = Duration::from_secs(75);
/// Subscriptions one socket may hold.
const MAX_SUBSCRIPTIONS: usize = 100;
/// Rows per queue poll.
const QUEUE_PAGE: i64 = 500;
/// The least time between two polls of a queue subscription.
const QUEUE_GAP: Duration = Duration::from_millis(50);

/// What a client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Subscribe {
        #[serde(rename = "jobId")]
        job_id: Option<Uuid>,
        queue: Option<String>,
        /// Replay a job's events after this id (default: from now on).
        after: Option<i64>,
    },
    Unsubscribe {
        #[serde(rename = "jobId")]
        job_id: Option<Uuid>,
        queue: Option<String>,
    },
}

/// What a subscription is to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Topic {
    Job(Uuid),
    Queue(String),
}

/// Answers to the client's own messages.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Reply<'a> {
    Subscribed {
        #[serde(rename = "jobId", skip_serializing_if = "Option::is_none")]
        job_id: Option<Uuid>,
        #[serde(skip_serializing_if = "Option::is_none")]
        queue: Option<&'a str>,
    },
    Unsubscribed {
        #[serde(rename = "jobId", skip_serializing_if = "Option::is_none")]
        job_id: Option<Uuid>,
        #[serde(skip_serializing_if = "Option::is_none")]
        queue: Option<&'a str>,
    },
    Error {
        code: &'a str,
        message: &'a str,
        #[serde(rename = "jobId", skip_serializing_if = "Option::is_none")]
        job_id: Option<Uuid>,
        #[serde(skip_serializing_if = "Option::is_none")]
        queue: Option<&'a str>,
    },
}

/// Serves one upgraded socket for `principal`, authenticated with `token`
/// (checked again for every subscription, so an expired token subscribes
/// to nothing more on an old socket).
pub async fn serve(socket: WebSocket, state: AppState, principal: Principal, token: String) {
    metrics::gauge!("roundhouse_api_sockets").increment(1.0);
    let owner = match principal {
        Principal::Service => None,
        Principal::User(user) => Some(user.id),
    };
    let (sink, mut incoming) = socket.split();
    let (outgoing, queue) = mpsc::channel(OUTGOING_CAPACITY);
    let writer = tokio::spawn(write(sink, queue));
    let mut session = Session {
        outbox: Outbox {
            outgoing,
            sent: Arc::default(),
        },
        state,
        token,
        owner: owner.map(Arc::from),
        tasks: JoinSet::new(),
        topics: HashMap::new(),
    };
    let closing = session.state.feed.closing().clone();
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            received = incoming.next() => {
                heard = Instant::now();
                match received {
                    Some(Ok(Message::Text(text))) => session.receive(text.as_str()).await,
                    Some(Ok(Message::Binary(_))) => {
                        session.refuse("invalid_message", "send JSON text messages", None).await;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                }
            }
            Some(ended) = session.tasks.join_next_with_id() => {
                let id = ended.map_or_else(|error| error.id(), |(id, ())| id);
                session.topics.retain(|_, handle| handle.id() != id);
            }
            () = tokio::time::sleep_until(heard + SILENCE_LIMIT) => break,
            () = closing.cancelled() => {
                let goodbye = Message::Close(Some(CloseFrame {
                    code: close_code::AWAY,
                    reason: "the api is shutting down".into(),
                }));
                let _ = session.outbox.outgoing.send(goodbye).await;
                break;
            }
        }
    }
    session.tasks.abort_all();
    drop(session);
    // The writer ends once every sender is gone (it closes the socket).
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    metrics::gauge!("roundhouse_api_sockets").decrement(1.0);
}

struct Session {
    state: AppState,
    token: String,
    /// `None` for the service.
    owner: Option<Arc<str>>,
    outbox: Outbox,
    tasks: JoinSet<()>,
    topics: HashMap<Topic, AbortHandle>,
}

impl Session {
    async fn receive(&mut self, text: &str) {
        let message = match serde_json::from_str::<ClientMessage>(text) {
            Ok(message) => message,
            Err(error) => {
                let message = format!("not a valid message: {error}");
                self.refuse("invalid_message", &message, None).await;
                return;
            }
        };
        match message {
            ClientMessage::Subscribe {
                job_id,
                queue,
                after,
            } => {
                if let Some(topic) = self.topic(job_id, queue).await {
                    self.subscribe(topic, after).await;
                }
            }
            ClientMessage::Unsubscribe { job_id, queue } => {
                if let Some(topic) = self.topic(job_id, queue).await {
                    if let Some(handle) = self.topics.remove(&topic) {
                        handle.abort();
                    }
                    let (job_id, queue) = parts(&topic);
                    self.outbox
                        .reply(&Reply::Unsubscribed { job_id, queue })
                        .await;
                }
            }
        }
    }

    /// The one topic a message names, or a refusal.
    async fn topic(&self, job_id: Option<Uuid>, queue: Option<String>) -> Option<Topic> {
        match (job_id, queue) {
            (Some(job_id), None) => Some(Topic::Job(job_id)),
            (None, Some(queue)) => match QueueName::parse(&queue) {
                Ok(name) => Some(Topic::Queue(name.as_str().to_owned())),
                Err(_) => {
                    self.refuse("invalid_message", "queue: not a queue name", None)
                        .await;
                    None
                }
            },
            _ => {
                self.refuse(
                    "invalid_message",
                    "name exactly one of jobId and queue",
                    None,
                )
                .await;
                None
            }
        }
    }

    async fn subscribe(&mut self, topic: Topic, after: Option<i64>) {
        let (job_id, queue) = parts(&topic);
        if self.topics.contains_key(&topic) {
            self.outbox
                .reply(&Reply::Subscribed { job_id, queue })
                .await;
            return;
        }
        if let Err(error) = self.state.auth.authenticate_token(&self.token).await {
            let refusal = roundhouse_http::ApiError::from(error);
            self.refuse(refusal.code(), refusal.message(), Some(&topic))
                .await;
            return;
        }
        // Each subscription counts against the user's limit, as a request does.
        if let Some(owner) = &self.owner
            && let Err(refusal) = self.state.limits.check_user(owner)
        {
            self.refuse(refusal.code(), refusal.message(), Some(&topic))
                .await;
            return;
        }
        if self.topics.len() >= MAX_SUBSCRIPTIONS {
            let message = format!("at most {MAX_SUBSCRIPTIONS} subscriptions on one socket");
            self.refuse("too_many_subscriptions", &message, Some(&topic))
                .await;
            return;
        }
        let owner = self.owner.clone();
        let state = self.state.clone();
        let outbox = self.outbox.clone();
        let handle = match &topic {
            Topic::Job(id) => {
                // Checked here, not in the task, so the answer precedes any event.
                let job = match state.db.get_job(*id, owner.as_deref()).await {
                    Ok(Some(job)) => job,
                    Ok(None) => {
                        self.refuse("not_found", "job not found", Some(&topic))
                            .await;
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot read a job to subscribe to");
                        self.refuse("internal", "try again", Some(&topic)).await;
                        return;
                    }
                };
                let after = match after {
                    Some(after) => after.max(0),
                    None => match state.db.latest_event_id(Some(*id)).await {
                        Ok(latest) => latest,
                        Err(error) => {
                            tracing::warn!(%error, "cannot read a job's latest event");
                            self.refuse("internal", "try again", Some(&topic)).await;
                            return;
                        }
                    },
                };
                let job_state = match JobState::at(&state.db, *id, after, &job.status).await {
                    Ok(job_state) => job_state,
                    Err(error) => {
                        tracing::warn!(%error, "cannot read a job's state to subscribe to");
                        self.refuse("internal", "try again", Some(&topic)).await;
                        return;
                    }
                };
                self.outbox
                    .reply(&Reply::Subscribed { job_id, queue })
                    .await;
                self.tasks
                    .spawn(follow_job(state, outbox, *id, after, job_state))
            }
            Topic::Queue(name) => {
                let after = state.db.latest_event_id(None).await.unwrap_or(0);
                self.outbox
                    .reply(&Reply::Subscribed { job_id, queue })
                    .await;
                self.tasks
                    .spawn(follow_queue(state, outbox, owner, name.clone(), after))
            }
        };
        self.topics.insert(topic, handle);
    }

    async fn refuse(&self, code: &str, message: &str, topic: Option<&Topic>) {
        let (job_id, queue) = topic.map_or((None, None), parts);
        self.outbox
            .reply(&Reply::Error {
                code,
                message,
                job_id,
                queue,
            })
            .await;
    }
}

fn parts(topic: &Topic) -> (Option<Uuid>, Option<&str>) {
    match topic {
        Topic::Job(id) => (Some(*id), None),
        Topic::Queue(name) => (None, Some(name)),
    }
}

/// The socket's sending side, shared by its subscriptions.
#[derive(Clone)]
struct Outbox {
    outgoing: mpsc::Sender<Message>,
    /// The last event id sent per job: a job followed twice is sent once.
    sent: Arc<Mutex<HashMap<Uuid, i64>>>,
}

impl Outbox {
    async fn reply(&self, reply: &Reply<'_>) {
        let _ = self.outgoing.send(text(reply)).await;
    }

    /// Sends the message for `row` unless it was sent; false once the
    /// socket is gone.
    async fn event(&self, job_id: Uuid, state: &JobState, row: &EventRow) -> bool {
        {
            let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
            let last = sent.entry(job_id).or_insert(0);
            if row.id <= *last {
                return true;
            }
            *last = row.id;
        }
        let message = JobMessage::new(job_id, state, Some(row));
        self.outgoing.send(text(&message)).await.is_ok()
    }
}

/// One job's events, until its terminal event (or the socket goes).
async fn follow_job(state: AppState, outbox: Outbox, id: Uuid, after: i64, mut job: JobState) {
    let mut follower = state.feed.follow(id, after);
    while let Some(row) = follower.next().await {
        let row = match row {
            Ok(row) => row,
            Err(error) => {
                tracing::warn!(%error, job_id = %id, "cannot read job events");
                tokio::time::sleep(POLL_EVERY).await;
                follower = state.feed.follow(id, follower.position());
                continue;
            }
        };
        job.apply(&row);
        if !outbox.event(id, &job, &row).await {
            return;
        }
        if is_terminal(&row)
            && state
                .db
                .job_events(id, row.id, 1)
                .await
                .is_ok_and(|later| later.is_empty())
        {
            return;
        }
    }
}

/// A queue's events (of `owner`'s jobs only, when given) from `after` on.
async fn follow_queue(
    state: AppState,
    outbox: Outbox,
    owner: Option<Arc<str>>,
    queue: String,
    mut after: i64,
) {
    let mut notes = state.feed.notes();
    let closing = state.feed.closing().clone();
    let mut jobs: HashMap<Uuid, JobState> = HashMap::new();
    loop {
        let rows = match state
            .db
            .queue_events_after(&queue, owner.as_deref(), after, QUEUE_PAGE)
            .await
        {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, %queue, "cannot read queue events");
                Vec::new()
            }
        };
        let full = rows.len() as i64 >= QUEUE_PAGE;
        for row in &rows {
            after = row.id;
            // The query kept only the owner's jobs; a job first seen here
            // starts from its state just before this event.
            let job = match jobs.entry(row.job_id) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    match JobState::at(&state.db, row.job_id, row.id - 1, "queued").await {
                        Ok(job) => entry.insert(job),
                        Err(error) => {
                            tracing::warn!(%error, %queue, "cannot read a job's state");
                            continue;
                        }
                    }
                }
            };
            job.apply(row);
            let job = job.clone();
            if !outbox.event(row.job_id, &job, row).await {
                return;
            }
            if is_terminal(row) {
                jobs.remove(&row.job_id);
            }
        }
        if full {
            continue;
        }
        // Under a stream of notes, at most one query per QUEUE_GAP.
        tokio::time::sleep(QUEUE_GAP).await;
        tokio::select! {
            _ = notes.changed() => {}
            () = tokio::time::sleep(POLL_EVERY) => {}
            () = closing.cancelled() => return,
        }
    }
}

/// Sends what is queued, and a ping every [`PING_EVERY`], until the queue
/// closes (then closes the socket) or the client is gone.
async fn write(mut sink: SplitSink<WebSocket, Message>, mut queue: mpsc::Receiver<Message>) {
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        let message = tokio::select! {
            message = queue.recv() => match message {
                Some(message) => message,
                None => break,
            },
            _ = ping.tick() => Message::Ping(Bytes::new()),
        };
        let closes = matches!(message, Message::Close(_));
        if sink.send(message).await.is_err() || closes {
            return;
        }
    }
    let _ = sink.close().await;
}

fn text(message: &impl Serialize) -> Message {
    Message::text(serde_json::to_string(message).expect("a socket message serializes"))
}
