//! The agent phase of `make bench` (SPEC §10, last bullet): the release
//! agent executor with the built-in `dev` provider, measured from outside.
//!
//! 1. Time to first chunk through SSE (`POST /api/agent/execute` with
//!    `stream: true`) and through the WebSocket (`GET /ws`): from sending the
//!    request to receiving the first `agent_chunk`, one run at a time.
//! 2. Chunks per second of one stream, with a reply of about 200 words
//!    (one chunk per word) and no pause between chunks.
//! 3. Many streamed runs at once (SSE), counting errors, with the
//!    executor's peak RSS.
//!
//! The executor reads `DEV_PROVIDER_CHUNK_DELAY_MS` once at start, so the
//! phase runs two instances one after the other: the first without a pause
//! (1 and 2: the dev provider sends its first chunk at once whatever the
//! pause, so time to first chunk does not depend on it), the second with a
//! pause between chunks so that the concurrent streams overlap as real
//! ones do (3); its peak RSS is that of the concurrent phase alone.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::{Service, TOKEN, percentile, proc_status, spawn, stop, wait_healthy};

/// `SUPABASE_JWT_SECRET` of the benchmarked executor; the bench signs its
/// users' tokens with it.
const JWT_SECRET: &str = "bench-supabase-jwt-secret-0123456789abcdef";
/// `RAILWAY_BACKEND_SECRET` of the benchmarked executor.
const BACKEND_SECRET: &str = "bench-backend-secret-0123456789";
/// Users the runs are spread over, as an app's would be (one user's
/// balance row would serialise every reservation).
const USERS: usize = 100;
/// Runs before each timed series, not counted (connections, caches).
const WARM_UP: usize = 10;
/// Words of the message whose dev reply has about 200 chunks.
const LONG_WORDS: usize = 200;
/// Words of the message of each concurrent run.
const CONCURRENT_WORDS: usize = 50;

/// What `--agent-*` ask for.
pub struct AgentOptions {
    /// Timed runs per transport for the time to first chunk.
    pub runs: usize,
    /// Streamed runs at once in phase 3.
    pub concurrency: usize,
    /// The dev provider's pause between chunks in phase 3.
    pub chunk_delay_ms: u64,
}

/// The executor's base URL and what the bench runs there.
#[derive(Clone)]
struct Target {
    http: reqwest::Client,
    base: String,
    agent: Uuid,
    /// A token per bench user.
    tokens: Vec<String>,
}

/// Runs the agent phase with the executor on `port`; returns the `agents`
/// object of results.json.
pub async fn measure(
    bin_dir: &Path,
    env: &HashMap<String, String>,
    port: u16,
    options: &AgentOptions,
    out: &Path,
) -> anyhow::Result<Value> {
    let users: Vec<String> = (0..USERS).map(|_| Uuid::new_v4().to_string()).collect();
    let tokens = users.iter().map(|user| user_token(user)).collect();

    // 1 and 2: no pause between chunks.
    let mut executor = start_executor(bin_dir, env, port, 0).await?;
    let target = prepare(port, &users, tokens).await?;
    let idle_rss_kb = proc_status(executor.child.id().unwrap_or(0), "VmRSS:");

    println!(
        "agents: time to first chunk, {} runs each through SSE and WebSocket",
        options.runs
    );
    let short = words(3);
    let sse_first = {
        let mut firsts = Vec::with_capacity(options.runs);
        for i in 0..WARM_UP + options.runs {
            let run = sse_run(&target, i, &short, None).await?;
            if i >= WARM_UP {
                firsts.push(run.first_chunk_ms()?);
            }
        }
        latency(firsts)
    };
    let mut socket = ws_connect(&target, 0).await?;
    let ws_first = {
        let mut firsts = Vec::with_capacity(options.runs);
        for i in 0..WARM_UP + options.runs {
            let run = ws_run(&mut socket, &target, &short).await?;
            if i >= WARM_UP {
                firsts.push(run.first_chunk_ms()?);
            }
        }
        latency(firsts)
    };
    println!("  SSE {sse_first}\n  WebSocket {ws_first}");

    let long = words(LONG_WORDS);
    let throughput_runs = (options.runs / 10).max(1);
    println!(
        "agents: chunks/s of one stream, {throughput_runs} runs of {} chunks each",
        LONG_WORDS + 3
    );
    let mut sse_rates = Vec::with_capacity(throughput_runs);
    let mut ws_rates = Vec::with_capacity(throughput_runs);
    for i in 0..throughput_runs {
        sse_rates.push(
            sse_run(&target, i, &long, None)
                .await?
                .chunks_per_second()?,
        );
        ws_rates.push(
            ws_run(&mut socket, &target, &long)
                .await?
                .chunks_per_second()?,
        );
    }
    let _ = socket.close(None).await;
    let throughput = json!({
        "runs": throughput_runs,
        "chunksPerReply": LONG_WORDS + 3,
        "sse": rates(sse_rates),
        "ws": rates(ws_rates),
    });
    println!("  {throughput}");
    let peak_rss_kb = proc_status(executor.child.id().unwrap_or(0), "VmHWM:");
    stop(&mut executor).await;

    // 3: a pause between chunks, so that the streams overlap.
    let mut executor = start_executor(bin_dir, env, port, options.chunk_delay_ms).await?;
    let concurrent_idle_rss_kb = proc_status(executor.child.id().unwrap_or(0), "VmRSS:");
    println!(
        "agents: {} streamed runs at once (SSE, {} ms between chunks)",
        options.concurrency, options.chunk_delay_ms
    );
    // A new client: the pooled connections went with the first executor.
    let target = Target {
        http: client()?,
        ..target
    };
    let mut concurrent = concurrent_runs(&target, options.concurrency).await;
    concurrent["chunkDelayMs"] = json!(options.chunk_delay_ms);
    concurrent["executorIdleRssMb"] = json!(concurrent_idle_rss_kb as f64 / 1024.0);
    concurrent["executorPeakRssMb"] =
        json!(proc_status(executor.child.id().unwrap_or(0), "VmHWM:") as f64 / 1024.0);
    println!("  {concurrent}");
    if let Ok(response) = target
        .http
        .get(format!("{}/metrics", target.base))
        .send()
        .await
        && let Ok(text) = response.text().await
    {
        std::fs::create_dir_all(out)?;
        std::fs::write(out.join("metrics-agent-executor.txt"), text)?;
    }
    stop(&mut executor).await;

    Ok(json!({
        "provider": "dev",
        "users": USERS,
        "note": "time to first chunk and chunks/s: an executor with DEV_PROVIDER_CHUNK_DELAY_MS=0, \
                 runs one at a time after warm-up runs; concurrent: a second executor with the \
                 chunk delay shown",
        "timeToFirstChunk": { "sse": sse_first, "ws": ws_first },
        "throughput": throughput,
        "concurrent": concurrent,
        "executor": {
            "idleRssMb": idle_rss_kb as f64 / 1024.0,
            "peakRssMb": peak_rss_kb as f64 / 1024.0,
        },
    }))
}

async fn start_executor(
    bin_dir: &Path,
    env: &HashMap<String, String>,
    port: u16,
    chunk_delay_ms: u64,
) -> anyhow::Result<Service> {
    let mut env = env.clone();
    for (name, value) in [
        ("SUPABASE_JWT_SECRET", JWT_SECRET.to_owned()),
        ("RAILWAY_BACKEND_SECRET", BACKEND_SECRET.to_owned()),
        ("DEV_PROVIDER_CHUNK_DELAY_MS", chunk_delay_ms.to_string()),
        // The bench is one address and a hundred users in a hurry.
        ("RATE_LIMIT_PER_USER_PER_MINUTE", "100000000".to_owned()),
        ("RATE_LIMIT_PER_IP_PER_MINUTE", "100000000".to_owned()),
    ] {
        env.insert(name.to_owned(), value);
    }
    let service = spawn(bin_dir, "agent-executor", &env, port)?;
    wait_healthy(&format!("http://127.0.0.1:{port}"), "agent-executor").await?;
    Ok(service)
}

/// Grants the users credits and creates a published `dev` agent.
async fn prepare(port: u16, users: &[String], tokens: Vec<String>) -> anyhow::Result<Target> {
    let http = client()?;
    let base = format!("http://127.0.0.1:{port}");
    for user in users {
        let response = http
            .post(format!("{base}/api/credits/grant"))
            .bearer_auth(TOKEN)
            .json(&json!({"userId": user, "amount": 1_000_000_000i64}))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("credits grant answered {}", response.status());
        }
    }
    let response = http
        .post(format!("{base}/api/agents"))
        .bearer_auth(TOKEN)
        .json(&json!({
            "name": "bench",
            "provider": "dev",
            "isHeavy": true,
            "isPublished": true,
            "userId": users[0],
        }))
        .send()
        .await?;
    if response.status() != reqwest::StatusCode::CREATED {
        bail!("agent creation answered {}", response.status());
    }
    let agent: Value = response.json().await?;
    let agent = agent["id"]
        .as_str()
        .context("the agent has no id")?
        .parse()?;
    Ok(Target {
        http,
        base,
        agent,
        tokens,
    })
}

fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
}

/// A Supabase-shaped access token for `user`, valid for a day.
fn user_token(user: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "sub": user,
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + 86_400,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("an HS256 token encodes")
}

/// A message of `n` words; the dev reply ("Dev reply to: …") streams as
/// `n + 3` chunks.
fn words(n: usize) -> String {
    (0..n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// When a streamed run's events arrived, from sending its request.
#[derive(Debug, Default)]
struct Timing {
    first_chunk: Option<Duration>,
    last_chunk: Option<Duration>,
    chunks: usize,
}

impl Timing {
    fn chunk(&mut self, at: Duration) {
        self.first_chunk.get_or_insert(at);
        self.last_chunk = Some(at);
        self.chunks += 1;
    }

    fn first_chunk_ms(&self) -> anyhow::Result<f64> {
        Ok(self.first_chunk.context("no chunk")?.as_secs_f64() * 1000.0)
    }

    /// Chunks per second between the first chunk and the last.
    fn chunks_per_second(&self) -> anyhow::Result<f64> {
        let span = self.last_chunk.context("no chunk")? - self.first_chunk.context("no chunk")?;
        Ok((self.chunks.saturating_sub(1)) as f64 / span.as_secs_f64().max(1e-9))
    }
}

/// Counts the streams open at once, and the most seen.
#[derive(Default)]
struct OpenStreams {
    now: AtomicUsize,
    most: AtomicUsize,
}

/// One streamed run over SSE, as user `i % USERS`; fails unless it ends
/// with `agent_done`.
async fn sse_run(
    target: &Target,
    i: usize,
    message: &str,
    open: Option<&OpenStreams>,
) -> anyhow::Result<Timing> {
    let started = Instant::now();
    let response = target
        .http
        .post(format!("{}/api/agent/execute", target.base))
        .bearer_auth(&target.tokens[i % USERS])
        .header("x-backend-secret", BACKEND_SECRET)
        .json(&json!({
            "agentId": target.agent,
            "messages": [{"role": "user", "content": message}],
            "stream": true,
        }))
        .send()
        .await?;
    if response.status() != reqwest::StatusCode::OK {
        let status = response.status();
        bail!("execute answered {status}: {}", response.text().await?);
    }
    if let Some(open) = open {
        let now = open.now.fetch_add(1, Ordering::Relaxed) + 1;
        open.most.fetch_max(now, Ordering::Relaxed);
    }
    let result = read_sse(response, started).await;
    if let Some(open) = open {
        open.now.fetch_sub(1, Ordering::Relaxed);
    }
    result
}

async fn read_sse(response: reqwest::Response, started: Instant) -> anyhow::Result<Timing> {
    let mut timing = Timing::default();
    let mut events = SseEvents::default();
    let mut body = response.bytes_stream();
    while let Some(bytes) = body.next().await {
        for (name, data) in events.push(&bytes?) {
            match name.as_str() {
                "agent_chunk" => timing.chunk(started.elapsed()),
                "agent_done" => return Ok(timing),
                "agent_error" => bail!("the run failed: {data}"),
                _ => {}
            }
        }
    }
    bail!("the stream ended before agent_done")
}

/// A `text/event-stream` body cut into events as its bytes arrive.
#[derive(Default)]
struct SseEvents {
    buffer: Vec<u8>,
}

impl SseEvents {
    /// Adds `bytes`; returns the (event, data) of the events they complete
    /// (comments, such as keep-alives, are no events).
    fn push(&mut self, bytes: &[u8]) -> Vec<(String, String)> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
            let (mut name, mut data) = (None, String::new());
            for line in String::from_utf8_lossy(&block).lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = Some(value.trim_start().to_owned());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                }
            }
            if let Some(name) = name {
                events.push((name, data));
            }
        }
        events
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(target: &Target, i: usize) -> anyhow::Result<Socket> {
    let url = format!(
        "{}/ws?token={}",
        target.base.replace("http://", "ws://"),
        target.tokens[i % USERS]
    );
    // Nagle off, as the executor has it on its side.
    let (socket, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .context("WebSocket handshake")?;
    Ok(socket)
}

/// One run over an open socket, the only one on it; fails unless it ends
/// with `agent_done`.
async fn ws_run(socket: &mut Socket, target: &Target, message: &str) -> anyhow::Result<Timing> {
    let request_id = Uuid::new_v4().to_string();
    let request = json!({
        "type": "agent_execute",
        "requestId": request_id,
        "agentId": target.agent,
        "messages": [{"role": "user", "content": message}],
    });
    let started = Instant::now();
    socket.send(Message::text(request.to_string())).await?;
    let mut timing = Timing::default();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .context("no message for 30 s")?
            .context("the socket closed")??;
        let Message::Text(text) = message else {
            continue;
        };
        let message: Value = serde_json::from_str(text.as_str())?;
        if message["requestId"] != request_id.as_str() {
            bail!("a message of another request: {message}");
        }
        match message["type"].as_str() {
            Some("agent_chunk") => timing.chunk(started.elapsed()),
            Some("agent_done") => return Ok(timing),
            Some("agent_error") => bail!("the run failed: {message}"),
            _ => {}
        }
    }
}

/// `concurrency` streamed runs started at once, each checked to the end.
async fn concurrent_runs(target: &Target, concurrency: usize) -> Value {
    let target = Arc::new(target.clone());
    let open = Arc::new(OpenStreams::default());
    let message = words(CONCURRENT_WORDS);
    let expected_chunks = CONCURRENT_WORDS + 3;
    let started = Instant::now();
    let runs: Vec<_> = (0..concurrency)
        .map(|i| {
            let (target, open, message) = (target.clone(), open.clone(), message.clone());
            tokio::spawn(async move {
                let timing = sse_run(&target, i, &message, Some(&open)).await?;
                if timing.chunks != expected_chunks {
                    bail!("{} chunks, not {expected_chunks}", timing.chunks);
                }
                Ok(timing)
            })
        })
        .collect();
    let mut errors = 0;
    let mut first_error = None;
    let mut firsts = Vec::with_capacity(concurrency);
    for run in runs {
        match run.await.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(timing) => firsts.extend(timing.first_chunk_ms().ok()),
            Err(error) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }
    json!({
        "streams": concurrency,
        "chunksPerStream": expected_chunks,
        "errors": errors,
        "firstError": first_error,
        "seconds": started.elapsed().as_secs_f64(),
        "mostOpenAtOnce": open.most.load(Ordering::Relaxed),
        "timeToFirstChunk": latency(firsts),
    })
}

/// p50/p99/max of durations in milliseconds.
fn latency(mut ms: Vec<f64>) -> Value {
    ms.sort_by(|a, b| a.total_cmp(b));
    json!({
        "runs": ms.len(),
        "p50Ms": percentile(&ms, 50.0),
        "p99Ms": percentile(&ms, 99.0),
        "maxMs": ms.last().copied().unwrap_or(f64::NAN),
    })
}

/// p50 and lowest of chunks-per-second figures.
fn rates(mut rates: Vec<f64>) -> Value {
    rates.sort_by(|a, b| a.total_cmp(b));
    json!({
        "chunksPerSecondP50": percentile(&rates, 50.0),
        "chunksPerSecondMin": rates.first().copied().unwrap_or(f64::NAN),
    })
}

/// The rows of results.md for `agents`.
pub fn table_rows(agents: &Value) -> Vec<(String, String)> {
    let ms = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let ttfc = |v: &Value| {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} runs)",
            ms(&v["p50Ms"]),
            ms(&v["p99Ms"]),
            ms(&v["maxMs"]),
            v["runs"].as_u64().unwrap_or(0)
        )
    };
    let throughput = &agents["throughput"];
    let concurrent = &agents["concurrent"];
    vec![
        (
            "agent time to first chunk, SSE (dev provider)".to_owned(),
            ttfc(&agents["timeToFirstChunk"]["sse"]),
        ),
        (
            "agent time to first chunk, WebSocket".to_owned(),
            ttfc(&agents["timeToFirstChunk"]["ws"]),
        ),
        (
            format!(
                "agent chunks/s of one stream ({}-chunk replies)",
                throughput["chunksPerReply"]
            ),
            format!(
                "SSE p50 {:.0}/s (min {:.0}), WebSocket p50 {:.0}/s (min {:.0}); {} runs each",
                ms(&throughput["sse"]["chunksPerSecondP50"]),
                ms(&throughput["sse"]["chunksPerSecondMin"]),
                ms(&throughput["ws"]["chunksPerSecondP50"]),
                ms(&throughput["ws"]["chunksPerSecondMin"]),
                throughput["runs"]
            ),
        ),
        (
            format!(
                "{} streamed agent runs at once (SSE, {} ms between chunks)",
                concurrent["streams"], concurrent["chunkDelayMs"]
            ),
            format!(
                "{} errors, {:.2} s, up to {} open at once; first chunk p50 {:.1} ms, p99 {:.1} ms; \
                 executor peak RSS {:.1} MB",
                concurrent["errors"],
                ms(&concurrent["seconds"]),
                concurrent["mostOpenAtOnce"],
                ms(&concurrent["timeToFirstChunk"]["p50Ms"]),
                ms(&concurrent["timeToFirstChunk"]["p99Ms"]),
                ms(&concurrent["executorPeakRssMb"]),
            ),
        ),
        (
            "agent-executor RSS (phases 1-2)".to_owned(),
            format!(
                "idle {:.1} MB, peak {:.1} MB",
                ms(&agents["executor"]["idleRssMb"]),
                ms(&agents["executor"]["peakRssMb"])
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_sent_events_are_cut_where_they_end_even_mid_read() {
        let mut events = SseEvents::default();
        assert!(
            events
                .push(b": keep-alive\n\nevent: agent_start\ndata: {}")
                .is_empty()
        );
        let read = events.push(b"\n\nevent: agent_chunk\nid: 1\ndata: {\"content\":\"Dev \"}\n\n");
        assert_eq!(
            read,
            [
                ("agent_start".to_owned(), "{}".to_owned()),
                (
                    "agent_chunk".to_owned(),
                    "{\"content\":\"Dev \"}".to_owned()
                )
            ]
        );
        assert!(events.buffer.is_empty());
    }

    #[test]
    fn the_chunk_rate_runs_from_the_first_chunk_to_the_last() {
        let mut timing = Timing::default();
        for ms in [5, 6, 7, 8, 9, 15] {
            timing.chunk(Duration::from_millis(ms));
        }
        assert_eq!(timing.first_chunk_ms().unwrap(), 5.0);
        assert!((timing.chunks_per_second().unwrap() - 500.0).abs() < 1e-6);
    }

    #[test]
    fn a_bench_token_is_supabase_shaped() {
        let token = user_token("someone");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&["authenticated"]);
        let claims = jsonwebtoken::decode::<Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["sub"], "someone");
        assert_eq!(claims["role"], "authenticated");
    }

    #[test]
    fn a_message_of_n_words_makes_a_reply_of_n_plus_three_chunks() {
        assert_eq!(words(3), "w0 w1 w2");
        assert_eq!(words(LONG_WORDS).split(' ').count(), LONG_WORDS);
    }
}
