//! The dashboard in a real browser: headless Chromium driven through
//! ChromeDriver (WebDriver), against the real api and a real worker.
//! Screenshots of each step are saved under
//! `$CARGO_TARGET_TMPDIR/dashboard-screenshots/` (`target/tmp/…`).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use roundhouse_core::{CustomJobType, JobKind};
use roundhouse_worker::{ExtraHandlers, Handler, HandlerError, JobContext, JobHandler};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::dashboard::{audited_actions, fail_with, queue_named};
use crate::helpers::{TestApp, service, spawn_app_with};

const PASSWORD: &str = "browser-test-password";
/// How long a step may take: generous, as other tests load the machine.
const WAIT: Duration = Duration::from_secs(30);

/// Fails for good until `healed`, then succeeds: a job an operator retries
/// after fixing what broke it.
struct Flaky {
    healed: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl JobHandler for Flaky {
    async fn run(&self, _ctx: JobContext) -> Result<Value, HandlerError> {
        if self.healed.load(Ordering::SeqCst) {
            Ok(json!({ "healed": true }))
        } else {
            Err(HandlerError::Permanent(
                "upstream said 503: try again later".into(),
            ))
        }
    }
}

/// ChromeDriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Self {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver could not start ({e}): run scripts/ensure-chromium.sh \
                     (make test does) to install chromium and chromium-driver"
                )
            });
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = reqwest::Client::new();
        loop {
            if let Ok(response) = http.get(format!("{url}/status")).send().await
                && response.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, url }
    }

    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium_binary(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000"],
            }),
        );
        ClientBuilder::rustls()
            .expect("a WebDriver client")
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn chromium_binary() -> String {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
        .unwrap_or("/usr/bin/chromium")
        .to_owned()
}

fn screenshots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG image");
    let path = screenshots_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

/// Waits (up to [`WAIT`]) until `css` matches an element whose text contains `text`.
async fn wait_for_text(browser: &Client, css: &str, text: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(element) = browser.find(Locator::Css(css)).await
            && let Ok(found) = element.text().await
            && found.contains(text)
        {
            return;
        }
        if Instant::now() > deadline {
            let source = browser.source().await.unwrap_or_default();
            panic!("no {css:?} containing {text:?} within {WAIT:?}; page:\n{source}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_job(app: &TestApp, id: &str, status: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let job = app.get(&format!("/api/jobs/{id}"), Some(service())).await;
        if job.body["status"] == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "job never {status}: {}",
            job.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_operator_signs_in_retries_a_failed_job_watches_it_complete_and_pauses_a_queue() {
    let app = spawn_app_with(|env| {
        env.set("DASHBOARD_PASSWORD", PASSWORD);
    })
    .await;
    let healed = Arc::new(AtomicBool::new(false));
    let flaky = CustomJobType::parse("flaky_upstream").unwrap();
    let worker = roundhouse_worker::Application::build_with_handlers(
        app.env.settings(),
        ExtraHandlers::from([(
            JobKind::Custom(flaky),
            Handler::Extra(Arc::new(Flaky {
                healed: healed.clone(),
            })),
        )]),
    )
    .await
    .expect("the worker builds");
    let stop = CancellationToken::new();
    tokio::spawn(worker.run_until_stopped(stop.clone().cancelled_owned()));
    let _stop_worker = stop.drop_guard();

    // A job that fails for good on its only attempt.
    let deadline = Instant::now() + WAIT;
    let id = loop {
        let (status, body) = app
            .enqueue(
                service(),
                json!({"jobType": "flaky_upstream", "payload": {"order": 42}, "maxRetries": 0}),
            )
            .await;
        if status == StatusCode::ACCEPTED {
            break body["jobId"].as_str().unwrap().to_owned();
        }
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            Instant::now() < deadline,
            "the worker never registered the type"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    wait_for_job(&app, &id, "failed").await;

    let driver = Driver::start().await;
    let browser = driver.browser().await;

    // Unauthenticated: the sign-in page.
    browser.goto(&app.url("/admin/queues")).await.unwrap();
    assert!(
        browser
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/admin/login")
    );
    wait_for_text(&browser, "h1", "Roundhouse").await;
    screenshot(&browser, "01-sign-in").await;
    let secret = browser.find(Locator::Id("secret")).await.unwrap();
    secret.send_keys("wrong").await.unwrap();
    click(&browser, "#sign-in").await;
    wait_for_text(&browser, "#login-error", "not accepted").await;
    let secret = browser.find(Locator::Id("secret")).await.unwrap();
    secret.send_keys(PASSWORD).await.unwrap();
    click(&browser, "#sign-in").await;

    // The queues, with the failed job counted.
    wait_for_text(&browser, "#queues-table", "default").await;
    wait_for_text(
        &browser,
        r#"tr[data-queue="default"] td[data-count="failed"]"#,
        "1",
    )
    .await;
    screenshot(&browser, "02-queues").await;

    // The failed job in the list, then its page.
    browser
        .goto(&app.url("/admin/queues#/jobs?status=failed"))
        .await
        .unwrap();
    let row = format!(r#"tr[data-job-id="{id}"]"#);
    wait_for_text(&browser, &row, "upstream said 503").await;
    screenshot(&browser, "03-failed-jobs").await;
    click(&browser, &format!("{row} a")).await;
    wait_for_text(&browser, "#job-status", "failed").await;
    wait_for_text(&browser, "#job-error", "upstream said 503").await;
    wait_for_text(&browser, "#timeline", "failed").await;
    screenshot(&browser, "04-job-failed").await;

    // An action without the CSRF token is refused, from the page itself.
    let status = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/admin/api/queues/default/pause', {method: 'POST', credentials: 'same-origin'})
               .then(r => done(r.status), e => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403));

    // Fixed upstream; retry, and the page follows the job to completion live.
    healed.store(true, Ordering::SeqCst);
    click(&browser, "#retry").await;
    wait_for_text(&browser, "#job-status", "completed").await;
    wait_for_text(&browser, "#job-result", "healed").await;
    wait_for_text(&browser, "#timeline", "manual retry").await;
    screenshot(&browser, "05-job-completed").await;
    wait_for_job(&app, &id, "completed").await;

    // Pause the default queue from the queues page.
    browser.goto(&app.url("/admin/queues#/")).await.unwrap();
    let pause = r#"tr[data-queue="default"] button[data-action="pause"]"#;
    wait_for_text(&browser, pause, "Pause").await;
    click(&browser, pause).await;
    wait_for_text(&browser, r#"tr[data-queue="default"]"#, "paused").await;
    wait_for_text(
        &browser,
        r#"tr[data-queue="default"] button[data-action="resume"]"#,
        "Resume",
    )
    .await;
    screenshot(&browser, "06-queue-paused").await;
    let stats = app.get("/api/queues/stats", Some(service())).await;
    let default = queue_named(&stats.body, "default");
    assert_eq!(default["paused"], true);

    // Every action the browser took is in the audit log.
    browser
        .goto(&app.url("/admin/queues#/audit"))
        .await
        .unwrap();
    wait_for_text(&browser, "#audit-table", "queue.pause").await;
    wait_for_text(&browser, "#audit-table", "job.retry").await;
    screenshot(&browser, "07-audit-log").await;
    let actions = audited_actions(&app).await;
    assert_eq!(
        actions,
        ["sign_in_failed", "sign_in", "job.retry", "queue.pause"]
    );
    browser.close().await.unwrap();
}

/// Signs `browser` in with the dashboard password.
async fn sign_in(browser: &Client, app: &TestApp) {
    browser.goto(&app.url("/admin/login")).await.unwrap();
    let secret = browser.find(Locator::Id("secret")).await.unwrap();
    secret.send_keys(PASSWORD).await.unwrap();
    click(browser, "#sign-in").await;
    wait_for_text(browser, "#queues-table", "default").await;
}

/// Clicks the element `css` matches. Views re-render when their data
/// changes, which can replace the element between finding and clicking it
/// (a stale element): find it again until the deadline.
async fn click(browser: &Client, css: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let clicked = match browser.find(Locator::Css(css)).await {
            Ok(element) => element.click().await,
            Err(error) => Err(error),
        };
        match clicked {
            Ok(()) => return,
            Err(error) if Instant::now() > deadline => panic!("could not click {css:?}: {error}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test]
async fn an_operator_filters_failed_jobs_bulk_retries_them_deletes_one_and_disables_a_schedule() {
    let app = spawn_app_with(|env| {
        env.set("DASHBOARD_PASSWORD", PASSWORD);
    })
    .await;
    let mut timeouts = Vec::new();
    for _ in 0..2 {
        let id = app.enqueue_noop(service()).await;
        fail_with(&app, id, "provider timeout").await;
        timeouts.push(id);
    }
    let other = app.enqueue_noop(service()).await;
    fail_with(&app, other, "invalid payload").await;
    let schedule = app
        .post(
            "/api/schedules",
            Some(service()),
            &json!({"name": "hourly-report", "cron": "0 * * * *", "jobType": "noop"}),
        )
        .await;
    assert_eq!(schedule.status, StatusCode::CREATED, "{}", schedule.text);

    let driver = Driver::start().await;
    let browser = driver.browser().await;
    sign_in(&browser, &app).await;

    // Filter the failed jobs by text in their error, from the form.
    browser.goto(&app.url("/admin/queues#/jobs")).await.unwrap();
    wait_for_text(&browser, "#jobs-table", "invalid payload").await;
    let status = browser.find(Locator::Id("f-status")).await.unwrap();
    status.select_by_value("failed").await.unwrap();
    let text = browser
        .find(Locator::Css(r#"#job-filters input[name="q"]"#))
        .await
        .unwrap();
    text.send_keys("TIMEOUT").await.unwrap();
    click(&browser, r#"#job-filters button[type="submit"]"#).await;
    wait_for_text(&browser, "#bulk-retry", "Retry all failed").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let rows = browser
            .find_all(Locator::Css("#jobs-table tr[data-job-id]"))
            .await
            .unwrap();
        if rows.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{} rows, not 2", rows.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    screenshot(&browser, "11-filtered-failed-jobs").await;

    // Bulk retry asks first; it requeues exactly the two that match.
    click(&browser, "#bulk-retry").await;
    browser.accept_alert().await.expect("a confirmation dialog");
    wait_for_text(&browser, "#flash", "Requeued 2 failed jobs").await;
    for id in &timeouts {
        assert_eq!(app.job_row(*id).await.unwrap().status, "queued");
    }
    assert_eq!(app.job_row(other).await.unwrap().status, "failed");
    screenshot(&browser, "12-bulk-retried").await;

    // Delete the other failed job from its page.
    browser
        .goto(&app.url(&format!("/admin/queues#/job/{other}")))
        .await
        .unwrap();
    wait_for_text(&browser, "#job-status", "failed").await;
    click(&browser, "#delete").await;
    browser.accept_alert().await.expect("a confirmation dialog");
    // Back on the list once the job is gone.
    wait_for_text(&browser, "#jobs-table", "Error").await;
    let deadline = Instant::now() + WAIT;
    while app.job_row(other).await.is_some() {
        assert!(Instant::now() < deadline, "the job was not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Disable the schedule, then run it now.
    browser
        .goto(&app.url("/admin/queues#/schedules"))
        .await
        .unwrap();
    let row = r#"tr[data-schedule="hourly-report"]"#;
    wait_for_text(&browser, row, "enabled").await;
    click(&browser, &format!(r#"{row} button[data-action="disable"]"#)).await;
    wait_for_text(&browser, row, "disabled").await;
    click(&browser, &format!(r#"{row} button[data-action="trigger"]"#)).await;
    wait_for_text(&browser, "#flash", "Trigger hourly-report: done").await;
    screenshot(&browser, "13-schedule-disabled").await;
    let id = schedule.body["id"].as_str().unwrap();
    let stored = app
        .get(&format!("/api/schedules/{id}"), Some(service()))
        .await;
    assert_eq!(stored.body["enabled"], false);
    let triggered: Vec<_> = app
        .all_rows()
        .await
        .into_iter()
        .filter(|job| job.schedule_id.map(|s| s.to_string()).as_deref() == Some(id))
        .collect();
    assert_eq!(triggered.len(), 1);

    let actions = audited_actions(&app).await;
    assert_eq!(
        actions,
        [
            "sign_in",
            "jobs.retry_failed",
            "job.delete",
            "schedule.disable",
            "schedule.trigger"
        ]
    );
    browser.close().await.unwrap();
}
