//! One supervised AMQP connection per process.
//!
//! lapin 4 has built-in recovery, but it is young (see research/ecosystem.md);
//! instead a supervisor task owns the connection: it connects with backoff,
//! declares the topology, publishes the live [`Session`] on a watch channel,
//! and when the connection dies it withdraws the session and starts over with
//! a fresh connection. Consumers and publishers always ask for the current
//! session, so a broker restart is a pause, never a crash.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

use crate::{BrokerError, Topology};

/// How to reach RabbitMQ.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// `amqp://` or `amqps://` URL.
    pub url: String,
    /// Name prefix for exchanges and queues.
    pub prefix: String,
    /// Shown in the management UI (`roundhouse-worker@host`).
    pub connection_name: String,
    /// How long a publish waits for the broker's confirm.
    pub confirm_timeout: Duration,
}

/// A live connection with its confirm-mode publishing channel.
pub struct Session {
    connection: Connection,
    pub(crate) publisher: Channel,
    /// A channel without publisher confirms, for job event notes: nobody
    /// waits for those, and a confirm-mode channel keeps every unawaited
    /// confirm until someone does.
    pub(crate) notifier: Channel,
    pub(crate) declared: Mutex<HashSet<String>>,
    pub(crate) topology: Topology,
}

impl Session {
    /// Makes sure job queue `queue` exists (once per session).
    pub(crate) async fn ensure_job_queue(&self, queue: &str) -> Result<(), lapin::Error> {
        let mut declared = self.declared.lock().await;
        if !declared.contains(queue) {
            self.topology
                .declare_job_queue(&self.publisher, queue)
                .await?;
            declared.insert(queue.to_owned());
        }
        Ok(())
    }

    /// Forgets that `queues` were declared, so the next publish declares them
    /// again (after the broker returned a message as unroutable).
    pub(crate) async fn forget_queues(&self, queues: &[String]) {
        let mut declared = self.declared.lock().await;
        for queue in queues {
            declared.remove(queue);
        }
    }

    /// Starts consuming job queue `queue` on a channel of its own, with at most
    /// `prefetch` unacknowledged deliveries in flight.
    pub async fn consume_job_queue(
        &self,
        queue: &str,
        prefetch: u16,
        consumer_tag: &str,
    ) -> Result<Consumer, BrokerError> {
        self.ensure_job_queue(queue).await?;
        let channel = self.connection.create_channel().await?;
        // QoS before consume, or the broker pushes the whole backlog at once.
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        Ok(channel
            .basic_consume(
                self.topology.job_queue(queue).into(),
                consumer_tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?)
    }

    /// Starts consuming control broadcasts on a private auto-delete queue.
    pub async fn consume_control(&self, consumer_tag: &str) -> Result<Consumer, BrokerError> {
        let channel = self.connection.create_channel().await?;
        let queue = self.topology.declare_control_queue(&channel).await?;
        Ok(channel
            .basic_consume(
                queue.into(),
                consumer_tag.into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?)
    }

    /// Starts consuming job event notes on this process's private
    /// auto-delete events queue.
    pub async fn consume_job_events(&self, consumer_tag: &str) -> Result<Consumer, BrokerError> {
        let channel = self.connection.create_channel().await?;
        let queue = self.topology.declare_events_queue(&channel).await?;
        Ok(channel
            .basic_consume(
                queue.into(),
                consumer_tag.into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?)
    }

    /// Whether this session's connection is still usable.
    pub fn is_alive(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }

    /// Resolves once this session's connection is no longer usable. A
    /// consumer selects on it next to its deliveries: a stream on a dead
    /// connection is not guaranteed to end by itself.
    pub async fn lost(&self) {
        while self.is_alive() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

struct Inner {
    settings: BrokerSettings,
    topology: Topology,
    session: watch::Sender<Option<Arc<Session>>>,
    stop: CancellationToken,
}

/// A handle on the process's broker connection. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

impl Broker {
    /// Starts the connection supervisor. Returns at once; the first connection
    /// is made in the background (see [`Broker::session`]).
    pub fn start(settings: BrokerSettings) -> Self {
        let (session, _) = watch::channel(None);
        let broker = Self {
            inner: Arc::new(Inner {
                topology: Topology::new(settings.prefix.clone()),
                settings,
                session,
                stop: CancellationToken::new(),
            }),
        };
        tokio::spawn(supervise(broker.inner.clone()));
        broker
    }

    /// The topology names in use.
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// Whether a live connection exists right now.
    pub fn is_connected(&self) -> bool {
        self.inner
            .session
            .borrow()
            .as_ref()
            .is_some_and(|s| s.is_alive())
    }

    /// The live session, if any.
    pub fn current(&self) -> Option<Arc<Session>> {
        self.inner.session.borrow().clone().filter(|s| s.is_alive())
    }

    /// Waits for a live session (or returns `None` once the broker is closed).
    pub async fn session(&self) -> Option<Arc<Session>> {
        let mut rx = self.inner.session.subscribe();
        loop {
            if let Some(session) = rx.borrow_and_update().clone().filter(|s| s.is_alive()) {
                return Some(session);
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return None },
                _ = self.inner.stop.cancelled() => return None,
                // Re-check periodically: a session can die without a new one yet.
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    pub(crate) fn confirm_timeout(&self) -> Duration {
        self.inner.settings.confirm_timeout
    }

    /// Closes the connection and stops reconnecting.
    pub async fn close(&self) {
        self.inner.stop.cancel();
        if let Some(session) = self.inner.session.send_replace(None) {
            let _ = session.connection.close(200, "shutdown".into()).await;
        }
    }
}

async fn supervise(inner: Arc<Inner>) {
    let mut delay = Duration::from_millis(200);
    loop {
        if inner.stop.is_cancelled() {
            return;
        }
        let attempt = tokio::time::timeout(Duration::from_secs(10), connect(&inner));
        let session = tokio::select! {
            result = attempt => result,
            _ = inner.stop.cancelled() => return,
        };
        match session {
            Ok(Ok(session)) => {
                delay = Duration::from_millis(200);
                tracing::info!(prefix = %inner.topology.prefix(), "connected to RabbitMQ");
                metrics::counter!("roundhouse_broker_connects_total").increment(1);
                let mut events = session.connection.events_listener();
                inner.session.send_replace(Some(session.clone()));
                // Watch for the end of this connection: an error event, or the
                // status poll as a second line of defence.
                loop {
                    tokio::select! {
                        event = events.next() => match event {
                            Some(lapin::Event::Error(error)) => {
                                tracing::warn!(%error, "RabbitMQ connection lost");
                                break;
                            }
                            Some(_) => {}
                            None => break,
                        },
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {
                            if !session.is_alive() {
                                tracing::warn!("RabbitMQ connection is no longer usable");
                                break;
                            }
                        }
                        _ = inner.stop.cancelled() => return,
                    }
                }
                inner.session.send_replace(None);
                metrics::counter!("roundhouse_broker_disconnects_total").increment(1);
                let _ = session.connection.close(200, "reconnecting".into()).await;
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, retry_in = ?delay, "cannot connect to RabbitMQ");
            }
            Err(_) => tracing::warn!(retry_in = ?delay, "connecting to RabbitMQ timed out"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = inner.stop.cancelled() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn connect(inner: &Inner) -> Result<Arc<Session>, lapin::Error> {
    let properties = ConnectionProperties::default()
        .with_connection_name(inner.settings.connection_name.clone().into());
    let connection = Connection::connect(&inner.settings.url, properties).await?;
    let publisher = connection.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    inner.topology.declare_exchanges(&publisher).await?;
    let notifier = connection.create_channel().await?;
    Ok(Arc::new(Session {
        connection,
        publisher,
        notifier,
        declared: Mutex::new(HashSet::new()),
        topology: inner.topology.clone(),
    }))
}
