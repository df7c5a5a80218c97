//! `tail`: follow a job's events until it ends.
//!
//! The events come from `GET /api/jobs/{id}/events` (SSE: `id:` the event id,
//! `event:` its kind, `data:` `{id, kind, attempt, data, createdAt}`; the
//! stream ends after the terminal status). An API without that endpoint
//! answers 404: then the job is polled every 500 ms and its status and
//! progress changes are shown as the same events would be.

use std::io::IsTerminal;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::client::{Api, check};
use crate::error::CliError;

const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How the events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A progress bar on a terminal, log lines printed above it.
    Bar,
    /// One line per event (output that is not a terminal).
    Lines,
    /// One JSON event per line.
    Json,
    /// Nothing (`enqueue --wait --json` prints only the final job).
    Quiet,
}

impl Style {
    /// The style for `--json` or not, given where the bar would be drawn.
    pub fn detect(json: bool) -> Self {
        if json {
            Self::Json
        } else if std::io::stderr().is_terminal() {
            Self::Bar
        } else {
            Self::Lines
        }
    }
}

/// Whether a job with `status` is done for good.
pub fn is_terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled")
}

/// Follows job `id` until it ends; returns the final job.
pub async fn follow(api: &Api, id: &str, style: Style) -> Result<Value, CliError> {
    let mut view = View::new(style);
    let followed = match follow_events(api, id, &mut view).await {
        Ok(Followed::Ended) => Ok(()),
        Ok(Followed::NoEndpoint) => poll(api, id, &mut view).await,
        Err(error) => Err(error),
    };
    let job = match followed {
        Ok(()) => api.get(&job_path(id), &[]).await,
        Err(error) => Err(error),
    };
    view.finish(job.as_ref().ok());
    job
}

fn job_path(id: &str) -> String {
    format!("api/jobs/{id}")
}

enum Followed {
    Ended,
    NoEndpoint,
}

/// Reads the event stream, reconnecting with `Last-Event-ID` if it breaks
/// before the job ended.
async fn follow_events(api: &Api, id: &str, view: &mut View) -> Result<Followed, CliError> {
    let mut last_id: Option<String> = None;
    let mut connected = false;
    loop {
        let mut request = api
            .request(
                Method::GET,
                api.url(&format!("{}/events", job_path(id)), &[]),
            )
            .header(header::ACCEPT, "text/event-stream");
        if let Some(last_id) = &last_id {
            request = request.header("Last-Event-ID", last_id);
        }
        let response = api.send(request).await?;
        if !connected && response.status() == StatusCode::NOT_FOUND {
            // Either the endpoint is missing or the job is: polling tells which.
            return Ok(Followed::NoEndpoint);
        }
        let response = check(response).await?;
        let is_stream = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !connected && !is_stream {
            return Ok(Followed::NoEndpoint);
        }
        connected = true;
        let mut events = response.bytes_stream().eventsource();
        while let Some(Ok(event)) = events.next().await {
            if !event.id.is_empty() {
                last_id = Some(event.id.clone());
            }
            let body: Value =
                serde_json::from_str(&event.data).unwrap_or_else(|_| json!({ "data": event.data }));
            let kind = match event.event.as_str() {
                "" | "message" => body["kind"].as_str().unwrap_or("message").to_owned(),
                kind => kind.to_owned(),
            };
            view.event(&kind, &body);
            if kind == "status" && body["data"]["status"].as_str().is_some_and(is_terminal) {
                return Ok(Followed::Ended);
            }
        }
        // The stream ended (or broke) without a terminal status: the job may
        // have ended between two events, or the connection dropped.
        let job = api.get(&job_path(id), &[]).await?;
        if job["status"].as_str().is_some_and(is_terminal) {
            return Ok(Followed::Ended);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls the job, showing status and progress changes as events.
async fn poll(api: &Api, id: &str, view: &mut View) -> Result<(), CliError> {
    let mut last_status: Option<(String, i64)> = None;
    let mut last_progress: Option<(i64, Value)> = None;
    loop {
        let job = api.get(&job_path(id), &[]).await?;
        let status = job["status"].as_str().unwrap_or_default().to_owned();
        let attempt = job["attempts"].as_i64().unwrap_or_default();
        let terminal = is_terminal(&status);
        let status_event = json!({
            "id": null,
            "kind": "status",
            "attempt": attempt,
            "data": { "status": status, "error": job["error"] },
        });
        let status_changed = last_status.as_ref() != Some(&(status.clone(), attempt));
        if status_changed && !terminal {
            view.event("status", &status_event);
        }
        let progress = (
            job["progress"].as_i64().unwrap_or_default(),
            job["progressMessage"].clone(),
        );
        let started = progress.0 > 0 || !progress.1.is_null();
        if started && last_progress.as_ref() != Some(&progress) {
            view.event(
                "progress",
                &json!({
                    "id": null,
                    "kind": "progress",
                    "attempt": attempt,
                    "data": { "progress": progress.0, "message": progress.1 },
                }),
            );
            last_progress = Some(progress);
        }
        if terminal {
            if status_changed {
                view.event("status", &status_event);
            }
            return Ok(());
        }
        last_status = Some((status, attempt));
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Shows events in one [`Style`].
struct View {
    style: Style,
    bar: Option<ProgressBar>,
    last_progress: Option<(i64, String)>,
}

impl View {
    fn new(style: Style) -> Self {
        let bar = (style == Style::Bar).then(|| {
            let bar = ProgressBar::new(100);
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{bar:40}] {pos:>3}% {wide_msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self {
            style,
            bar,
            last_progress: None,
        }
    }

    /// Prints a line above the bar (or plainly, without one).
    fn line(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    /// Shows one event `{id, kind, attempt, data, createdAt}` of `kind`.
    fn event(&mut self, kind: &str, event: &Value) {
        match self.style {
            Style::Quiet => return,
            Style::Json => {
                println!("{event}");
                return;
            }
            Style::Bar | Style::Lines => {}
        }
        let data = &event["data"];
        match kind {
            "progress" => {
                let percent = data["progress"].as_i64().unwrap_or_default().clamp(0, 100);
                let message = data["message"].as_str().unwrap_or_default().to_owned();
                let progress = (percent, message);
                if self.last_progress.as_ref() == Some(&progress) {
                    return;
                }
                match &self.bar {
                    Some(bar) => {
                        bar.set_position(percent as u64);
                        bar.set_message(progress.1.clone());
                    }
                    None => self.line(format!("progress {percent:>3}% {}", progress.1).trim_end()),
                }
                self.last_progress = Some(progress);
            }
            "log" => self.line(&crate::output::text(&data["message"])),
            "chunk" => self.line(&crate::output::text(&data["content"])),
            "status" => {
                let status = data["status"].as_str().unwrap_or("unknown");
                let mut line = format!("status {status}");
                if let Some(attempt) = event["attempt"].as_i64().filter(|a| *a > 0) {
                    line.push_str(&format!(" (attempt {attempt})"));
                }
                if let Some(reason) = data["reason"].as_str() {
                    line.push_str(&format!(": {reason}"));
                } else if let Some(error) = data["error"].as_str() {
                    line.push_str(&format!(": {error}"));
                }
                if status == "processing" {
                    // A new attempt starts from nothing.
                    self.last_progress = None;
                    if let Some(bar) = &self.bar {
                        bar.set_position(0);
                        bar.set_message("");
                    }
                }
                self.line(&line);
            }
            other => self.line(&format!("{other} {data}")),
        }
    }

    /// Clears the bar and prints how the job ended.
    fn finish(&mut self, job: Option<&Value>) {
        if let Some(bar) = self.bar.take() {
            if job.is_some_and(|job| job["status"] == "completed") {
                bar.set_position(100);
            }
            bar.finish_and_clear();
        }
        if !matches!(self.style, Style::Bar | Style::Lines) {
            return;
        }
        let Some(job) = job else { return };
        let id = crate::output::text(&job["id"]);
        match job["status"].as_str().unwrap_or_default() {
            "completed" => println!("job {id} completed"),
            "failed" => println!(
                "job {id} failed: {}",
                job["error"].as_str().unwrap_or("no error recorded")
            ),
            status => println!("job {id} {status}"),
        }
    }
}
