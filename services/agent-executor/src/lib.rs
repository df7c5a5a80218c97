//! The agent executor (SPEC §5): runs the heavy agents that Supabase edge
//! functions forward, in sync or streamed (SSE) mode or over a WebSocket,
//! with credits reserved before a run and settled after it; plus agent and
//! credit management.
//!
//! **API boundary:** JSON in camelCase, errors as `{"error": {"code",
//! "message"}}`. Handlers hold no SQL (it is in `roundhouse-db`) and talk to
//! providers only through `roundhouse-llm`.
//!
//! A run executes in its own task ([`runner`]), independent of the request
//! that started it. Its chunks go to the in-memory [`hub`] (for the streams
//! following it now) and to PostgreSQL (for the streams that re-attach
//! later); [`follow`] reads either as updates, which `routes/runs.rs` sends
//! as server-sent events and [`socket`] as WebSocket messages. Both ways of
//! starting a run go through [`start`].

pub mod agent_job;
pub mod dto;
pub mod error;
pub mod follow;
pub mod hub;
pub mod openapi;
pub mod pricing;
pub mod routes;
pub mod runner;
pub mod socket;
pub mod start;
pub mod startup;

pub use startup::{AppState, Application, router};
