//! The runs this replica is executing, for the streams that follow them.
//!
//! Each running run has a `broadcast` channel of its events (numbered
//! chunks, then one final event) and keeps the chunks it has published but
//! not yet stored in PostgreSQL. A follower that attaches gets those
//! unstored chunks and a receiver *in one step* (under the run's lock,
//! which publishing also takes), then reads the stored ones from the
//! database: every chunk is in at least one of the three, so a follower
//! that skips sequence numbers it already sent misses nothing and repeats
//! nothing. A run leaves the hub when it ends; from then on the database
//! has all of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::runner::RunUsage;

/// Events a follower may miss before it must resynchronise (from the
/// database and the unstored chunks). Slots are allocated per run, so this
/// bounds the memory of a run's channel too.
const CHANNEL_CAPACITY: usize = 128;

/// What happens to a run, as its followers see it.
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// The next piece of output, numbered from 1.
    Chunk { seq: i32, content: Arc<str> },
    /// The run completed and was settled.
    Completed { usage: RunUsage, credits_used: i64 },
    /// The run failed; its credits were refunded.
    Failed { code: &'static str, message: String },
}

/// What a follower attaching to a running run starts from.
pub struct Attachment {
    /// Published chunks the database may not have yet, in order.
    pub unstored: Vec<(i32, Arc<str>)>,
    /// Everything published from now on.
    pub events: broadcast::Receiver<RunEvent>,
}

struct Channel {
    sender: broadcast::Sender<RunEvent>,
    unstored: Vec<(i32, Arc<str>)>,
}

type Shared = Arc<Mutex<Channel>>;

/// The runs in progress on this replica.
#[derive(Default)]
pub struct RunHub {
    runs: Mutex<HashMap<Uuid, Shared>>,
}

impl RunHub {
    /// Registers a run about to start; it stays until the returned publisher
    /// is dropped.
    pub fn open(self: &Arc<Self>, run_id: Uuid) -> RunPublisher {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        let channel = Arc::new(Mutex::new(Channel {
            sender,
            unstored: Vec::new(),
        }));
        lock(&self.runs).insert(run_id, Arc::clone(&channel));
        RunPublisher {
            hub: Arc::clone(self),
            run_id,
            channel,
        }
    }

    /// Attaches to a run in progress here; `None` when it is not (finished,
    /// or running on another replica).
    pub fn attach(&self, run_id: Uuid) -> Option<Attachment> {
        let channel = lock(&self.runs).get(&run_id).cloned()?;
        let channel = lock(&channel);
        Some(Attachment {
            unstored: channel.unstored.clone(),
            events: channel.sender.subscribe(),
        })
    }

    /// The runs in progress here.
    pub fn run_ids(&self) -> Vec<Uuid> {
        lock(&self.runs).keys().copied().collect()
    }

    /// How many runs are in progress here.
    pub fn len(&self) -> usize {
        lock(&self.runs).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A run's side of its channel. Dropping it removes the run from the hub.
pub struct RunPublisher {
    hub: Arc<RunHub>,
    run_id: Uuid,
    channel: Shared,
}

impl RunPublisher {
    /// Publishes chunk `seq` (kept as unstored until [`RunPublisher::stored`]).
    pub fn chunk(&self, seq: i32, content: Arc<str>) {
        let mut channel = lock(&self.channel);
        channel.unstored.push((seq, Arc::clone(&content)));
        // No receiver is fine: nobody follows this run right now.
        let _ = channel.sender.send(RunEvent::Chunk { seq, content });
    }

    /// The chunks up to `last_seq` are in the database.
    pub fn stored(&self, last_seq: i32) {
        lock(&self.channel)
            .unstored
            .retain(|(seq, _)| *seq > last_seq);
    }

    /// Publishes the run's final event.
    pub fn finish(&self, event: RunEvent) {
        let _ = lock(&self.channel).sender.send(event);
    }

    /// Attaches to this run (the request that started it follows it from
    /// the first chunk).
    pub fn attach(&self) -> Attachment {
        let channel = lock(&self.channel);
        Attachment {
            unstored: channel.unstored.clone(),
            events: channel.sender.subscribe(),
        }
    }
}

impl Drop for RunPublisher {
    fn drop(&mut self) {
        lock(&self.hub.runs).remove(&self.run_id);
    }
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves
/// the data consistent (a push, a retain, a map insert or remove).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attachment_holds_the_unstored_chunks_and_receives_what_follows() {
        let hub = Arc::new(RunHub::default());
        let run = Uuid::new_v4();
        let publisher = hub.open(run);
        publisher.chunk(1, "a".into());
        publisher.chunk(2, "b".into());
        publisher.stored(1);
        let mut attachment = hub.attach(run).expect("running");
        assert_eq!(attachment.unstored, vec![(2, Arc::from("b"))]);
        publisher.chunk(3, "c".into());
        match attachment.events.try_recv() {
            Ok(RunEvent::Chunk { seq: 3, content }) => assert_eq!(&*content, "c"),
            other => panic!("unexpected {other:?}"),
        }
        drop(publisher);
        assert!(hub.attach(run).is_none());
        assert!(hub.is_empty());
    }
}
