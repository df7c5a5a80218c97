-- Notifications the providers accepted, one row per (dedup key, channel,
-- recipient). A `notifications` job skips the recipients recorded under its
-- key, so a retry resends only to those that failed.
--
-- The dedup key is the job's idempotency key scoped by its user
-- (`key:<len(user)>:<user>:<key>`) when it has one, else `job:<job id>`.
-- Rows outlive their jobs on purpose (no foreign key): a job enqueued again
-- with the same idempotency key after retention deleted the first one does
-- not notify anyone twice. The maintenance cleanup deletes them after
-- `deliveryRetentionDays` (90 by default).
--
-- Recipients are URLs or push endpoints of up to 2 KiB: the unique index is
-- on their md5 to stay far below the B-tree entry size limit.
CREATE TABLE notification_deliveries (
    dedup_key    text NOT NULL,
    channel      text NOT NULL,
    recipient    text NOT NULL,
    job_id       uuid NOT NULL,
    provider_id  text,
    delivered_at timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX notification_deliveries_once
    ON notification_deliveries (dedup_key, channel, md5(recipient));

-- Retention (`cleanup_completed_jobs`, `deliveryRetentionDays`) deletes by age.
CREATE INDEX notification_deliveries_delivered_at ON notification_deliveries (delivered_at);
