//! The operators' dashboard at `/admin/queues`, served by the api binary.
//!
//! A small embedded front end (one HTML shell, one script, one stylesheet,
//! compiled into the binary: it works with no internet) over JSON endpoints
//! under `/admin/api`. Those endpoints reuse the public API's handlers acting
//! as the service, so the dashboard and the API cannot disagree about what
//! a retry or a cancel does. The dashboard adds its own sign-in
//! ([`session`]): a session cookie instead of a bearer token, CSRF tokens on
//! every action, and an audit log entry for every action.
//!
//! Admin users of the API (`app_metadata.role = "admin"`) sign in with their
//! access token and see every user's jobs, like the service.

mod api;
mod pages;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware;
use axum::response::Response;
use axum::routing::{any, get, post};
use roundhouse_http::RateLimits;

use crate::AppState;

/// Sign-in attempts allowed per client address per minute.
const SIGN_INS_PER_MINUTE: u32 = 10;

/// The dashboard's state: the API's, plus its own sign-in limiter.
#[derive(Clone)]
pub struct AdminState {
    pub app: AppState,
    sign_ins: Arc<RateLimits>,
}

/// The dashboard's routes, with their own auth and middleware.
pub fn router(app: AppState) -> Router {
    let state = AdminState {
        app,
        sign_ins: Arc::new(RateLimits::new(1, SIGN_INS_PER_MINUTE)),
    };
    let api = Router::new()
        .route("/overview", get(api::overview))
        .route("/jobs", get(api::list_jobs))
        .route("/jobs/retry-failed", post(api::retry_failed))
        .route("/jobs/{id}", get(api::get_job).delete(api::delete_job))
        .route("/jobs/{id}/events", get(api::job_events))
        .route("/jobs/{id}/retry", post(api::retry_job))
        .route("/jobs/{id}/cancel", post(api::cancel_job))
        .route("/queues/{name}/pause", post(api::pause_queue))
        .route("/queues/{name}/resume", post(api::resume_queue))
        .route("/schedules", get(api::list_schedules))
        .route("/schedules/{id}/enable", post(api::enable_schedule))
        .route("/schedules/{id}/disable", post(api::disable_schedule))
        .route("/schedules/{id}/trigger", post(api::trigger_schedule))
        .route("/audit", get(api::audit_log))
        .fallback(|| async { roundhouse_http::ApiError::not_found("route") });
    Router::new()
        .route("/admin", get(pages::to_dashboard))
        .route("/admin/", get(pages::to_dashboard))
        .route("/admin/queues", get(pages::dashboard))
        .route("/admin/login", get(pages::login_page).post(pages::sign_in))
        .route("/admin/logout", post(pages::sign_out))
        .route("/admin/assets/{file}", get(pages::asset))
        .nest("/admin/api", api)
        .route("/admin/{*rest}", any(pages::not_found))
        .layer(middleware::map_response(harden))
        // Forms and action bodies are small; job payloads are never posted here.
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(middleware::from_fn(roundhouse_http::record_http_metrics))
        .with_state(state)
}

/// Headers every dashboard response carries: no framing, no inline or
/// third-party scripts, no caching of pages that show job data.
async fn harden(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'",
    );
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // Not `no-referrer`: with it, Chromium sends `Origin: null` on form posts,
    // which the sign-in origin check must refuse.
    set(headers, header::REFERRER_POLICY, "same-origin");
    set(headers, header::CACHE_CONTROL, "no-store");
    response
}
