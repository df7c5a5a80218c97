//! `rag_ingestion {documentId?, title?, transcript: {segments: [{seq, text}]},
//! chunkCharLimit?, embeddingBatch?, analysis?}` → `{documentId, chunks, …}`.
//!
//! Each segment is chunked on its own ([`chunker`]); chunks are numbered
//! through the document in `seq` order and embedded in batches through the
//! provider layer. A batch is stored with its embeddings, together with the
//! progress of the segments it completes ("segment 12/52"), in one fenced
//! statement; while it is being stored the next batch is already being
//! embedded, so the database write costs no wall time.
//!
//! Resumable: the document id is the payload's `documentId` or the job's
//! own id, the chunking is deterministic, and the chunking and model are
//! recorded on the document, so a later attempt of the job skips the chunk
//! indexes already stored and never embeds them again. What a crash loses
//! is the request in flight (at most one batch).
//!
//! With `analysis` (or `RAG_ENABLE_CLAUDE_ANALYSIS`), each segment is then
//! summarised by the analysis provider, `RAG_CLAUDE_CONCURRENCY` at a time,
//! each analysis stored as it arrives (and skipped on a later attempt).

mod chunker;

use std::collections::HashSet;

use futures::StreamExt;
use roundhouse_config::Settings;
use roundhouse_db::{DbError, NewRagChunk, NewRagDocument, RagDocumentStart};
use roundhouse_llm::{
    ChatMessage, ChatRequest, EmbeddingRequest, LlmError, Provider, Providers, RagJob, RagSegment,
};
use serde_json::{Value, json};

use crate::handler::{HandlerError, JobContext, JobHandler};

/// The longest analysis stored, in characters.
const MAX_ANALYSIS_CHARS: usize = 4000;
/// What the analysis provider is asked to do with each segment.
const ANALYSIS_INSTRUCTIONS: &str = "You annotate one segment of a transcript for a search index. \
     In at most three short sentences, give its main point, then the names, numbers, decisions \
     and action items it mentions. Reply with the annotation only.";

/// This worker's RAG settings (SPEC §7), read from [`Settings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RagSettings {
    pub char_limit: usize,
    pub batch: usize,
    pub embedding_provider: String,
    pub embedding_model: String,
    pub analysis: bool,
    pub analysis_concurrency: usize,
    pub analysis_provider: String,
    pub analysis_model: String,
}

impl RagSettings {
    pub(crate) fn from_settings(settings: &Settings) -> Self {
        Self {
            char_limit: settings.rag_embedding_char_limit,
            batch: settings.rag_embedding_batch,
            embedding_provider: settings.rag_embedding_provider(),
            embedding_model: settings.rag_embedding_model.clone(),
            analysis: settings.rag_enable_claude_analysis,
            analysis_concurrency: settings.rag_claude_concurrency,
            analysis_provider: settings.rag_analysis_provider(),
            analysis_model: settings.rag_analysis_model.clone(),
        }
    }
}

/// At worker start: checks that the RAG providers exist and logs which
/// ones `rag_ingestion` uses. A provider named in `RAG_EMBEDDING_PROVIDER`
/// or `RAG_ANALYSIS_PROVIDER` that is not configured stops the worker.
pub(crate) fn check_providers(settings: &Settings, llm: &Providers) -> anyhow::Result<()> {
    let rag = RagSettings::from_settings(settings);
    for (variable, provider) in [
        ("RAG_EMBEDDING_PROVIDER", &rag.embedding_provider),
        ("RAG_ANALYSIS_PROVIDER", &rag.analysis_provider),
    ] {
        llm.get(provider)
            .map_err(|error| anyhow::anyhow!("invalid setting {variable}: {error}"))?;
    }
    tracing::info!(
        embedding_provider = %rag.embedding_provider,
        embedding_model = %rag.embedding_model,
        analysis = rag.analysis,
        analysis_provider = %rag.analysis_provider,
        "rag_ingestion embeds with {}",
        rag.embedding_provider
    );
    Ok(())
}

pub(crate) struct RagIngestion;

/// One chunk of the document.
#[derive(Debug, Clone, PartialEq)]
struct Chunk {
    index: i32,
    seq: i64,
    /// The position of its segment in `seq` order.
    segment: usize,
    text: String,
}

/// The chunks of `segments` (already in `seq` order), numbered from 0.
fn plan_chunks(segments: &[RagSegment], limit: usize) -> Result<Vec<Chunk>, HandlerError> {
    let mut chunks = Vec::new();
    for (position, segment) in segments.iter().enumerate() {
        for text in chunker::chunk_text(&segment.text, limit) {
            let index = i32::try_from(chunks.len()).map_err(|_| {
                HandlerError::Permanent("rag_ingestion: too many chunks in one document".into())
            })?;
            chunks.push(Chunk {
                index,
                seq: segment.seq,
                segment: position,
                text,
            });
        }
    }
    Ok(chunks)
}

/// Which segments have all their chunks stored, and the progress messages
/// that says so.
struct SegmentProgress {
    /// Chunks of each segment not stored yet.
    remaining: Vec<usize>,
    done: usize,
    /// The share of the job's progress (in percent) the embedding covers.
    span: usize,
}

impl SegmentProgress {
    fn new(segments: usize, chunks: &[Chunk], stored: &HashSet<i32>, span: usize) -> Self {
        let mut remaining = vec![0; segments];
        for chunk in chunks.iter().filter(|c| !stored.contains(&c.index)) {
            remaining[chunk.segment] += 1;
        }
        let done = remaining.iter().filter(|r| **r == 0).count();
        Self {
            remaining,
            done,
            span,
        }
    }

    fn total(&self) -> usize {
        self.remaining.len()
    }

    /// Marks `batch` stored; returns a (percent, "segment i/N") entry per
    /// segment it completes.
    fn store(&mut self, batch: &[&Chunk]) -> Vec<(i16, String)> {
        let mut entries = Vec::new();
        for chunk in batch {
            self.remaining[chunk.segment] -= 1;
            if self.remaining[chunk.segment] == 0 {
                self.done += 1;
                entries.push(self.entry());
            }
        }
        entries
    }

    fn entry(&self) -> (i16, String) {
        let percent = (self.done * self.span / self.total().max(1)) as i16;
        (percent, format!("segment {}/{}", self.done, self.total()))
    }
}

#[async_trait::async_trait]
impl JobHandler for RagIngestion {
    async fn run(&self, ctx: JobContext) -> Result<Value, HandlerError> {
        let job = RagJob::parse(&ctx.payload)
            .map_err(|e| HandlerError::Permanent(format!("rag_ingestion payload: {e}")))?;
        let settings = RagSettings::from_settings(ctx.settings());
        let document_id = job.document_id.unwrap_or(ctx.job_id);
        let char_limit = job.chunk_char_limit.unwrap_or(settings.char_limit);
        let batch_size = job.embedding_batch.unwrap_or(settings.batch);
        let analysis = job.analysis.unwrap_or(settings.analysis);
        let chunks = plan_chunks(&job.segments, char_limit)?;
        let count = |n: usize| {
            i32::try_from(n).map_err(|_| HandlerError::Permanent("rag_ingestion: too big".into()))
        };

        let start = ctx
            .db
            .begin_rag_document(&NewRagDocument {
                id: document_id,
                user_id: ctx.user_id.as_deref(),
                title: job.title.as_deref(),
                job_id: ctx.job_id,
                chunk_char_limit: count(char_limit)?,
                embedding_provider: &settings.embedding_provider,
                embedding_model: &settings.embedding_model,
                segments: count(job.segments.len())?,
                chunks: count(chunks.len())?,
            })
            .await
            .map_err(retry)?;
        match start {
            RagDocumentStart::New | RagDocumentStart::Resumed => {}
            RagDocumentStart::Restarted => {
                ctx.log(&format!(
                    "document {document_id} existed with other chunking, model or job: rebuilding it"
                ))
                .await;
            }
            RagDocumentStart::Superseded => {
                return Err(HandlerError::Permanent(format!(
                    "documentId: document {document_id} is being rebuilt by a newer job"
                )));
            }
            RagDocumentStart::Foreign => {
                return Err(HandlerError::Permanent(format!(
                    "documentId: document {document_id} belongs to another user"
                )));
            }
        }

        let stored: HashSet<i32> = ctx
            .db
            .stored_rag_chunk_indexes(document_id)
            .await
            .map_err(retry)?
            .into_iter()
            .collect();
        let span = if analysis { 50 } else { 100 };
        let mut progress = SegmentProgress::new(job.segments.len(), &chunks, &stored, span);
        if !stored.is_empty() {
            ctx.log(&format!(
                "resuming: {} of {} chunks already stored ({} of {} segments done)",
                stored.len(),
                chunks.len(),
                progress.done,
                progress.total()
            ))
            .await;
            if progress.done > 0 {
                let (percent, message) = progress.entry();
                ctx.progress(percent.clamp(0, 100) as u8, Some(&message))
                    .await;
            }
        }
        let todo: Vec<&Chunk> = chunks
            .iter()
            .filter(|c| !stored.contains(&c.index))
            .collect();
        let embedder = ctx.llm.get(&settings.embedding_provider).map_err(failure)?;
        let calls = embed_and_store(
            &ctx,
            embedder.as_ref(),
            &settings.embedding_model,
            document_id,
            &todo,
            batch_size,
            &mut progress,
        )
        .await?;

        let analysed = if analysis {
            Some(analyse_segments(&ctx, &settings, document_id, &job.segments).await?)
        } else {
            None
        };
        ctx.db
            .finish_rag_document(document_id, ctx.job_id)
            .await
            .map_err(retry)?;
        ctx.progress(
            100,
            Some(&format!(
                "{} chunks of {} segments stored",
                chunks.len(),
                job.segments.len()
            )),
        )
        .await;
        let mut result = json!({
            "documentId": document_id,
            "chunks": chunks.len(),
            "segments": job.segments.len(),
            "resumedChunks": stored.len(),
            "embeddingCalls": calls,
            "embeddingProvider": settings.embedding_provider,
            "embeddingModel": settings.embedding_model,
        });
        if let Some(analysed) = analysed {
            result["analysedSegments"] = json!(analysed);
        }
        Ok(result)
    }
}

/// A batch embedded and ready to store, with the progress it makes.
struct Embedded {
    chunks: Vec<NewRagChunk>,
    progress: Vec<(i16, String)>,
}

/// Embeds `todo` in batches of `batch_size` and stores each batch; returns
/// the number of embedding requests. Storing batch *k* overlaps embedding
/// batch *k + 1*; batches are stored in order, so what is stored is always
/// a prefix of `todo`.
async fn embed_and_store(
    ctx: &JobContext,
    embedder: &dyn Provider,
    model: &str,
    document_id: uuid::Uuid,
    todo: &[&Chunk],
    batch_size: usize,
    progress: &mut SegmentProgress,
) -> Result<usize, HandlerError> {
    let store = |embedded: Option<Embedded>| async move {
        let Some(embedded) = embedded else {
            return Ok(());
        };
        let current = ctx
            .db
            .store_rag_chunks(
                ctx.job_id,
                ctx.attempt,
                document_id,
                &embedded.chunks,
                &embedded.progress,
            )
            .await
            .map_err(retry)?;
        if current {
            Ok(())
        } else {
            // Cancelled, reaped, or the document went to a newer job: this
            // attempt's outcome no longer counts.
            Err(HandlerError::Retry(
                "rag_ingestion: this attempt was superseded".into(),
            ))
        }
    };
    let mut pending: Option<Embedded> = None;
    let mut calls = 0;
    for batch in todo.chunks(batch_size) {
        let request = EmbeddingRequest::new(
            model,
            batch.iter().map(|chunk| chunk.text.clone()).collect(),
        );
        let (embedded, stored) = tokio::select! {
            both = async { tokio::join!(embedder.embed(&request), store(pending.take())) } => both,
            _ = ctx.cancel.cancelled() => {
                return Err(HandlerError::Retry("rag_ingestion interrupted".into()));
            }
        };
        stored?;
        let embeddings = embedded.map_err(failure)?;
        calls += 1;
        pending = Some(Embedded {
            chunks: batch
                .iter()
                .zip(embeddings.vectors)
                .map(|(chunk, vector)| NewRagChunk {
                    chunk_index: chunk.index,
                    seq: chunk.seq,
                    text: chunk.text.clone(),
                    embedding: roundhouse_llm::normalize(vector),
                })
                .collect(),
            progress: progress.store(batch),
        });
    }
    tokio::select! {
        stored = store(pending.take()) => stored?,
        _ = ctx.cancel.cancelled() => {
            return Err(HandlerError::Retry("rag_ingestion interrupted".into()));
        }
    }
    Ok(calls)
}

/// Analyses the segments that have no analysis yet, at most
/// `analysis_concurrency` at once; returns how many segments have one.
async fn analyse_segments(
    ctx: &JobContext,
    settings: &RagSettings,
    document_id: uuid::Uuid,
    segments: &[RagSegment],
) -> Result<usize, HandlerError> {
    let provider = ctx.llm.get(&settings.analysis_provider).map_err(failure)?;
    let done: HashSet<i64> = ctx
        .db
        .analysed_rag_segments(document_id)
        .await
        .map_err(retry)?
        .into_iter()
        .collect();
    let total = segments.len();
    let mut analysed = done.len();
    let provider = provider.as_ref();
    // Owned requests: a stream over borrowed segments would not be `Send`
    // for every lifetime, as the handler's future must be.
    let requests: Vec<(i64, ChatRequest)> = segments
        .iter()
        .filter(|segment| !done.contains(&segment.seq))
        .map(|segment| {
            let request = ChatRequest {
                max_tokens: Some(256),
                temperature: Some(0.2),
                ..ChatRequest::new(
                    settings.analysis_model.clone(),
                    vec![
                        ChatMessage::system(ANALYSIS_INSTRUCTIONS),
                        ChatMessage::user(segment.text.clone()),
                    ],
                )
            };
            (segment.seq, request)
        })
        .collect();
    let mut answers = futures::stream::iter(requests)
        .map(|(seq, request)| async move { (seq, provider.complete(&request).await) })
        .buffer_unordered(settings.analysis_concurrency.max(1));
    loop {
        let next = tokio::select! {
            next = answers.next() => next,
            _ = ctx.cancel.cancelled() => {
                return Err(HandlerError::Retry("rag_ingestion interrupted".into()));
            }
        };
        let Some((seq, answer)) = next else { break };
        let completion = answer.map_err(failure)?;
        let text: String = completion
            .output
            .trim()
            .chars()
            .take(MAX_ANALYSIS_CHARS)
            .collect();
        analysed += 1;
        let percent = (50 + analysed * 50 / total.max(1)) as i16;
        let current = ctx
            .db
            .store_rag_analysis(
                ctx.job_id,
                ctx.attempt,
                document_id,
                seq,
                &text,
                (provider.name(), &completion.model),
                (percent, &format!("analysis {analysed}/{total}")),
            )
            .await
            .map_err(retry)?;
        if !current {
            return Err(HandlerError::Retry(
                "rag_ingestion: this attempt was superseded".into(),
            ));
        }
    }
    Ok(analysed)
}

/// A database error: retry; what is stored stays stored.
fn retry(error: DbError) -> HandlerError {
    HandlerError::Retry(format!("rag_ingestion: {error}"))
}

/// A provider error as a job failure: retried when retrying can help, and
/// after the provider's `Retry-After` when it gave one.
fn failure(error: LlmError) -> HandlerError {
    let message = format!("rag_ingestion: {error}");
    match (error.is_retryable(), error.retry_after()) {
        (true, Some(after)) => HandlerError::RetryAfter(message, after),
        (true, None) => HandlerError::Retry(message),
        (false, _) => HandlerError::Permanent(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(seq: i64, text: &str) -> RagSegment {
        RagSegment {
            seq,
            text: text.to_owned(),
        }
    }

    #[test]
    fn chunks_are_numbered_through_the_document_and_keep_their_segment() {
        let segments = [
            segment(3, "Short one."),
            segment(7, "A longer segment. It has two sentences."),
        ];
        let chunks = plan_chunks(&segments, 20).unwrap();
        let summary: Vec<(i32, i64, usize, &str)> = chunks
            .iter()
            .map(|c| (c.index, c.seq, c.segment, c.text.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (0, 3, 0, "Short one."),
                (1, 7, 1, "A longer segment."),
                (2, 7, 1, "It has two"),
                (3, 7, 1, "sentences."),
            ]
        );
    }

    #[test]
    fn a_segment_counts_as_done_once_all_its_chunks_are_stored() {
        let segments = [segment(1, "aaa bbb"), segment(2, "ccc"), segment(3, "ddd")];
        let chunks = plan_chunks(&segments, 3).unwrap();
        assert_eq!(chunks.len(), 4);
        // A resumed attempt: chunk 0 (half of segment 1) is already stored.
        let mut progress = SegmentProgress::new(3, &chunks, &HashSet::from([0]), 100);
        assert_eq!(progress.done, 0);
        let refs: Vec<&Chunk> = chunks.iter().skip(1).collect();
        assert_eq!(
            progress.store(&refs[..2]),
            [
                (33, "segment 1/3".to_owned()),
                (66, "segment 2/3".to_owned())
            ]
        );
        assert_eq!(
            progress.store(&refs[2..]),
            [(100, "segment 3/3".to_owned())]
        );
    }
}
