//! `make bench`: end-to-end throughput and latency of the real binaries.
//!
//! Starts release builds of roundhouse-api, -worker and -scheduler against a
//! fresh database and RabbitMQ prefix, then measures
//! 1. single enqueues: N `noop` jobs over HTTP from concurrent clients, until
//!    all are `completed` in PostgreSQL;
//! 2. batch enqueues: M jobs through `/api/jobs/batch`, until all are completed;
//! 3. enqueue→start latency at a fixed offered rate below saturation;
//! 4. cron tick lateness: every-second schedules for a minute, then 10,000
//!    schedules due at spread times (tick → job created, tick → job started);
//! 5. agents (`agents.rs`): time to first chunk through SSE and WebSocket,
//!    chunks/s of one stream, and many streamed runs at once, against the
//!    agent executor with the `dev` provider;
//! 6. each service's idle and peak RSS;
//! 7. RAG (`rag.rs`): a `rag_ingestion` of a 1,000-segment transcript against
//!    a fake embeddings server with a fixed latency, against its floor;
//! 8. notifications (`notifications.rs`): a fan-out of 10,000 signed webhook
//!    notification jobs to a local receiver, in jobs/s;
//! 9. Celery (`celery.rs`, unless `--no-celery`): the no-op workload of 1 and
//!    2 through Celery on the same RabbitMQ and PostgreSQL, and the ratios.
//!
//! Results go to `bench/results.json` and `bench/results.md`, the chart
//! (`chart.rs`) to `bench/chart.svg`, the services' `/metrics` to
//! `bench/out/`. `--chart-from bench/results.json` redraws the chart alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use roundhouse_db::{Db, PoolSettings, ScheduleSpec};
use serde_json::{Value, json};
use uuid::Uuid;

mod agents;
mod celery;
mod chart;
mod notifications;
mod rag;

const TOKEN: &str = "bench-service-token-0123456789abcdef";
/// Concurrent senders of batch requests (Roundhouse), and of `group`s (Celery).
const BATCH_SENDERS: usize = 4;

struct Options {
    single_jobs: usize,
    single_concurrency: usize,
    batch_jobs: usize,
    batch_size: usize,
    rate: u64,
    rate_seconds: u64,
    cron_schedules: usize,
    spread_schedules: usize,
    cron_seconds: u64,
    agents: agents::AgentOptions,
    notifications: notifications::NotificationOptions,
    rag: rag::RagOptions,
    /// Where results.json, results.md and chart.svg go; `/metrics` scrapes go
    /// to its `out/`.
    out: PathBuf,
    celery: bool,
    celery_jobs: usize,
    celery_batch_jobs: usize,
    chart_from: Option<PathBuf>,
}

const USAGE: &str = "\
roundhouse-bench [OPTIONS]   (run by `make bench`; defaults in brackets)
  --single-jobs N [20000]  --concurrency CLIENTS [64]
  --batch-jobs N [100000]  --batch-size N [500]
  --rate JOBS_PER_S [500]  --rate-seconds S [10]
  --cron-schedules N [10]  --spread-schedules N [10000]  --cron-seconds S [60]
  --agent-runs N [200]  --agent-concurrency N [500]  --agent-chunk-delay-ms MS [5]
  --notification-jobs N [10000]
  --rag-segments N [1000]  --rag-latency-ms MS [20]  --rag-batch N [16]
  --celery-jobs N [20000]  --celery-batch-jobs N [20000]  --no-celery
  --out DIR [bench/]: results.json, results.md, chart.svg (and out/ for /metrics)
  --chart-from RESULTS_JSON: only redraw DIR/chart.svg from a results.json
Environment: BENCH_DATABASE_ADMIN_URL, RABBITMQ_URL";

/// The width of the throughput-over-time bins of the chart.
const TIMELINE_BUCKET_SECONDS: f64 = 0.25;

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        single_jobs: 20_000,
        single_concurrency: 64,
        batch_jobs: 100_000,
        batch_size: 500,
        rate: 500,
        rate_seconds: 10,
        cron_schedules: 10,
        spread_schedules: 10_000,
        cron_seconds: 60,
        agents: agents::AgentOptions {
            runs: 200,
            concurrency: 500,
            chunk_delay_ms: 5,
        },
        notifications: notifications::NotificationOptions { jobs: 10_000 },
        rag: rag::RagOptions {
            segments: 1000,
            latency_ms: 20,
            batch: 16,
        },
        out: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        celery: true,
        celery_jobs: 20_000,
        celery_batch_jobs: 20_000,
        chart_from: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--help" || args[i] == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if args[i] == "--no-celery" {
            options.celery = false;
            i += 1;
            continue;
        }
        let value = args
            .get(i + 1)
            .with_context(|| format!("{} needs a value", args[i]))?;
        match args[i].as_str() {
            "--single-jobs" => options.single_jobs = value.parse()?,
            "--concurrency" => options.single_concurrency = value.parse()?,
            "--batch-jobs" => options.batch_jobs = value.parse()?,
            "--batch-size" => options.batch_size = value.parse()?,
            "--rate" => options.rate = value.parse()?,
            "--rate-seconds" => options.rate_seconds = value.parse()?,
            "--cron-schedules" => options.cron_schedules = value.parse()?,
            "--spread-schedules" => options.spread_schedules = value.parse()?,
            "--cron-seconds" => options.cron_seconds = value.parse()?,
            "--agent-runs" => options.agents.runs = value.parse()?,
            "--agent-concurrency" => options.agents.concurrency = value.parse()?,
            "--agent-chunk-delay-ms" => options.agents.chunk_delay_ms = value.parse()?,
            "--notification-jobs" => options.notifications.jobs = value.parse()?,
            "--rag-segments" => options.rag.segments = value.parse()?,
            "--rag-latency-ms" => options.rag.latency_ms = value.parse()?,
            "--rag-batch" => options.rag.batch = value.parse()?,
            "--out" => options.out = PathBuf::from(value),
            "--celery-jobs" => options.celery_jobs = value.parse()?,
            "--celery-batch-jobs" => options.celery_batch_jobs = value.parse()?,
            "--chart-from" => options.chart_from = Some(PathBuf::from(value)),
            other => bail!("unknown option {other}"),
        }
        i += 2;
    }
    Ok(options)
}

struct Service {
    name: &'static str,
    child: tokio::process::Child,
    idle_rss_kb: u64,
}

fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn spawn(
    bin_dir: &Path,
    name: &'static str,
    env: &HashMap<String, String>,
    port: u16,
) -> anyhow::Result<Service> {
    let binary = bin_dir.join(format!("roundhouse-{name}"));
    let child = tokio::process::Command::new(&binary)
        .envs(env)
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "start {} (run `cargo build --release --bins` first)",
                binary.display()
            )
        })?;
    Ok(Service {
        name,
        child,
        idle_rss_kb: 0,
    })
}

/// Waits (up to a minute) until the service at `base` answers `/health`.
async fn wait_healthy(base: &str, name: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if http
            .get(format!("{base}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the {name} did not become healthy");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops a service with SIGTERM, as a platform would, and waits for it.
async fn stop(service: &mut Service) {
    let pid = service.child.id().unwrap_or(0);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = tokio::time::timeout(Duration::from_secs(30), service.child.wait()).await;
    if !matches!(status, Ok(Ok(s)) if s.success()) {
        eprintln!("{} did not exit cleanly: {status:?}", service.name);
    }
}

/// Waits until `total` jobs of the `default` queue have completed. It counts
/// the jobs *not yet* completed (small, and served by partial indexes) so that
/// polling does not itself load PostgreSQL.
async fn wait_completed(db: &Db, total: i64, timeout: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut pending = 0;
        for status in ["queued", "scheduled", "processing"] {
            pending += db.count_jobs("default", status).await?;
        }
        if pending == 0 {
            let done = db.count_jobs("default", "completed").await?;
            if done >= total {
                return Ok(Instant::now());
            }
            bail!("only {done} of {total} jobs completed, none pending");
        }
        if Instant::now() > deadline {
            bail!("{pending} jobs still pending after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Creates `count` schedules of `noop` jobs in the `default` queue, `cron(i)`
/// giving each one's expression, waiting for their next tick.
async fn create_schedules(
    db: &Db,
    prefix: &str,
    count: usize,
    cron: impl Fn(usize) -> String,
) -> anyhow::Result<()> {
    let specs: Vec<ScheduleSpec> = (0..count)
        .map(|i| ScheduleSpec {
            name: format!("{prefix}-{i}"),
            cron: cron(i),
            timezone: "UTC".into(),
            queue: "default".into(),
            job_type: "noop".into(),
            payload: json!({}),
            priority: 0,
            max_retries: None,
            timeout_seconds: None,
            enabled: true,
            misfire_policy: "skip".into(),
            misfire_grace_seconds: 60,
            catch_up_limit: 100,
            jitter_seconds: 0,
        })
        .collect();
    futures::stream::iter(specs)
        .map(|spec| async move {
            let next = roundhouse_core::CronSchedule::parse(&spec.cron, &spec.timezone)?
                .next_after(chrono::Utc::now());
            db.create_schedule(Uuid::now_v7(), None, &spec, next)
                .await?;
            anyhow::Ok(())
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await
}

/// Runs the schedules made by `create` for `seconds`, then reports the tick
/// lateness of the jobs they fired.
async fn measure_cron(db: &Db, seconds: u64) -> anyhow::Result<Value> {
    let since = chrono::Utc::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    db.disable_all_schedules().await?;
    // Let the last fired jobs start.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows = db.tick_lateness_ms(since).await?;
    let mut fired: Vec<f64> = rows.iter().map(|r| r.0).collect();
    let mut dispatched: Vec<f64> = rows.iter().filter_map(|r| r.1).collect();
    let mut started: Vec<f64> = rows.iter().filter_map(|r| r.2).collect();
    fired.sort_by(|a, b| a.total_cmp(b));
    dispatched.sort_by(|a, b| a.total_cmp(b));
    started.sort_by(|a, b| a.total_cmp(b));
    Ok(json!({
        "seconds": seconds,
        "jobs": fired.len(),
        "firedP50Ms": percentile(&fired, 50.0),
        "firedP99Ms": percentile(&fired, 99.0),
        "firedMaxMs": fired.last().copied().unwrap_or(f64::NAN),
        "dispatchedP50Ms": percentile(&dispatched, 50.0),
        "dispatchedP99Ms": percentile(&dispatched, 99.0),
        "startedP50Ms": percentile(&started, 50.0),
        "startedP99Ms": percentile(&started, 99.0),
    }))
}

/// How busy all CPUs are over one second (0-100, from /proc/stat; null
/// where there is none): when the bench itself is idle, what else runs.
async fn cpu_busy_percent() -> Value {
    fn sample() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
        let total = fields.iter().take(8).sum();
        Some((idle, total))
    }
    let Some((idle0, total0)) = sample() else {
        return Value::Null;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let Some((idle1, total1)) = sample() else {
        return Value::Null;
    };
    let total = total1.saturating_sub(total0).max(1) as f64;
    json!(((1.0 - idle1.saturating_sub(idle0) as f64 / total) * 1000.0).round() / 10.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Jobs of the `default` queue created since `since`, counted per
/// `TIMELINE_BUCKET_SECONDS` bin of their `created_at` (enqueued) and of
/// their `completed_at` (completed), from `since`: one query after the phase.
async fn timeline(db: &Db, since: chrono::DateTime<chrono::Utc>) -> anyhow::Result<Value> {
    let rows: Vec<(i32, i64, i64)> = sqlx::query_as(
        r#"
        SELECT bucket, sum(enqueued)::int8, sum(completed)::int8
          FROM (SELECT floor(extract(epoch FROM created_at - $1)::float8 / $2)::int4 AS bucket,
                       1 AS enqueued, 0 AS completed
                  FROM jobs WHERE queue = 'default' AND created_at >= $1
                UNION ALL
                SELECT floor(extract(epoch FROM completed_at - $1)::float8 / $2)::int4, 0, 1
                  FROM jobs
                 WHERE queue = 'default' AND created_at >= $1 AND completed_at IS NOT NULL) t
         GROUP BY bucket
         ORDER BY bucket
        "#,
    )
    .bind(since)
    .bind(TIMELINE_BUCKET_SECONDS)
    .fetch_all(db.pool())
    .await?;
    let buckets = rows
        .iter()
        .map(|r| r.0.max(0) as usize + 1)
        .max()
        .unwrap_or(0);
    let mut enqueued = vec![0i64; buckets];
    let mut completed = vec![0i64; buckets];
    for (bucket, e, c) in rows {
        let bucket = bucket.max(0) as usize;
        enqueued[bucket] += e;
        completed[bucket] += c;
    }
    Ok(json!({
        "bucketSeconds": TIMELINE_BUCKET_SECONDS,
        "enqueued": enqueued,
        "completed": completed,
    }))
}

/// A histogram of sorted millisecond values in bins of equal width on a log
/// scale, ten per decade (the chart's latency panel).
fn log_histogram(sorted: &[f64]) -> Value {
    const PER_DECADE: f64 = 10.0;
    const FLOOR_MS: f64 = 0.01;
    let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else {
        return json!({ "edgesMs": [], "counts": [] });
    };
    let bin = |ms: f64| (ms.max(FLOOR_MS).log10() * PER_DECADE).floor() as i32;
    let (low, high) = (bin(*first), bin(*last));
    let mut counts = vec![0u64; (high - low + 1) as usize];
    for &ms in sorted {
        counts[(bin(ms) - low) as usize] += 1;
    }
    let edges: Vec<f64> = (low..=high + 1)
        .map(|k| 10f64.powf(f64::from(k) / PER_DECADE))
        .collect();
    json!({ "edgesMs": edges, "counts": counts })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    if let Some(from) = &options.chart_from {
        let results: Value = serde_json::from_str(
            &std::fs::read_to_string(from).with_context(|| format!("read {}", from.display()))?,
        )?;
        std::fs::create_dir_all(&options.out)?;
        let path = options.out.join("chart.svg");
        chart::draw(&path, &results)?;
        println!("{}", path.display());
        return Ok(());
    }
    let scratch = options.out.join("out");
    let busy_at_start = cpu_busy_percent().await;
    if busy_at_start.as_f64().is_some_and(|b| b > 25.0) {
        eprintln!(
            "warning: the CPUs are {busy_at_start} % busy with other work: expect lower figures"
        );
    }
    roundhouse_telemetry::init(roundhouse_config::LogFormat::Pretty, "warn");
    let admin = std::env::var("BENCH_DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let rabbitmq = std::env::var("RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let database = format!("rh_bench_{stamp}");
    roundhouse_db::create_database(&admin, &database).await?;
    let database_url = format!(
        "{}/{database}",
        &admin[..admin.rfind('/').expect("admin URL has a database")]
    );
    let db = Db::connect_lazy(&database_url, &PoolSettings::default())?;
    db.migrate().await?;

    let env: HashMap<String, String> = [
        ("DATABASE_URL", database_url.as_str()),
        ("RABBITMQ_URL", rabbitmq.as_str()),
        ("RABBITMQ_PREFIX", &format!("rhbench_{stamp}")),
        ("ROUNDHOUSE_SERVICE_TOKEN", TOKEN),
        ("LOG_LEVEL", "warn"),
        ("LOG_FORMAT", "json"),
        ("WORKER_QUEUES", "default"),
        ("WORKER_CONCURRENCY", "256"),
        ("DATABASE_MAX_CONNECTIONS", "16"),
        ("BATCH_MAX_JOBS", "1000"),
        ("ROUNDHOUSE_CONFIG", "/nonexistent/roundhouse.toml"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("bench binary has a directory")?
        .to_path_buf();
    let api_port = 18480;
    let mut services = vec![spawn(&bin_dir, "api", &env, api_port)?];
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let api = format!("http://127.0.0.1:{api_port}");
    wait_healthy(&api, "api").await?;
    services.push(spawn(&bin_dir, "worker", &env, api_port + 2)?);
    services.push(spawn(&bin_dir, "scheduler", &env, api_port + 3)?);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for service in &mut services {
        service.idle_rss_kb = proc_status(service.child.id().unwrap_or(0), "VmRSS:");
    }

    // 1. Single enqueues from concurrent clients.
    println!(
        "single enqueue: {} jobs, {} clients",
        options.single_jobs, options.single_concurrency
    );
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let begin = Instant::now();
    let begin_at = chrono::Utc::now();
    let clients: Vec<_> = (0..options.single_concurrency)
        .map(|_| {
            let http = http.clone();
            let next = next.clone();
            let url = format!("{api}/api/jobs/enqueue");
            let total = options.single_jobs;
            tokio::spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                    let response = http
                        .post(&url)
                        .bearer_auth(TOKEN)
                        .json(&json!({"jobType": "noop"}))
                        .send()
                        .await?;
                    if response.status() != 202 {
                        bail!("enqueue answered {}", response.status());
                    }
                }
                Ok(())
            })
        })
        .collect();
    for client in clients {
        client.await??;
    }
    let enqueued = begin.elapsed();
    let done = wait_completed(&db, options.single_jobs as i64, Duration::from_secs(600)).await?;
    let single_elapsed = done - begin;
    let mut single = json!({
        "jobs": options.single_jobs,
        "clients": options.single_concurrency,
        "enqueueSeconds": enqueued.as_secs_f64(),
        "enqueuePerSecond": options.single_jobs as f64 / enqueued.as_secs_f64(),
        "endToEndSeconds": single_elapsed.as_secs_f64(),
        "jobsPerSecond": options.single_jobs as f64 / single_elapsed.as_secs_f64(),
    });
    println!("  {single}");
    single["timeline"] = timeline(&db, begin_at).await?;

    // This machine may run PostgreSQL without autovacuum; stand in for it
    // between phases so that each phase starts from a similar table.
    db.vacuum_job_tables().await?;

    // 2. Batch enqueues.
    println!(
        "batch enqueue: {} jobs in batches of {}",
        options.batch_jobs, options.batch_size
    );
    let batches = options.batch_jobs.div_ceil(options.batch_size);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let begin = Instant::now();
    let begin_at = chrono::Utc::now();
    let senders: Vec<_> = (0..BATCH_SENDERS)
        .map(|_| {
            let http = http.clone();
            let next = next.clone();
            let url = format!("{api}/api/jobs/batch");
            let size = options.batch_size;
            tokio::spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < batches {
                    let jobs: Vec<Value> = (0..size).map(|_| json!({"jobType": "noop"})).collect();
                    let response = http
                        .post(&url)
                        .bearer_auth(TOKEN)
                        .json(&json!({"jobs": jobs}))
                        .send()
                        .await?;
                    if response.status() != 202 {
                        bail!("batch enqueue answered {}", response.status());
                    }
                }
                Ok(())
            })
        })
        .collect();
    for sender in senders {
        sender.await??;
    }
    let enqueued = begin.elapsed();
    let batch_total = batches * options.batch_size;
    let done = wait_completed(
        &db,
        (options.single_jobs + batch_total) as i64,
        Duration::from_secs(900),
    )
    .await?;
    let batch_elapsed = done - begin;
    let mut batch = json!({
        "jobs": batch_total,
        "batchSize": options.batch_size,
        "enqueueSeconds": enqueued.as_secs_f64(),
        "enqueuePerSecond": batch_total as f64 / enqueued.as_secs_f64(),
        "endToEndSeconds": batch_elapsed.as_secs_f64(),
        "jobsPerSecond": batch_total as f64 / batch_elapsed.as_secs_f64(),
    });
    println!("  {batch}");
    batch["senders"] = json!(BATCH_SENDERS);
    batch["timeline"] = timeline(&db, begin_at).await?;

    db.vacuum_job_tables().await?;

    // 3. Latency at a fixed offered rate.
    println!(
        "latency: {} jobs/s offered for {} s",
        options.rate, options.rate_seconds
    );
    let total = (options.rate * options.rate_seconds) as usize;
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / options.rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = Vec::with_capacity(total);
    for _ in 0..total {
        ticker.tick().await;
        let http = http.clone();
        let url = format!("{api}/api/jobs/enqueue");
        requests.push(tokio::spawn(async move {
            let body: Value = http
                .post(&url)
                .bearer_auth(TOKEN)
                .json(&json!({"jobType": "noop"}))
                .send()
                .await?
                .json()
                .await?;
            body["jobId"]
                .as_str()
                .context("no jobId")?
                .parse::<Uuid>()
                .map_err(anyhow::Error::from)
        }));
    }
    let mut ids = Vec::with_capacity(total);
    for request in requests {
        ids.push(request.await??);
    }
    wait_completed(
        &db,
        (options.single_jobs + batch_total + total) as i64,
        Duration::from_secs(300),
    )
    .await?;
    let mut delays = db.start_delays_ms(&ids).await?;
    delays.sort_by(|a, b| a.total_cmp(b));
    let mut latency = json!({
        "offeredPerSecond": options.rate,
        "jobs": total,
        "p50Ms": percentile(&delays, 50.0),
        "p90Ms": percentile(&delays, 90.0),
        "p99Ms": percentile(&delays, 99.0),
        "maxMs": delays.last().copied().unwrap_or(f64::NAN),
    });
    println!("  {latency}");
    latency["histogram"] = log_histogram(&delays);

    // 4. Cron: every-second schedules, then many schedules at spread times.
    println!(
        "cron: {} every-second schedules for {} s",
        options.cron_schedules, options.cron_seconds
    );
    create_schedules(&db, "every-second", options.cron_schedules, |_| {
        "* * * * * *".into()
    })
    .await?;
    let cron_every_second = measure_cron(&db, options.cron_seconds).await?;
    println!("  {cron_every_second}");
    db.vacuum_job_tables().await?;
    println!(
        "cron: {} schedules, each once a minute at its own second, for {} s",
        options.spread_schedules, options.cron_seconds
    );
    create_schedules(&db, "spread", options.spread_schedules, |i| {
        format!("{} * * * * *", i % 60)
    })
    .await?;
    let scheduler_rss_before_spread = services
        .iter()
        .find(|s| s.name == "scheduler")
        .map(|s| proc_status(s.child.id().unwrap_or(0), "VmRSS:"))
        .unwrap_or(0);
    let mut cron_spread = measure_cron(&db, options.cron_seconds).await?;
    let scheduler_rss = services
        .iter()
        .find(|s| s.name == "scheduler")
        .map(|s| proc_status(s.child.id().unwrap_or(0), "VmHWM:"))
        .unwrap_or(0);
    cron_spread["schedules"] = json!(options.spread_schedules);
    cron_spread["schedulerRssBeforeMb"] = json!(scheduler_rss_before_spread as f64 / 1024.0);
    cron_spread["schedulerPeakRssMb"] = json!(scheduler_rss as f64 / 1024.0);
    println!("  {cron_spread}");

    // 5. Agents, against the executor (started for this phase only).
    let agents = agents::measure(&bin_dir, &env, api_port + 1, &options.agents, &scratch).await?;

    // 7. RAG ingestion, with a worker of its own for the `rag_ingestion` queue.
    let rag = rag::measure(&bin_dir, &env, &api, api_port + 9, &options.rag).await?;

    // 8. Notifications: a webhook fan-out, with a worker of its own for the
    //    `notifications` queue.
    let notifications = notifications::measure(
        &bin_dir,
        &env,
        &api,
        &db,
        api_port + 10,
        &options.notifications,
    )
    .await?;

    // The services' own metrics, for a closer look.
    for (name, port) in [
        ("api", api_port),
        ("worker", api_port + 2),
        ("scheduler", api_port + 3),
    ] {
        if let Ok(response) = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            && let Ok(text) = response.text().await
        {
            std::fs::create_dir_all(&scratch)?;
            std::fs::write(scratch.join(format!("metrics-{name}.txt")), text)?;
        }
    }

    // 6. Memory, then a clean stop.
    let mut memory = serde_json::Map::new();
    for service in &mut services {
        let pid = service.child.id().unwrap_or(0);
        memory.insert(
            service.name.to_owned(),
            json!({
                "idleRssMb": service.idle_rss_kb as f64 / 1024.0,
                "peakRssMb": proc_status(pid, "VmHWM:") as f64 / 1024.0,
            }),
        );
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    for service in &mut services {
        let status = tokio::time::timeout(Duration::from_secs(30), service.child.wait()).await;
        if !matches!(status, Ok(Ok(s)) if s.success()) {
            eprintln!("{} did not exit cleanly: {status:?}", service.name);
        }
    }
    db.close().await;
    let _ = roundhouse_db::drop_database(&admin, &database).await;

    let busy_before_celery = cpu_busy_percent().await;
    // 9. Celery, with the machine to itself.
    let celery = if options.celery {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench-celery.sh");
        celery::measure(
            &script,
            &admin,
            &rabbitmq,
            &celery::CeleryOptions {
                jobs: options.celery_jobs,
                clients: options.single_concurrency,
                batch_jobs: options.celery_batch_jobs,
                batch_size: options.batch_size,
                batch_senders: BATCH_SENDERS,
                concurrency: std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1),
            },
        )
        .await
    } else {
        println!("celery: skipped (--no-celery)");
        json!({ "skipped": "--no-celery" })
    };

    let mut results = json!({
        "date": chrono::Utc::now().to_rfc3339(),
        "machine": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "note": "PostgreSQL, RabbitMQ, the services and the load generator share this machine",
            "busyPercentBefore": busy_at_start,
            "busyPercentBeforeCelery": busy_before_celery,
            "busyNote": "share of all CPUs busy over one second with nothing of the bench running, \
                         before the first phase and before Celery: others' work on the machine",
        },
        "single": single,
        "batch": batch,
        "latency": latency,
        "cronEverySecond": cron_every_second,
        "cronSpread": cron_spread,
        "agents": agents,
        "notifications": notifications,
        "rag": rag,
        "memory": memory,
        "celery": celery,
    });
    results["comparison"] = celery::comparison(&results);
    std::fs::create_dir_all(&options.out)?;
    std::fs::write(
        options.out.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    let mut table = String::from("| measure | result |\n|---|---|\n");
    let row = |table: &mut String, name: &str, value: String| {
        table.push_str(&format!("| {name} | {value} |\n"))
    };
    let busy = |v: &Value| v.as_f64().map_or("?".to_owned(), |b| format!("{b:.0} %"));
    row(
        &mut table,
        "machine",
        format!(
            "{} CPUs; busy with other work just before the bench {}, before Celery {}",
            results["machine"]["cpus"],
            busy(&results["machine"]["busyPercentBefore"]),
            busy(&results["machine"]["busyPercentBeforeCelery"]),
        ),
    );
    row(
        &mut table,
        "single enqueue, end to end",
        format!(
            "{:.0} jobs/s ({} jobs, {} clients)",
            results["single"]["jobsPerSecond"].as_f64().unwrap_or(0.0),
            options.single_jobs,
            options.single_concurrency
        ),
    );
    row(
        &mut table,
        "batch enqueue, end to end",
        format!(
            "{:.0} jobs/s ({} jobs, batches of {})",
            results["batch"]["jobsPerSecond"].as_f64().unwrap_or(0.0),
            batch_total,
            options.batch_size
        ),
    );
    row(
        &mut table,
        "batch enqueue, API only",
        format!(
            "{:.0} jobs/s",
            results["batch"]["enqueuePerSecond"].as_f64().unwrap_or(0.0)
        ),
    );
    row(
        &mut table,
        &format!("enqueue→start at {} jobs/s", options.rate),
        format!(
            "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            latency["p50Ms"].as_f64().unwrap_or(0.0),
            latency["p90Ms"].as_f64().unwrap_or(0.0),
            latency["p99Ms"].as_f64().unwrap_or(0.0),
            latency["maxMs"].as_f64().unwrap_or(0.0)
        ),
    );
    for (name, cron, count) in [
        (
            "every-second",
            &results["cronEverySecond"],
            options.cron_schedules,
        ),
        ("spread", &results["cronSpread"], options.spread_schedules),
    ] {
        row(
            &mut table,
            &format!("cron tick lateness, {count} {name} schedules"),
            format!(
                "fired p50 {:.1} ms, p99 {:.1} ms; started p50 {:.1} ms, p99 {:.1} ms ({} jobs)",
                cron["firedP50Ms"].as_f64().unwrap_or(f64::NAN),
                cron["firedP99Ms"].as_f64().unwrap_or(f64::NAN),
                cron["startedP50Ms"].as_f64().unwrap_or(f64::NAN),
                cron["startedP99Ms"].as_f64().unwrap_or(f64::NAN),
                cron["jobs"].as_u64().unwrap_or(0),
            ),
        );
    }
    for (name, value) in agents::table_rows(&results["agents"]) {
        row(&mut table, &name, value);
    }
    for (name, value) in notifications::table_rows(&results["notifications"]) {
        row(&mut table, &name, value);
    }
    for (name, value) in rag::table_rows(&results["rag"]) {
        row(&mut table, &name, value);
    }
    for (name, value) in celery::table_rows(&results) {
        row(&mut table, &name, value);
    }
    for (name, m) in &memory {
        row(
            &mut table,
            &format!("{name} RSS"),
            format!(
                "idle {:.1} MB, peak {:.1} MB",
                m["idleRssMb"].as_f64().unwrap_or(0.0),
                m["peakRssMb"].as_f64().unwrap_or(0.0)
            ),
        );
    }
    std::fs::write(options.out.join("results.md"), &table)?;
    println!("\n{table}");
    if !results["comparison"].is_null() {
        println!(
            "Roundhouse ÷ Celery: single enqueues {:.1}×, batch enqueues {:.1}×",
            results["comparison"]["singleRatio"]
                .as_f64()
                .unwrap_or(f64::NAN),
            results["comparison"]["batchRatio"]
                .as_f64()
                .unwrap_or(f64::NAN),
        );
    }
    let chart_path = options.out.join("chart.svg");
    match chart::draw(&chart_path, &results) {
        Ok(()) => println!("chart: {}", chart_path.display()),
        Err(e) => eprintln!("the chart could not be drawn: {e:#}"),
    }
    println!(
        "results: {}, {}",
        options.out.join("results.json").display(),
        options.out.join("results.md").display()
    );
    Ok(())
}
