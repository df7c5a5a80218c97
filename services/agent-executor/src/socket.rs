//! A WebSocket session (`GET /ws`, SPEC §5): each `agent_execute` the client
//! sends starts a run through the same path as `POST /api/agent/execute`
//! ([`crate::start`]), and the run's updates come back as messages tagged
//! with the request's id, several runs at once on one socket.
//!
//! Per socket there is this reader loop, one task per request (it starts
//! the run, then forwards its updates), and a writer task that owns the
//! socket's sending half and pings the client every 30 s. The request tasks
//! reach the writer through a *bounded* channel: when a client reads
//! slowly, the channel fills, the tasks wait, and their followers fall
//! behind the hub and catch up from the database later. A slow client
//! costs a fixed amount of memory, never a growing buffer.
//!
//! Runs are detached from all of this: a socket that closes stops the
//! forwarding, never a run (it finishes and is stored, as with SSE).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use roundhouse_auth::Principal;
use roundhouse_http::{ApiError, Caller};
use roundhouse_llm::ChatMessage;
use tokio::sync::mpsc;
use tokio::task::{self, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::dto::{ClientMessage, ServerMessage, acting_user};
use crate::error::ExecuteError;
use crate::follow::{Follower, Update};
use crate::start::{RunRequest, reserve_run};
use crate::startup::AppState;

/// Messages waiting for a slow client before its runs' forwarding pauses.
const OUTGOING_CAPACITY: usize = 64;
/// How often the server pings: keeps proxies from closing a quiet socket,
/// and the client's pongs show it is still there.
const PING_EVERY: Duration = Duration::from_secs(30);
/// A client heard from neither by message nor by pong for this long (two
/// and a half pings) is gone; the socket is closed.
const SILENCE_LIMIT: Duration = Duration::from_secs(75);
/// Runs one socket may follow at once.
const MAX_RUNS: usize = 64;
/// Longest `requestId` accepted.
const MAX_REQUEST_ID_CHARS: usize = 200;
/// How long a closing socket gets to send what is queued for it.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Why a service token cannot open (or use) a socket.
pub const SERVICE_REFUSED: &str =
    "the WebSocket takes a user's access token; the service uses POST /api/agent/execute";

/// Serves one upgraded socket, authenticated with `token` (checked again
/// for every run, so an expired token starts nothing on an old socket).
pub async fn serve(socket: WebSocket, state: AppState, token: String) {
    metrics::gauge!("roundhouse_agent_sockets").increment(1.0);
    let (sink, incoming) = socket.split();
    let (outgoing, queue) = mpsc::channel(OUTGOING_CAPACITY);
    let mut writer = tokio::spawn(write(sink, queue));
    let mut session = Session {
        state,
        token: Arc::from(token),
        outgoing,
        gone: CancellationToken::new(),
        requests: JoinSet::new(),
        active: HashMap::new(),
    };
    session.read(incoming).await;
    // Stop forwarding, but let requests still starting their run finish
    // starting it: a run recorded with its credits reserved must run.
    session.gone.cancel();
    session.requests.detach_all();
    drop(session);
    if tokio::time::timeout(CLOSE_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    metrics::gauge!("roundhouse_agent_sockets").decrement(1.0);
}

struct Session {
    state: AppState,
    token: Arc<str>,
    outgoing: mpsc::Sender<Message>,
    /// Cancelled when the socket is done: request tasks stop forwarding.
    gone: CancellationToken,
    requests: JoinSet<()>,
    /// The `requestId` of each request task still going.
    active: HashMap<task::Id, String>,
}

impl Session {
    /// Reads the client's messages until it closes, goes silent, or the
    /// executor shuts down.
    async fn read(&mut self, mut incoming: SplitStream<WebSocket>) {
        let closing = self.state.closing.clone();
        let mut heard = Instant::now();
        loop {
            tokio::select! {
                received = incoming.next() => {
                    heard = Instant::now();
                    match received {
                        Some(Ok(Message::Text(text))) => self.receive(text.as_str()).await,
                        Some(Ok(Message::Binary(_))) => {
                            self.refuse_message(None, "send JSON text messages, not binary")
                                .await;
                        }
                        // The WebSocket layer answers pings by itself.
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                    }
                }
                Some(ended) = self.requests.join_next_with_id() => {
                    let id = ended.map_or_else(|error| error.id(), |(id, ())| id);
                    self.active.remove(&id);
                }
                () = tokio::time::sleep_until(heard + SILENCE_LIMIT) => {
                    tracing::debug!("closing a silent WebSocket");
                    return;
                }
                () = closing.cancelled() => {
                    self.close_for_shutdown().await;
                    return;
                }
            }
        }
    }

    async fn receive(&mut self, text: &str) {
        let (request_id, agent_id, messages) = match serde_json::from_str::<ClientMessage>(text) {
            Ok(ClientMessage::AgentExecute {
                request_id,
                agent_id,
                messages,
            }) => (request_id, agent_id, messages),
            Err(error) => {
                // Tag the refusal when the message named its request.
                let request_id = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| v.get("requestId")?.as_str().map(str::to_owned));
                let message = format!("not a valid agent_execute message: {error}");
                self.refuse_message(request_id.as_deref(), &message).await;
                return;
            }
        };
        if request_id.is_empty() || request_id.chars().count() > MAX_REQUEST_ID_CHARS {
            let message = format!("requestId: must be 1-{MAX_REQUEST_ID_CHARS} characters");
            self.refuse_message(Some(&request_id), &message).await;
            return;
        }
        if self.active.values().any(|active| *active == request_id) {
            let message = "requestId: a request with this id is still going on this socket";
            self.refuse_message(Some(&request_id), message).await;
            return;
        }
        if self.active.len() >= MAX_RUNS {
            let message = format!("at most {MAX_RUNS} runs at once on one socket");
            self.refuse(&request_id, "too_many_runs", &message).await;
            return;
        }
        let task = RequestTask {
            state: self.state.clone(),
            token: self.token.clone(),
            outgoing: self.outgoing.clone(),
            gone: self.gone.clone(),
            request_id: request_id.clone(),
        };
        let handle = self.requests.spawn(task.run(agent_id, messages));
        self.active.insert(handle.id(), request_id);
    }

    async fn refuse_message(&self, request_id: Option<&str>, message: &str) {
        let refusal = ServerMessage::AgentError {
            request_id,
            run_id: None,
            code: "invalid_message",
            message,
            retry_after: None,
        };
        // Waiting for room here holds up reading: a client that floods us
        // without reading the answers is slowed down, not buffered for.
        let _ = self.outgoing.send(text(&refusal)).await;
    }

    async fn refuse(&self, request_id: &str, code: &str, message: &str) {
        let refusal = ServerMessage::AgentError {
            request_id: Some(request_id),
            run_id: None,
            code,
            message,
            retry_after: None,
        };
        let _ = self.outgoing.send(text(&refusal)).await;
    }

    /// Reads no more requests, lets the runs being followed end (the runner
    /// drains them, interrupting the slowest), then says goodbye.
    async fn close_for_shutdown(&mut self) {
        while self.requests.join_next().await.is_some() {}
        let goodbye = Message::Close(Some(CloseFrame {
            code: close_code::AWAY,
            reason: "the agent executor is shutting down".into(),
        }));
        let _ = self.outgoing.send(goodbye).await;
    }
}

/// One `agent_execute`: starts the run, then forwards its updates.
struct RequestTask {
    state: AppState,
    token: Arc<str>,
    outgoing: mpsc::Sender<Message>,
    gone: CancellationToken,
    request_id: String,
}

impl RequestTask {
    async fn run(self, agent_id: Uuid, messages: Vec<ChatMessage>) {
        // Never cancelled: when the socket goes, this task is detached, not
        // aborted, so a run recorded with its credits reserved always starts.
        let follower = match self.start(agent_id, messages).await {
            Ok(follower) => follower,
            Err(error) => {
                let refusal = Refusal::of(error);
                let message = ServerMessage::AgentError {
                    request_id: Some(&self.request_id),
                    run_id: None,
                    code: &refusal.code,
                    message: &refusal.message,
                    retry_after: refusal.retry_after,
                };
                let _ = self.outgoing.send(text(&message)).await;
                return;
            }
        };
        tokio::select! {
            biased;
            () = self.gone.cancelled() => {}
            () = self.forward(follower) => {}
        }
    }

    /// What `POST /api/agent/execute` checks before the run, in the same
    /// order, with the token in place of the `Caller` extractor.
    async fn start(
        &self,
        agent_id: Uuid,
        messages: Vec<ChatMessage>,
    ) -> Result<Follower, ExecuteError> {
        let principal = self
            .state
            .auth
            .authenticate_token(&self.token)
            .await
            .map_err(ApiError::from)?;
        // Each run counts against the user's limit, as each HTTP request does.
        let Principal::User(user) = &principal else {
            return Err(ApiError::forbidden(SERVICE_REFUSED).into());
        };
        self.state.limits.check_user(&user.id)?;
        let request = RunRequest {
            user_id: acting_user(&Caller(principal), None)?,
            agent_id,
            messages,
            stream: true,
        };
        Ok(reserve_run(&self.state, request).await?.follow(&self.state))
    }

    /// Sends the run's updates until it ends or the socket is closed.
    async fn forward(&self, follower: Follower) {
        let run_id = follower.run_id();
        let request_id = self.request_id.as_str();
        let updates = follower.into_stream();
        futures::pin_mut!(updates);
        while let Some(update) = updates.next().await {
            let message = match &update {
                Update::Started => ServerMessage::AgentStart { request_id, run_id },
                Update::Chunk { seq, content } => ServerMessage::AgentChunk {
                    request_id,
                    run_id,
                    seq: *seq,
                    content,
                },
                Update::Done {
                    usage,
                    credits_used,
                } => ServerMessage::AgentDone {
                    request_id,
                    run_id,
                    usage,
                    credits_used: *credits_used,
                },
                Update::Failed { code, message } => ServerMessage::AgentError {
                    request_id: Some(request_id),
                    run_id: Some(run_id),
                    code,
                    message,
                    retry_after: None,
                },
            };
            if self.outgoing.send(text(&message)).await.is_err() {
                return; // The socket is gone; the run goes on.
            }
        }
    }
}

/// A refusal as the HTTP API would answer it.
struct Refusal {
    code: String,
    message: String,
    retry_after: Option<u64>,
}

impl Refusal {
    /// What the HTTP API would answer: the same code and message (a 5xx
    /// message is the generic one with the reference of its logged detail).
    fn of(error: ExecuteError) -> Self {
        let error = ApiError::from(error);
        Self {
            code: error.code().to_owned(),
            message: error.message().to_owned(),
            retry_after: error
                .retry_after()
                .map(|after| after.as_secs() + u64::from(after.subsec_nanos() > 0)),
        }
    }
}

/// Sends what is queued for the client, and a ping every [`PING_EVERY`],
/// until the queue closes (then closes the socket) or the client is gone.
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

fn text(message: &ServerMessage<'_>) -> Message {
    Message::text(serde_json::to_string(message).expect("a server message serializes"))
}
