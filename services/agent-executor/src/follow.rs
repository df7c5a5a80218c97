//! Following a run as server-sent events: `agent_chunk` (with the chunk
//! number as the event id) … then `agent_done` or `agent_error`.
//!
//! A follower reads from whichever source has the run: the hub while the
//! run executes on this replica (see [`crate::hub`] for why attaching loses
//! nothing), else PostgreSQL, polled while the run is still going on
//! another replica. It remembers the next chunk number it owes, so
//! switching sources (after falling behind the hub's channel, or when the
//! run ends) neither skips nor repeats a chunk.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::Event;
use futures::Stream;
use roundhouse_db::{Db, DbError};
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::hub::{Attachment, RunEvent, RunHub};

/// How often the database is asked about a run executing elsewhere.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// Where a follower gets the run's next events.
enum Source {
    /// Ask the hub, else the database.
    Unattached,
    /// The run executes here.
    Hub(broadcast::Receiver<RunEvent>),
    /// The run executes elsewhere (or has not registered here yet): poll.
    Polling,
}

/// A run's events from chunk `next_seq` on.
pub struct Follower {
    db: Db,
    hub: Arc<RunHub>,
    run_id: Uuid,
    next_seq: i32,
    ready: VecDeque<Event>,
    source: Source,
    finished: bool,
    /// Polling stops when the executor shuts down.
    closing: CancellationToken,
}

impl Follower {
    /// Follows a run from chunk `from` (re-attaching).
    pub fn new(
        db: Db,
        hub: Arc<RunHub>,
        run_id: Uuid,
        from: i32,
        closing: CancellationToken,
    ) -> Self {
        Self {
            db,
            hub,
            run_id,
            next_seq: from,
            ready: VecDeque::new(),
            source: Source::Unattached,
            finished: false,
            closing,
        }
    }

    /// Follows a run from its start, through an attachment taken before it
    /// started; the first event is `agent_start` {runId}.
    pub fn from_start(
        db: Db,
        hub: Arc<RunHub>,
        run_id: Uuid,
        attachment: Attachment,
        closing: CancellationToken,
    ) -> Self {
        let mut follower = Self::new(db, hub, run_id, 1, closing);
        follower
            .ready
            .push_back(event("agent_start", json!({ "runId": run_id })));
        for (seq, content) in attachment.unstored {
            follower.chunk(seq, &content);
        }
        follower.source = Source::Hub(attachment.events);
        follower
    }

    /// The events as a stream (ends after the final event).
    pub fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
        futures::stream::unfold(self, |mut follower| async move {
            let event = follower.next_event().await?;
            Some((Ok(event), follower))
        })
    }

    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            if self.finished {
                return None;
            }
            let step = match &mut self.source {
                Source::Hub(events) => {
                    let received = events.recv().await;
                    self.receive(received);
                    Ok(())
                }
                Source::Unattached => self.resync().await,
                Source::Polling => {
                    tokio::select! {
                        () = tokio::time::sleep(POLL_EVERY) => {}
                        // The client reconnects to another replica.
                        () = self.closing.cancelled() => return None,
                    }
                    self.resync().await
                }
            };
            if let Err(error) = step {
                tracing::error!(run_id = %self.run_id, %error, "cannot follow agent run");
                self.fail("internal error while following the run; reconnect to resume");
            }
        }
    }

    fn receive(&mut self, received: Result<RunEvent, RecvError>) {
        match received {
            Ok(RunEvent::Chunk { seq, content }) => self.chunk(seq, &content),
            Ok(RunEvent::Completed {
                usage,
                credits_used,
            }) => self.done(json!(usage), credits_used),
            Ok(RunEvent::Failed { message }) => self.fail(&message),
            // Fell behind (what was missed is stored or unstored: resync
            // finds it), or the run just left the hub.
            Err(RecvError::Lagged(_) | RecvError::Closed) => self.source = Source::Unattached,
        }
    }

    /// Catches up from the database, then attaches to the hub if the run
    /// executes here, or reads its outcome if it has finished.
    async fn resync(&mut self) -> Result<(), DbError> {
        if let Some(attachment) = self.hub.attach(self.run_id) {
            // Attach first, read second: a chunk stored after this read was
            // published after the attachment, so the receiver has it.
            for (seq, content) in self.db.run_chunks(self.run_id, self.next_seq).await? {
                self.chunk(seq, &content);
            }
            for (seq, content) in attachment.unstored {
                self.chunk(seq, &content);
            }
            self.source = Source::Hub(attachment.events);
            return Ok(());
        }
        // Status first, chunks second: a run is settled only after all its
        // chunks are stored.
        let Some(run) = self.db.get_run(self.run_id, None).await? else {
            self.fail("the run no longer exists");
            return Ok(());
        };
        for (seq, content) in self.db.run_chunks(self.run_id, self.next_seq).await? {
            self.chunk(seq, &content);
        }
        match run.status.as_str() {
            "completed" => self.done(
                run.usage.unwrap_or(serde_json::Value::Null),
                run.credits_used.unwrap_or(0),
            ),
            "failed" => self.fail(run.error.as_deref().unwrap_or("the run failed")),
            _ => self.source = Source::Polling,
        }
        Ok(())
    }

    fn chunk(&mut self, seq: i32, content: &str) {
        if seq < self.next_seq {
            return;
        }
        self.next_seq = seq + 1;
        self.ready
            .push_back(event("agent_chunk", json!({ "content": content })).id(seq.to_string()));
    }

    fn done(&mut self, usage: serde_json::Value, credits_used: i64) {
        self.ready.push_back(event(
            "agent_done",
            json!({ "runId": self.run_id, "usage": usage, "creditsUsed": credits_used }),
        ));
        self.finished = true;
    }

    fn fail(&mut self, message: &str) {
        self.ready.push_back(event(
            "agent_error",
            json!({ "runId": self.run_id, "message": message }),
        ));
        self.finished = true;
    }
}

fn event(name: &'static str, data: serde_json::Value) -> Event {
    Event::default().event(name).data(data.to_string())
}
