//! Request extractors, shared with the agent-executor (`roundhouse-http`).

pub use roundhouse_http::{AdminCaller, ApiJson, ApiQuery, Caller};
