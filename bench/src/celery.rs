//! The Celery comparison of `make bench`: the same no-op workload through
//! Celery on the same RabbitMQ and PostgreSQL server, run by
//! `scripts/bench-celery.sh` (which makes a venv with pinned packages and
//! runs `bench/celery/run.py`). Celery runs after every Roundhouse phase, with
//! the Roundhouse services stopped, so that each has the machine to itself.
//!
//! The script exits with 3 when no venv can be made or the packages cannot be
//! installed; the bench then records why in `celery.skipped` and goes on.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};

/// What `--celery-*` ask for.
pub struct CeleryOptions {
    /// Tasks enqueued one `.delay()` at a time.
    pub jobs: usize,
    /// Client threads for the single enqueues (the Roundhouse clients).
    pub clients: usize,
    /// Tasks enqueued as `group`s.
    pub batch_jobs: usize,
    /// Signatures per `group` (the Roundhouse batch size).
    pub batch_size: usize,
    /// Threads sending groups (the Roundhouse batch senders).
    pub batch_senders: usize,
    /// Prefork pool processes.
    pub concurrency: usize,
}

/// Runs the script; returns the `celery` object of results.json, which has
/// `skipped` (and nothing else) when Celery did not run.
pub async fn measure(
    script: &Path,
    admin_url: &str,
    rabbitmq_url: &str,
    options: &CeleryOptions,
) -> Value {
    println!(
        "celery: {} single and {} batch no-op tasks, prefork x{}",
        options.jobs, options.batch_jobs, options.concurrency
    );
    match run(script, admin_url, rabbitmq_url, options).await {
        Ok(value) => value,
        Err(reason) => {
            println!("  celery skipped: {reason}");
            json!({ "skipped": reason })
        }
    }
}

async fn run(
    script: &Path,
    admin_url: &str,
    rabbitmq_url: &str,
    options: &CeleryOptions,
) -> Result<Value, String> {
    let mut command = std::process::Command::new(script);
    command
        .args([
            "--jobs",
            &options.jobs.to_string(),
            "--clients",
            &options.clients.to_string(),
            "--batch-jobs",
            &options.batch_jobs.to_string(),
            "--batch-size",
            &options.batch_size.to_string(),
            "--batch-senders",
            &options.batch_senders.to_string(),
            "--concurrency",
            &options.concurrency.to_string(),
        ])
        .env("BENCH_DATABASE_ADMIN_URL", admin_url)
        .env("RABBITMQ_URL", rabbitmq_url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let script = script.display().to_string();
    // Blocking I/O on threads of its own: nothing else runs meanwhile.
    let (status, stdout, last) = tokio::task::spawn_blocking(move || {
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {script}: {e}"))?;
        // Pass the script's progress through, keeping its last line: the
        // reason when it gives up.
        let stderr = child.stderr.take().expect("stderr is piped");
        let relay = std::thread::spawn(move || {
            let mut last = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                if !line.trim().is_empty() {
                    last = line;
                }
            }
            last
        });
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .expect("stdout is piped")
            .read_to_string(&mut stdout)
            .map_err(|e| format!("reading the script's output: {e}"))?;
        let status = child
            .wait()
            .map_err(|e| format!("waiting for the script: {e}"))?;
        let last = relay.join().unwrap_or_default();
        Ok::<_, String>((status, stdout, last))
    })
    .await
    .map_err(|e| format!("the Celery runner panicked: {e}"))??;
    match status.code() {
        Some(0) => {}
        Some(3) => return Err(last.trim_start_matches("bench-celery: ").to_owned()),
        _ => return Err(format!("the Celery run failed ({status}): {last}")),
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| "the Celery run printed no JSON".to_owned())?;
    let value: Value =
        serde_json::from_str(line).map_err(|e| format!("the Celery run's JSON: {e}"))?;
    println!(
        "  Celery {}: single {:.0} tasks/s, batch {:.0} tasks/s, worker RSS peak {:.1} MB",
        value["version"].as_str().unwrap_or("?"),
        value["single"]["jobsPerSecond"]
            .as_f64()
            .unwrap_or(f64::NAN),
        value["batch"]["jobsPerSecond"].as_f64().unwrap_or(f64::NAN),
        value["memory"]["peakRssMb"].as_f64().unwrap_or(f64::NAN),
    );
    Ok(value)
}

/// The `comparison` object of results.json: Roundhouse ÷ Celery.
pub fn comparison(results: &Value) -> Value {
    let celery = &results["celery"];
    if celery.get("skipped").is_some() || celery.is_null() {
        return Value::Null;
    }
    let ratio = |phase: &str| {
        let ours = results[phase]["jobsPerSecond"].as_f64().unwrap_or(f64::NAN);
        let theirs = celery[phase]["jobsPerSecond"].as_f64().unwrap_or(f64::NAN);
        ours / theirs
    };
    let peak = |name: &str| {
        results["memory"][name]["peakRssMb"]
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    json!({
        "singleRatio": ratio("single"),
        "batchRatio": ratio("batch"),
        "roundhouseApiPlusWorkerPeakRssMb": peak("api") + peak("worker"),
        "celeryWorkerPeakRssMb": celery["memory"]["peakRssMb"],
        "note": "jobs/s of Roundhouse ÷ tasks/s of Celery, each from the first enqueue until \
                 every job is completed in PostgreSQL; Celery's clients publish straight to \
                 RabbitMQ, Roundhouse's go through the api, hence api + worker for memory",
    })
}

/// The rows of the markdown table.
pub fn table_rows(results: &Value) -> Vec<(String, String)> {
    let celery = &results["celery"];
    if let Some(reason) = celery.get("skipped") {
        return vec![(
            "Celery comparison".to_owned(),
            format!("not run: {}", reason.as_str().unwrap_or("?")),
        )];
    }
    if celery.is_null() {
        return Vec::new();
    }
    let number = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let comparison = &results["comparison"];
    vec![
        (
            format!(
                "Celery {}, single `.delay()` ({} threads), end to end",
                celery["version"].as_str().unwrap_or("?"),
                celery["single"]["clients"]
            ),
            format!(
                "{:.0} tasks/s ({} tasks); Roundhouse {:.1}×",
                number(&celery["single"]["jobsPerSecond"]),
                celery["single"]["jobs"],
                number(&comparison["singleRatio"]),
            ),
        ),
        (
            format!(
                "Celery, `group`s of {} ({} threads), end to end",
                celery["batch"]["batchSize"], celery["batch"]["senders"]
            ),
            format!(
                "{:.0} tasks/s ({} tasks); Roundhouse {:.1}×",
                number(&celery["batch"]["jobsPerSecond"]),
                celery["batch"]["jobs"],
                number(&comparison["batchRatio"]),
            ),
        ),
        (
            format!(
                "Celery worker RSS (prefork ×{}, {} processes, summed)",
                celery["concurrency"], celery["memory"]["processes"]
            ),
            format!(
                "idle {:.1} MB, peak {:.1} MB (Roundhouse api + worker peak {:.1} MB)",
                number(&celery["memory"]["idleRssMb"]),
                number(&celery["memory"]["peakRssMb"]),
                number(&comparison["roundhouseApiPlusWorkerPeakRssMb"]),
            ),
        ),
    ]
}
