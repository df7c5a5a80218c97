//! Wiring, start and graceful stop.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use roundhouse_broker::{Broker, BrokerSettings};
use roundhouse_config::{Service, Settings};
use roundhouse_core::Dispatch;
use roundhouse_db::{Completion, Db, HandlerKind, PoolSettings};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handler::Handler;
use crate::running::{Running, StopReason};
use crate::{completer, consumer, control, heartbeat};

/// State shared by the worker's tasks.
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) db: Db,
    pub(crate) broker: Broker,
    pub(crate) worker_id: String,
    pub(crate) running: Running,
    /// Successful attempts (with their queue) for the completer to record.
    pub(crate) completions: mpsc::Sender<(Completion, String)>,
    /// Cancelled when the drain timeout runs out: running handlers must stop.
    pub(crate) hard_stop: CancellationToken,
    /// LLM providers for `llm_processing` jobs.
    pub(crate) llm: roundhouse_llm::Providers,
    /// Handlers added by an embedding process.
    pub(crate) extra_handlers: crate::ExtraHandlers,
    /// The SSRF-guarded HTTP client for user-supplied URLs.
    pub(crate) outbound: crate::handler::Outbound,
    /// The custom job types this worker runs, registered at start so the
    /// api accepts them.
    pub(crate) custom_types: Vec<(String, String, HandlerKind)>,
}

impl Shared {
    /// Tells the api replicas that job `job_id`'s timeline grew (best
    /// effort: they poll PostgreSQL anyway, this only wakes them sooner).
    pub(crate) async fn announce_events(&self, job_id: uuid::Uuid, queue: &str) {
        let note = roundhouse_core::JobEventsNote {
            job_id,
            queue: queue.to_owned(),
        };
        self.broker.announce_job_events(&[note]).await;
    }
}

/// Where a worker runs: in its own process, or inside a host service
/// whose pool it shares.
enum Host {
    Own,
    Embedded(Db),
}

/// A built worker, ready to run.
pub struct Application {
    shared: Arc<Shared>,
    completer: completer::Completer,
    listener: Option<tokio::net::TcpListener>,
    port: u16,
    /// False when the pool is the host's (embedded worker): the host closes it.
    owns_db: bool,
}

impl Application {
    /// Connects (lazily) to PostgreSQL and RabbitMQ and binds the health port
    /// (`PORT`, default 8082; 0 picks a free one).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, crate::ExtraHandlers::new(), Host::Own).await
    }

    /// A worker that also runs `extra` handlers: custom job types compiled
    /// into the binary (see `examples/custom-handler`). Binds the health
    /// port like [`Application::build`].
    pub async fn build_with_handlers(
        settings: Settings,
        extra: crate::ExtraHandlers,
    ) -> anyhow::Result<Self> {
        Self::build_with(settings, extra, Host::Own).await
    }

    /// A worker inside another service (the agent executor runs its
    /// `agents` queue this way): `extra` handlers join the registry, the
    /// host's pool `db` is used (and left open at the end), and no health
    /// port is bound (the host serves its own).
    pub async fn build_embedded(
        settings: Settings,
        extra: crate::ExtraHandlers,
        db: Db,
    ) -> anyhow::Result<Self> {
        Self::build_with(settings, extra, Host::Embedded(db)).await
    }

    async fn build_with(
        settings: Settings,
        mut extra_handlers: crate::ExtraHandlers,
        host: Host,
    ) -> anyhow::Result<Self> {
        let mut custom_types: Vec<(String, String, HandlerKind)> = extra_handlers
            .keys()
            .filter(|kind| kind.builtin().is_none())
            .map(|kind| {
                let queue = kind.default_queue().to_string();
                (kind.to_string(), queue, HandlerKind::Embedded)
            })
            .collect();
        for (kind, handler) in crate::handlers::http_handlers(&settings)? {
            if extra_handlers.contains_key(&kind) {
                anyhow::bail!("invalid setting HTTP_HANDLERS: `{kind}` already has a handler");
            }
            let queue = kind.default_queue().to_string();
            custom_types.push((kind.to_string(), queue, HandlerKind::Http));
            extra_handlers.insert(kind, Handler::Extra(Arc::new(handler)));
        }
        // A worker of its own serves /health and owns its pool; an embedded
        // one leaves both to its host.
        let (db, owns_db) = match host {
            Host::Own => (
                Db::connect_lazy(
                    &settings.database_url,
                    &PoolSettings {
                        max_connections: settings.database_pool_size(Service::Worker),
                        statement_timeout: Some(settings.database_statement_timeout()),
                        application_name: Some(Service::Worker.application_name().to_owned()),
                        ..PoolSettings::default()
                    },
                )
                .context("DATABASE_URL")?,
                true,
            ),
            Host::Embedded(db) => (db, false),
        };
        let serve_health = owns_db;
        let worker_id = format!(
            "worker-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let broker = Broker::start(BrokerSettings {
            url: settings.rabbitmq_url.clone(),
            prefix: settings.rabbitmq_prefix.clone(),
            connection_name: worker_id.clone(),
            confirm_timeout: Duration::from_secs(5),
        });
        let listener = if serve_health {
            Some(
                roundhouse_telemetry::bind(settings.port.unwrap_or(8082))
                    .await
                    .context("cannot bind PORT")?,
            )
        } else {
            None
        };
        let port = match &listener {
            Some(listener) => listener.local_addr()?.port(),
            None => 0,
        };
        let llm = roundhouse_llm::LlmConfig::from_settings(&settings)
            .and_then(|config| roundhouse_llm::Providers::from_config(&config))
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        tracing::info!(providers = ?llm.names(), "LLM providers");
        crate::handlers::rag::check_providers(&settings, &llm)?;
        let outbound = crate::handler::Outbound::from_settings(&settings)?;
        let (completions, completer) = completer::spawn(db.clone(), broker.clone());
        Ok(Self {
            shared: Arc::new(Shared {
                settings,
                db,
                broker,
                worker_id,
                running: Running::default(),
                completions,
                hard_stop: CancellationToken::new(),
                llm,
                extra_handlers,
                outbound,
                custom_types,
            }),
            completer,
            listener,
            port,
            owns_db,
        })
    }

    /// The health server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The worker's database handle (its own pool, or its host's).
    pub fn db(&self) -> &Db {
        &self.shared.db
    }

    /// This worker's id, as written to `jobs.worker_id`.
    pub fn worker_id(&self) -> &str {
        &self.shared.worker_id
    }

    /// Runs until `shutdown` resolves, then drains: stops taking work, lets
    /// running attempts finish for `WORKER_DRAIN_SECONDS`, hands the rest back
    /// to their queues, records every pending completion, and returns.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self {
            shared,
            completer,
            listener,
            owns_db,
            ..
        } = self;
        let stop_intake = CancellationToken::new();
        let background = CancellationToken::new();
        let tasks = TaskTracker::new();

        let slots = queue_slots(&shared).await;
        for (queue, slots) in slots {
            tokio::spawn(consumer::run(
                shared.clone(),
                queue,
                slots,
                tasks.clone(),
                stop_intake.clone(),
            ));
        }
        tokio::spawn(register_custom_types(shared.clone(), background.clone()));
        tokio::spawn(heartbeat::run(shared.clone(), background.clone()));
        tokio::spawn(control::run(shared.clone(), background.clone()));
        let ops = {
            let db = shared.db.clone();
            let broker = shared.broker.clone();
            roundhouse_telemetry::ops_router(
                "worker",
                Arc::new(move || {
                    let db = db.clone();
                    let broker = broker.clone();
                    Box::pin(async move { dependencies_healthy(&db, &broker).await })
                }),
            )
        };
        let ops_stop = background.clone();
        let ops_server = tokio::spawn(async move {
            match listener {
                Some(listener) => {
                    axum::serve(listener, ops)
                        .with_graceful_shutdown(async move { ops_stop.cancelled().await })
                        .await
                }
                None => Ok(()),
            }
        });
        tracing::info!(worker_id = %shared.worker_id, "worker started");

        shutdown.await;
        tracing::info!(running = shared.running.len(), "draining");
        stop_intake.cancel();
        tasks.close();
        if tokio::time::timeout(shared.settings.worker_drain(), tasks.wait())
            .await
            .is_err()
        {
            let unfinished = shared.running.snapshot();
            tracing::warn!(
                count = unfinished.len(),
                "drain timeout: handing running jobs back"
            );
            shared.running.stop_all(StopReason::Shutdown);
            shared.hard_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
            hand_back(&shared, &unfinished).await;
        }
        background.cancel();
        // Every execute task is done: record the completions still queued.
        completer.finish(Duration::from_secs(10)).await;
        let _ = ops_server.await;
        shared.broker.close().await;
        if owns_db {
            shared.db.close().await;
        }
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// Registers this worker's custom job types, retrying until the database
/// answers: until then the api refuses jobs of types it has never seen.
async fn register_custom_types(shared: Arc<Shared>, stop: CancellationToken) {
    if shared.custom_types.is_empty() {
        return;
    }
    loop {
        match shared
            .db
            .register_job_types(&shared.worker_id, &shared.custom_types)
            .await
        {
            Ok(()) => {
                let names: Vec<&str> = shared.custom_types.iter().map(|t| t.0.as_str()).collect();
                tracing::info!(?names, "custom job types registered");
                return;
            }
            Err(error) => tracing::warn!(%error, "cannot register custom job types yet"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

async fn hand_back(shared: &Shared, unfinished: &[(uuid::Uuid, i32)]) {
    match shared.db.release_jobs(unfinished).await {
        Ok(released) => {
            tracing::info!(count = released.len(), "jobs handed back to their queues");
            // Dispatch them now if we can; otherwise the scheduler's sweep will.
            let rows: Vec<Dispatch> =
                futures::future::join_all(released.iter().map(|id| shared.db.get_job(*id, None)))
                    .await
                    .into_iter()
                    .filter_map(|row| row.ok().flatten())
                    .map(|row| Dispatch {
                        job_id: row.id,
                        queue: row.queue,
                        priority: row.priority,
                        traceparent: row.traceparent,
                    })
                    .collect();
            let report = shared.broker.publish_dispatches(&rows).await;
            let _ = shared.db.mark_dispatched(&report.confirmed).await;
        }
        Err(error) => {
            tracing::error!(%error, "could not hand jobs back; their leases will expire and they will be retried")
        }
    }
}

/// Slots per consumed queue: the queue's configured concurrency, else
/// `WORKER_CONCURRENCY`.
async fn queue_slots(shared: &Shared) -> Vec<(roundhouse_core::QueueName, usize)> {
    let overrides: HashMap<String, Option<i32>> = match shared.db.queue_concurrency().await {
        Ok(rows) => rows.into_iter().collect(),
        Err(error) => {
            tracing::warn!(%error, "cannot read queue concurrency; using WORKER_CONCURRENCY");
            HashMap::new()
        }
    };
    shared
        .settings
        .worker_queues()
        .expect("validated at load")
        .into_iter()
        .map(|queue| {
            let slots = overrides
                .get(queue.as_str())
                .copied()
                .flatten()
                .map_or(shared.settings.worker_concurrency, |n| n.max(1) as usize);
            (queue, slots)
        })
        .collect()
}

/// Healthy when PostgreSQL answers and RabbitMQ is connected.
pub(crate) async fn dependencies_healthy(
    db: &Db,
    broker: &roundhouse_broker::Broker,
) -> Result<(), String> {
    db.check(Duration::from_secs(2)).await?;
    if broker.is_connected() {
        Ok(())
    } else {
        Err("broker disconnected".to_owned())
    }
}
