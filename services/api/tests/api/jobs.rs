//! Reading jobs: ownership, listing, filters and pagination.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{ALICE, BOB, assert_error, service, spawn_app, user};

fn listed_ids(page: &Value) -> Vec<Uuid> {
    page["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("no jobs array in {page}"))
        .iter()
        .map(|job| {
            job["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("a job id")
        })
        .collect()
}

#[tokio::test]
async fn an_owner_reads_their_job_by_id_and_by_status_path() {
    let app = spawn_app().await;
    let id = app.enqueue_noop(&user(ALICE)).await;

    let (status, job) = app.get_job(&user(ALICE), id).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["id"], id.to_string());
    assert_eq!(job["userId"], ALICE);
    assert_eq!(job["status"], "queued");
    assert_eq!(job["jobType"], "noop");

    let (status, job) = app.get_status(&user(ALICE), id).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["id"], id.to_string());
    assert_eq!(job["status"], "queued");
}

#[tokio::test]
async fn another_users_job_is_not_found_on_every_route() {
    let app = spawn_app().await;
    let id = app.enqueue_noop(&user(ALICE)).await;
    let missing = Uuid::now_v7();

    for (method, path) in [
        (Method::GET, format!("/api/jobs/{id}")),
        (Method::GET, format!("/api/jobs/{id}/status")),
        (Method::DELETE, format!("/api/jobs/{id}")),
        (Method::POST, format!("/api/jobs/{id}/retry")),
    ] {
        let theirs = app
            .send(method.clone(), &path, Some(&user(BOB)), None)
            .await;
        assert_eq!(
            theirs.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            theirs.text
        );
        assert_error(&theirs.body, "not_found");

        // The answer is the same as for a job that does not exist at all.
        let nobodys = path.replace(&id.to_string(), &missing.to_string());
        let absent = app
            .send(method.clone(), &nobodys, Some(&user(BOB)), None)
            .await;
        assert_eq!(absent.status, theirs.status);
        assert_eq!(absent.body, theirs.body);
    }
    // Bob's attempts changed nothing.
    assert_eq!(app.job_row(id).await.expect("row").status, "queued");
}

#[tokio::test]
async fn a_job_enqueued_by_the_service_without_a_user_is_invisible_to_users() {
    let app = spawn_app().await;
    let id = app.enqueue_noop(service()).await;

    let (status, body) = app.get_job(&user(ALICE), id).await;

    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn the_service_reads_every_job() {
    let app = spawn_app().await;
    let alices = app.enqueue_noop(&user(ALICE)).await;
    let bobs = app.enqueue_noop(&user(BOB)).await;

    for id in [alices, bobs] {
        let (status, job) = app.get_job(service(), id).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        assert_eq!(job["id"], id.to_string());
    }
    let (status, page) = app.list(service(), "").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let listed: HashSet<Uuid> = listed_ids(&page).into_iter().collect();
    assert_eq!(listed, HashSet::from([alices, bobs]));
}

#[tokio::test]
async fn a_users_list_holds_only_their_own_jobs() {
    let app = spawn_app().await;
    let mine = [
        app.enqueue_noop(&user(ALICE)).await,
        app.enqueue_noop(&user(ALICE)).await,
    ];
    app.enqueue_noop(&user(BOB)).await;
    app.enqueue_noop(service()).await;

    let (status, page) = app.list(&user(ALICE), "").await;

    assert_eq!(status, StatusCode::OK, "{page}");
    let listed: HashSet<Uuid> = listed_ids(&page).into_iter().collect();
    assert_eq!(listed, HashSet::from(mine));
    assert!(
        page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["userId"] == ALICE)
    );
    assert!(page["nextCursor"].is_null(), "{page}");
}

#[tokio::test]
async fn a_user_can_name_themself_but_not_another_user_in_a_list() {
    let app = spawn_app().await;
    app.enqueue_noop(&user(ALICE)).await;

    let (status, page) = app.list(&user(ALICE), &format!("userId={ALICE}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(listed_ids(&page).len(), 1);

    let (status, body) = app.list(&user(ALICE), &format!("userId={BOB}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_error(&body, "forbidden");
}

#[tokio::test]
async fn the_service_can_list_one_users_jobs() {
    let app = spawn_app().await;
    let bobs = app.enqueue_noop(&user(BOB)).await;
    app.enqueue_noop(&user(ALICE)).await;

    let (status, page) = app.list(service(), &format!("userId={BOB}")).await;

    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(listed_ids(&page), vec![bobs]);
}

#[tokio::test]
async fn lists_are_paginated_newest_first_through_next_cursor() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(app.enqueue_noop(&user(ALICE)).await);
    }
    created.reverse();

    let mut seen = Vec::new();
    let mut query = "limit=2".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = app.list(&user(ALICE), &query).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        let ids = listed_ids(&page);
        assert!(ids.len() <= 2, "{page}");
        seen.extend(ids);
        match page["nextCursor"].as_str() {
            Some(cursor) => query = format!("limit=2&cursor={cursor}"),
            None => {
                assert!(page.get("nextCursor").is_none() || page["nextCursor"].is_null());
                break;
            }
        }
        assert!(pages < 10, "pagination does not end");
    }

    assert_eq!(pages, 3);
    assert_eq!(
        seen, created,
        "pages are not newest first without duplicates"
    );
}

#[tokio::test]
async fn a_page_that_exactly_fills_the_limit_ends_the_list() {
    let app = spawn_app().await;
    for _ in 0..2 {
        app.enqueue_noop(&user(ALICE)).await;
    }

    let (status, page) = app.list(&user(ALICE), "limit=2").await;

    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(listed_ids(&page).len(), 2);
    assert!(
        page["nextCursor"].is_null(),
        "a cursor to an empty page: {page}"
    );
}

#[tokio::test]
async fn lists_filter_by_status_queue_and_job_type() {
    let app = spawn_app().await;
    let noop = app.enqueue_noop(service()).await;
    let sleep = app
        .enqueue_ok(
            service(),
            json!({"jobType": "sleep", "payload": {"ms": 1}, "queue": "custom1"}),
        )
        .await;
    let later = app
        .enqueue_ok(service(), json!({"jobType": "noop", "delaySeconds": 600}))
        .await;
    let cancelled = app.enqueue_noop(service()).await;
    let (status, _) = app.cancel(service(), cancelled).await;
    assert_eq!(status, StatusCode::OK);

    let ids = |query: &'static str| {
        let app = &app;
        async move {
            let (status, page) = app.list(service(), query).await;
            assert_eq!(status, StatusCode::OK, "{query}: {page}");
            listed_ids(&page).into_iter().collect::<HashSet<_>>()
        }
    };

    assert_eq!(ids("status=queued").await, HashSet::from([noop, sleep]));
    assert_eq!(ids("status=scheduled").await, HashSet::from([later]));
    assert_eq!(ids("status=cancelled").await, HashSet::from([cancelled]));
    assert_eq!(ids("queue=custom1").await, HashSet::from([sleep]));
    assert_eq!(ids("jobType=sleep").await, HashSet::from([sleep]));
    assert_eq!(
        ids("jobType=noop&status=queued").await,
        HashSet::from([noop])
    );
    assert_eq!(ids("queue=default&jobType=sleep").await, HashSet::new());
}
