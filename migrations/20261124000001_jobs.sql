-- Jobs, their per-attempt timeline, and queue settings.
--
-- Index design (each one earns its write cost):
--   jobs_pkey                      claim, completion, heartbeat and every lookup by id
--   jobs_idempotency               one job per (user, idempotencyKey)
--   jobs_scheduled_due             the scheduler's promotion of due delayed/retry jobs
--   jobs_processing_lease          the scheduler's reaper of expired leases
--   jobs_queued_dispatch           the dispatch sweep and waiting-age queries
--   jobs_user_list                 a user's own jobs, newest first (cursor pagination);
--                                  partial: service-level jobs without a user skip it
--   jobs_queue_status              service listing by queue/status and queue statistics
-- Columns that change on the hot path without being indexed (dispatched_at,
-- progress, result) allow HOT updates; fillfactor leaves room for them.

CREATE TABLE queues (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9_-]{1,64}$'),
    concurrency integer CHECK (concurrency IS NULL OR concurrency BETWEEN 1 AND 10000),
    paused      boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO queues (name) VALUES
    ('default'), ('llm_processing'), ('data_sync'), ('notifications'),
    ('maintenance'), ('rag_ingestion'), ('agents');

CREATE TABLE jobs (
    id               uuid PRIMARY KEY,
    queue            text NOT NULL,
    job_type         text NOT NULL,
    user_id          text,
    payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
    status           text NOT NULL CHECK (status IN
                        ('queued', 'scheduled', 'processing', 'completed', 'failed', 'cancelled')),
    priority         integer NOT NULL DEFAULT 0,
    -- Attempts started so far. Never decreases: it is the fencing token that
    -- lets the database refuse writes from a superseded attempt.
    attempts         integer NOT NULL DEFAULT 0,
    -- attempts at the last manual retry; the retry budget counts from here.
    attempt_base     integer NOT NULL DEFAULT 0,
    max_retries      integer NOT NULL CHECK (max_retries >= 0),
    run_at           timestamptz NOT NULL DEFAULT now(),
    timeout_seconds  integer NOT NULL CHECK (timeout_seconds > 0),
    idempotency_key  text,
    progress         smallint NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    progress_message text,
    result           jsonb,
    error            text,
    worker_id        text,
    lease_expires_at timestamptz,
    -- When the job last entered `queued`; NULL dispatched_at older than a
    -- grace period means its dispatch message was never confirmed.
    queued_at        timestamptz,
    dispatched_at    timestamptz,
    traceparent      text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz
) WITH (fillfactor = 80);

CREATE UNIQUE INDEX jobs_idempotency ON jobs (coalesce(user_id, ''), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_scheduled_due ON jobs (run_at) WHERE status = 'scheduled';
CREATE INDEX jobs_processing_lease ON jobs (lease_expires_at) WHERE status = 'processing';
CREATE INDEX jobs_queued_dispatch ON jobs (queue, queued_at) WHERE status = 'queued';
CREATE INDEX jobs_user_list ON jobs (user_id, id DESC) WHERE user_id IS NOT NULL;
CREATE INDEX jobs_queue_status ON jobs (queue, status, id DESC);

-- The per-attempt timeline: status changes, progress, log lines, stream chunks.
-- No foreign key to jobs: every insert derives its job_id from a jobs row in
-- the same statement, and the per-row RI trigger and row lock cost ~30 % of
-- end-to-end throughput (measured with `make bench`). Whatever deletes jobs
-- deletes their events in the same transaction.
CREATE TABLE job_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id     uuid NOT NULL,
    attempt    integer NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('status', 'progress', 'log', 'chunk')),
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX job_events_by_job ON job_events (job_id, id);
