//! The dashboard's HTML: the sign-in page, the app shell, its assets.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use roundhouse_http::ApiError;
use serde::Deserialize;

use super::AdminState;
use super::session::{self, NoSession, Operator};

const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// `GET /admin`: the dashboard lives at `/admin/queues`.
pub async fn to_dashboard() -> Redirect {
    Redirect::to("/admin/queues")
}

/// `GET /admin/queues`: the app for a signed-in operator; a request with a
/// correct `Authorization: Basic` password is signed in on the spot; anyone
/// else is sent to the sign-in page.
pub async fn dashboard(State(state): State<AdminState>, parts: Parts) -> Response {
    match session::session_operator(&parts, &state).await {
        Ok(operator) => Html(shell(&operator)).into_response(),
        Err(NoSession::Missing) => {
            if let Some(password) = session::basic_password(&parts.headers)
                && let Some(actor) = session::actor_for_secret(&state, &password).await
            {
                return signed_in(&state, &parts, actor, "basic").await;
            }
            Redirect::to("/admin/login").into_response()
        }
        Err(other) => ApiError::from(other).into_response(),
    }
}

/// `GET /admin/login`.
pub async fn login_page() -> Html<String> {
    Html(login_html(None))
}

#[derive(Debug, Deserialize)]
pub struct SignIn {
    #[serde(default)]
    secret: String,
}

/// `POST /admin/login` (form `secret=`): the dashboard password, a service
/// token, or an admin's access token.
pub async fn sign_in(
    State(state): State<AdminState>,
    parts: Parts,
    form: Result<Form<SignIn>, axum::extract::rejection::FormRejection>,
) -> Response {
    // A cross-site form post could sign a victim into the attacker's
    // session (login CSRF); browsers always send Origin on POST.
    if !same_origin(&parts.headers) {
        return ApiError::forbidden("sign-in from another origin").into_response();
    }
    let ip = session::client_ip(&parts, &state);
    if let Err(limited) = state.sign_ins.check_ip(ip) {
        return limited.into_response();
    }
    let secret = form.map(|Form(f)| f.secret).unwrap_or_default();
    match session::actor_for_secret(&state, &secret).await {
        Some(actor) => signed_in(&state, &parts, actor, "form").await,
        None => {
            let anonymous = Operator {
                actor: "anonymous".to_owned(),
                csrf_token: String::new(),
                client_ip: ip,
            };
            anonymous
                .audit(&state, "sign_in_failed", None, serde_json::json!({}))
                .await;
            (
                StatusCode::UNAUTHORIZED,
                Html(login_html(Some("That secret was not accepted."))),
            )
                .into_response()
        }
    }
}

async fn signed_in(state: &AdminState, parts: &Parts, actor: String, how: &str) -> Response {
    let token = match session::start_session(state, &actor).await {
        Ok(token) => token,
        Err(error) => return error.into_response(),
    };
    let operator = Operator {
        actor,
        csrf_token: String::new(),
        client_ip: session::client_ip(parts, state),
    };
    operator
        .audit(state, "sign_in", None, serde_json::json!({ "method": how }))
        .await;
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, session::session_cookie(&token)),
            (
                header::LOCATION,
                header::HeaderValue::from_static("/admin/queues"),
            ),
        ],
    )
        .into_response()
}

/// `POST /admin/logout` (CSRF-checked like every action).
pub async fn sign_out(
    State(state): State<AdminState>,
    operator: Operator,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    session::end_session(&state, &headers).await?;
    operator
        .audit(&state, "sign_out", None, serde_json::json!({}))
        .await;
    Ok((
        StatusCode::OK,
        [(header::SET_COOKIE, session::cleared_cookie())],
        axum::Json(serde_json::json!({ "signedOut": true })),
    )
        .into_response())
}

/// `GET /admin/assets/{file}`: the embedded script and stylesheet.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return not_found().await,
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// Any other `/admin/…` path.
pub async fn not_found() -> Response {
    ApiError::not_found("page").into_response()
}

/// Whether a request's `Origin` (when sent) names the host it was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

fn shell(operator: &Operator) -> String {
    format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{csrf}">
<meta name="operator" content="{actor}">
<title>Roundhouse · queues</title>
<link rel="stylesheet" href="/admin/assets/app.css">
<script src="/admin/assets/app.js" defer></script>
</head>
<body>
<header class="top">
  <span class="brand">Roundhouse</span>
  <nav>
    <a href="#/" data-nav="queues">Queues</a>
    <a href="#/jobs" data-nav="jobs">Jobs</a>
    <a href="#/schedules" data-nav="schedules">Schedules</a>
    <a href="#/audit" data-nav="audit">Audit log</a>
  </nav>
  <span class="who">{actor} <button id="sign-out" type="button">Sign out</button></span>
</header>
<div id="flash" role="status" aria-live="polite"></div>
<main id="app"><p class="muted">Loading…</p></main>
</body>
</html>
"##,
        csrf = escape(&operator.csrf_token),
        actor = escape(&operator.actor),
    )
}

fn login_html(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!(r#"<p class="error" id="login-error">{}</p>"#, escape(e)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Roundhouse · sign in</title>
<link rel="stylesheet" href="/admin/assets/app.css">
</head>
<body class="login">
<form method="post" action="/admin/login" class="card">
  <h1>Roundhouse</h1>
  <p class="muted">Sign in with the dashboard password, the service token, or an admin's access token.</p>
  {error}
  <label for="secret">Password or token</label>
  <input id="secret" name="secret" type="password" autocomplete="current-password" required autofocus>
  <button type="submit" id="sign-in">Sign in</button>
</form>
</body>
</html>
"#
    )
}

/// HTML-escapes text for element content and quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn a_foreign_origin_is_not_the_same_origin() {
        let mut headers = HeaderMap::new();
        assert!(same_origin(&headers), "no Origin: not a browser form post");
        headers.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        headers.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&headers));
        headers.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!same_origin(&headers));
    }
}
