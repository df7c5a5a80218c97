//! The `data_sync` payload (SPEC §2), parsed the same way by the api (a 422
//! at enqueue) and by the worker (a permanent failure). It lives beside the
//! SQL it feeds because its most important rules are about the database:
//! which tables may be written ([`super::tables`]) and how names are quoted.
//!
//! ```json
//! {"syncType": "http_pull" | "sql_copy", "source": {…},
//!  "target": {"table": "public.customers", "key": ["id"],
//!             "columns": {"id": "id", "email": "contact.email"}},
//!  "filters": {"status": "active"}, "batchSize": 500}
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::tables::{Ident, TableName};

/// The largest `batchSize` a payload may ask for; workers lower it further
/// to `DATA_SYNC_MAX_BATCH`.
pub const MAX_BATCH_SIZE: usize = 100_000;
/// `batchSize` when the payload names none.
pub const DEFAULT_BATCH_SIZE: usize = 1000;
const MAX_QUERY_LEN: usize = 100_000;
const MAX_URL_LEN: usize = 4096;

/// A parsed `data_sync` payload.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSyncJob {
    pub source: SyncSource,
    pub target: SyncTarget,
    /// `http_pull` only: extra query-string parameters (SPEC's `filters`).
    /// `sql_copy` refuses them: its conditions belong in its query.
    pub filters: Vec<(String, String)>,
    /// Records per batch (`sql_copy`), or the page size asked of an
    /// `http_pull` source that takes one.
    pub batch_size: usize,
}

/// Where records come from.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncSource {
    HttpPull(HttpPull),
    SqlCopy(SqlCopy),
}

impl SyncSource {
    /// The payload's `syncType`.
    pub fn sync_type(&self) -> &'static str {
        match self {
            SyncSource::HttpPull(_) => "http_pull",
            SyncSource::SqlCopy(_) => "sql_copy",
        }
    }
}

/// A paginated JSON API.
#[derive(Clone, PartialEq)]
pub struct HttpPull {
    /// An absolute `http(s)` URL; the worker's SSRF guard decides whether it
    /// may be reached.
    pub url: String,
    pub pagination: Pagination,
    /// Where the page's array of records is in the response (the response
    /// itself when absent).
    pub records_path: JsonPath,
    /// Where the response says how many records there are in all, if it does.
    pub total_path: Option<JsonPath>,
    /// Request headers (credentials, typically). Never logged: `Debug` shows
    /// their names only.
    pub headers: Vec<(String, String)>,
    /// Fixed query-string parameters.
    pub query: Vec<(String, String)>,
}

impl fmt::Debug for HttpPull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpPull")
            .field("pagination", &self.pagination)
            .field("records_path", &self.records_path)
            .field("total_path", &self.total_path)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// How an `http_pull` source pages.
#[derive(Debug, Clone, PartialEq)]
pub enum Pagination {
    /// Each response names the next page's cursor; the first request sends none.
    Cursor {
        cursor_param: String,
        next_cursor_path: JsonPath,
        page_size_param: Option<String>,
        page_size: Option<u64>,
    },
    /// Pages are numbered from `start_page`.
    Page {
        page_param: String,
        start_page: i64,
        page_size_param: Option<String>,
        page_size: Option<u64>,
    },
}

impl Pagination {
    /// The page-size query parameter and its value, if the source takes one.
    pub fn page_size(&self, batch_size: usize) -> Option<(&str, u64)> {
        let (param, size) = match self {
            Pagination::Cursor {
                page_size_param,
                page_size,
                ..
            }
            | Pagination::Page {
                page_size_param,
                page_size,
                ..
            } => (page_size_param.as_deref()?, *page_size),
        };
        Some((param, size.unwrap_or(batch_size as u64)))
    }
}

/// A query over a PostgreSQL database, copied in key order.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlCopy {
    /// A `DATA_SYNC_SOURCES` name; the target database when absent.
    pub database: Option<String>,
    /// One `SELECT` (no parameters, no trailing `;`).
    pub query: String,
    /// The query's columns that order and page it; by default the target's
    /// key columns (through `target.columns` when they are renamed).
    pub key_columns: Vec<Ident>,
}

/// The table records are upserted into.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncTarget {
    pub table: TableName,
    /// The columns of a unique index on `table`: the upsert's conflict key.
    pub key: Vec<Ident>,
    /// `targetColumn → where its value comes from` (a JSON path into an
    /// `http_pull` record, a column of the `sql_copy` query). Without it, each
    /// record field goes to the target column of the same name.
    pub columns: Option<Vec<(Ident, FieldPath)>>,
}

impl SyncTarget {
    /// The target columns of the mapping, if there is one.
    pub fn mapped_columns(&self) -> Option<Vec<&Ident>> {
        self.columns
            .as_ref()
            .map(|columns| columns.iter().map(|(column, _)| column).collect())
    }
}

/// Where a target column's value is in a record: a top-level field of that
/// exact name if there is one, else a path ([`JsonPath`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldPath {
    raw: String,
    path: JsonPath,
}

impl FieldPath {
    /// Parses a field name or path.
    pub fn parse(raw: &str) -> Result<Self, String> {
        Ok(Self {
            raw: raw.to_owned(),
            path: JsonPath::parse(raw)?,
        })
    }

    /// The value in `record`, if any.
    pub fn lookup<'a>(&self, record: &'a Value) -> Option<&'a Value> {
        record.get(&self.raw).or_else(|| self.path.lookup(record))
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

/// A JSON pointer (`/data/items`) or a dotted path (`data.items`, `rows.0.id`);
/// empty means the document itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JsonPath(Vec<String>);

impl JsonPath {
    /// Parses either form.
    pub fn parse(path: &str) -> Result<Self, String> {
        if path.is_empty() {
            return Ok(Self::default());
        }
        let segments: Vec<String> = match path.strip_prefix('/') {
            Some(pointer) => pointer
                .split('/')
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect(),
            None => path.split('.').map(str::to_owned).collect(),
        };
        if segments.iter().any(String::is_empty) {
            return Err(format!("`{path}` has an empty segment"));
        }
        Ok(Self(segments))
    }

    /// The value at this path, if any.
    pub fn lookup<'a>(&self, document: &'a Value) -> Option<&'a Value> {
        self.0
            .iter()
            .try_fold(document, |node, segment| match node {
                Value::Object(map) => map.get(segment),
                Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
                _ => None,
            })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawJob {
    sync_type: Option<String>,
    source: Option<Value>,
    target: Option<Value>,
    filters: Option<Value>,
    batch_size: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawHttpPull {
    url: String,
    pagination: RawPagination,
    records_path: Option<String>,
    total_path: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    query: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
enum RawPagination {
    Cursor {
        cursor_param: String,
        next_cursor_path: String,
        page_size_param: Option<String>,
        page_size: Option<u64>,
    },
    Page {
        page_param: String,
        start_page: Option<i64>,
        page_size_param: Option<String>,
        page_size: Option<u64>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSqlCopy {
    database: Option<String>,
    query: String,
    key_columns: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTarget {
    table: String,
    key: Vec<String>,
    columns: Option<BTreeMap<String, String>>,
}

impl DataSyncJob {
    /// Parses and checks a payload. The error names the offending field
    /// (`target.table: …`, `source.pagination: …`).
    pub fn parse(payload: &Value) -> Result<Self, String> {
        let raw: RawJob = serde_json::from_value(payload.clone()).map_err(|e| e.to_string())?;
        let target = parse_target(raw.target.ok_or("target: is required")?)?;
        let source = raw.source.ok_or("source: is required")?;
        let source = match raw.sync_type.as_deref() {
            Some("http_pull") => SyncSource::HttpPull(parse_http_pull(source)?),
            Some("sql_copy") => SyncSource::SqlCopy(parse_sql_copy(source, &target)?),
            Some(other) => {
                return Err(format!("syncType: `{other}` is not http_pull or sql_copy"));
            }
            None => return Err("syncType: is required (http_pull or sql_copy)".into()),
        };
        let filters = match raw.filters {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(map)) if map.is_empty() => Vec::new(),
            Some(Value::Object(map)) => match source {
                SyncSource::HttpPull(_) => query_pairs("filters", map)?,
                SyncSource::SqlCopy(_) => {
                    return Err(
                        "filters: only http_pull sources take filters; put conditions in source.query"
                            .into(),
                    );
                }
            },
            Some(_) => return Err("filters: must be an object".into()),
        };
        let batch_size = match raw.batch_size {
            None | Some(Value::Null) => DEFAULT_BATCH_SIZE,
            Some(value) => value
                .as_u64()
                .filter(|n| (1..=MAX_BATCH_SIZE as u64).contains(n))
                .ok_or_else(|| {
                    format!("batchSize: must be a whole number from 1 to {MAX_BATCH_SIZE}")
                })? as usize,
        };
        Ok(Self {
            source,
            target,
            filters,
            batch_size,
        })
    }
}

fn parse_target(value: Value) -> Result<SyncTarget, String> {
    let raw: RawTarget = serde_json::from_value(value).map_err(|e| format!("target: {e}"))?;
    let table = TableName::parse(&raw.table).map_err(|e| format!("target.table: {e}"))?;
    if let Some(reason) = table.refusal() {
        return Err(format!("target.table: {reason}"));
    }
    if raw.key.is_empty() {
        return Err("target.key: name at least one column".into());
    }
    let key = idents("target.key", &raw.key)?;
    let columns = match raw.columns {
        None => None,
        Some(columns) if columns.is_empty() => {
            return Err("target.columns: map at least one column, or leave it out".into());
        }
        Some(columns) => {
            let mut mapped = Vec::with_capacity(columns.len());
            for (column, from) in columns {
                let ident = Ident::parse(&column)
                    .map_err(|e| format!("target.columns: `{column}`: {e}"))?;
                let path =
                    FieldPath::parse(&from).map_err(|e| format!("target.columns.{column}: {e}"))?;
                mapped.push((ident, path));
            }
            if let Some(missing) = key
                .iter()
                .find(|k| !mapped.iter().any(|(column, _)| column == *k))
            {
                return Err(format!(
                    "target.columns: the key column `{missing}` must be mapped too"
                ));
            }
            Some(mapped)
        }
    };
    Ok(SyncTarget {
        table,
        key,
        columns,
    })
}

fn parse_http_pull(value: Value) -> Result<HttpPull, String> {
    let raw: RawHttpPull = serde_json::from_value(value).map_err(|e| format!("source: {e}"))?;
    let url = raw.url.trim().to_owned();
    if !(url.starts_with("https://") || url.starts_with("http://"))
        || url.len() > MAX_URL_LEN
        || url.chars().any(char::is_whitespace)
    {
        return Err("source.url: must be an absolute http(s) URL".into());
    }
    let non_empty = |field: &str, value: String| {
        if value.trim().is_empty() {
            Err(format!("source.pagination.{field}: must not be empty"))
        } else {
            Ok(value)
        }
    };
    let positive = |field: &str, size: Option<u64>| match size {
        Some(0) => Err(format!("source.pagination.{field}: must be at least 1")),
        _ => Ok(size),
    };
    let pagination = match raw.pagination {
        RawPagination::Cursor {
            cursor_param,
            next_cursor_path,
            page_size_param,
            page_size,
        } => Pagination::Cursor {
            cursor_param: non_empty("cursorParam", cursor_param)?,
            next_cursor_path: JsonPath::parse(&non_empty("nextCursorPath", next_cursor_path)?)
                .map_err(|e| format!("source.pagination.nextCursorPath: {e}"))?,
            page_size_param,
            page_size: positive("pageSize", page_size)?,
        },
        RawPagination::Page {
            page_param,
            start_page,
            page_size_param,
            page_size,
        } => Pagination::Page {
            page_param: non_empty("pageParam", page_param)?,
            start_page: start_page.unwrap_or(1),
            page_size_param,
            page_size: positive("pageSize", page_size)?,
        },
    };
    let records_path = JsonPath::parse(raw.records_path.as_deref().unwrap_or(""))
        .map_err(|e| format!("source.recordsPath: {e}"))?;
    let total_path = raw
        .total_path
        .as_deref()
        .map(JsonPath::parse)
        .transpose()
        .map_err(|e| format!("source.totalPath: {e}"))?;
    let mut headers = Vec::with_capacity(raw.headers.len());
    for (name, value) in raw.headers {
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(token) {
            return Err(format!("source.headers: `{name}` is not a header name"));
        }
        // The value is a secret: the message names the header only.
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format!(
                "source.headers.{name}: must not contain control characters"
            ));
        }
        headers.push((name, value));
    }
    Ok(HttpPull {
        url,
        pagination,
        records_path,
        total_path,
        headers,
        query: query_pairs("source.query", raw.query)?,
    })
}

fn parse_sql_copy(value: Value, target: &SyncTarget) -> Result<SqlCopy, String> {
    let raw: RawSqlCopy = serde_json::from_value(value).map_err(|e| format!("source: {e}"))?;
    let query = raw
        .query
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace())
        .to_owned();
    if query.is_empty() {
        return Err("source.query: must not be empty".into());
    }
    if query.len() > MAX_QUERY_LEN {
        return Err(format!(
            "source.query: must be at most {MAX_QUERY_LEN} characters"
        ));
    }
    if let Some(database) = &raw.database
        && database.trim().is_empty()
    {
        return Err("source.database: must not be empty".into());
    }
    let key_columns = match raw.key_columns {
        Some(columns) if columns.is_empty() => {
            return Err("source.keyColumns: name at least one column, or leave it out".into());
        }
        Some(columns) => {
            let columns = idents("source.keyColumns", &columns)?;
            if columns.len() != target.key.len() {
                return Err(format!(
                    "source.keyColumns: must name as many columns as target.key ({})",
                    target.key.len()
                ));
            }
            columns
        }
        // The target's key, read back through the mapping when it renames.
        None => target
            .key
            .iter()
            .map(|key| {
                let from = target
                    .columns
                    .as_ref()
                    .and_then(|columns| columns.iter().find(|(column, _)| column == key))
                    .map_or(key.as_str(), |(_, from)| from.as_str());
                Ident::parse(from).map_err(|_| {
                    format!(
                        "source.keyColumns: required, since target key `{key}` comes from `{from}`"
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(SqlCopy {
        database: raw.database.map(|d| d.trim().to_owned()),
        query,
        key_columns,
    })
}

fn idents(field: &str, names: &[String]) -> Result<Vec<Ident>, String> {
    let mut parsed: Vec<Ident> = Vec::with_capacity(names.len());
    for name in names {
        let ident = Ident::parse(name).map_err(|e| format!("{field}: `{name}`: {e}"))?;
        if parsed.contains(&ident) {
            return Err(format!("{field}: `{name}` is named twice"));
        }
        parsed.push(ident);
    }
    Ok(parsed)
}

/// An object of scalars as query-string pairs (arrays repeat the parameter).
fn query_pairs(field: &str, map: Map<String, Value>) -> Result<Vec<(String, String)>, String> {
    let scalar = |name: &str, value: &Value| match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!(
            "{field}.{name}: must be a string, number, boolean or an array of them"
        )),
    };
    let mut pairs = Vec::new();
    for (name, value) in &map {
        match value {
            Value::Array(items) => {
                for item in items {
                    pairs.push((name.clone(), scalar(name, item)?));
                }
            }
            value => pairs.push((name.clone(), scalar(name, value)?)),
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn http_payload() -> Value {
        json!({
            "syncType": "http_pull",
            "source": {
                "url": "https://api.example.com/customers",
                "pagination": {"type": "cursor", "cursorParam": "after", "nextCursorPath": "meta.next"},
                "recordsPath": "/data",
                "headers": {"Authorization": "Bearer secret-token"},
                "query": {"expand": ["a", "b"], "limit": 100}
            },
            "target": {"table": "public.customers", "key": ["id"],
                       "columns": {"id": "id", "email": "contact.email"}},
            "filters": {"status": "active"},
            "batchSize": 250
        })
    }

    fn error(payload: Value) -> String {
        DataSyncJob::parse(&payload).unwrap_err()
    }

    #[test]
    fn an_http_pull_payload_parses_whole() {
        let job = DataSyncJob::parse(&http_payload()).unwrap();
        assert_eq!(job.batch_size, 250);
        assert_eq!(job.filters, vec![("status".into(), "active".into())]);
        assert_eq!(job.target.table.to_string(), "public.customers");
        let SyncSource::HttpPull(source) = &job.source else {
            panic!("http_pull")
        };
        assert_eq!(
            source.query,
            vec![
                ("expand".into(), "a".into()),
                ("expand".into(), "b".into()),
                ("limit".into(), "100".into())
            ]
        );
        let document = json!({"data": [1], "meta": {"next": "c2"}});
        assert_eq!(source.records_path.lookup(&document), Some(&json!([1])));
        let Pagination::Cursor {
            next_cursor_path, ..
        } = &source.pagination
        else {
            panic!("cursor")
        };
        assert_eq!(next_cursor_path.lookup(&document), Some(&json!("c2")));
    }

    #[test]
    fn header_values_never_show_in_debug_output() {
        let job = DataSyncJob::parse(&http_payload()).unwrap();
        let shown = format!("{job:?}");
        assert!(shown.contains("Authorization"), "{shown}");
        assert!(!shown.contains("secret-token"), "{shown}");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"syncType": "http_pull", "source": {}}), "target:"),
            (
                {
                    let mut p = http_payload();
                    p["target"] = json!({"table": "customers"});
                    p
                },
                "target: missing field `key`",
            ),
            (
                {
                    let mut p = http_payload();
                    p["target"]["key"] = json!([]);
                    p
                },
                "target.key:",
            ),
            (
                {
                    let mut p = http_payload();
                    p["target"]["table"] = json!("jobs");
                    p
                },
                "target.table:",
            ),
            (
                {
                    let mut p = http_payload();
                    p["target"]["table"] = json!("public.JOB_EVENTS");
                    p
                },
                "target.table:",
            ),
            (
                {
                    let mut p = http_payload();
                    p["target"]["table"] = json!("pg_catalog.pg_authid");
                    p
                },
                "target.table:",
            ),
            (
                {
                    let mut p = http_payload();
                    p["target"]["table"] = json!("a.b.c");
                    p
                },
                "target.table:",
            ),
            (
                {
                    let mut p = http_payload();
                    p["target"]["columns"] = json!({"email": "contact.email"});
                    p
                },
                "target.columns:",
            ),
            (
                {
                    let mut p = http_payload();
                    p["syncType"] = json!("ftp");
                    p
                },
                "syncType:",
            ),
            (
                {
                    let mut p = http_payload();
                    p["source"]["url"] = json!("file:///etc/passwd");
                    p
                },
                "source.url:",
            ),
            (
                {
                    let mut p = http_payload();
                    p["source"]["pagination"] = json!({"type": "offset"});
                    p
                },
                "source:",
            ),
            (
                {
                    let mut p = http_payload();
                    p["batchSize"] = json!(0);
                    p
                },
                "batchSize:",
            ),
            (
                {
                    let mut p = http_payload();
                    p["source"]["headers"] = json!({"X-Key": "a\r\nInjected: yes"});
                    p
                },
                "source.headers.X-Key:",
            ),
        ];
        for (payload, expected) in cases {
            let message = error(payload.clone());
            assert!(
                message.starts_with(expected),
                "{payload}: {message} (expected {expected})"
            );
        }
    }

    #[test]
    fn sql_copy_keys_default_to_the_target_key_through_the_mapping() {
        let job = DataSyncJob::parse(&json!({
            "syncType": "sql_copy",
            "source": {"database": "crm", "query": "SELECT * FROM people;  "},
            "target": {"table": "contacts", "key": ["person_id"],
                       "columns": {"person_id": "id", "name": "full_name"}}
        }))
        .unwrap();
        let SyncSource::SqlCopy(source) = job.source else {
            panic!("sql_copy")
        };
        assert_eq!(source.query, "SELECT * FROM people");
        assert_eq!(source.key_columns, vec![Ident::parse("id").unwrap()]);
        assert_eq!(job.batch_size, DEFAULT_BATCH_SIZE);

        let refused = error(json!({
            "syncType": "sql_copy",
            "source": {"query": "SELECT 1 AS id"},
            "target": {"table": "t", "key": ["id"]},
            "filters": {"a": 1}
        }));
        assert!(refused.starts_with("filters:"), "{refused}");
    }

    #[test]
    fn paths_are_pointers_or_dotted_and_fields_prefer_exact_names() {
        let doc = json!({"a": {"b": [10, {"c": "x"}]}, "a.b": "flat", "x/y": 1});
        assert_eq!(
            JsonPath::parse("a.b.1.c").unwrap().lookup(&doc),
            Some(&json!("x"))
        );
        assert_eq!(
            JsonPath::parse("/a/b/0").unwrap().lookup(&doc),
            Some(&json!(10))
        );
        assert_eq!(
            JsonPath::parse("/x~1y").unwrap().lookup(&doc),
            Some(&json!(1))
        );
        assert_eq!(JsonPath::parse("").unwrap().lookup(&doc), Some(&doc));
        assert!(JsonPath::parse("a..b").is_err());
        assert_eq!(
            FieldPath::parse("a.b").unwrap().lookup(&doc),
            Some(&json!("flat"))
        );
        assert_eq!(FieldPath::parse("a.z").unwrap().lookup(&doc), None);
    }
}
