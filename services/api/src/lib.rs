//! The Roundhouse HTTP API.
//!
//! **API boundary:** JSON in camelCase, errors as `{"error": {"code", "message"}}`.
//! Handlers validate input into `roundhouse-db` calls; they hold no SQL and
//! know no AMQP (dispatch goes through [`dispatcher`], which uses the broker crate).
//! A job is accepted (202) once its row is committed; its dispatch message
//! follows asynchronously and is backed by the scheduler's sweep.

pub mod admin;
pub mod dispatcher;
pub mod dto;
pub mod extract;
pub mod inserter;
pub mod job_types;
pub mod live;
pub mod openapi;
pub mod routes;
pub mod socket;
pub mod startup;

pub use startup::{AppState, Application, migrate, router};
