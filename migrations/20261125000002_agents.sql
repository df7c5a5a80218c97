-- Agents, their runs, and the credits that pay for them (SPEC §5).
--
--   agents_owner        an owner's agents, oldest first
--   agent_runs_user     a user's runs, newest first
--   agent_run_chunks    a run's streamed output, in order: a client that lost
--                       its stream re-attaches from an offset
--   credit_ledger_user  a user's credit history
--
-- Credits: a run reserves its worst-case cost before it starts (one
-- conditional UPDATE, so concurrent runs can never overdraw) and settles
-- after: the unused part of the reservation is refunded; a failed run is
-- refunded in full. Every movement is written to credit_ledger.

CREATE TABLE agents (
    id            uuid PRIMARY KEY,
    owner_id      text NOT NULL,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    system_prompt text NOT NULL DEFAULT '',
    provider      text NOT NULL DEFAULT 'dev' CHECK (provider ~ '^[a-z0-9_-]{1,64}$'),
    model         text NOT NULL DEFAULT '' CHECK (length(model) <= 200),
    temperature   real CHECK (temperature IS NULL OR temperature BETWEEN 0 AND 2),
    max_tokens    integer CHECK (max_tokens IS NULL OR max_tokens BETWEEN 1 AND 200000),
    is_heavy      boolean NOT NULL DEFAULT false,
    is_published  boolean NOT NULL DEFAULT false,
    railway_url   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agents_owner ON agents (owner_id, id);

CREATE TABLE user_credits (
    user_id    text PRIMARY KEY,
    balance    bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE credit_ledger (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    text NOT NULL,
    delta      bigint NOT NULL,
    reason     text NOT NULL CHECK (reason IN ('grant', 'reserve', 'refund', 'deduct')),
    run_id     uuid,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credit_ledger_user ON credit_ledger (user_id, id DESC);

CREATE TABLE agent_runs (
    id               uuid PRIMARY KEY,
    agent_id         uuid NOT NULL,
    user_id          text NOT NULL,
    mode             text NOT NULL CHECK (mode IN ('sync', 'stream', 'async')),
    status           text NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    job_id           uuid,
    messages         jsonb NOT NULL,
    output           text NOT NULL DEFAULT '',
    usage            jsonb,
    credits_reserved bigint NOT NULL DEFAULT 0 CHECK (credits_reserved >= 0),
    credits_used     bigint CHECK (credits_used IS NULL OR credits_used >= 0),
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz
);
CREATE INDEX agent_runs_user ON agent_runs (user_id, id DESC);

CREATE TABLE agent_run_chunks (
    run_id  uuid NOT NULL,
    seq     integer NOT NULL,
    content text NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- The seeds' `deduct_credits` for apps that call it directly (e.g. through
-- Supabase RPC): takes `amount` if the balance covers it, atomically.
CREATE FUNCTION deduct_credits(p_user_id text, p_amount bigint) RETURNS boolean
LANGUAGE sql AS $$
    WITH taken AS (
        UPDATE user_credits SET balance = balance - p_amount, updated_at = now()
         WHERE user_id = p_user_id AND balance >= p_amount AND p_amount >= 0
        RETURNING user_id
    ), logged AS (
        INSERT INTO credit_ledger (user_id, delta, reason)
        SELECT user_id, -p_amount, 'deduct' FROM taken
    )
    SELECT EXISTS (SELECT 1 FROM taken)
$$;
