//! Dashboard sign-in: who may sign in, the session cookie, and CSRF.
//!
//! A session is a random 256-bit token in an `HttpOnly; Secure;
//! SameSite=Strict` cookie scoped to `/admin`; PostgreSQL stores only its
//! SHA-256, with the session's CSRF token. Every state-changing request must
//! carry that CSRF token in `X-CSRF-Token` (the synchroniser-token pattern):
//! SameSite already keeps other sites' requests from carrying the cookie, the
//! token also covers browsers and proxies that do not honour it.

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use roundhouse_auth::Principal;
use roundhouse_db::{DashboardSession, NewAuditEntry};
use roundhouse_http::ApiError;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AdminState;

/// The session cookie's name.
pub const COOKIE: &str = "rh_session";
/// The header state-changing requests echo the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a sign-in lasts (12 hours): a working day, not a week.
pub const SESSION_SECONDS: i64 = 12 * 60 * 60;

/// A signed-in operator, taken from the session cookie.
#[derive(Debug, Clone)]
pub struct Operator {
    pub actor: String,
    pub csrf_token: String,
    pub client_ip: Option<IpAddr>,
}

impl Operator {
    /// Writes an action to the audit log. The action has already happened, so
    /// a failed write is logged loudly rather than turned into an error.
    pub async fn audit(
        &self,
        state: &AdminState,
        action: &str,
        target: Option<&str>,
        details: serde_json::Value,
    ) {
        let ip = self.client_ip.map(|ip| ip.to_string());
        let entry = NewAuditEntry {
            actor: &self.actor,
            action,
            target,
            details,
            client_ip: ip.as_deref(),
        };
        if let Err(error) = state.app.db.record_audit(&entry).await {
            tracing::error!(%error, actor = %self.actor, action, ?target, "audit log write failed");
        }
    }
}

/// Why a request has no operator.
#[derive(Debug)]
pub enum NoSession {
    /// No cookie, an unknown or expired one.
    Missing,
    /// A state-changing request without the session's CSRF token.
    BadCsrf,
    Failed(ApiError),
}

impl From<NoSession> for ApiError {
    fn from(reason: NoSession) -> Self {
        match reason {
            NoSession::Missing => ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "unauthorized",
                "sign in at /admin/login",
            ),
            NoSession::BadCsrf => ApiError::forbidden(
                "missing or wrong CSRF token: send the page's token in X-CSRF-Token",
            ),
            NoSession::Failed(error) => error,
        }
    }
}

impl FromRequestParts<AdminState> for Operator {
    type Rejection = ApiError;

    /// Any method but GET and HEAD also needs the CSRF header.
    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, ApiError> {
        let operator = session_operator(parts, state).await?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .map(HeaderValue::as_bytes)
                .unwrap_or_default();
            if sent.is_empty() || !bool::from(sent.ct_eq(operator.csrf_token.as_bytes())) {
                return Err(NoSession::BadCsrf.into());
            }
        }
        Ok(operator)
    }
}

/// The operator of the request's session cookie, CSRF not checked.
pub async fn session_operator(parts: &Parts, state: &AdminState) -> Result<Operator, NoSession> {
    let Some(token) = cookie(&parts.headers, COOKIE) else {
        return Err(NoSession::Missing);
    };
    let session = state
        .app
        .db
        .dashboard_session(&hash(token))
        .await
        .map_err(|e| NoSession::Failed(e.into()))?
        .ok_or(NoSession::Missing)?;
    let DashboardSession {
        actor, csrf_token, ..
    } = session;
    Ok(Operator {
        actor,
        csrf_token,
        client_ip: client_ip(parts, state),
    })
}

pub fn client_ip(parts: &Parts, state: &AdminState) -> Option<IpAddr> {
    roundhouse_http::client_ip(parts, &state.app.settings.client_ip_header)
}

/// Who a presented secret signs in as: the dashboard password, a service
/// token, or an admin user's access token. `None` for anything else.
pub async fn actor_for_secret(state: &AdminState, secret: &str) -> Option<String> {
    let secret = secret.trim();
    if secret.is_empty() {
        return None;
    }
    if let Some(password) = state.app.settings.dashboard_password.as_deref()
        && !password.is_empty()
        && bool::from(secret.as_bytes().ct_eq(password.as_bytes()))
    {
        return Some("password".to_owned());
    }
    let bearer = format!("Bearer {secret}");
    match state.app.auth.authenticate_header(Some(&bearer)).await {
        Ok(Principal::Service) => Some("service".to_owned()),
        Ok(Principal::User(user)) if user.is_admin => Some(format!("user:{}", user.id)),
        Ok(Principal::User(_)) | Err(_) => None,
    }
}

/// The password of an `Authorization: Basic` header (any user name), the
/// SPEC's other way into the dashboard.
pub fn basic_password(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (_user, password) = decoded.split_once(':')?;
    Some(password.to_owned())
}

/// A new session: its cookie token and CSRF token, stored for `actor`.
pub async fn start_session(state: &AdminState, actor: &str) -> Result<String, ApiError> {
    let token = random_token();
    let csrf = random_token();
    let db = &state.app.db;
    // Sign-ins are rare: a good moment to forget the expired ones.
    if let Err(error) = db.delete_expired_dashboard_sessions().await {
        tracing::warn!(%error, "could not prune expired dashboard sessions");
    }
    db.create_dashboard_session(&hash(&token), &csrf, actor, SESSION_SECONDS)
        .await?;
    Ok(token)
}

/// Ends the request's session, if it has one.
pub async fn end_session(state: &AdminState, headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(token) = cookie(headers, COOKIE) {
        state.app.db.delete_dashboard_session(&hash(token)).await?;
    }
    Ok(())
}

/// `Set-Cookie` for a new session. `Secure` always: browsers accept it on
/// `http://localhost` too, and production runs behind TLS.
pub fn session_cookie(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/admin; Max-Age={SESSION_SECONDS}; HttpOnly; Secure; SameSite=Strict"
    ))
    .expect("a base64url token is a valid header value")
}

/// `Set-Cookie` that removes the session cookie.
pub fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "rh_session=; Path=/admin; Max-Age=0; HttpOnly; Secure; SameSite=Strict",
    )
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; rh_session=tok"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, COOKIE), Some("tok"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "rh"), None);
    }

    #[test]
    fn basic_auth_yields_the_password() {
        let mut headers = HeaderMap::new();
        let value = format!("Basic {}", STANDARD.encode("admin:s3cret:x"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&value).unwrap(),
        );
        assert_eq!(basic_password(&headers).as_deref(), Some("s3cret:x"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(basic_password(&headers), None);
    }
}
