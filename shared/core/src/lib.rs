//! Roundhouse's vocabulary: job types, statuses, queue names, the wire messages
//! that travel over RabbitMQ and the retry policy.
//!
//! Strings from the outside world (HTTP bodies, database columns, AMQP bodies)
//! are parsed into these types once, at the boundary; everything behind the
//! boundary matches on enums, so adding a job type is a compile error wherever
//! it matters.

mod job_kind;
mod job_type;
mod message;
pub mod notification;
mod queue;
mod retry;
mod schedule;
mod status;

pub use job_kind::{CustomJobType, JobKind};
pub use job_type::JobType;
pub use message::{ControlMessage, Dispatch, DispatchMessage, JobEventsNote};
pub use queue::{QueueName, QueueNameError};
pub use retry::RetryPolicy;
pub use schedule::{CronSchedule, MAX_CRON_LEN, Misfire, MisfirePolicy, ScheduleError, TickPlan};
pub use status::JobStatus;

/// The error for a string that names no known variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`")]
pub struct UnknownVariant {
    /// What was being parsed ("job type", "status").
    pub kind: &'static str,
    /// The offending input.
    pub value: String,
}
