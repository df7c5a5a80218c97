//! The scheduler: cron schedules (Celery beat's job), and the periodic sweeps
//! that keep PostgreSQL's job table and RabbitMQ's queues in agreement.
//!
//! Every tick it
//! 0. fires due cron schedules: one job per tick, exactly once however many
//!    schedulers run (see [`cron`] and `Db::fire_due_schedules`),
//! 1. promotes `scheduled` jobs whose `runAt` has come (delays, retry backoff),
//! 2. reaps attempts whose lease expired (their worker died) back to their queue,
//! 3. resends dispatch messages that were never confirmed (a crash between
//!    commit and publish, a broker outage) or that the broker lost, and fails
//!    (refunding them) agent runs whose executor stopped heartbeating.
//!
//! Each sweep claims its rows with `FOR UPDATE SKIP LOCKED` in the same
//! statement that changes them, so two schedulers never do the same work.
//! Published rows that the broker does not confirm are marked undispatched
//! again, and the next tick retries them.
//!
//! Beside the sweeps, when `ALERT_WEBHOOK_URL` is set, the [`alerts`] loop
//! reports failed, stuck and lost work to Slack or Discord, and a timer sets
//! the queue depth gauges of `/metrics` (`gauges.rs`).

pub mod alerts;
mod cron;
mod gauges;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use roundhouse_broker::{Broker, BrokerSettings};
use roundhouse_config::{Service, Settings};
use roundhouse_core::Dispatch;
use roundhouse_db::{Db, PoolSettings};
use tokio_util::sync::CancellationToken;

use crate::alerts::{AlertSettings, Alerter};
use crate::gauges::QueueGauges;

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    /// Due cron schedules handled.
    pub schedules_due: usize,
    /// Jobs created by cron ticks.
    pub fired: usize,
    /// Missed cron ticks dropped by misfire policies.
    pub misfires_skipped: u64,
    pub promoted: usize,
    pub reaped_requeued: usize,
    pub reaped_failed: usize,
    pub redispatched: usize,
    /// Dispatches the broker did not confirm (retried next tick).
    pub unconfirmed: usize,
    /// Agent runs failed and refunded because their executor stopped
    /// renewing their heartbeat.
    pub runs_reaped: usize,
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

        if let Err(error) = self.fire_schedules(batch, &mut report).await {
            first_error = Some(error);
        }

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
            .reap_stale_runs(self.settings.agent_run_stale_seconds as f64, batch)
            .await
            .context("reap stale agent runs")
        {
            Ok(lost) => {
                report.runs_reaped = lost.len();
                for id in &lost {
                    tracing::warn!(run_id = %id, "agent run failed and refunded: its executor was lost");
                }
            }
            Err(error) => first_error = first_error.or(Some(error)),
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

    /// Fires due cron schedules and publishes their queued jobs.
    async fn fire_schedules(&self, batch: i64, tick: &mut TickReport) -> anyhow::Result<()> {
        let report = self
            .db
            .fire_due_schedules(batch, cron::plan)
            .await
            .context("fire due schedules")?;
        for (schedule_id, error) in &report.errors {
            tracing::error!(%schedule_id, error, "schedule disabled: it cannot be planned");
            metrics::counter!("roundhouse_schedule_errors_total").increment(1);
        }
        if report.skipped > 0 {
            tracing::warn!(
                count = report.skipped,
                "skipped missed cron ticks (misfire policy)"
            );
            metrics::counter!("roundhouse_schedule_misfires_skipped_total")
                .increment(report.skipped);
        }
        for fired in &report.fired {
            let late_ms = fired.lateness.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0;
            tracing::info!(
                schedule = fired.schedule_name,
                schedule_id = %fired.schedule_id,
                job_id = %fired.job_id,
                tick = %fired.tick,
                late_ms,
                "schedule {} fired job {} (late by {late_ms:.1} ms)",
                fired.schedule_name,
                fired.job_id,
            );
            metrics::histogram!("roundhouse_schedule_tick_lateness_seconds")
                .record(late_ms / 1000.0);
        }
        metrics::counter!("roundhouse_schedule_ticks_fired_total")
            .increment(report.fired.len() as u64);
        let dispatches: Vec<Dispatch> = report
            .fired
            .iter()
            .filter_map(|f| f.dispatch.clone())
            .collect();
        tick.schedules_due = report.schedules;
        tick.fired = report.fired.len();
        tick.misfires_skipped = report.skipped;
        if !dispatches.is_empty() {
            // Fired jobs are stored undispatched: if this process dies before
            // the broker confirms, the dispatch sweep sends them.
            let outcome = self.broker.publish_dispatches(&dispatches).await;
            tick.unconfirmed += outcome.failed.len();
            self.db
                .mark_dispatched(&outcome.confirmed)
                .await
                .context("mark fired jobs dispatched")?;
        }
        Ok(())
    }

    fn finish(report: TickReport, error: Option<anyhow::Error>) -> anyhow::Result<TickReport> {
        metrics::counter!("roundhouse_scheduler_promoted_total").increment(report.promoted as u64);
        metrics::counter!("roundhouse_leases_reaped_total")
            .increment((report.reaped_requeued + report.reaped_failed) as u64);
        metrics::counter!("roundhouse_redispatched_total").increment(report.redispatched as u64);
        metrics::counter!("roundhouse_agent_runs_reaped_total")
            .increment(report.runs_reaped as u64);
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
    /// followed at once by another. Between ticks the loop sleeps until the
    /// next cron tick or delayed job is due (asking the database, so the
    /// scheduler's own clock does not matter), or at most `SCHEDULER_TICK_MS`,
    /// which bounds how long a schedule edited through the API, a lost lease
    /// or a job from another replica waits. The dispatch sweep, which reads the
    /// whole waiting backlog, runs at most every `SCHEDULER_SWEEP_MS`.
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
                    report.schedules_due >= full
                        || report.promoted >= full
                        || report.redispatched >= full
                        || report.reaped_requeued >= full
                }
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "scheduler tick failed");
                    false
                }
            };
            let pause = if busy {
                Duration::ZERO
            } else {
                self.pause_until_next_due(tick).await
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// How long to sleep: until the next due tick or delayed job, within
    /// `[MIN_PAUSE, tick]`. The floor keeps a schedule that another replica
    /// holds locked from turning this loop into a spin.
    async fn pause_until_next_due(&self, tick: Duration) -> Duration {
        const MIN_PAUSE: Duration = Duration::from_millis(2);
        match self.db.seconds_until_next_due().await {
            Ok(Some(seconds)) if seconds.is_finite() => {
                Duration::from_secs_f64(seconds.max(0.0)).clamp(MIN_PAUSE, tick)
            }
            Ok(_) => tick,
            Err(error) => {
                tracing::debug!(%error, "could not read the next due time");
                tick
            }
        }
    }
}

/// The scheduler service.
pub struct Application {
    scheduler: Scheduler,
    /// Present when `ALERT_WEBHOOK_URL` is set.
    alerter: Option<Alerter>,
    listener: tokio::net::TcpListener,
    port: u16,
}

impl Application {
    /// Connects (lazily) and binds the health port (`PORT`, default 8083).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = Db::connect_lazy(
            &settings.database_url,
            &PoolSettings {
                max_connections: settings.database_pool_size(Service::Scheduler),
                statement_timeout: Some(settings.database_statement_timeout()),
                application_name: Some(Service::Scheduler.application_name().to_owned()),
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
        let alerter = AlertSettings::from_settings(&settings)?
            .map(|alerts| Alerter::new(db.clone(), alerts))
            .transpose()?;
        Ok(Self {
            scheduler: Scheduler::new(db, broker, settings),
            alerter,
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
        // Its own task: a slow or dead webhook never delays a sweep.
        let alerts = self.alerter.clone().map(|alerter| {
            let stop = stop.clone();
            tokio::spawn(async move { alerter.run(stop).await })
        });
        let gauges =
            tokio::spawn(QueueGauges::default().run(self.scheduler.db.clone(), stop.clone()));
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
        let _ = gauges.await;
        if let Some(alerts) = alerts {
            let _ = alerts.await;
        }
        let _ = server.await;
        self.scheduler.broker.close().await;
        self.scheduler.db.close().await;
        tracing::info!("scheduler stopped");
        Ok(())
    }
}
