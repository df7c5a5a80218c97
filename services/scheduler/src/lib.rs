//! The scheduler: the periodic sweeps that keep PostgreSQL's job table and
//! RabbitMQ's queues in agreement.
//!
//! Every tick it
//! 1. promotes `scheduled` jobs whose `runAt` has come (delays, retry backoff),
//! 2. reaps attempts whose lease expired (their worker died) back to their queue,
//! 3. resends dispatch messages that were never confirmed (a crash between
//!    commit and publish, a broker outage) or that the broker lost.
//!
//! Each sweep claims its rows with `FOR UPDATE SKIP LOCKED` in the same
//! statement that changes them, so two schedulers never do the same work.
//! Published rows that the broker does not confirm are marked undispatched
//! again, and the next tick retries them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use roundhouse_broker::{Broker, BrokerSettings};
use roundhouse_config::Settings;
use roundhouse_core::Dispatch;
use roundhouse_db::{Db, PoolSettings};
use tokio_util::sync::CancellationToken;

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    pub promoted: usize,
    pub reaped_requeued: usize,
    pub reaped_failed: usize,
    pub redispatched: usize,
    /// Dispatches the broker did not confirm (retried next tick).
    pub unconfirmed: usize,
}

/// The sweeps, callable one tick at a time (tests drive them directly).
#[derive(Clone)]
pub struct Scheduler {
    db: Db,
    broker: Broker,
    settings: Arc<Settings>,
}

impl Scheduler {
    /// A scheduler over existing connections.
    pub fn new(db: Db, broker: Broker, settings: Settings) -> Self {
        Self {
            db,
            broker,
            settings: Arc::new(settings),
        }
    }

    /// Runs every sweep once. Each sweep publishes what it changed before the
    /// next one runs, so a failing sweep never strands another's jobs.
    pub async fn run_once(&self) -> anyhow::Result<TickReport> {
        self.tick(true).await
    }

    /// Promotes and reaps; looks for missing dispatches too when `sweep_dispatches`.
    async fn tick(&self, sweep_dispatches: bool) -> anyhow::Result<TickReport> {
        let batch = self.settings.scheduler_batch_size;
        let mut report = TickReport::default();
        let mut first_error = None;

        match self
            .db
            .promote_due_jobs(batch)
            .await
            .context("promote due jobs")
        {
            Ok(promoted) => {
                report.promoted = promoted.len();
                report.unconfirmed += self.publish(&promoted).await?;
            }
            Err(error) => first_error = first_error.or(Some(error)),
        }

        match self
            .db
            .reap_expired_leases(batch)
            .await
            .context("reap expired leases")
        {
            Ok(reaped) => {
                report.reaped_requeued = reaped.requeued.len();
                report.reaped_failed = reaped.failed.len();
                for id in &reaped.failed {
                    tracing::warn!(job_id = %id, "job failed: its worker was lost on the last allowed attempt");
                }
                if !reaped.requeued.is_empty() {
                    tracing::warn!(
                        count = reaped.requeued.len(),
                        "requeued jobs whose worker was lost"
                    );
                }
                report.unconfirmed += self.publish(&reaped.requeued).await?;
            }
            Err(error) => first_error = first_error.or(Some(error)),
        }

        if !sweep_dispatches {
            return Self::finish(report, first_error);
        }
        match self
            .db
            .claim_undispatched(
                self.settings.scheduler_dispatch_grace_ms as f64 / 1000.0,
                self.settings.scheduler_redispatch_after_seconds as f64,
                batch,
            )
            .await
            .context("claim undispatched jobs")
        {
            Ok(stale) => {
                report.redispatched = stale.len();
                if !stale.is_empty() {
                    tracing::info!(count = stale.len(), "resending dispatch messages");
                }
                report.unconfirmed += self.publish(&stale).await?;
            }
            Err(error) => first_error = first_error.or(Some(error)),
        }

        Self::finish(report, first_error)
    }

    fn finish(report: TickReport, error: Option<anyhow::Error>) -> anyhow::Result<TickReport> {
        metrics::counter!("roundhouse_scheduler_promoted_total").increment(report.promoted as u64);
        metrics::counter!("roundhouse_leases_reaped_total")
            .increment((report.reaped_requeued + report.reaped_failed) as u64);
        metrics::counter!("roundhouse_redispatched_total").increment(report.redispatched as u64);
        match error {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }

    /// Publishes dispatches; the unconfirmed ones are marked undispatched so
    /// the next tick retries them. Returns how many were not confirmed.
    async fn publish(&self, dispatches: &[Dispatch]) -> anyhow::Result<usize> {
        if dispatches.is_empty() {
            return Ok(0);
        }
        let outcome = self.broker.publish_dispatches(dispatches).await;
        if !outcome.failed.is_empty() {
            self.db
                .mark_undispatched(&outcome.failed)
                .await
                .context("mark unconfirmed dispatches")?;
        }
        Ok(outcome.failed.len())
    }

    /// Ticks until `stop` is cancelled. A tick that found a full batch is
    /// followed at once by another. The dispatch sweep, which reads the whole
    /// waiting backlog, runs at most every `SCHEDULER_SWEEP_MS`; promotion and
    /// reaping, which read only due rows, run every tick.
    pub async fn run(&self, stop: CancellationToken) {
        let tick = self.settings.scheduler_tick();
        let sweep_every = Duration::from_millis(self.settings.scheduler_sweep_ms);
        let full = self.settings.scheduler_batch_size as usize;
        let mut last_sweep: Option<std::time::Instant> = None;
        loop {
            let sweep = last_sweep.is_none_or(|at| at.elapsed() >= sweep_every);
            if sweep {
                last_sweep = Some(std::time::Instant::now());
            }
            let busy = match self.tick(sweep).await {
                Ok(report) => {
                    report.promoted >= full
                        || report.redispatched >= full
                        || report.reaped_requeued >= full
                }
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "scheduler tick failed");
                    false
                }
            };
            let pause = if busy { Duration::ZERO } else { tick };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

/// The scheduler service.
pub struct Application {
    scheduler: Scheduler,
    listener: tokio::net::TcpListener,
    port: u16,
}

impl Application {
    /// Connects (lazily) and binds the health port (`PORT`, default 8083).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = Db::connect_lazy(
            &settings.database_url,
            &PoolSettings {
                max_connections: settings.database_max_connections.min(4),
                ..PoolSettings::default()
            },
        )
        .context("DATABASE_URL")?;
        let broker = Broker::start(BrokerSettings {
            url: settings.rabbitmq_url.clone(),
            prefix: settings.rabbitmq_prefix.clone(),
            connection_name: format!("scheduler-{}", std::process::id()),
            confirm_timeout: Duration::from_secs(5),
        });
        let listener = roundhouse_telemetry::bind(settings.port.unwrap_or(8083))
            .await
            .context("cannot bind PORT")?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            scheduler: Scheduler::new(db, broker, settings),
            listener,
            port,
        })
    }

    /// The health server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs the sweeps and the health server until `shutdown` resolves.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let scheduler = self.scheduler.clone();
        let sweeps = tokio::spawn({
            let stop = stop.clone();
            async move { scheduler.run(stop).await }
        });
        let db = self.scheduler.db.clone();
        let broker = self.scheduler.broker.clone();
        let ops = roundhouse_telemetry::ops_router(
            "scheduler",
            Arc::new(move || {
                let db = db.clone();
                let broker = broker.clone();
                Box::pin(async move {
                    db.check(Duration::from_secs(2)).await?;
                    if broker.is_connected() {
                        Ok(())
                    } else {
                        Err("broker disconnected".to_owned())
                    }
                })
            }),
        );
        let server_stop = stop.clone();
        let server = tokio::spawn(
            axum::serve(self.listener, ops)
                .with_graceful_shutdown(async move { server_stop.cancelled().await })
                .into_future(),
        );
        tracing::info!("scheduler started");
        shutdown.await;
        stop.cancel();
        let _ = sweeps.await;
        let _ = server.await;
        self.scheduler.broker.close().await;
        self.scheduler.db.close().await;
        tracing::info!("scheduler stopped");
        Ok(())
    }
}
