-- RAG ingestion (SPEC §2 `rag_ingestion`): documents, their embedded chunks,
-- and optional per-segment analyses; searched by GET /api/rag/search.
--
--   rag_documents_user  a user's documents (search is always scoped to them)
--
-- Embeddings are `real[]`, not pgvector's `vector`: pgvector is an extension
-- that many PostgreSQL deployments (and this project's CI) do not have, and
-- one schema that works everywhere beats two code paths of which one is
-- never exercised. Search is scoped to one caller's documents, so it scans
-- that user's chunks and scores each with rag_cosine() below; an approximate
-- index (pgvector's HNSW) would only pay off at far larger per-user corpora.
--
-- A document is built by one job at a time (`job_id`). Chunks are written
-- batch by batch, each batch in the statement that records its progress, so
-- a job that dies resumes from the chunks already stored: their
-- `chunk_index`es are skipped, never embedded again. The chunking and the
-- embedding model are recorded on the document; an attempt that would chunk
-- or embed differently starts the document over rather than mixing them.

CREATE TABLE rag_documents (
    id                 uuid PRIMARY KEY,
    user_id            text,
    title              text CHECK (title IS NULL OR length(title) <= 500),
    job_id             uuid NOT NULL,
    chunk_char_limit   integer NOT NULL CHECK (chunk_char_limit > 0),
    embedding_provider text NOT NULL,
    embedding_model    text NOT NULL,
    segments           integer NOT NULL CHECK (segments >= 0),
    chunks             integer NOT NULL CHECK (chunks >= 0),
    completed_at       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rag_documents_user ON rag_documents (user_id, id);

CREATE TABLE rag_chunks (
    document_id uuid NOT NULL REFERENCES rag_documents (id) ON DELETE CASCADE,
    chunk_index integer NOT NULL CHECK (chunk_index >= 0),
    -- The `seq` of the transcript segment the chunk comes from.
    seq         bigint NOT NULL,
    text        text NOT NULL,
    -- Normalised to length 1 by the worker; rag_cosine() does not rely on it.
    embedding   real[] NOT NULL CHECK (cardinality(embedding) > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (document_id, chunk_index)
);

CREATE TABLE rag_segment_analyses (
    document_id uuid NOT NULL REFERENCES rag_documents (id) ON DELETE CASCADE,
    seq         bigint NOT NULL,
    analysis    text NOT NULL,
    provider    text NOT NULL,
    model       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (document_id, seq)
);

-- The cosine similarity of two vectors of the same length; 0 when either is
-- all zeros. Summed in double precision.
CREATE FUNCTION rag_cosine(a real[], b real[]) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT CASE WHEN s.aa = 0 OR s.bb = 0 THEN 0
                ELSE s.ab / (sqrt(s.aa) * sqrt(s.bb)) END
      FROM (SELECT coalesce(sum(x::float8 * y::float8), 0) AS ab,
                   coalesce(sum(x::float8 * x::float8), 0) AS aa,
                   coalesce(sum(y::float8 * y::float8), 0) AS bb
              FROM unnest(a, b) AS v(x, y)) AS s
$$;
