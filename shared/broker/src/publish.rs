//! Publishing with confirms: a message counts as sent only when the broker
//! acknowledged it *and* did not return it as unroutable.

use futures::future::join_all;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation};
use roundhouse_core::{ControlMessage, Dispatch, DispatchMessage, JobEventsNote};
use tracing::Instrument;
use uuid::Uuid;

use crate::{Broker, BrokerError, Topology};

/// Which dispatches the broker took responsibility for.
#[derive(Debug, Default)]
pub struct PublishReport {
    /// Confirmed: the broker has them on disk in a durable queue.
    pub confirmed: Vec<Uuid>,
    /// Not confirmed (nack, return, timeout, no connection): the caller must
    /// treat them as unsent.
    pub failed: Vec<Uuid>,
}

impl Broker {
    /// Publishes one persistent dispatch message per job, pipelining the
    /// confirms, and reports which ones the broker confirmed.
    pub async fn publish_dispatches(&self, dispatches: &[Dispatch]) -> PublishReport {
        let mut report = PublishReport::default();
        if dispatches.is_empty() {
            return report;
        }
        let Some(session) = self.current() else {
            report.failed = dispatches.iter().map(|d| d.job_id).collect();
            metrics::counter!("roundhouse_publish_failed_total", "reason" => "unavailable")
                .increment(dispatches.len() as u64);
            return report;
        };
        let exchange = self.topology().jobs_exchange();
        let mut pending = Vec::with_capacity(dispatches.len());
        let mut returned_queues = Vec::new();
        for dispatch in dispatches {
            // A job traced from its enqueue gets a publish span in its trace,
            // and the message carries that span's context to the consumer.
            let span = match &dispatch.traceparent {
                Some(parent) => {
                    let span = tracing::info_span!(
                        "amqp.publish",
                        otel.kind = "producer",
                        messaging.destination.name = %dispatch.queue,
                        job_id = %dispatch.job_id,
                    );
                    roundhouse_telemetry::set_parent(&span, parent);
                    span
                }
                None => tracing::Span::none(),
            };
            let headers = roundhouse_telemetry::traceparent_of(&span).map(|traceparent| {
                let mut headers = FieldTable::default();
                headers.insert(
                    "traceparent".into(),
                    AMQPValue::LongString(traceparent.into()),
                );
                headers
            });
            let sent = async {
                session.ensure_job_queue(&dispatch.queue).await?;
                let body = serde_json::to_vec(&DispatchMessage {
                    job_id: dispatch.job_id,
                })?;
                let mut properties = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into())
                    .with_message_id(dispatch.job_id.to_string().into())
                    .with_priority(Topology::amqp_priority(dispatch.priority));
                if let Some(headers) = headers {
                    properties = properties.with_headers(headers);
                }
                Ok::<_, BrokerError>(
                    session
                        .publisher
                        .basic_publish(
                            exchange.clone().into(),
                            dispatch.queue.clone().into(),
                            BasicPublishOptions {
                                mandatory: true,
                                ..Default::default()
                            },
                            &body,
                            properties,
                        )
                        .await?,
                )
            }
            .instrument(span)
            .await;
            match sent {
                Ok(confirm) => pending.push((dispatch.job_id, dispatch.queue.as_str(), confirm)),
                Err(error) => {
                    tracing::warn!(%error, job_id = %dispatch.job_id, "publish failed");
                    report.failed.push(dispatch.job_id);
                }
            }
        }
        let timeout = self.confirm_timeout();
        let confirmations = join_all(pending.into_iter().map(|(id, queue, confirm)| async move {
            (id, queue, tokio::time::timeout(timeout, confirm).await)
        }))
        .await;
        for (id, queue, outcome) in confirmations {
            let reason = match outcome {
                Ok(Ok(Confirmation::Ack(None))) => {
                    report.confirmed.push(id);
                    continue;
                }
                Ok(Ok(Confirmation::Ack(Some(_)))) => {
                    // Unroutable: the queue was deleted behind our back.
                    returned_queues.push(queue.to_owned());
                    "returned"
                }
                Ok(Ok(Confirmation::Nack(_))) => "nack",
                Ok(Ok(Confirmation::NotRequested)) => "unconfirmed",
                Ok(Err(_)) => "error",
                Err(_) => "timeout",
            };
            metrics::counter!("roundhouse_publish_failed_total", "reason" => reason).increment(1);
            report.failed.push(id);
        }
        if !returned_queues.is_empty() {
            // Declare them again on the next publish.
            session.forget_queues(&returned_queues).await;
        }
        metrics::counter!("roundhouse_publish_confirmed_total")
            .increment(report.confirmed.len() as u64);
        if !report.failed.is_empty() {
            tracing::warn!(
                failed = report.failed.len(),
                "dispatch messages not confirmed; the dispatch sweep will resend them"
            );
        }
        report
    }

    /// Broadcasts a control message to every worker. Best effort: workers also
    /// learn about cancellations from their heartbeats.
    pub async fn publish_control(&self, message: &ControlMessage) -> Result<(), BrokerError> {
        let session = self.current().ok_or(BrokerError::Unavailable)?;
        let body = serde_json::to_vec(message)?;
        let confirm = session
            .publisher
            .basic_publish(
                self.topology().control_exchange().into(),
                "".into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default().with_content_type("application/json".into()),
            )
            .await?;
        tokio::time::timeout(self.confirm_timeout(), confirm)
            .await
            .map_err(|_| BrokerError::ConfirmTimeout(self.confirm_timeout()))??;
        Ok(())
    }

    /// Tells the api replicas that these jobs' timelines grew. Best effort
    /// and unconfirmed (a channel of their own, without publisher
    /// confirms): the notes are wake-ups, and a replica that misses one
    /// finds the events on its next poll of PostgreSQL.
    pub async fn announce_job_events(&self, notes: &[JobEventsNote]) {
        let Some(session) = self.current() else {
            return;
        };
        let exchange = self.topology().events_exchange();
        for note in notes {
            let Ok(body) = serde_json::to_vec(note) else {
                continue;
            };
            let key = Topology::events_routing_key(&note.queue, note.job_id);
            let sent = session
                .notifier
                .basic_publish(
                    exchange.as_str().into(),
                    key.into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default().with_content_type("application/json".into()),
                )
                .await;
            // Not in confirm mode: nothing to await or to keep.
            if let Err(error) = sent {
                tracing::debug!(%error, "could not announce job events");
                return;
            }
        }
    }
}
