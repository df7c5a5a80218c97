//! The guarded client against real local servers: what it refuses, it never
//! sends; what the operator allows, it reaches.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::response::Redirect;
use axum::routing::get;
use roundhouse_outbound::{OutboundError, OutboundPolicy, forbidden_in};

/// A local server counting the requests that reach it.
async fn counting_server() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new()
        .route(
            "/",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { "hello" }
            }),
        )
        .route(
            "/to-metadata",
            get(|| async { Redirect::temporary("http://169.254.169.254/latest/meta-data/") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("{port}"), hits)
}

#[tokio::test]
async fn loopback_by_address_or_by_name_is_refused_and_nothing_is_sent() {
    let (port, hits) = counting_server().await;
    let policy = OutboundPolicy::default();
    let client = policy.client(reqwest::Client::builder()).unwrap();

    // The resolver refuses `localhost` at connect time, even unchecked.
    let error = client
        .get(format!("http://localhost:{port}/"))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(forbidden_in(&error), Some(OutboundError::Forbidden { .. })),
        "{error:?}"
    );
    // A literal is refused by `check_url` before any request.
    let url = format!("http://127.0.0.1:{port}/").parse().unwrap();
    assert!(matches!(
        policy.check_url(&url).await,
        Err(OutboundError::Forbidden { .. })
    ));
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_allowlisted_host_is_reached() {
    let (port, hits) = counting_server().await;
    let policy = OutboundPolicy::parse("localhost").unwrap();
    let client = policy.client(reqwest::Client::builder()).unwrap();
    let url = format!("http://localhost:{port}/");
    policy.check_url(&url.parse().unwrap()).await.unwrap();
    let body = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert_eq!(body, "hello");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_redirect_to_the_metadata_address_is_not_followed() {
    let (port, _) = counting_server().await;
    let policy = OutboundPolicy::parse("127.0.0.1").unwrap();
    let client = policy.client(reqwest::Client::builder()).unwrap();
    let error = client
        .get(format!("http://127.0.0.1:{port}/to-metadata"))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_redirect(), "{error:?}");
    assert!(
        matches!(
            forbidden_in(&error),
            Some(OutboundError::Forbidden { addr, .. }) if addr.to_string() == "169.254.169.254"
        ),
        "{error:?}"
    );
}
