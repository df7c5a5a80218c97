//! The HTTP client: the base URL, the token, and the API's error shape.

use std::error::Error as _;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, Url};
use serde_json::Value;

use crate::error::{CliError, error_body};

/// How long an ordinary request may take; streams (`tail`) have no limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of one Roundhouse API.
pub struct Api {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl Api {
    /// A client of the API at `base` (`http://host:port`, a path prefix is kept).
    pub fn new(base: &str, token: Option<String>) -> Result<Self, CliError> {
        let mut base = Url::parse(base)
            .map_err(|e| CliError::Input(format!("--url / ROUNDHOUSE_URL `{base}`: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(CliError::Input(format!(
                "--url / ROUNDHOUSE_URL `{base}`: expected an http or https URL"
            )));
        }
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("roundhouse-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Other(e.into()))?;
        Ok(Self {
            http,
            base,
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// The URL of `path` (no leading slash) with `query` pairs whose value is set.
    pub fn url(&self, path: &str, query: &[(&str, Option<String>)]) -> Url {
        let mut url = self.base.join(path).expect("API paths are relative URLs");
        let pairs: Vec<_> = query
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v)))
            .collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        url
    }

    /// A request with the token.
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `method path` with an optional JSON body; the JSON answer, or the
    /// API's error.
    pub async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let mut request = self.request(method, url).timeout(REQUEST_TIMEOUT);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self.send(request).await?;
        let response = check(response).await?;
        let bytes = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| CliError::Api {
            status: 502,
            message: format!("the API answered with something that is not JSON: {e}"),
            body: error_body(
                "bad_response",
                "the API answered with something that is not JSON",
            ),
        })
    }

    pub async fn get(
        &self,
        path: &str,
        query: &[(&str, Option<String>)],
    ) -> Result<Value, CliError> {
        self.call(Method::GET, self.url(path, query), None).await
    }

    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        self.call(Method::POST, self.url(path, &[]), body).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.call(Method::PUT, self.url(path, &[]), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.call(Method::DELETE, self.url(path, &[]), None).await
    }

    /// Sends `request`; a failure to get any answer is [`CliError::Unreachable`].
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, CliError> {
        request.send().await.map_err(|e| self.unreachable(&e))
    }

    fn unreachable(&self, error: &reqwest::Error) -> CliError {
        // reqwest's own message is "error sending request for url (...)"; the
        // innermost cause says what happened ("Connection refused").
        let mut reason = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            reason = cause.to_string();
            source = cause.source();
        }
        if error.is_timeout() {
            reason = "timed out".to_owned();
        }
        CliError::Unreachable {
            url: self.base.as_str().trim_end_matches('/').to_owned(),
            reason,
        }
    }
}

/// `response` if it is a success, else the API's error it carries.
pub async fn check(response: Response) -> Result<Response, CliError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str::<Value>(&text)
        .ok()
        .filter(|body| body["error"]["message"].is_string())
        .unwrap_or_else(|| {
            let reason = status.canonical_reason().unwrap_or("error");
            error_body(
                "http_error",
                &format!("the API answered {status}: {reason}"),
            )
        });
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Err(CliError::Api {
        status: status.as_u16(),
        message,
        body,
    })
}
