//! Logs, metrics, process signals and the small `/health` + `/metrics`
//! server that every non-API service runs on its `PORT` (Railway health
//! checks, Prometheus scrapes).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use roundhouse_config::LogFormat;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

mod traces;

pub use traces::{Telemetry, current_traceparent, http_server_span, set_parent, traceparent_of};

/// Process-wide setup for a service, first thing in `main`: the rustls
/// crypto provider (one provider, aws-lc, for sqlx, lapin and reqwest
/// alike), the Prometheus recorder, the log subscriber, and OpenTelemetry
/// traces over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (service name
/// `OTEL_SERVICE_NAME`, else `service`). Keep the returned guard alive until
/// the end of `main`.
pub fn init_service(settings: &roundhouse_config::Settings, service: &str) -> Telemetry {
    let service = settings.otel_service_name.as_deref().unwrap_or(service);
    let provider = settings
        .otel_exporter_otlp_endpoint
        .as_deref()
        .and_then(|endpoint| match traces::otlp_provider(endpoint, service) {
            Ok(provider) => Some(provider),
            Err(error) => {
                // Tracing is an aid: a broken exporter must not stop the service.
                eprintln!("OTEL_EXPORTER_OTLP_ENDPOINT: traces are off: {error}");
                None
            }
        });
    install(settings.log_format, &settings.log_level, provider)
}

/// Logs only: tests and tools.
pub fn init(log_format: LogFormat, log_level: &str) {
    drop(install(log_format, log_level, None));
}

/// Logs plus traces sent to `exporter` as each span ends (tests use
/// opentelemetry_sdk's in-memory exporter).
pub fn init_with_exporter(
    log_format: LogFormat,
    log_level: &str,
    service: &str,
    exporter: impl opentelemetry_sdk::trace::SpanExporter + 'static,
) -> Telemetry {
    install(
        log_format,
        log_level,
        Some(traces::provider(exporter, service, false)),
    )
}

fn install(
    log_format: LogFormat,
    log_level: &str,
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
) -> Telemetry {
    // Ignored if already installed (tests call this repeatedly).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // The metrics recorder too, before anything records: a counter bumped
    // while no recorder is installed (the first broker connect, during
    // `Application::build`) is lost.
    let _ = metrics_handle();
    let filter = EnvFilter::try_new(log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(provider.as_ref().map(traces::layer));
    let result = match log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(tracing_subscriber::fmt::layer()).try_init(),
    };
    // Already installed (tests): keep the first subscriber.
    drop(result);
    Telemetry::new(provider)
}

/// Bucket bounds (seconds) for every `*_seconds` histogram: from the
/// millisecond lateness of a cron tick to hour-long jobs.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];

/// The process's Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Durations are exported as histograms (aggregatable across
            // replicas), everything else (batch sizes) as summaries.
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), DURATION_BUCKETS)
                .expect("the bucket list is not empty")
                .install_recorder()
                .expect("the Prometheus recorder is installed once")
        })
        .clone()
}

/// Resolves on Ctrl-C or SIGTERM (Railway and Kubernetes stop with SIGTERM).
///
/// The handlers are installed when this is *called*, not when the future is
/// first polled: call it first thing in `main`, so that a SIGTERM arriving
/// while the service starts up is a clean shutdown rather than the default
/// action (immediate death, without draining).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (mut interrupt, mut terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let interrupt = async {
                match interrupt.as_mut() {
                    Some(signal) => drop(signal.recv().await),
                    None => std::future::pending::<()>().await,
                }
            };
            let terminate = async {
                match terminate.as_mut() {
                    Some(signal) => drop(signal.recv().await),
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = interrupt => {},
                _ = terminate => {},
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received");
    }
}

/// A dependency check for `/health`: returns `Err(reason)` when unhealthy.
pub type HealthCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

#[derive(Clone)]
struct OpsState {
    service: &'static str,
    started: Instant,
    check: HealthCheck,
    metrics: PrometheusHandle,
}

/// The health body of SPEC §4: `{"status","timestamp","service","version"}`.
pub fn health_body(service: &str, healthy: bool, detail: Option<&str>) -> serde_json::Value {
    let mut body = serde_json::json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "service": service,
        "version": env!("CARGO_PKG_VERSION"),
    });
    if let Some(detail) = detail {
        body["reason"] = detail.into();
    }
    body
}

async fn health(State(state): State<OpsState>) -> Response {
    let result = (state.check)().await;
    let status = if result.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = health_body(state.service, result.is_ok(), result.err().as_deref());
    body["uptimeSeconds"] = state.started.elapsed().as_secs().into();
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<OpsState>) -> String {
    state.metrics.render()
}

/// The `/health` and `/metrics` router for a service without an API of its own.
pub fn ops_router(service: &'static str, check: HealthCheck) -> axum::Router {
    axum::Router::new()
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/metrics", get(metrics))
        .with_state(OpsState {
            service,
            started: Instant::now(),
            check,
            metrics: metrics_handle(),
        })
}

/// `GET /health/live`: 200 while the process answers HTTP at all. For
/// liveness probes, which must not restart a service because PostgreSQL or
/// RabbitMQ is down (`/health` reports those, for readiness).
pub async fn live() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Binds `[::]:port` (dual-stack: Railway's private network may be IPv6-only),
/// falling back to `0.0.0.0` where IPv6 is unavailable.
pub async fn bind(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(SocketAddr::from(([0u16; 8], port))).await {
        Ok(listener) => Ok(listener),
        Err(_) => tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).await,
    }
}
