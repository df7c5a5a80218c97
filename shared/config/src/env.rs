//! The environment variables Roundhouse reads, and the defaults behind them.

use crate::SettingsError;

/// `(environment variable, settings key)`. Later entries override earlier
/// ones, so a canonical name is listed after its alias.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("DATABASE_URL", "database_url"),
    ("DATABASE_MIGRATION_URL", "database_migration_url"),
    ("DATABASE_MAX_CONNECTIONS", "database_max_connections"),
    ("AMQP_URL", "rabbitmq_url"),
    ("RABBITMQ_URL", "rabbitmq_url"),
    ("RABBITMQ_PREFIX", "rabbitmq_prefix"),
    ("PORT", "port"),
    ("LOG_FORMAT", "log_format"),
    ("RUST_LOG", "log_level"),
    ("LOG_LEVEL", "log_level"),
    ("SUPABASE_URL", "supabase_url"),
    ("SUPABASE_JWT_SECRET", "supabase_jwt_secret"),
    ("SUPABASE_SERVICE_ROLE_KEY", "supabase_service_role_key"),
    ("ROUNDHOUSE_SERVICE_TOKEN", "roundhouse_service_token"),
    ("RAILWAY_BACKEND_SECRET", "railway_backend_secret"),
    ("ALLOWED_ORIGINS", "allowed_origins"),
    ("DASHBOARD_PASSWORD", "dashboard_password"),
    ("BODY_LIMIT_BYTES", "body_limit_bytes"),
    ("BATCH_MAX_JOBS", "batch_max_jobs"),
    (
        "RATE_LIMIT_PER_USER_PER_MINUTE",
        "rate_limit_per_user_per_minute",
    ),
    (
        "RATE_LIMIT_PER_IP_PER_MINUTE",
        "rate_limit_per_ip_per_minute",
    ),
    ("CLIENT_IP_HEADER", "client_ip_header"),
    ("WORKER_CONCURRENCY", "worker_concurrency"),
    ("WORKER_QUEUES", "worker_queues"),
    ("WORKER_LEASE_SECONDS", "worker_lease_seconds"),
    ("WORKER_HEARTBEAT_MS", "worker_heartbeat_ms"),
    ("WORKER_DRAIN_SECONDS", "worker_drain_seconds"),
    ("WORKER_RETRY_BASE_MS", "worker_retry_base_ms"),
    ("WORKER_RETRY_MAX_MS", "worker_retry_max_ms"),
    ("SCHEDULER_TICK_MS", "scheduler_tick_ms"),
    ("SCHEDULER_DISPATCH_GRACE_MS", "scheduler_dispatch_grace_ms"),
    ("SCHEDULER_SWEEP_MS", "scheduler_sweep_ms"),
    (
        "SCHEDULER_REDISPATCH_AFTER_SECONDS",
        "scheduler_redispatch_after_seconds",
    ),
    ("SCHEDULER_BATCH_SIZE", "scheduler_batch_size"),
    ("AGENT_RUN_STALE_SECONDS", "agent_run_stale_seconds"),
    ("OPENAI_API_KEY", "openai_api_key"),
    ("OPENAI_BASE_URL", "openai_base_url"),
    ("ANTHROPIC_API_KEY", "anthropic_api_key"),
    ("ANTHROPIC_BASE_URL", "anthropic_base_url"),
    ("LOVABLE_API_KEY", "lovable_api_key"),
    ("LOVABLE_BASE_URL", "lovable_base_url"),
    ("LLM_PROVIDERS", "llm_providers"),
    ("LLM_TIMEOUT_SECONDS", "llm_timeout_seconds"),
    ("LLM_MAX_RETRIES", "llm_max_retries"),
    ("DEV_PROVIDER_CHUNK_DELAY_MS", "dev_provider_chunk_delay_ms"),
    ("CREDITS_PER_1K_TOKENS", "credits_per_1k_tokens"),
    ("MODEL_PRICING", "model_pricing"),
];

/// Built-in defaults: they work on a development machine with local
/// PostgreSQL and RabbitMQ and no variable set.
pub(crate) const DEFAULTS: &[(&str, &str)] = &[
    (
        "database_url",
        "postgres://postgres@localhost:5432/roundhouse",
    ),
    ("database_max_connections", "10"),
    ("rabbitmq_url", "amqp://guest:guest@localhost:5672/%2f"),
    ("rabbitmq_prefix", "roundhouse"),
    ("log_format", "pretty"),
    ("log_level", "info"),
    ("allowed_origins", ""),
    ("body_limit_bytes", "1048576"),
    ("batch_max_jobs", "1000"),
    ("rate_limit_per_user_per_minute", "600"),
    ("rate_limit_per_ip_per_minute", "1200"),
    ("client_ip_header", "x-real-ip"),
    ("worker_concurrency", "32"),
    ("worker_queues", ""),
    ("worker_lease_seconds", "30"),
    ("worker_heartbeat_ms", "2000"),
    ("worker_drain_seconds", "25"),
    ("worker_retry_base_ms", "1000"),
    ("worker_retry_max_ms", "3600000"),
    ("scheduler_tick_ms", "100"),
    ("scheduler_dispatch_grace_ms", "5000"),
    ("scheduler_sweep_ms", "1000"),
    ("scheduler_redispatch_after_seconds", "300"),
    ("scheduler_batch_size", "1000"),
    ("agent_run_stale_seconds", "60"),
    ("llm_providers", ""),
    ("llm_timeout_seconds", "120"),
    ("llm_max_retries", "3"),
    ("dev_provider_chunk_delay_ms", "0"),
    ("credits_per_1k_tokens", "1"),
    ("model_pricing", ""),
];

/// Turns a deserialisation error into one line naming the variable.
pub(crate) fn explain(error: config::ConfigError) -> SettingsError {
    let message = error.to_string();
    // config names the key in its message ("... for key `port`").
    let key = ENV_VARS
        .iter()
        .rev()
        .find(|(_, key)| message.contains(&format!("`{key}`")) || message.ends_with(key));
    SettingsError {
        variable: key.map_or("roundhouse.toml", |(var, _)| var).to_owned(),
        reason: message.replace('\n', " "),
    }
}
