//! The handlers, one module per resource.

pub mod agents;
pub mod credits;
pub mod execute;
pub mod health;
pub mod runs;
pub mod ws;

use roundhouse_http::ApiError;
use uuid::Uuid;

/// Parses a path id; `what` names the resource in the refusal.
pub(crate) fn parse_id(id: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id)
        .map_err(|_| ApiError::bad_request("invalid_id", format!("{what} id must be a UUID")))
}
