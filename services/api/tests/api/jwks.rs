//! Asymmetric (ES256) Supabase tokens verified against the project's JWKS,
//! served by a local fake of Supabase Auth.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    ALICE, TestApp, assert_error, assert_unavailable, fixtures, hmac_signed_token, sign_hs256,
    spawn_app_with,
};

/// A local Supabase Auth that publishes the fixture JWKS and counts fetches.
struct FakeSupabase {
    base: String,
    fetches: Arc<AtomicUsize>,
}

async fn start_fake_supabase() -> FakeSupabase {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let router = axum::Router::new().route(
        "/auth/v1/.well-known/jwks.json",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    fixtures::JWKS,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the fake Supabase");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    FakeSupabase { base, fetches }
}

async fn spawn_app_with_jwks() -> (TestApp, FakeSupabase) {
    let supabase = start_fake_supabase().await;
    let base = supabase.base.clone();
    let app = spawn_app_with(|env| {
        env.set("SUPABASE_URL", base);
    })
    .await;
    (app, supabase)
}

fn claims(supabase: &FakeSupabase, sub: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "sub": sub,
        "role": "authenticated",
        "aud": "authenticated",
        "iss": format!("{}/auth/v1", supabase.base),
        "iat": now,
        "exp": now + 3600,
    })
}

fn es256(claims: &Value, kid: &str, private_pem: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    let key = EncodingKey::from_ec_pem(private_pem.as_bytes()).expect("EC private key");
    jsonwebtoken::encode(&header, claims, &key).expect("sign ES256")
}

async fn enqueue_status(app: &TestApp, token: &str) -> (StatusCode, Value) {
    app.enqueue(token, json!({"jobType": "noop", "payload": {}}))
        .await
}

#[tokio::test]
async fn an_es256_token_from_the_projects_jwks_is_accepted() {
    let (app, supabase) = spawn_app_with_jwks().await;
    let token = es256(
        &claims(&supabase, ALICE),
        fixtures::EC1_KID,
        fixtures::EC1_PRIVATE,
    );

    let (status, body) = enqueue_status(&app, &token).await;

    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["userId"], ALICE);
    // The key set is cached: a second token costs no fetch.
    let (status, _) = enqueue_status(&app, &token).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(supabase.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_es256_token_with_an_unknown_kid_is_rejected() {
    let (app, supabase) = spawn_app_with_jwks().await;
    let token = es256(&claims(&supabase, ALICE), "ec-key-2", fixtures::EC2_PRIVATE);

    let (status, body) = enqueue_status(&app, &token).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_error(&body, "unauthorized");
    // Unknown kids do not turn into a fetch per request.
    for _ in 0..3 {
        let (status, _) = enqueue_status(&app, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert!(supabase.fetches.load(Ordering::SeqCst) <= 1);
    assert!(app.all_rows().await.is_empty());
}

#[tokio::test]
async fn an_es256_token_signed_by_another_key_under_a_known_kid_is_rejected() {
    let (app, supabase) = spawn_app_with_jwks().await;
    let token = es256(
        &claims(&supabase, ALICE),
        fixtures::EC1_KID,
        fixtures::EC2_PRIVATE,
    );

    let (status, body) = enqueue_status(&app, &token).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn an_es256_token_from_another_issuer_is_rejected() {
    let (app, supabase) = spawn_app_with_jwks().await;
    let mut claims = claims(&supabase, ALICE);
    claims["iss"] = json!("https://another-project.supabase.co/auth/v1");
    let token = es256(&claims, fixtures::EC1_KID, fixtures::EC1_PRIVATE);

    let (status, body) = enqueue_status(&app, &token).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn the_jwks_public_key_used_as_an_hmac_secret_is_rejected() {
    let (app, supabase) = spawn_app_with_jwks().await;
    let claims = claims(&supabase, ALICE);

    // HS256 "signed" with the published public key (PEM text, and the JWK JSON).
    let jwk = serde_json::from_str::<Value>(fixtures::JWKS).unwrap()["keys"][0].to_string();
    for secret in [fixtures::EC1_PUBLIC, jwk.as_str()] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(fixtures::EC1_KID.to_owned());
        let token = jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("sign");
        let (status, body) = enqueue_status(&app, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let (status, _) = enqueue_status(&app, &sign_hs256(&claims, secret.as_bytes())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // An ES256 / RS256 header over an HMAC made with the public key.
    for alg in ["ES256", "RS256"] {
        let token = hmac_signed_token(
            &json!({"alg": alg, "typ": "JWT", "kid": fixtures::EC1_KID}),
            &claims,
            fixtures::EC1_PUBLIC.as_bytes(),
        );
        let (status, body) = enqueue_status(&app, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{alg}: {body}");
    }
    assert!(app.all_rows().await.is_empty());
}

#[tokio::test]
async fn an_unreachable_jwks_is_a_temporary_failure_not_a_user_error() {
    // Nothing listens on port 1: the key set cannot be fetched.
    let app = spawn_app_with(|env| {
        env.set("SUPABASE_URL", "http://127.0.0.1:1");
    })
    .await;
    let now = chrono::Utc::now().timestamp();
    let token = es256(
        &json!({
            "sub": ALICE, "role": "authenticated", "aud": "authenticated",
            "iss": "http://127.0.0.1:1/auth/v1", "iat": now, "exp": now + 3600,
        }),
        fixtures::EC1_KID,
        fixtures::EC1_PRIVATE,
    );

    let response = app
        .post(
            "/api/jobs/enqueue",
            Some(&token),
            &json!({"jobType": "noop"}),
        )
        .await;

    assert_unavailable(&response);
    assert!(app.all_rows().await.is_empty());
}
