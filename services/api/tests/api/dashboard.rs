//! The dashboard over HTTP: sign-in, sessions, CSRF, the audit log, and what
//! each action does to the jobs. (`dashboard_browser.rs` drives it in Chromium.)

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, StatusCode};
use roundhouse_test_support::SERVICE_TOKEN;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    ADMIN, ALICE, ApiResponse, BOB, TestApp, admin, service, spawn_app_with, user,
};

const PASSWORD: &str = "correct horse battery staple";

async fn spawn_dashboard() -> TestApp {
    spawn_app_with(|env| {
        env.set("DASHBOARD_PASSWORD", PASSWORD);
    })
    .await
}

/// A signed-in browser: its session cookie and the page's CSRF token.
struct Session<'a> {
    app: &'a TestApp,
    cookie: String,
    csrf: String,
}

impl<'a> Session<'a> {
    async fn sign_in(app: &'a TestApp, secret: &str) -> Self {
        let response = sign_in(app, secret).await;
        assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.text);
        assert_eq!(response.header("location"), Some("/admin/queues"));
        let set_cookie = response.header("set-cookie").expect("a session cookie");
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let page = app
            .client
            .get(app.url("/admin/queues"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        let csrf = meta(&html, "csrf-token");
        assert!(csrf.len() >= 32, "a strong CSRF token: {csrf:?}");
        Self { app, cookie, csrf }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        csrf: bool,
    ) -> ApiResponse {
        let mut request = self
            .app
            .client
            .request(method, self.app.url(path))
            .header("cookie", &self.cookie);
        if csrf {
            request = request.header("x-csrf-token", &self.csrf);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        ApiResponse::read(request.send().await.unwrap()).await
    }

    async fn get(&self, path: &str) -> ApiResponse {
        self.send(Method::GET, path, None, false).await
    }

    /// An action with the CSRF token.
    async fn act(&self, path: &str) -> ApiResponse {
        self.send(Method::POST, path, None, true).await
    }
}

async fn sign_in(app: &TestApp, secret: &str) -> ApiResponse {
    let response = app
        .client
        .post(app.url("/admin/login"))
        .form(&[("secret", secret)])
        .send()
        .await
        .unwrap();
    ApiResponse::read(response).await
}

fn meta(html: &str, name: &str) -> String {
    let marker = format!(r#"<meta name="{name}" content=""#);
    let start = html.find(&marker).expect("the meta tag") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// The audit log's actions, oldest first.
pub(crate) async fn audited_actions(app: &TestApp) -> Vec<String> {
    audit_actions(app)
        .await
        .into_iter()
        .map(|(_, action, _)| action)
        .collect()
}

/// The stats of queue `name` in a `{queues: [...]}` answer.
pub(crate) fn queue_named(body: &Value, name: &str) -> Value {
    body["queues"]
        .as_array()
        .expect("a queues array")
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no queue {name} in {body}"))
        .clone()
}

async fn audit_actions(app: &TestApp) -> Vec<(String, String, Option<String>)> {
    app.env
        .db
        .audit_entries(None, 500)
        .await
        .unwrap()
        .into_iter()
        .rev()
        .map(|e| (e.actor, e.action, e.target))
        .collect()
}

/// Fails queued job `id` for good with `error`.
pub(crate) async fn fail_with(app: &TestApp, id: Uuid, error: &str) {
    let attempt = app.claim(id).await;
    app.env
        .db
        .fail_job(id, attempt, error, false, 0.0)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unauthenticated_visitor_gets_the_sign_in_page() {
    let app = spawn_dashboard().await;
    let response = app.get("/admin/queues", None).await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    assert_eq!(response.header("location"), Some("/admin/login"));
    let login = app.get("/admin/login", None).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(
        login
            .text
            .contains(r#"<form method="post" action="/admin/login""#)
    );
    assert!(login.text.contains(r#"name="secret""#));
    // A bearer token is not a dashboard session.
    let response = app.get("/admin/queues", Some(service())).await;
    assert_eq!(response.header("location"), Some("/admin/login"));
    let api = app.get("/admin/api/overview", Some(service())).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.body["error"]["code"], "unauthorized");
    // A made-up cookie is no session either.
    let forged = app
        .client
        .get(app.url("/admin/api/overview"))
        .header(
            "cookie",
            "rh_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_password_the_service_token_and_admins_sign_in_and_nobody_else() {
    let app = spawn_dashboard().await;
    for wrong in ["", "wrong", &user(ALICE), "Bearer x"] {
        let response = sign_in(&app, wrong).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
        assert!(response.header("set-cookie").is_none());
        assert!(response.text.contains("was not accepted"));
    }
    let by_password = sign_in(&app, PASSWORD).await;
    assert_eq!(by_password.status, StatusCode::SEE_OTHER);
    let cookie = by_password.header("set-cookie").unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/admin"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    Session::sign_in(&app, SERVICE_TOKEN).await;
    Session::sign_in(&app, &admin()).await;
    let actors: Vec<_> = audit_actions(&app).await;
    let sign_ins: Vec<&str> = actors
        .iter()
        .filter(|(_, action, _)| action == "sign_in")
        .map(|(actor, _, _)| actor.as_str())
        .collect();
    assert_eq!(sign_ins, ["password", "service", &format!("user:{ADMIN}")]);
    let failed = actors
        .iter()
        .filter(|(_, action, _)| action == "sign_in_failed")
        .count();
    assert_eq!(failed, 4);
}

#[tokio::test]
async fn http_basic_with_the_password_signs_in_directly() {
    let app = spawn_dashboard().await;
    let basic = |password: &str| format!("Basic {}", STANDARD.encode(format!("ops:{password}")));
    let wrong = app
        .client
        .get(app.url("/admin/queues"))
        .header("authorization", basic("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::SEE_OTHER);
    assert_eq!(wrong.headers()["location"], "/admin/login");
    let right = app
        .client
        .get(app.url("/admin/queues"))
        .header("authorization", basic(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    let cookie = right.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap();
    let overview = app
        .client
        .get(app.url("/admin/api/overview"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(overview.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_sign_in_posted_from_another_site_is_refused() {
    let app = spawn_dashboard().await;
    let response = app
        .client
        .post(app.url("/admin/login"))
        .header("origin", "https://evil.example")
        .form(&[("secret", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn sign_in_attempts_are_rate_limited_per_address() {
    let app = spawn_dashboard().await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(sign_in(&app, "guess").await.status);
    }
    assert!(
        statuses[..10]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED)
    );
    assert_eq!(statuses[11], StatusCode::TOO_MANY_REQUESTS);
    // Even the right password waits out the limit.
    assert_eq!(
        sign_in(&app, PASSWORD).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn an_action_without_the_csrf_token_is_forbidden_and_changes_nothing() {
    let app = spawn_dashboard().await;
    let session = Session::sign_in(&app, PASSWORD).await;
    let id = app.enqueue_noop(service()).await;
    fail_with(&app, id, "boom").await;

    let missing = session
        .send(Method::POST, "/admin/api/queues/default/pause", None, false)
        .await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert_eq!(missing.body["error"]["code"], "forbidden");
    let wrong = app
        .client
        .post(app.url(&format!("/admin/api/jobs/{id}/retry")))
        .header("cookie", &session.cookie)
        .header("x-csrf-token", "not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let delete = session
        .send(
            Method::DELETE,
            &format!("/admin/api/jobs/{id}"),
            None,
            false,
        )
        .await;
    assert_eq!(delete.status, StatusCode::FORBIDDEN);
    // Another session's token is not this session's.
    let other = Session::sign_in(&app, PASSWORD).await;
    let crossed = app
        .client
        .post(app.url("/admin/api/queues/default/pause"))
        .header("cookie", &session.cookie)
        .header("x-csrf-token", &other.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(crossed.status(), StatusCode::FORBIDDEN);

    let stats = app.get("/api/queues/stats", Some(service())).await;
    let default = queue_named(&stats.body, "default");
    assert_eq!(default["paused"], false);
    assert_eq!(app.job_row(id).await.unwrap().status, "failed");
    let actions: Vec<_> = audit_actions(&app).await;
    assert!(
        actions.iter().all(|(_, a, _)| a == "sign_in"),
        "nothing but sign-ins audited: {actions:?}"
    );
}

#[tokio::test]
async fn actions_work_and_each_is_written_to_the_audit_log() {
    let app = spawn_dashboard().await;
    let session = Session::sign_in(&app, PASSWORD).await;
    let failed = app.enqueue_noop(service()).await;
    fail_with(&app, failed, "boom").await;
    let queued = app.enqueue_noop(service()).await;

    let paused = session.act("/admin/api/queues/default/pause").await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.text);
    let overview = session.get("/admin/api/overview").await;
    let default = queue_named(&overview.body, "default");
    assert_eq!(default["paused"], true);
    assert_eq!(
        session.act("/admin/api/queues/default/resume").await.status,
        StatusCode::OK
    );

    let retried = session
        .act(&format!("/admin/api/jobs/{failed}/retry"))
        .await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.text);
    assert_eq!(retried.body["status"], "queued");
    let again = session
        .act(&format!("/admin/api/jobs/{failed}/retry"))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    let cancelled = session
        .act(&format!("/admin/api/jobs/{queued}/cancel"))
        .await;
    assert_eq!(cancelled.status, StatusCode::OK);
    assert_eq!(cancelled.body["status"], "cancelled");

    // Only finished jobs are deleted; the retried one is queued again.
    let live = session
        .send(
            Method::DELETE,
            &format!("/admin/api/jobs/{failed}"),
            None,
            true,
        )
        .await;
    assert_eq!(live.status, StatusCode::CONFLICT);
    assert!(app.job_row(failed).await.is_some());
    let deleted = session
        .send(
            Method::DELETE,
            &format!("/admin/api/jobs/{queued}"),
            None,
            true,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
    assert!(app.job_row(queued).await.is_none());
    assert!(
        app.env
            .db
            .job_events(queued, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let gone = session.get(&format!("/admin/api/jobs/{queued}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);

    let actions: Vec<(String, String, Option<String>)> = audit_actions(&app)
        .await
        .into_iter()
        .filter(|(_, action, _)| action != "sign_in")
        .collect();
    let expected = [
        ("queue.pause", Some("default".to_owned())),
        ("queue.resume", Some("default".to_owned())),
        ("job.retry", Some(failed.to_string())),
        ("job.cancel", Some(queued.to_string())),
        ("job.delete", Some(queued.to_string())),
    ];
    assert_eq!(actions.len(), expected.len(), "{actions:?}");
    for ((actor, action, target), (want_action, want_target)) in actions.iter().zip(expected) {
        assert_eq!(actor, "password");
        assert_eq!(action, want_action);
        assert_eq!(target, &want_target);
    }
    let audit = session.get("/admin/api/audit").await;
    assert_eq!(audit.status, StatusCode::OK);
    assert_eq!(audit.body["entries"][0]["action"], "job.delete");
    assert_eq!(audit.body["entries"][0]["details"]["status"], "cancelled");
}

#[tokio::test]
async fn the_job_list_filters_by_state_queue_type_user_and_error_text_and_pages() {
    let app = spawn_dashboard().await;
    let session = Session::sign_in(&app, PASSWORD).await;
    let mut timeouts = Vec::new();
    for i in 0..3 {
        let id = app.enqueue_noop(&user(ALICE)).await;
        fail_with(&app, id, &format!("upstream Timeout after {i}s")).await;
        timeouts.push(id);
    }
    let refused = app.enqueue_noop(&user(BOB)).await;
    fail_with(&app, refused, "connection refused").await;
    let waiting = app.enqueue_noop(&user(BOB)).await;

    let ids = |response: &ApiResponse| -> Vec<String> {
        response.body["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let failed = session.get("/admin/api/jobs?status=failed").await;
    assert_eq!(ids(&failed).len(), 4);
    let text = session.get("/admin/api/jobs?q=timeout").await;
    let want: Vec<String> = timeouts.iter().rev().map(Uuid::to_string).collect();
    assert_eq!(ids(&text), want);
    let bob = session.get(&format!("/admin/api/jobs?userId={BOB}")).await;
    assert_eq!(ids(&bob), [waiting.to_string(), refused.to_string()]);
    let none = session
        .get("/admin/api/jobs?queue=default&jobType=notifications")
        .await;
    assert!(ids(&none).is_empty());
    let bad = session.get("/admin/api/jobs?status=lost").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown = session.get("/admin/api/jobs?colour=red").await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);

    let first = session.get("/admin/api/jobs?q=timeout&limit=2").await;
    let cursor = first.body["nextCursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = session
        .get(&format!(
            "/admin/api/jobs?q=timeout&limit=2&cursor={cursor}"
        ))
        .await;
    let mut paged = ids(&first);
    paged.extend(ids(&second));
    assert_eq!(paged, want);
    assert!(second.body["nextCursor"].is_null());

    let detail = session
        .get(&format!("/admin/api/jobs/{}", timeouts[0]))
        .await;
    assert_eq!(detail.body["job"]["error"], "upstream Timeout after 0s");
    let kinds: Vec<&str> = detail.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["status"].as_str().unwrap_or(""))
        .collect();
    assert!(kinds.contains(&"processing"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"failed"));
}

#[tokio::test]
async fn bulk_retry_requeues_exactly_the_failed_jobs_that_match() {
    let app = spawn_dashboard().await;
    let session = Session::sign_in(&app, PASSWORD).await;
    let mut matching = Vec::new();
    for _ in 0..3 {
        let id = app.enqueue_noop(&user(ALICE)).await;
        fail_with(&app, id, "rate limited by provider").await;
        matching.push(id);
    }
    let other_error = app.enqueue_noop(&user(ALICE)).await;
    fail_with(&app, other_error, "bad payload").await;
    let other_user = app.enqueue_noop(&user(BOB)).await;
    fail_with(&app, other_user, "rate limited by provider").await;
    let completed = app.enqueue_noop(&user(ALICE)).await;
    app.make_completed(completed).await;

    let no_csrf = session
        .send(
            Method::POST,
            "/admin/api/jobs/retry-failed",
            Some(json!({"userId": ALICE, "q": "RATE LIMITED"})),
            false,
        )
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    let response = session
        .send(
            Method::POST,
            "/admin/api/jobs/retry-failed",
            Some(json!({"userId": ALICE, "q": "RATE LIMITED"})),
            true,
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(response.body["retried"], 3);
    for id in &matching {
        assert_eq!(app.job_row(*id).await.unwrap().status, "queued");
    }
    assert_eq!(app.job_row(other_error).await.unwrap().status, "failed");
    assert_eq!(app.job_row(other_user).await.unwrap().status, "failed");
    assert_eq!(app.job_row(completed).await.unwrap().status, "completed");
    let audit = app.env.db.audit_entries(None, 1).await.unwrap();
    assert_eq!(audit[0].action, "jobs.retry_failed");
    assert_eq!(audit[0].details["retried"], 3);
    assert_eq!(audit[0].details["errorContains"], "RATE LIMITED");
    let malformed = session
        .send(
            Method::POST,
            "/admin/api/jobs/retry-failed",
            Some(json!({"queue": 7})),
            true,
        )
        .await;
    assert_eq!(
        malformed.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        malformed.text
    );
}

#[tokio::test]
async fn schedules_are_disabled_enabled_and_triggered_from_the_dashboard() {
    let app = spawn_dashboard().await;
    let session = Session::sign_in(&app, PASSWORD).await;
    let created = app
        .post(
            "/api/schedules",
            Some(service()),
            &json!({"name": "nightly", "cron": "0 3 * * *", "jobType": "noop"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();

    let disabled = session
        .act(&format!("/admin/api/schedules/{id}/disable"))
        .await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.text);
    assert_eq!(disabled.body["enabled"], false);
    let listed = session.get("/admin/api/schedules").await;
    let nightly = listed.body["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(nightly["enabled"], false);
    let enabled = session
        .act(&format!("/admin/api/schedules/{id}/enable"))
        .await;
    assert_eq!(enabled.body["enabled"], true);
    let triggered = session
        .act(&format!("/admin/api/schedules/{id}/trigger"))
        .await;
    assert_eq!(triggered.status, StatusCode::ACCEPTED, "{}", triggered.text);
    let job = crate::helpers::job_id(&triggered.body);
    assert_eq!(
        app.job_row(job)
            .await
            .unwrap()
            .schedule_id
            .unwrap()
            .to_string(),
        id
    );
    let missing = session
        .act(&format!("/admin/api/schedules/{}/trigger", Uuid::now_v7()))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let actions: Vec<String> = audit_actions(&app)
        .await
        .into_iter()
        .map(|(_, action, _)| action)
        .filter(|action| action.starts_with("schedule."))
        .collect();
    assert_eq!(
        actions,
        ["schedule.disable", "schedule.enable", "schedule.trigger"]
    );
}

#[tokio::test]
async fn the_overview_counts_finished_jobs_per_minute_for_the_last_hour() {
    let app = spawn_dashboard().await;
    let session = Session::sign_in(&app, PASSWORD).await;
    for _ in 0..3 {
        let id = app.enqueue_noop(service()).await;
        app.make_completed(id).await;
    }
    let id = app.enqueue_noop(service()).await;
    fail_with(&app, id, "boom").await;
    let overview = session.get("/admin/api/overview").await;
    assert_eq!(overview.status, StatusCode::OK);
    let minutes = overview.body["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 60);
    let completed: i64 = minutes
        .iter()
        .map(|m| m["completed"].as_i64().unwrap())
        .sum();
    let failed: i64 = minutes.iter().map(|m| m["failed"].as_i64().unwrap()).sum();
    assert_eq!((completed, failed), (3, 1));
    let default = queue_named(&overview.body, "default");
    assert_eq!(default["completed"], 3);
    assert_eq!(default["failed"], 1);
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let app = spawn_dashboard().await;
    let session = Session::sign_in(&app, PASSWORD).await;
    assert_eq!(
        session.get("/admin/api/overview").await.status,
        StatusCode::OK
    );
    let without_token = session
        .send(Method::POST, "/admin/logout", None, false)
        .await;
    assert_eq!(without_token.status, StatusCode::FORBIDDEN);
    let out = session.act("/admin/logout").await;
    assert_eq!(out.status, StatusCode::OK);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        session.get("/admin/api/overview").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn pages_carry_security_headers_and_assets_are_embedded() {
    let app = spawn_dashboard().await;
    let session = Session::sign_in(&app, PASSWORD).await;
    let page = session.get("/admin/queues").await;
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    // Everything the page loads comes from this server.
    for attribute in ["src=\"", "href=\""] {
        for link in page.text.split(attribute).skip(1) {
            let link = link.split('"').next().unwrap();
            assert!(link.starts_with('/') || link.starts_with('#'), "{link}");
        }
    }
    for asset in ["/admin/assets/app.js", "/admin/assets/app.css"] {
        let response = app.get(asset, None).await;
        assert_eq!(response.status, StatusCode::OK, "{asset}");
        assert!(response.text.len() > 1000);
        assert!(!response.text.contains("http://") || asset.ends_with(".js"));
    }
    assert_eq!(
        app.get("/admin/assets/nope.js", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/admin/elsewhere", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/admin", None).await.header("location"),
        Some("/admin/queues")
    );
    // The operator's name is escaped into the page, never interpreted.
    assert!(
        page.text
            .contains(r#"<meta name="operator" content="password">"#)
    );
}
