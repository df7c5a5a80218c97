//! Everything Roundhouse says to RabbitMQ.
//!
//! **Architecture invariant:** only this crate knows AMQP. The topology (names,
//! arguments, bindings) is declared in [`topology`]; [`Broker`] keeps one
//! long-lived connection per process alive across broker restarts, publishes
//! with publisher confirms, and hands out consumers.
//!
//! RabbitMQ is a dispatch hint, never the record: a publish that is not
//! confirmed is reported as not sent, and PostgreSQL's dispatch sweep sends
//! it again.

mod connection;
mod publish;
pub mod topology;

pub use connection::{Broker, BrokerSettings, Session};
pub use lapin::Consumer;
pub use lapin::message::Delivery;
pub use lapin::options::{BasicAckOptions, BasicNackOptions};
pub use publish::PublishReport;
pub use topology::Topology;

/// Errors from the broker layer.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No connection to RabbitMQ right now.
    #[error("broker unavailable")]
    Unavailable,
    /// An AMQP operation failed.
    #[error("amqp error: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker did not confirm in time.
    #[error("publish not confirmed within {0:?}")]
    ConfirmTimeout(std::time::Duration),
    /// A message body could not be encoded or decoded.
    #[error("bad message: {0}")]
    Codec(#[from] serde_json::Error),
}
