-- The operators' dashboard (/admin/queues).
--
-- dashboard_sessions  one row per signed-in browser. The cookie holds a random
--                     token; only its SHA-256 is stored, so a read of this
--                     table cannot be replayed as a login. `csrf_token` is the
--                     synchroniser token every state-changing request must
--                     echo in `X-CSRF-Token`. Rows live in PostgreSQL so a
--                     session survives restarts and works on every replica.
-- audit_log           every dashboard action (and every sign-in), who did it,
--                     on what, from where. Append-only from the application's
--                     point of view.
CREATE TABLE dashboard_sessions (
    token_hash  bytea PRIMARY KEY,
    csrf_token  text NOT NULL,
    actor       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    target      text,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    client_ip   text
);

CREATE INDEX audit_log_at ON audit_log (at DESC);
