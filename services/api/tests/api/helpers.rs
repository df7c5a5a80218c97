//! The test harness: a real api (router, PostgreSQL, RabbitMQ) on port 0 per
//! test, typed request helpers and token builders.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use roundhouse_api::{AppState, Application};
use roundhouse_db::{Completion, JobRow};
use roundhouse_test_support::{JWT_SECRET, SERVICE_TOKEN, SUPABASE_URL, TestEnv};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Two ordinary users and an admin.
pub const ALICE: &str = "00000000-0000-4000-8000-00000000a11c";
pub const BOB: &str = "00000000-0000-4000-8000-000000000b0b";
pub const ADMIN: &str = "00000000-0000-4000-8000-0000000ad111";

/// A running api and what it runs against.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    pub client: reqwest::Client,
    /// The app's state (its db, broker, limits), shared with the server.
    pub state: AppState,
    /// This test's database and broker prefix; dropped (and deleted) with the app.
    pub env: TestEnv,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A response, read whole.
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub body: Value,
}

impl ApiResponse {
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("read the response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Starts an api with the default test settings, once RabbitMQ is connected.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts an api after `configure` has adjusted the test environment, once
/// RabbitMQ is connected.
pub async fn spawn_app_with(configure: impl FnOnce(&mut TestEnv)) -> TestApp {
    let app = spawn_app_unwaited(configure).await;
    app.wait_for_broker().await;
    app
}

/// Starts an api without waiting for RabbitMQ (for apps whose broker is down).
pub async fn spawn_app_unwaited(configure: impl FnOnce(&mut TestEnv)) -> TestApp {
    let mut env = TestEnv::new().await.expect("a test environment");
    configure(&mut env);
    let application = Application::build(env.settings())
        .await
        .expect("the api builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    let state = application.state().clone();
    let shutdown = CancellationToken::new();
    tokio::spawn(application.run_until_stopped(shutdown.clone().cancelled_owned()));
    TestApp {
        address,
        client: client(),
        state,
        env,
        shutdown,
    }
}

/// Serves `router(state)` on a free port until the returned token is cancelled
/// (for apps built by hand, e.g. with an unreachable database).
pub async fn serve_router(state: AppState) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let address = format!("http://{}", listener.local_addr().expect("local address"));
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone().cancelled_owned();
    tokio::spawn(async move {
        axum::serve(
            listener,
            roundhouse_api::router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop)
        .await
    });
    (address, shutdown)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

impl TestApp {
    /// Waits (up to 10 s) until the api's RabbitMQ connection is up.
    pub async fn wait_for_broker(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.state.broker.is_connected() {
            assert!(
                Instant::now() < deadline,
                "the api did not connect to RabbitMQ within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Sends `method path` with an optional bearer token and JSON body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> ApiResponse {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        ApiResponse::read(request.send().await.expect("the api answers")).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> ApiResponse {
        self.send(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> ApiResponse {
        self.send(Method::POST, path, token, Some(body)).await
    }

    /// `POST /api/jobs/enqueue`.
    pub async fn enqueue(&self, token: &str, body: Value) -> (StatusCode, Value) {
        let response = self.post("/api/jobs/enqueue", Some(token), &body).await;
        (response.status, response.body)
    }

    /// Enqueues a job that must be accepted; returns its id.
    pub async fn enqueue_ok(&self, token: &str, body: Value) -> Uuid {
        let (status, body) = self.enqueue(token, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "enqueue refused: {body}");
        job_id(&body)
    }

    /// Enqueues a `noop` job; returns its id.
    pub async fn enqueue_noop(&self, token: &str) -> Uuid {
        self.enqueue_ok(token, json!({"jobType": "noop", "payload": {}}))
            .await
    }

    /// `POST /api/jobs/batch`.
    pub async fn batch(&self, token: &str, body: Value) -> (StatusCode, Value) {
        let response = self.post("/api/jobs/batch", Some(token), &body).await;
        (response.status, response.body)
    }

    /// `GET /api/jobs/{id}`.
    pub async fn get_job(&self, token: &str, id: Uuid) -> (StatusCode, Value) {
        let response = self.get(&format!("/api/jobs/{id}"), Some(token)).await;
        (response.status, response.body)
    }

    /// `GET /api/jobs/{id}/status`.
    pub async fn get_status(&self, token: &str, id: Uuid) -> (StatusCode, Value) {
        let response = self
            .get(&format!("/api/jobs/{id}/status"), Some(token))
            .await;
        (response.status, response.body)
    }

    /// `DELETE /api/jobs/{id}`.
    pub async fn cancel(&self, token: &str, id: Uuid) -> (StatusCode, Value) {
        let response = self
            .send(
                Method::DELETE,
                &format!("/api/jobs/{id}"),
                Some(token),
                None,
            )
            .await;
        (response.status, response.body)
    }

    /// `POST /api/jobs/{id}/retry`.
    pub async fn retry(&self, token: &str, id: Uuid) -> (StatusCode, Value) {
        let response = self
            .send(
                Method::POST,
                &format!("/api/jobs/{id}/retry"),
                Some(token),
                None,
            )
            .await;
        (response.status, response.body)
    }

    /// `GET /api/jobs?{query}`.
    pub async fn list(&self, token: &str, query: &str) -> (StatusCode, Value) {
        let response = self.get(&format!("/api/jobs?{query}"), Some(token)).await;
        (response.status, response.body)
    }

    /// `POST /api/queues/{name}/pause` or `/resume`.
    pub async fn set_paused(&self, token: &str, queue: &str, paused: bool) -> (StatusCode, Value) {
        let action = if paused { "pause" } else { "resume" };
        let response = self
            .send(
                Method::POST,
                &format!("/api/queues/{queue}/{action}"),
                Some(token),
                None,
            )
            .await;
        (response.status, response.body)
    }

    /// The stored row of job `id`.
    pub async fn job_row(&self, id: Uuid) -> Option<JobRow> {
        self.env
            .db
            .get_job(id, None)
            .await
            .expect("read the job row")
    }

    /// Every stored job, newest first.
    pub async fn all_rows(&self) -> Vec<JobRow> {
        self.env
            .db
            .list_jobs(&roundhouse_db::JobFilter {
                limit: 10_000,
                ..Default::default()
            })
            .await
            .expect("list the job rows")
    }

    /// Moves queued job `id` to `processing`, as a worker's claim would; returns the attempt.
    pub async fn claim(&self, id: Uuid) -> i32 {
        let claimed = self
            .env
            .db
            .claim_jobs(&[id], "test-worker", 30.0)
            .await
            .expect("claim the job");
        assert_eq!(claimed.len(), 1, "job {id} could not be claimed");
        claimed[0].attempts
    }

    /// Moves queued job `id` to `failed` (a permanent failure of its first attempt).
    pub async fn make_failed(&self, id: Uuid) {
        let attempt = self.claim(id).await;
        let outcome = self
            .env
            .db
            .fail_job(id, attempt, "boom", false, 0.0)
            .await
            .expect("fail the job");
        assert_eq!(outcome, roundhouse_db::FailOutcome::Failed);
    }

    /// Moves queued job `id` to `completed`.
    pub async fn make_completed(&self, id: Uuid) {
        let attempt = self.claim(id).await;
        let done = self
            .env
            .db
            .complete_jobs(&[Completion {
                job_id: id,
                attempt,
                result: json!({"ok": true}),
            }])
            .await
            .expect("complete the job");
        assert_eq!(done, vec![id]);
    }
}

/// The `jobId` (or `id`) of an enqueue answer.
pub fn job_id(body: &Value) -> Uuid {
    body["jobId"]
        .as_str()
        .or_else(|| body["id"].as_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no job id in {body}"))
}

/// Asserts `body` is SPEC's `{"error": {"code", "message"}}` with `code`.
pub fn assert_error(body: &Value, code: &str) {
    assert_error_shape(body);
    assert_eq!(
        body["error"]["code"], code,
        "unexpected error code in {body}"
    );
}

/// Asserts a 503 in the error shape with a `Retry-After` of at least a second.
pub fn assert_unavailable(response: &ApiResponse) {
    assert_eq!(
        response.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        response.text
    );
    assert_error(&response.body, "unavailable");
    let retry_after: u64 = response
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!(retry_after >= 1);
}

/// Asserts `body` is SPEC's `{"error": {"code", "message"}}`.
pub fn assert_error_shape(body: &Value) {
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not a JSON object: {body}"));
    assert_eq!(object.len(), 1, "error body has extra fields: {body}");
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no `error` object in {body}"));
    assert!(
        error["code"].as_str().is_some_and(|c| !c.is_empty()),
        "error code missing in {body}"
    );
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error message missing in {body}"
    );
}

/// The service token.
pub fn service() -> &'static str {
    SERVICE_TOKEN
}

/// A valid user access token for `sub`.
pub fn user(sub: &str) -> String {
    roundhouse_test_support::user_token(sub)
}

/// A valid access token for `sub` with `app_metadata.role = "admin"`.
pub fn admin() -> String {
    roundhouse_test_support::token_with(
        roundhouse_test_support::TokenClaims {
            sub: ADMIN,
            admin: true,
            ..Default::default()
        },
        JWT_SECRET,
    )
}

/// Claims of a valid user token for `sub` (tweak them to forge variants).
pub fn user_claims(sub: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "sub": sub,
        "role": "authenticated",
        "aud": "authenticated",
        "iss": format!("{SUPABASE_URL}/auth/v1"),
        "iat": now,
        "exp": now + 3600,
        "email": "someone@example.test",
    })
}

/// An HS256 token over `claims` signed with `secret`.
pub fn sign_hs256(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("sign a token")
}

/// A compact JWS from a raw header, raw claims and a raw signature.
pub fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// A token whose header says whatever `header` says but whose signature is an
/// HMAC-SHA256 with `secret` (algorithm-confusion attempts).
pub fn hmac_signed_token(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(secret),
        jsonwebtoken::Algorithm::HS256,
    )
    .expect("HMAC signature");
    format!("{message}.{signature}")
}

/// Test key material shared with `roundhouse-auth`'s tests.
pub mod fixtures {
    pub const JWKS: &str = include_str!("../../../../shared/auth/tests/fixtures/jwks.json");
    pub const EC1_PRIVATE: &str =
        include_str!("../../../../shared/auth/tests/fixtures/ec1_private.pem");
    pub const EC1_PUBLIC: &str =
        include_str!("../../../../shared/auth/tests/fixtures/ec1_public.pem");
    pub const EC2_PRIVATE: &str =
        include_str!("../../../../shared/auth/tests/fixtures/ec2_private.pem");
    pub const RSA_PUBLIC: &str =
        include_str!("../../../../shared/auth/tests/fixtures/rsa_public.pem");
    /// `kid` of `EC1` in [`JWKS`].
    pub const EC1_KID: &str = "ec-key-1";
}
