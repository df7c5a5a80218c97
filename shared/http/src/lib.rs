//! The HTTP edge the api and the agent-executor share: SPEC §4's error shape
//! (`ApiError`), the authenticated-caller extractors (which apply the rate
//! limits), JSON/query extractors whose rejections use that shape, and the
//! request-duration metrics middleware, server-sent event streams
//! (`Last-Event-ID`, keep-alives), and the OpenAPI documents built with the
//! routers, with their docs pages ([`docs`]).

pub mod docs;
mod error;
mod extract;
mod listener;
mod metrics;
mod page;
mod rate_limit;
mod sse;

pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use extract::{AdminCaller, ApiJson, ApiQuery, Caller, Gatekeeper, client_ip};
pub use listener::no_delay;
pub use metrics::record_http_metrics;
pub use page::{cut_page, page_request};
pub use rate_limit::RateLimits;
pub use sse::{event_stream, last_event_id};
