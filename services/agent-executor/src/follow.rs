//! Following a run: its start, its numbered chunks, then how it ended, as
//! [`Update`]s that each transport renders its own way (server-sent events
//! in `routes/runs.rs`, WebSocket messages in `socket.rs`).
//!
//! A follower reads from whichever source has the run: the hub while the
//! run executes on this replica (see [`crate::hub`] for why attaching loses
//! nothing), else PostgreSQL, polled while the run is still going on
//! another replica. It remembers the next chunk number it owes, so
//! switching sources (after falling behind the hub's channel, or when the
//! run ends) neither skips nor repeats a chunk.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use roundhouse_db::{Db, DbError};
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::hub::{Attachment, RunEvent, RunHub};
use crate::runner::RunFailure;

/// How often the database is asked about a run executing elsewhere.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// What a follower reports, in order: `Started` (only when following from
/// the start), `Chunk`s numbered from 1 without gaps or repeats, then one of
/// `Done` or `Failed`.
#[derive(Debug, Clone)]
pub enum Update {
    Started,
    Chunk {
        seq: i32,
        content: Arc<str>,
    },
    Done {
        usage: serde_json::Value,
        credits_used: i64,
    },
    Failed {
        /// An error code like the HTTP API's (`provider_error`, …).
        code: &'static str,
        message: String,
    },
}

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
    ready: VecDeque<Update>,
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
    /// started; the first update is [`Update::Started`].
    pub fn from_start(
        db: Db,
        hub: Arc<RunHub>,
        run_id: Uuid,
        attachment: Attachment,
        closing: CancellationToken,
    ) -> Self {
        let mut follower = Self::new(db, hub, run_id, 1, closing);
        follower.ready.push_back(Update::Started);
        for (seq, content) in attachment.unstored {
            follower.chunk(seq, content);
        }
        follower.source = Source::Hub(attachment.events);
        follower
    }

    /// The run followed.
    pub fn run_id(&self) -> Uuid {
        self.run_id
    }

    /// The updates as a stream (ends after the final one).
    pub fn into_stream(self) -> impl Stream<Item = Update> + Send + 'static {
        futures::stream::unfold(self, |mut follower| async move {
            let update = follower.next_update().await?;
            Some((update, follower))
        })
    }

    async fn next_update(&mut self) -> Option<Update> {
        loop {
            if let Some(update) = self.ready.pop_front() {
                return Some(update);
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
                self.fail(
                    "internal_error",
                    "internal error while following the run; reconnect to resume",
                );
            }
        }
    }

    fn receive(&mut self, received: Result<RunEvent, RecvError>) {
        match received {
            Ok(RunEvent::Chunk { seq, content }) => self.chunk(seq, content),
            Ok(RunEvent::Completed {
                usage,
                credits_used,
            }) => self.done(json!(usage), credits_used),
            Ok(RunEvent::Failed { code, message }) => self.fail(code, &message),
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
                self.chunk(seq, content.into());
            }
            for (seq, content) in attachment.unstored {
                self.chunk(seq, content);
            }
            self.source = Source::Hub(attachment.events);
            return Ok(());
        }
        // Status first, chunks second: a run is settled only after all its
        // chunks are stored.
        let Some(run) = self.db.get_run(self.run_id, None).await? else {
            self.fail("not_found", "the run no longer exists");
            return Ok(());
        };
        for (seq, content) in self.db.run_chunks(self.run_id, self.next_seq).await? {
            self.chunk(seq, content.into());
        }
        match run.status.as_str() {
            "completed" => self.done(
                run.usage.unwrap_or(serde_json::Value::Null),
                run.credits_used.unwrap_or(0),
            ),
            "failed" => {
                let message = run.error.as_deref().unwrap_or("the run failed");
                self.fail(RunFailure::stored_code(message), message);
            }
            _ => self.source = Source::Polling,
        }
        Ok(())
    }

    fn chunk(&mut self, seq: i32, content: Arc<str>) {
        if seq < self.next_seq {
            return;
        }
        self.next_seq = seq + 1;
        self.ready.push_back(Update::Chunk { seq, content });
    }

    fn done(&mut self, usage: serde_json::Value, credits_used: i64) {
        self.ready.push_back(Update::Done {
            usage,
            credits_used,
        });
        self.finished = true;
    }

    fn fail(&mut self, code: &'static str, message: &str) {
        self.ready.push_back(Update::Failed {
            code,
            message: message.to_owned(),
        });
        self.finished = true;
    }
}
