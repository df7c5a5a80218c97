-- Operational alerts, sent by the scheduler's alerter to ALERT_WEBHOOK_URL.
-- Every replica runs the alerter; these tables make them agree, so that an
-- alert goes out once however many run.
--
-- alert_state   one row per detector (failed jobs, long runs, lost workers,
--               queue backlogs, the suppressed-alerts note). A replica
--               evaluates a detector only while it holds the row
--               (FOR UPDATE SKIP LOCKED, in the transaction that records and
--               sends the detector's alerts). `watermark` is where the next
--               window of an event detector starts; NULL before its first pass.
-- alerts        one row per fingerprint ("job_failed:<id>:<attempt>",
--               "queue_backlog:<queue>", …): the dedup record. An alert is
--               sent only by the transaction that inserts its row or re-arms
--               it (last_sent_at older than the repeat interval).
--               `last_seen_at` is refreshed while the condition persists;
--               rows not seen for a day (or the repeat interval) are pruned.
-- alert_budget  the global rate limit (ALERT_MAX_PER_HOUR): the send times of
--               the last hour and what was suppressed since the last
--               "N alerts suppressed" note. One row; updating it serialises
--               sending across replicas.
CREATE TABLE alert_state (
    detector   text PRIMARY KEY,
    watermark  timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alerts (
    fingerprint  text PRIMARY KEY,
    kind         text NOT NULL,
    first_seen   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    last_sent_at timestamptz NOT NULL DEFAULT now(),
    occurrences  integer NOT NULL DEFAULT 1,
    resolved_at  timestamptz
);

CREATE TABLE alert_budget (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    sent_at    timestamptz[] NOT NULL DEFAULT '{}',
    -- {"<kind>": <count>} suppressed since the last note
    suppressed jsonb NOT NULL DEFAULT '{}'::jsonb
);

INSERT INTO alert_budget DEFAULT VALUES;

-- The lost-worker detector reads the reaper's events in a time window. The
-- index holds only those rare events, so the hot inserts of progress, log and
-- chunk events pay for nothing but the predicate.
CREATE INDEX job_events_lease_lost ON job_events (created_at)
    WHERE kind = 'status' AND (data ->> 'reason') = 'lease expired';
