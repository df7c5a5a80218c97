//! What an alert says, and its body for Slack or Discord.
//!
//! A [`Message`] is a title and a few lines of the markdown both chat tools
//! read alike (backticks, `>` quotes, `•` bullets, bare links); only bold
//! differs (`*x*` in Slack, `**x**` in Discord). Job errors are excerpts
//! shown as code, so that nothing a job wrote can format, link or mention:
//! Slack's control characters are escaped and Discord is told to parse no
//! mentions.

use roundhouse_db::{FailedJob, FailureGroup, LongRunningJob, LostWorker, QueueBacklog};
use serde_json::{Value, json};

/// What an alert is about: its metrics label and its dedup kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// A job failed for good (retries exhausted or a permanent error).
    JobFailed,
    /// A job has been `processing` longer than its queue's threshold.
    JobRunningLong,
    /// The reaper expired a worker's leases: it died or hung.
    WorkerLost,
    /// A queue's oldest waiting job has waited longer than its threshold.
    QueueBacklog,
    /// A queue that was backing up no longer is.
    QueueRecovered,
    /// The note that the rate limit held alerts back.
    Suppressed,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::JobFailed => "job_failed",
            AlertKind::JobRunningLong => "job_running_long",
            AlertKind::WorkerLost => "worker_lost",
            AlertKind::QueueBacklog => "queue_backlog",
            AlertKind::QueueRecovered => "queue_recovered",
            AlertKind::Suppressed => "alerts_suppressed",
        }
    }
}

/// The body shape the webhook expects, told from its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// `{"text": …}`: Slack incoming webhooks, and Mattermost, Rocket.Chat
    /// and others that accept Slack's shape.
    Slack,
    /// `{"content": …, "username": …}`: Discord channel webhooks.
    Discord,
}

/// Discord refuses a `content` longer than this.
const DISCORD_MAX_CHARS: usize = 2000;
/// Slack truncates `text` beyond 40,000 characters but advises 4,000.
const SLACK_MAX_CHARS: usize = 4000;
/// How much of a job's error a message quotes.
const ERROR_EXCERPT_CHARS: usize = 300;
/// Bullets listed before "… and N more".
const MAX_LISTED: usize = 5;

impl WebhookFormat {
    /// Discord when the host is Discord's and the path is a webhook's
    /// (`https://discord.com/api/webhooks/…`), else Slack.
    pub fn detect(url: &str) -> Self {
        let Ok(url) = url::Url::parse(url.trim()) else {
            return WebhookFormat::Slack;
        };
        let discord_host = url.host_str().is_some_and(|host| {
            let host = host.to_ascii_lowercase();
            ["discord.com", "discordapp.com"]
                .iter()
                .any(|domain| host == *domain || host.ends_with(&format!(".{domain}")))
        });
        if discord_host && url.path().contains("/api/webhooks") {
            WebhookFormat::Discord
        } else {
            WebhookFormat::Slack
        }
    }
}

/// One alert message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: AlertKind,
    pub title: String,
    pub lines: Vec<String>,
}

impl Message {
    fn new(kind: AlertKind, title: impl Into<String>) -> Self {
        Self {
            kind,
            title: title.into(),
            lines: Vec::new(),
        }
    }

    fn line(mut self, line: impl Into<String>) -> Self {
        self.lines.push(line.into());
        self
    }

    fn link(self, link: Option<String>) -> Self {
        match link {
            Some(link) => self.line(link),
            None => self,
        }
    }

    /// The message as text in `format`, within the tool's length limit.
    pub fn text(&self, format: WebhookFormat) -> String {
        let bold = match format {
            WebhookFormat::Slack => "*",
            WebhookFormat::Discord => "**",
        };
        let mut text = format!("{bold}{}{bold}", self.title);
        for line in &self.lines {
            text.push('\n');
            text.push_str(line);
        }
        match format {
            // Slack reads `<…>` as links and mentions (`<!channel>`), `&` as
            // an entity; nothing in our messages uses them.
            WebhookFormat::Slack => truncate(
                &text
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    // A quote marker at the start of a line stays a quote.
                    .replace("\n&gt; ", "\n> "),
                SLACK_MAX_CHARS,
            ),
            WebhookFormat::Discord => truncate(&text, DISCORD_MAX_CHARS),
        }
    }

    /// The JSON body to POST.
    pub fn body(&self, format: WebhookFormat) -> Value {
        let text = self.text(format);
        match format {
            WebhookFormat::Slack => json!({ "text": text }),
            WebhookFormat::Discord => json!({
                "content": text,
                "username": "Roundhouse",
                "allowed_mentions": { "parse": [] },
            }),
        }
    }
}

/// Where a job can be looked at: `{ROUNDHOUSE_URL}/api/jobs/{id}`.
fn job_link(base: Option<&str>, id: impl std::fmt::Display) -> Option<String> {
    base.map(|base| format!("{}/api/jobs/{id}", base.trim_end_matches('/')))
}

fn dashboard_link(base: Option<&str>) -> Option<String> {
    base.map(|base| format!("Dashboard: {}/admin/queues", base.trim_end_matches('/')))
}

/// One job that failed for good.
pub fn job_failed(job: &FailedJob, base: Option<&str>) -> Message {
    Message::new(AlertKind::JobFailed, "🚨 Roundhouse: job failed for good")
        .line(format!(
            "Job {} (type {}, queue {}) failed after {}.",
            code(&job.id.to_string()),
            code(&job.job_type),
            code(&job.queue),
            plural(i64::from(job.attempts), "attempt", "attempts"),
        ))
        .line(format!("> {}", error_excerpt(job.error.as_deref())))
        .link(job_link(base, job.id))
}

/// Many jobs that failed for good in one window: `total` of them, by queue
/// and type, with the first few errors.
pub fn jobs_failed(
    total: i64,
    window_seconds: f64,
    groups: &[FailureGroup],
    first: &[FailedJob],
    base: Option<&str>,
) -> Message {
    let mut message = Message::new(
        AlertKind::JobFailed,
        format!(
            "🚨 Roundhouse: {} jobs failed for good in the last {}",
            thousands(total),
            duration(window_seconds)
        ),
    );
    for group in groups.iter().take(MAX_LISTED) {
        message = message.line(format!(
            "• {} in queue {} (type {})",
            thousands(group.count),
            code(&group.queue),
            code(&group.job_type)
        ));
    }
    if groups.len() > MAX_LISTED {
        let rest: i64 = groups[MAX_LISTED..].iter().map(|g| g.count).sum();
        message = message.line(format!(
            "• {} more in {} other queue/type pairs",
            thousands(rest),
            groups.len() - MAX_LISTED
        ));
    }
    if !first.is_empty() {
        message = message.line("First errors:");
        for job in first {
            message = message.line(format!(
                "• {}: {}",
                code(&job.id.to_string()),
                error_excerpt(job.error.as_deref())
            ));
        }
    }
    message.link(dashboard_link(base))
}

/// One job running longer than its queue's threshold.
pub fn job_running_long(job: &LongRunningJob, base: Option<&str>) -> Message {
    Message::new(
        AlertKind::JobRunningLong,
        format!(
            "⏳ Roundhouse: job running longer than {}",
            duration(job.threshold_seconds)
        ),
    )
    .line(format!(
        "Job {} (type {}, queue {}) has been running for {} (attempt {} on worker {}).",
        code(&job.id.to_string()),
        code(&job.job_type),
        code(&job.queue),
        duration(job.running_seconds),
        job.attempts,
        code(job.worker_id.as_deref().unwrap_or("?")),
    ))
    .link(job_link(base, job.id))
}

/// Many jobs running longer than their thresholds, found in one pass.
pub fn jobs_running_long(jobs: &[&LongRunningJob], base: Option<&str>) -> Message {
    let mut by_queue: Vec<(&str, f64, i64)> = Vec::new();
    for job in jobs {
        match by_queue
            .iter_mut()
            .find(|(queue, _, _)| *queue == job.queue)
        {
            Some(entry) => entry.2 += 1,
            None => by_queue.push((&job.queue, job.threshold_seconds, 1)),
        }
    }
    by_queue.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(b.0)));
    let mut message = Message::new(
        AlertKind::JobRunningLong,
        format!(
            "⏳ Roundhouse: {} jobs running longer than their queue's threshold",
            thousands(jobs.len() as i64)
        ),
    );
    for (queue, threshold, count) in by_queue.iter().take(MAX_LISTED) {
        message = message.line(format!(
            "• {} in queue {} (threshold {})",
            thousands(*count),
            code(queue),
            duration(*threshold)
        ));
    }
    if by_queue.len() > MAX_LISTED {
        message = message.line(format!(
            "• and more in {} other queues",
            by_queue.len() - MAX_LISTED
        ));
    }
    if let Some(longest) = jobs
        .iter()
        .max_by(|a, b| a.running_seconds.total_cmp(&b.running_seconds))
    {
        message = message.line(format!(
            "Longest: {} (type {}) running for {}",
            code(&longest.id.to_string()),
            code(&longest.job_type),
            duration(longest.running_seconds)
        ));
    }
    message.link(dashboard_link(base))
}

/// Workers whose leases the reaper expired.
pub fn workers_lost(workers: &[&LostWorker]) -> Message {
    let jobs: i64 = workers.iter().map(|w| w.jobs).sum();
    let failed: i64 = workers.iter().map(|w| w.failed).sum();
    let title = if workers.len() == 1 {
        "💀 Roundhouse: worker lost".to_owned()
    } else {
        format!("💀 Roundhouse: {} workers lost", workers.len())
    };
    let mut outcome = format!(
        "Their leases expired on {}; the jobs went back to their queues",
        plural(jobs, "job", "jobs")
    );
    if failed > 0 {
        outcome.push_str(&format!(
            " ({} failed: it was their last attempt)",
            thousands(failed)
        ));
    }
    outcome.push('.');
    let mut message = Message::new(AlertKind::WorkerLost, title).line(outcome);
    for worker in workers.iter().take(MAX_LISTED) {
        message = message.line(format!(
            "• {}: {}",
            code(&worker.worker_id),
            plural(worker.jobs, "job", "jobs")
        ));
    }
    if workers.len() > MAX_LISTED {
        message = message.line(format!("• and {} more", workers.len() - MAX_LISTED));
    }
    message.line("A worker that is killed, runs out of memory or loses the database stops renewing its leases.")
}

/// Queues that started backing up.
pub fn queues_backing_up(queues: &[&QueueBacklog], base: Option<&str>) -> Message {
    let title = if queues.len() == 1 {
        format!(
            "⚠️ Roundhouse: queue {} is backing up",
            code(&queues[0].queue)
        )
    } else {
        format!("⚠️ Roundhouse: {} queues are backing up", queues.len())
    };
    let mut message = Message::new(AlertKind::QueueBacklog, title);
    for queue in queues {
        message = message.line(format!(
            "• {}: the oldest waiting job was queued {} ago (threshold {}); {}{} waiting",
            code(&queue.queue),
            duration(queue.oldest_seconds),
            duration(queue.threshold_seconds),
            if queue.waiting >= QueueBacklog::COUNT_CAP {
                "at least "
            } else {
                ""
            },
            thousands(queue.waiting),
        ));
    }
    message
        .line("Are workers running, consuming these queues and keeping up?")
        .link(dashboard_link(base))
}

/// Queues that were backing up and no longer are.
pub fn queues_recovered(queues: &[String]) -> Message {
    let names: Vec<String> = queues.iter().map(|q| code(q)).collect();
    Message::new(
        AlertKind::QueueRecovered,
        format!("✅ Roundhouse: {} recovered", names.join(", ")),
    )
    .line("No job waits there longer than the threshold now (or the queue was paused).")
}

/// The note that the rate limit held `counts` (kind, number) back.
pub fn suppressed(counts: &[(String, i64)], max_per_hour: u32) -> Message {
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let detail: Vec<String> = counts
        .iter()
        .map(|(kind, n)| format!("{} {}", thousands(*n), kind))
        .collect();
    Message::new(
        AlertKind::Suppressed,
        format!(
            "🔕 Roundhouse: {} suppressed",
            plural(total, "alert was", "alerts were")
        ),
    )
    .line(format!(
        "The rate limit (ALERT_MAX_PER_HOUR={max_per_hour}) held back: {}.",
        detail.join(", ")
    ))
    .line("The dashboard and the logs have the details.")
}

/// `value` as inline code; backticks and line breaks cannot end it early.
fn code(value: &str) -> String {
    let clean: String = value
        .chars()
        .map(|c| match c {
            '`' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    format!("`{}`", clean.trim())
}

/// The first `ERROR_EXCERPT_CHARS` of a job's error, as code.
fn error_excerpt(error: Option<&str>) -> String {
    match error.map(str::trim).filter(|e| !e.is_empty()) {
        Some(error) => code(&truncate(error, ERROR_EXCERPT_CHARS)),
        None => "(no error message)".to_owned(),
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max_chars - 1).collect();
    cut.push('…');
    cut
}

/// `1234567` → `1,234,567`.
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn plural(n: i64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{} {many}", thousands(n))
    }
}

/// `42` → `42 s`, `420` → `7 min`, `5400` → `1 h 30 min`, `183600` → `2 d 3 h`.
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => match (s % 3600) / 60 {
            0 => format!("{} h", s / 3600),
            m => format!("{} h {m} min", s / 3600),
        },
        _ => match (s % 86_400) / 3600 {
            0 => format!("{} d", s / 86_400),
            h => format!("{} d {h} h", s / 86_400),
        },
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn failed(error: &str) -> FailedJob {
        FailedJob {
            id: Uuid::nil(),
            queue: "data_sync".into(),
            job_type: "data_sync".into(),
            attempts: 3,
            error: Some(error.into()),
            completed_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn discord_is_detected_from_its_webhook_urls_and_everything_else_is_slack() {
        for url in [
            "https://discord.com/api/webhooks/123/abc",
            "https://discordapp.com/api/webhooks/123/abc",
            "https://ptb.discord.com/api/webhooks/123/abc?wait=true",
            "https://DISCORD.com/api/webhooks/123/abc",
        ] {
            assert_eq!(WebhookFormat::detect(url), WebhookFormat::Discord, "{url}");
        }
        for url in [
            "https://hooks.slack.com/services/T0/B0/xyz",
            "https://mattermost.example.com/hooks/xyz",
            "https://discord.com/channels/123",
            "https://discord.com.evil.example/api/webhooks/1/a",
            "https://notdiscord.com/api/webhooks/1/a",
            "http://127.0.0.1:9000/api/webhooks/1/a",
            "not a url",
        ] {
            assert_eq!(WebhookFormat::detect(url), WebhookFormat::Slack, "{url}");
        }
    }

    #[test]
    fn slack_gets_text_and_discord_gets_content_with_a_username_and_no_mentions() {
        let message = job_failed(&failed("boom"), Some("https://rh.example.com/"));
        let slack = message.body(WebhookFormat::Slack);
        let text = slack["text"].as_str().unwrap();
        assert!(
            text.starts_with("*🚨 Roundhouse: job failed for good*\n"),
            "{text}"
        );
        assert!(
            text.contains("https://rh.example.com/api/jobs/00000000-0000-0000-0000-000000000000")
        );
        assert!(text.contains("failed after 3 attempts"));
        assert!(slack.get("content").is_none());

        let discord = message.body(WebhookFormat::Discord);
        let content = discord["content"].as_str().unwrap();
        assert!(content.starts_with("**🚨 Roundhouse: job failed for good**\n"));
        assert_eq!(discord["username"], "Roundhouse");
        assert_eq!(discord["allowed_mentions"]["parse"], json!([]));
        assert!(discord.get("text").is_none());
    }

    #[test]
    fn a_jobs_error_cannot_mention_link_or_break_out_of_its_code_span() {
        let message = job_failed(
            &failed("<!channel> `rm -rf` @everyone\n<http://x|y> & more"),
            None,
        );
        let slack = message.text(WebhookFormat::Slack);
        assert!(
            !slack.contains("<!channel>") && !slack.contains("<http"),
            "{slack}"
        );
        assert!(
            slack.contains("&lt;!channel&gt; 'rm -rf' @everyone"),
            "{slack}"
        );
        assert!(
            slack.contains("\n> `"),
            "the quote survives escaping: {slack}"
        );
        let discord = message.text(WebhookFormat::Discord);
        assert_eq!(discord.matches('`').count() % 2, 0, "{discord}");
    }

    #[test]
    fn long_errors_are_excerpted_and_messages_fit_discords_limit() {
        let message = job_failed(&failed(&"x".repeat(10_000)), None);
        assert!(message.text(WebhookFormat::Slack).len() < 1000);
        let groups: Vec<FailureGroup> = (0..200)
            .map(|i| FailureGroup {
                queue: format!("queue_{i}_{}", "q".repeat(50)),
                job_type: "t".repeat(60),
                count: 5,
            })
            .collect();
        let first: Vec<FailedJob> = (0..3).map(|_| failed(&"e".repeat(5000))).collect();
        let summary = jobs_failed(1000, 10.0, &groups, &first, None);
        assert!(summary.text(WebhookFormat::Discord).chars().count() <= DISCORD_MAX_CHARS);
    }

    #[test]
    fn a_burst_summary_states_the_count_and_the_biggest_groups() {
        let groups = [
            FailureGroup {
                queue: "x".into(),
                job_type: "y".into(),
                count: 990,
            },
            FailureGroup {
                queue: "z".into(),
                job_type: "w".into(),
                count: 10,
            },
        ];
        let text =
            jobs_failed(1000, 12.4, &groups, &[failed("boom")], None).text(WebhookFormat::Slack);
        assert!(
            text.contains("1,000 jobs failed for good in the last 12 s"),
            "{text}"
        );
        assert!(text.contains("• 990 in queue `x` (type `y`)"), "{text}");
        assert!(text.contains("First errors:"), "{text}");
    }

    #[test]
    fn numbers_and_durations_read_naturally() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(duration(42.2), "42 s");
        assert_eq!(duration(300.0), "5 min");
        assert_eq!(duration(5400.0), "1 h 30 min");
        assert_eq!(duration(14_400.0), "4 h");
        assert_eq!(duration(183_600.0), "2 d 3 h");
        assert_eq!(plural(1, "attempt", "attempts"), "1 attempt");
    }
}
