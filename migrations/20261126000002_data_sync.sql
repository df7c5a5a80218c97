-- Where each data_sync job has got to. A worker writes the row after every
-- batch it has upserted (in the same transaction when the target is this
-- database); a retried or re-claimed attempt reads it and carries on from
-- there. `attempt` fences writes: a superseded attempt never moves the
-- checkpoint backwards. The row goes with its job.
CREATE TABLE data_sync_checkpoints (
    job_id        uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    -- http_pull: {"cursor": …} or {"page": n}; sql_copy: {"lastKey": […]}.
    -- It names the next batch to read.
    position      jsonb NOT NULL,
    -- The source is exhausted: a re-run attempt only reports the result.
    finished      boolean NOT NULL DEFAULT false,
    batches       bigint NOT NULL DEFAULT 0,
    records_read  bigint NOT NULL DEFAULT 0,
    inserted      bigint NOT NULL DEFAULT 0,
    updated       bigint NOT NULL DEFAULT 0,
    unchanged     bigint NOT NULL DEFAULT 0,
    -- How many records the source said it has, when it says.
    total         bigint,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
