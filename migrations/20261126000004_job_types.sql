-- Custom job types: names beyond the built-in ones that some worker runs,
-- through an HTTP endpoint (HTTP_HANDLERS) or a handler compiled into it.
-- Workers upsert the types they run at start; the api accepts a custom
-- jobType only when it is registered here, so a typo is a 422 at enqueue
-- rather than a job that waits forever for a handler.
CREATE TABLE job_types (
    name           text PRIMARY KEY,
    queue          text NOT NULL,
    -- 'http' or 'embedded'
    handler        text NOT NULL CHECK (handler IN ('http', 'embedded')),
    registered_by  text NOT NULL,
    registered_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now()
);

-- One bearer token per job attempt, handed to an HTTP handler so that it can
-- report progress and log lines back through the api. Only its SHA-256 is
-- stored; the attempt number fences a superseded attempt's token.
CREATE TABLE job_callback_tokens (
    job_id      uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    token_hash  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
