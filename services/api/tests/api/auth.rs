//! Authentication and authorization (research reliability.md §B, S1–S9).

use reqwest::StatusCode;
use roundhouse_test_support::{JWT_SECRET, SERVICE_TOKEN, TokenClaims, token_with};
use serde_json::json;

use crate::helpers::{
    ALICE, ApiResponse, BOB, TestApp, admin, assert_error, assert_error_shape, fixtures,
    hmac_signed_token, raw_token, service, sign_hs256, spawn_app, user, user_claims,
};

async fn enqueue_as(app: &TestApp, token: &str) -> ApiResponse {
    app.post(
        "/api/jobs/enqueue",
        Some(token),
        &json!({"jobType": "noop", "payload": {}}),
    )
    .await
}

/// Asserts `token` is refused with 401 (in the error shape, with a Bearer
/// challenge) and stored nothing.
async fn assert_unauthorized(app: &TestApp, token: &str, what: &str) {
    let response = enqueue_as(app, token).await;
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{what}: {}",
        response.text
    );
    assert_error(&response.body, "unauthorized");
    assert!(
        response
            .header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer")),
        "{what}: no Bearer challenge"
    );
    assert!(app.all_rows().await.is_empty(), "{what}: a job was stored");
}

#[tokio::test]
async fn requests_without_a_token_are_unauthorized_with_a_challenge() {
    let app = spawn_app().await;

    let response = app
        .post("/api/jobs/enqueue", None, &json!({"jobType": "noop"}))
        .await;

    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        response.text
    );
    assert_error(&response.body, "unauthorized");
    assert_eq!(response.header("www-authenticate"), Some("Bearer"));
    for path in ["/api/jobs", "/api/queues/stats"] {
        let response = app.get(path, None).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_error_shape(&response.body);
    }
}

#[tokio::test]
async fn non_bearer_schemes_are_unauthorized() {
    let app = spawn_app().await;

    let response = ApiResponse::read(
        app.client
            .get(app.url("/api/jobs"))
            .header("authorization", format!("Basic {SERVICE_TOKEN}"))
            .send()
            .await
            .expect("answer"),
    )
    .await;

    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        response.text
    );
    assert_error(&response.body, "unauthorized");
}

#[tokio::test]
async fn a_valid_user_token_is_accepted() {
    let app = spawn_app().await;

    let response = enqueue_as(&app, &user(ALICE)).await;

    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text);
}

#[tokio::test]
async fn expired_tokens_are_rejected() {
    let app = spawn_app().await;
    let token = token_with(
        TokenClaims {
            sub: ALICE,
            expires_in: -3600,
            ..Default::default()
        },
        JWT_SECRET,
    );
    assert_unauthorized(&app, &token, "expired").await;
}

#[tokio::test]
async fn tokens_without_an_expiry_are_rejected() {
    let app = spawn_app().await;
    let mut claims = user_claims(ALICE);
    claims.as_object_mut().unwrap().remove("exp");
    assert_unauthorized(&app, &sign_hs256(&claims, JWT_SECRET.as_bytes()), "no exp").await;
}

#[tokio::test]
async fn tokens_not_yet_valid_are_rejected() {
    let app = spawn_app().await;
    let mut claims = user_claims(ALICE);
    claims["nbf"] = json!(chrono::Utc::now().timestamp() + 3600);
    assert_unauthorized(
        &app,
        &sign_hs256(&claims, JWT_SECRET.as_bytes()),
        "nbf in the future",
    )
    .await;
}

#[tokio::test]
async fn tokens_signed_with_another_secret_are_rejected() {
    let app = spawn_app().await;
    let token = token_with(
        TokenClaims {
            sub: ALICE,
            ..Default::default()
        },
        "some-other-projects-secret-of-32-bytes!!",
    );
    assert_unauthorized(&app, &token, "wrong secret").await;
}

#[tokio::test]
async fn tampered_claims_invalidate_the_signature() {
    let app = spawn_app().await;
    let token = user(ALICE);
    let parts: Vec<&str> = token.split('.').collect();
    let forged = raw_token(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &user_claims(BOB),
        b"",
    );
    let forged_parts: Vec<&str> = forged.split('.').collect();
    // Bob's claims under Alice's signature.
    let spliced = format!("{}.{}.{}", parts[0], forged_parts[1], parts[2]);
    assert_unauthorized(&app, &spliced, "spliced claims").await;
}

#[tokio::test]
async fn unsigned_alg_none_tokens_are_rejected() {
    let app = spawn_app().await;
    let claims = user_claims(ALICE);
    for alg in ["none", "None", "NONE"] {
        let token = raw_token(&json!({"alg": alg, "typ": "JWT"}), &claims, b"");
        assert_unauthorized(&app, &token, alg).await;
        // The same without the trailing dot.
        let bare = token.trim_end_matches('.').to_owned();
        assert_unauthorized(&app, &bare, alg).await;
    }
}

#[tokio::test]
async fn hs256_tokens_keyed_with_a_public_key_are_rejected() {
    let app = spawn_app().await;
    let claims = user_claims(ALICE);
    for pem in [fixtures::RSA_PUBLIC, fixtures::EC1_PUBLIC] {
        let token = sign_hs256(&claims, pem.as_bytes());
        assert_unauthorized(&app, &token, "HS256 keyed with a PEM public key").await;
    }
}

#[tokio::test]
async fn asymmetric_headers_over_an_hmac_signature_are_rejected() {
    let app = spawn_app().await;
    let claims = user_claims(ALICE);
    // Signed with the real secret, so only the header's algorithm is wrong.
    for alg in ["RS256", "ES256", "HS512", "PS256", "EdDSA"] {
        let token = hmac_signed_token(
            &json!({"alg": alg, "typ": "JWT"}),
            &claims,
            JWT_SECRET.as_bytes(),
        );
        assert_unauthorized(&app, &token, alg).await;
        let keyed = hmac_signed_token(
            &json!({"alg": alg, "typ": "JWT"}),
            &claims,
            fixtures::RSA_PUBLIC.as_bytes(),
        );
        assert_unauthorized(&app, &keyed, alg).await;
    }
}

#[tokio::test]
async fn garbage_tokens_are_rejected() {
    let app = spawn_app().await;
    for token in [
        "x",
        "a.b.c",
        "....",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        &"A".repeat(20_000),
    ] {
        assert_unauthorized(&app, token, "garbage").await;
    }
}

#[tokio::test]
async fn the_anon_key_is_not_a_user() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp();
    let anon = sign_hs256(
        &json!({"iss": "supabase", "ref": "proj", "role": "anon", "iat": now, "exp": now + 3600}),
        JWT_SECRET.as_bytes(),
    );

    let response = enqueue_as(&app, &anon).await;

    assert!(
        [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&response.status),
        "{} {}",
        response.status,
        response.text
    );
    assert_error_shape(&response.body);
    assert!(app.all_rows().await.is_empty());
}

#[tokio::test]
async fn a_service_role_jwt_that_is_not_the_configured_service_token_grants_nothing() {
    let app = spawn_app().await;
    let alices = app.enqueue_noop(&user(ALICE)).await;
    let now = chrono::Utc::now().timestamp();
    let service_role = sign_hs256(
        &json!({"iss": "supabase", "ref": "proj", "role": "service_role", "iat": now, "exp": now + 3600}),
        JWT_SECRET.as_bytes(),
    );
    let mut claims = user_claims(BOB);
    claims["role"] = json!("service_role");
    let user_shaped = sign_hs256(&claims, JWT_SECRET.as_bytes());

    for token in [service_role, user_shaped] {
        let read = app.get(&format!("/api/jobs/{alices}"), Some(&token)).await;
        assert!(
            [
                StatusCode::UNAUTHORIZED,
                StatusCode::FORBIDDEN,
                StatusCode::NOT_FOUND
            ]
            .contains(&read.status),
            "{} {}",
            read.status,
            read.text
        );
        assert_error_shape(&read.body);
        let stats = app.get("/api/queues/stats", Some(&token)).await;
        assert!(
            [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&stats.status),
            "{} {}",
            stats.status,
            stats.text
        );
        let list = app.get("/api/jobs", Some(&token)).await;
        assert!(
            !list.status.is_success(),
            "a service_role JWT listed jobs: {}",
            list.text
        );
    }
}

#[tokio::test]
async fn tokens_for_another_audience_are_rejected() {
    let app = spawn_app().await;
    let token = token_with(
        TokenClaims {
            sub: ALICE,
            aud: "some-other-api",
            ..Default::default()
        },
        JWT_SECRET,
    );
    assert_unauthorized(&app, &token, "wrong aud").await;
    let mut claims = user_claims(ALICE);
    claims.as_object_mut().unwrap().remove("aud");
    assert_unauthorized(&app, &sign_hs256(&claims, JWT_SECRET.as_bytes()), "no aud").await;
}

#[tokio::test]
async fn tokens_from_another_issuer_are_rejected() {
    let app = spawn_app().await;
    let mut claims = user_claims(ALICE);
    claims["iss"] = json!("https://another-project.supabase.co/auth/v1");
    assert_unauthorized(
        &app,
        &sign_hs256(&claims, JWT_SECRET.as_bytes()),
        "wrong iss",
    )
    .await;
    claims.as_object_mut().unwrap().remove("iss");
    assert_unauthorized(&app, &sign_hs256(&claims, JWT_SECRET.as_bytes()), "no iss").await;
}

#[tokio::test]
async fn tokens_without_a_subject_are_rejected() {
    let app = spawn_app().await;
    let mut claims = user_claims(ALICE);
    claims["sub"] = json!("");
    assert_unauthorized(
        &app,
        &sign_hs256(&claims, JWT_SECRET.as_bytes()),
        "empty sub",
    )
    .await;
    claims.as_object_mut().unwrap().remove("sub");
    assert_unauthorized(&app, &sign_hs256(&claims, JWT_SECRET.as_bytes()), "no sub").await;
}

#[tokio::test]
async fn a_service_token_off_by_one_byte_is_rejected() {
    let app = spawn_app().await;
    let mut last_changed = SERVICE_TOKEN.to_owned();
    last_changed.pop();
    last_changed.push('X');
    let mut first_changed = SERVICE_TOKEN.to_owned();
    first_changed.replace_range(0..1, "X");
    for token in [
        last_changed,
        first_changed,
        format!("{SERVICE_TOKEN}x"),
        SERVICE_TOKEN[..SERVICE_TOKEN.len() - 1].to_owned(),
        SERVICE_TOKEN.to_uppercase(),
    ] {
        assert_unauthorized(&app, &token, "near-miss service token").await;
    }
    // The real one works.
    assert_eq!(
        enqueue_as(&app, service()).await.status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn queue_operations_are_for_the_service_and_admins() {
    let app = spawn_app().await;

    let normal = app.get("/api/queues/stats", Some(&user(ALICE))).await;
    assert_eq!(normal.status, StatusCode::FORBIDDEN, "{}", normal.text);
    assert_error(&normal.body, "forbidden");
    let (status, body) = app.set_paused(&user(ALICE), "default", true).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        !app.env
            .db
            .queue_stats()
            .await
            .unwrap()
            .iter()
            .any(|q| q.paused)
    );

    let admin_stats = app.get("/api/queues/stats", Some(&admin())).await;
    assert_eq!(admin_stats.status, StatusCode::OK, "{}", admin_stats.text);
    let service_stats = app.get("/api/queues/stats", Some(service())).await;
    assert_eq!(
        service_stats.status,
        StatusCode::OK,
        "{}",
        service_stats.text
    );
}

#[tokio::test]
async fn an_admin_flag_in_user_metadata_grants_nothing() {
    let app = spawn_app().await;
    let mut claims = user_claims(ALICE);
    claims["user_metadata"] = json!({"role": "admin"});
    let token = sign_hs256(&claims, JWT_SECRET.as_bytes());

    let response = app.get("/api/queues/stats", Some(&token)).await;

    assert_eq!(response.status, StatusCode::FORBIDDEN, "{}", response.text);
}

#[tokio::test]
async fn an_admin_user_still_sees_only_their_own_jobs() {
    let app = spawn_app().await;
    let alices = app.enqueue_noop(&user(ALICE)).await;

    let (status, _) = app.get_job(&admin(), alices).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, page) = app.list(&admin(), "").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["jobs"], json!([]));
}

#[tokio::test]
async fn error_bodies_never_echo_the_token() {
    let app = spawn_app().await;
    let token = token_with(
        TokenClaims {
            sub: "secret-subject-value",
            expires_in: -100,
            ..Default::default()
        },
        JWT_SECRET,
    );

    let response = enqueue_as(&app, &token).await;

    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert!(!response.text.contains(&token));
    assert!(!response.text.contains("secret-subject-value"));
    assert!(!response.text.contains(JWT_SECRET));
}
