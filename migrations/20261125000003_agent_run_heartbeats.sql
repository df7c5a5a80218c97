-- A running agent run's executor renews heartbeat_at while it works; the
-- scheduler fails (and refunds) runs whose executor stopped renewing it.
ALTER TABLE agent_runs ADD COLUMN heartbeat_at timestamptz;
UPDATE agent_runs SET heartbeat_at = coalesce(started_at, created_at) WHERE status = 'running';
CREATE INDEX agent_runs_running ON agent_runs (heartbeat_at) WHERE status = 'running';
