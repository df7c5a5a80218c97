//! ES256 / RS256 tokens verified with keys from a (local, real HTTP) JWKS endpoint.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use roundhouse_auth::{AuthError, AuthSettings, Authenticator, Principal, User};
use serde_json::json;

use crate::support::*;

fn expected_user() -> Principal {
    Principal::User(User {
        id: USER_ID.to_owned(),
        email: Some("alice@example.com".to_owned()),
        is_admin: false,
    })
}

fn assert_invalid(result: Result<Principal, AuthError>, what: &str) {
    match result {
        Err(err @ AuthError::Invalid(_)) => assert_eq!(err.status_code(), 401),
        other => panic!("{what}: expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn es256_and_rs256_tokens_are_accepted_via_jwks_and_cached() {
    let server = JwksServer::start().await;
    let auth = Authenticator::new(jwks_settings(&server));
    assert_eq!(server.hits(), 0, "the JWKS is fetched lazily");

    let es = sign_es1(&user_claims());
    assert_eq!(auth.authenticate_token(&es).await.unwrap(), expected_user());
    let rs = sign_rs(&user_claims());
    assert_eq!(
        auth.authenticate_header(Some(&format!("Bearer {rs}")))
            .await
            .unwrap(),
        expected_user()
    );
    for _ in 0..5 {
        auth.authenticate_token(&es).await.unwrap();
        auth.authenticate_token(&rs).await.unwrap();
    }
    assert_eq!(
        server.hits(),
        1,
        "one fetch serves all tokens within the TTL"
    );

    // Clones share the cache.
    auth.clone().authenticate_token(&es).await.unwrap();
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn jwks_and_hs256_tokens_are_both_accepted_during_migration() {
    let server = JwksServer::start().await;
    let auth = Authenticator::new(jwks_settings(&server));
    let hs = sign_hs(&user_claims(), SECRET.as_bytes());
    assert_eq!(auth.authenticate_token(&hs).await.unwrap(), expected_user());
    assert_eq!(server.hits(), 0, "HS256 tokens never touch the JWKS");
    let es = sign_es1(&user_claims());
    assert_eq!(auth.authenticate_token(&es).await.unwrap(), expected_user());
}

#[tokio::test]
async fn jwks_tokens_get_the_same_claim_checks() {
    let server = JwksServer::start().await;
    let auth = Authenticator::new(jwks_settings(&server));
    let expired = with(user_claims(), |c| {
        c.insert("exp".into(), json!(now() - 3600));
    });
    assert_invalid(
        auth.authenticate_token(&sign_es1(&expired)).await,
        "expired ES256",
    );
    assert_invalid(
        auth.authenticate_token(&sign_rs(&expired)).await,
        "expired RS256",
    );
    let wrong_aud = with(user_claims(), |c| {
        c.insert("aud".into(), json!("anon"));
    });
    assert_invalid(
        auth.authenticate_token(&sign_es1(&wrong_aud)).await,
        "wrong aud",
    );
    let wrong_iss = with(user_claims(), |c| {
        c.insert("iss".into(), json!("https://evil.supabase.co/auth/v1"));
    });
    assert_invalid(
        auth.authenticate_token(&sign_rs(&wrong_iss)).await,
        "wrong iss",
    );
    let no_exp = with(user_claims(), |c| {
        c.remove("exp");
    });
    assert_invalid(auth.authenticate_token(&sign_es1(&no_exp)).await, "no exp");
    let anon = sign_es1(&api_key_claims("anon"));
    assert!(matches!(
        auth.authenticate_token(&anon).await,
        Err(AuthError::Forbidden(_))
    ));

    // Signed with ec2 but claiming ec1's kid: signature check fails.
    let forged = sign_es2_with_kid(&user_claims(), EC1_KID);
    assert_invalid(auth.authenticate_token(&forged).await, "wrong key for kid");
    // Tampered payload.
    let token = sign_es1(&user_claims());
    let parts: Vec<&str> = token.split('.').collect();
    let other_payload = sign_es1(&with(user_claims(), |c| {
        c.insert("sub".into(), json!("someone-else"));
    }));
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        other_payload.split('.').nth(1).unwrap(),
        parts[2]
    );
    assert_invalid(auth.authenticate_token(&tampered).await, "tampered payload");
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_invalid() {
    // Algorithm confusion: the attacker uses the (public) RSA key PEM as an HMAC secret.
    let server = JwksServer::start().await;
    let public_pem = fixture("rsa_public.pem");
    let ec_public_pem = fixture("ec1_public.pem");
    for settings in [
        jwks_settings(&server),
        AuthSettings {
            jwt_secret: None,
            ..jwks_settings(&server)
        },
    ] {
        let auth = Authenticator::new(settings);
        // Warm the cache so the public key is definitely known to the verifier.
        auth.authenticate_token(&sign_rs(&user_claims()))
            .await
            .unwrap();
        for (kid, pem) in [(RSA_KID, &public_pem), (EC1_KID, &ec_public_pem)] {
            let confused = sign_with_header(
                &kid_header(Algorithm::HS256, kid),
                &user_claims(),
                &EncodingKey::from_secret(pem),
            );
            assert_invalid(
                auth.authenticate_token(&confused).await,
                "HS256 with public key",
            );
            // Same without a kid.
            let confused = sign_hs(&user_claims(), pem);
            assert_invalid(
                auth.authenticate_token(&confused).await,
                "HS256 with public key",
            );
        }
    }
}

#[tokio::test]
async fn header_alg_must_match_the_jwk_algorithm() {
    let server = JwksServer::start().await;
    let auth = Authenticator::new(jwks_settings(&server));
    // RS256 token pointing at the EC key.
    let rs_with_ec_kid = sign_with_header(
        &kid_header(Algorithm::RS256, EC1_KID),
        &user_claims(),
        &rsa_key(),
    );
    assert_invalid(
        auth.authenticate_token(&rs_with_ec_kid).await,
        "RS256 with EC kid",
    );
    // ES256 token pointing at the RSA key.
    let es_with_rsa_kid = sign_with_header(
        &kid_header(Algorithm::ES256, RSA_KID),
        &user_claims(),
        &ec_key("ec1_private.pem"),
    );
    assert_invalid(
        auth.authenticate_token(&es_with_rsa_kid).await,
        "ES256 with RSA kid",
    );
    // Other RSA/EC algorithms are not allow-listed even with a matching key.
    for alg in [Algorithm::PS256, Algorithm::RS512] {
        let token = sign_with_header(&kid_header(alg, RSA_KID), &user_claims(), &rsa_key());
        assert_invalid(auth.authenticate_token(&token).await, &format!("{alg:?}"));
    }
}

#[tokio::test]
async fn asymmetric_token_without_kid_is_invalid() {
    let server = JwksServer::start().await;
    let auth = Authenticator::new(jwks_settings(&server));
    let token = sign_with_header(
        &Header::new(Algorithm::ES256),
        &user_claims(),
        &ec_key("ec1_private.pem"),
    );
    assert_invalid(auth.authenticate_token(&token).await, "no kid");
}

#[tokio::test]
async fn jku_and_x5u_headers_are_never_fetched() {
    let server = JwksServer::start().await;
    let auth = Authenticator::new(jwks_settings(&server));
    // The attacker's key (ec2) is served at /evil.json; the header points there.
    let mut header = kid_header(Algorithm::ES256, EC2_KID);
    header.jku = Some(server.other_url("/evil.json"));
    header.x5u = Some(server.other_url("/evil.pem"));
    let token = sign_with_header(&header, &user_claims(), &ec_key("ec2_private.pem"));
    assert_invalid(auth.authenticate_token(&token).await, "jku token");
    assert_eq!(server.other_hits(), 0, "jku/x5u must never be fetched");
    assert_eq!(server.hits(), 1);

    // An embedded `jwk` header is not trusted either.
    let mut header = kid_header(Algorithm::ES256, EC2_KID);
    header.jwk = Some(
        jsonwebtoken::jwk::Jwk::from_encoding_key(&ec_key("ec2_private.pem"), Algorithm::ES256)
            .unwrap(),
    );
    let token = sign_with_header(&header, &user_claims(), &ec_key("ec2_private.pem"));
    assert_invalid(auth.authenticate_token(&token).await, "embedded jwk");
}

#[tokio::test]
async fn hostile_kids_are_opaque_lookups() {
    let server = JwksServer::start().await;
    let auth = Authenticator::new(jwks_settings(&server));
    for kid in [
        "../../../etc/passwd",
        "' OR 1=1 --",
        "http://169.254.169.254/latest",
        "",
    ] {
        let token = sign_es2_with_kid(&user_claims(), kid);
        assert_invalid(auth.authenticate_token(&token).await, kid);
    }
    assert_eq!(server.hits(), 1, "the min refresh interval bounds fetches");
    assert_eq!(server.other_hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_causes_exactly_one_refetch_even_under_a_race() {
    let server = JwksServer::start().await;
    let auth = Authenticator::new(AuthSettings {
        jwks_min_refresh_interval: Duration::from_millis(1000),
        ..jwks_settings(&server)
    });
    auth.authenticate_token(&sign_es1(&user_claims()))
        .await
        .unwrap();
    assert_eq!(server.hits(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Slow the server down so all 20 requests are in flight while the fetch runs.
    server.set_delay(Duration::from_millis(200));
    let unknown = sign_es2(&user_claims());
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let auth = auth.clone();
        let token = unknown.clone();
        tasks.push(tokio::spawn(async move {
            auth.authenticate_token(&token).await
        }));
    }
    for task in tasks {
        assert_invalid(task.await.unwrap(), "unknown kid");
    }
    assert_eq!(
        server.hits(),
        2,
        "exactly one refetch for 20 racing requests"
    );

    // A second unknown kid within the min interval: no extra fetch.
    let another = sign_es2_with_kid(&user_claims(), "ec-key-3");
    assert_invalid(
        auth.authenticate_token(&another).await,
        "second unknown kid",
    );
    assert_eq!(server.hits(), 2);
    // Known kids keep working meanwhile.
    auth.authenticate_token(&sign_es1(&user_claims()))
        .await
        .unwrap();
    assert_eq!(server.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_cache_race_fetches_once() {
    let server = JwksServer::start().await;
    server.set_delay(Duration::from_millis(200));
    let auth = Authenticator::new(jwks_settings(&server));
    let good = sign_es1(&user_claims());
    let unknown = sign_es2(&user_claims());
    let mut tasks = Vec::new();
    for i in 0..20 {
        let auth = auth.clone();
        let token = if i % 2 == 0 {
            good.clone()
        } else {
            unknown.clone()
        };
        tasks.push(tokio::spawn(async move {
            (i, auth.authenticate_token(&token).await)
        }));
    }
    for task in tasks {
        let (i, result) = task.await.unwrap();
        if i % 2 == 0 {
            assert_eq!(result.unwrap(), expected_user());
        } else {
            assert_invalid(result, "unknown kid");
        }
    }
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn key_rotation_new_kid_is_accepted_after_one_refresh() {
    let server = JwksServer::start().await;
    let auth = Authenticator::new(AuthSettings {
        jwks_min_refresh_interval: Duration::from_millis(100),
        ..jwks_settings(&server)
    });
    auth.authenticate_token(&sign_es1(&user_claims()))
        .await
        .unwrap();
    assert_eq!(server.hits(), 1);

    server.swap(fixture_string("jwks_rotated.json"));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let rotated = sign_es2(&user_claims());
    assert_eq!(
        auth.authenticate_token(&rotated).await.unwrap(),
        expected_user()
    );
    assert_eq!(server.hits(), 2, "one refresh picked up the new key");
    for _ in 0..3 {
        auth.authenticate_token(&rotated).await.unwrap();
    }
    assert_eq!(server.hits(), 2);

    // The old key was removed from the set by the refresh.
    assert_invalid(
        auth.authenticate_token(&sign_es1(&user_claims())).await,
        "revoked old key",
    );
}

#[tokio::test]
async fn cache_expires_after_ttl() {
    let server = JwksServer::start().await;
    let auth = Authenticator::new(AuthSettings {
        jwks_cache_ttl: Duration::from_millis(1000),
        jwks_min_refresh_interval: Duration::from_millis(50),
        ..jwks_settings(&server)
    });
    let token = sign_es1(&user_claims());
    auth.authenticate_token(&token).await.unwrap();
    auth.authenticate_token(&token).await.unwrap();
    assert_eq!(server.hits(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // After the TTL, a rotation that removed ec-key-1 takes effect.
    server.swap(fixture_string("jwks_rotated.json"));
    assert_invalid(
        auth.authenticate_token(&token).await,
        "key gone after TTL refresh",
    );
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn jwks_server_down_gives_keys_unavailable() {
    let auth = Authenticator::new(AuthSettings {
        jwks_url: Some(dead_url()),
        ..hs_settings()
    });
    let err = auth
        .authenticate_token(&sign_es1(&user_claims()))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::KeysUnavailable), "got {err:?}");
    assert_eq!(err.status_code(), 503);
    // HS256 keeps working without the JWKS.
    auth.authenticate_token(&sign_hs(&user_claims(), SECRET.as_bytes()))
        .await
        .unwrap();
}

#[tokio::test]
async fn cached_keys_survive_an_outage_but_unknown_kids_get_503() {
    let server = JwksServer::start().await;
    let auth = Authenticator::new(AuthSettings {
        jwks_cache_ttl: Duration::from_millis(100),
        jwks_min_refresh_interval: Duration::from_millis(50),
        ..jwks_settings(&server)
    });
    let known = sign_es1(&user_claims());
    auth.authenticate_token(&known).await.unwrap();

    server.set_failing(true);
    tokio::time::sleep(Duration::from_millis(150)).await;
    // TTL expired, refresh fails (HTTP 500): the stale cached key is still served.
    assert_eq!(
        auth.authenticate_token(&known).await.unwrap(),
        expected_user()
    );
    assert_eq!(server.hits(), 2);

    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = auth
        .authenticate_token(&sign_es2(&user_claims()))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::KeysUnavailable), "got {err:?}");
    assert_eq!(server.hits(), 3);

    // Recovery: the server comes back and the next allowed refresh works.
    server.set_failing(false);
    server.swap(fixture_string("jwks_rotated.json"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        auth.authenticate_token(&sign_es2(&user_claims()))
            .await
            .unwrap(),
        expected_user()
    );
}

#[tokio::test]
async fn garbage_jwks_document_gives_keys_unavailable() {
    let server = JwksServer::start_with("<html>not json</html>".to_owned()).await;
    let auth = Authenticator::new(jwks_settings(&server));
    let err = auth
        .authenticate_token(&sign_es1(&user_claims()))
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::KeysUnavailable), "got {err:?}");
}

#[tokio::test]
async fn symmetric_keys_in_a_jwks_are_never_used() {
    // A (misconfigured or hostile) JWKS publishing an HMAC key must not enable HS256 with it.
    let oct = json!({"keys": [{"kty": "oct", "kid": "hs-key", "alg": "HS256", "k": "c2VjcmV0"}]});
    let server = JwksServer::start_with(oct.to_string()).await;
    let auth = Authenticator::new(AuthSettings {
        jwt_secret: None,
        ..jwks_settings(&server)
    });
    let token = sign_with_header(
        &kid_header(Algorithm::HS256, "hs-key"),
        &user_claims(),
        &EncodingKey::from_secret(b"secret"),
    );
    assert_invalid(
        auth.authenticate_token(&token).await,
        "HS256 via JWKS oct key",
    );
}

#[tokio::test]
async fn asymmetric_tokens_rejected_without_jwks_configuration() {
    let auth = Authenticator::new(AuthSettings {
        supabase_url: None,
        ..hs_settings()
    });
    assert_invalid(
        auth.authenticate_token(&sign_es1(&user_claims())).await,
        "ES256 without JWKS",
    );
}

#[tokio::test]
async fn jwks_fetch_times_out_after_five_seconds() {
    let server = JwksServer::start().await;
    server.set_delay(Duration::from_secs(30));
    let auth = Authenticator::new(jwks_settings(&server));
    let started = Instant::now();
    let err = auth
        .authenticate_token(&sign_es1(&user_claims()))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, AuthError::KeysUnavailable), "got {err:?}");
    assert!(
        elapsed >= Duration::from_millis(4500) && elapsed < Duration::from_secs(10),
        "timed out after {elapsed:?}"
    );
}
