//! The replica's follower of `job_events`: one poll for all followed jobs.
//!
//! Each followed job has a cursor (the last event id the feed has seen) and
//! a broadcast channel. Every pass (each [`POLL_EVERY`], or at once when a
//! note or a local write wakes it) reads the new events of every followed
//! job in one statement and broadcasts them. A [`Follower`] subscribes
//! first and then replays the table from its own position, so nothing
//! falls in between: whatever the feed had seen before the subscription
//! comes from the replay, anything later from the channel, and duplicates
//! are dropped by id. A follower that falls behind the channel (a slow
//! client) goes back to the table rather than losing events.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roundhouse_db::{Db, DbError, EventRow};
use tokio::sync::{Notify, broadcast, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often the feed polls when no note woke it: the latency of events
/// whose note was lost (or whose writer sends none).
pub const POLL_EVERY: Duration = Duration::from_millis(200);
/// Rows per poll statement; a full page is followed at once by another.
const POLL_LIMIT: i64 = 1000;
/// Rows per replay page.
const REPLAY_LIMIT: i64 = 500;
/// Events buffered per job for its slowest follower before it must replay.
const CHANNEL_CAPACITY: usize = 256;

struct Watched {
    cursor: i64,
    events: broadcast::Sender<Arc<EventRow>>,
}

struct Inner {
    db: Db,
    jobs: Mutex<HashMap<Uuid, Watched>>,
    wake: Notify,
    /// Bumped on every note, for pollers of their own (queue subscriptions).
    notes: watch::Sender<u64>,
    closing: CancellationToken,
}

/// A handle on the replica's feed. Cheap to clone.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

impl Feed {
    /// Starts the polling task, which stops when `closing` is cancelled.
    pub fn spawn(db: Db, closing: CancellationToken) -> (Self, tokio::task::JoinHandle<()>) {
        let feed = Self {
            inner: Arc::new(Inner {
                db,
                jobs: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                notes: watch::channel(0).0,
                closing,
            }),
        };
        let task = tokio::spawn(feed.clone().poll());
        (feed, task)
    }

    /// Cancelled when the api starts shutting down: streams end.
    pub fn closing(&self) -> &CancellationToken {
        &self.inner.closing
    }

    /// Some job's timeline grew (a note, or a write by this replica): poll now.
    pub fn wake(&self) {
        self.inner.notes.send_modify(|n| *n = n.wrapping_add(1));
        self.inner.wake.notify_one();
    }

    /// A note from the events exchange: wakes the feed when it follows `job_id`.
    pub fn note(&self, job_id: Uuid) {
        self.inner.notes.send_modify(|n| *n = n.wrapping_add(1));
        let followed = self.lock().contains_key(&job_id);
        if followed {
            self.inner.wake.notify_one();
        }
    }

    /// Changes on every note: for loops that poll something of their own.
    pub fn notes(&self) -> watch::Receiver<u64> {
        self.inner.notes.subscribe()
    }

    /// Follows job `job_id`'s events after event id `after`, replayed from
    /// the table and then live, in id order.
    pub fn follow(&self, job_id: Uuid, after: i64) -> Follower {
        Follower {
            feed: self.clone(),
            job_id,
            last: after,
            events: self.subscribe(job_id, after),
            backlog: VecDeque::new(),
            replaying: true,
        }
    }

    fn subscribe(&self, job_id: Uuid, after: i64) -> broadcast::Receiver<Arc<EventRow>> {
        let (events, new) = {
            let mut jobs = self.lock();
            let new = !jobs.contains_key(&job_id);
            let watched = jobs.entry(job_id).or_insert_with(|| Watched {
                cursor: after,
                events: broadcast::channel(CHANNEL_CAPACITY).0,
            });
            (watched.events.subscribe(), new)
        };
        if new {
            self.inner.wake.notify_one();
        }
        events
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Watched>> {
        // A panic while holding this lock leaves the map consistent.
        self.inner
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn poll(self) {
        loop {
            tokio::select! {
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(POLL_EVERY) => {}
                () = self.inner.closing.cancelled() => return,
            }
            loop {
                let cursors: Vec<(Uuid, i64)> = {
                    let mut jobs = self.lock();
                    // Jobs nobody follows any more are forgotten here.
                    jobs.retain(|_, watched| watched.events.receiver_count() > 0);
                    jobs.iter().map(|(id, w)| (*id, w.cursor)).collect()
                };
                if cursors.is_empty() {
                    break;
                }
                let rows = match self.inner.db.events_after(&cursors, POLL_LIMIT).await {
                    Ok(rows) => rows,
                    Err(error) => {
                        tracing::warn!(%error, "cannot poll job events");
                        break;
                    }
                };
                let full = rows.len() as i64 >= POLL_LIMIT;
                let mut jobs = self.lock();
                for row in rows {
                    if let Some(watched) = jobs.get_mut(&row.job_id)
                        && row.id > watched.cursor
                    {
                        watched.cursor = row.id;
                        // No receiver left: the entry goes on the next pass.
                        let _ = watched.events.send(Arc::new(row));
                    }
                }
                if !full {
                    break;
                }
            }
        }
    }
}

/// One job's events after a position, from the table then live.
pub struct Follower {
    feed: Feed,
    job_id: Uuid,
    last: i64,
    events: broadcast::Receiver<Arc<EventRow>>,
    backlog: VecDeque<EventRow>,
    replaying: bool,
}

impl Follower {
    /// The id of the last event returned (or the starting position).
    pub fn position(&self) -> i64 {
        self.last
    }

    /// The next event; `None` once the api is shutting down.
    pub async fn next(&mut self) -> Option<Result<Arc<EventRow>, DbError>> {
        loop {
            if let Some(row) = self.backlog.pop_front() {
                if row.id > self.last {
                    self.last = row.id;
                    return Some(Ok(Arc::new(row)));
                }
                continue;
            }
            if self.replaying {
                let page = self
                    .feed
                    .inner
                    .db
                    .job_events(self.job_id, self.last, REPLAY_LIMIT)
                    .await;
                match page {
                    Ok(rows) => {
                        self.replaying = rows.len() as i64 >= REPLAY_LIMIT;
                        self.backlog.extend(rows);
                    }
                    Err(error) => return Some(Err(error)),
                }
                continue;
            }
            let received = tokio::select! {
                received = self.events.recv() => received,
                () = self.feed.inner.closing.cancelled() => return None,
            };
            match received {
                Ok(row) if row.id > self.last => {
                    self.last = row.id;
                    return Some(Ok(row));
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Fell behind: subscribe again and replay what was missed.
                    self.events = self.feed.subscribe(self.job_id, self.last);
                    self.replaying = true;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
