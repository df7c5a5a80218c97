//! The worker: consumes job queues, claims each job in PostgreSQL, runs it
//! under a lease with heartbeats, and records the outcome.
//!
//! ```text
//! RabbitMQ delivery ─▶ consumer (per queue, bounded by its slots)
//!     ─▶ claim_jobs (one UPDATE per batch, attempt+1 = fencing token) ─▶ ack
//!     ─▶ execute (handler, timeout, cancel token)
//!     ─▶ completer (batched, fenced UPDATE) | fail_job (retry or failed)
//! heartbeat: extends leases, stops attempts that were cancelled or reaped
//! control:   cancel broadcasts stop a running job within a second
//! ```
//! The delivery is acknowledged right after the claim commits, so a job can
//! run for hours without tripping RabbitMQ's consumer timeout: from then on
//! the PostgreSQL lease is what brings the job back if this process dies.

mod completer;
mod consumer;
mod control;
mod execute;
pub mod handler;
mod handlers;
mod heartbeat;
mod running;
mod startup;

pub use handler::{ExtraHandlers, Handler, HandlerError, JobContext, JobHandler};
pub use startup::Application;
