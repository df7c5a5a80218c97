use std::process::Stdio;
use std::time::{Duration, Instant};

use roundhouse_test_support::{SERVICE_TOKEN, TestEnv};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// An in-process service and the means to stop it.
pub struct Running {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn spawn<F>(run: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(stop.clone()));
        Self { stop, task }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
        self.task.abort();
    }
}

/// What one run of the CLI printed, and how it exited.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Stdout as JSON, asserting a zero exit.
    pub fn json(&self) -> Value {
        assert_eq!(self.code, 0, "{self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// Stdout, trimmed, asserting a zero exit.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "{self:?}");
        self.stdout.trim()
    }
}

/// A test's stack: its private database and prefix, the API, and a worker.
pub struct Stack {
    pub env: TestEnv,
    pub api_url: String,
    _api: Running,
    _worker: Option<Running>,
}

impl Stack {
    /// The API and a worker.
    pub async fn start() -> Self {
        let mut stack = Self::api_only().await;
        let app = roundhouse_worker::Application::build(stack.env.settings())
            .await
            .expect("worker builds");
        stack._worker = Some(Running::spawn(|stop| {
            app.run_until_stopped(stop.cancelled_owned())
        }));
        stack
    }

    /// The API alone (jobs wait in their queues).
    pub async fn api_only() -> Self {
        let env = TestEnv::new().await.expect("test environment");
        let app = roundhouse_api::Application::build(env.settings())
            .await
            .expect("api builds");
        let api_url = format!("http://127.0.0.1:{}", app.port());
        let api = Running::spawn(|stop| app.run_until_stopped(stop.cancelled_owned()));
        wait_until_healthy(&api_url).await;
        Self {
            env,
            api_url,
            _api: api,
            _worker: None,
        }
    }

    /// Runs `roundhouse args…` against this stack with the service token.
    pub async fn cli(&self, args: &[&str]) -> Output {
        cli(
            &[
                ("ROUNDHOUSE_URL", self.api_url.as_str()),
                ("ROUNDHOUSE_SERVICE_TOKEN", SERVICE_TOKEN),
            ],
            args,
        )
        .await
    }
}

async fn wait_until_healthy(api_url: &str) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let healthy = http
            .get(format!("{api_url}/health"))
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

/// Runs the real `roundhouse` binary with exactly `vars` as its environment.
pub async fn cli(vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_roundhouse"));
    command
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("roundhouse {args:?} did not finish in a minute"))
        .expect("run roundhouse");
    let output = Output {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    if std::env::var_os("TEST_LOG").is_some() {
        eprintln!("roundhouse {args:?} -> {output:?}");
    }
    output
}
