//! Test helpers: fixture keys, token builders and a local JWKS server.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use roundhouse_auth::{AuthSettings, Authenticator};
use serde_json::{Value, json};

pub const SECRET: &str = "test-legacy-jwt-secret-with-at-least-32-characters";
pub const SUPABASE_URL: &str = "https://proj-ref.supabase.co";
pub const ISSUER: &str = "https://proj-ref.supabase.co/auth/v1";
pub const USER_ID: &str = "6f1c1b9e-2f7a-4d1e-9a43-7c2b0d7b5e11";
pub const SERVICE_TOKEN: &str = "rh_service_0123456789abcdef0123456789abcdef";

pub const EC1_KID: &str = "ec-key-1";
pub const EC2_KID: &str = "ec-key-2";
pub const RSA_KID: &str = "rsa-key-1";

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

pub fn fixture_string(name: &str) -> String {
    String::from_utf8(fixture(name)).expect("fixture is UTF-8")
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after epoch")
        .as_secs()
}

/// Claims of a typical Supabase user access token.
pub fn user_claims() -> Value {
    let now = now();
    json!({
        "iss": ISSUER,
        "aud": "authenticated",
        "sub": USER_ID,
        "exp": now + 3600,
        "iat": now,
        "role": "authenticated",
        "aal": "aal1",
        "session_id": "0b8f3f0e-6a8b-4c55-9d0e-2b1c3d4e5f60",
        "email": "alice@example.com",
        "phone": "",
        "is_anonymous": false,
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {"name": "Alice"}
    })
}

/// Claims of a legacy `anon` / `service_role` API-key JWT.
pub fn api_key_claims(role: &str) -> Value {
    let now = now();
    json!({
        "iss": "supabase",
        "ref": "proj-ref",
        "role": role,
        "iat": now,
        "exp": now + 10 * 365 * 24 * 3600
    })
}

/// Applies `f` to a JSON object (helper to tweak claims).
pub fn with(mut claims: Value, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    f(claims.as_object_mut().expect("claims are an object"));
    claims
}

pub fn sign_hs(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing")
}

pub fn sign_with_header(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).expect("signing")
}

pub fn ec_key(name: &str) -> EncodingKey {
    EncodingKey::from_ec_pem(&fixture(name)).expect("EC private key PEM")
}

pub fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")).expect("RSA private key PEM")
}

pub fn kid_header(alg: Algorithm, kid: &str) -> Header {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    header
}

/// ES256 token signed with `ec1` (published as `ec-key-1`).
pub fn sign_es1(claims: &Value) -> String {
    sign_with_header(
        &kid_header(Algorithm::ES256, EC1_KID),
        claims,
        &ec_key("ec1_private.pem"),
    )
}

/// ES256 token signed with `ec2` (published as `ec-key-2` only in the rotated set).
pub fn sign_es2(claims: &Value) -> String {
    sign_es2_with_kid(claims, EC2_KID)
}

pub fn sign_es2_with_kid(claims: &Value, kid: &str) -> String {
    sign_with_header(
        &kid_header(Algorithm::ES256, kid),
        claims,
        &ec_key("ec2_private.pem"),
    )
}

pub fn sign_rs(claims: &Value) -> String {
    sign_with_header(&kid_header(Algorithm::RS256, RSA_KID), claims, &rsa_key())
}

/// Builds a compact JWS from raw JSON header/claims and a raw signature (for forged tokens).
pub fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// Settings with the legacy secret, the derived issuer and no JWKS server.
pub fn hs_settings() -> AuthSettings {
    AuthSettings {
        supabase_url: Some(SUPABASE_URL.to_owned()),
        jwt_secret: Some(SECRET.to_owned()),
        service_tokens: vec![SERVICE_TOKEN.to_owned()],
        ..Default::default()
    }
}

pub fn hs_auth() -> Authenticator {
    Authenticator::new(hs_settings())
}

/// Settings pointing at a JWKS server (issuer still derived from `SUPABASE_URL`).
pub fn jwks_settings(server: &JwksServer) -> AuthSettings {
    AuthSettings {
        jwks_url: Some(server.url()),
        ..hs_settings()
    }
}

/// A tiny JWKS server on 127.0.0.1 that counts requests and can swap its key set.
#[derive(Clone)]
pub struct JwksServer {
    pub addr: std::net::SocketAddr,
    state: ServerState,
}

#[derive(Clone)]
struct ServerState {
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    other_hits: Arc<AtomicUsize>,
    fail: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
}

impl JwksServer {
    /// Starts a server serving `jwks.json` (ec-key-1 + rsa-key-1).
    pub async fn start() -> Self {
        Self::start_with(fixture_string("jwks.json")).await
    }

    pub async fn start_with(body: String) -> Self {
        let state = ServerState {
            body: Arc::new(Mutex::new(body)),
            hits: Arc::new(AtomicUsize::new(0)),
            other_hits: Arc::new(AtomicUsize::new(0)),
            fail: Arc::new(AtomicBool::new(false)),
            delay_ms: Arc::new(AtomicU64::new(0)),
        };
        let app = Router::new()
            .route("/auth/v1/.well-known/jwks.json", get(serve_jwks))
            .fallback(count_other)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind JWKS server");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("JWKS server");
        });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/auth/v1/.well-known/jwks.json", self.addr)
    }

    /// Any other URL on this server (requests there are counted separately).
    pub fn other_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Number of JWKS requests received.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Number of requests to any other path.
    pub fn other_hits(&self) -> usize {
        self.state.other_hits.load(Ordering::SeqCst)
    }

    pub fn swap(&self, body: String) {
        *self.state.body.lock().expect("body lock") = body;
    }

    pub fn set_failing(&self, fail: bool) {
        self.state.fail.store(fail, Ordering::SeqCst);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

async fn serve_jwks(State(state): State<ServerState>) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if state.fail.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
    }
    let body = state.body.lock().expect("body lock").clone();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn count_other(State(state): State<ServerState>) -> Response {
    state.other_hits.fetch_add(1, Ordering::SeqCst);
    let body = fixture_string("jwks_rotated.json");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A URL on 127.0.0.1 where nothing listens (connection refused).
pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/auth/v1/.well-known/jwks.json")
}
