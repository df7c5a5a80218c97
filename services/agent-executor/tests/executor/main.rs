//! Integration tests of the agent executor: the real router against a fresh
//! PostgreSQL database per test, with the `dev` provider (and a local
//! provider that always fails).

mod agents;
mod async_runs;
mod auth;
mod helpers;
mod metrics;
mod openapi;
mod runs;
mod startup;
mod streams;
mod ws;
