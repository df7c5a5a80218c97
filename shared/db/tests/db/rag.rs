//! RAG documents: who may build them, resumable chunk storage fenced by the
//! attempt, and cosine search scoped to an owner.

use roundhouse_db::{FailOutcome, NewJob, NewRagChunk, NewRagDocument, RagDocumentStart, RagQuery};
use roundhouse_test_support::TestEnv;
use serde_json::json;
use uuid::Uuid;

/// A `rag_ingestion` job of `user`, claimed: (job id, attempt).
async fn running_job(env: &TestEnv, user: &str) -> (Uuid, i32) {
    let id = Uuid::now_v7();
    env.db
        .enqueue_jobs(&[NewJob {
            id,
            queue: "rag_ingestion".into(),
            job_type: "rag_ingestion".into(),
            user_id: Some(user.into()),
            payload: json!({}),
            priority: 0,
            max_retries: 3,
            timeout_seconds: 60,
            idempotency_key: None,
            run_at: None,
            delay_ms: None,
            traceparent: None,
        }])
        .await
        .unwrap();
    let claimed = env.db.claim_jobs(&[id], "test", 30.0).await.unwrap();
    (id, claimed[0].attempts)
}

fn document<'a>(id: Uuid, user: &'a str, job_id: Uuid, chunks: i32) -> NewRagDocument<'a> {
    NewRagDocument {
        id,
        user_id: Some(user),
        title: Some("Notes"),
        job_id,
        chunk_char_limit: 1200,
        embedding_provider: "dev",
        embedding_model: "m",
        segments: chunks,
        chunks,
    }
}

fn chunk(index: i32, embedding: Vec<f32>) -> NewRagChunk {
    NewRagChunk {
        chunk_index: index,
        seq: i64::from(index) * 10,
        text: format!("chunk {index}"),
        embedding,
    }
}

#[tokio::test]
async fn chunks_are_stored_with_their_progress_and_only_by_the_current_attempt() {
    let env = TestEnv::new().await.unwrap();
    let (job, attempt) = running_job(&env, "alice").await;
    let doc = Uuid::now_v7();
    assert_eq!(
        env.db
            .begin_rag_document(&document(doc, "alice", job, 3))
            .await
            .unwrap(),
        RagDocumentStart::New
    );

    let progress = vec![
        (33, "segment 1/3".to_owned()),
        (66, "segment 2/3".to_owned()),
    ];
    let stored = env
        .db
        .store_rag_chunks(
            job,
            attempt,
            doc,
            &[chunk(0, vec![1.0, 0.0]), chunk(1, vec![0.0, 1.0])],
            &progress,
        )
        .await
        .unwrap();
    assert!(stored);
    let chunks = env.db.rag_chunks(doc).await.unwrap();
    assert_eq!(chunks.len(), 2);
    assert_eq!(
        chunks[1].embedding,
        vec![0.0, 1.0],
        "each vector sliced back out"
    );
    assert_eq!(chunks[1].seq, 10);
    let job_row = env.db.get_job(job, None).await.unwrap().unwrap();
    assert_eq!(job_row.progress, 66);
    assert_eq!(job_row.progress_message.as_deref(), Some("segment 2/3"));
    let events: Vec<String> = env
        .db
        .job_events(job, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "progress")
        .map(|e| e.data["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["segment 1/3", "segment 2/3"]);

    // A stored chunk is never overwritten; the batch's new ones are added.
    env.db
        .store_rag_chunks(
            job,
            attempt,
            doc,
            &[chunk(1, vec![5.0, 5.0]), chunk(2, vec![1.0, 1.0])],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        env.db.stored_rag_chunk_indexes(doc).await.unwrap(),
        [0, 1, 2]
    );
    assert_eq!(
        env.db.rag_chunks(doc).await.unwrap()[1].embedding,
        vec![0.0, 1.0]
    );

    // Once the attempt is over, its writes match nothing.
    let outcome = env
        .db
        .fail_job(job, attempt, "boom", true, 0.0)
        .await
        .unwrap();
    assert_eq!(outcome, FailOutcome::RetryScheduled);
    let late = env
        .db
        .store_rag_chunks(job, attempt, doc, &[chunk(3, vec![1.0, 0.0])], &[])
        .await
        .unwrap();
    assert!(!late);
    assert_eq!(env.db.rag_chunks(doc).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_document_is_resumed_by_its_job_restarted_on_a_new_plan_and_kept_from_others() {
    let env = TestEnv::new().await.unwrap();
    let (first, attempt) = running_job(&env, "alice").await;
    let doc = Uuid::now_v7();
    env.db
        .begin_rag_document(&document(doc, "alice", first, 2))
        .await
        .unwrap();
    env.db
        .store_rag_chunks(first, attempt, doc, &[chunk(0, vec![1.0])], &[])
        .await
        .unwrap();

    // The same job, the same plan: carry on.
    let again = env
        .db
        .begin_rag_document(&document(doc, "alice", first, 2))
        .await
        .unwrap();
    assert_eq!(again, RagDocumentStart::Resumed);
    assert_eq!(env.db.stored_rag_chunk_indexes(doc).await.unwrap(), [0]);

    // Another user's job cannot touch it.
    let (bobs, _) = running_job(&env, "bob").await;
    let foreign = env
        .db
        .begin_rag_document(&document(doc, "bob", bobs, 2))
        .await
        .unwrap();
    assert_eq!(foreign, RagDocumentStart::Foreign);

    // A newer job of the owner rebuilds it from scratch…
    let (second, second_attempt) = running_job(&env, "alice").await;
    let restarted = env
        .db
        .begin_rag_document(&document(doc, "alice", second, 2))
        .await
        .unwrap();
    assert_eq!(restarted, RagDocumentStart::Restarted);
    assert!(
        env.db
            .stored_rag_chunk_indexes(doc)
            .await
            .unwrap()
            .is_empty()
    );
    // …and the older one may neither take it back nor write to it.
    let older = env
        .db
        .begin_rag_document(&document(doc, "alice", first, 2))
        .await
        .unwrap();
    assert_eq!(older, RagDocumentStart::Superseded);
    let written = env
        .db
        .store_rag_chunks(first, attempt, doc, &[chunk(1, vec![1.0])], &[])
        .await
        .unwrap();
    assert!(!written);

    // The new job with another chunking starts over too.
    env.db
        .store_rag_chunks(second, second_attempt, doc, &[chunk(0, vec![1.0])], &[])
        .await
        .unwrap();
    let replanned = NewRagDocument {
        chunk_char_limit: 600,
        ..document(doc, "alice", second, 2)
    };
    assert_eq!(
        env.db.begin_rag_document(&replanned).await.unwrap(),
        RagDocumentStart::Restarted
    );
    assert!(
        env.db
            .stored_rag_chunk_indexes(doc)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(env.db.finish_rag_document(doc, second).await.unwrap());
    assert!(!env.db.finish_rag_document(doc, first).await.unwrap());
}

#[tokio::test]
async fn search_ranks_by_cosine_within_the_owners_documents_and_the_model() {
    let env = TestEnv::new().await.unwrap();
    let (alice_job, alice_attempt) = running_job(&env, "alice").await;
    let (bob_job, bob_attempt) = running_job(&env, "bob").await;
    let (alice_doc, bob_doc) = (Uuid::now_v7(), Uuid::now_v7());
    env.db
        .begin_rag_document(&document(alice_doc, "alice", alice_job, 3))
        .await
        .unwrap();
    env.db
        .begin_rag_document(&document(bob_doc, "bob", bob_job, 1))
        .await
        .unwrap();
    env.db
        .store_rag_chunks(
            alice_job,
            alice_attempt,
            alice_doc,
            &[
                chunk(0, vec![1.0, 0.0, 0.0]),
                chunk(1, vec![0.6, 0.8, 0.0]),
                // Not normalised: the score is a cosine all the same.
                chunk(2, vec![0.0, 0.0, 7.0]),
            ],
            &[],
        )
        .await
        .unwrap();
    env.db
        .store_rag_chunks(
            bob_job,
            bob_attempt,
            bob_doc,
            &[chunk(0, vec![1.0, 0.0, 0.0])],
            &[],
        )
        .await
        .unwrap();
    let query = [0.0, 1.0, 0.0];
    let search = |owner, document_id, model| {
        let db = env.db.clone();
        async move {
            db.search_rag_chunks(&RagQuery {
                embedding: &query,
                embedding_model: model,
                owner,
                document_id,
                limit: 2,
            })
            .await
            .unwrap()
        }
    };

    let hits = search(Some("alice"), None, "m").await;
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].chunk_index, 1);
    assert!((hits[0].score - 0.8).abs() < 1e-6, "{}", hits[0].score);
    assert_eq!(hits[1].score, 0.0);
    assert!(hits.iter().all(|h| h.document_id == alice_doc));

    assert_eq!(
        search(None, None, "m").await.len(),
        2,
        "the service sees all"
    );
    assert!(search(Some("alice"), Some(bob_doc), "m").await.is_empty());
    assert!(search(Some("alice"), None, "other-model").await.is_empty());
    let cosine = |a: &[f32], b: &[f32]| {
        let env = &env;
        let (a, b) = (a.to_vec(), b.to_vec());
        async move {
            sqlx::query_scalar::<_, f64>("SELECT rag_cosine($1, $2)")
                .bind(a)
                .bind(b)
                .fetch_one(env.db.pool())
                .await
                .unwrap()
        }
    };
    assert!((cosine(&[1.0, 1.0], &[2.0, 2.0]).await - 1.0).abs() < 1e-9);
    assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]).await, 0.0);
}
