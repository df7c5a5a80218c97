//! Human output: tables and one-line summaries of the API's JSON.

use comfy_table::{LineStyle, Table, TableStyle};
use serde_json::Value;

/// As `kubectl get` and `docker ps` print: a rule under the header, nothing else.
const STYLE: TableStyle =
    TableStyle::new().header_separator(LineStyle::none().fill('─').junction('─'));

/// A table with `header`, in the CLI's one style.
fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_style(STYLE);
    table.set_header(header.iter().copied());
    table
}

/// `table` as text, without the padding at the ends of its lines.
fn render(table: &Table) -> String {
    table
        .lines()
        .map(|line| line.trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `value` as a cell: strings bare, null empty, the rest as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A timestamp cell: RFC 3339 cut to the second, without the `T`.
fn time(value: &Value) -> String {
    let text = text(value);
    match text.get(..19) {
        Some(head) => head.replacen('T', " ", 1),
        None => text,
    }
}

/// Jobs, one row each.
pub fn jobs(jobs: &[Value]) -> String {
    let mut table = table(&[
        "ID", "TYPE", "QUEUE", "STATUS", "PROGRESS", "ATTEMPTS", "CREATED",
    ]);
    for job in jobs {
        table.add_row([
            text(&job["id"]),
            text(&job["jobType"]),
            text(&job["queue"]),
            text(&job["status"]),
            format!("{}%", text(&job["progress"])),
            format!("{}/{}", text(&job["attempts"]), max_attempts(job)),
            time(&job["createdAt"]),
        ]);
    }
    render(&table)
}

fn max_attempts(job: &Value) -> String {
    job["maxRetries"]
        .as_i64()
        .map(|retries| (retries + 1).to_string())
        .unwrap_or_default()
}

/// One job, one field a row.
pub fn job(job: &Value) -> String {
    let mut table = table(&["FIELD", "VALUE"]);
    let fields = [
        ("id", "id"),
        ("type", "jobType"),
        ("queue", "queue"),
        ("status", "status"),
        ("user", "userId"),
        ("priority", "priority"),
        ("progress", "progress"),
        ("message", "progressMessage"),
        ("error", "error"),
        ("worker", "workerId"),
        ("idempotency key", "idempotencyKey"),
        ("schedule", "scheduleId"),
    ];
    for (name, key) in fields {
        if !job[key].is_null() {
            table.add_row([name.to_owned(), text(&job[key])]);
        }
    }
    table.add_row([
        "attempts".to_owned(),
        format!("{}/{}", text(&job["attempts"]), max_attempts(job)),
    ]);
    for (name, key) in [
        ("created", "createdAt"),
        ("run at", "runAt"),
        ("started", "startedAt"),
        ("completed", "completedAt"),
    ] {
        if !job[key].is_null() {
            table.add_row([name.to_owned(), time(&job[key])]);
        }
    }
    table.add_row(["payload".to_owned(), job["payload"].to_string()]);
    if !job["result"].is_null() {
        table.add_row(["result".to_owned(), job["result"].to_string()]);
    }
    render(&table)
}

/// `GET /api/queues/stats`.
pub fn queues(queues: &[Value]) -> String {
    let mut table = table(&[
        "QUEUE",
        "WAITING",
        "SCHEDULED",
        "ACTIVE",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "PAUSED",
        "CONCURRENCY",
        "RATE/S",
        "AVG MS",
    ]);
    for queue in queues {
        table.add_row([
            text(&queue["name"]),
            text(&queue["waiting"]),
            text(&queue["scheduled"]),
            text(&queue["active"]),
            text(&queue["completed"]),
            text(&queue["failed"]),
            text(&queue["cancelled"]),
            if queue["paused"] == true { "yes" } else { "no" }.to_owned(),
            text(&queue["concurrency"]),
            queue["rate"]
                .as_f64()
                .map(|r| format!("{r:.2}"))
                .unwrap_or_default(),
            queue["avgDurationMs"]
                .as_f64()
                .map(|ms| format!("{ms:.0}"))
                .unwrap_or_default(),
        ]);
    }
    render(&table)
}

/// Schedules, one row each.
pub fn schedules(schedules: &[Value]) -> String {
    let mut table = table(&[
        "ID", "NAME", "CRON", "TIMEZONE", "JOB TYPE", "QUEUE", "ENABLED", "NEXT RUN",
    ]);
    for schedule in schedules {
        table.add_row([
            text(&schedule["id"]),
            text(&schedule["name"]),
            text(&schedule["cron"]),
            text(&schedule["timezone"]),
            text(&schedule["jobType"]),
            text(&schedule["queue"]),
            if schedule["enabled"] == true {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
            time(&schedule["nextRunAt"]),
        ]);
    }
    render(&table)
}
