-- Cron schedules (the beat replacement), the columns that tie a job to the
-- tick that created it, and the index the retention cleanup walks.
--
--   schedules_name      one name per owner (NULL owner: the service's own)
--   schedules_due       the scheduler's "which schedules are due" probe; also
--                       finds rows whose next_run_at is not computed yet (NULL)
--   jobs_schedule_tick  exactly one job per (schedule, tick): the guarantee
--                       that two scheduler replicas, or a restart mid-tick,
--                       never fire a tick twice. Manual triggers have no tick.
--   jobs_finished       cleanup_completed_jobs deletes finished jobs oldest first

CREATE TABLE schedules (
    id                    uuid PRIMARY KEY,
    name                  text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    owner_id              text,
    cron                  text NOT NULL,
    timezone              text NOT NULL DEFAULT 'UTC',
    queue                 text NOT NULL,
    job_type              text NOT NULL,
    payload               jsonb NOT NULL DEFAULT '{}'::jsonb,
    priority              integer NOT NULL DEFAULT 0,
    -- NULL: the job type's default.
    max_retries           integer CHECK (max_retries IS NULL OR max_retries >= 0),
    timeout_seconds       integer CHECK (timeout_seconds IS NULL OR timeout_seconds > 0),
    enabled               boolean NOT NULL DEFAULT true,
    misfire_policy        text NOT NULL DEFAULT 'run_once'
                          CHECK (misfire_policy IN ('skip', 'run_once', 'catch_up')),
    misfire_grace_seconds integer NOT NULL DEFAULT 60 CHECK (misfire_grace_seconds BETWEEN 0 AND 3600),
    catch_up_limit        integer NOT NULL DEFAULT 100 CHECK (catch_up_limit BETWEEN 1 AND 1000),
    jitter_seconds        integer NOT NULL DEFAULT 0 CHECK (jitter_seconds BETWEEN 0 AND 3600),
    -- The tick the schedule waits for. It stays put while the schedule is
    -- disabled, so re-enabling it applies the misfire policy to what it missed.
    next_run_at           timestamptz,
    last_run_at           timestamptz,
    last_job_id           uuid,
    -- Why the scheduler could not plan this schedule (it is then left alone).
    last_error            text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX schedules_name ON schedules (coalesce(owner_id, ''), name);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE enabled;

ALTER TABLE jobs ADD COLUMN schedule_id uuid, ADD COLUMN schedule_tick timestamptz;
CREATE UNIQUE INDEX jobs_schedule_tick ON jobs (schedule_id, schedule_tick)
    WHERE schedule_tick IS NOT NULL;
CREATE INDEX jobs_finished ON jobs (completed_at)
    WHERE status IN ('completed', 'failed', 'cancelled');

-- The built-in maintenance schedules. Edit or disable them like any other;
-- the scheduler computes their first tick.
INSERT INTO schedules (id, name, cron, queue, job_type, payload, misfire_policy) VALUES
    (gen_random_uuid(), 'cleanup_completed_jobs', '17 3 * * *', 'maintenance', 'maintenance',
     '{"action": "cleanup_completed_jobs", "parameters": {"retentionDays": 7, "failedRetentionDays": 30}}',
     'run_once'),
    (gen_random_uuid(), 'requeue_stuck_jobs', '*/5 * * * *', 'maintenance', 'maintenance',
     '{"action": "requeue_stuck_jobs", "parameters": {}}',
     'skip');
