//! Authentication for Roundhouse: Supabase user access tokens and service tokens.
//!
//! [`Authenticator`] turns a presented bearer token into a [`Principal`]:
//!
//! 1. **Service tokens** (`ROUNDHOUSE_SERVICE_TOKEN`, `SUPABASE_SERVICE_ROLE_KEY`) are compared
//!    byte-for-byte, in constant time, against *every* configured value before any JWT parsing.
//!    A legacy `service_role` JWT is therefore a service credential only when its exact bytes are
//!    configured; its `role` claim alone never grants anything.
//! 2. **User JWTs** (SPEC §6, research `reliability.md` §B S1–S7):
//!    - the header `alg` is allow-listed: `ES256` and `RS256` (public keys from the project JWKS,
//!      looked up by `kid`), and `HS256` only when a JWT secret is configured. Everything else,
//!      including `none`, is rejected. An `HS256` token is only ever verified with the HMAC secret
//!      and an `ES256`/`RS256` token only with a JWKS key whose `kty`/`crv`/`alg` match the
//!      header, which closes off algorithm confusion;
//!    - `jku`, `x5u`, `jwk` and `x5c` headers are ignored (never fetched or trusted); a header with
//!      a `crit` list is rejected;
//!    - `exp` is required, `nbf` is honoured, both with `leeway_seconds`;
//!    - then `role` must be `"authenticated"`, otherwise [`AuthError::Forbidden`] (HTTP 403);
//!    - then `aud` must contain `"authenticated"` (string or array), `iss` must equal the
//!      configured issuer (when one is known) and `sub` must be a non-empty string, otherwise
//!      [`AuthError::Invalid`] (HTTP 401).
//!
//! **Anon and `service_role` API-key JWTs**: these are genuinely signed by the project but carry
//! `role: "anon"` / `role: "service_role"` (and no `sub`/`aud`). Because the role is checked right
//! after the signature and expiry, they are rejected with [`AuthError::Forbidden`] (HTTP 403), as
//! asked by check S5. Forged, expired or foreign tokens never reach the role check and get 401.
//!
//! **Anonymous Supabase users** (`is_anonymous: true`, `role: "authenticated"`) are accepted as
//! ordinary users; route-level policy may restrict them.
//!
//! **JWKS cache**: fetched lazily on the first asymmetric token, cached for `jwks_cache_ttl`.
//! A token whose `kid` is not cached (or a cache older than the TTL) triggers a refetch, but at
//! most one fetch per `jwks_min_refresh_interval` (measured from the previous fetch attempt,
//! successful or not) and single-flight: concurrent requests wait for the one fetch in progress.
//! After that an unknown `kid` is [`AuthError::Invalid`]. If the endpoint is unreachable, keys
//! already cached keep working (stale keys are served during an outage) and a `kid` that is not
//! cached yields [`AuthError::KeysUnavailable`] (HTTP 503). Fetches time out after 5 s, do not
//! follow redirects and read at most 1 MiB.
//!
//! Tokens and secrets are never logged, and error messages never echo token contents.

#![warn(missing_docs)]

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Timeout for one JWKS fetch (connect + response).
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS response body that is accepted.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Tokens longer than this are rejected before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The `aud` value and `role` value Supabase puts in user access tokens.
pub const AUTHENTICATED: &str = "authenticated";
/// Smallest accepted RSA modulus, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;
/// Service tokens shorter than this trigger a warning at construction (S10).
const MIN_SERVICE_TOKEN_BYTES: usize = 32;

/// Configuration of an [`Authenticator`].
///
/// Build it with struct-update syntax from [`AuthSettings::default()`]:
/// `AuthSettings { supabase_url: Some(url), ..Default::default() }`.
#[derive(Clone)]
pub struct AuthSettings {
    /// Supabase project URL, e.g. `https://abc.supabase.co` (a trailing `/` is ignored).
    /// Issuer defaults to `{supabase_url}/auth/v1`, JWKS to
    /// `{supabase_url}/auth/v1/.well-known/jwks.json`.
    pub supabase_url: Option<String>,
    /// `SUPABASE_JWT_SECRET` (legacy HS256 secret, used as raw bytes). HS256 tokens are accepted
    /// only when this is set (and non-empty).
    pub jwt_secret: Option<String>,
    /// Accepted service tokens (`ROUNDHOUSE_SERVICE_TOKEN`, `SUPABASE_SERVICE_ROLE_KEY`, ...).
    /// Surrounding whitespace is trimmed and empty values are ignored.
    pub service_tokens: Vec<String>,
    /// Override of the JWKS URL (tests); defaults to the one derived from `supabase_url`.
    /// Without either, ES256/RS256 tokens are rejected.
    pub jwks_url: Option<String>,
    /// Override of the expected `iss`; defaults to the one derived from `supabase_url`.
    /// Without either, `iss` is not checked (a warning is logged once at construction).
    pub issuer: Option<String>,
    /// How long a fetched JWKS is considered fresh (default 10 min).
    pub jwks_cache_ttl: Duration,
    /// Minimum time between two JWKS fetch attempts (default 30 s); bounds the refetches that
    /// unknown `kid`s can cause.
    pub jwks_min_refresh_interval: Duration,
    /// Clock skew tolerated for `exp` and `nbf`, in seconds (default 30).
    pub leeway_seconds: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            supabase_url: None,
            jwt_secret: None,
            service_tokens: Vec::new(),
            jwks_url: None,
            issuer: None,
            jwks_cache_ttl: Duration::from_secs(600),
            jwks_min_refresh_interval: Duration::from_secs(30),
            leeway_seconds: 30,
        }
    }
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("supabase_url", &self.supabase_url)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "service_tokens",
                &format_args!("[{} redacted]", self.service_tokens.len()),
            )
            .field("jwks_url", &self.jwks_url)
            .field("issuer", &self.issuer)
            .field("jwks_cache_ttl", &self.jwks_cache_ttl)
            .field("jwks_min_refresh_interval", &self.jwks_min_refresh_interval)
            .field("leeway_seconds", &self.leeway_seconds)
            .finish()
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A holder of a configured service token: may act for any user and see all jobs.
    Service,
    /// A Supabase user with a valid access token.
    User(User),
}

/// A Supabase user taken from a verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user id (`sub` claim).
    pub id: String,
    /// The `email` claim, if present and non-empty.
    pub email: Option<String>,
    /// `app_metadata.role == "admin"`. `user_metadata` is user-editable and never consulted.
    pub is_admin: bool,
}

impl Principal {
    /// True for [`Principal::Service`].
    pub fn is_service(&self) -> bool {
        matches!(self, Principal::Service)
    }

    /// True for the service principal and for users whose `app_metadata.role` is `"admin"`.
    pub fn is_admin(&self) -> bool {
        match self {
            Principal::Service => true,
            Principal::User(user) => user.is_admin,
        }
    }

    /// The user id for a user, `None` for the service principal.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Principal::Service => None,
            Principal::User(user) => Some(&user.id),
        }
    }
}

/// Why authentication failed. Use [`AuthError::status_code`] for the HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No bearer token was presented (no header, empty header, or a non-Bearer scheme such as
    /// `Basic`). HTTP 401.
    #[error("missing bearer token")]
    Missing,
    /// The token is not acceptable: malformed, bad signature, expired, not yet valid, wrong
    /// `aud`/`iss`, missing `sub`/`exp`, disallowed algorithm (incl. `none`), algorithm/key
    /// mismatch, or unknown `kid` after a refresh. HTTP 401. The message never contains token
    /// contents.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token is authentic but its `role` is not `"authenticated"` (e.g. the anon key or a
    /// `service_role` JWT presented as a user token). HTTP 403.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The JWKS endpoint could not be reached (or returned garbage) and the token's `kid` is not
    /// cached. HTTP 503.
    #[error("signing keys unavailable")]
    KeysUnavailable,
}

impl AuthError {
    /// HTTP status for this error: 401 for `Missing`/`Invalid`, 403 for `Forbidden`,
    /// 503 for `KeysUnavailable`.
    pub fn status_code(&self) -> u16 {
        match self {
            AuthError::Missing | AuthError::Invalid(_) => 401,
            AuthError::Forbidden(_) => 403,
            AuthError::KeysUnavailable => 503,
        }
    }

    fn invalid(msg: &str) -> Self {
        AuthError::Invalid(msg.to_owned())
    }
}

/// Constant-time comparison of two secrets.
///
/// Both inputs are hashed with SHA-256 and the digests compared with
/// [`subtle::ConstantTimeEq`], so neither the position of the first differing byte nor the
/// length of `expected` leaks through timing (there is no early length check).
pub fn secrets_match(presented: &[u8], expected: &[u8]) -> bool {
    digest(presented).ct_eq(&digest(expected)).into()
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Verifies bearer tokens. Cheap to clone (an `Arc` inside); share one per process so the JWKS
/// cache is shared.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("service_tokens", &self.inner.service_token_digests.len())
            .field("hs256", &self.inner.hs_key.is_some())
            .field("jwks_url", &self.inner.jwks_url)
            .field("issuer", &self.inner.issuer)
            .finish_non_exhaustive()
    }
}

struct Inner {
    /// SHA-256 digests of the configured service tokens.
    service_token_digests: Vec<[u8; 32]>,
    hs_key: Option<DecodingKey>,
    jwks_url: Option<String>,
    issuer: Option<String>,
    leeway: u64,
    ttl: Duration,
    min_refresh_interval: Duration,
    http: Option<reqwest::Client>,
    cache: RwLock<JwksCache>,
    /// Held for the whole duration of a JWKS fetch: the single-flight gate.
    fetch_lock: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct CachedKey {
    alg: Algorithm,
    key: DecodingKey,
}

#[derive(Default)]
struct JwksCache {
    keys: HashMap<String, CachedKey>,
    /// Time of the last successful fetch.
    fetched_at: Option<Instant>,
    /// Time of the last fetch attempt (successful or not).
    last_attempt: Option<Instant>,
    /// Whether the last attempt failed.
    last_attempt_failed: bool,
    /// Number of fetch attempts so far; lets waiters notice that a fetch happened meanwhile.
    generation: u64,
}

impl Authenticator {
    /// Builds an authenticator. Never fails; configuration problems are logged as warnings
    /// (without secret values) and lead to tokens being rejected.
    pub fn new(settings: AuthSettings) -> Self {
        let base = settings
            .supabase_url
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.trim_end_matches('/').to_owned());
        let non_empty =
            |o: Option<String>| o.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let issuer =
            non_empty(settings.issuer).or_else(|| base.as_ref().map(|b| format!("{b}/auth/v1")));
        let jwks_url = non_empty(settings.jwks_url).or_else(|| {
            base.as_ref()
                .map(|b| format!("{b}/auth/v1/.well-known/jwks.json"))
        });
        let hs_key = settings
            .jwt_secret
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| DecodingKey::from_secret(s.as_bytes()));

        let mut service_token_digests = Vec::new();
        for token in &settings.service_tokens {
            let token = token.trim();
            if token.is_empty() {
                continue;
            }
            if token.len() < MIN_SERVICE_TOKEN_BYTES {
                tracing::warn!(
                    min_bytes = MIN_SERVICE_TOKEN_BYTES,
                    "a configured service token is shorter than recommended"
                );
            }
            service_token_digests.push(digest(token.as_bytes()));
        }

        if issuer.is_none() {
            tracing::warn!(
                "no SUPABASE_URL or issuer configured: the JWT `iss` claim will not be checked"
            );
        }
        if hs_key.is_none() && jwks_url.is_none() {
            tracing::warn!(
                "neither a JWT secret nor a JWKS URL is configured: no user token can be accepted"
            );
        }

        let http = match reqwest::Client::builder()
            .timeout(JWKS_FETCH_TIMEOUT)
            .connect_timeout(JWKS_FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(client) => Some(client),
            Err(err) => {
                tracing::error!(error = %err, "could not build the JWKS HTTP client");
                None
            }
        };

        Self {
            inner: Arc::new(Inner {
                service_token_digests,
                hs_key,
                jwks_url,
                issuer,
                leeway: settings.leeway_seconds,
                ttl: settings.jwks_cache_ttl,
                min_refresh_interval: settings.jwks_min_refresh_interval,
                http,
                cache: RwLock::new(JwksCache::default()),
                fetch_lock: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Authenticates a raw `Authorization` header value.
    ///
    /// Accepts `Bearer <token>` with a case-insensitive scheme. `None`, an empty value, a bare
    /// `Bearer` and any other scheme (e.g. `Basic ...`) give [`AuthError::Missing`], so callers
    /// can fall back to other schemes (the dashboard accepts HTTP Basic).
    pub async fn authenticate_header(
        &self,
        authorization: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let token = parse_bearer(authorization.unwrap_or("")).ok_or(AuthError::Missing)?;
        self.authenticate_token(token).await
    }

    /// Authenticates a bare token (e.g. a WebSocket `?token=` value). Surrounding whitespace is
    /// ignored; an empty token is [`AuthError::Missing`].
    pub async fn authenticate_token(&self, token: &str) -> Result<Principal, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        // Service tokens first, before any JWT parsing, against every configured value.
        if self.is_service_token(token.as_bytes()) {
            return Ok(Principal::Service);
        }
        let result = self.verify_jwt(token).await;
        if let Err(err) = &result {
            tracing::debug!(error = %err, "bearer token rejected");
        }
        result.map(Principal::User)
    }

    fn is_service_token(&self, presented: &[u8]) -> bool {
        let presented = digest(presented);
        let mut matched = subtle::Choice::from(0u8);
        for expected in &self.inner.service_token_digests {
            matched |= presented.ct_eq(expected);
        }
        matched.into()
    }

    async fn verify_jwt(&self, token: &str) -> Result<User, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::invalid("token too large"));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::invalid("malformed token"))?;
        if header.crit.as_ref().is_some_and(|c| !c.is_empty()) {
            return Err(AuthError::invalid("unsupported critical header"));
        }
        // `jku`, `x5u`, `jwk` and `x5c` are deliberately ignored.
        let key = match header.alg {
            Algorithm::HS256 => self
                .inner
                .hs_key
                .clone()
                .ok_or_else(|| AuthError::invalid("algorithm not allowed"))?,
            Algorithm::ES256 | Algorithm::RS256 => {
                let kid = header
                    .kid
                    .as_deref()
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| AuthError::invalid("missing kid"))?;
                let cached = self.resolve_key(kid).await?;
                if cached.alg != header.alg {
                    return Err(AuthError::invalid(
                        "algorithm does not match the signing key",
                    ));
                }
                cached.key
            }
            _ => return Err(AuthError::invalid("algorithm not allowed")),
        };

        let mut validation = Validation::new(header.alg);
        validation.leeway = self.inner.leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        // aud / iss / sub are checked below, after the role check.
        validation.validate_aud = false;

        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| map_jwt_error(e.kind()))?;
        let claims = data.claims;

        // Authentic and unexpired: now the role decides between 403 and continuing.
        match claims.get("role").and_then(Value::as_str) {
            Some(AUTHENTICATED) => {}
            Some(_) => return Err(AuthError::Forbidden("role is not authenticated".into())),
            None => return Err(AuthError::Forbidden("token has no role".into())),
        }

        let aud_ok = match claims.get("aud") {
            Some(Value::String(aud)) => aud == AUTHENTICATED,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(AUTHENTICATED)),
            _ => false,
        };
        if !aud_ok {
            return Err(AuthError::invalid("wrong audience"));
        }
        if let Some(expected) = &self.inner.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(expected.as_str())
        {
            return Err(AuthError::invalid("wrong issuer"));
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AuthError::invalid("missing sub"))?;

        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let is_admin = claims
            .get("app_metadata")
            .and_then(|m| m.get("role"))
            .and_then(Value::as_str)
            == Some("admin");

        Ok(User {
            id: sub.to_owned(),
            email,
            is_admin,
        })
    }

    /// Finds the JWKS key for `kid`, fetching the JWKS when needed (see crate docs).
    async fn resolve_key(&self, kid: &str) -> Result<CachedKey, AuthError> {
        let inner = &self.inner;
        if inner.jwks_url.is_none() || inner.http.is_none() {
            return Err(AuthError::invalid("asymmetric tokens are not accepted"));
        }

        let (stale_hit, generation) = {
            let cache = read(&inner.cache);
            let fresh = cache.fetched_at.is_some_and(|t| t.elapsed() < inner.ttl);
            match cache.keys.get(kid) {
                Some(key) if fresh => return Ok(key.clone()),
                hit => (hit.cloned(), cache.generation),
            }
        };

        match stale_hit {
            // A cached but stale key: refresh if nobody else is already doing it, otherwise
            // keep serving the stale key rather than waiting.
            Some(stale) => match inner.fetch_lock.try_lock() {
                Ok(_guard) => self.refresh_if_allowed(generation).await,
                Err(_) => return Ok(stale),
            },
            // Unknown kid (or nothing fetched yet): wait for the single in-flight fetch.
            None => {
                let _guard = inner.fetch_lock.lock().await;
                self.refresh_if_allowed(generation).await;
            }
        }

        let cache = read(&inner.cache);
        if let Some(key) = cache.keys.get(kid) {
            return Ok(key.clone());
        }
        if cache.last_attempt_failed {
            Err(AuthError::KeysUnavailable)
        } else {
            Err(AuthError::invalid("unknown signing key"))
        }
    }

    /// Fetches the JWKS unless another fetch happened since `seen_generation` or the last
    /// attempt is more recent than the minimum refresh interval. Caller holds `fetch_lock`.
    async fn refresh_if_allowed(&self, seen_generation: u64) {
        let inner = &self.inner;
        {
            let cache = read(&inner.cache);
            if cache.generation != seen_generation {
                return;
            }
            if cache
                .last_attempt
                .is_some_and(|t| t.elapsed() < inner.min_refresh_interval)
            {
                return;
            }
        }
        let result = self.fetch_jwks().await;
        let mut cache = inner.cache.write().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        cache.generation += 1;
        cache.last_attempt = Some(now);
        match result {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "JWKS refreshed");
                cache.keys = keys;
                cache.fetched_at = Some(now);
                cache.last_attempt_failed = false;
            }
            Err(reason) => {
                tracing::warn!(
                    url = inner.jwks_url.as_deref().unwrap_or_default(),
                    reason = %reason,
                    cached_keys = cache.keys.len(),
                    "JWKS fetch failed"
                );
                cache.last_attempt_failed = true;
            }
        }
    }

    async fn fetch_jwks(&self) -> Result<HashMap<String, CachedKey>, String> {
        let (Some(http), Some(url)) = (&self.inner.http, &self.inner.jwks_url) else {
            return Err("JWKS not configured".into());
        };
        let mut response = http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("unexpected status {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
        {
            return Err("response too large".into());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading body failed: {e}"))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err("response too large".into());
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body)
    }
}

fn read(lock: &RwLock<JwksCache>) -> std::sync::RwLockReadGuard<'_, JwksCache> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

/// Extracts the token from `Bearer <token>` (case-insensitive scheme).
fn parse_bearer(header: &str) -> Option<&str> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(|c: char| c.is_ascii_whitespace())?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

fn map_jwt_error(kind: &ErrorKind) -> AuthError {
    let msg = match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "algorithm not allowed",
        ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => "missing exp",
        ErrorKind::MissingRequiredClaim(_) => "missing required claim",
        ErrorKind::InvalidClaimFormat(_) => "invalid claim format",
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            "unusable signing key"
        }
        _ => "malformed token",
    };
    AuthError::invalid(msg)
}

/// Parses a JWKS document, keeping only keys usable for ES256 (EC P-256) or RS256 (RSA
/// >= 2048 bits) signatures that have a `kid`. Symmetric keys are never taken from a JWKS.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, CachedKey>, String> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<Value>,
    }
    let raw: RawSet =
        serde_json::from_slice(body).map_err(|e| format!("invalid JWKS document: {e}"))?;
    let mut keys = HashMap::new();
    for value in raw.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            tracing::debug!("skipping unparsable JWK");
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone().filter(|k| !k.is_empty()) else {
            continue;
        };
        match usable_key(&jwk) {
            Some(cached) => {
                keys.entry(kid).or_insert(cached);
            }
            None => tracing::debug!(kid = %kid, "skipping JWK not usable for ES256/RS256"),
        }
    }
    Ok(keys)
}

fn usable_key(jwk: &Jwk) -> Option<CachedKey> {
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let declared = jwk.common.key_algorithm;
    let alg = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        _ => return None,
    };
    // If the JWK declares an algorithm it must be exactly the one we derived from kty/crv.
    if declared.is_some_and(|d| d != KeyAlgorithm::from(alg)) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, .. } => {
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return None;
            }
        }
        DecodingKeyKind::SecretOrDer(point) => {
            // Uncompressed P-256 point: 0x04 || x (32) || y (32).
            if point.len() != 65 || point[0] != 0x04 {
                return None;
            }
        }
    }
    Some(CachedKey { alg, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(parse_bearer("Bearer abc"), Some("abc"));
        assert_eq!(parse_bearer("bearer   abc  "), Some("abc"));
        assert_eq!(parse_bearer("BEARER abc"), Some("abc"));
        assert_eq!(parse_bearer("Bearer"), None);
        assert_eq!(parse_bearer("Bearer   "), None);
        assert_eq!(parse_bearer("Basic dXNlcjpwYXNz"), None);
        assert_eq!(parse_bearer("Bearerabc"), None);
        assert_eq!(parse_bearer(""), None);
    }

    #[test]
    fn secrets_match_is_exact() {
        assert!(secrets_match(b"secret-value", b"secret-value"));
        assert!(!secrets_match(b"secret-valuf", b"secret-value"));
        assert!(!secrets_match(b"secret-valu", b"secret-value"));
        assert!(!secrets_match(b"secret-value!", b"secret-value"));
        assert!(!secrets_match(b"", b"secret-value"));
        assert!(secrets_match(b"", b""));
    }

    #[test]
    fn status_codes() {
        assert_eq!(AuthError::Missing.status_code(), 401);
        assert_eq!(AuthError::Invalid("x".into()).status_code(), 401);
        assert_eq!(AuthError::Forbidden("x".into()).status_code(), 403);
        assert_eq!(AuthError::KeysUnavailable.status_code(), 503);
    }

    #[test]
    fn settings_debug_redacts_secrets() {
        let settings = AuthSettings {
            jwt_secret: Some("super-secret-jwt".into()),
            service_tokens: vec!["super-secret-service".into()],
            ..Default::default()
        };
        let dbg = format!("{settings:?}");
        assert!(!dbg.contains("super-secret"));
        let auth = Authenticator::new(settings);
        assert!(!format!("{auth:?}").contains("super-secret"));
    }

    #[test]
    fn jwks_skips_symmetric_and_mismatched_keys() {
        let body = br#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0","kid":"hs","alg":"HS256"},
            {"kty":"EC","crv":"P-256","kid":"wrong-alg","alg":"RS256",
             "x":"5XtBjdzQP_17Cb-AhB49vZdynLR27q0zEmF4U6Lljlw",
             "y":"8duNAm3sqBPLa4mJpBtF_1uA2tqVKD6kdHwsV5p50WI"},
            {"kty":"EC","crv":"P-256","kid":"ok",
             "x":"5XtBjdzQP_17Cb-AhB49vZdynLR27q0zEmF4U6Lljlw",
             "y":"8duNAm3sqBPLa4mJpBtF_1uA2tqVKD6kdHwsV5p50WI"},
            {"kty":"RSA","kid":"tiny-rsa","n":"AQAB","e":"AQAB"},
            {"kty":"weird","kid":"weird"}
        ]}"#;
        let keys = parse_jwks(body).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys["ok"].alg, Algorithm::ES256);
        assert!(parse_jwks(b"not json").is_err());
    }
}
