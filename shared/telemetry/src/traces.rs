//! OpenTelemetry traces: the OTLP exporter, and W3C trace context carried
//! across the queue.
//!
//! A job's trace starts at the api request (or continues the caller's
//! `traceparent`); the context is stored on the job row and sent in the
//! AMQP headers, so the publish, every attempt in a worker, the scheduler's
//! re-publishes and the LLM calls inside a handler join the same trace.
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Spans are exported in
//! batches from the SDK's own thread with a short timeout and a bounded
//! queue: a slow or dead collector costs dropped spans, never a slower job.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::global;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// How long one export may take before its spans are dropped.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// The tracer provider, flushed and shut down when dropped (at the end of
/// `main`, so the last spans are not lost).
#[must_use = "dropping it shuts tracing down"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub(crate) fn new(provider: Option<SdkTracerProvider>) -> Self {
        Self { provider }
    }

    /// Exports every finished span now (tests).
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            let _ = provider.force_flush();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown_with_timeout(EXPORT_TIMEOUT);
        }
    }
}

/// A provider exporting over OTLP/HTTP (protobuf) to `endpoint`: the
/// collector's base URL (`http://collector:4318`) or its full traces URL.
pub(crate) fn otlp_provider(endpoint: &str, service: &str) -> Result<SdkTracerProvider, String> {
    let endpoint = if endpoint.trim_end_matches('/').ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    };
    // The blocking HTTP client must be built outside the async runtime
    // (it panics inside one: opentelemetry-rust#2400), so off a fresh thread.
    let exporter = std::thread::spawn(move || {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
    })
    .join()
    .map_err(|_| "the OTLP exporter panicked while starting".to_owned())?
    .map_err(|e| e.to_string())?;
    Ok(provider(exporter, service, true))
}

/// A provider around `exporter`: batched in production; exported as each
/// span ends for tests.
pub(crate) fn provider(
    exporter: impl SpanExporter + 'static,
    service: &str,
    batched: bool,
) -> SdkTracerProvider {
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let builder = if batched {
        builder.with_batch_exporter(exporter)
    } else {
        builder.with_simple_exporter(exporter)
    };
    builder.build()
}

/// The tracing layer that turns spans into OpenTelemetry spans.
pub(crate) fn layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    global::set_text_map_propagator(TraceContextPropagator::new());
    tracing_opentelemetry::layer().with_tracer(provider.tracer("roundhouse"))
}

/// The W3C `traceparent` of the current span, when tracing is on and the
/// span belongs to a sampled trace.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// The W3C `traceparent` of `span`.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    global::get_text_map_propagator(|propagator| propagator.inject_context(&context, &mut carrier));
    carrier.remove("traceparent")
}

/// Makes `span` a child of the remote span `traceparent` names (ignored
/// when malformed, or when tracing is off).
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = global::get_text_map_propagator(|propagator| propagator.extract(&carrier));
    let _ = span.set_parent(context);
}

/// The span of an incoming HTTP request (`TraceLayer::make_span_with`),
/// continuing the caller's trace when it sent a `traceparent`.
pub fn http_server_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let span = tracing::info_span!(
        "http.request",
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
    );
    if let Some(parent) = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
    {
        set_parent(&span, parent);
    }
    span
}
