use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The body of a dispatch message on a job queue.
///
/// It carries the job's id only: the payload stays in PostgreSQL, so a
/// message leaks nothing and can never disagree with the row. A message is a
/// hint, not an order — the worker's conditional claim decides whether it
/// still means anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchMessage {
    /// The job to run.
    pub job_id: Uuid,
}

/// A job that needs a dispatch message on its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    /// The job.
    pub job_id: Uuid,
    /// Its queue (already validated when the job was stored).
    pub queue: String,
    /// Its priority; the broker orders by it within a backed-up queue.
    pub priority: i32,
    /// The job's W3C trace context, sent in the message's AMQP headers so
    /// the publish joins the job's trace.
    pub traceparent: Option<String>,
}

/// Broadcast to every worker over the control exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMessage {
    /// Stop the job if it is running here.
    Cancel {
        /// The cancelled job.
        #[serde(rename = "jobId")]
        job_id: Uuid,
    },
}

/// Published on the events exchange after a job's timeline grew: "job X has
/// new events". A wake-up for the api replicas streaming that job, never
/// the events themselves — those are read from PostgreSQL, so a lost note
/// only delays them until the next poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobEventsNote {
    /// The job whose timeline grew.
    pub job_id: Uuid,
    /// Its queue (part of the routing key).
    pub queue: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_a_stable_camel_case_shape() {
        let id = Uuid::nil();
        assert_eq!(
            serde_json::to_value(DispatchMessage { job_id: id }).unwrap(),
            serde_json::json!({"jobId": id})
        );
        assert_eq!(
            serde_json::to_value(ControlMessage::Cancel { job_id: id }).unwrap(),
            serde_json::json!({"type": "cancel", "jobId": id})
        );
    }
}
