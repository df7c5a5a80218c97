//! Cursor pagination shared by every listing endpoint.

use uuid::Uuid;

use crate::ApiError;

/// A listing's validated page request: `limit` 1–500 (default 50) and the
/// `cursor` a previous page returned.
pub fn page_request(
    limit: Option<i64>,
    cursor: Option<&str>,
) -> Result<(i64, Option<Uuid>), ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::validation("limit: must be between 1 and 500"));
    }
    let cursor = cursor
        .map(Uuid::parse_str)
        .transpose()
        .map_err(|_| ApiError::validation("cursor: not a cursor returned by this API"))?;
    Ok((limit, cursor))
}

/// Cuts the extra row a listing fetched (it asks for `limit + 1`) and returns
/// the next page's cursor, if there is a next page.
pub fn cut_page<T>(rows: &mut Vec<T>, limit: i64, id: impl Fn(&T) -> Uuid) -> Option<Uuid> {
    if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(id)
    } else {
        None
    }
}
