//! The detectors: what each one looks at, how it names (fingerprints) what
//! it found so that the `alerts` table can deduplicate it, and which
//! messages it asks to send.
//!
//! Each runs inside an [`AlertPass`] that holds its row, so one replica at a
//! time evaluates it. Event detectors (failed jobs, lost workers) read the
//! window since their watermark and advance it; state detectors (long runs,
//! backlogs) look at the jobs as they are now and rely on the dedup record
//! alone.

use std::collections::HashSet;

use roundhouse_db::{AlertPass, DbError};

use super::AlertSettings;
use super::message::{self, AlertKind, Message};

/// The detectors, in the order a pass runs them. Each names its
/// `alert_state` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Detector {
    /// The "N alerts suppressed" note, first, so that it precedes whatever
    /// the freed budget is spent on next.
    Suppressed,
    JobFailed,
    JobRunningLong,
    WorkerLost,
    QueueBacklog,
}

impl Detector {
    pub(super) const ALL: [Detector; 5] = [
        Detector::Suppressed,
        Detector::JobFailed,
        Detector::JobRunningLong,
        Detector::WorkerLost,
        Detector::QueueBacklog,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Detector::Suppressed => "alerts_suppressed",
            Detector::JobFailed => "job_failed",
            Detector::JobRunningLong => "job_running_long",
            Detector::WorkerLost => "worker_lost",
            Detector::QueueBacklog => "queue_backlog",
        }
    }

    /// What the detector wants to send. The note of suppressed alerts has
    /// already taken its budget; everything else still needs it.
    pub(super) async fn evaluate(
        self,
        pass: &mut AlertPass,
        settings: &AlertSettings,
    ) -> Result<Vec<Message>, DbError> {
        match self {
            Detector::Suppressed => suppressed_note(pass, settings).await,
            Detector::JobFailed => failed_jobs(pass, settings).await,
            Detector::JobRunningLong => long_running_jobs(pass, settings).await,
            Detector::WorkerLost => lost_workers(pass, settings).await,
            Detector::QueueBacklog => queue_backlogs(pass, settings).await,
        }
    }
}

async fn suppressed_note(
    pass: &mut AlertPass,
    settings: &AlertSettings,
) -> Result<Vec<Message>, DbError> {
    Ok(pass
        .release_suppressed(settings.max_per_hour as i32)
        .await?
        .map(|counts| message::suppressed(&counts, settings.max_per_hour))
        .into_iter()
        .collect())
}

/// Jobs that reached `failed` in the window: a message each up to
/// `max_details`, else one summary of the window. Each job is fingerprinted
/// by (id, attempt): one that is retried by hand and fails again is news.
async fn failed_jobs(
    pass: &mut AlertPass,
    settings: &AlertSettings,
) -> Result<Vec<Message>, DbError> {
    let Some(window) = pass.window().await? else {
        return Ok(Vec::new());
    };
    let groups = pass.failure_groups(window).await?;
    let total: i64 = groups.iter().map(|g| g.count).sum();
    let kind = AlertKind::JobFailed.as_str();
    let base = settings.link_base.as_deref();
    let mut messages = Vec::new();
    if total > settings.max_details as i64 {
        let first = pass.failed_jobs(window, 3).await?;
        let fingerprint = format!(
            "{kind}:window:{}:{}",
            window.from.timestamp_micros(),
            window.to.timestamp_micros()
        );
        if !pass
            .record_alerts(kind, &[fingerprint], None)
            .await?
            .is_empty()
        {
            messages.push(message::jobs_failed(
                total,
                window.seconds(),
                &groups,
                &first,
                base,
            ));
        }
    } else if total > 0 {
        let jobs = pass.failed_jobs(window, total).await?;
        let fingerprint =
            |job: &roundhouse_db::FailedJob| format!("{kind}:{}:{}", job.id, job.attempts);
        let fingerprints: Vec<String> = jobs.iter().map(fingerprint).collect();
        let announce: HashSet<String> = pass
            .record_alerts(kind, &fingerprints, None)
            .await?
            .into_iter()
            .collect();
        messages.extend(
            jobs.iter()
                .filter(|job| announce.contains(&fingerprint(job)))
                .map(|job| message::job_failed(job, base)),
        );
    }
    pass.advance(window.to).await?;
    Ok(messages)
}

/// Attempts running longer than their queue's threshold, each announced
/// once: a message each up to `max_details`, else one summary.
async fn long_running_jobs(
    pass: &mut AlertPass,
    settings: &AlertSettings,
) -> Result<Vec<Message>, DbError> {
    /// Far more than any worker fleet runs at once; bounds a pathological pass.
    const LIMIT: i64 = 10_000;
    let jobs = pass
        .long_running_jobs(
            settings.running.default_seconds,
            &settings.running.by_queue,
            LIMIT,
        )
        .await?;
    let kind = AlertKind::JobRunningLong.as_str();
    let fingerprint =
        |job: &roundhouse_db::LongRunningJob| format!("{kind}:{}:{}", job.id, job.attempts);
    let fingerprints: Vec<String> = jobs.iter().map(fingerprint).collect();
    let announce: HashSet<String> = pass
        .record_alerts(kind, &fingerprints, None)
        .await?
        .into_iter()
        .collect();
    let new: Vec<_> = jobs
        .iter()
        .filter(|job| announce.contains(&fingerprint(job)))
        .collect();
    let base = settings.link_base.as_deref();
    Ok(if new.len() > settings.max_details {
        vec![message::jobs_running_long(&new, base)]
    } else {
        new.iter()
            .map(|job| message::job_running_long(job, base))
            .collect()
    })
}

/// Workers whose leases were reaped in the window: one message naming those
/// not announced within `ALERT_REPEAT_SECONDS`.
async fn lost_workers(
    pass: &mut AlertPass,
    settings: &AlertSettings,
) -> Result<Vec<Message>, DbError> {
    let Some(window) = pass.window().await? else {
        return Ok(Vec::new());
    };
    let workers = pass.lost_workers(window).await?;
    let kind = AlertKind::WorkerLost.as_str();
    let fingerprints: Vec<String> = workers
        .iter()
        .map(|w| format!("{kind}:{}", w.worker_id))
        .collect();
    let announce: HashSet<String> = pass
        .record_alerts(kind, &fingerprints, Some(settings.repeat.as_secs_f64()))
        .await?
        .into_iter()
        .collect();
    let new: Vec<_> = workers
        .iter()
        .filter(|w| announce.contains(&format!("{kind}:{}", w.worker_id)))
        .collect();
    pass.advance(window.to).await?;
    Ok(if new.is_empty() {
        Vec::new()
    } else {
        vec![message::workers_lost(&new)]
    })
}

/// Queues backing up: one message for those that started (or are still
/// backing up `ALERT_REPEAT_SECONDS` after the last message), one for those
/// that recovered since.
async fn queue_backlogs(
    pass: &mut AlertPass,
    settings: &AlertSettings,
) -> Result<Vec<Message>, DbError> {
    let backlogs = pass
        .queue_backlogs(
            settings.queue_wait.default_seconds,
            &settings.queue_wait.by_queue,
        )
        .await?;
    let kind = AlertKind::QueueBacklog.as_str();
    let fingerprints: Vec<String> = backlogs
        .iter()
        .map(|b| format!("{kind}:{}", b.queue))
        .collect();
    let announce: HashSet<String> = pass
        .record_alerts(kind, &fingerprints, Some(settings.repeat.as_secs_f64()))
        .await?
        .into_iter()
        .collect();
    let recovered: Vec<String> = pass
        .resolve_alerts(kind, &fingerprints)
        .await?
        .into_iter()
        .map(|f| f.strip_prefix(&format!("{kind}:")).unwrap_or(&f).to_owned())
        .collect();
    let started: Vec<_> = backlogs
        .iter()
        .filter(|b| announce.contains(&format!("{kind}:{}", b.queue)))
        .collect();
    let mut messages = Vec::new();
    if !started.is_empty() {
        messages.push(message::queues_backing_up(
            &started,
            settings.link_base.as_deref(),
        ));
    }
    if !recovered.is_empty() {
        messages.push(message::queues_recovered(&recovered));
    }
    Ok(messages)
}
