//! `rag_ingestion` end to end: a local fake OpenAI `/embeddings` server
//! (never a real provider) or the `dev` provider, the real API, worker and
//! scheduler, and the real worker binary killed mid-document.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use roundhouse_db::NewJob;
use roundhouse_test_support::user_token;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::Stack;

const FAKE_KEY: &str = "sk-fake-embeddings-key";
const ALICE: &str = "00000000-0000-4000-8000-00000000a11c";
const BOB: &str = "00000000-0000-4000-8000-000000000b0b";

/// A fake OpenAI `/v1/embeddings` that answers with dev embeddings and
/// counts what it was asked for and what it answered.
struct FakeEmbeddings {
    base_url: String,
    calls: Arc<AtomicUsize>,
    /// Inputs of every request received.
    requested: Arc<AtomicUsize>,
    /// Inputs of every request answered (a request held open and abandoned
    /// by a killed worker is received but never answered).
    answered: Arc<AtomicUsize>,
    batch_sizes: Arc<Mutex<Vec<usize>>>,
}

impl FakeEmbeddings {
    /// Starts the server; request number `hang_on` (1-based), if any, is
    /// never answered.
    async fn start(hang_on: Option<usize>) -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let requested = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let batch_sizes = Arc::new(Mutex::new(Vec::new()));
        let state = (
            calls.clone(),
            requested.clone(),
            answered.clone(),
            batch_sizes.clone(),
        );
        let app = axum::Router::new().route(
            "/v1/embeddings",
            axum::routing::post(move |Json(body): Json<Value>| {
                let (calls, requested, answered, batch_sizes) = state.clone();
                async move {
                    let inputs: Vec<String> = body["input"]
                        .as_array()
                        .expect("input is a list")
                        .iter()
                        .map(|i| i.as_str().expect("inputs are strings").to_owned())
                        .collect();
                    assert_eq!(body["model"], "text-embedding-3-small");
                    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                    requested.fetch_add(inputs.len(), Ordering::SeqCst);
                    batch_sizes.lock().unwrap().push(inputs.len());
                    if hang_on == Some(n) {
                        std::future::pending::<()>().await;
                    }
                    answered.fetch_add(inputs.len(), Ordering::SeqCst);
                    let data: Vec<Value> = inputs
                        .iter()
                        .enumerate()
                        .map(|(i, text)| {
                            json!({"object": "embedding", "index": i,
                                   "embedding": roundhouse_llm::dev_embedding(text)})
                        })
                        .collect();
                    Json(json!({"object": "list", "data": data, "model": "text-embedding-3-small",
                                "usage": {"prompt_tokens": inputs.len(), "total_tokens": inputs.len()}}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base_url,
            calls,
            requested,
            answered,
            batch_sizes,
        }
    }

    /// Worker settings that make `openai` (the default embedding provider
    /// once its key is set) this server.
    fn worker_env(&self) -> [(&'static str, String); 2] {
        [
            ("OPENAI_API_KEY", FAKE_KEY.to_owned()),
            ("OPENAI_BASE_URL", self.base_url.clone()),
        ]
    }
}

/// A transcript of `n` segments; every seventh is long enough to need
/// three chunks of 1,200 characters.
fn transcript(n: usize) -> Value {
    let topics = [
        "the deployment pipeline",
        "the quarterly budget",
        "customer churn",
        "the hiring plan",
        "database latency",
    ];
    let segments: Vec<Value> = (1..=n)
        .map(|seq| {
            let topic = topics[seq % topics.len()];
            let sentence =
                format!("In segment {seq} we talked about {topic} and what to do next. ");
            let repeat = if seq % 7 == 0 { 45 } else { 2 };
            json!({"seq": seq, "text": sentence.repeat(repeat).trim_end()})
        })
        .collect();
    json!({"segments": segments})
}

/// POSTs an enqueue with `token`; returns the job id (asserting a 202).
async fn enqueue_as(stack: &Stack, token: &str, body: Value) -> Uuid {
    let response = stack
        .http
        .post(format!("{}/api/jobs/enqueue", stack.api_url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("enqueue request");
    let status = response.status();
    let body: Value = response.json().await.expect("json body");
    assert_eq!(status, 202, "{body}");
    body["jobId"].as_str().unwrap().parse().unwrap()
}

/// The messages of the job's `progress` events, in order.
async fn progress_messages(stack: &Stack, id: Uuid) -> Vec<String> {
    stack
        .events(id)
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "progress")
        .filter_map(|(_, data)| data["message"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_sixty_segment_transcript_is_embedded_sixteen_chunks_a_call_with_progress_per_segment() {
    let fake = FakeEmbeddings::start(None).await;
    let stack = Stack::api_only().await;
    let env = fake.worker_env();
    let worker = stack
        .worker_with(
            &env.iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        )
        .await;
    let id = enqueue_as(
        &stack,
        &user_token(ALICE),
        json!({"jobType": "rag_ingestion",
               "payload": {"title": "All hands", "transcript": transcript(60)}}),
    )
    .await;

    let job = stack
        .wait_for_status(id, "completed", Duration::from_secs(30))
        .await;

    let chunks = stack.env.db.rag_chunks(id).await.unwrap();
    let n = chunks.len();
    assert!(n > 60, "the long segments were split: {n} chunks");
    assert_eq!(
        chunks.iter().map(|c| c.chunk_index).collect::<Vec<_>>(),
        (0..n as i32).collect::<Vec<_>>(),
        "every chunk stored, once"
    );
    assert!(chunks.iter().all(|c| c.text.chars().count() <= 1200));
    assert!(chunks.iter().all(|c| c.embedding.len() == 256));
    assert_eq!(
        chunks.iter().map(|c| c.seq).collect::<HashSet<_>>().len(),
        60,
        "every segment has chunks"
    );
    assert_eq!(fake.calls.load(Ordering::SeqCst), n.div_ceil(16));
    assert_eq!(fake.answered.load(Ordering::SeqCst), n);
    let sizes = fake.batch_sizes.lock().unwrap().clone();
    assert!(
        sizes[..sizes.len() - 1].iter().all(|s| *s == 16),
        "{sizes:?}"
    );

    let result = job.result.unwrap();
    assert_eq!(result["documentId"], id.to_string(), "the job's own id");
    assert_eq!(result["chunks"], n);
    assert_eq!(result["embeddingCalls"], n.div_ceil(16));
    assert_eq!(result["embeddingProvider"], "openai");
    let messages = progress_messages(&stack, id).await;
    for i in 1..=60 {
        let message = format!("segment {i}/60");
        assert_eq!(
            messages.iter().filter(|m| **m == message).count(),
            1,
            "{message} in {messages:?}"
        );
    }
    let document = stack.env.db.rag_document(id, Some(ALICE)).await.unwrap();
    let document = document.expect("the document belongs to the job's user");
    assert_eq!(document.title.as_deref(), Some("All hands"));
    assert!(document.completed_at.is_some());
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_worker_killed_mid_document_resumes_elsewhere_without_embedding_a_chunk_twice() {
    // The third request is held open: the worker is killed while waiting for it.
    let fake = FakeEmbeddings::start(Some(3)).await;
    let stack = Stack::api_only().await;
    let scheduler = stack.scheduler().await;
    let env = fake.worker_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut first = stack.worker_process(&env);
    let id = enqueue_as(
        &stack,
        &user_token(ALICE),
        json!({"jobType": "rag_ingestion", "payload": {"transcript": transcript(60)}}),
    )
    .await;

    // Two batches stored, the third being embedded.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stored = stack.env.db.stored_rag_chunk_indexes(id).await.unwrap();
        if stored.len() == 32 && fake.calls.load(Ordering::SeqCst) == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never got to two stored batches: {} stored",
            stored.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = first.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    first.wait().await.unwrap();

    let mut second = stack.worker_process(&env);
    let job = stack
        .wait_for_status(id, "completed", Duration::from_secs(45))
        .await;
    assert_eq!(
        job.attempts, 2,
        "the killed attempt, then the one that finished"
    );

    let n = stack.env.db.rag_chunks(id).await.unwrap().len();
    assert_eq!(
        stack.env.db.stored_rag_chunk_indexes(id).await.unwrap(),
        (0..n as i32).collect::<Vec<_>>()
    );
    assert_eq!(
        fake.answered.load(Ordering::SeqCst),
        n,
        "every chunk embedded exactly once"
    );
    assert_eq!(
        fake.requested.load(Ordering::SeqCst),
        n + 16,
        "the only repeat is the request the dead worker never got an answer to"
    );
    let result = job.result.unwrap();
    assert_eq!(result["resumedChunks"], 32);
    assert_eq!(result["chunks"], n);
    assert_eq!(result["embeddingCalls"], (n - 32).div_ceil(16));
    let logs: Vec<String> = stack
        .events(id)
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "log")
        .filter_map(|(_, data)| data["message"].as_str().map(str::to_owned))
        .collect();
    assert!(
        logs.iter()
            .any(|l| l.starts_with(&format!("resuming: 32 of {n} chunks already stored"))),
        "{logs:?}"
    );
    assert!(
        progress_messages(&stack, id)
            .await
            .contains(&"segment 60/60".to_owned())
    );

    let pid = second.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(second.wait().await.unwrap().success());
    scheduler.stop().await.unwrap();
}

#[tokio::test]
async fn an_ingested_document_is_searchable_through_the_api_and_analysed_per_segment() {
    let stack = Stack::api_only().await;
    // No key: the dev provider embeds and analyses, offline.
    let worker = stack.worker_with(&[("RAG_CLAUDE_CONCURRENCY", "2")]).await;
    let segments = json!({"segments": [
        {"seq": 10, "text": "Good morning, this is the infrastructure review."},
        {"seq": 20, "text": "The Kafka cluster upgrade finished without downtime."},
        {"seq": 30, "text": "Next quarter we will migrate the billing service to Rust."},
    ]});
    let document = Uuid::now_v7();
    let id = enqueue_as(
        &stack,
        &user_token(ALICE),
        json!({"jobType": "rag_ingestion",
               "payload": {"documentId": document, "transcript": segments, "analysis": true}}),
    )
    .await;
    let job = stack
        .wait_for_status(id, "completed", Duration::from_secs(30))
        .await;
    let result = job.result.unwrap();
    assert_eq!(result["documentId"], document.to_string());
    assert_eq!(result["embeddingProvider"], "dev");
    assert_eq!(result["analysedSegments"], 3);
    let analyses = stack.env.db.rag_analyses(document).await.unwrap();
    assert_eq!(
        analyses.iter().map(|a| a.seq).collect::<Vec<_>>(),
        [10, 20, 30]
    );
    assert_eq!(
        analyses[1].analysis,
        "Dev reply to: The Kafka cluster upgrade finished without downtime."
    );
    assert_eq!(analyses[1].provider, "dev");
    let messages = progress_messages(&stack, id).await;
    assert!(
        messages.contains(&"analysis 3/3".to_owned()),
        "{messages:?}"
    );

    let search = |token: String, query: String| {
        let stack = &stack;
        async move {
            let response = stack
                .http
                .get(format!("{}/api/rag/search?{query}", stack.api_url))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = search(
        user_token(ALICE),
        format!("q=kafka%20cluster%20upgrade&documentId={document}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["seq"], 20, "{body}");
    assert_eq!(
        body["results"][0]["text"],
        "The Kafka cluster upgrade finished without downtime."
    );
    let (status, body) = search(user_token(BOB), format!("q=kafka&documentId={document}")).await;
    assert_eq!(status, 404, "{body}");
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_bad_payload_that_reaches_the_worker_fails_permanently() {
    let stack = Stack::api_only().await;
    let scheduler = stack.scheduler().await;
    let worker = stack.worker().await;
    let owned = Uuid::now_v7();
    // A document of Bob's, which Alice's job may not rebuild.
    let bobs = enqueue_as(
        &stack,
        &user_token(BOB),
        json!({"jobType": "rag_ingestion",
               "payload": {"documentId": owned, "transcript": {"segments": [{"seq": 1, "text": "mine"}]}}}),
    )
    .await;
    stack
        .wait_for_status(bobs, "completed", Duration::from_secs(30))
        .await;

    // Written straight to the database, as a bug or an old API might have:
    // the API would refuse these payloads.
    let payloads = [
        (json!({"transcript": {"segments": []}}), "segments"),
        (
            json!({"transcript": {"segments": [{"seq": 1, "text": 7}]}}),
            "text",
        ),
        (
            json!({"transcript": {"segments": [{"seq": 2, "text": "a"}, {"seq": 2, "text": "b"}]}}),
            "seq",
        ),
        (
            json!({"documentId": owned, "transcript": {"segments": [{"seq": 1, "text": "x"}]}}),
            "belongs to another user",
        ),
    ];
    let jobs: Vec<NewJob> = payloads
        .iter()
        .map(|(payload, _)| NewJob {
            id: Uuid::now_v7(),
            queue: "rag_ingestion".into(),
            job_type: "rag_ingestion".into(),
            user_id: Some(ALICE.into()),
            payload: payload.clone(),
            priority: 0,
            max_retries: 3,
            timeout_seconds: 60,
            idempotency_key: None,
            run_at: None,
            delay_ms: None,
            traceparent: None,
        })
        .collect();
    // Never dispatched: the scheduler's sweep publishes them.
    stack.env.db.enqueue_jobs(&jobs).await.unwrap();
    for (job, (_, expected)) in jobs.iter().zip(&payloads) {
        let row = stack
            .wait_for_status(job.id, "failed", Duration::from_secs(30))
            .await;
        assert_eq!(row.attempts, 1, "permanent: not retried");
        let error = row.error.unwrap();
        assert!(error.contains(expected), "{error}");
    }
    let chunks = stack.env.db.rag_chunks(owned).await.unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].text, "mine", "Bob's document is untouched");
    worker.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}

#[tokio::test]
async fn an_embedding_provider_that_is_not_configured_stops_the_worker_naming_the_setting() {
    let stack = Stack::api_only().await;
    let mut env = stack.env.env();
    env.insert("RAG_EMBEDDING_PROVIDER".into(), "ollama".into());
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_roundhouse-worker"))
        .env_clear()
        .envs(env)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("RAG_EMBEDDING_PROVIDER"), "{stderr}");
    assert!(stderr.contains("ollama"), "{stderr}");
}
