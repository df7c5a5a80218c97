//! The notifications phase of `make bench`: a fan-out of N `notifications`
//! jobs of type `webhook` (templated message, signed POST) through the
//! release API and a release worker of its own (queue `notifications` only,
//! `ROUNDHOUSE_OUTBOUND_ALLOWLIST=127.0.0.1`), to a local fake receiver that
//! answers 200 at once and checks every signature.
//!
//! Measured: jobs/s from the first enqueue until every job is `completed` in
//! PostgreSQL, and what the receiver got (requests, distinct jobs, bad
//! signatures). Each job does everything a real one does: parse, render,
//! the SSRF check, the dedup lookup, the POST and the delivery record.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use axum::body::Bytes;
use axum::http::HeaderMap;
use roundhouse_db::Db;
use roundhouse_outbound::WebhookSigner;
use serde_json::{Value, json};

use crate::{TOKEN, spawn, stop, wait_healthy};

/// `NOTIFICATION_WEBHOOK_SECRET` of the benchmarked worker.
const SECRET: &str = "whsec_YmVuY2gtbm90aWZpY2F0aW9uLXNlY3JldC0wMTIz";
/// Jobs per batch request.
const BATCH: usize = 500;

/// What `--notification-*` ask for.
pub struct NotificationOptions {
    /// Webhook notification jobs.
    pub jobs: usize,
}

/// What the fake receiver saw.
#[derive(Default)]
struct Seen {
    requests: usize,
    bad_signatures: usize,
    /// `webhook-id`s: one per job (each job has one recipient).
    ids: HashSet<String>,
}

/// Runs the phase: a worker on `port` next to the API at `api`; returns the
/// `notifications` object of results.json.
pub async fn measure(
    bin_dir: &Path,
    env: &HashMap<String, String>,
    api: &str,
    db: &Db,
    port: u16,
    options: &NotificationOptions,
) -> anyhow::Result<Value> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let hook = receiver(seen.clone()).await?;
    let mut env = env.clone();
    for (name, value) in [
        ("WORKER_QUEUES", "notifications"),
        ("ROUNDHOUSE_OUTBOUND_ALLOWLIST", "127.0.0.1"),
        ("NOTIFICATION_WEBHOOK_SECRET", SECRET),
    ] {
        env.insert(name.to_owned(), value.to_owned());
    }
    let mut worker = spawn(bin_dir, "worker", &env, port)?;
    wait_healthy(&format!("http://127.0.0.1:{port}"), "notifications worker").await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()?;

    println!(
        "notifications: {} webhook jobs to a local receiver, batches of {BATCH}",
        options.jobs
    );
    let begin = Instant::now();
    let mut sent = 0;
    while sent < options.jobs {
        let size = BATCH.min(options.jobs - sent);
        let jobs: Vec<Value> = (sent..sent + size)
            .map(|n| {
                json!({
                    "jobType": "notifications",
                    "payload": {
                        "type": "webhook",
                        "recipient": hook,
                        "subject": "Order {{ order }}",
                        "message": "Order {{ order }} has shipped.",
                        "data": {"order": n},
                        "variables": {"order": n},
                    }
                })
            })
            .collect();
        let response = http
            .post(format!("{api}/api/jobs/batch"))
            .bearer_auth(TOKEN)
            .json(&json!({"jobs": jobs}))
            .send()
            .await?;
        if response.status() != 202 {
            bail!(
                "notifications batch answered {}: {}",
                response.status(),
                response.text().await?
            );
        }
        sent += size;
    }
    let enqueued = begin.elapsed();
    let deadline = begin + Duration::from_secs(900);
    loop {
        let mut pending = 0;
        for status in ["queued", "scheduled", "processing"] {
            pending += db.count_jobs("notifications", status).await?;
        }
        if pending == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{pending} notification jobs still pending after 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let elapsed = begin.elapsed();
    let completed = db.count_jobs("notifications", "completed").await?;
    let failed = db.count_jobs("notifications", "failed").await?;
    stop(&mut worker).await;

    let seen = seen.lock().expect("the receiver's lock");
    let results = json!({
        "jobs": options.jobs,
        "batchSize": BATCH,
        "enqueueSeconds": enqueued.as_secs_f64(),
        "endToEndSeconds": elapsed.as_secs_f64(),
        "jobsPerSecond": options.jobs as f64 / elapsed.as_secs_f64(),
        "completed": completed,
        "failed": failed,
        "received": seen.requests,
        "distinctJobs": seen.ids.len(),
        "badSignatures": seen.bad_signatures,
    });
    println!("  {results}");
    if completed as usize != options.jobs || seen.ids.len() != options.jobs {
        bail!(
            "notifications: {completed} jobs completed, {failed} failed, {} distinct deliveries of {}",
            seen.ids.len(),
            options.jobs
        );
    }
    if seen.bad_signatures > 0 {
        bail!(
            "notifications: {} deliveries had a bad signature",
            seen.bad_signatures
        );
    }
    Ok(results)
}

/// Serves `POST /hook` on a free port of 127.0.0.1, verifying each
/// request's Standard Webhooks signature; returns the hook's URL.
async fn receiver(seen: Arc<Mutex<Seen>>) -> anyhow::Result<String> {
    let signer = WebhookSigner::from_secret(SECRET)?;
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let id = header("webhook-id");
            let valid = signer
                .verify(
                    &id,
                    &header("webhook-timestamp"),
                    &header("webhook-signature"),
                    &body,
                    chrono::Utc::now().timestamp(),
                    300,
                )
                .is_ok();
            let mut seen = seen.lock().expect("the receiver's lock");
            seen.requests += 1;
            if !valid {
                seen.bad_signatures += 1;
            }
            seen.ids.insert(id);
            async {}
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// The rows of results.md.
pub fn table_rows(results: &Value) -> Vec<(String, String)> {
    vec![(
        "notifications: webhook fan-out, end to end".to_owned(),
        format!(
            "{:.0} jobs/s ({} jobs, {} received, {} bad signatures)",
            results["jobsPerSecond"].as_f64().unwrap_or(0.0),
            results["jobs"].as_u64().unwrap_or(0),
            results["received"].as_u64().unwrap_or(0),
            results["badSignatures"].as_u64().unwrap_or(0),
        ),
    )]
}
