//! Service tokens: exact, constant-time byte comparison before any JWT parsing.

use roundhouse_auth::{AuthError, AuthSettings, Authenticator, Principal, secrets_match};

use crate::support::*;

#[tokio::test]
async fn exact_service_token_is_service_principal() {
    let auth = hs_auth();
    let principal = auth
        .authenticate_header(Some(&format!("Bearer {SERVICE_TOKEN}")))
        .await
        .unwrap();
    assert_eq!(principal, Principal::Service);
    assert!(principal.is_service());
    assert!(principal.is_admin());
    assert_eq!(principal.user_id(), None);

    // Bare token (WebSocket `?token=`) works the same way.
    assert_eq!(
        auth.authenticate_token(SERVICE_TOKEN).await.unwrap(),
        Principal::Service
    );
}

#[tokio::test]
async fn near_miss_service_tokens_are_not_service() {
    let auth = hs_auth();
    let mut one_byte_different = SERVICE_TOKEN.as_bytes().to_vec();
    let last = one_byte_different.len() - 1;
    one_byte_different[last] ^= 0x01;
    let one_byte_different = String::from_utf8(one_byte_different).unwrap();
    let prefix = &SERVICE_TOKEN[..SERVICE_TOKEN.len() - 1];
    let extended = format!("{SERVICE_TOKEN}x");
    let upper = SERVICE_TOKEN.to_uppercase();

    for candidate in [one_byte_different.as_str(), prefix, &extended, &upper, "rh"] {
        let result = auth.authenticate_token(candidate).await;
        assert!(
            matches!(result, Err(AuthError::Invalid(_))),
            "near-miss service token must be rejected as an invalid token, got {result:?}"
        );
    }
}

#[tokio::test]
async fn every_configured_service_token_is_checked_and_empty_ones_are_ignored() {
    let second = "sb_secret_abcdefghijklmnopqrstuvwxyz012345";
    let auth = Authenticator::new(AuthSettings {
        service_tokens: vec![String::new(), SERVICE_TOKEN.to_owned(), second.to_owned()],
        ..hs_settings()
    });
    assert_eq!(
        auth.authenticate_token(second).await.unwrap(),
        Principal::Service
    );
    assert_eq!(
        auth.authenticate_token(SERVICE_TOKEN).await.unwrap(),
        Principal::Service
    );
    // The empty configured value never matches anything (an empty token is simply missing).
    assert!(matches!(
        auth.authenticate_token("").await,
        Err(AuthError::Missing)
    ));
    assert!(matches!(
        auth.authenticate_header(Some("Bearer ")).await,
        Err(AuthError::Missing)
    ));
}

#[tokio::test]
async fn service_role_jwt_matches_only_by_exact_bytes() {
    let configured_key = sign_hs(&api_key_claims("service_role"), SECRET.as_bytes());
    let auth = Authenticator::new(AuthSettings {
        service_tokens: vec![configured_key.clone()],
        ..hs_settings()
    });
    assert_eq!(
        auth.authenticate_token(&configured_key).await.unwrap(),
        Principal::Service
    );

    // Same role, same secret, different bytes: not the configured key, so it is just a
    // service_role JWT presented as a user token -> 403.
    let other = sign_hs(
        &with(api_key_claims("service_role"), |c| {
            c.insert("iat".into(), 1.into());
        }),
        SECRET.as_bytes(),
    );
    assert_ne!(other, configured_key);
    let err = auth.authenticate_token(&other).await.unwrap_err();
    assert!(matches!(err, AuthError::Forbidden(_)), "got {err:?}");
    assert_eq!(err.status_code(), 403);
}

#[tokio::test]
async fn service_token_is_compared_before_jwt_parsing() {
    // A configured value that would fail JWT validation (expired) still matches by bytes.
    let expired_jwt = sign_hs(
        &with(api_key_claims("service_role"), |c| {
            c.insert("exp".into(), 1.into());
        }),
        b"some-other-secret",
    );
    let auth = Authenticator::new(AuthSettings {
        service_tokens: vec![expired_jwt.clone()],
        jwt_secret: None,
        ..hs_settings()
    });
    assert_eq!(
        auth.authenticate_token(&expired_jwt).await.unwrap(),
        Principal::Service
    );
}

#[test]
fn secrets_match_exact_bytes_only() {
    let expected = SERVICE_TOKEN.as_bytes();
    assert!(secrets_match(expected, expected));
    assert!(!secrets_match(&expected[..expected.len() - 1], expected));
    assert!(!secrets_match(&[expected, b"x"].concat(), expected));
    let mut flipped = expected.to_vec();
    flipped[0] ^= 0x80;
    assert!(!secrets_match(&flipped, expected));
    assert!(!secrets_match(b"", expected));
}
