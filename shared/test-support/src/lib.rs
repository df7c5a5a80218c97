//! Shared pieces of the integration tests. Every test gets its own
//! PostgreSQL database (`rh_test_<hex>`, migrated) and its own RabbitMQ name
//! prefix (`rhtest_<hex>`), so tests run in parallel against the real
//! services; both are removed when the [`TestEnv`] is dropped.
//!
//! Set `TEST_LOG=1` to see the services' logs.

pub mod metrics;
pub mod openapi;

use std::collections::HashMap;
use std::sync::Once;

use anyhow::Context;
use roundhouse_config::Settings;
use roundhouse_db::{Db, PoolSettings};

/// The HS256 secret test tokens are signed with.
pub const JWT_SECRET: &str = "test-jwt-secret-with-at-least-32-bytes!!";
/// The service token of test settings.
pub const SERVICE_TOKEN: &str = "test-service-token";
/// The `SUPABASE_URL` of test settings (tokens' issuer is `{this}/auth/v1`).
pub const SUPABASE_URL: &str = "http://supabase.test";

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn rabbitmq_url() -> String {
    std::env::var("TEST_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// Installs the log subscriber once (printing only with `TEST_LOG`) and the
/// crypto provider.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            roundhouse_telemetry::init(roundhouse_config::LogFormat::Pretty, "info,sqlx=warn");
        } else {
            roundhouse_telemetry::init(roundhouse_config::LogFormat::Pretty, "off");
        }
    });
}

/// A private database and broker prefix for one test.
pub struct TestEnv {
    pub database_name: String,
    pub database_url: String,
    pub prefix: String,
    pub db: Db,
    overrides: HashMap<String, String>,
}

impl TestEnv {
    /// Creates and migrates a fresh database.
    pub async fn new() -> anyhow::Result<Self> {
        init();
        let hex = uuid::Uuid::new_v4().simple().to_string();
        let database_name = format!("rh_test_{}", &hex[..16]);
        roundhouse_db::create_database(&admin_url(), &database_name)
            .await
            .context("create a test database (is PostgreSQL running? see ../shared/services.md)")?;
        let base = admin_url();
        let database_url = match base.rfind('/') {
            Some(slash) => format!("{}/{database_name}", &base[..slash]),
            None => anyhow::bail!("TEST_DATABASE_ADMIN_URL has no database part"),
        };
        let db = Db::connect_lazy(&database_url, &PoolSettings::default())?;
        db.migrate().await.context("migrate the test database")?;
        Ok(Self {
            database_name,
            database_url,
            prefix: format!("rhtest_{}", &hex[16..28]),
            db,
            overrides: HashMap::new(),
        })
    }

    /// Sets an environment-style override for [`TestEnv::settings`].
    pub fn set(&mut self, variable: &str, value: impl Into<String>) -> &mut Self {
        self.overrides.insert(variable.to_owned(), value.into());
        self
    }

    /// The environment a service of this test runs with: fast timings, test
    /// credentials, this test's database and prefix, port 0.
    pub fn env(&self) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = [
            (
                "ROUNDHOUSE_CONFIG",
                "/nonexistent/roundhouse.toml".to_owned(),
            ),
            ("DATABASE_URL", self.database_url.clone()),
            ("RABBITMQ_URL", rabbitmq_url()),
            ("RABBITMQ_PREFIX", self.prefix.clone()),
            ("PORT", "0".to_owned()),
            ("ROUNDHOUSE_SERVICE_TOKEN", SERVICE_TOKEN.to_owned()),
            ("SUPABASE_JWT_SECRET", JWT_SECRET.to_owned()),
            ("SUPABASE_URL", SUPABASE_URL.to_owned()),
            ("WORKER_CONCURRENCY", "8".to_owned()),
            ("WORKER_LEASE_SECONDS", "3".to_owned()),
            ("WORKER_HEARTBEAT_MS", "300".to_owned()),
            ("WORKER_DRAIN_SECONDS", "5".to_owned()),
            ("WORKER_RETRY_BASE_MS", "50".to_owned()),
            ("WORKER_RETRY_MAX_MS", "200".to_owned()),
            ("SCHEDULER_TICK_MS", "50".to_owned()),
            ("SCHEDULER_DISPATCH_GRACE_MS", "1000".to_owned()),
            ("SCHEDULER_SWEEP_MS", "200".to_owned()),
            ("LOG_LEVEL", "info,sqlx=warn".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        vars.extend(self.overrides.clone());
        vars
    }

    /// Settings built from [`TestEnv::env`].
    pub fn settings(&self) -> Settings {
        let vars = self.env();
        Settings::load_from(|name| vars.get(name).cloned()).expect("test settings are valid")
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let database = self.database_name.clone();
        let prefix = self.prefix.clone();
        // Drop runs inside the test's runtime: clean up on a thread of our own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let _ = roundhouse_db::drop_database(&admin_url(), &database).await;
                let _ = delete_broker_objects(&prefix).await;
            });
        })
        .join();
    }
}

/// Deletes the queues and exchanges a test's prefix created.
async fn delete_broker_objects(prefix: &str) -> anyhow::Result<()> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let connection = lapin::Connection::connect(&rabbitmq_url(), Default::default()).await?;
    let topology = roundhouse_broker::Topology::new(prefix);
    let mut queues: Vec<String> = roundhouse_broker_known_queues();
    queues.extend((0..4).map(|i| format!("custom{i}")));
    for queue in queues {
        // A failed delete closes the channel: one channel per attempt.
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel
                .queue_delete(
                    topology.job_queue(&queue).into(),
                    QueueDeleteOptions::default(),
                )
                .await;
        }
    }
    for exchange in [
        topology.jobs_exchange(),
        topology.control_exchange(),
        topology.events_exchange(),
    ] {
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel
                .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

fn roundhouse_broker_known_queues() -> Vec<String> {
    [
        "default",
        "llm_processing",
        "data_sync",
        "notifications",
        "maintenance",
        "rag_ingestion",
        "agents",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Claims of a test user token.
pub struct TokenClaims<'a> {
    pub sub: &'a str,
    pub role: &'a str,
    pub aud: &'a str,
    /// Seconds from now (negative: already expired).
    pub expires_in: i64,
    pub admin: bool,
}

impl Default for TokenClaims<'_> {
    fn default() -> Self {
        Self {
            sub: "00000000-0000-4000-8000-000000000001",
            role: "authenticated",
            aud: "authenticated",
            expires_in: 3600,
            admin: false,
        }
    }
}

/// An HS256 token signed with `secret`, shaped like a Supabase access token.
pub fn token_with(claims: TokenClaims<'_>, secret: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut body = serde_json::json!({
        "sub": claims.sub,
        "role": claims.role,
        "aud": claims.aud,
        "iss": format!("{SUPABASE_URL}/auth/v1"),
        "iat": now,
        "exp": now + claims.expires_in,
        "email": format!("{}@example.test", claims.sub),
    });
    if claims.admin {
        body["app_metadata"] = serde_json::json!({"role": "admin"});
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &body,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode token")
}

/// A valid user token for `sub`.
pub fn user_token(sub: &str) -> String {
    token_with(
        TokenClaims {
            sub,
            ..TokenClaims::default()
        },
        JWT_SECRET,
    )
}
