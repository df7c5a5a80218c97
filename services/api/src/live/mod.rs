//! Live job events for `GET /api/jobs/{id}/events` (SSE) and `GET /ws`.
//!
//! PostgreSQL's `job_events` is the record and the only source of events:
//! [`feed::Feed`] polls it for every job this replica's clients follow, in
//! one statement per pass. RabbitMQ only makes that fast: writers publish a
//! "job X has new events" note to the `{prefix}.events` topic exchange, and
//! [`notes`] consumes them on this replica's private auto-delete queue and
//! wakes the feed at once. A replica that misses a note still sends the
//! events, one poll interval later, and a client that reconnects with
//! `Last-Event-ID` replays from the table.

pub mod feed;
pub mod notes;
pub mod view;

pub use feed::{Feed, Follower};
