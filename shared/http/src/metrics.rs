//! The request histogram of both HTTP services.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// Middleware (`axum::middleware::from_fn`) recording each request in
/// `roundhouse_http_request_duration_seconds{method,path,status}`. `path` is
/// the route's pattern (`/api/jobs/{id}`), never the raw URL, so ids do not
/// become series; requests no route matched are `unmatched`.
pub async fn record_http_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let response = next.run(request).await;
    let labels = [
        ("method", method),
        ("path", path),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::histogram!("roundhouse_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}
