//! Settings for every Roundhouse service, layered with the `config` crate:
//! built-in defaults → optional `roundhouse.toml` (or `ROUNDHOUSE_CONFIG`) →
//! environment variables.
//!
//! **Architecture invariant:** this is the only crate that reads the process
//! environment. Every variable name is in [`ENV_VARS`]; services receive a
//! validated [`Settings`] and never call `std::env::var` themselves.

mod alerts;
mod database;
mod env;
mod notifications;

use std::path::PathBuf;
use std::time::Duration;

use roundhouse_core::QueueName;
use serde::Deserialize;

pub use database::Service;
pub use env::ENV_VARS;
pub use notifications::{SmtpTls, decode_vapid_private_key};

/// The chunk sizes `RAG_EMBEDDING_CHAR_LIMIT` (and a job's `chunkCharLimit`)
/// may take, in characters: below 50 a chunk holds no sentence; above
/// 32,000 it would exceed the 8,192-token input limit of OpenAI's models.
pub const RAG_CHAR_LIMIT_RANGE: std::ops::RangeInclusive<usize> = 50..=32_000;
/// The batch sizes `RAG_EMBEDDING_BATCH` (and a job's `embeddingBatch`) may
/// take: OpenAI accepts at most 2,048 inputs per request.
pub const RAG_EMBEDDING_BATCH_RANGE: std::ops::RangeInclusive<usize> = 1..=2048;

/// A setting that is missing or malformed. Its `Display` is the one line a
/// service prints before exiting.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {variable}: {reason}")]
pub struct SettingsError {
    /// The environment variable (or file key) at fault.
    pub variable: String,
    /// What is wrong with it.
    pub reason: String,
}

fn invalid(variable: &str, reason: impl Into<String>) -> SettingsError {
    SettingsError {
        variable: variable.to_owned(),
        reason: reason.into(),
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (production).
    Json,
    /// Human-readable (development).
    Pretty,
}

/// Every service's settings. Each service reads the parts it needs.
///
/// `Debug` shows no secrets and no URLs (which may carry passwords).
#[derive(Clone, Deserialize)]
pub struct Settings {
    pub database_url: String,
    /// Used for migrations when set (a direct or session-pooled URL: the
    /// transaction pooler cannot hold the migration advisory lock).
    pub database_migration_url: Option<String>,
    /// The most PostgreSQL connections this process opens; unset: the
    /// service's own default, see [`Settings::database_pool_size`].
    pub database_max_connections: Option<u32>,
    /// `statement_timeout` of every pooled connection, in milliseconds
    /// (0: none). Migrations, `VACUUM` and `data_sync` set their own.
    pub database_statement_timeout_ms: u64,
    pub rabbitmq_url: String,
    /// Prefix of every exchange and queue name.
    pub rabbitmq_prefix: String,
    /// Listening port; each service has its own default.
    pub port: Option<u16>,
    pub log_format: LogFormat,
    /// `tracing` filter directives (`info`, `roundhouse_worker=debug,info`).
    pub log_level: String,

    pub supabase_url: Option<String>,
    pub supabase_jwt_secret: Option<String>,
    pub supabase_service_role_key: Option<String>,
    pub roundhouse_service_token: Option<String>,
    pub railway_backend_secret: Option<String>,
    /// Comma-separated exact origins allowed by CORS.
    pub allowed_origins: String,
    pub dashboard_password: Option<String>,

    pub body_limit_bytes: usize,
    pub batch_max_jobs: usize,
    pub rate_limit_per_user_per_minute: u32,
    pub rate_limit_per_ip_per_minute: u32,
    /// Header carrying the client address set by the trusted proxy in front
    /// (Railway sets `X-Real-IP`). Empty: use the TCP peer address.
    pub client_ip_header: String,

    /// Default slots per queue in a worker.
    pub worker_concurrency: usize,
    /// Comma-separated queues a worker consumes; empty means every built-in
    /// queue except `agents`.
    pub worker_queues: String,
    pub worker_lease_seconds: u64,
    pub worker_heartbeat_ms: u64,
    pub worker_drain_seconds: u64,
    pub worker_retry_base_ms: u64,
    pub worker_retry_max_ms: u64,

    pub scheduler_tick_ms: u64,
    pub scheduler_dispatch_grace_ms: u64,
    /// How often the dispatch sweep runs (it reads the waiting backlog).
    pub scheduler_sweep_ms: u64,
    pub scheduler_redispatch_after_seconds: u64,
    pub scheduler_batch_size: i64,
    /// The scheduler fails (and refunds) agent runs whose executor has not
    /// renewed their heartbeat (every 10 s) for this long.
    pub agent_run_stale_seconds: u64,

    /// LLM providers (see `roundhouse-llm`): OpenAI, Anthropic and the
    /// Lovable gateway by key (base URLs overridable), more OpenAI-compatible
    /// ones as `LLM_PROVIDERS=name=base_url[|api_key],…`; `dev` is built in.
    pub openai_api_key: Option<String>,
    pub openai_base_url: Option<String>,
    pub anthropic_api_key: Option<String>,
    pub anthropic_base_url: Option<String>,
    pub lovable_api_key: Option<String>,
    pub lovable_base_url: Option<String>,
    pub llm_providers: String,
    pub llm_timeout_seconds: u64,
    pub llm_max_retries: u32,
    /// Pause between the `dev` provider's streamed words (demos, benchmarks).
    pub dev_provider_chunk_delay_ms: u64,
    /// What 1,000 tokens of an agent run cost, unless `MODEL_PRICING` names the model.
    pub credits_per_1k_tokens: u64,
    /// Per-model prices: `model=credits_per_1k,…`.
    pub model_pricing: String,

    /// The database `data_sync` jobs write to; Roundhouse's own
    /// (`DATABASE_URL`) when unset.
    pub data_sync_database_url: Option<String>,
    /// Databases `sql_copy` may read: `name=postgres://…,…`.
    pub data_sync_sources: String,
    /// The largest batch a `data_sync` job may use (its `batchSize` is capped).
    pub data_sync_max_batch: usize,
    /// Statement timeout of `data_sync` reads and upserts.
    pub data_sync_statement_timeout_ms: u64,

    /// `rag_ingestion`: the longest chunk embedded, in characters.
    pub rag_embedding_char_limit: usize,
    /// `rag_ingestion`: chunks per embeddings request.
    pub rag_embedding_batch: usize,
    /// The provider that embeds chunks and search queries; see
    /// [`Settings::rag_embedding_provider`] for the default.
    pub rag_embedding_provider: Option<String>,
    pub rag_embedding_model: String,
    /// Whether `rag_ingestion` analyses each segment with an LLM when the
    /// payload does not say.
    pub rag_enable_claude_analysis: bool,
    /// Segment analyses in flight at once, per job.
    pub rag_claude_concurrency: usize,
    /// The provider of segment analyses; see [`Settings::rag_analysis_provider`].
    pub rag_analysis_provider: Option<String>,
    pub rag_analysis_model: String,
    /// Hosts, addresses and CIDRs that user-supplied URLs may reach although
    /// they are not public (the SSRF guard's exceptions).
    pub roundhouse_outbound_allowlist: String,
    /// The OTLP/HTTP collector traces go to (`http://collector:4318`);
    /// unset: no traces.
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// The service name on exported spans (default: the binary's name).
    pub otel_service_name: Option<String>,
    /// The api's public URL, for callers that must reach it (HTTP handlers'
    /// progress callbacks, the CLI).
    pub roundhouse_url: Option<String>,
    /// Job types run by an HTTP endpoint: `job_type=https://…,…`.
    pub http_handlers: String,
    /// The Standard Webhooks signing secret (`whsec_<base64>`) for HTTP handlers.
    pub http_handler_secret: Option<String>,
    /// How long an HTTP handler may take to answer one job.
    pub http_handler_timeout_seconds: u64,

    /// `notifications` e-mail: the SMTP relay (unset: e-mail jobs fail,
    /// naming `SMTP_HOST`).
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    pub smtp_tls: SmtpTls,
    /// The From mailbox: `noreply@example.com` or `Name <noreply@example.com>`.
    pub smtp_from: Option<String>,
    /// `notifications` SMS through a Twilio-compatible Messages API.
    pub twilio_account_sid: Option<String>,
    pub twilio_auth_token: Option<String>,
    pub twilio_from_number: Option<String>,
    pub twilio_base_url: String,
    /// `notifications` Web Push: the VAPID key pair's private half (raw
    /// 32-byte P-256 scalar, base64url) and the contact URL sent with it.
    pub vapid_private_key: Option<String>,
    pub vapid_subject: Option<String>,
    /// Standard Webhooks secret (`whsec_…`) signing generic notification webhooks.
    pub notification_webhook_secret: Option<String>,

    /// Where the scheduler sends operational alerts: a Slack (or
    /// Slack-compatible) or Discord incoming webhook. Unset: no alerts.
    pub alert_webhook_url: Option<String>,
    /// How often the alerter looks.
    pub alert_check_seconds: u64,
    /// A job `processing` for longer than this is reported (per queue:
    /// `ALERT_RUNNING_SECONDS_BY_QUEUE`, by default `agents=14400`).
    pub alert_running_seconds: u64,
    pub alert_running_seconds_by_queue: String,
    /// A queue whose oldest waiting job waited longer than this is reported
    /// (per queue: `ALERT_QUEUE_WAIT_SECONDS_BY_QUEUE`).
    pub alert_queue_wait_seconds: u64,
    pub alert_queue_wait_seconds_by_queue: String,
    /// A condition that persists (a queue backing up, a lost worker seen
    /// again) is reported again at most this often.
    pub alert_repeat_seconds: u64,
    /// At most this many alert messages per hour, across all schedulers.
    pub alert_max_per_hour: u32,
    /// Up to this many failed or long-running jobs in one pass get a message
    /// each; more get one summary.
    pub alert_max_details: u32,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("port", &self.port)
            .field("rabbitmq_prefix", &self.rabbitmq_prefix)
            .field("log_format", &self.log_format)
            .field("log_level", &self.log_level)
            .field("worker_queues", &self.worker_queues)
            .field("worker_concurrency", &self.worker_concurrency)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Loads settings from the process environment and the optional file.
    pub fn load() -> Result<Self, SettingsError> {
        Self::load_from(|name| std::env::var(name).ok())
    }

    /// Loads settings with `lookup` standing in for the environment (tests).
    pub fn load_from(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let file = lookup("ROUNDHOUSE_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("roundhouse.toml"));
        let mut builder = config::Config::builder();
        for (key, value) in env::DEFAULTS {
            builder = builder
                .set_default(*key, *value)
                .map_err(|e| invalid(key, e.to_string()))?;
        }
        builder = builder.add_source(config::File::from(file).required(false));
        for (variable, key) in ENV_VARS {
            if let Some(value) = lookup(variable) {
                builder = builder
                    .set_override(*key, value)
                    .map_err(|e| invalid(variable, e.to_string()))?;
            }
        }
        let raw = builder
            .build()
            .map_err(|e| invalid("roundhouse.toml", e.to_string()))?;
        let settings: Settings = raw.try_deserialize().map_err(env::explain)?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let scheme = |var: &str, url: &str, schemes: &[&str]| {
            if schemes.iter().any(|s| url.starts_with(&format!("{s}://"))) {
                Ok(())
            } else {
                Err(invalid(
                    var,
                    format!("expected a {} URL", schemes.join("/")),
                ))
            }
        };
        scheme(
            "DATABASE_URL",
            &self.database_url,
            &["postgres", "postgresql"],
        )?;
        if let Some(url) = &self.database_migration_url {
            scheme("DATABASE_MIGRATION_URL", url, &["postgres", "postgresql"])?;
        }
        self.validate_database()?;
        scheme("RABBITMQ_URL", &self.rabbitmq_url, &["amqp", "amqps"])?;
        if let Some(url) = &self.supabase_url {
            scheme("SUPABASE_URL", url, &["https", "http"])?;
        }
        if self.rabbitmq_prefix.is_empty()
            || !self
                .rabbitmq_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid(
                "RABBITMQ_PREFIX",
                "use letters, digits, '_' or '-'",
            ));
        }
        for origin in self.allowed_origins() {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
            {
                return Err(invalid(
                    "ALLOWED_ORIGINS",
                    format!("`{origin}` is not an origin like https://app.example.com"),
                ));
            }
        }
        self.worker_queues()?;
        if self.worker_concurrency == 0 {
            return Err(invalid("WORKER_CONCURRENCY", "must be at least 1"));
        }
        if self.worker_heartbeat_ms == 0
            || self.worker_heartbeat_ms >= self.worker_lease_seconds * 1000
        {
            return Err(invalid(
                "WORKER_HEARTBEAT_MS",
                "must be positive and shorter than WORKER_LEASE_SECONDS",
            ));
        }
        if self.scheduler_tick_ms == 0 {
            return Err(invalid("SCHEDULER_TICK_MS", "must be positive"));
        }
        for (var, url) in [
            ("OPENAI_BASE_URL", &self.openai_base_url),
            ("ANTHROPIC_BASE_URL", &self.anthropic_base_url),
            ("LOVABLE_BASE_URL", &self.lovable_base_url),
        ] {
            if let Some(url) = url {
                scheme(var, url, &["https", "http"])?;
            }
        }
        if self.agent_run_stale_seconds < 20 {
            return Err(invalid(
                "AGENT_RUN_STALE_SECONDS",
                "must be at least 20 (executors renew heartbeats every 10 s)",
            ));
        }
        if self.llm_timeout_seconds == 0 {
            return Err(invalid("LLM_TIMEOUT_SECONDS", "must be positive"));
        }
        self.model_pricing()?;
        self.validate_data_sync()?;
        self.validate_rag()?;
        self.validate_notifications()?;
        self.outbound_policy()?;
        if let Some(url) = &self.roundhouse_url {
            scheme("ROUNDHOUSE_URL", url, &["https", "http"])?;
        }
        if let Some(url) = &self.otel_exporter_otlp_endpoint {
            scheme("OTEL_EXPORTER_OTLP_ENDPOINT", url, &["https", "http"])?;
        }
        self.http_handlers()?;
        if self.http_handler_timeout_seconds == 0 {
            return Err(invalid("HTTP_HANDLER_TIMEOUT_SECONDS", "must be positive"));
        }
        self.validate_alerts()?;
        Ok(())
    }

    /// The SSRF guard for user-supplied URLs, with the operator's
    /// `ROUNDHOUSE_OUTBOUND_ALLOWLIST` exceptions.
    pub fn outbound_policy(&self) -> Result<roundhouse_outbound::OutboundPolicy, SettingsError> {
        roundhouse_outbound::OutboundPolicy::parse(&self.roundhouse_outbound_allowlist)
            .map_err(|e| invalid("ROUNDHOUSE_OUTBOUND_ALLOWLIST", e.to_string()))
    }

    /// `HTTP_HANDLERS` as (job type, endpoint) pairs, with the signing
    /// secret they require. Job type names are checked by the worker, which
    /// knows the built-in ones.
    pub fn http_handlers(&self) -> Result<Vec<(String, String)>, SettingsError> {
        let handlers = split_list(&self.http_handlers)
            .iter()
            .map(|entry| {
                let (name, url) = entry.split_once('=').ok_or_else(|| {
                    invalid(
                        "HTTP_HANDLERS",
                        format!("`{entry}` is not job_type=https://…"),
                    )
                })?;
                let (name, url) = (name.trim(), url.trim());
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(invalid(
                        "HTTP_HANDLERS",
                        format!("the endpoint of `{name}` is not an http(s) URL"),
                    ));
                }
                Ok((name.to_owned(), url.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !handlers.is_empty() {
            let secret = self.http_handler_secret.as_deref().unwrap_or("");
            if secret.strip_prefix("whsec_").is_none_or(str::is_empty) {
                return Err(invalid(
                    "HTTP_HANDLER_SECRET",
                    "HTTP_HANDLERS needs a `whsec_<base64>` signing secret",
                ));
            }
        }
        Ok(handlers)
    }

    fn validate_rag(&self) -> Result<(), SettingsError> {
        let range = |var: &str, value: usize, range: std::ops::RangeInclusive<usize>| {
            if range.contains(&value) {
                Ok(())
            } else {
                Err(invalid(
                    var,
                    format!("must be from {} to {}", range.start(), range.end()),
                ))
            }
        };
        range(
            "RAG_EMBEDDING_CHAR_LIMIT",
            self.rag_embedding_char_limit,
            RAG_CHAR_LIMIT_RANGE,
        )?;
        range(
            "RAG_EMBEDDING_BATCH",
            self.rag_embedding_batch,
            RAG_EMBEDDING_BATCH_RANGE,
        )?;
        range(
            "RAG_CLAUDE_CONCURRENCY",
            self.rag_claude_concurrency,
            1..=64,
        )?;
        if self.rag_embedding_model.trim().is_empty() {
            return Err(invalid("RAG_EMBEDDING_MODEL", "must not be empty"));
        }
        Ok(())
    }

    /// The provider that embeds `rag_ingestion` chunks and search queries:
    /// `RAG_EMBEDDING_PROVIDER` (lowercased), else `openai` when
    /// `OPENAI_API_KEY` is set, else the offline `dev` provider.
    pub fn rag_embedding_provider(&self) -> String {
        provider_or(&self.rag_embedding_provider, &self.openai_api_key, "openai")
    }

    /// The provider of `rag_ingestion`'s segment analyses:
    /// `RAG_ANALYSIS_PROVIDER`, else `anthropic` when `ANTHROPIC_API_KEY` is
    /// set, else `dev`.
    pub fn rag_analysis_provider(&self) -> String {
        provider_or(
            &self.rag_analysis_provider,
            &self.anthropic_api_key,
            "anthropic",
        )
    }

    /// The database `data_sync` jobs write to: `DATA_SYNC_DATABASE_URL`,
    /// else `DATABASE_URL`.
    pub fn data_sync_database_url(&self) -> &str {
        self.data_sync_database_url
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .unwrap_or(&self.database_url)
    }

    /// `DATA_SYNC_SOURCES` as (name, PostgreSQL URL) pairs.
    pub fn data_sync_sources(&self) -> Result<Vec<(String, String)>, SettingsError> {
        let mut sources: Vec<(String, String)> = Vec::new();
        for entry in split_list(&self.data_sync_sources) {
            let (name, url) = entry
                .split_once('=')
                .ok_or_else(|| invalid("DATA_SYNC_SOURCES", "expected name=postgres://…"))?;
            let (name, url) = (name.trim(), url.trim());
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(invalid(
                    "DATA_SYNC_SOURCES",
                    format!("`{name}` is not a name (letters, digits, '_' or '-')"),
                ));
            }
            // The URL may hold a password: name the entry, not the URL.
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(invalid(
                    "DATA_SYNC_SOURCES",
                    format!("the URL of `{name}` is not a postgres:// URL"),
                ));
            }
            if sources.iter().any(|(known, _)| known == name) {
                return Err(invalid(
                    "DATA_SYNC_SOURCES",
                    format!("`{name}` is named twice"),
                ));
            }
            sources.push((name.to_owned(), url.to_owned()));
        }
        Ok(sources)
    }

    fn validate_data_sync(&self) -> Result<(), SettingsError> {
        let url = self.data_sync_database_url();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid(
                "DATA_SYNC_DATABASE_URL",
                "expected a postgres/postgresql URL",
            ));
        }
        self.data_sync_sources()?;
        if !(1..=100_000).contains(&self.data_sync_max_batch) {
            return Err(invalid("DATA_SYNC_MAX_BATCH", "must be from 1 to 100000"));
        }
        if self.data_sync_statement_timeout_ms == 0 {
            return Err(invalid(
                "DATA_SYNC_STATEMENT_TIMEOUT_MS",
                "must be positive",
            ));
        }
        Ok(())
    }

    /// `MODEL_PRICING` as (model, credits per 1K tokens) pairs.
    pub fn model_pricing(&self) -> Result<Vec<(String, u64)>, SettingsError> {
        split_list(&self.model_pricing)
            .iter()
            .map(|entry| {
                entry
                    .split_once('=')
                    .and_then(|(model, price)| {
                        Some((model.trim().to_owned(), price.trim().parse().ok()?))
                    })
                    .filter(|(model, _)| !model.is_empty())
                    .ok_or_else(|| {
                        invalid(
                            "MODEL_PRICING",
                            format!("`{entry}` is not `model=credits_per_1k_tokens`"),
                        )
                    })
            })
            .collect()
    }

    /// The exact CORS origins.
    pub fn allowed_origins(&self) -> Vec<String> {
        split_list(&self.allowed_origins)
    }

    /// The queues a worker consumes.
    pub fn worker_queues(&self) -> Result<Vec<QueueName>, SettingsError> {
        let listed = split_list(&self.worker_queues);
        if listed.is_empty() {
            return Ok(QueueName::built_in()
                .into_iter()
                .filter(|q| q.as_str() != "agents")
                .collect());
        }
        listed
            .iter()
            .map(|q| QueueName::parse(q).map_err(|e| invalid("WORKER_QUEUES", e.to_string())))
            .collect()
    }

    /// Every configured service credential (service token, service-role key).
    pub fn service_tokens(&self) -> Vec<String> {
        [
            &self.roundhouse_service_token,
            &self.supabase_service_role_key,
        ]
        .into_iter()
        .flatten()
        .filter(|t| !t.is_empty())
        .cloned()
        .collect()
    }

    /// The URL migrations run on.
    pub fn migration_url(&self) -> &str {
        self.database_migration_url
            .as_deref()
            .unwrap_or(&self.database_url)
    }

    pub fn worker_lease(&self) -> Duration {
        Duration::from_secs(self.worker_lease_seconds)
    }

    pub fn worker_heartbeat(&self) -> Duration {
        Duration::from_millis(self.worker_heartbeat_ms)
    }

    pub fn worker_drain(&self) -> Duration {
        Duration::from_secs(self.worker_drain_seconds)
    }

    pub fn scheduler_tick(&self) -> Duration {
        Duration::from_millis(self.scheduler_tick_ms)
    }
}

/// `chosen` when set, else `keyed` when its key is set, else `dev`.
fn provider_or(chosen: &Option<String>, key: &Option<String>, keyed: &str) -> String {
    match chosen.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        Some(provider) => provider.to_ascii_lowercase(),
        None if key.as_deref().is_some_and(|k| !k.trim().is_empty()) => keyed.to_owned(),
        None => "dev".to_owned(),
    }
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Settings from exactly `vars` (no file, no process environment).
    pub(crate) fn load(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([(
                "ROUNDHOUSE_CONFIG".into(),
                "/nonexistent/roundhouse.toml".into(),
            )])
            .collect();
        Settings::load_from(|name| vars.get(name).cloned())
    }

    #[test]
    fn debug_output_carries_no_secret() {
        let settings = load(&[
            ("DATABASE_URL", "postgres://app:db-password@db:5432/app"),
            ("SUPABASE_JWT_SECRET", "jwt-secret-value"),
            ("ROUNDHOUSE_SERVICE_TOKEN", "service-token-value"),
            ("OPENAI_API_KEY", "sk-openai-value"),
            ("ANTHROPIC_API_KEY", "sk-ant-value"),
            ("RAILWAY_BACKEND_SECRET", "backend-secret-value"),
        ])
        .unwrap();
        let shown = format!("{settings:?}");
        for secret in [
            "db-password",
            "jwt-secret-value",
            "service-token-value",
            "sk-openai-value",
            "sk-ant-value",
            "backend-secret-value",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn model_pricing_is_parsed_or_refused_naming_the_variable() {
        let settings = load(&[("MODEL_PRICING", "gpt-4o=10, claude-sonnet-4=15")]).unwrap();
        assert_eq!(
            settings.model_pricing().unwrap(),
            [
                ("gpt-4o".to_owned(), 10),
                ("claude-sonnet-4".to_owned(), 15)
            ]
        );
        let error = load(&[("MODEL_PRICING", "gpt-4o")]).unwrap_err();
        assert_eq!(error.variable, "MODEL_PRICING");
        let error = load(&[("OPENAI_BASE_URL", "api.openai.com")]).unwrap_err();
        assert_eq!(error.variable, "OPENAI_BASE_URL");
    }

    #[test]
    fn defaults_work_with_no_variable_set() {
        let settings = load(&[]).unwrap();
        assert_eq!(
            settings.database_url,
            "postgres://postgres@localhost:5432/roundhouse"
        );
        assert_eq!(
            settings.rabbitmq_url,
            "amqp://guest:guest@localhost:5672/%2f"
        );
        assert_eq!(settings.log_format, LogFormat::Pretty);
        let queues = settings.worker_queues().unwrap();
        assert!(queues.iter().any(|q| q.as_str() == "default"));
        assert!(!queues.iter().any(|q| q.as_str() == "agents"));
    }

    #[test]
    fn the_seeds_variable_names_are_honoured() {
        let settings = load(&[
            ("DATABASE_URL", "postgres://u@db/x"),
            ("AMQP_URL", "amqp://mq"),
            ("PORT", "9000"),
            ("WORKER_CONCURRENCY", "7"),
            ("LOG_FORMAT", "json"),
            ("WORKER_QUEUES", "default, emails"),
        ])
        .unwrap();
        assert_eq!(settings.database_url, "postgres://u@db/x");
        assert_eq!(settings.rabbitmq_url, "amqp://mq");
        assert_eq!(settings.port, Some(9000));
        assert_eq!(settings.worker_concurrency, 7);
        assert_eq!(settings.log_format, LogFormat::Json);
        assert_eq!(settings.worker_queues().unwrap().len(), 2);
    }

    #[test]
    fn rabbitmq_url_wins_over_its_amqp_url_alias() {
        let settings = load(&[
            ("AMQP_URL", "amqp://alias"),
            ("RABBITMQ_URL", "amqp://main"),
        ])
        .unwrap();
        assert_eq!(settings.rabbitmq_url, "amqp://main");
    }

    #[test]
    fn rag_settings_have_defaults_and_pick_providers_by_key() {
        let settings = load(&[]).unwrap();
        assert_eq!(settings.rag_embedding_char_limit, 1200);
        assert_eq!(settings.rag_embedding_batch, 16);
        assert_eq!(settings.rag_claude_concurrency, 3);
        assert!(!settings.rag_enable_claude_analysis);
        assert_eq!(settings.rag_embedding_model, "text-embedding-3-small");
        assert_eq!(settings.rag_embedding_provider(), "dev");
        assert_eq!(settings.rag_analysis_provider(), "dev");

        let keyed = load(&[("OPENAI_API_KEY", "sk-1"), ("ANTHROPIC_API_KEY", "sk-2")]).unwrap();
        assert_eq!(keyed.rag_embedding_provider(), "openai");
        assert_eq!(keyed.rag_analysis_provider(), "anthropic");
        let chosen = load(&[
            ("OPENAI_API_KEY", "sk-1"),
            ("RAG_EMBEDDING_PROVIDER", " Ollama "),
            ("RAG_ANALYSIS_PROVIDER", "dev"),
            ("RAG_ENABLE_CLAUDE_ANALYSIS", "true"),
        ])
        .unwrap();
        assert_eq!(chosen.rag_embedding_provider(), "ollama");
        assert_eq!(chosen.rag_analysis_provider(), "dev");
        assert!(chosen.rag_enable_claude_analysis);

        for (var, value) in [
            ("RAG_EMBEDDING_CHAR_LIMIT", "10"),
            ("RAG_EMBEDDING_CHAR_LIMIT", "lots"),
            ("RAG_EMBEDDING_BATCH", "0"),
            ("RAG_EMBEDDING_BATCH", "5000"),
            ("RAG_CLAUDE_CONCURRENCY", "0"),
            ("RAG_ENABLE_CLAUDE_ANALYSIS", "maybe"),
            ("RAG_EMBEDDING_MODEL", " "),
        ] {
            let error = load(&[(var, value)]).unwrap_err();
            assert_eq!(error.variable, var, "{var}={value}: {error}");
        }
    }

    #[test]
    fn data_sync_settings_default_to_the_roundhouse_database_and_are_checked() {
        let settings = load(&[("DATABASE_URL", "postgres://main/rh")]).unwrap();
        assert_eq!(settings.data_sync_database_url(), "postgres://main/rh");
        assert_eq!(settings.data_sync_max_batch, 5000);
        assert_eq!(settings.data_sync_statement_timeout_ms, 60_000);
        assert!(settings.data_sync_sources().unwrap().is_empty());

        let settings = load(&[
            ("DATA_SYNC_DATABASE_URL", "postgres://warehouse/dw"),
            (
                "DATA_SYNC_SOURCES",
                "crm=postgres://u:secret@crm/crm, legacy=postgresql://old/db",
            ),
        ])
        .unwrap();
        assert_eq!(settings.data_sync_database_url(), "postgres://warehouse/dw");
        assert_eq!(
            settings.data_sync_sources().unwrap(),
            vec![
                ("crm".to_owned(), "postgres://u:secret@crm/crm".to_owned()),
                ("legacy".to_owned(), "postgresql://old/db".to_owned())
            ]
        );
        assert!(!format!("{settings:?}").contains("secret"));

        for (var, value) in [
            ("DATA_SYNC_DATABASE_URL", "mysql://x/y"),
            ("DATA_SYNC_SOURCES", "crm"),
            ("DATA_SYNC_SOURCES", "crm=http://x"),
            ("DATA_SYNC_SOURCES", "a b=postgres://x/y"),
            ("DATA_SYNC_SOURCES", "a=postgres://x/y,a=postgres://z/w"),
            ("DATA_SYNC_MAX_BATCH", "0"),
            ("DATA_SYNC_STATEMENT_TIMEOUT_MS", "0"),
        ] {
            let error = load(&[(var, value)]).unwrap_err();
            assert_eq!(error.variable, var, "{var}={value}: {error}");
            assert!(!error.to_string().contains("secret"), "{error}");
        }
    }

    #[test]
    fn a_malformed_setting_is_named_in_one_line() {
        for (var, value) in [
            ("PORT", "eighty"),
            ("WORKER_CONCURRENCY", "-3"),
            ("DATABASE_URL", "mysql://x"),
            ("RABBITMQ_URL", "http://x"),
            ("LOG_FORMAT", "xml"),
            ("ALLOWED_ORIGINS", "https://ok.example, *"),
            ("WORKER_QUEUES", "Bad Name"),
        ] {
            let error = load(&[(var, value)]).unwrap_err().to_string();
            assert!(error.contains(var), "{var}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }
}
