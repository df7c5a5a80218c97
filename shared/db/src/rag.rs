//! RAG documents: their claim by an ingestion job, chunks stored batch by
//! batch with the job's progress, segment analyses, and search by cosine
//! similarity (see `migrations/20261126000001_rag.sql` for why embeddings
//! are `real[]` and not pgvector's `vector`).
//!
//! Every write made on behalf of a job attempt is fenced twice: by the
//! attempt (`attempts`, `status = 'processing'`), like every other attempt
//! write, and by the document's `job_id`, so that a job whose document was
//! taken over by a newer job stops writing to it.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::{Db, DbError};

/// A `rag_documents` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RagDocumentRow {
    pub id: Uuid,
    pub user_id: Option<String>,
    pub title: Option<String>,
    pub job_id: Uuid,
    pub chunk_char_limit: i32,
    pub embedding_provider: String,
    pub embedding_model: String,
    pub segments: i32,
    pub chunks: i32,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What an ingestion job is about to build.
#[derive(Debug, Clone)]
pub struct NewRagDocument<'a> {
    pub id: Uuid,
    pub user_id: Option<&'a str>,
    pub title: Option<&'a str>,
    pub job_id: Uuid,
    pub chunk_char_limit: i32,
    pub embedding_provider: &'a str,
    pub embedding_model: &'a str,
    pub segments: i32,
    pub chunks: i32,
}

/// The answer to [`Db::begin_rag_document`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RagDocumentStart {
    /// The document did not exist; it does now, empty.
    New,
    /// An earlier attempt of this job stored part of it with the same
    /// chunking and model: carry on from its chunks.
    Resumed,
    /// It existed with other chunking or another model, or from an older
    /// job: its chunks and analyses were deleted and the job owns it now.
    Restarted,
    /// A newer job is building it; this job must not touch it.
    Superseded,
    /// It belongs to another user.
    Foreign,
}

/// One embedded chunk to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRagChunk {
    pub chunk_index: i32,
    pub seq: i64,
    pub text: String,
    pub embedding: Vec<f32>,
}

/// A stored chunk.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RagChunkRow {
    pub document_id: Uuid,
    pub chunk_index: i32,
    pub seq: i64,
    pub text: String,
    pub embedding: Vec<f32>,
}

/// A stored segment analysis.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RagAnalysisRow {
    pub seq: i64,
    pub analysis: String,
    pub provider: String,
    pub model: String,
}

/// What to search for, and where.
#[derive(Debug, Clone)]
pub struct RagQuery<'a> {
    /// The query's embedding, by the same model as the documents'.
    pub embedding: &'a [f32],
    /// Only documents embedded with this model (others live in another
    /// vector space, even when their length matches).
    pub embedding_model: &'a str,
    /// Only this user's documents; `None` for every user's (the service).
    pub owner: Option<&'a str>,
    /// Only this document.
    pub document_id: Option<Uuid>,
    pub limit: i64,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RagHit {
    pub document_id: Uuid,
    pub chunk_index: i32,
    pub seq: i64,
    pub text: String,
    /// Cosine similarity to the query, from -1 to 1.
    pub score: f64,
}

impl Db {
    /// Makes `job` the builder of document `doc.id`, creating the document
    /// or deciding what becomes of the one there (see [`RagDocumentStart`]).
    ///
    /// One transaction, the row locked: two attempts racing for a document
    /// decide one after the other. Between two jobs, the one created later
    /// wins (a re-ingestion replaces the document); a job whose builder row
    /// has been deleted by retention counts as older.
    pub async fn begin_rag_document(
        &self,
        doc: &NewRagDocument<'_>,
    ) -> Result<RagDocumentStart, DbError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            r#"
            INSERT INTO rag_documents (id, user_id, title, job_id, chunk_char_limit,
                                       embedding_provider, embedding_model, segments, chunks)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (id) DO NOTHING
            "#,
        )
        .bind(doc.id)
        .bind(doc.user_id)
        .bind(doc.title)
        .bind(doc.job_id)
        .bind(doc.chunk_char_limit)
        .bind(doc.embedding_provider)
        .bind(doc.embedding_model)
        .bind(doc.segments)
        .bind(doc.chunks)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            tx.commit().await?;
            return Ok(RagDocumentStart::New);
        }

        let (existing, builder_is_older): (RagDocumentRow, bool) = {
            let row: RagDocumentRow = sqlx::query_as(
                r#"
                SELECT * FROM rag_documents WHERE id = $1 FOR UPDATE
                "#,
            )
            .bind(doc.id)
            .fetch_one(&mut *tx)
            .await?;
            let older: bool = sqlx::query_scalar(
                r#"
                SELECT NOT EXISTS (
                    SELECT 1 FROM jobs builder, jobs me
                     WHERE builder.id = $1 AND me.id = $2
                       AND (builder.created_at, builder.id) > (me.created_at, me.id)
                )
                "#,
            )
            .bind(row.job_id)
            .bind(doc.job_id)
            .fetch_one(&mut *tx)
            .await?;
            (row, older)
        };
        if existing.user_id.as_deref() != doc.user_id {
            return Ok(RagDocumentStart::Foreign);
        }
        let same_plan = existing.chunk_char_limit == doc.chunk_char_limit
            && existing.embedding_provider == doc.embedding_provider
            && existing.embedding_model == doc.embedding_model
            && existing.segments == doc.segments
            && existing.chunks == doc.chunks;
        if existing.job_id == doc.job_id && same_plan {
            return Ok(RagDocumentStart::Resumed);
        }
        if existing.job_id != doc.job_id && !builder_is_older {
            return Ok(RagDocumentStart::Superseded);
        }
        for statement in [
            r#"DELETE FROM rag_chunks WHERE document_id = $1"#,
            r#"DELETE FROM rag_segment_analyses WHERE document_id = $1"#,
        ] {
            sqlx::query(statement)
                .bind(doc.id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            r#"
            UPDATE rag_documents
               SET title = $2, job_id = $3, chunk_char_limit = $4, embedding_provider = $5,
                   embedding_model = $6, segments = $7, chunks = $8, completed_at = NULL,
                   updated_at = now()
             WHERE id = $1
            "#,
        )
        .bind(doc.id)
        .bind(doc.title)
        .bind(doc.job_id)
        .bind(doc.chunk_char_limit)
        .bind(doc.embedding_provider)
        .bind(doc.embedding_model)
        .bind(doc.segments)
        .bind(doc.chunks)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RagDocumentStart::Restarted)
    }

    /// The `chunk_index`es of the chunks stored for a document, ascending.
    pub async fn stored_rag_chunk_indexes(&self, document_id: Uuid) -> Result<Vec<i32>, DbError> {
        Ok(sqlx::query_scalar(
            r#"
            SELECT chunk_index FROM rag_chunks WHERE document_id = $1 ORDER BY chunk_index
            "#,
        )
        .bind(document_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Stores one batch of embedded chunks and, in the same statement, the
    /// attempt's progress: a `progress` event per entry of `progress`
    /// (percent, message), the job's `progress` set to the last one.
    ///
    /// Fenced by the attempt and by the document's builder: `false` (and
    /// nothing written) when the attempt was superseded or the document
    /// taken over. A chunk already stored is left as it is.
    pub async fn store_rag_chunks(
        &self,
        job_id: Uuid,
        attempt: i32,
        document_id: Uuid,
        chunks: &[NewRagChunk],
        progress: &[(i16, String)],
    ) -> Result<bool, DbError> {
        let dimensions = chunks.first().map_or(0, |c| c.embedding.len());
        if chunks.iter().any(|c| c.embedding.len() != dimensions) {
            return Err(DbError::Invalid(
                "the embeddings of one batch differ in length".to_owned(),
            ));
        }
        let dimensions = i32::try_from(dimensions)
            .map_err(|_| DbError::Invalid("embeddings too long".to_owned()))?;
        let indexes: Vec<i32> = chunks.iter().map(|c| c.chunk_index).collect();
        let seqs: Vec<i64> = chunks.iter().map(|c| c.seq).collect();
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        // A 2-D array would be unnested element by element: pass the
        // vectors end to end and slice each one back out.
        let flat: Vec<f32> = chunks
            .iter()
            .flat_map(|c| c.embedding.iter().copied())
            .collect();
        let percents: Vec<i32> = progress.iter().map(|(p, _)| i32::from(*p)).collect();
        let messages: Vec<&str> = progress.iter().map(|(_, m)| m.as_str()).collect();
        let fenced: i64 = sqlx::query_scalar(
            r#"
            WITH fence AS (
                SELECT j.id, j.attempts
                  FROM jobs j
                  JOIN rag_documents d ON d.id = $3 AND d.job_id = j.id
                 WHERE j.id = $1 AND j.attempts = $2 AND j.status = 'processing'
            ), chunks AS (
                INSERT INTO rag_chunks (document_id, chunk_index, seq, text, embedding)
                SELECT $3, c.chunk_index, c.seq, c.text,
                       ($7::real[])[(c.ord - 1) * $8 + 1 : c.ord * $8]
                  FROM fence,
                       unnest($4::int[], $5::bigint[], $6::text[])
                           WITH ORDINALITY AS c(chunk_index, seq, text, ord)
                ON CONFLICT (document_id, chunk_index) DO NOTHING
            ), job AS (
                UPDATE jobs j
                   SET progress = least(greatest(($9::int[])[cardinality($9::int[])], 0), 100),
                       progress_message = ($10::text[])[cardinality($10::text[])]
                  FROM fence
                 WHERE j.id = fence.id AND cardinality($9::int[]) > 0
            ), events AS (
                INSERT INTO job_events (job_id, attempt, kind, data)
                SELECT fence.id, fence.attempts, 'progress',
                       jsonb_build_object('progress', least(greatest(p.percent, 0), 100),
                                          'message', p.message)
                  FROM fence,
                       unnest($9::int[], $10::text[]) WITH ORDINALITY AS p(percent, message, ord)
                 ORDER BY p.ord
            )
            SELECT count(*) FROM fence
            "#,
        )
        .bind(job_id)
        .bind(attempt)
        .bind(document_id)
        .bind(&indexes)
        .bind(&seqs)
        .bind(&texts)
        .bind(&flat)
        .bind(dimensions)
        .bind(&percents)
        .bind(&messages)
        .fetch_one(&self.pool)
        .await?;
        Ok(fenced == 1)
    }

    /// The `seq`s of the segments of a document that have an analysis.
    pub async fn analysed_rag_segments(&self, document_id: Uuid) -> Result<Vec<i64>, DbError> {
        Ok(sqlx::query_scalar(
            r#"
            SELECT seq FROM rag_segment_analyses WHERE document_id = $1 ORDER BY seq
            "#,
        )
        .bind(document_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Stores a segment's analysis with a `progress` event, fenced like
    /// [`Db::store_rag_chunks`]. An analysis already stored is kept.
    #[allow(clippy::too_many_arguments)]
    pub async fn store_rag_analysis(
        &self,
        job_id: Uuid,
        attempt: i32,
        document_id: Uuid,
        seq: i64,
        analysis: &str,
        (provider, model): (&str, &str),
        (percent, message): (i16, &str),
    ) -> Result<bool, DbError> {
        let fenced: i64 = sqlx::query_scalar(
            r#"
            WITH fence AS (
                SELECT j.id, j.attempts
                  FROM jobs j
                  JOIN rag_documents d ON d.id = $3 AND d.job_id = j.id
                 WHERE j.id = $1 AND j.attempts = $2 AND j.status = 'processing'
            ), analysis AS (
                INSERT INTO rag_segment_analyses (document_id, seq, analysis, provider, model)
                SELECT $3, $4, $5, $6, $7 FROM fence
                ON CONFLICT (document_id, seq) DO NOTHING
            ), job AS (
                UPDATE jobs j SET progress = $8, progress_message = $9
                  FROM fence WHERE j.id = fence.id
            ), events AS (
                INSERT INTO job_events (job_id, attempt, kind, data)
                SELECT fence.id, fence.attempts, 'progress',
                       jsonb_build_object('progress', $8::int, 'message', $9::text)
                  FROM fence
            )
            SELECT count(*) FROM fence
            "#,
        )
        .bind(job_id)
        .bind(attempt)
        .bind(document_id)
        .bind(seq)
        .bind(analysis)
        .bind(provider)
        .bind(model)
        .bind(percent.clamp(0, 100))
        .bind(message)
        .fetch_one(&self.pool)
        .await?;
        Ok(fenced == 1)
    }

    /// Marks a document complete, if `job_id` still builds it.
    pub async fn finish_rag_document(
        &self,
        document_id: Uuid,
        job_id: Uuid,
    ) -> Result<bool, DbError> {
        let updated = sqlx::query(
            r#"
            UPDATE rag_documents SET completed_at = now(), updated_at = now()
             WHERE id = $1 AND job_id = $2
            "#,
        )
        .bind(document_id)
        .bind(job_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    /// A document, if it exists and (for `Some(owner)`) belongs to `owner`.
    pub async fn rag_document(
        &self,
        id: Uuid,
        owner: Option<&str>,
    ) -> Result<Option<RagDocumentRow>, DbError> {
        Ok(sqlx::query_as(
            r#"
            SELECT * FROM rag_documents
             WHERE id = $1 AND ($2::text IS NULL OR user_id = $2)
            "#,
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A document's stored chunks, in order.
    pub async fn rag_chunks(&self, document_id: Uuid) -> Result<Vec<RagChunkRow>, DbError> {
        Ok(sqlx::query_as(
            r#"
            SELECT document_id, chunk_index, seq, text, embedding
              FROM rag_chunks
             WHERE document_id = $1
             ORDER BY chunk_index
            "#,
        )
        .bind(document_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A document's segment analyses, by `seq`.
    pub async fn rag_analyses(&self, document_id: Uuid) -> Result<Vec<RagAnalysisRow>, DbError> {
        Ok(sqlx::query_as(
            r#"
            SELECT seq, analysis, provider, model
              FROM rag_segment_analyses
             WHERE document_id = $1
             ORDER BY seq
            "#,
        )
        .bind(document_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The `limit` chunks most similar to the query (highest cosine first;
    /// ties by document and position), among the documents it may see that
    /// were embedded with the query's model.
    pub async fn search_rag_chunks(&self, query: &RagQuery<'_>) -> Result<Vec<RagHit>, DbError> {
        let dimensions = i32::try_from(query.embedding.len())
            .map_err(|_| DbError::Invalid("query embedding too long".to_owned()))?;
        // Built per request, like `list_jobs`: a generic plan with
        // "$n IS NULL OR …" could not use rag_documents_user.
        let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(
            r#"
            SELECT c.document_id, c.chunk_index, c.seq, c.text,
                   rag_cosine(c.embedding, "#,
        );
        sql.push_bind(query.embedding.to_vec()).push(
            r#"::real[]) AS score
              FROM rag_documents d
              JOIN rag_chunks c ON c.document_id = d.id
             WHERE d.embedding_model = "#,
        );
        sql.push_bind(query.embedding_model.to_owned())
            .push(" AND cardinality(c.embedding) = ")
            .push_bind(dimensions);
        if let Some(owner) = query.owner {
            sql.push(" AND d.user_id = ").push_bind(owner.to_owned());
        }
        if let Some(document_id) = query.document_id {
            sql.push(" AND d.id = ").push_bind(document_id);
        }
        sql.push(" ORDER BY score DESC, c.document_id, c.chunk_index LIMIT ")
            .push_bind(query.limit);
        Ok(sql.build_query_as().fetch_all(&self.pool).await?)
    }
}
