//! The RAG phase of `make bench`: one `rag_ingestion` of a long transcript
//! through the release API and a release worker of its own (queue
//! `rag_ingestion` only), against a local fake OpenAI `/embeddings` server
//! that takes a fixed time per request.
//!
//! The floor is what the fake server's latency alone imposes: the worker
//! sends one embedding request at a time, so `calls × latency`. The bar is
//! an ingestion wall time (enqueue → `completed`) within 1.5× that floor:
//! chunking, storing the chunks with their 1,536-dimension vectors,
//! progress events and job bookkeeping may add at most half again.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Json;
use serde_json::{Value, json};

use crate::{TOKEN, spawn, stop, wait_healthy};

/// The length of the fake server's vectors (OpenAI's text-embedding-3-small).
const DIMENSIONS: usize = 1536;
/// Wall time over floor that still passes.
const BAR: f64 = 1.5;

/// What `--rag-*` ask for.
pub struct RagOptions {
    /// Segments of the transcript.
    pub segments: usize,
    /// The fake server's time per request.
    pub latency_ms: u64,
    /// `RAG_EMBEDDING_BATCH` of the benchmarked worker.
    pub batch: usize,
}

/// What the fake server saw.
#[derive(Default)]
struct Counts {
    calls: AtomicUsize,
    inputs: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// Runs the RAG phase: a worker on `port` next to the API at `api`;
/// returns the `rag` object of results.json.
pub async fn measure(
    bin_dir: &Path,
    env: &HashMap<String, String>,
    api: &str,
    port: u16,
    options: &RagOptions,
) -> anyhow::Result<Value> {
    let counts = Arc::new(Counts::default());
    let base_url =
        fake_embeddings(counts.clone(), Duration::from_millis(options.latency_ms)).await?;
    let mut env = env.clone();
    for (name, value) in [
        ("WORKER_QUEUES", "rag_ingestion".to_owned()),
        ("LLM_PROVIDERS", format!("benchembed={base_url}")),
        ("RAG_EMBEDDING_PROVIDER", "benchembed".to_owned()),
        ("RAG_EMBEDDING_MODEL", "bench-embedding".to_owned()),
        ("RAG_EMBEDDING_BATCH", options.batch.to_string()),
    ] {
        env.insert(name.to_owned(), value);
    }
    let mut worker = spawn(bin_dir, "worker", &env, port)?;
    wait_healthy(&format!("http://127.0.0.1:{port}"), "rag worker").await?;
    let http = reqwest::Client::new();

    // Warm-up: the worker's consumer, connections and prepared statements.
    ingest(&http, api, &transcript(3)).await?;
    counts.calls.store(0, Ordering::SeqCst);
    counts.inputs.store(0, Ordering::SeqCst);

    println!(
        "rag: {} segments, fake embeddings at {} ms per request, batches of {}",
        options.segments, options.latency_ms, options.batch
    );
    let run = ingest(&http, api, &transcript(options.segments)).await?;
    stop(&mut worker).await;

    let calls = counts.calls.load(Ordering::SeqCst);
    let concurrency = counts.max_in_flight.load(Ordering::SeqCst).max(1);
    let floor = (calls as f64 * options.latency_ms as f64 / 1000.0) / concurrency as f64;
    let ratio = run.wall.as_secs_f64() / floor;
    let chunks = run.result["chunks"].as_u64().unwrap_or(0);
    let results = json!({
        "segments": options.segments,
        "chunks": chunks,
        "batch": options.batch,
        "latencyMs": options.latency_ms,
        "dimensions": DIMENSIONS,
        "embeddingCalls": calls,
        "expectedEmbeddingCalls": (chunks as usize).div_ceil(options.batch),
        "embeddedInputs": counts.inputs.load(Ordering::SeqCst),
        "maxRequestsInFlight": concurrency,
        "wallSeconds": run.wall.as_secs_f64(),
        "handlerSeconds": run.handler_seconds,
        "floorSeconds": floor,
        "ratio": ratio,
        "bar": BAR,
        "withinBar": ratio <= BAR,
    });
    println!("  {results}");
    let expected = (chunks as usize).div_ceil(options.batch);
    if calls != expected {
        // Reported, not fatal: the other phases' results are still worth writing.
        eprintln!("rag: {chunks} chunks took {calls} embedding calls, expected {expected}");
    }
    Ok(results)
}

/// One finished ingestion.
struct Run {
    /// Enqueue → `completed` seen.
    wall: Duration,
    /// `startedAt` → `completedAt` of the job.
    handler_seconds: f64,
    result: Value,
}

/// Enqueues a `rag_ingestion` of `transcript` and waits for it.
async fn ingest(http: &reqwest::Client, api: &str, transcript: &Value) -> anyhow::Result<Run> {
    let begin = Instant::now();
    let response = http
        .post(format!("{api}/api/jobs/enqueue"))
        .bearer_auth(TOKEN)
        .json(&json!({"jobType": "rag_ingestion", "payload": {"transcript": transcript}}))
        .send()
        .await?;
    if response.status() != 202 {
        bail!("rag enqueue answered {}", response.status());
    }
    let id = response.json::<Value>().await?["jobId"]
        .as_str()
        .context("no jobId")?
        .to_owned();
    loop {
        let job: Value = http
            .get(format!("{api}/api/jobs/{id}"))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .json()
            .await?;
        match job["status"].as_str() {
            Some("completed") => {
                let wall = begin.elapsed();
                let at = |field: &str| {
                    job[field]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                };
                let handler_seconds = match (at("startedAt"), at("completedAt")) {
                    (Some(start), Some(end)) => (end - start).as_seconds_f64(),
                    _ => f64::NAN,
                };
                return Ok(Run {
                    wall,
                    handler_seconds,
                    result: job["result"].clone(),
                });
            }
            Some("failed" | "cancelled") => {
                bail!("the rag job ended {}: {}", job["status"], job["error"])
            }
            _ if begin.elapsed() > Duration::from_secs(600) => {
                bail!("the rag job took over 10 minutes")
            }
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// `n` segments of 150–400 characters; every 50th is a long monologue of
/// about 3,000 characters (several chunks).
fn transcript(n: usize) -> Value {
    let topics = [
        "the migration to the new billing system",
        "latency in the European region",
        "the hiring plan for the platform team",
        "customer feedback on the mobile app",
        "the security review of the payments service",
    ];
    let segments: Vec<Value> = (1..=n)
        .map(|seq| {
            let topic = topics[seq % topics.len()];
            let sentence = format!(
                "Speaker {} raised {topic}, and the group agreed to follow up before the next review. ",
                seq % 4 + 1
            );
            let repeat = if seq % 50 == 0 { 30 } else { 1 + seq % 4 };
            json!({"seq": seq, "text": sentence.repeat(repeat).trim_end()})
        })
        .collect();
    json!({"segments": segments})
}

/// Serves `POST /v1/embeddings` on a free port, sleeping `latency` per
/// request; returns the base URL.
async fn fake_embeddings(counts: Arc<Counts>, latency: Duration) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/v1/embeddings",
        axum::routing::post(move |Json(body): Json<Value>| {
            let counts = counts.clone();
            async move {
                let inputs: Vec<String> = body["input"]
                    .as_array()
                    .map(|list| {
                        list.iter()
                            .map(|i| i.as_str().unwrap_or_default().to_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                counts.calls.fetch_add(1, Ordering::SeqCst);
                counts.inputs.fetch_add(inputs.len(), Ordering::SeqCst);
                let now = counts.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                counts.max_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(latency).await;
                counts.in_flight.fetch_sub(1, Ordering::SeqCst);
                let data: Vec<Value> = inputs
                    .iter()
                    .enumerate()
                    .map(|(i, text)| json!({"index": i, "embedding": vector(text)}))
                    .collect();
                Json(json!({"data": data, "model": "bench-embedding",
                            "usage": {"prompt_tokens": inputs.len(), "total_tokens": inputs.len()}}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind the fake embeddings server")?;
    let base_url = format!("http://{}/v1", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base_url)
}

/// A cheap deterministic vector for `text`.
fn vector(text: &str) -> Vec<f32> {
    let seed = text
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    (0..DIMENSIONS as u32)
        .map(|i| ((seed.wrapping_mul(i + 1) % 2000) as f32 / 1000.0) - 1.0)
        .collect()
}

/// The rows of the results table.
pub fn table_rows(rag: &Value) -> Vec<(String, String)> {
    let number = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    vec![(
        format!(
            "rag ingestion, {} segments ({} chunks, batches of {}, fake embeddings {} ms/request)",
            rag["segments"], rag["chunks"], rag["batch"], rag["latencyMs"]
        ),
        format!(
            "{:.2} s for {} embedding calls; floor {:.2} s; {:.2}× the floor ({} the {:.1}× bar)",
            number(&rag["wallSeconds"]),
            rag["embeddingCalls"],
            number(&rag["floorSeconds"]),
            number(&rag["ratio"]),
            if rag["withinBar"] == true {
                "within"
            } else {
                "over"
            },
            number(&rag["bar"]),
        ),
    )]
}
