//! `http_pull`: a paginated JSON API, one page per batch.
//!
//! The URL comes from a payload, so it goes through the SSRF guard: checked
//! before the first request, and again by the guarded client at connect
//! time and on every redirect. A refusal, or a 4xx answer, fails the job for
//! good; a 429, a 5xx or a network error fails the attempt, and the retry
//! resumes at the page after the last checkpoint.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, RETRY_AFTER};
use roundhouse_db::{DataSyncJob, HttpPull, Pagination};
use roundhouse_outbound::Url;
use serde_json::{Value, json};

use super::sink::Sink;
use super::{between_batches, to_row};
use crate::handler::{HandlerError, JobContext};

/// The largest response body read (a page of records, not a dump).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// How long a 429 without a usable `Retry-After` waits.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Where the next request starts.
#[derive(Debug, Clone, PartialEq)]
enum Position {
    /// The cursor to send; `None` for the first page.
    Cursor(Option<Value>),
    Page(i64),
}

impl Position {
    fn start(pagination: &Pagination, stored: &Value) -> Result<Self, HandlerError> {
        let unreadable = || {
            HandlerError::Permanent(format!(
                "data_sync: the stored checkpoint {stored} does not fit this source's pagination"
            ))
        };
        Ok(match (pagination, stored) {
            (Pagination::Cursor { .. }, Value::Null) => Position::Cursor(None),
            (Pagination::Page { start_page, .. }, Value::Null) => Position::Page(*start_page),
            (Pagination::Cursor { .. }, stored) => {
                let cursor = stored.get("cursor").ok_or_else(unreadable)?;
                Position::Cursor((!cursor.is_null()).then(|| cursor.clone()))
            }
            (Pagination::Page { .. }, stored) => Position::Page(
                stored
                    .get("page")
                    .and_then(Value::as_i64)
                    .ok_or_else(unreadable)?,
            ),
        })
    }

    fn to_json(&self) -> Value {
        match self {
            Position::Cursor(cursor) => json!({ "cursor": cursor }),
            Position::Page(page) => json!({ "page": page }),
        }
    }
}

pub(super) async fn run(
    ctx: &JobContext,
    source: &HttpPull,
    job: &DataSyncJob,
    batch_size: usize,
    sink: &mut Sink<'_>,
) -> Result<(), HandlerError> {
    let base = Url::parse(&source.url)
        .map_err(|e| HandlerError::Permanent(format!("data_sync source.url: {e}")))?;
    let shown = shown(&base);
    ctx.outbound()
        .policy
        .check_url(&base)
        .await
        .map_err(|refused| {
            let message = format!("data_sync source.url: {refused}");
            if refused.is_retryable() {
                HandlerError::Retry(message)
            } else {
                HandlerError::Permanent(message)
            }
        })?;
    let mapping = job.target.columns.as_deref();
    let mut position = Position::start(&source.pagination, &sink.checkpoint.position)?;
    loop {
        between_batches(ctx, sink).await?;
        let url = page_url(&base, source, &job.filters, batch_size, &position);
        let body = fetch(ctx, url, source, &shown).await?;
        let records = source
            .records_path
            .lookup(&body)
            .and_then(Value::as_array)
            .ok_or_else(|| {
                HandlerError::Permanent(format!(
                    "data_sync: the response of {shown} has no array of records at source.recordsPath"
                ))
            })?;
        let total = source
            .total_path
            .as_ref()
            .and_then(|path| path.lookup(&body))
            .and_then(Value::as_i64);
        let (next, finished) = match (&source.pagination, &position) {
            (
                Pagination::Cursor {
                    next_cursor_path, ..
                },
                Position::Cursor(sent),
            ) => {
                let next = next_cursor_path
                    .lookup(&body)
                    .filter(|cursor| !cursor.is_null() && cursor.as_str() != Some(""))
                    .cloned();
                if next.is_some() && next == *sent {
                    return Err(HandlerError::Permanent(format!(
                        "data_sync: {shown} answered with the cursor it was sent; stopping rather than looping"
                    )));
                }
                let finished = next.is_none() || records.is_empty();
                (Position::Cursor(next), finished)
            }
            (Pagination::Page { .. }, Position::Page(page)) => {
                (Position::Page(page + 1), records.is_empty())
            }
            _ => unreachable!("positions are made for their pagination"),
        };
        let rows = records
            .iter()
            .map(|record| to_row(record, mapping))
            .collect::<Result<Vec<_>, _>>()?;
        let read = rows.len();
        // An empty page ends the sync where it stands.
        let stored = if read == 0 { &position } else { &next };
        sink.write(rows, read, stored.to_json(), finished, total)
            .await?;
        if finished {
            return Ok(());
        }
        position = next;
    }
}

/// The URL of the page at `position`: the source URL with its query,
/// the payload's filters, the page size and the page or cursor.
fn page_url(
    base: &Url,
    source: &HttpPull,
    filters: &[(String, String)],
    batch_size: usize,
    position: &Position,
) -> Url {
    let mut url = base.clone();
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in source.query.iter().chain(filters) {
            query.append_pair(name, value);
        }
        if let Some((param, size)) = source.pagination.page_size(batch_size) {
            query.append_pair(param, &size.to_string());
        }
        match (&source.pagination, position) {
            (Pagination::Cursor { cursor_param, .. }, Position::Cursor(Some(cursor))) => {
                let cursor = match cursor {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                query.append_pair(cursor_param, &cursor);
            }
            (Pagination::Page { page_param, .. }, Position::Page(page)) => {
                query.append_pair(page_param, &page.to_string());
            }
            _ => {}
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    url
}

/// GETs one page as JSON. The headers (credentials) go on the request and
/// nowhere else; messages name the URL without its query string, which may
/// carry a key too.
async fn fetch(
    ctx: &JobContext,
    url: Url,
    source: &HttpPull,
    shown: &str,
) -> Result<Value, HandlerError> {
    let mut request = ctx
        .outbound()
        .client
        .get(url)
        .header(ACCEPT, "application/json");
    for (name, value) in &source.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = tokio::select! {
        response = request.send() => response.map_err(|e| request_error(e, shown))?,
        _ = ctx.cancel.cancelled() => {
            return Err(HandlerError::Retry("data_sync interrupted during a request".into()));
        }
    };
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        let wait = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(DEFAULT_RETRY_AFTER, Duration::from_secs);
        return Err(HandlerError::RetryAfter(
            format!("data_sync: {shown} answered 429 Too Many Requests"),
            wait,
        ));
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return Err(HandlerError::Retry(format!(
            "data_sync: {shown} answered {status}"
        )));
    }
    if !status.is_success() {
        return Err(HandlerError::Permanent(format!(
            "data_sync: {shown} answered {status}"
        )));
    }
    let body = read_body(ctx, response, shown).await?;
    serde_json::from_slice(&body).map_err(|e| {
        HandlerError::Permanent(format!(
            "data_sync: the response of {shown} is not JSON: {e}"
        ))
    })
}

async fn read_body(
    ctx: &JobContext,
    mut response: reqwest::Response,
    shown: &str,
) -> Result<Vec<u8>, HandlerError> {
    let mut body = Vec::new();
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk.map_err(|e| request_error(e, shown))?,
            _ = ctx.cancel.cancelled() => {
                return Err(HandlerError::Retry("data_sync interrupted during a request".into()));
            }
        };
        let Some(chunk) = chunk else {
            return Ok(body);
        };
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(HandlerError::Permanent(format!(
                "data_sync: a page from {shown} is larger than {} MiB; ask for smaller pages",
                MAX_BODY_BYTES / (1024 * 1024)
            )));
        }
        body.extend_from_slice(&chunk);
    }
}

fn request_error(error: reqwest::Error, shown: &str) -> HandlerError {
    if let Some(refused) = roundhouse_outbound::forbidden_in(&error) {
        return HandlerError::Permanent(format!("data_sync source.url: {refused}"));
    }
    let error = error.without_url();
    if error.is_builder() {
        return HandlerError::Permanent(format!(
            "data_sync: could not build the request to {shown}: {error}"
        ));
    }
    HandlerError::Retry(format!("data_sync: request to {shown} failed: {error}"))
}

/// The URL without credentials or query string, for messages.
fn shown(url: &Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    shown
}

#[cfg(test)]
mod tests {
    use roundhouse_db::SyncSource;

    use super::*;

    fn source(pagination: Value) -> (HttpPull, Vec<(String, String)>) {
        let job = DataSyncJob::parse(&json!({
            "syncType": "http_pull",
            "source": {"url": "https://user:pw@api.example.com/v1/items?fixed=1",
                       "pagination": pagination, "query": {"expand": "owner"}},
            "target": {"table": "items", "key": ["id"]},
            "filters": {"status": "active"}
        }))
        .unwrap();
        let SyncSource::HttpPull(source) = job.source else {
            panic!("http_pull")
        };
        (source, job.filters)
    }

    #[test]
    fn page_urls_carry_query_filters_size_and_position() {
        let (cursor, filters) = source(json!({"type": "cursor", "cursorParam": "after",
            "nextCursorPath": "next", "pageSizeParam": "limit"}));
        let base = Url::parse(&cursor.url).unwrap();
        let first = page_url(&base, &cursor, &filters, 200, &Position::Cursor(None));
        assert_eq!(
            first.query(),
            Some("fixed=1&expand=owner&status=active&limit=200")
        );
        let later = page_url(
            &base,
            &cursor,
            &filters,
            200,
            &Position::Cursor(Some(json!("a b&c"))),
        );
        assert!(
            later.query().unwrap().ends_with("&after=a+b%26c"),
            "{later}"
        );

        let (page, filters) = source(json!({"type": "page", "pageParam": "p", "startPage": 0}));
        let base = Url::parse(&page.url).unwrap();
        assert_eq!(
            Position::start(&page.pagination, &Value::Null).unwrap(),
            Position::Page(0)
        );
        let third = page_url(&base, &page, &filters, 200, &Position::Page(2));
        assert!(third.query().unwrap().ends_with("&p=2"), "{third}");
        assert_eq!(shown(&base), "https://api.example.com/v1/items");
    }

    #[test]
    fn positions_round_trip_through_the_checkpoint() {
        let (cursor, _) =
            source(json!({"type": "cursor", "cursorParam": "after", "nextCursorPath": "next"}));
        let position = Position::Cursor(Some(json!(42)));
        assert_eq!(
            Position::start(&cursor.pagination, &position.to_json()).unwrap(),
            position
        );
        assert!(Position::start(&cursor.pagination, &json!({"page": 3})).is_err());
    }
}
