//! The test harness: a real agent executor (router, PostgreSQL, the `dev`
//! provider) on port 0 per test, request helpers, an SSE reader, and a
//! provider that always fails.

use std::time::{Duration, Instant};

use eventsource_stream::{Event, Eventsource};
use futures::StreamExt;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use roundhouse_agent_executor::{AppState, Application};
use roundhouse_test_support::{SERVICE_TOKEN, TestEnv, user_token};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Two ordinary users.
pub const ALICE: &str = "00000000-0000-4000-8000-00000000a11c";
pub const BOB: &str = "00000000-0000-4000-8000-000000000b0b";

/// The `RAILWAY_BACKEND_SECRET` of test executors.
pub const BACKEND_SECRET: &str = "test-backend-secret-0123456789";

pub fn alice() -> String {
    user_token(ALICE)
}

pub fn bob() -> String {
    user_token(BOB)
}

/// A running executor and what it runs against.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    /// This test's database; dropped (and deleted) with the app.
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
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.code` of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// `error.message` of an error answer.
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
}

/// Starts an executor with the default test settings and the backend secret.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts an executor after `configure` has adjusted the test environment.
pub async fn spawn_app_with(configure: impl FnOnce(&mut TestEnv)) -> TestApp {
    let mut env = TestEnv::new().await.expect("a test environment");
    env.set("RAILWAY_BACKEND_SECRET", BACKEND_SECRET);
    configure(&mut env);
    let application = Application::build(env.settings())
        .await
        .expect("the executor builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    let state = application.state().clone();
    let shutdown = CancellationToken::new();
    tokio::spawn(application.run_until_stopped(shutdown.clone().cancelled_owned()));
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client"),
        state,
        env,
        shutdown,
    }
}

impl TestApp {
    /// Sends the executor its shutdown signal (as SIGTERM would).
    pub fn stop(&self) {
        self.shutdown.cancel();
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
        ApiResponse::read(request.send().await.expect("the executor answers")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> ApiResponse {
        self.send(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> ApiResponse {
        self.send(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn put(&self, path: &str, token: &str, body: &Value) -> ApiResponse {
        self.send(Method::PUT, path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> ApiResponse {
        self.send(Method::DELETE, path, Some(token), None).await
    }

    /// Creates an agent that must be accepted; returns its id.
    pub async fn create_agent(&self, token: &str, body: Value) -> Uuid {
        let response = self.post("/api/agents", token, &body).await;
        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "agent refused: {}",
            response.body
        );
        id_of(&response.body["id"])
    }

    /// Grants `amount` credits to `user` (as the service); returns the balance.
    pub async fn grant(&self, user: &str, amount: i64) -> i64 {
        let response = self
            .post(
                "/api/credits/grant",
                SERVICE_TOKEN,
                &json!({"userId": user, "amount": amount}),
            )
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        response.body["balance"].as_i64().expect("a balance")
    }

    /// `user`'s balance, read from the database.
    pub async fn balance(&self, user: &str) -> i64 {
        self.env.db.credit_balance(user).await.expect("a balance")
    }

    /// `POST /api/agent/execute` with the backend secret, unread.
    pub fn execute_request(&self, token: &str, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(self.url("/api/agent/execute"))
            .bearer_auth(token)
            .header("x-backend-secret", BACKEND_SECRET)
            .json(body)
    }

    /// `POST /api/agent/execute` with the backend secret.
    pub async fn execute(&self, token: &str, body: &Value) -> ApiResponse {
        let response = self
            .execute_request(token, body)
            .send()
            .await
            .expect("the executor answers");
        ApiResponse::read(response).await
    }

    /// `GET /api/agent/runs/{id}` as `token`.
    pub async fn run(&self, token: &str, id: Uuid) -> ApiResponse {
        self.get(&format!("/api/agent/runs/{id}"), token).await
    }

    /// Waits (up to 10 s) for run `id` to finish; returns it.
    pub async fn finished_run(&self, token: &str, id: Uuid) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let response = self.run(token, id).await;
            assert_eq!(response.status, StatusCode::OK, "{}", response.body);
            if !matches!(response.body["status"].as_str(), Some("running" | "queued")) {
                return response.body;
            }
            assert!(Instant::now() < deadline, "run {id} did not finish in 10 s");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// The body of an execute request for `agent` with one user message.
pub fn ask(agent: Uuid, message: &str) -> Value {
    json!({"agentId": agent, "messages": [{"role": "user", "content": message}]})
}

/// Same, streamed.
pub fn ask_streamed(agent: Uuid, message: &str) -> Value {
    let mut body = ask(agent, message);
    body["stream"] = json!(true);
    body
}

pub fn id_of(value: &Value) -> Uuid {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an id: {value}"))
}

/// Reads server-sent events until the stream ends (at most 10 s).
pub async fn read_events(response: reqwest::Response) -> Vec<Event> {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "an event stream"
    );
    let events = response.bytes_stream().eventsource();
    tokio::time::timeout(
        Duration::from_secs(10),
        events.map(|e| e.expect("an event")).collect(),
    )
    .await
    .expect("the stream ends within 10 s")
}

/// The `data` of an event, as JSON.
pub fn data(event: &Event) -> Value {
    serde_json::from_str(&event.data).expect("JSON event data")
}

/// The `agent_chunk` events' (id, content).
pub fn chunks(events: &[Event]) -> Vec<(i32, String)> {
    events
        .iter()
        .filter(|e| e.event == "agent_chunk")
        .map(|e| {
            let content = data(e)["content"].as_str().expect("content").to_owned();
            (e.id.parse().expect("a numeric id"), content)
        })
        .collect()
}

/// A local LLM server that answers every request 500; returns its base URL.
pub async fn broken_provider() -> String {
    let router = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": {"message": "the model is on fire"}})),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}/v1")
}

/// A WebSocket client of `GET /ws`.
pub struct WsClient {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl TestApp {
    /// `ws://…/ws?token=…`.
    pub fn ws_url(&self, token: &str) -> String {
        format!(
            "ws://{}/ws?token={token}",
            self.address.trim_start_matches("http://")
        )
    }

    /// Opens a WebSocket with `token`, which must be accepted.
    pub async fn ws(&self, token: &str) -> WsClient {
        let (socket, _) = tokio_tungstenite::connect_async(self.ws_url(token))
            .await
            .expect("the WebSocket opens");
        WsClient { socket }
    }
}

impl WsClient {
    /// Sends `message` as a text message.
    pub async fn send(&mut self, message: &Value) {
        self.send_raw(WsMessage::text(message.to_string())).await;
    }

    pub async fn send_raw(&mut self, message: WsMessage) {
        use futures::SinkExt;
        self.socket.send(message).await.expect("send on the socket");
    }

    /// The next message of any kind (at most 10 s away).
    pub async fn next_raw(&mut self) -> WsMessage {
        tokio::time::timeout(Duration::from_secs(10), self.socket.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a message")
    }

    /// The next JSON text message, skipping pings and pongs.
    pub async fn next_json(&mut self) -> Value {
        loop {
            match self.next_raw().await {
                WsMessage::Text(text) => {
                    return serde_json::from_str(text.as_str()).expect("JSON");
                }
                WsMessage::Ping(_) | WsMessage::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Reads until each of `request_ids` has had its final message
    /// (`agent_done` or `agent_error`); returns every message read, in order.
    pub async fn read_until_done(&mut self, request_ids: &[&str]) -> Vec<Value> {
        let mut open: Vec<&str> = request_ids.to_vec();
        let mut read = Vec::new();
        while !open.is_empty() {
            let message = self.next_json().await;
            if matches!(message["type"].as_str(), Some("agent_done" | "agent_error")) {
                open.retain(|id| message["requestId"] != *id);
            }
            read.push(message);
        }
        read
    }

    /// Closes the socket.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

pub use tokio_tungstenite::tungstenite::Message as WsMessage;

/// An `agent_execute` message for `agent` with one user message.
pub fn ws_execute(request_id: &str, agent: Uuid, message: &str) -> Value {
    json!({
        "type": "agent_execute",
        "requestId": request_id,
        "agentId": agent,
        "messages": [{"role": "user", "content": message}],
    })
}

/// The messages of `request_id`, in order.
pub fn of_request<'a>(messages: &'a [Value], request_id: &str) -> Vec<&'a Value> {
    messages
        .iter()
        .filter(|m| m["requestId"] == request_id)
        .collect()
}

/// The `agent_chunk` contents among `messages`, concatenated.
pub fn chunk_text(messages: &[&Value]) -> String {
    messages
        .iter()
        .filter(|m| m["type"] == "agent_chunk")
        .map(|m| m["content"].as_str().expect("content"))
        .collect()
}
