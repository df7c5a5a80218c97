//! Agents, agent runs and credits (SPEC §5).
//!
//! Credits are reserved before a run starts, in the same transaction that
//! records the run, by one conditional UPDATE (`balance >= amount`): however
//! many runs start at once, the balance never goes negative. Settling a run
//! refunds what it did not use; failing it refunds everything. Both happen
//! only once per run (they move it out of `queued`/`running`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Db, DbError};

/// An `agents` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgentRow {
    pub id: Uuid,
    pub owner_id: String,
    pub name: String,
    pub system_prompt: String,
    pub provider: String,
    pub model: String,
    pub temperature: Option<f32>,
    pub max_tokens: Option<i32>,
    pub is_heavy: bool,
    pub is_published: bool,
    pub railway_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An agent's settings, as written by create and update.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub name: String,
    pub system_prompt: String,
    pub provider: String,
    pub model: String,
    pub temperature: Option<f32>,
    pub max_tokens: Option<i32>,
    pub is_heavy: bool,
    pub is_published: bool,
    pub railway_url: Option<String>,
}

impl AgentSpec {
    /// The settings of a stored agent (the base an update edits).
    pub fn of(row: &AgentRow) -> Self {
        Self {
            name: row.name.clone(),
            system_prompt: row.system_prompt.clone(),
            provider: row.provider.clone(),
            model: row.model.clone(),
            temperature: row.temperature,
            max_tokens: row.max_tokens,
            is_heavy: row.is_heavy,
            is_published: row.is_published,
            railway_url: row.railway_url.clone(),
        }
    }
}

/// An `agent_runs` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgentRunRow {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub user_id: String,
    pub mode: String,
    pub status: String,
    pub job_id: Option<Uuid>,
    pub messages: serde_json::Value,
    pub output: String,
    pub usage: Option<serde_json::Value>,
    pub credits_reserved: i64,
    pub credits_used: Option<i64>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Renewed by the executor while the run is running.
    pub heartbeat_at: Option<DateTime<Utc>>,
}

/// A run to record.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub user_id: String,
    /// `sync`, `stream` or `async`.
    pub mode: String,
    pub messages: serde_json::Value,
    /// Credits to reserve: the run's worst-case cost.
    pub reserve: i64,
    /// The job that will run it (async mode), inserted in the same
    /// transaction; the run is then `queued` until the job starts it.
    pub job: Option<crate::NewJob>,
}

/// The outcome of [`Db::start_run`].
#[derive(Debug, Clone)]
pub enum RunStart {
    /// Credits reserved and the run recorded (`running`, or `queued` when it
    /// has a job).
    Started(Box<AgentRunRow>),
    /// The balance does not cover the reservation; nothing was recorded.
    InsufficientCredits { balance: i64, needed: i64 },
}

impl Db {
    /// Stores a new agent.
    pub async fn create_agent(
        &self,
        id: Uuid,
        owner: &str,
        spec: &AgentSpec,
    ) -> Result<AgentRow, DbError> {
        Ok(sqlx::query_as(
            r#"
            INSERT INTO agents (id, owner_id, name, system_prompt, provider, model, temperature,
                                max_tokens, is_heavy, is_published, railway_url)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            RETURNING *
            "#,
        )
        .bind(id)
        .bind(owner)
        .bind(&spec.name)
        .bind(&spec.system_prompt)
        .bind(&spec.provider)
        .bind(&spec.model)
        .bind(spec.temperature)
        .bind(spec.max_tokens)
        .bind(spec.is_heavy)
        .bind(spec.is_published)
        .bind(&spec.railway_url)
        .fetch_one(&self.pool)
        .await?)
    }

    /// One agent, whoever owns it (callers decide who may see or run it).
    pub async fn get_agent(&self, id: Uuid) -> Result<Option<AgentRow>, DbError> {
        Ok(sqlx::query_as("SELECT * FROM agents WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// A page of agents in creation order after `after`: `owner`'s own (all
    /// agents when `None`).
    pub async fn list_agents(
        &self,
        owner: Option<&str>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<AgentRow>, DbError> {
        Ok(sqlx::query_as(
            r#"
            SELECT * FROM agents
             WHERE ($1::text IS NULL OR owner_id = $1) AND ($2::uuid IS NULL OR id > $2)
             ORDER BY id
             LIMIT $3
            "#,
        )
        .bind(owner)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A page of published agents, anyone's, in creation order after `after`.
    pub async fn list_published_agents(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<AgentRow>, DbError> {
        Ok(sqlx::query_as(
            r#"
            SELECT * FROM agents
             WHERE is_published AND ($1::uuid IS NULL OR id > $1)
             ORDER BY id
             LIMIT $2
            "#,
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Rewrites an agent's settings, if it exists and (when `owner` is given)
    /// belongs to that user.
    pub async fn update_agent(
        &self,
        id: Uuid,
        owner: Option<&str>,
        spec: &AgentSpec,
    ) -> Result<Option<AgentRow>, DbError> {
        Ok(sqlx::query_as(
            r#"
            UPDATE agents
               SET name = $3, system_prompt = $4, provider = $5, model = $6, temperature = $7,
                   max_tokens = $8, is_heavy = $9, is_published = $10, railway_url = $11,
                   updated_at = now()
             WHERE id = $1 AND ($2::text IS NULL OR owner_id = $2)
            RETURNING *
            "#,
        )
        .bind(id)
        .bind(owner)
        .bind(&spec.name)
        .bind(&spec.system_prompt)
        .bind(&spec.provider)
        .bind(&spec.model)
        .bind(spec.temperature)
        .bind(spec.max_tokens)
        .bind(spec.is_heavy)
        .bind(spec.is_published)
        .bind(&spec.railway_url)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Deletes an agent. Its runs stay.
    pub async fn delete_agent(&self, id: Uuid, owner: Option<&str>) -> Result<bool, DbError> {
        let done =
            sqlx::query("DELETE FROM agents WHERE id = $1 AND ($2::text IS NULL OR owner_id = $2)")
                .bind(id)
                .bind(owner)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A user's credit balance (0 for a user never granted any).
    pub async fn credit_balance(&self, user: &str) -> Result<i64, DbError> {
        let balance: Option<i64> =
            sqlx::query_scalar("SELECT balance FROM user_credits WHERE user_id = $1")
                .bind(user)
                .fetch_optional(&self.pool)
                .await?;
        Ok(balance.unwrap_or(0))
    }

    /// Adds `amount` (> 0) to a user's balance; returns the new balance.
    pub async fn grant_credits(&self, user: &str, amount: i64) -> Result<i64, DbError> {
        Ok(sqlx::query_scalar(
            r#"
            WITH granted AS (
                INSERT INTO user_credits (user_id, balance) VALUES ($1, $2)
                ON CONFLICT (user_id) DO UPDATE
                   SET balance = user_credits.balance + $2, updated_at = now()
                RETURNING balance
            ), logged AS (
                INSERT INTO credit_ledger (user_id, delta, reason) VALUES ($1, $2, 'grant')
            )
            SELECT balance FROM granted
            "#,
        )
        .bind(user)
        .bind(amount)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Reserves the run's credits and records it, in one transaction; or
    /// records nothing when the balance does not cover the reservation.
    pub async fn start_run(&self, run: &NewRun) -> Result<RunStart, DbError> {
        let mut tx = self.pool.begin().await?;
        let reserved: Option<i64> = sqlx::query_scalar(
            r#"
            UPDATE user_credits SET balance = balance - $2, updated_at = now()
             WHERE user_id = $1 AND balance >= $2
            RETURNING balance
            "#,
        )
        .bind(&run.user_id)
        .bind(run.reserve)
        .fetch_optional(&mut *tx)
        .await?;
        if reserved.is_none() && run.reserve > 0 {
            tx.rollback().await?;
            return Ok(RunStart::InsufficientCredits {
                balance: self.credit_balance(&run.user_id).await?,
                needed: run.reserve,
            });
        }
        let row: AgentRunRow = sqlx::query_as(
            r#"
            WITH logged AS (
                INSERT INTO credit_ledger (user_id, delta, reason, run_id)
                SELECT $3, -$6, 'reserve', $1 WHERE $6 > 0
            )
            INSERT INTO agent_runs (id, agent_id, user_id, mode, status, job_id, messages,
                                    credits_reserved, started_at, heartbeat_at)
            VALUES ($1, $2, $3, $4, CASE WHEN $7::uuid IS NULL THEN 'running' ELSE 'queued' END,
                    $7, $5, $6, CASE WHEN $7::uuid IS NULL THEN now() END,
                    CASE WHEN $7::uuid IS NULL THEN now() END)
            RETURNING *
            "#,
        )
        .bind(run.id)
        .bind(run.agent_id)
        .bind(&run.user_id)
        .bind(&run.mode)
        .bind(&run.messages)
        .bind(run.reserve)
        .bind(run.job.as_ref().map(|job| job.id))
        .fetch_one(&mut *tx)
        .await?;
        if let Some(job) = &run.job {
            Self::insert_jobs(&mut *tx, std::slice::from_ref(job)).await?;
        }
        tx.commit().await?;
        Ok(RunStart::Started(Box::new(row)))
    }

    /// Moves a queued run to `running` (its job started). False when it was
    /// not queued (already running, finished, or unknown).
    pub async fn mark_run_running(&self, id: Uuid) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE agent_runs SET status = 'running', started_at = now(), heartbeat_at = now() WHERE id = $1 AND status = 'queued'",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Appends streamed output chunks numbered from `first_seq`.
    pub async fn append_run_chunks(
        &self,
        id: Uuid,
        first_seq: i32,
        chunks: &[String],
    ) -> Result<(), DbError> {
        if chunks.is_empty() {
            return Ok(());
        }
        sqlx::query(
            r#"
            INSERT INTO agent_run_chunks (run_id, seq, content)
            SELECT $1, $2 + c.ord::int - 1, c.content
              FROM unnest($3::text[]) WITH ORDINALITY AS c(content, ord)
            ON CONFLICT (run_id, seq) DO NOTHING
            "#,
        )
        .bind(id)
        .bind(first_seq)
        .bind(chunks)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A run's chunks with `seq >= from`, in order.
    pub async fn run_chunks(&self, id: Uuid, from: i32) -> Result<Vec<(i32, String)>, DbError> {
        Ok(sqlx::query_as(
            "SELECT seq, content FROM agent_run_chunks WHERE run_id = $1 AND seq >= $2 ORDER BY seq",
        )
        .bind(id)
        .bind(from)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Completes a run: stores its output and usage, charges `credits_used`
    /// (at most what was reserved) and refunds the rest. `None` when the run
    /// had already finished.
    pub async fn complete_run(
        &self,
        id: Uuid,
        output: &str,
        usage: &serde_json::Value,
        credits_used: i64,
    ) -> Result<Option<AgentRunRow>, DbError> {
        self.settle_run(
            id,
            "completed",
            output,
            Some(usage),
            Some(credits_used),
            None,
        )
        .await
    }

    /// Fails a run and refunds its whole reservation. `None` when the run
    /// had already finished.
    pub async fn fail_run(
        &self,
        id: Uuid,
        error: &str,
        output: &str,
    ) -> Result<Option<AgentRunRow>, DbError> {
        self.settle_run(id, "failed", output, None, None, Some(error))
            .await
    }

    async fn settle_run(
        &self,
        id: Uuid,
        status: &str,
        output: &str,
        usage: Option<&serde_json::Value>,
        credits_used: Option<i64>,
        error: Option<&str>,
    ) -> Result<Option<AgentRunRow>, DbError> {
        Ok(sqlx::query_as(
            r#"
            WITH settled AS (
                UPDATE agent_runs
                   SET status = $2, output = $3, usage = $4, error = $6,
                       credits_used = least(coalesce($5, 0), credits_reserved),
                       completed_at = now()
                 WHERE id = $1 AND status IN ('queued', 'running')
                RETURNING *
            ), refund AS (
                UPDATE user_credits c
                   SET balance = c.balance + (s.credits_reserved - s.credits_used),
                       updated_at = now()
                  FROM settled s
                 WHERE c.user_id = s.user_id AND s.credits_reserved > s.credits_used
            ), logged AS (
                INSERT INTO credit_ledger (user_id, delta, reason, run_id)
                SELECT user_id, credits_reserved - credits_used, 'refund', id
                  FROM settled WHERE credits_reserved > credits_used
            )
            SELECT * FROM settled
            "#,
        )
        .bind(id)
        .bind(status)
        .bind(output)
        .bind(usage)
        .bind(credits_used)
        .bind(error)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// One run, if it exists and (when `owner` is given) belongs to that user.
    pub async fn get_run(
        &self,
        id: Uuid,
        owner: Option<&str>,
    ) -> Result<Option<AgentRunRow>, DbError> {
        Ok(sqlx::query_as(
            "SELECT * FROM agent_runs WHERE id = $1 AND ($2::text IS NULL OR user_id = $2)",
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Renews the heartbeat of these running runs (their executor is alive).
    pub async fn heartbeat_runs(&self, ids: &[Uuid]) -> Result<(), DbError> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE agent_runs SET heartbeat_at = now() WHERE id = ANY($1) AND status = 'running'",
        )
        .bind(ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Fails up to `limit` running runs whose heartbeat is older than
    /// `stale_after_seconds` (their executor died) and refunds their
    /// reservations, keeping the output streamed so far. Returns their ids.
    pub async fn reap_stale_runs(
        &self,
        stale_after_seconds: f64,
        limit: i64,
    ) -> Result<Vec<Uuid>, DbError> {
        Ok(sqlx::query_scalar(
            r#"
            WITH stale AS (
                SELECT id FROM agent_runs
                 WHERE status = 'running'
                   AND heartbeat_at < now() - make_interval(secs => $1)
                 ORDER BY heartbeat_at
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED
            ), failed AS (
                UPDATE agent_runs r
                   SET status = 'failed', credits_used = 0, completed_at = now(),
                       error = 'the executor running this run was lost',
                       output = coalesce((SELECT string_agg(c.content, '' ORDER BY c.seq)
                                            FROM agent_run_chunks c WHERE c.run_id = r.id), '')
                  FROM stale
                 WHERE r.id = stale.id
                RETURNING r.id, r.user_id, r.credits_reserved
            ), refund AS (
                UPDATE user_credits c
                   SET balance = c.balance + f.total, updated_at = now()
                  FROM (SELECT user_id, sum(credits_reserved) AS total
                          FROM failed GROUP BY user_id) f
                 WHERE c.user_id = f.user_id AND f.total > 0
            ), logged AS (
                INSERT INTO credit_ledger (user_id, delta, reason, run_id)
                SELECT user_id, credits_reserved, 'refund', id FROM failed
                 WHERE credits_reserved > 0
            )
            SELECT id FROM failed
            "#,
        )
        .bind(stale_after_seconds)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
