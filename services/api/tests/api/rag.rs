//! `rag_ingestion` at enqueue, and `GET /api/rag/search` through the real
//! router with the `dev` embedding provider. Documents are stored the way
//! the worker stores them: a claimed job, `begin_rag_document`, then fenced
//! batches of chunks with their embeddings.

use reqwest::StatusCode;
use roundhouse_db::{NewRagChunk, NewRagDocument, RagDocumentStart};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{ALICE, BOB, TestApp, assert_error, service, spawn_app, user};

/// Ingests `texts` (one segment and one chunk each, seq 1, 2, …) as a
/// document of `owner`, embedded with the dev provider; returns its id.
async fn ingest(app: &TestApp, owner: &str, texts: &[&str]) -> Uuid {
    let segments: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| json!({"seq": i + 1, "text": text}))
        .collect();
    let job = app
        .enqueue_ok(
            &user(owner),
            json!({"jobType": "rag_ingestion", "payload": {"transcript": {"segments": segments}}}),
        )
        .await;
    let attempt = app.claim(job).await;
    let settings = &app.state.settings;
    let db = &app.env.db;
    let start = db
        .begin_rag_document(&NewRagDocument {
            id: job,
            user_id: Some(owner),
            title: None,
            job_id: job,
            chunk_char_limit: 1200,
            embedding_provider: "dev",
            embedding_model: &settings.rag_embedding_model,
            segments: texts.len() as i32,
            chunks: texts.len() as i32,
        })
        .await
        .unwrap();
    assert_eq!(start, RagDocumentStart::New);
    let chunks: Vec<NewRagChunk> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| NewRagChunk {
            chunk_index: i as i32,
            seq: i as i64 + 1,
            text: (*text).to_owned(),
            embedding: roundhouse_llm::dev_embedding(text),
        })
        .collect();
    assert!(
        db.store_rag_chunks(job, attempt, job, &chunks, &[])
            .await
            .unwrap()
    );
    job
}

async fn search(app: &TestApp, token: &str, query: &str) -> (StatusCode, Value) {
    let response = app
        .get(&format!("/api/rag/search?{query}"), Some(token))
        .await;
    (response.status, response.body)
}

fn texts(body: &Value) -> Vec<&str> {
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {body}"))
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn search_ranks_the_matching_chunk_first_for_its_owner() {
    let app = spawn_app().await;
    let document = ingest(
        &app,
        ALICE,
        &[
            "Welcome everyone, let's get started with the weekly sync.",
            "The Postgres failover drill is scheduled for Thursday night.",
            "Marketing wants the new landing page copy by Friday.",
            "Any other business? No? Then see you next week.",
        ],
    )
    .await;

    let (status, body) = search(
        &app,
        &user(ALICE),
        "q=when%20is%20the%20postgres%20failover%20drill",
    )
    .await;

    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(
        results.len(),
        4,
        "k defaults to 5, the document has 4 chunks"
    );
    assert_eq!(
        results[0]["text"],
        "The Postgres failover drill is scheduled for Thursday night."
    );
    assert_eq!(results[0]["documentId"], document.to_string());
    assert_eq!(results[0]["seq"], 2);
    assert_eq!(results[0]["chunkIndex"], 1);
    let scores: Vec<f64> = results
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(scores[0] > scores[1] + 0.1, "{scores:?}");

    // k and documentId narrow it down.
    let (status, body) = search(
        &app,
        &user(ALICE),
        &format!("q=landing%20page%20copy&k=1&documentId={document}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        texts(&body),
        ["Marketing wants the new landing page copy by Friday."]
    );
}

#[tokio::test]
async fn users_search_only_their_own_documents() {
    let app = spawn_app().await;
    let alices = ingest(&app, ALICE, &["The budget review moved to March."]).await;
    let bobs = ingest(&app, BOB, &["Bob's budget review notes are private."]).await;

    // Another user's document is not found, as another user's job is.
    let (status, body) = search(
        &app,
        &user(ALICE),
        &format!("q=budget%20review&documentId={bobs}"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_error(&body, "not_found");
    let (status, body) = search(
        &app,
        &user(ALICE),
        &format!("q=budget%20review&documentId={}", Uuid::now_v7()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Without a documentId, only the caller's chunks come back.
    let (_, body) = search(&app, &user(ALICE), "q=budget%20review&k=10").await;
    assert_eq!(texts(&body), ["The budget review moved to March."]);
    let (status, body) = search(&app, &user(ALICE), &format!("q=budget&userId={BOB}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error(&body, "forbidden");

    // The service sees everyone's, or one user's.
    let (_, body) = search(&app, service(), "q=budget%20review&k=10").await;
    assert_eq!(texts(&body).len(), 2);
    let (_, body) = search(&app, service(), &format!("q=budget%20review&userId={BOB}")).await;
    assert_eq!(texts(&body), ["Bob's budget review notes are private."]);
    let (status, _) = search(&app, service(), &format!("q=budget&documentId={alices}")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn bad_search_input_is_refused_in_the_error_shape() {
    let app = spawn_app().await;
    let token = user(ALICE);
    for (query, status, code, field) in [
        (
            "",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "q",
        ),
        (
            "q=%20%20",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "q",
        ),
        (
            "q=x&k=0",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "k",
        ),
        (
            "q=x&k=51",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "k",
        ),
        ("q=x&k=many", StatusCode::BAD_REQUEST, "invalid_query", "k"),
        (
            "q=x&documentId=doc-1",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "documentId",
        ),
        (
            "q=x&colour=blue",
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "colour",
        ),
    ] {
        let (answer, body) = search(&app, &token, query).await;
        assert_eq!(answer, status, "{query}: {body}");
        assert_error(&body, code);
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{query}: {message}");
    }
    let long = "a".repeat(2001);
    let (status, body) = search(&app, &token, &format!("q={long}")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let response = app.get("/api/rag/search?q=x", None).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_error(&response.body, "unauthorized");
}

#[tokio::test]
async fn bad_rag_ingestion_payloads_are_refused_at_enqueue() {
    let app = spawn_app().await;
    let segments = |list: Value| json!({"transcript": {"segments": list}});
    for (payload, field) in [
        (json!({}), "payload.transcript"),
        (segments(json!([])), "payload.transcript.segments"),
        (
            segments(json!([{"seq": 1, "text": 42}])),
            "payload.transcript.segments[0].text",
        ),
        (
            segments(json!([{"seq": 1, "text": "a"}, {"seq": 1, "text": "b"}])),
            "payload.transcript.segments[1].seq",
        ),
        (
            segments(json!([{"seq": "one", "text": "a"}])),
            "payload.transcript.segments[0].seq",
        ),
        (
            json!({"documentId": "doc-1", "transcript": {"segments": [{"seq": 1, "text": "a"}]}}),
            "payload.documentId",
        ),
        (
            json!({"chunkCharLimit": 5, "transcript": {"segments": [{"seq": 1, "text": "a"}]}}),
            "payload.chunkCharLimit",
        ),
        (
            json!({"embedingBatch": 8, "transcript": {"segments": [{"seq": 1, "text": "a"}]}}),
            "payload.embedingBatch",
        ),
    ] {
        let (status, body) = app
            .enqueue(
                &user(ALICE),
                json!({"jobType": "rag_ingestion", "payload": payload.clone()}),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{payload}: {body}"
        );
        assert_error(&body, "validation_error");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{payload}: {message}");
    }
    assert!(app.all_rows().await.is_empty(), "nothing was stored");

    let job = app
        .enqueue_ok(
            &user(ALICE),
            json!({"jobType": "rag_ingestion", "payload": segments(json!([{"seq": 1, "text": "ok"}]))}),
        )
        .await;
    let row = app.job_row(job).await.unwrap();
    assert_eq!(row.queue, "rag_ingestion");
}
