//! How many PostgreSQL connections each service opens, and how long a
//! statement may run.
//!
//! The defaults are sized for a small Supabase plan reached through its
//! session pooler, where every open connection is a database connection and
//! the pooler admits at most its "Pool Size" (15 by default) of them. One
//! `DATABASE_MAX_CONNECTIONS` overrides the size; each service runs in its own
//! process with its own environment (a Railway service, a Kubernetes
//! Deployment), so setting it per service needs no per-service variable
//! names. README "PostgreSQL connections" has the budget table.

use std::time::Duration;

use crate::{Settings, SettingsError, invalid};

/// The processes that open a connection pool, for the settings whose
/// default differs between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Api,
    Worker,
    Scheduler,
    /// The agent executor and the worker embedded in it share one pool.
    AgentExecutor,
}

impl Service {
    /// The `application_name` its connections carry, so that
    /// `pg_stat_activity` shows which service holds which connection.
    pub fn application_name(self) -> &'static str {
        match self {
            Service::Api => "roundhouse-api",
            Service::Worker => "roundhouse-worker",
            Service::Scheduler => "roundhouse-scheduler",
            Service::AgentExecutor => "roundhouse-agent-executor",
        }
    }
}

/// Requests hold a connection for a statement or two of a few milliseconds,
/// and concurrent single enqueues share one INSERT, so five serve thousands
/// of requests a second: more than a small database answers.
const API_POOL: u32 = 5;
/// The scheduler's passes run one after another, the alerter holds one
/// connection while it delivers, and the queue gauges and the health check
/// borrow one for a short statement.
const SCHEDULER_POOL: u32 = 2;
/// Runs, their heartbeats and the embedded worker for async runs.
const AGENT_EXECUTOR_POOL: u32 = 4;
/// The worker's own loops (claims, batched completions, lease renewals, the
/// health check) …
const WORKER_BASE_POOL: u32 = 4;
/// … plus one connection per this many slots of `WORKER_CONCURRENCY` for
/// the handlers' own statements (progress, logs, data-sync batches), which
/// are short and mostly wait on other systems …
const WORKER_SLOTS_PER_CONNECTION: usize = 16;
/// … up to this many: beyond it a small database only queues them.
const WORKER_MAX_POOL: u32 = 10;

impl Settings {
    /// The most connections `service` opens: `DATABASE_MAX_CONNECTIONS` when
    /// set, else the service's default (api 5, scheduler 2, agent executor 4,
    /// worker 4 + one per 16 slots of `WORKER_CONCURRENCY`, at most 10: 6 at
    /// the default 32).
    pub fn database_pool_size(&self, service: Service) -> u32 {
        if let Some(size) = self.database_max_connections {
            return size;
        }
        match service {
            Service::Api => API_POOL,
            Service::Scheduler => SCHEDULER_POOL,
            Service::AgentExecutor => AGENT_EXECUTOR_POOL,
            Service::Worker => {
                let extra = self
                    .worker_concurrency
                    .div_ceil(WORKER_SLOTS_PER_CONNECTION);
                WORKER_BASE_POOL
                    .saturating_add(u32::try_from(extra).unwrap_or(u32::MAX))
                    .min(WORKER_MAX_POOL)
            }
        }
    }

    /// `DATABASE_STATEMENT_TIMEOUT_MS`; zero means none.
    pub fn database_statement_timeout(&self) -> Duration {
        Duration::from_millis(self.database_statement_timeout_ms)
    }

    pub(crate) fn validate_database(&self) -> Result<(), SettingsError> {
        if self.database_max_connections == Some(0) {
            return Err(invalid("DATABASE_MAX_CONNECTIONS", "must be at least 1"));
        }
        // Below a second, ordinary statements (a claim of 256 jobs, a batch
        // of completions on a busy database) would start failing.
        if (1..1000).contains(&self.database_statement_timeout_ms) {
            return Err(invalid(
                "DATABASE_STATEMENT_TIMEOUT_MS",
                "must be 0 (no timeout) or at least 1000",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::load;

    #[test]
    fn each_service_has_its_own_default_pool_size() {
        let settings = load(&[]).unwrap();
        assert_eq!(settings.database_max_connections, None);
        assert_eq!(settings.database_pool_size(Service::Api), 5);
        assert_eq!(settings.database_pool_size(Service::Worker), 6);
        assert_eq!(settings.database_pool_size(Service::Scheduler), 2);
        assert_eq!(settings.database_pool_size(Service::AgentExecutor), 4);
    }

    #[test]
    fn the_worker_pool_follows_its_concurrency_up_to_a_cap() {
        for (concurrency, size) in [("1", 5), ("16", 5), ("17", 6), ("64", 8), ("1000", 10)] {
            let settings = load(&[("WORKER_CONCURRENCY", concurrency)]).unwrap();
            assert_eq!(
                settings.database_pool_size(Service::Worker),
                size,
                "WORKER_CONCURRENCY={concurrency}"
            );
        }
    }

    #[test]
    fn database_max_connections_overrides_every_default() {
        let settings = load(&[("DATABASE_MAX_CONNECTIONS", "12")]).unwrap();
        for service in [
            Service::Api,
            Service::Worker,
            Service::Scheduler,
            Service::AgentExecutor,
        ] {
            assert_eq!(settings.database_pool_size(service), 12, "{service:?}");
        }
    }

    #[test]
    fn the_statement_timeout_defaults_to_30_seconds_and_may_be_off() {
        let settings = load(&[]).unwrap();
        assert_eq!(
            settings.database_statement_timeout(),
            Duration::from_secs(30)
        );
        let settings = load(&[("DATABASE_STATEMENT_TIMEOUT_MS", "0")]).unwrap();
        assert_eq!(settings.database_statement_timeout(), Duration::ZERO);
    }

    #[test]
    fn bad_pool_settings_name_their_variable() {
        for (var, value) in [
            ("DATABASE_MAX_CONNECTIONS", "0"),
            ("DATABASE_MAX_CONNECTIONS", "-1"),
            ("DATABASE_MAX_CONNECTIONS", "ten"),
            ("DATABASE_STATEMENT_TIMEOUT_MS", "500"),
            ("DATABASE_STATEMENT_TIMEOUT_MS", "-1"),
            ("DATABASE_STATEMENT_TIMEOUT_MS", "30s"),
        ] {
            let error = load(&[(var, value)]).unwrap_err();
            assert_eq!(error.variable, var, "{var}={value}: {error}");
        }
    }
}
