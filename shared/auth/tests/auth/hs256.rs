//! Legacy HS256 tokens, claim validation, header parsing.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use roundhouse_auth::{AuthError, AuthSettings, Authenticator, Principal, User};
use serde_json::json;

use crate::support::*;

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn expect_invalid(auth: &Authenticator, token: &str, what: &str) {
    let result = auth.authenticate_token(token).await;
    match result {
        Err(err @ AuthError::Invalid(_)) => assert_eq!(err.status_code(), 401),
        other => panic!("{what}: expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn valid_hs256_user_token_is_accepted() {
    let auth = hs_auth();
    let claims = with(user_claims(), |c| {
        c.insert(
            "app_metadata".into(),
            json!({"provider": "email", "role": "admin"}),
        );
    });
    let token = sign_hs(&claims, SECRET.as_bytes());
    let principal = auth
        .authenticate_header(Some(&bearer(&token)))
        .await
        .unwrap();
    assert_eq!(
        principal,
        Principal::User(User {
            id: USER_ID.to_owned(),
            email: Some("alice@example.com".to_owned()),
            is_admin: true,
        })
    );
    assert!(principal.is_admin());
    assert!(!principal.is_service());
    assert_eq!(principal.user_id(), Some(USER_ID));
}

#[tokio::test]
async fn plain_user_is_not_admin_and_email_is_optional() {
    let auth = hs_auth();
    let claims = with(user_claims(), |c| {
        c.remove("email");
    });
    let principal = auth
        .authenticate_token(&sign_hs(&claims, SECRET.as_bytes()))
        .await
        .unwrap();
    assert_eq!(
        principal,
        Principal::User(User {
            id: USER_ID.to_owned(),
            email: None,
            is_admin: false
        })
    );
    assert!(!principal.is_admin());
}

#[tokio::test]
async fn user_metadata_role_admin_does_not_make_admin() {
    let auth = hs_auth();
    let claims = with(user_claims(), |c| {
        c.insert("user_metadata".into(), json!({"role": "admin"}));
        c.insert("app_metadata".into(), json!({"provider": "email"}));
    });
    let principal = auth
        .authenticate_token(&sign_hs(&claims, SECRET.as_bytes()))
        .await
        .unwrap();
    assert!(!principal.is_admin());
    // A top-level "admin" claim or app_metadata.role of another value is not admin either.
    let claims = with(user_claims(), |c| {
        c.insert("admin".into(), json!(true));
        c.insert("app_metadata".into(), json!({"role": "Admin"}));
    });
    let principal = auth
        .authenticate_token(&sign_hs(&claims, SECRET.as_bytes()))
        .await
        .unwrap();
    assert!(!principal.is_admin());
}

#[tokio::test]
async fn aud_may_be_an_array_containing_authenticated() {
    let auth = hs_auth();
    let claims = with(user_claims(), |c| {
        c.insert("aud".into(), json!(["other-api", "authenticated"]));
    });
    let principal = auth
        .authenticate_token(&sign_hs(&claims, SECRET.as_bytes()))
        .await
        .unwrap();
    assert_eq!(principal.user_id(), Some(USER_ID));
}

#[tokio::test]
async fn expired_token_is_invalid_but_leeway_is_honoured() {
    let auth = hs_auth();
    let expired = with(user_claims(), |c| {
        c.insert("exp".into(), json!(now() - 120));
    });
    expect_invalid(
        &auth,
        &sign_hs(&expired, SECRET.as_bytes()),
        "expired 120 s ago",
    )
    .await;

    let just_expired = with(user_claims(), |c| {
        c.insert("exp".into(), json!(now() - 10));
    });
    assert!(
        auth.authenticate_token(&sign_hs(&just_expired, SECRET.as_bytes()))
            .await
            .is_ok(),
        "expired 10 s ago is within the default 30 s leeway"
    );

    let strict = Authenticator::new(AuthSettings {
        leeway_seconds: 0,
        ..hs_settings()
    });
    expect_invalid(
        &strict,
        &sign_hs(&just_expired, SECRET.as_bytes()),
        "no leeway",
    )
    .await;
}

#[tokio::test]
async fn not_yet_valid_token_is_invalid() {
    let auth = hs_auth();
    let claims = with(user_claims(), |c| {
        c.insert("nbf".into(), json!(now() + 600));
    });
    expect_invalid(
        &auth,
        &sign_hs(&claims, SECRET.as_bytes()),
        "nbf in the future",
    )
    .await;
}

#[tokio::test]
async fn wrong_secret_is_invalid() {
    let auth = hs_auth();
    let token = sign_hs(&user_claims(), b"another-projects-secret-0123456789abcdef");
    expect_invalid(&auth, &token, "wrong secret").await;
}

#[tokio::test]
async fn alg_none_and_unsigned_tokens_are_invalid() {
    let auth = hs_auth();
    let claims = user_claims();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let token = raw_token(&json!({"alg": alg, "typ": "JWT"}), &claims, b"");
        expect_invalid(&auth, &token, alg).await;
        // Some libraries accept "none" tokens with a dangling signature part.
        let token = raw_token(&json!({"alg": alg, "typ": "JWT"}), &claims, b"sig");
        expect_invalid(&auth, &token, alg).await;
    }
    // HS256 header with the signature stripped.
    let token = sign_hs(&claims, SECRET.as_bytes());
    let unsigned = format!("{}.", token.rsplit_once('.').unwrap().0);
    expect_invalid(&auth, &unsigned, "stripped signature").await;
    let two_parts = token.rsplit_once('.').unwrap().0.to_owned();
    expect_invalid(&auth, &two_parts, "two-part token").await;
}

#[tokio::test]
async fn other_algorithms_are_not_allowed() {
    let auth = hs_auth();
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let token = jsonwebtoken::encode(
            &Header::new(alg),
            &user_claims(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        expect_invalid(&auth, &token, &format!("{alg:?}")).await;
    }
}

#[tokio::test]
async fn hs256_is_rejected_when_no_secret_is_configured() {
    let auth = Authenticator::new(AuthSettings {
        jwt_secret: None,
        ..hs_settings()
    });
    let token = sign_hs(&user_claims(), SECRET.as_bytes());
    expect_invalid(&auth, &token, "HS256 without secret").await;
    // An empty secret counts as not configured (it would otherwise accept HMAC with "" key).
    let auth = Authenticator::new(AuthSettings {
        jwt_secret: Some(String::new()),
        ..hs_settings()
    });
    expect_invalid(
        &auth,
        &sign_hs(&user_claims(), b""),
        "HS256 with empty secret",
    )
    .await;
}

#[tokio::test]
async fn wrong_or_missing_audience_is_invalid() {
    let auth = hs_auth();
    for aud in [
        json!("anon"),
        json!(["anon", "service"]),
        json!(""),
        json!(42),
    ] {
        let claims = with(user_claims(), |c| {
            c.insert("aud".into(), aud.clone());
        });
        expect_invalid(
            &auth,
            &sign_hs(&claims, SECRET.as_bytes()),
            &format!("aud {aud}"),
        )
        .await;
    }
    let claims = with(user_claims(), |c| {
        c.remove("aud");
    });
    expect_invalid(&auth, &sign_hs(&claims, SECRET.as_bytes()), "no aud").await;
}

#[tokio::test]
async fn wrong_or_missing_issuer_is_invalid() {
    let auth = hs_auth();
    for iss in [
        json!("https://other-project.supabase.co/auth/v1"),
        json!("https://proj-ref.supabase.co/auth/v1/"),
        json!("supabase"),
        json!([ISSUER]),
    ] {
        let claims = with(user_claims(), |c| {
            c.insert("iss".into(), iss.clone());
        });
        expect_invalid(
            &auth,
            &sign_hs(&claims, SECRET.as_bytes()),
            &format!("iss {iss}"),
        )
        .await;
    }
    let claims = with(user_claims(), |c| {
        c.remove("iss");
    });
    expect_invalid(&auth, &sign_hs(&claims, SECRET.as_bytes()), "no iss").await;
}

#[tokio::test]
async fn explicit_issuer_overrides_the_derived_one() {
    let auth = Authenticator::new(AuthSettings {
        issuer: Some("https://auth.example.com".into()),
        ..hs_settings()
    });
    expect_invalid(
        &auth,
        &sign_hs(&user_claims(), SECRET.as_bytes()),
        "derived iss",
    )
    .await;
    let claims = with(user_claims(), |c| {
        c.insert("iss".into(), json!("https://auth.example.com"));
    });
    assert!(
        auth.authenticate_token(&sign_hs(&claims, SECRET.as_bytes()))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn issuer_is_not_checked_when_unknown() {
    let auth = Authenticator::new(AuthSettings {
        supabase_url: None,
        issuer: None,
        ..hs_settings()
    });
    let claims = with(user_claims(), |c| {
        c.insert("iss".into(), json!("https://anything.example"));
    });
    let principal = auth
        .authenticate_token(&sign_hs(&claims, SECRET.as_bytes()))
        .await
        .unwrap();
    assert_eq!(principal.user_id(), Some(USER_ID));
}

#[tokio::test]
async fn missing_exp_is_invalid() {
    let auth = hs_auth();
    let claims = with(user_claims(), |c| {
        c.remove("exp");
    });
    expect_invalid(&auth, &sign_hs(&claims, SECRET.as_bytes()), "no exp").await;
    let claims = with(user_claims(), |c| {
        c.insert("exp".into(), json!("tomorrow"));
    });
    expect_invalid(&auth, &sign_hs(&claims, SECRET.as_bytes()), "string exp").await;
}

#[tokio::test]
async fn missing_or_empty_sub_is_invalid() {
    let auth = hs_auth();
    let claims = with(user_claims(), |c| {
        c.remove("sub");
    });
    expect_invalid(&auth, &sign_hs(&claims, SECRET.as_bytes()), "no sub").await;
    let claims = with(user_claims(), |c| {
        c.insert("sub".into(), json!(""));
    });
    expect_invalid(&auth, &sign_hs(&claims, SECRET.as_bytes()), "empty sub").await;
}

#[tokio::test]
async fn anon_key_and_service_role_jwt_are_forbidden() {
    let auth = hs_auth();
    for role in ["anon", "service_role"] {
        let token = sign_hs(&api_key_claims(role), SECRET.as_bytes());
        let err = auth
            .authenticate_header(Some(&bearer(&token)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AuthError::Forbidden(_)),
            "{role}: got {err:?}"
        );
        assert_eq!(err.status_code(), 403);
    }
    // A user-shaped token with a non-authenticated role, or no role at all, is forbidden too.
    for role in [
        Some(json!("anon")),
        Some(json!("service_role")),
        Some(json!(1)),
        None,
    ] {
        let claims = with(user_claims(), |c| match &role {
            Some(r) => {
                c.insert("role".into(), r.clone());
            }
            None => {
                c.remove("role");
            }
        });
        let err = auth
            .authenticate_token(&sign_hs(&claims, SECRET.as_bytes()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AuthError::Forbidden(_)),
            "role {role:?}: got {err:?}"
        );
    }
}

#[tokio::test]
async fn anon_key_signed_by_another_project_is_invalid_not_forbidden() {
    let auth = hs_auth();
    let token = sign_hs(
        &api_key_claims("anon"),
        b"another-projects-secret-0123456789abcdef",
    );
    expect_invalid(&auth, &token, "foreign anon key").await;
}

#[tokio::test]
async fn malformed_tokens_are_invalid() {
    let auth = hs_auth();
    let valid = sign_hs(&user_claims(), SECRET.as_bytes());
    let (head, rest) = valid.split_once('.').unwrap();
    let bad_header_json = format!("{}.{rest}", base64_url("{not json"));
    let header_not_object = format!("{}.{rest}", base64_url("[1,2]"));
    let payload_not_json = format!("{head}.{}.AAAA", base64_url("nope"));
    let four_parts = format!("{valid}.extra");
    let oversized = format!("{valid}{}", "A".repeat(20_000));
    let bad_base64 = format!("{head}.!!!!.{}", valid.rsplit_once('.').unwrap().1);
    for (what, token) in [
        ("garbage", "garbage"),
        ("dots only", ".."),
        ("a.b.c", "a.b.c"),
        ("bad header json", bad_header_json.as_str()),
        ("header not object", header_not_object.as_str()),
        ("payload not json", payload_not_json.as_str()),
        ("four parts", four_parts.as_str()),
        ("oversized", oversized.as_str()),
        ("bad base64 payload", bad_base64.as_str()),
        ("unicode", "ünïcödé.tökén.x"),
    ] {
        expect_invalid(&auth, token, what).await;
    }
    let header_missing_alg = raw_token(&json!({"typ": "JWT"}), &user_claims(), b"x");
    expect_invalid(&auth, &header_missing_alg, "header without alg").await;
}

#[tokio::test]
async fn crit_header_is_rejected() {
    let auth = hs_auth();
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["b64".to_owned()]);
    let token = sign_with_header(
        &header,
        &user_claims(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    );
    expect_invalid(&auth, &token, "crit header").await;
}

#[tokio::test]
async fn authorization_header_parsing() {
    let auth = hs_auth();
    let token = sign_hs(&user_claims(), SECRET.as_bytes());

    assert!(matches!(
        auth.authenticate_header(None).await,
        Err(AuthError::Missing)
    ));
    assert!(matches!(
        auth.authenticate_header(Some("")).await,
        Err(AuthError::Missing)
    ));
    assert!(matches!(
        auth.authenticate_header(Some("Bearer")).await,
        Err(AuthError::Missing)
    ));
    assert!(matches!(
        auth.authenticate_header(Some("Bearer   ")).await,
        Err(AuthError::Missing)
    ));
    assert_eq!(AuthError::Missing.status_code(), 401);
    // Other schemes are not a bearer token: Missing (the dashboard can fall back to Basic).
    assert!(matches!(
        auth.authenticate_header(Some("Basic dXNlcjpwYXNzd29yZA=="))
            .await,
        Err(AuthError::Missing)
    ));
    assert!(matches!(
        auth.authenticate_header(Some(&format!("Token {token}")))
            .await,
        Err(AuthError::Missing)
    ));
    // A bare token without scheme is not accepted in the header.
    assert!(matches!(
        auth.authenticate_header(Some(&token)).await,
        Err(AuthError::Missing)
    ));

    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let principal = auth
            .authenticate_header(Some(&format!("{scheme} {token}")))
            .await
            .unwrap_or_else(|e| panic!("{scheme}: {e}"));
        assert_eq!(principal.user_id(), Some(USER_ID));
    }
    // Extra whitespace around the token is tolerated.
    assert!(
        auth.authenticate_header(Some(&format!("  Bearer \t {token}  ")))
            .await
            .is_ok()
    );
    // Garbage after the scheme is an invalid token, not a missing one.
    assert!(matches!(
        auth.authenticate_header(Some("Bearer not-a-jwt")).await,
        Err(AuthError::Invalid(_))
    ));
}

#[tokio::test]
async fn error_messages_do_not_echo_the_token() {
    let auth = hs_auth();
    let token = sign_hs(&user_claims(), b"wrong-secret-wrong-secret-wrong-secret");
    let err = auth.authenticate_token(&token).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(&token));
    assert!(!shown.contains(token.split('.').nth(1).unwrap()));
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}
