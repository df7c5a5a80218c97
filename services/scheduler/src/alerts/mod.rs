//! Operational alerts to a Slack or Discord webhook (`ALERT_WEBHOOK_URL`):
//! a job that failed for good, a job running longer than its queue's
//! threshold, a worker lost (its leases reaped), a queue backing up.
//!
//! The alerter is a loop of its own beside the scheduler's sweeps (every
//! `ALERT_CHECK_SECONDS`); a slow or dead webhook holds up only this loop.
//! Every replica runs it, and PostgreSQL makes them agree (see
//! `roundhouse_db::AlertPass`):
//!
//! * each detector is evaluated by one replica at a time, in a transaction
//!   that holds its `alert_state` row;
//! * an alert is sent only by the transaction that inserts or re-arms its
//!   fingerprint in `alerts`, so a condition that lasts sends one message,
//!   repeated at most every `ALERT_REPEAT_SECONDS`;
//! * many events in one pass become one summary (beyond `ALERT_MAX_DETAILS`),
//!   and at most `ALERT_MAX_PER_HOUR` messages leave per hour, counted in
//!   `alert_budget`; the rest are counted and announced in one note when the
//!   budget has room again.
//!
//! A pass commits after its messages went out. If none could be delivered it
//! rolls back, and the next pass finds the same events (by then perhaps a
//! summary). If the webhook fails midway, the messages already sent are
//! kept and the rest of that pass are dropped (and logged).

mod deliver;
mod detectors;
mod message;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use roundhouse_config::Settings;
use roundhouse_db::Db;
use tokio_util::sync::CancellationToken;

pub use deliver::{DeliveryError, Webhook};
use detectors::Detector;
pub use message::{AlertKind, Message, WebhookFormat};

/// Per-queue thresholds in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub default_seconds: f64,
    pub by_queue: Vec<(String, f64)>,
}

/// The alerter's settings (from `ALERT_*` and `ROUNDHOUSE_URL`).
#[derive(Clone)]
pub struct AlertSettings {
    /// Where messages go; holds a secret.
    webhook_url: String,
    /// Told from the URL; tests may override it.
    pub format: WebhookFormat,
    pub check_every: Duration,
    pub running: Thresholds,
    pub queue_wait: Thresholds,
    pub repeat: Duration,
    pub max_per_hour: u32,
    pub max_details: usize,
    /// `ROUNDHOUSE_URL`: messages link to `{this}/api/jobs/{id}`.
    pub link_base: Option<String>,
}

impl std::fmt::Debug for AlertSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertSettings")
            .field("format", &self.format)
            .field("check_every", &self.check_every)
            .field("running", &self.running)
            .field("queue_wait", &self.queue_wait)
            .field("repeat", &self.repeat)
            .field("max_per_hour", &self.max_per_hour)
            .field("max_details", &self.max_details)
            .finish_non_exhaustive()
    }
}

impl AlertSettings {
    /// The alerter's settings, or `None` when `ALERT_WEBHOOK_URL` is unset.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Option<Self>> {
        let Some(url) = settings.alert_webhook_url() else {
            return Ok(None);
        };
        let seconds = |pairs: Vec<(String, u64)>| {
            pairs
                .into_iter()
                .map(|(queue, s)| (queue, s as f64))
                .collect()
        };
        Ok(Some(Self {
            webhook_url: url.to_owned(),
            format: WebhookFormat::detect(url),
            check_every: Duration::from_secs(settings.alert_check_seconds),
            running: Thresholds {
                default_seconds: settings.alert_running_seconds as f64,
                by_queue: seconds(settings.alert_running_seconds_by_queue()?),
            },
            queue_wait: Thresholds {
                default_seconds: settings.alert_queue_wait_seconds as f64,
                by_queue: seconds(settings.alert_queue_wait_seconds_by_queue()?),
            },
            repeat: Duration::from_secs(settings.alert_repeat_seconds),
            max_per_hour: settings.alert_max_per_hour,
            max_details: settings.alert_max_details as usize,
            link_base: settings
                .roundhouse_url
                .as_deref()
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .map(str::to_owned),
        }))
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AlertReport {
    /// Messages delivered.
    pub sent: usize,
    /// Messages held back by the hourly limit.
    pub suppressed: usize,
    /// Messages that could not be delivered.
    pub failed: usize,
    /// Detectors skipped because another replica was evaluating them.
    pub busy: usize,
}

/// The alerter, drivable one pass at a time (tests call [`Alerter::run_once`]).
#[derive(Clone)]
pub struct Alerter {
    db: Db,
    settings: Arc<AlertSettings>,
    webhook: Arc<Webhook>,
}

impl Alerter {
    pub fn new(db: Db, settings: AlertSettings) -> anyhow::Result<Self> {
        let webhook = Webhook::new(&settings.webhook_url, settings.format)
            .context("build the alert webhook client")?;
        Ok(Self {
            db,
            settings: Arc::new(settings),
            webhook: Arc::new(webhook),
        })
    }

    /// Evaluates every detector once and sends what they found. A failing
    /// detector does not stop the others; the first error is returned.
    pub async fn run_once(&self) -> anyhow::Result<AlertReport> {
        let mut report = AlertReport::default();
        if self.webhook.is_paused() {
            return Ok(report);
        }
        let mut first_error = None;
        for detector in Detector::ALL {
            if let Err(error) = self.run_detector(detector, &mut report).await {
                first_error
                    .get_or_insert(error.context(format!("alert detector {}", detector.name())));
            }
        }
        // Conditions gone for a day (or the repeat interval) may alert again.
        let unseen = self.settings.repeat.as_secs_f64().max(86_400.0);
        if let Err(error) = self.db.prune_alerts(unseen).await {
            first_error.get_or_insert(anyhow::Error::new(error).context("prune alerts"));
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }

    async fn run_detector(
        &self,
        detector: Detector,
        report: &mut AlertReport,
    ) -> anyhow::Result<()> {
        let Some(mut pass) = self.db.begin_alert_pass(detector.name()).await? else {
            report.busy += 1;
            return Ok(());
        };
        let found = detector.evaluate(&mut pass, &self.settings).await?;
        let (mut outgoing, mut suppressed) = (Vec::new(), Vec::new());
        for message in found {
            // The note was budgeted when it was taken.
            let allowed = detector == Detector::Suppressed
                || pass
                    .take_alert_budget(message.kind.as_str(), self.settings.max_per_hour as i32)
                    .await?;
            if allowed {
                outgoing.push(message);
            } else {
                suppressed.push(message);
            }
        }

        let mut delivered = 0;
        for (i, message) in outgoing.iter().enumerate() {
            match self.webhook.send(message).await {
                Ok(()) => {
                    delivered += 1;
                    tracing::info!(
                        kind = message.kind.as_str(),
                        title = message.title,
                        "alert sent"
                    );
                    metrics::counter!("roundhouse_alerts_sent_total", "kind" => message.kind.as_str())
                        .increment(1);
                }
                Err(error) => {
                    let undelivered = outgoing.len() - i;
                    report.failed += undelivered;
                    metrics::counter!("roundhouse_alerts_failed_total")
                        .increment(undelivered as u64);
                    if delivered == 0 {
                        // Nothing went out: forget the whole pass, and find
                        // the same events on the next one.
                        tracing::warn!(%error, detector = detector.name(), "alerts not delivered; will try again");
                        return Ok(());
                    }
                    for message in &outgoing[i..] {
                        tracing::error!(%error, kind = message.kind.as_str(), title = message.title, "alert dropped: the webhook failed midway through a pass");
                    }
                    break;
                }
            }
        }
        report.sent += delivered;
        pass.commit().await?;
        // Counted once committed: a pass rolled back suppresses them again.
        for message in &suppressed {
            tracing::warn!(
                kind = message.kind.as_str(),
                title = message.title,
                "alert suppressed: ALERT_MAX_PER_HOUR reached"
            );
            metrics::counter!("roundhouse_alerts_suppressed_total", "kind" => message.kind.as_str())
                .increment(1);
        }
        report.suppressed += suppressed.len();
        Ok(())
    }

    /// Runs a pass every `ALERT_CHECK_SECONDS` until `stop`. A pass stopped
    /// midway rolls back: the next process sends what it would have.
    pub async fn run(&self, stop: CancellationToken) {
        tracing::info!(
            format = ?self.settings.format,
            every_s = self.settings.check_every.as_secs(),
            "alerts enabled"
        );
        loop {
            tokio::select! {
                result = self.run_once() => {
                    if let Err(error) = result {
                        tracing::warn!(error = format!("{error:#}"), "alert pass failed");
                    }
                }
                _ = stop.cancelled() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.check_every) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}
