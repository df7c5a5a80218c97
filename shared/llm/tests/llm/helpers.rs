//! A scripted fake LLM server and shortcuts to providers pointed at it.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use futures::{StreamExt, stream};
use roundhouse_llm::{
    ChatRequest, Completion, ExtraProvider, LlmConfig, LlmError, Provider, Providers, StreamEvent,
};
use serde_json::Value;

/// Recognisable fake keys, so tests can assert they never leak.
pub const OPENAI_KEY: &str = "sk-test-OPENAI-KEY-0b5e9f1d2c3a";
pub const ANTHROPIC_KEY: &str = "sk-ant-test-ANTHROPIC-KEY-7a8b9c";

/// One scripted answer.
#[derive(Clone)]
pub struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    chunks: Vec<String>,
    stall: bool,
}

impl Reply {
    /// A JSON body.
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".into())],
            chunks: vec![body.to_string()],
            stall: false,
        }
    }

    /// An event stream, each string sent as its own chunk.
    pub fn sse<S: Into<String>>(chunks: impl IntoIterator<Item = S>) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type", "text/event-stream".into())],
            chunks: chunks.into_iter().map(Into::into).collect(),
            stall: false,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    /// After its chunks, the body neither continues nor ends.
    pub fn then_stall(mut self) -> Self {
        self.stall = true;
        self
    }
}

/// What the fake server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

struct Script {
    replies: Vec<Reply>,
    received: Mutex<Vec<Received>>,
}

/// A local HTTP server answering request *n* with reply *n* (the last reply
/// repeats), recording every request.
pub struct FakeServer {
    pub base_url: String,
    script: Arc<Script>,
}

impl FakeServer {
    pub async fn start(replies: Vec<Reply>) -> Self {
        assert!(!replies.is_empty());
        let script = Arc::new(Script {
            replies,
            received: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&script));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a local port");
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base_url, script }
    }

    /// The requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.script.received.lock().unwrap().clone()
    }
}

async fn answer(
    State(script): State<Arc<Script>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = {
        let mut received = script.received.lock().unwrap();
        received.push(Received {
            method,
            path: uri.path().to_owned(),
            headers,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        let n = received.len() - 1;
        script.replies[n.min(script.replies.len() - 1)].clone()
    };
    let chunks = stream::iter(reply.chunks).map(|chunk| Ok::<_, Infallible>(Bytes::from(chunk)));
    let body = if reply.stall {
        Body::from_stream(chunks.chain(stream::pending()))
    } else {
        Body::from_stream(chunks)
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    for (name, value) in reply.headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("header value"));
    }
    response
}

/// Settings with short retries and a 5 s timeout, and no provider but `dev`.
pub fn test_config() -> LlmConfig {
    LlmConfig {
        timeout: Duration::from_secs(5),
        max_retries: 3,
        retry_base: Duration::from_millis(10),
        ..LlmConfig::default()
    }
}

/// The registry for `config` (installing the TLS crypto provider first).
pub fn providers(config: &LlmConfig) -> Providers {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    Providers::from_config(config).expect("valid LLM configuration")
}

/// The `openai` provider pointed at `server`.
pub fn openai(server: &FakeServer, config: LlmConfig) -> Arc<dyn Provider> {
    let config = LlmConfig {
        openai_api_key: Some(OPENAI_KEY.into()),
        openai_base_url: format!("{}/v1", server.base_url),
        ..config
    };
    providers(&config).get("openai").unwrap()
}

/// The `anthropic` provider pointed at `server`.
pub fn anthropic(server: &FakeServer, config: LlmConfig) -> Arc<dyn Provider> {
    let config = LlmConfig {
        anthropic_api_key: Some(ANTHROPIC_KEY.into()),
        anthropic_base_url: server.base_url.clone(),
        ..config
    };
    providers(&config).get("anthropic").unwrap()
}

/// An `LLM_PROVIDERS` provider called `local` pointed at `server`.
pub fn extra(server: &FakeServer, api_key: Option<&str>) -> Arc<dyn Provider> {
    let config = LlmConfig {
        extra_providers: vec![ExtraProvider {
            name: "local".into(),
            base_url: format!("{}/v1", server.base_url),
            api_key: api_key.map(str::to_owned),
        }],
        ..test_config()
    };
    providers(&config).get("local").unwrap()
}

/// Every item of a stream.
pub async fn collect(
    provider: &dyn Provider,
    request: &ChatRequest,
) -> Result<Vec<Result<StreamEvent, LlmError>>, LlmError> {
    Ok(provider.stream(request).await?.collect().await)
}

/// The deltas of a successful stream and its final completion, checking
/// that `Done` comes once, last.
pub fn deltas_and_done(items: Vec<Result<StreamEvent, LlmError>>) -> (Vec<String>, Completion) {
    let mut deltas = Vec::new();
    let mut done = None;
    for item in items {
        assert!(done.is_none(), "an item after Done");
        match item.expect("a successful stream") {
            StreamEvent::Delta(text) => deltas.push(text),
            StreamEvent::Done(completion) => done = Some(completion),
        }
    }
    (deltas, done.expect("a Done event"))
}

/// An SSE event with only data.
pub fn data(json: &str) -> String {
    format!("data: {json}\n\n")
}

/// An SSE event with a name.
pub fn event(name: &str, json: &str) -> String {
    format!("event: {name}\ndata: {json}\n\n")
}
