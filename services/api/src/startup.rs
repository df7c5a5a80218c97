//! Wiring: state, router, start and graceful stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use roundhouse_auth::{AuthSettings, Authenticator};
use roundhouse_broker::{Broker, BrokerSettings};
use roundhouse_config::{Service, Settings};
use roundhouse_db::{Db, PoolSettings};
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::dispatcher::Dispatcher;
use crate::inserter::Inserter;
use crate::live::Feed;
use roundhouse_http::ApiError;
use roundhouse_http::{Gatekeeper, RateLimits};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub broker: Broker,
    pub auth: Authenticator,
    pub dispatcher: Dispatcher,
    pub inserter: Inserter,
    pub limits: Arc<RateLimits>,
    pub settings: Arc<Settings>,
    pub metrics: PrometheusHandle,
    pub started: Instant,
    /// Embeds `GET /api/rag/search` queries.
    pub rag: Arc<crate::routes::rag::QueryEmbedder>,
    /// Custom job types registered by workers.
    pub job_types: Arc<crate::job_types::JobTypeRegistry>,
    /// Live job events (SSE and `/ws`); its token ends their streams at shutdown.
    pub feed: Feed,
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
    /// Wires the state around a database and a broker handle, starting the
    /// background dispatcher (whose task is returned) and inserter. Fails on
    /// LLM settings the search cannot work with (`RAG_EMBEDDING_PROVIDER`).
    pub fn assemble(
        settings: Settings,
        db: Db,
        broker: Broker,
    ) -> anyhow::Result<(Self, tokio::task::JoinHandle<()>)> {
        let rag = Arc::new(crate::routes::rag::QueryEmbedder::from_settings(&settings)?);
        let auth = Authenticator::new(AuthSettings {
            supabase_url: settings.supabase_url.clone(),
            jwt_secret: settings.supabase_jwt_secret.clone(),
            service_tokens: settings.service_tokens(),
            ..AuthSettings::default()
        });
        let (dispatcher, dispatcher_task) = Dispatcher::spawn(db.clone(), broker.clone());
        // Both tasks stop when the feed's token is cancelled (at shutdown).
        let (feed, _poller) = Feed::spawn(db.clone(), CancellationToken::new());
        tokio::spawn(crate::live::notes::run(broker.clone(), feed.clone()));
        let state = AppState {
            inserter: Inserter::spawn(db.clone()),
            job_types: Arc::new(crate::job_types::JobTypeRegistry::new(db.clone())),
            limits: Arc::new(RateLimits::new(
                settings.rate_limit_per_user_per_minute,
                settings.rate_limit_per_ip_per_minute,
            )),
            db,
            broker,
            auth,
            dispatcher,
            settings: Arc::new(settings),
            metrics: roundhouse_telemetry::metrics_handle(),
            started: Instant::now(),
            rag,
            feed,
        };
        Ok((state, dispatcher_task))
    }

    /// Job `job_id`'s timeline grew by a write of this replica: wakes this
    /// replica's feed and, best effort, every other replica's.
    pub fn announce_events(&self, job_id: uuid::Uuid, queue: &str) {
        self.feed.wake();
        let broker = self.broker.clone();
        let note = roundhouse_core::JobEventsNote {
            job_id,
            queue: queue.to_owned(),
        };
        tokio::spawn(async move { broker.announce_job_events(&[note]).await });
    }
}

/// The api service, bound and ready to serve.
pub struct Application {
    state: AppState,
    dispatcher_task: tokio::task::JoinHandle<()>,
    listener: tokio::net::TcpListener,
    port: u16,
}

impl Application {
    /// Applies migrations (retrying while PostgreSQL starts), connects, and
    /// binds `PORT` (default 8080; 0 picks a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        migrate(&settings).await?;
        let db = Db::connect_lazy(
            &settings.database_url,
            &PoolSettings {
                max_connections: settings.database_pool_size(Service::Api),
                statement_timeout: Some(settings.database_statement_timeout()),
                application_name: Some(Service::Api.application_name().to_owned()),
                ..PoolSettings::default()
            },
        )
        .context("DATABASE_URL")?;
        let broker = Broker::start(BrokerSettings {
            url: settings.rabbitmq_url.clone(),
            prefix: settings.rabbitmq_prefix.clone(),
            connection_name: format!("api-{}", std::process::id()),
            confirm_timeout: Duration::from_secs(5),
        });
        let (state, dispatcher_task) = AppState::assemble(settings, db, broker)?;
        let listener = roundhouse_telemetry::bind(state.settings.port.unwrap_or(8080))
            .await
            .context("cannot bind PORT")?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            state,
            dispatcher_task,
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

    /// Serves until `shutdown` resolves, then finishes in-flight requests.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let pruner = self.state.limits.spawn_pruner();
        tracing::info!(port = self.port, "api listening");
        let broker = self.state.broker.clone();
        let db = self.state.db.clone();
        let closing = self.state.feed.closing().clone();
        // Event streams and sockets never end by themselves: end them when
        // shutdown begins, or the graceful shutdown would wait for them.
        let shutdown = async move {
            shutdown.await;
            closing.cancel();
        };
        axum::serve(
            roundhouse_http::no_delay(self.listener),
            router(self.state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await?;
        pruner.abort();
        // The router and its senders are gone: let the dispatcher publish
        // what the last requests queued (the sweep would, a little later).
        let _ = tokio::time::timeout(Duration::from_secs(5), self.dispatcher_task).await;
        broker.close().await;
        db.close().await;
        tracing::info!("api stopped");
        Ok(())
    }
}

/// Applies migrations on `DATABASE_MIGRATION_URL` (or `DATABASE_URL`),
/// waiting up to a minute for PostgreSQL to come up.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let db = Db::connect_lazy(
        settings.migration_url(),
        &PoolSettings {
            max_connections: 1,
            application_name: Some("roundhouse-migrate".to_owned()),
            ..PoolSettings::default()
        },
    )
    .context("DATABASE_MIGRATION_URL")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match db.migrate().await {
            Ok(()) => break,
            Err(error) if error.is_unavailable() && Instant::now() < deadline => {
                tracing::warn!(%error, "waiting for PostgreSQL to apply migrations");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(error) => return Err(error).context("migrations failed"),
        }
    }
    db.close().await;
    Ok(())
}

/// The API's routes and middleware.
pub fn router(state: AppState) -> Router {
    // The dashboard has its own auth (session cookie + CSRF) and middleware.
    let admin = crate::admin::router(state.clone());
    // Every route is registered (and documented) in `crate::openapi`.
    let api = crate::openapi::api_routes()
        .into_router()
        .fallback(|| async { ApiError::not_found("route") })
        .layer(middleware::map_response(method_not_allowed_in_error_shape))
        .layer(DefaultBodyLimit::max(state.settings.body_limit_bytes))
        .layer(middleware::from_fn(roundhouse_http::record_http_metrics))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(roundhouse_telemetry::http_server_span::<axum::body::Body>),
        );
    let origins: Vec<HeaderValue> = state
        .settings
        .allowed_origins()
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let api = if origins.is_empty() {
        api
    } else {
        // An exact allowlist: the Origin header is never reflected.
        api.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .expose_headers([header::RETRY_AFTER])
                .max_age(Duration::from_secs(600)),
        )
    };
    api.with_state(state).merge(admin)
}

/// Axum answers a wrong method with an empty 405 carrying `Allow`; give it
/// the API's error body and keep the header.
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
