use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use roundhouse_db::JobRow;
use roundhouse_test_support::{SERVICE_TOKEN, TestEnv};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// An in-process service and the means to stop it.
pub struct Running {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Stops the service gracefully and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await?
    }
}

/// A test's stack: its private database and prefix, and the API.
pub struct Stack {
    pub env: TestEnv,
    pub api_url: String,
    pub http: reqwest::Client,
    _api: Running,
}

impl Stack {
    /// Starts the API only.
    pub async fn api_only() -> Self {
        Self::with_env(|_| {}).await
    }

    /// Starts the API after letting `configure` adjust the test environment.
    pub async fn with_env(configure: impl FnOnce(&mut TestEnv)) -> Self {
        let mut env = TestEnv::new().await.expect("test environment");
        configure(&mut env);
        let app = roundhouse_api::Application::build(env.settings())
            .await
            .expect("api builds");
        let api_url = format!("http://127.0.0.1:{}", app.port());
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone().cancelled_owned()));
        let stack = Self {
            env,
            api_url,
            http: reqwest::Client::new(),
            _api: Running { stop, task },
        };
        stack.wait_until_healthy().await;
        stack
    }

    async fn wait_until_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let healthy = self
                .http
                .get(format!("{}/health", self.api_url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if healthy {
                return;
            }
            assert!(Instant::now() < deadline, "api never became healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts an in-process worker.
    pub async fn worker(&self) -> Running {
        self.worker_with(&[]).await
    }

    /// Starts an in-process worker with extra settings.
    pub async fn worker_with(&self, vars: &[(&str, &str)]) -> Running {
        let mut env = self.env.env();
        env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = roundhouse_config::Settings::load_from(|name| env.get(name).cloned())
            .expect("worker settings");
        let app = roundhouse_worker::Application::build(settings)
            .await
            .expect("worker builds");
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone().cancelled_owned()));
        Running { stop, task }
    }

    /// Starts an in-process scheduler.
    pub async fn scheduler(&self) -> Running {
        let app = roundhouse_scheduler::Application::build(self.env.settings())
            .await
            .expect("scheduler builds");
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone().cancelled_owned()));
        Running { stop, task }
    }

    /// Starts the real worker binary with this test's environment.
    pub fn worker_process(&self, vars: &[(&str, &str)]) -> tokio::process::Child {
        let mut env: HashMap<String, String> = self.env.env();
        env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_roundhouse-worker"));
        command
            .env_clear()
            .envs(env)
            .kill_on_drop(true)
            .stdin(Stdio::null());
        if std::env::var_os("TEST_LOG").is_none() {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
        command.spawn().expect("start roundhouse-worker")
    }

    /// POSTs a job with the service token; returns the status and body.
    pub async fn enqueue(&self, body: Value) -> (reqwest::StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/api/jobs/enqueue", self.api_url))
            .bearer_auth(SERVICE_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("enqueue request");
        let status = response.status();
        (status, response.json().await.expect("json body"))
    }

    /// Enqueues and returns the new job's id, asserting a 202.
    pub async fn enqueue_ok(&self, body: Value) -> Uuid {
        let (status, body) = self.enqueue(body).await;
        assert_eq!(status, 202, "{body}");
        body["jobId"].as_str().unwrap().parse().unwrap()
    }

    /// Sends a request with the service token.
    pub async fn call(&self, method: reqwest::Method, path: &str) -> (reqwest::StatusCode, Value) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.api_url))
            .bearer_auth(SERVICE_TOKEN)
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(json!(null)))
    }

    /// The job row.
    pub async fn job(&self, id: Uuid) -> JobRow {
        self.env
            .db
            .get_job(id, None)
            .await
            .unwrap()
            .expect("job exists")
    }

    /// Waits until the job satisfies `done`, or panics after `timeout`.
    pub async fn wait_for(
        &self,
        id: Uuid,
        timeout: Duration,
        done: impl Fn(&JobRow) -> bool,
    ) -> JobRow {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.job(id).await;
            if done(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} did not reach the expected state in {timeout:?}; it is {} (attempts {}, error {:?})",
                job.status,
                job.attempts,
                job.error
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the job has status `status`.
    pub async fn wait_for_status(&self, id: Uuid, status: &str, timeout: Duration) -> JobRow {
        self.wait_for(id, timeout, |job| job.status == status).await
    }

    /// The kinds and data of the job's events.
    pub async fn events(&self, id: Uuid) -> Vec<(String, Value)> {
        self.env
            .db
            .job_events(id, 0, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.data))
            .collect()
    }
}
