use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    ADMIN, ALICE, ApiResponse, BOB, TestApp, admin, assert_error, job_id, service, spawn_app, user,
};

const SEEDED: [&str; 2] = ["cleanup_completed_jobs", "requeue_stuck_jobs"];

fn timestamp(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| panic!("not an RFC 3339 timestamp: {value}"))
        .with_timezone(&Utc)
}

fn schedule_id(body: &Value) -> Uuid {
    body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no schedule id in {body}"))
}

/// A `noop` schedule every five minutes named `name`.
fn noop_schedule(name: &str) -> Value {
    json!({"name": name, "cron": "*/5 * * * *", "jobType": "noop"})
}

fn maintenance_payload() -> Value {
    json!({"action": "requeue_stuck_jobs", "parameters": {}})
}

impl TestApp {
    async fn create_schedule(&self, token: &str, body: Value) -> ApiResponse {
        self.post("/api/schedules", Some(token), &body).await
    }

    /// Creates a schedule that must be accepted; returns its id.
    async fn create_schedule_ok(&self, token: &str, body: Value) -> Uuid {
        let response = self.create_schedule(token, body).await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
        schedule_id(&response.body)
    }

    async fn get_schedule(&self, token: &str, id: Uuid) -> ApiResponse {
        self.get(&format!("/api/schedules/{id}"), Some(token)).await
    }

    async fn update_schedule(&self, token: &str, id: Uuid, body: Value) -> ApiResponse {
        self.send(
            Method::PUT,
            &format!("/api/schedules/{id}"),
            Some(token),
            Some(&body),
        )
        .await
    }

    async fn delete_schedule(&self, token: &str, id: Uuid) -> ApiResponse {
        self.send(
            Method::DELETE,
            &format!("/api/schedules/{id}"),
            Some(token),
            None,
        )
        .await
    }

    async fn trigger(&self, token: &str, id: Uuid) -> ApiResponse {
        self.send(
            Method::POST,
            &format!("/api/schedules/{id}/trigger"),
            Some(token),
            None,
        )
        .await
    }

    /// The names of the schedules `token` lists (one page of up to 500).
    async fn schedule_names(&self, token: &str) -> Vec<String> {
        let response = self.get("/api/schedules?limit=500", Some(token)).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
        let mut names: Vec<String> = response.body["schedules"]
            .as_array()
            .unwrap_or_else(|| panic!("no schedules in {}", response.text))
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }
}

#[tokio::test]
async fn a_new_schedule_waits_for_its_first_tick_on_the_cron() {
    let app = spawn_app().await;
    let before = Utc::now();

    let response = app
        .create_schedule(
            &user(ALICE),
            json!({"name": "every five", "cron": "*/5 * * * *", "jobType": "noop",
                   "payload": {"hello": "world"}}),
        )
        .await;

    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
    let body = &response.body;
    let next = timestamp(&body["nextRunAt"]);
    assert!(next > before, "nextRunAt {next} is not after {before}");
    assert!(next <= before + chrono::Duration::minutes(5), "{next}");
    assert_eq!(next.minute() % 5, 0, "{next}");
    assert_eq!((next.second(), next.nanosecond()), (0, 0), "{next}");
    assert_eq!(body["name"], "every five");
    assert_eq!(body["cron"], "*/5 * * * *");
    assert_eq!(body["timezone"], "UTC");
    assert!(body["description"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(body["queue"], "default");
    assert_eq!(body["jobType"], "noop");
    assert_eq!(body["payload"], json!({"hello": "world"}));
    assert_eq!(body["priority"], 0);
    assert_eq!(body["enabled"], true);
    assert_eq!(body["misfirePolicy"], "run_once");
    assert_eq!(body["misfireGraceSeconds"], 60);
    assert_eq!(body["catchUpLimit"], 100);
    assert_eq!(body["jitterSeconds"], 0);
    assert_eq!(body["userId"], ALICE);
    for empty in ["lastRunAt", "lastJobId", "lastError", "maxRetries"] {
        assert!(body[empty].is_null(), "`{empty}` is set in {body}");
    }

    let row = app
        .env
        .db
        .get_schedule(schedule_id(body), None)
        .await
        .unwrap()
        .expect("the schedule is stored");
    assert_eq!(row.owner_id.as_deref(), Some(ALICE));
    assert_eq!(row.next_run_at, Some(next));
    assert!(row.enabled);
}

#[tokio::test]
async fn a_schedule_ticks_in_its_own_timezone() {
    let app = spawn_app().await;

    let response = app
        .create_schedule(
            service(),
            json!({"name": "helsinki nine", "cron": "0 9 * * *", "timezone": "Europe/Helsinki",
                   "jobType": "noop", "misfirePolicy": "catch_up", "catchUpLimit": 5,
                   "jitterSeconds": 30, "misfireGraceSeconds": 0}),
        )
        .await;

    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
    let next = timestamp(&response.body["nextRunAt"]);
    // 09:00 in Helsinki is 07:00 UTC in winter, 06:00 UTC in summer.
    assert!(matches!(next.hour(), 6 | 7), "{next}");
    assert_eq!(next.minute(), 0);
    assert_eq!(response.body["timezone"], "Europe/Helsinki");
    assert_eq!(response.body["misfirePolicy"], "catch_up");
    assert_eq!(response.body["catchUpLimit"], 5);
    assert_eq!(response.body["jitterSeconds"], 30);
    assert_eq!(response.body["misfireGraceSeconds"], 0);
    assert!(response.body["userId"].is_null());
}

#[tokio::test]
async fn users_see_their_own_schedules_and_operators_see_all() {
    let app = spawn_app().await;
    let alices = app
        .create_schedule_ok(&user(ALICE), noop_schedule("alice's"))
        .await;
    let bobs = app
        .create_schedule_ok(&user(BOB), noop_schedule("bob's"))
        .await;

    assert_eq!(app.schedule_names(&user(ALICE)).await, ["alice's"]);
    assert_eq!(app.schedule_names(&user(BOB)).await, ["bob's"]);
    let everything = ["alice's", "bob's", SEEDED[0], SEEDED[1]];
    assert_eq!(app.schedule_names(service()).await, everything);
    assert_eq!(app.schedule_names(&admin()).await, everything);

    let all = app.get("/api/schedules", Some(service())).await;
    for seeded in all.body["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| SEEDED.contains(&s["name"].as_str().unwrap()))
    {
        assert_eq!(seeded["jobType"], "maintenance", "{seeded}");
        assert_eq!(seeded["queue"], "maintenance", "{seeded}");
        assert!(seeded["userId"].is_null(), "{seeded}");
    }

    let own = app.get_schedule(&user(ALICE), alices).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    assert_eq!(own.body["name"], "alice's");
    for token in [service().to_owned(), admin()] {
        let response = app.get_schedule(&token, bobs).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
        assert_eq!(response.body["userId"], BOB);
    }

    // Admins manage everyone's schedules; the owner stays.
    let renamed = app
        .update_schedule(&admin(), bobs, json!({"name": "bob's, renamed"}))
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
    assert_eq!(renamed.body["userId"], BOB);
    assert_eq!(app.schedule_names(&user(BOB)).await, ["bob's, renamed"]);
}

#[tokio::test]
async fn schedules_are_listed_oldest_first_in_pages() {
    let app = spawn_app().await;
    for name in ["one", "two", "three"] {
        app.create_schedule_ok(&user(ALICE), noop_schedule(name))
            .await;
    }

    let first = app.get("/api/schedules?limit=2", Some(&user(ALICE))).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let names: Vec<&str> = first.body["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["one", "two"]);
    let cursor = first.body["nextCursor"].as_str().expect("a next cursor");

    let second = app
        .get(
            &format!("/api/schedules?limit=2&cursor={cursor}"),
            Some(&user(ALICE)),
        )
        .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    assert_eq!(second.body["schedules"].as_array().unwrap().len(), 1);
    assert_eq!(second.body["schedules"][0]["name"], "three");
    assert!(second.body["nextCursor"].is_null(), "{}", second.text);

    for bad in ["limit=0", "limit=501", "cursor=nope"] {
        let response = app
            .get(&format!("/api/schedules?{bad}"), Some(&user(ALICE)))
            .await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            response.text
        );
        assert_error(&response.body, "validation_error");
    }
}

#[tokio::test]
async fn changing_the_cron_moves_the_next_run_and_other_fields_are_kept() {
    let app = spawn_app().await;
    let id = app
        .create_schedule_ok(
            &user(ALICE),
            json!({"name": "report", "cron": "*/5 * * * *", "jobType": "noop",
                   "payload": {"kind": "daily"}, "priority": 7}),
        )
        .await;

    let response = app
        .update_schedule(&user(ALICE), id, json!({"cron": "30 4 * * *"}))
        .await;

    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    let body = &response.body;
    let next = timestamp(&body["nextRunAt"]);
    assert!(next > Utc::now(), "{next}");
    assert_eq!((next.hour(), next.minute(), next.second()), (4, 30, 0));
    assert_eq!(body["cron"], "30 4 * * *");
    assert_eq!(body["name"], "report");
    assert_eq!(body["payload"], json!({"kind": "daily"}));
    assert_eq!(body["priority"], 7);
    assert_eq!(body["jobType"], "noop");
    assert_eq!(body["enabled"], true);
    let stored = app.env.db.get_schedule(id, None).await.unwrap().unwrap();
    assert_eq!(stored.cron, "30 4 * * *");
    assert_eq!(stored.next_run_at, Some(next));
}

#[tokio::test]
async fn disabling_and_re_enabling_keeps_the_tick_the_schedule_waits_for() {
    let app = spawn_app().await;
    // Every second: a recomputed next run would move on while we wait.
    let id = app
        .create_schedule_ok(
            &user(ALICE),
            json!({"name": "fast", "cron": "* * * * * *", "jobType": "noop"}),
        )
        .await;
    let waiting_for = app.env.db.get_schedule(id, None).await.unwrap().unwrap();
    let waiting_for = waiting_for.next_run_at.expect("a first tick");
    tokio::time::sleep(Duration::from_millis(1100)).await;

    for (change, enabled) in [
        (json!({"enabled": false}), false),
        (json!({"enabled": true, "payload": {"v": 2}}), true),
    ] {
        let response = app.update_schedule(&user(ALICE), id, change).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
        assert_eq!(response.body["enabled"], enabled);
        assert_eq!(timestamp(&response.body["nextRunAt"]), waiting_for);
    }
    let stored = app.env.db.get_schedule(id, None).await.unwrap().unwrap();
    assert!(stored.enabled);
    assert_eq!(stored.payload, json!({"v": 2}));
    assert_eq!(stored.next_run_at, Some(waiting_for));

    // A new timezone is a new cron: the next run is computed afresh.
    let response = app
        .update_schedule(&user(ALICE), id, json!({"timezone": "Asia/Tokyo"}))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert!(timestamp(&response.body["nextRunAt"]) > waiting_for);
}

#[tokio::test]
async fn a_deleted_schedule_is_gone() {
    let app = spawn_app().await;
    let id = app
        .create_schedule_ok(&user(ALICE), noop_schedule("short-lived"))
        .await;

    let response = app.delete_schedule(&user(ALICE), id).await;

    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(response.body, json!({"id": id, "deleted": true}));
    let gone = app.get_schedule(&user(ALICE), id).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_error(&gone.body, "not_found");
    assert!(app.env.db.get_schedule(id, None).await.unwrap().is_none());
    let again = app.delete_schedule(&user(ALICE), id).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn triggering_a_schedule_enqueues_a_job_now_and_dispatches_it() {
    let app = spawn_app().await;
    let id = app
        .create_schedule_ok(
            &user(ALICE),
            json!({"name": "on demand", "cron": "0 0 1 1 *", "jobType": "noop",
                   "payload": {"n": 1}, "priority": 3, "enabled": false}),
        )
        .await;

    let response = app.trigger(&user(ALICE), id).await;

    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text);
    let job = &response.body;
    let job_id = job_id(job);
    assert_eq!(job["id"], job["jobId"]);
    assert_eq!(job["scheduleId"], id.to_string());
    assert_eq!(job["status"], "queued");
    assert_eq!(job["jobType"], "noop");
    assert_eq!(job["queue"], "default");
    assert_eq!(job["userId"], ALICE);
    assert_eq!(job["payload"], json!({"n": 1}));
    assert_eq!(job["priority"], 3);
    assert_eq!(job["maxRetries"], 3, "the job type's default");

    let row = app.job_row(job_id).await.expect("the job is stored");
    assert_eq!(row.schedule_id, Some(id));
    assert!(row.schedule_tick.is_none(), "a manual trigger has no tick");
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.job_row(job_id).await.unwrap().dispatched_at.is_none() {
        assert!(Instant::now() < deadline, "the job was never dispatched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, seen) = app.get_job(&user(ALICE), job_id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["scheduleId"], id.to_string());
    let schedule = app.get_schedule(&user(ALICE), id).await;
    assert_eq!(schedule.body["lastJobId"], job_id.to_string());

    // Jobs that no schedule created say so.
    let plain = app.enqueue_noop(&user(ALICE)).await;
    let (_, plain) = app.get_job(&user(ALICE), plain).await;
    assert!(plain["scheduleId"].is_null(), "{plain}");
    assert!(plain.as_object().unwrap().contains_key("scheduleId"));
}

/// Asserts creating `body` is refused with 422 and a message naming `field`.
async fn assert_refused(app: &TestApp, body: Value, field: &str) {
    let response = app.create_schedule(&user(ALICE), body.clone()).await;
    assert_eq!(
        response.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{body} → {}",
        response.text
    );
    assert_error(&response.body, "validation_error");
    let message = response.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(field),
        "message of {body} does not name `{field}`: {message}"
    );
}

#[tokio::test]
async fn schedules_with_bad_settings_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let with = |change: Value| {
        let mut body = noop_schedule("bad");
        body.as_object_mut()
            .unwrap()
            .extend(change.as_object().unwrap().clone());
        body
    };

    for (change, field) in [
        (json!({"cron": "every tuesday"}), "cron"),
        (json!({"cron": "61 * * * *"}), "cron"),
        (json!({"cron": "0 0 30 2 *"}), "cron"),
        (json!({"timezone": "Mars/Olympus_Mons"}), "timezone"),
        (json!({"jobType": "teleport"}), "jobType"),
        (json!({"jobType": "agent_run"}), "jobType"),
        (json!({"misfirePolicy": "sometimes"}), "misfirePolicy"),
        (json!({"catchUpLimit": 0}), "catchUpLimit"),
        (json!({"catchUpLimit": 1001}), "catchUpLimit"),
        (json!({"jitterSeconds": -1}), "jitterSeconds"),
        (json!({"misfireGraceSeconds": 3601}), "misfireGraceSeconds"),
        (json!({"maxRetries": 101}), "maxRetries"),
        (json!({"timeoutSeconds": 0}), "timeoutSeconds"),
        (json!({"priority": 5000}), "priority"),
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(201)}), "name"),
        (json!({"queue": "Not A Queue!"}), "queue"),
        (json!({"queue": "nobody_configured_this"}), "queue"),
        (json!({"payload": [1, 2]}), "payload"),
        (json!({"jobType": "sleep", "payload": {}}), "payload.ms"),
        (json!({"colour": "blue"}), "colour"),
    ] {
        assert_refused(&app, with(change), field).await;
    }
    assert_refused(
        &app,
        json!({"cron": "* * * * *", "jobType": "noop"}),
        "name",
    )
    .await;
    assert_refused(&app, json!({"name": "n", "jobType": "noop"}), "cron").await;
    assert_refused(&app, json!({"name": "n", "cron": "* * * * *"}), "jobType").await;

    // An update is checked the same way, and a refused one changes nothing.
    let id = app
        .create_schedule_ok(&user(ALICE), noop_schedule("good"))
        .await;
    for (change, field) in [
        (json!({"cron": "nonsense"}), "cron"),
        (json!({"timezone": "Nowhere/Else"}), "timezone"),
        (json!({"catchUpLimit": 0}), "catchUpLimit"),
        (json!({"userId": BOB}), "userId"),
    ] {
        let response = app.update_schedule(&user(ALICE), id, change).await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            response.text
        );
        let message = response.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message}");
    }
    let stored = app.env.db.get_schedule(id, None).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.cron.as_str(),
            stored.timezone.as_str(),
            stored.catch_up_limit
        ),
        ("*/5 * * * *", "UTC", 100)
    );
    let mut everything = vec!["good".to_owned(), SEEDED[0].into(), SEEDED[1].into()];
    everything.sort();
    assert_eq!(app.schedule_names(service()).await, everything);
}

#[tokio::test]
async fn malformed_json_and_bad_ids_are_bad_requests() {
    let app = spawn_app().await;

    let response = ApiResponse::read(
        app.client
            .post(app.url("/api/schedules"))
            .bearer_auth(service())
            .header("content-type", "application/json")
            .body(r#"{"name": "x",,}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.text
    );
    assert_error(&response.body, "invalid_json");

    for (method, path) in [
        (Method::GET, "/api/schedules/not-a-uuid"),
        (Method::PUT, "/api/schedules/not-a-uuid"),
        (Method::DELETE, "/api/schedules/not-a-uuid"),
        (Method::POST, "/api/schedules/not-a-uuid/trigger"),
    ] {
        let body = json!({});
        let response = app
            .send(method.clone(), path, Some(service()), Some(&body))
            .await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{method} {path}: {}",
            response.text
        );
        assert_error(&response.body, "invalid_id");
    }

    let anonymous = app.get("/api/schedules", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn another_users_schedule_is_not_found() {
    let app = spawn_app().await;
    let id = app
        .create_schedule_ok(&user(ALICE), noop_schedule("private"))
        .await;
    let bob = user(BOB);

    let responses = [
        app.get_schedule(&bob, id).await,
        app.update_schedule(&bob, id, json!({"name": "mine now"}))
            .await,
        app.trigger(&bob, id).await,
        app.delete_schedule(&bob, id).await,
    ];

    for response in responses {
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.text);
        assert_error(&response.body, "not_found");
    }
    let stored = app.env.db.get_schedule(id, None).await.unwrap().unwrap();
    assert_eq!(stored.name, "private");
    assert!(stored.last_job_id.is_none());
    assert!(app.all_rows().await.is_empty(), "a job was created");
}

#[tokio::test]
async fn a_schedule_name_is_unique_per_owner() {
    let app = spawn_app().await;
    app.create_schedule_ok(&user(ALICE), noop_schedule("nightly"))
        .await;

    let again = app
        .create_schedule(&user(ALICE), noop_schedule("nightly"))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert_error(&again.body, "conflict");
    assert!(
        again.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nightly")
    );

    // Another owner may use the name, but may not rename into a taken one.
    let bobs = app
        .create_schedule_ok(&user(BOB), noop_schedule("nightly"))
        .await;
    let other = app
        .create_schedule_ok(&user(BOB), noop_schedule("weekly"))
        .await;
    let rename = app
        .update_schedule(&user(BOB), other, json!({"name": "nightly"}))
        .await;
    assert_eq!(rename.status, StatusCode::CONFLICT, "{}", rename.text);
    assert_error(&rename.body, "conflict");
    assert_eq!(app.schedule_names(&user(BOB)).await, ["nightly", "weekly"]);
    assert_ne!(bobs, other);
    // The service's own names are separate from users'.
    app.create_schedule_ok(service(), noop_schedule("nightly"))
        .await;
}

#[tokio::test]
async fn the_service_schedules_for_a_user_and_users_only_for_themselves() {
    let app = spawn_app().await;

    let mut body = noop_schedule("for alice");
    body["userId"] = json!(ALICE);
    let id = app.create_schedule_ok(service(), body).await;
    assert_eq!(app.schedule_names(&user(ALICE)).await, ["for alice"]);
    let job = app.trigger(&user(ALICE), id).await;
    assert_eq!(job.status, StatusCode::ACCEPTED, "{}", job.text);
    assert_eq!(job.body["userId"], ALICE);

    let mut body = noop_schedule("for bob");
    body["userId"] = json!(BOB);
    let refused = app.create_schedule(&user(ALICE), body).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert_error(&refused.body, "forbidden");
    assert!(app.schedule_names(&user(BOB)).await.is_empty());
}

#[tokio::test]
async fn only_operators_may_schedule_trigger_or_enqueue_maintenance_jobs() {
    let app = spawn_app().await;
    let alice = user(ALICE);
    let maintenance = json!({"name": "sweep", "cron": "*/5 * * * *", "jobType": "maintenance",
                             "payload": maintenance_payload()});

    // A plain user: refused everywhere, whatever the type's availability.
    let scheduled = app.create_schedule(&alice, maintenance.clone()).await;
    let (enqueued, enqueue_body) = app
        .enqueue(
            &alice,
            json!({"jobType": "maintenance", "payload": maintenance_payload()}),
        )
        .await;
    let (batched, batch_body) = app
        .batch(
            &alice,
            json!({"jobs": [{"jobType": "noop"},
                            {"jobType": "maintenance", "payload": maintenance_payload()}]}),
        )
        .await;
    for (status, body) in [
        (scheduled.status, &scheduled.body),
        (enqueued, &enqueue_body),
        (batched, &batch_body),
    ] {
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_error(body, "forbidden");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("jobType")
        );
    }
    assert!(app.all_rows().await.is_empty(), "a job was stored");

    // A maintenance schedule the service made for her: she sees it, but may
    // neither trigger it nor edit it.
    let mut for_alice = maintenance.clone();
    for_alice["userId"] = json!(ALICE);
    let id = app.create_schedule_ok(service(), for_alice).await;
    assert_eq!(app.get_schedule(&alice, id).await.status, StatusCode::OK);
    let triggered = app.trigger(&alice, id).await;
    assert_eq!(
        triggered.status,
        StatusCode::FORBIDDEN,
        "{}",
        triggered.text
    );
    let edited = app
        .update_schedule(&alice, id, json!({"enabled": false}))
        .await;
    assert_eq!(edited.status, StatusCode::FORBIDDEN, "{}", edited.text);
    assert!(app.all_rows().await.is_empty(), "a job was stored");

    // Admins and the service may.
    let mut by_admin = maintenance.clone();
    by_admin["name"] = json!("admin sweep");
    let admin_schedule = app.create_schedule(&admin(), by_admin).await;
    assert_eq!(
        admin_schedule.status,
        StatusCode::CREATED,
        "{}",
        admin_schedule.text
    );
    assert_eq!(admin_schedule.body["userId"], ADMIN);
    assert_eq!(admin_schedule.body["queue"], "maintenance");
    let job = app
        .trigger(&admin(), schedule_id(&admin_schedule.body))
        .await;
    assert_eq!(job.status, StatusCode::ACCEPTED, "{}", job.text);
    assert_eq!(job.body["jobType"], "maintenance");
    let triggered = app.trigger(service(), id).await;
    assert_eq!(triggered.status, StatusCode::ACCEPTED, "{}", triggered.text);
    for token in [admin(), service().to_owned()] {
        app.enqueue_ok(
            &token,
            json!({"jobType": "maintenance", "payload": maintenance_payload()}),
        )
        .await;
    }
    let maintenance_jobs = app
        .all_rows()
        .await
        .into_iter()
        .filter(|job| job.job_type == "maintenance")
        .count();
    assert_eq!(maintenance_jobs, 4);
}
