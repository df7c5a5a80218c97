//! The `data_sync` job type end to end: a fake paginated API (axum, port 0)
//! and real source databases, the real worker (in-process, or the binary
//! where a crash matters), the target tables in real PostgreSQL.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use roundhouse_db::{JobRow, NewJob};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::Stack;

const RECORDS: usize = 10_000;
const WAIT: Duration = Duration::from_secs(60);
const ALLOW_LOCAL: (&str, &str) = ("ROUNDHOUSE_OUTBOUND_ALLOWLIST", "127.0.0.1");

/// A paginated JSON API over `RECORDS` records: `/cursor?after=c<offset>&limit=n`
/// answers `{data, meta: {next}}`; `/pages?page=p&per_page=n` answers
/// `{items, total}` with pages numbered from 1.
struct FakeApi {
    url: String,
    state: Arc<FakeState>,
}

struct FakeState {
    records: Mutex<Vec<Value>>,
    /// The offset each request asked for, in order.
    requests: Mutex<Vec<usize>>,
    /// Requests after this many are answered after `delay_ms`.
    slow_after: AtomicUsize,
    delay_ms: AtomicU64,
    /// Answers to give, in order, before serving pages: (status, Retry-After).
    failures: Mutex<VecDeque<(u16, Option<&'static str>)>>,
    /// Headers of the last request.
    last_authorization: Mutex<Option<String>>,
}

fn record(i: usize) -> Value {
    json!({
        "id": i,
        "name": format!("record {i}"),
        "updatedAt": (chrono::DateTime::UNIX_EPOCH + chrono::Duration::days(19_723)
            + chrono::Duration::seconds(i as i64))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
        "active": i.is_multiple_of(2),
        "attrs": {"score": i % 7, "tags": ["a", format!("t{}", i % 3)]}
    })
}

impl FakeApi {
    async fn start() -> Self {
        let state = Arc::new(FakeState {
            records: Mutex::new((1..=RECORDS).map(record).collect()),
            requests: Mutex::new(Vec::new()),
            slow_after: AtomicUsize::new(usize::MAX),
            delay_ms: AtomicU64::new(0),
            failures: Mutex::new(VecDeque::new()),
            last_authorization: Mutex::new(None),
        });
        let app = axum::Router::new()
            .route("/cursor", axum::routing::get(cursor_page))
            .route("/pages", axum::routing::get(numbered_page))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, state }
    }

    fn requests(&self) -> Vec<usize> {
        self.state.requests.lock().unwrap().clone()
    }

    fn fail_next(&self, answers: &[(u16, Option<&'static str>)]) {
        self.state
            .failures
            .lock()
            .unwrap()
            .extend(answers.iter().copied());
    }

    fn slow_down_after(&self, requests: usize, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
        self.state.slow_after.store(requests, Ordering::SeqCst);
    }

    /// A cursor-paginated `http_pull` payload into `table`.
    fn cursor_payload(&self, table: &str) -> Value {
        json!({
            "syncType": "http_pull",
            "source": {
                "url": format!("{}/cursor", self.url),
                "pagination": {"type": "cursor", "cursorParam": "after",
                               "nextCursorPath": "meta.next", "pageSizeParam": "limit"},
                "recordsPath": "data",
                "headers": {"Authorization": "Bearer sync-secret"}
            },
            "target": {"table": table, "key": ["id"], "columns": columns()},
            "batchSize": 500
        })
    }
}

/// The target columns and where each comes from in a record.
fn columns() -> Value {
    json!({"id": "id", "name": "name", "updated_at": "updatedAt", "active": "active",
           "attrs": "attrs", "score": "/attrs/score"})
}

/// Takes the next queued failure, logs the request, and applies the delay.
async fn admit(
    state: &FakeState,
    offset: usize,
    headers: &axum::http::HeaderMap,
) -> Option<Response> {
    *state.last_authorization.lock().unwrap() = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some((status, retry_after)) = state.failures.lock().unwrap().pop_front() {
        let status = StatusCode::from_u16(status).unwrap();
        return Some(match retry_after {
            Some(seconds) => (status, [("retry-after", seconds)], "slow down").into_response(),
            None => (status, "failure").into_response(),
        });
    }
    let seen = {
        let mut requests = state.requests.lock().unwrap();
        requests.push(offset);
        requests.len()
    };
    if seen > state.slow_after.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(state.delay_ms.load(Ordering::SeqCst))).await;
    }
    None
}

async fn cursor_page(
    State(state): State<Arc<FakeState>>,
    headers: axum::http::HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let offset = query
        .get("after")
        .map(|c| c.trim_start_matches('c').parse::<usize>().unwrap())
        .unwrap_or(0);
    let limit: usize = query["limit"].parse().unwrap();
    if let Some(failure) = admit(&state, offset, &headers).await {
        return failure;
    }
    let records = state.records.lock().unwrap();
    let end = (offset + limit).min(records.len());
    let next = (end < records.len()).then(|| format!("c{end}"));
    axum::Json(json!({"data": records[offset..end], "meta": {"next": next}})).into_response()
}

async fn numbered_page(
    State(state): State<Arc<FakeState>>,
    headers: axum::http::HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let page: usize = query["page"].parse().unwrap();
    let size: usize = query["per_page"].parse().unwrap();
    let offset = (page - 1) * size;
    if let Some(failure) = admit(&state, offset, &headers).await {
        return failure;
    }
    let records = state.records.lock().unwrap();
    let items: Vec<Value> = records.iter().skip(offset).take(size).cloned().collect();
    axum::Json(json!({"items": items, "total": records.len()})).into_response()
}

const TARGET_TABLE: &str = "CREATE TABLE synced (
    id int PRIMARY KEY, name text NOT NULL, updated_at timestamptz, active boolean,
    attrs jsonb, score int, first_seen timestamptz NOT NULL DEFAULT now())";

async fn exec(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

async fn scalar<T>(url: &str, sql: &str) -> T
where
    T: Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let value = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    value
}

async fn finished(stack: &Stack, id: Uuid) -> JobRow {
    stack
        .wait_for(id, WAIT, |job| {
            matches!(job.status.as_str(), "completed" | "failed")
        })
        .await
}

async fn completed(stack: &Stack, id: Uuid) -> Value {
    let job = finished(stack, id).await;
    assert_eq!(job.status, "completed", "{:?}", job.error);
    job.result.unwrap()
}

/// Checks the target holds exactly the fake API's records.
async fn assert_synced(stack: &Stack, api: &FakeApi) {
    let url = &stack.env.database_url;
    assert_eq!(
        scalar::<i64>(url, "SELECT count(*) FROM synced").await,
        RECORDS as i64
    );
    assert_eq!(
        scalar::<i64>(url, "SELECT count(DISTINCT id) FROM synced").await,
        RECORDS as i64
    );
    let expected: Vec<Value> = api.state.records.lock().unwrap().clone();
    let stored: Vec<Value> = {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar(
            r#"SELECT jsonb_build_object('id', id, 'name', name,
                   'updatedAt', to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                   'active', active, 'attrs', attrs, 'score', score)
                 FROM synced ORDER BY id"#,
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
    };
    for (stored, record) in stored.iter().zip(&expected) {
        let mut want = record.clone();
        want["score"] = record["attrs"]["score"].clone();
        assert_eq!(stored, &want);
    }
}

#[tokio::test]
async fn a_cursor_paginated_api_is_synced_whole_into_the_target_table() {
    let api = FakeApi::start().await;
    let stack = Stack::api_only().await;
    exec(&stack.env.database_url, TARGET_TABLE).await;
    let worker = stack.worker_with(&[ALLOW_LOCAL]).await;
    let id = stack
        .enqueue_ok(json!({"jobType": "data_sync", "payload": api.cursor_payload("synced")}))
        .await;
    let result = completed(&stack, id).await;
    assert_eq!(
        result,
        json!({"syncType": "http_pull", "table": "synced", "recordsRead": 10000,
               "inserted": 10000, "updated": 0, "unchanged": 0, "batches": 20,
               "total": null, "checkpoint": {"cursor": null}})
    );
    assert_synced(&stack, &api).await;
    assert_eq!(api.requests(), (0..20).map(|p| p * 500).collect::<Vec<_>>());
    assert_eq!(
        api.state.last_authorization.lock().unwrap().as_deref(),
        Some("Bearer sync-secret")
    );

    // Progress after every batch, monotonic, with the records so far.
    let progress: Vec<(i64, String)> = stack
        .events(id)
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "progress")
        .map(|(_, data)| {
            (
                data["progress"].as_i64().unwrap(),
                data["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(progress.len(), 20, "{progress:?}");
    assert_eq!(progress[0].1, "500 records (batch 1)");
    assert_eq!(progress[19].1, "10000 records (batch 20)");
    assert!(
        progress.windows(2).all(|w| w[0].0 <= w[1].0),
        "{progress:?}"
    );
    assert!(progress.iter().all(|(p, _)| *p < 100));

    // The secret header is in no event and no log line of the job.
    let timeline = serde_json::to_string(&stack.events(id).await).unwrap();
    assert!(!timeline.contains("sync-secret"), "{timeline}");
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_page_numbered_api_is_synced_with_progress_from_its_total() {
    let api = FakeApi::start().await;
    let stack = Stack::api_only().await;
    exec(&stack.env.database_url, TARGET_TABLE).await;
    let worker = stack.worker_with(&[ALLOW_LOCAL]).await;
    let payload = json!({
        "syncType": "http_pull",
        "source": {
            "url": format!("{}/pages", api.url),
            "pagination": {"type": "page", "pageParam": "page", "pageSizeParam": "per_page",
                           "pageSize": 1000},
            "recordsPath": "/items",
            "totalPath": "total"
        },
        "target": {"table": "public.synced", "key": ["id"], "columns": columns()}
    });
    let id = stack
        .enqueue_ok(json!({"jobType": "data_sync", "payload": payload}))
        .await;
    let result = completed(&stack, id).await;
    assert_eq!(result["inserted"], 10000, "{result}");
    assert_eq!(result["batches"], 10);
    assert_eq!(result["total"], 10000);
    // Ten pages, then the empty page that ends it.
    assert_eq!(
        api.requests(),
        (0..11).map(|p| p * 1000).collect::<Vec<_>>()
    );
    assert_eq!(result["checkpoint"], json!({"page": 11}));
    assert_synced(&stack, &api).await;
    let percents: Vec<i64> = stack
        .events(id)
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "progress")
        .map(|(_, data)| data["progress"].as_i64().unwrap())
        .collect();
    assert_eq!(percents, vec![10, 20, 30, 40, 50, 60, 70, 80, 90, 99, 99]);
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn a_rerun_changes_nothing_and_then_updates_only_the_changed_records() {
    let api = FakeApi::start().await;
    let stack = Stack::api_only().await;
    exec(&stack.env.database_url, TARGET_TABLE).await;
    let worker = stack.worker_with(&[ALLOW_LOCAL]).await;
    let job = json!({"jobType": "data_sync", "payload": api.cursor_payload("synced")});
    let first = completed(&stack, stack.enqueue_ok(job.clone()).await).await;
    assert_eq!(first["inserted"], 10000);
    let versions: String = scalar(
        &stack.env.database_url,
        "SELECT string_agg(xmin::text, ',' ORDER BY id) FROM synced",
    )
    .await;

    let rerun = completed(&stack, stack.enqueue_ok(job.clone()).await).await;
    assert_eq!(
        (&rerun["inserted"], &rerun["updated"], &rerun["unchanged"]),
        (&json!(0), &json!(0), &json!(10000)),
        "{rerun}"
    );
    let after: String = scalar(
        &stack.env.database_url,
        "SELECT string_agg(xmin::text, ',' ORDER BY id) FROM synced",
    )
    .await;
    assert_eq!(versions, after, "no row was rewritten");

    {
        let mut records = api.state.records.lock().unwrap();
        records[0]["name"] = json!("renamed");
        records[4999]["active"] = json!(!records[4999]["active"].as_bool().unwrap());
        records[9999]["attrs"]["score"] = json!(1000);
    }
    let changed = completed(&stack, stack.enqueue_ok(job).await).await;
    assert_eq!(
        (
            &changed["inserted"],
            &changed["updated"],
            &changed["unchanged"]
        ),
        (&json!(0), &json!(3), &json!(9997)),
        "{changed}"
    );
    assert_synced(&stack, &api).await;
    worker.stop().await.unwrap();
}

fn kill(child: &tokio::process::Child) {
    let pid = child.id().expect("child is running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits until the job's checkpoint has at least `batches` batches.
async fn wait_for_checkpoint(stack: &Stack, id: Uuid, batches: i64) -> i64 {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(checkpoint) = stack.env.db.sync_checkpoint(id).await.unwrap()
            && checkpoint.batches >= batches
        {
            return checkpoint.batches;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of {batches} batches"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_sync_whose_worker_is_killed_resumes_from_its_checkpoint_on_another_worker() {
    let api = FakeApi::start().await;
    // Fast for four pages, then slow enough to be killed in the middle.
    api.slow_down_after(4, Duration::from_millis(150));
    let stack = Stack::api_only().await;
    exec(&stack.env.database_url, TARGET_TABLE).await;
    let scheduler = stack.scheduler().await;
    let mut doomed = stack.worker_process(&[ALLOW_LOCAL]);
    let id = stack
        .enqueue_ok(json!({"jobType": "data_sync", "payload": api.cursor_payload("synced")}))
        .await;
    let checkpointed = wait_for_checkpoint(&stack, id, 6).await;
    kill(&doomed);
    doomed.wait().await.unwrap();
    let before_kill = api.requests();
    assert!(before_kill.len() < 20, "killed mid-way: {before_kill:?}");

    // The lease expires, the reaper requeues the job, another worker resumes it.
    let worker = stack.worker_with(&[ALLOW_LOCAL]).await;
    let result = completed(&stack, id).await;
    assert_eq!(stack.job(id).await.attempts, 2);
    assert_synced(&stack, &api).await;

    let after_kill = &api.requests()[before_kill.len()..];
    let first_resumed = *after_kill
        .first()
        .expect("the second worker asked for pages");
    assert!(
        first_resumed >= checkpointed as usize * 500,
        "resumed at offset {first_resumed}, before the checkpoint of {checkpointed} pages"
    );
    let asked_twice: Vec<&usize> = after_kill
        .iter()
        .filter(|offset| before_kill.contains(offset))
        .collect();
    assert!(
        asked_twice.len() <= 1,
        "only the page in flight may be asked again: {asked_twice:?}"
    );
    let all: BTreeSet<usize> = api.requests().into_iter().collect();
    assert_eq!(all.len(), 20);

    // Batch and checkpoint commit together here (the target is Roundhouse's
    // database): the page in flight was rolled back and inserted once.
    assert_eq!(result["inserted"], 10000, "{result}");
    assert_eq!(result["recordsRead"], 10000, "{result}");
    assert_eq!(result["batches"], 20);
    let logs = stack.events(id).await;
    assert!(
        logs.iter()
            .any(|(kind, data)| kind == "log" && data.to_string().contains("resuming after batch")),
        "{logs:?}"
    );
    worker.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}

/// A database of the test's own beside its Roundhouse database, dropped
/// with it.
struct ExtraDatabase {
    name: String,
    url: String,
    admin: String,
}

impl ExtraDatabase {
    async fn create(stack: &Stack, suffix: &str) -> Self {
        let (base, roundhouse) = stack.env.database_url.rsplit_once('/').unwrap();
        let name = format!("{roundhouse}_{suffix}");
        let admin = format!("{base}/postgres");
        roundhouse_db::create_database(&admin, &name).await.unwrap();
        Self {
            url: format!("{base}/{name}"),
            name,
            admin,
        }
    }
}

impl Drop for ExtraDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(roundhouse_db::drop_database(&admin, &name))
        })
        .join();
    }
}

const PEOPLE: i64 = 3000;

/// A source table of `PEOPLE` rows with a two-column key and varied types.
async fn people_source(stack: &Stack) -> ExtraDatabase {
    let source = ExtraDatabase::create(stack, "crm").await;
    exec(
        &source.url,
        "CREATE TABLE people (
             region text, id int, name text NOT NULL, born date, score numeric(6,2),
             active boolean, profile jsonb, seen_at timestamptz, PRIMARY KEY (region, id));
         INSERT INTO people
         SELECT r, i, r || '-' || i, date '1970-01-01' + i, i / 7.0, i % 3 = 0,
                jsonb_build_object('tags', jsonb_build_array(r, i % 5), 'note', NULL),
                timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute'
           FROM unnest(ARRAY['eu', 'us', 'ap']) r, generate_series(1, 1000) i;",
    )
    .await;
    source
}

const PEOPLE_COPY: &str = "CREATE TABLE people_copy (
    region text, id int, name text NOT NULL, born date, score numeric(6,2),
    active boolean, profile jsonb, seen_at timestamptz, PRIMARY KEY (region, id))";

async fn people(url: &str, table: &str) -> Vec<Value> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let rows = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT to_jsonb(p) FROM {table} p ORDER BY region, id"
    )))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    rows
}

#[tokio::test]
async fn a_sql_copy_into_another_database_resumes_after_a_crash_and_reruns_idempotently() {
    let stack = Stack::api_only().await;
    let source = people_source(&stack).await;
    let target = ExtraDatabase::create(&stack, "dw").await;
    exec(&target.url, PEOPLE_COPY).await;
    // Each upsert statement takes a tenth of a second, so the kill lands
    // in the middle of the 30 batches. Every row an upsert proposes (before
    // conflict detection, so unchanged rows too) is logged with it.
    exec(
        &target.url,
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN PERFORM pg_sleep(0.1); RETURN NULL; END $$;
         CREATE TRIGGER slow BEFORE INSERT ON people_copy FOR EACH STATEMENT EXECUTE FUNCTION slow();
         CREATE TABLE proposed (region text, id int);
         CREATE FUNCTION log_proposed() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO proposed VALUES (NEW.region, NEW.id); RETURN NEW; END $$;
         CREATE TRIGGER log_proposed BEFORE INSERT ON people_copy
           FOR EACH ROW EXECUTE FUNCTION log_proposed();",
    )
    .await;
    let sources = format!("crm={}", source.url);
    let vars = [
        ("DATA_SYNC_SOURCES", sources.as_str()),
        ("DATA_SYNC_DATABASE_URL", target.url.as_str()),
    ];
    let payload = json!({
        "syncType": "sql_copy",
        "source": {"database": "crm",
                   "query": "SELECT region, id, name, born, score, active, profile, seen_at FROM people"},
        "target": {"table": "people_copy", "key": ["region", "id"]},
        "batchSize": 100
    });
    let scheduler = stack.scheduler().await;
    let mut doomed = stack.worker_process(&vars);
    let id = stack
        .enqueue_ok(json!({"jobType": "data_sync", "payload": payload}))
        .await;
    wait_for_checkpoint(&stack, id, 5).await;
    kill(&doomed);
    doomed.wait().await.unwrap();
    let copied_before: i64 = scalar(&target.url, "SELECT count(*) FROM people_copy").await;
    assert!(
        copied_before < PEOPLE,
        "killed mid-way ({copied_before} rows)"
    );

    let worker = stack.worker_with(&vars).await;
    let result = completed(&stack, id).await;
    assert_eq!(stack.job(id).await.attempts, 2);
    let copied = people(&target.url, "people_copy").await;
    assert_eq!(copied.len() as i64, PEOPLE);
    assert_eq!(
        copied,
        people(&source.url, "people").await,
        "copied faithfully"
    );

    // Resumed, not restarted: only the batch between the last committed
    // upsert and its checkpoint (another database: two commits) may have
    // been written twice.
    let repeated: i64 = scalar(
        &target.url,
        "SELECT count(*) FROM (SELECT 1 FROM proposed GROUP BY region, id HAVING count(*) > 1) r",
    )
    .await;
    assert!(repeated <= 100, "{repeated} rows were upserted twice");
    assert_eq!(
        scalar::<i64>(
            &target.url,
            "SELECT count(DISTINCT (region, id)) FROM proposed"
        )
        .await,
        PEOPLE
    );
    // The counters move with the checkpoints: a replayed batch counts once
    // (as unchanged when its first upsert had committed).
    assert_eq!(result["recordsRead"], PEOPLE, "{result}");
    assert_eq!(result["batches"], 30, "{result}");
    let inserted = result["inserted"].as_i64().unwrap();
    assert!((PEOPLE - 100..=PEOPLE).contains(&inserted), "{result}");
    assert_eq!(
        inserted + result["unchanged"].as_i64().unwrap(),
        PEOPLE,
        "{result}"
    );
    assert_eq!(result["total"], PEOPLE);
    assert_eq!(result["checkpoint"], json!({"lastKey": ["us", 1000]}));

    let rerun = completed(
        &stack,
        stack
            .enqueue_ok(json!({"jobType": "data_sync", "payload": {
                "syncType": "sql_copy",
                "source": {"database": "crm", "query": "SELECT * FROM people"},
                "target": {"table": "people_copy", "key": ["region", "id"]},
                "batchSize": 1000
            }}))
            .await,
    )
    .await;
    assert_eq!(
        (&rerun["inserted"], &rerun["updated"], &rerun["unchanged"]),
        (&json!(0), &json!(0), &json!(PEOPLE)),
        "{rerun}"
    );
    worker.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}

#[tokio::test]
async fn a_sql_copy_maps_and_renames_columns_within_the_roundhouse_database() {
    let stack = Stack::api_only().await;
    exec(
        &stack.env.database_url,
        "CREATE TABLE crm_people (person_id bigint PRIMARY KEY, full_name text, signed_up timestamptz);
         INSERT INTO crm_people SELECT i, 'person ' || i, timestamptz '2024-06-01 12:00+00' + i * interval '1 day'
           FROM generate_series(1, 250) i;
         CREATE TABLE contacts (id bigint PRIMARY KEY, name text, since date, copied_at timestamptz DEFAULT now());",
    )
    .await;
    let worker = stack.worker().await;
    let payload = json!({
        "syncType": "sql_copy",
        "source": {"query": "SELECT * FROM crm_people WHERE person_id % 5 <> 0;"},
        "target": {"table": "contacts", "key": ["id"],
                   "columns": {"id": "person_id", "name": "full_name", "since": "signed_up"}},
        "batchSize": 64
    });
    let id = stack
        .enqueue_ok(json!({"jobType": "data_sync", "payload": payload}))
        .await;
    let result = completed(&stack, id).await;
    assert_eq!(result["inserted"], 200, "{result}");
    assert_eq!(result["batches"], 4);
    assert_eq!(result["checkpoint"], json!({"lastKey": [249]}));
    let sample: Value = scalar(
        &stack.env.database_url,
        "SELECT to_jsonb(c) - 'copied_at' FROM contacts c WHERE id = 7",
    )
    .await;
    assert_eq!(
        sample,
        json!({"id": 7, "name": "person 7", "since": "2024-06-08"})
    );
    worker.stop().await.unwrap();
}

/// Inserts a `data_sync` job directly, as if past an older api.
async fn plant(stack: &Stack, payload: Value) -> Uuid {
    let id = Uuid::now_v7();
    stack
        .env
        .db
        .enqueue_jobs(&[NewJob {
            id,
            queue: "data_sync".into(),
            job_type: "data_sync".into(),
            user_id: None,
            payload,
            priority: 0,
            max_retries: 3,
            timeout_seconds: 60,
            idempotency_key: None,
            run_at: None,
            delay_ms: None,
            traceparent: None,
        }])
        .await
        .unwrap();
    id
}

async fn failed_with(stack: &Stack, id: Uuid, expected: &str) {
    let job = finished(stack, id).await;
    assert_eq!(job.status, "failed", "{:?}", job.result);
    assert_eq!(job.attempts, 1, "a permanent failure is not retried");
    let error = job.error.unwrap();
    assert!(error.contains(expected), "{error} (expected {expected})");
}

#[tokio::test]
async fn bad_targets_are_refused_by_the_api_and_fail_permanently_in_the_worker() {
    let api = FakeApi::start().await;
    let stack = Stack::api_only().await;
    exec(
        &stack.env.database_url,
        "CREATE TABLE unkeyed (id int, name text)",
    )
    .await;
    let scheduler = stack.scheduler().await;
    let worker = stack.worker_with(&[ALLOW_LOCAL]).await;

    let mut no_target = api.cursor_payload("synced");
    no_target.as_object_mut().unwrap().remove("target");
    let mut no_key = api.cursor_payload("synced");
    no_key["target"].as_object_mut().unwrap().remove("key");
    let internal = api.cursor_payload("jobs");
    for (payload, field) in [
        (&no_target, "payload.target"),
        (&no_key, "payload.target"),
        (&internal, "payload.target.table"),
    ] {
        let (status, body) = stack
            .enqueue(json!({"jobType": "data_sync", "payload": payload}))
            .await;
        assert_eq!(status, 422, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{message}");
    }

    // The same payloads, had they reached the queue, fail at once.
    let planted = [
        (plant(&stack, no_target).await, "target: is required"),
        (plant(&stack, no_key).await, "missing field `key`"),
        (plant(&stack, internal).await, "Roundhouse's own tables"),
    ];
    // Targets only the database can judge pass the api and fail in the worker.
    let missing = stack
        .enqueue_ok(json!({"jobType": "data_sync", "payload": api.cursor_payload("nowhere")}))
        .await;
    let mut unkeyed = api.cursor_payload("unkeyed");
    unkeyed["target"]["columns"] = json!({"id": "id", "name": "name"});
    let unkeyed = stack
        .enqueue_ok(json!({"jobType": "data_sync", "payload": unkeyed}))
        .await;
    for (id, expected) in planted {
        failed_with(&stack, id, expected).await;
    }
    failed_with(&stack, missing, "`nowhere` does not exist").await;
    failed_with(&stack, unkeyed, "no unique index on exactly (id)").await;
    assert!(
        api.requests().is_empty(),
        "no source was read for a bad target"
    );
    worker.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}

#[tokio::test]
async fn a_source_on_an_internal_address_is_refused_before_any_request() {
    let api = FakeApi::start().await;
    let stack = Stack::api_only().await;
    exec(&stack.env.database_url, TARGET_TABLE).await;
    // No allowlist: only public addresses may be reached.
    let worker = stack.worker().await;
    let local = stack
        .enqueue_ok(json!({"jobType": "data_sync", "payload": api.cursor_payload("synced")}))
        .await;
    let mut metadata = api.cursor_payload("synced");
    metadata["source"]["url"] = json!("http://169.254.169.254/latest/meta-data/iam");
    let metadata = stack
        .enqueue_ok(json!({"jobType": "data_sync", "payload": metadata}))
        .await;
    failed_with(&stack, local, "127.0.0.1 is not a public address").await;
    failed_with(&stack, metadata, "169.254.169.254 is not a public address").await;
    assert!(api.requests().is_empty(), "the guard sent nothing");
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn server_errors_and_429s_are_retried_and_a_404_fails_the_job() {
    let api = FakeApi::start().await;
    let stack = Stack::api_only().await;
    exec(&stack.env.database_url, TARGET_TABLE).await;
    let scheduler = stack.scheduler().await;
    let worker = stack.worker_with(&[ALLOW_LOCAL]).await;

    api.fail_next(&[(500, None), (429, Some("1"))]);
    let started = Instant::now();
    let id = stack
        .enqueue_ok(json!({"jobType": "data_sync", "payload": api.cursor_payload("synced")}))
        .await;
    let result = completed(&stack, id).await;
    assert_eq!(result["inserted"], 10000, "{result}");
    assert_eq!(stack.job(id).await.attempts, 3);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    let errors: Vec<String> = stack
        .events(id)
        .await
        .into_iter()
        .filter_map(|(_, data)| data["error"].as_str().map(str::to_owned))
        .collect();
    assert!(errors[0].contains("answered 500"), "{errors:?}");
    assert!(errors[1].contains("answered 429"), "{errors:?}");

    api.fail_next(&[(404, None)]);
    let id = stack
        .enqueue_ok(json!({"jobType": "data_sync", "payload": api.cursor_payload("synced")}))
        .await;
    failed_with(&stack, id, "answered 404 Not Found").await;
    worker.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}
