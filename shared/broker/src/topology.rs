//! The one place RabbitMQ names and arguments are decided.
//!
//! ```text
//! {prefix}.jobs      direct exchange, durable   routing key = queue name
//!   └─▶ {prefix}.q.{queue}  classic durable queue, x-max-priority 9, one per job queue
//! {prefix}.control   fanout exchange, durable   cancel broadcasts
//!   └─▶ (server-named, exclusive, auto-delete)  one per worker process
//! {prefix}.events    topic exchange, durable    routing key = {queue}.{job_id}
//!   └─▶ (server-named, exclusive, auto-delete)  one per api replica, bound `#`
//! ```
//!
//! The events exchange carries "job X has new events" notes (transient,
//! unconfirmed): a wake-up for the replicas streaming the job, whose events
//! are read from PostgreSQL.
//!
//! Classic queues, not quorum: job priorities need `x-max-priority`, which
//! quorum queues lack before RabbitMQ 3.13, and PostgreSQL (not the broker) is
//! what makes a job durable. Changing a queue's arguments later means a new
//! queue name, because RabbitMQ refuses to redeclare a queue differently.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

/// Highest AMQP priority used. Job priorities are clamped into `0..=MAX_PRIORITY`
/// for the broker's ordering of a backed-up queue.
pub const MAX_PRIORITY: u8 = 9;

/// Names derived from the configured prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
}

impl Topology {
    /// Topology under `prefix` (e.g. `roundhouse`, or a per-test prefix).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The direct exchange job dispatch messages are published to.
    pub fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.prefix)
    }

    /// The fanout exchange for control broadcasts.
    pub fn control_exchange(&self) -> String {
        format!("{}.control", self.prefix)
    }

    /// The topic exchange for job event notes.
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// The routing key of a job's event notes: `{queue}.{job_id}` (queue
    /// names hold no dots), so a binding can pick a queue (`llm.*`).
    pub fn events_routing_key(queue: &str, job_id: uuid::Uuid) -> String {
        format!("{queue}.{job_id}")
    }

    /// The RabbitMQ queue for job queue `queue`.
    pub fn job_queue(&self, queue: &str) -> String {
        format!("{}.q.{}", self.prefix, queue)
    }

    /// The AMQP priority for a job priority.
    pub fn amqp_priority(priority: i32) -> u8 {
        priority.clamp(0, i32::from(MAX_PRIORITY)) as u8
    }

    /// Declares the exchanges.
    pub async fn declare_exchanges(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                self.jobs_exchange().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                self.control_exchange().into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                self.events_exchange().into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await
    }

    /// Declares job queue `queue` and binds it to the jobs exchange.
    pub async fn declare_job_queue(
        &self,
        channel: &Channel,
        queue: &str,
    ) -> Result<(), lapin::Error> {
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("classic".into()),
        );
        args.insert(
            "x-max-priority".into(),
            AMQPValue::ShortShortUInt(MAX_PRIORITY),
        );
        let name = self.job_queue(queue);
        channel
            .queue_declare(
                name.clone().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await?;
        channel
            .queue_bind(
                name.into(),
                self.jobs_exchange().into(),
                queue.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
    }

    /// Declares this process's private control queue, bound to the control
    /// exchange, and returns its server-chosen name.
    pub async fn declare_control_queue(&self, channel: &Channel) -> Result<String, lapin::Error> {
        Self::declare_private_queue(channel, &self.control_exchange(), "").await
    }

    /// Declares this process's private events queue, bound to every job's
    /// notes (`#`), and returns its server-chosen name.
    pub async fn declare_events_queue(&self, channel: &Channel) -> Result<String, lapin::Error> {
        Self::declare_private_queue(channel, &self.events_exchange(), "#").await
    }

    /// A server-named queue for this process alone (exclusive, auto-delete:
    /// it goes with the connection), bound to `exchange` with `routing_key`.
    async fn declare_private_queue(
        channel: &Channel,
        exchange: &str,
        routing_key: &str,
    ) -> Result<String, lapin::Error> {
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let name = queue.name().to_string();
        channel
            .queue_bind(
                name.clone().into(),
                exchange.into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix() {
        let t = Topology::new("rh");
        assert_eq!(t.jobs_exchange(), "rh.jobs");
        assert_eq!(t.job_queue("default"), "rh.q.default");
        assert_eq!(t.control_exchange(), "rh.control");
        assert_eq!(t.events_exchange(), "rh.events");
        assert_eq!(
            Topology::events_routing_key("llm_processing", uuid::Uuid::nil()),
            "llm_processing.00000000-0000-0000-0000-000000000000"
        );
    }

    #[test]
    fn priorities_are_clamped_into_the_broker_range() {
        assert_eq!(Topology::amqp_priority(-5), 0);
        assert_eq!(Topology::amqp_priority(3), 3);
        assert_eq!(Topology::amqp_priority(100), MAX_PRIORITY);
    }
}
