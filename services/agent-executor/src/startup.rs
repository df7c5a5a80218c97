//! Wiring: state, router, start and graceful stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use roundhouse_auth::{AuthSettings, Authenticator};
use roundhouse_broker::{Broker, BrokerSettings};
use roundhouse_config::{Service, Settings};
use roundhouse_core::JobType;
use roundhouse_db::{Db, PoolSettings};
use roundhouse_http::{ApiError, Gatekeeper, RateLimits};
use roundhouse_llm::{LlmConfig, Providers};
use roundhouse_worker::{ExtraHandlers, Handler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::agent_job::AgentRunJob;
use crate::hub::RunHub;
use crate::pricing::Pricing;
use crate::runner::Runner;

/// How long a stopping executor lets runs finish before it interrupts them
/// (they fail and are refunded). Below the usual 30 s a platform waits
/// between SIGTERM and SIGKILL.
const RUN_DRAIN: Duration = Duration::from_secs(20);
/// How long WebSockets get, once the runs have ended, to send their last
/// messages and close.
const SOCKET_DRAIN: Duration = Duration::from_secs(5);
/// How often running runs' heartbeats are renewed; the scheduler fails runs
/// whose heartbeat is older than `AGENT_RUN_STALE_SECONDS` (default 60).
const RUN_HEARTBEAT: Duration = Duration::from_secs(10);

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    /// Publishes the dispatch of async runs' jobs.
    pub broker: Broker,
    pub auth: Authenticator,
    pub limits: Arc<RateLimits>,
    pub settings: Arc<Settings>,
    pub providers: Providers,
    pub pricing: Arc<Pricing>,
    /// The runs executing on this replica, for the streams that follow them.
    pub hub: Arc<RunHub>,
    pub runner: Runner,
    /// The open WebSocket sessions (upgraded connections outlive the
    /// server's graceful shutdown, so they are awaited separately).
    pub sockets: TaskTracker,
    /// Cancelled when the executor starts shutting down.
    pub closing: CancellationToken,
    /// When the state was assembled (`/health`'s `uptimeSeconds`).
    pub started: Instant,
}

impl Gatekeeper for AppState {
    fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    fn rate_limits(&self) -> &RateLimits {
        &self.limits
    }

    fn client_ip_header(&self) -> &str {
        &self.settings.client_ip_header
    }
}

impl AppState {
    /// Wires the state around a database. Fails on bad LLM or pricing
    /// settings, naming the variable.
    pub fn assemble(settings: Settings, db: Db, broker: Broker) -> anyhow::Result<Self> {
        let llm = LlmConfig::from_settings(&settings).context("invalid LLM settings")?;
        let providers = Providers::from_config(&llm).context("invalid LLM settings")?;
        let pricing = Arc::new(Pricing::from_settings(&settings)?);
        let auth = Authenticator::new(AuthSettings {
            supabase_url: settings.supabase_url.clone(),
            jwt_secret: settings.supabase_jwt_secret.clone(),
            service_tokens: settings.service_tokens(),
            ..AuthSettings::default()
        });
        if settings
            .railway_backend_secret
            .as_deref()
            .is_none_or(|s| s.trim().is_empty())
        {
            tracing::warn!(
                "RAILWAY_BACKEND_SECRET is not set: POST /api/agent/execute answers 503"
            );
        }
        tracing::info!(providers = ?providers.names(), "LLM providers configured");
        // Installs the metrics recorder before the first request is counted.
        roundhouse_telemetry::metrics_handle();
        Ok(AppState {
            limits: Arc::new(RateLimits::new(
                settings.rate_limit_per_user_per_minute,
                settings.rate_limit_per_ip_per_minute,
            )),
            runner: Runner::new(db.clone(), pricing.clone()),
            db,
            broker,
            auth,
            settings: Arc::new(settings),
            providers,
            pricing,
            hub: Arc::new(RunHub::default()),
            sockets: TaskTracker::new(),
            closing: CancellationToken::new(),
            started: Instant::now(),
        })
    }
}

/// The agent-executor service, bound and ready to serve.
pub struct Application {
    state: AppState,
    /// The embedded worker that runs async runs' jobs (the `agents` queue).
    worker: roundhouse_worker::Application,
    listener: tokio::net::TcpListener,
    port: u16,
}

impl Application {
    /// Connects (lazily: the service starts, unhealthy, while PostgreSQL is
    /// down) and binds `PORT` (default 8081; 0 picks a free port).
    /// Migrations are the api's job (`roundhouse-api migrate`).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = Db::connect_lazy(
            &settings.database_url,
            &PoolSettings {
                max_connections: settings.database_pool_size(Service::AgentExecutor),
                statement_timeout: Some(settings.database_statement_timeout()),
                application_name: Some(Service::AgentExecutor.application_name().to_owned()),
                ..PoolSettings::default()
            },
        )
        .context("DATABASE_URL")?;
        let broker = Broker::start(BrokerSettings {
            url: settings.rabbitmq_url.clone(),
            prefix: settings.rabbitmq_prefix.clone(),
            connection_name: format!("agent-executor-{}", std::process::id()),
            confirm_timeout: Duration::from_secs(5),
        });
        let mut worker_settings = settings.clone();
        worker_settings.worker_queues = JobType::AgentRun.default_queue().to_string();
        let state = AppState::assemble(settings, db, broker)?;
        // The embedded worker shares this pool: one per process keeps the
        // connection budget what DATABASE_MAX_CONNECTIONS says.
        let worker = roundhouse_worker::Application::build_embedded(
            worker_settings,
            ExtraHandlers::from([(
                JobType::AgentRun.into(),
                Handler::Extra(Arc::new(AgentRunJob {
                    state: state.clone(),
                })),
            )]),
            state.db.clone(),
        )
        .await
        .context("the embedded worker for async runs")?;
        let listener = roundhouse_telemetry::bind(state.settings.port.unwrap_or(8081))
            .await
            .context("cannot bind PORT")?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            state,
            worker,
            listener,
            port,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The state (tests use its handles).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets runs
    /// finish for a while (interrupting and refunding the rest) and waits
    /// for their responses to go out.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state;
        let closing = state.closing.clone();
        // Async runs: the embedded worker takes `agent_run` jobs until the
        // executor starts closing, then drains like any worker.
        let worker = tokio::spawn(
            self.worker
                .run_until_stopped(closing.clone().cancelled_owned()),
        );
        let signal = {
            let closing = closing.clone();
            tokio::spawn(async move {
                shutdown.await;
                closing.cancel();
            })
        };
        let drain = {
            let (closing, runner) = (closing.clone(), state.runner.clone());
            tokio::spawn(async move {
                closing.cancelled().await;
                runner.drain(RUN_DRAIN).await;
            })
        };
        // This replica is alive: renew its runs' heartbeats, so that the
        // scheduler fails and refunds only the runs of an executor that died.
        let heartbeat = {
            let (db, hub) = (state.db.clone(), state.hub.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(RUN_HEARTBEAT);
                loop {
                    every.tick().await;
                    if let Err(error) = db.heartbeat_runs(&hub.run_ids()).await {
                        tracing::warn!(%error, "could not renew the runs' heartbeats");
                    }
                }
            })
        };
        let pruner = state.limits.spawn_pruner();
        let db = state.db.clone();
        let broker = state.broker.clone();
        let sockets = state.sockets.clone();
        let listener = roundhouse_http::no_delay(self.listener);
        tracing::info!(port = self.port, "agent executor listening");
        let served = axum::serve(
            listener,
            router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(closing.clone().cancelled_owned())
        .await;
        // Connections are closed once every run has ended; the drain is done
        // or nearly (a server error gets here without a signal: stop anyway).
        closing.cancel();
        let _ = drain.await;
        // The sockets stopped reading at the signal and close once their
        // runs have ended, which the drain has just waited for.
        sockets.close();
        if tokio::time::timeout(SOCKET_DRAIN, sockets.wait())
            .await
            .is_err()
        {
            tracing::warn!(sockets = sockets.len(), "WebSockets still open at shutdown");
        }
        if let Ok(Err(error)) = worker.await {
            tracing::warn!(
                error = format!("{error:#}"),
                "the embedded worker stopped with an error"
            );
        }
        signal.abort();
        pruner.abort();
        heartbeat.abort();
        broker.close().await;
        db.close().await;
        served?;
        tracing::info!("agent executor stopped");
        Ok(())
    }
}

/// The executor's routes and middleware (every route is registered, and
/// documented, in `crate::openapi`).
pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.body_limit_bytes;
    let origins: Vec<HeaderValue> = state
        .settings
        .allowed_origins()
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let middleware = move |api: Router<AppState>| {
        let api = api
            .fallback(|| async { ApiError::not_found("route") })
            .layer(middleware::map_response(method_not_allowed_in_error_shape))
            .layer(DefaultBodyLimit::max(body_limit))
            .layer(middleware::from_fn(roundhouse_http::record_http_metrics))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(roundhouse_telemetry::http_server_span::<axum::body::Body>),
            );
        if origins.is_empty() {
            return api;
        }
        // An exact allowlist: the Origin header is never reflected.
        api.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("last-event-id"),
                ])
                .expose_headers([header::RETRY_AFTER, HeaderName::from_static("x-run-id")])
                .max_age(Duration::from_secs(600)),
        )
    };
    crate::openapi::api_routes(middleware)
        .into_router()
        .with_state(state)
}

/// Axum answers a wrong method with an empty 405 carrying `Allow`; give it
/// the API's error body and keep the header. (The same as the api's.)
async fn method_not_allowed_in_error_shape(response: Response) -> Response {
    if response.status() != axum::http::StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut shaped = ApiError::method_not_allowed().into_response();
    if let Some(allow) = allow {
        shaped.headers_mut().insert(header::ALLOW, allow);
    }
    shaped
}
