//! Alerts against the real PostgreSQL, delivered to a local fake Slack (or
//! Discord) webhook, with the alerter driven one pass at a time and often
//! two of them at once, as two scheduler replicas would run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use roundhouse_db::NewJob;
use roundhouse_scheduler::alerts::{AlertReport, AlertSettings, Alerter, WebhookFormat};
use roundhouse_test_support::TestEnv;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::scheduler;

/// A webhook on 127.0.0.1 that records every POST and answers with the
/// statuses it was given, then 200.
#[derive(Clone)]
struct FakeChat {
    url: String,
    /// (status answered, body)
    requests: Arc<Mutex<Vec<(u16, Value)>>>,
}

impl FakeChat {
    async fn start(statuses: &[u16]) -> Self {
        #[derive(Clone)]
        struct Shared {
            requests: Arc<Mutex<Vec<(u16, Value)>>>,
            statuses: Arc<Mutex<Vec<u16>>>,
        }
        async fn receive(State(shared): State<Shared>, Json(body): Json<Value>) -> StatusCode {
            let status = {
                let mut statuses = shared.statuses.lock().unwrap();
                if statuses.is_empty() {
                    200
                } else {
                    statuses.remove(0)
                }
            };
            shared.requests.lock().unwrap().push((status, body));
            StatusCode::from_u16(status).unwrap()
        }
        let shared = Shared {
            requests: Arc::default(),
            statuses: Arc::new(Mutex::new(statuses.to_vec())),
        };
        let app = axum::Router::new()
            .route("/services/T0/B0/secret", axum::routing::post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/services/T0/B0/secret",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            requests: shared.requests,
        }
    }

    /// The Slack texts of the messages it accepted.
    fn texts(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(status, _)| *status < 300)
            .map(|(_, body)| body["text"].as_str().expect("a Slack body").to_owned())
            .collect()
    }

    fn attempts(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// A test database whose alerts go to `chat`, with `vars` on top.
async fn env_for(chat: &FakeChat, vars: &[(&str, &str)]) -> TestEnv {
    let mut env = TestEnv::new().await.unwrap();
    env.set("ALERT_WEBHOOK_URL", chat.url.clone());
    for (var, value) in vars {
        env.set(var, *value);
    }
    env
}

fn alerter(env: &TestEnv) -> Alerter {
    let settings = AlertSettings::from_settings(&env.settings())
        .unwrap()
        .expect("ALERT_WEBHOOK_URL is set");
    Alerter::new(env.db.clone(), settings).unwrap()
}

/// One pass of each alerter at the same time.
async fn pass_both(a: &Alerter, b: &Alerter) -> AlertReport {
    let (x, y) = tokio::join!(a.run_once(), b.run_once());
    let (x, y) = (x.unwrap(), y.unwrap());
    AlertReport {
        sent: x.sent + y.sent,
        suppressed: x.suppressed + y.suppressed,
        failed: x.failed + y.failed,
        busy: x.busy + y.busy,
    }
}

fn new_job(queue: &str, job_type: &str) -> NewJob {
    NewJob {
        id: Uuid::now_v7(),
        queue: queue.into(),
        job_type: job_type.into(),
        user_id: None,
        payload: json!({}),
        priority: 0,
        max_retries: 0,
        timeout_seconds: 60,
        idempotency_key: None,
        run_at: None,
        delay_ms: None,
        traceparent: None,
    }
}

/// Enqueues `n` jobs and has a worker claim them and fail each one
/// permanently, through the same database calls the worker makes.
async fn fail_jobs(env: &TestEnv, n: usize, queue: &str, job_type: &str) -> Vec<Uuid> {
    let jobs: Vec<NewJob> = (0..n).map(|_| new_job(queue, job_type)).collect();
    env.db.enqueue_jobs(&jobs).await.unwrap();
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let claimed = env.db.claim_jobs(&ids, "worker-1", 60.0).await.unwrap();
    assert_eq!(claimed.len(), n);
    for job in &claimed {
        let outcome = env
            .db
            .fail_job(
                job.id,
                job.attempts,
                "permanent: the input is not valid",
                false,
                0.0,
            )
            .await
            .unwrap();
        assert_eq!(outcome, roundhouse_db::FailOutcome::Failed);
    }
    ids
}

/// Event detectors read up to a cutoff a second behind the database clock.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1200)).await;
}

async fn sql(env: &TestEnv, statement: &str) {
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(env.db.pool())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_permanently_failing_job_sends_exactly_one_alert_with_two_schedulers() {
    let chat = FakeChat::start(&[]).await;
    let env = env_for(&chat, &[("ROUNDHOUSE_URL", "https://jobs.example.com")]).await;
    let (a, b) = (alerter(&env), alerter(&env));
    let id = fail_jobs(&env, 1, "data_sync", "data_sync").await[0];
    settle().await;

    let mut sent = 0;
    for _ in 0..4 {
        sent += pass_both(&a, &b).await.sent;
    }
    assert_eq!(sent, 1);
    let texts = chat.texts();
    assert_eq!(texts.len(), 1, "{texts:#?}");
    let text = &texts[0];
    assert!(
        text.starts_with("*🚨 Roundhouse: job failed for good*"),
        "{text}"
    );
    assert!(text.contains(&format!("`{id}`")), "{text}");
    assert!(
        text.contains("queue `data_sync`") && text.contains("after 1 attempt"),
        "{text}"
    );
    assert!(text.contains("the input is not valid"), "{text}");
    assert!(
        text.contains(&format!("https://jobs.example.com/api/jobs/{id}")),
        "{text}"
    );

    // Another failure later is news: one more message, for it alone.
    let later = fail_jobs(&env, 1, "data_sync", "data_sync").await[0];
    settle().await;
    pass_both(&a, &b).await;
    pass_both(&a, &b).await;
    let texts = chat.texts();
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(texts[1].contains(&later.to_string()) && !texts[1].contains(&id.to_string()));
}

#[tokio::test]
async fn a_burst_of_1000_failures_sends_one_summary_with_the_count() {
    let chat = FakeChat::start(&[]).await;
    let env = env_for(&chat, &[]).await;
    let (a, b) = (alerter(&env), alerter(&env));
    fail_jobs(&env, 990, "data_sync", "sync_orders").await;
    fail_jobs(&env, 10, "notifications", "notifications").await;
    settle().await;

    for _ in 0..4 {
        pass_both(&a, &b).await;
    }
    // ALERT_MAX_DETAILS (3) or fewer failures in a window get a message
    // each; more get exactly one summary of the window.
    let texts = chat.texts();
    assert_eq!(texts.len(), 1, "{texts:#?}");
    let text = &texts[0];
    assert!(
        text.contains("1,000 jobs failed for good in the last"),
        "{text}"
    );
    assert!(
        text.contains("• 990 in queue `data_sync` (type `sync_orders`)"),
        "{text}"
    );
    assert!(text.contains("• 10 in queue `notifications`"), "{text}");
    assert!(text.contains("First errors:"), "{text}");
}

#[tokio::test]
async fn the_hourly_limit_holds_alerts_back_and_then_sends_one_note() {
    let chat = FakeChat::start(&[]).await;
    let env = env_for(
        &chat,
        &[("ALERT_MAX_PER_HOUR", "2"), ("ALERT_MAX_DETAILS", "3")],
    )
    .await;
    let (a, b) = (alerter(&env), alerter(&env));
    fail_jobs(&env, 3, "default", "noop").await;
    settle().await;

    let first = pass_both(&a, &b).await;
    let second = pass_both(&a, &b).await;
    assert_eq!(first.sent + second.sent, 2, "the budget: two an hour");
    assert_eq!(first.suppressed + second.suppressed, 1);
    assert_eq!(chat.texts().len(), 2);

    // An hour later the budget has room: one note for what was held back.
    sql(
        &env,
        "UPDATE alert_budget SET sent_at = array(SELECT t - interval '61 minutes' FROM unnest(sent_at) t)",
    )
    .await;
    for _ in 0..3 {
        pass_both(&a, &b).await;
    }
    let texts = chat.texts();
    assert_eq!(texts.len(), 3, "{texts:#?}");
    assert!(
        texts[2].contains("1 alert was suppressed") && texts[2].contains("1 job_failed"),
        "{}",
        texts[2]
    );
}

#[tokio::test]
async fn a_stuck_queue_alerts_once_recovers_and_alerts_again_after_the_repeat_interval() {
    let chat = FakeChat::start(&[]).await;
    let env = env_for(
        &chat,
        &[
            ("ALERT_QUEUE_WAIT_SECONDS_BY_QUEUE", "default=5"),
            ("ALERT_REPEAT_SECONDS", "3"),
        ],
    )
    .await;
    let (a, b) = (alerter(&env), alerter(&env));
    let fresh = new_job("default", "noop");
    let stuck = new_job("default", "noop");
    env.db
        .enqueue_jobs(&[fresh.clone(), stuck.clone()])
        .await
        .unwrap();
    pass_both(&a, &b).await;
    assert!(chat.texts().is_empty(), "nothing has waited 5 s yet");

    // Another queue's job waits as long under the default threshold (300 s).
    env.db
        .enqueue_jobs(&[new_job("maintenance", "noop")])
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET queued_at = now() - interval '1 minute' WHERE id <> $1")
        .bind(fresh.id)
        .execute(env.db.pool())
        .await
        .unwrap();
    for _ in 0..4 {
        pass_both(&a, &b).await;
    }
    let texts = chat.texts();
    assert_eq!(texts.len(), 1, "{texts:#?}");
    assert!(
        texts[0].contains("queue `default` is backing up")
            && texts[0].contains("queued 1 min ago (threshold 5 s); 2 waiting"),
        "{}",
        texts[0]
    );

    // The backlog drains: one "recovered" message.
    let ids = [fresh.id, stuck.id];
    env.db.claim_jobs(&ids, "worker-1", 60.0).await.unwrap();
    for _ in 0..3 {
        pass_both(&a, &b).await;
    }
    let texts = chat.texts();
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(texts[1].contains("`default` recovered"), "{}", texts[1]);

    // It backs up again at once: within ALERT_REPEAT_SECONDS of the last
    // alert it stays quiet (a flapping queue is not a flood) …
    let again = new_job("default", "noop");
    env.db
        .enqueue_jobs(std::slice::from_ref(&again))
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET queued_at = now() - interval '1 minute' WHERE id = $1")
        .bind(again.id)
        .execute(env.db.pool())
        .await
        .unwrap();
    pass_both(&a, &b).await;
    assert_eq!(chat.texts().len(), 2);
    // … and alerts again once the repeat interval has passed.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    for _ in 0..3 {
        pass_both(&a, &b).await;
    }
    let texts = chat.texts();
    assert_eq!(texts.len(), 3, "{texts:#?}");
    assert!(
        texts[2].contains("queue `default` is backing up"),
        "{}",
        texts[2]
    );
}

#[tokio::test]
async fn a_job_running_longer_than_its_queues_threshold_alerts_once() {
    let chat = FakeChat::start(&[]).await;
    let env = env_for(&chat, &[("ALERT_RUNNING_SECONDS_BY_QUEUE", "default=5")]).await;
    let (a, b) = (alerter(&env), alerter(&env));
    let slow = new_job("default", "sleep");
    // Under the default threshold (300 s), a minute is fine.
    let agent = new_job("agents", "agent_run");
    env.db
        .enqueue_jobs(&[slow.clone(), agent.clone()])
        .await
        .unwrap();
    env.db
        .claim_jobs(&[slow.id, agent.id], "worker-7", 600.0)
        .await
        .unwrap();
    sql(
        &env,
        "UPDATE jobs SET started_at = now() - interval '1 minute'",
    )
    .await;

    for _ in 0..4 {
        pass_both(&a, &b).await;
    }
    let texts = chat.texts();
    assert_eq!(texts.len(), 1, "{texts:#?}");
    let text = &texts[0];
    assert!(text.contains("job running longer than 5 s"), "{text}");
    assert!(text.contains(&slow.id.to_string()) && !text.contains(&agent.id.to_string()));
    assert!(
        text.contains("running for 1 min (attempt 1 on worker `worker-7`)"),
        "{text}"
    );
}

#[tokio::test]
async fn leases_reaped_by_the_scheduler_send_one_worker_lost_alert() {
    let chat = FakeChat::start(&[]).await;
    let env = env_for(&chat, &[]).await;
    let jobs: Vec<NewJob> = (0..2)
        .map(|_| NewJob {
            max_retries: 1,
            ..new_job("default", "noop")
        })
        .collect();
    env.db.enqueue_jobs(&jobs).await.unwrap();
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    env.db.claim_jobs(&ids, "worker-dead", 0.2).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let reaped = scheduler(&env).await.run_once().await.unwrap();
    assert_eq!(reaped.reaped_requeued, 2);
    settle().await;

    let (a, b) = (alerter(&env), alerter(&env));
    for _ in 0..4 {
        pass_both(&a, &b).await;
    }
    let texts = chat.texts();
    assert_eq!(texts.len(), 1, "{texts:#?}");
    let text = &texts[0];
    assert!(text.contains("worker lost"), "{text}");
    assert!(text.contains("• `worker-dead`: 2 jobs"), "{text}");
    assert!(text.contains("leases expired on 2 jobs"), "{text}");
}

#[tokio::test]
async fn a_webhook_answering_500_then_200_gets_the_alert_once() {
    let chat = FakeChat::start(&[500]).await;
    let env = env_for(&chat, &[]).await;
    let alerter = alerter(&env);
    fail_jobs(&env, 1, "default", "noop").await;
    settle().await;

    let report = alerter.run_once().await.unwrap();
    assert_eq!((report.sent, report.failed), (1, 0));
    assert_eq!(chat.attempts(), 2, "one retry");
    alerter.run_once().await.unwrap();
    assert_eq!(chat.texts().len(), 1);
}

#[tokio::test]
async fn an_alert_the_webhook_refused_is_sent_when_it_is_back() {
    let chat = FakeChat::start(&[]).await;
    let mut env = env_for(&chat, &[]).await;
    fail_jobs(&env, 1, "default", "noop").await;
    settle().await;

    // Nothing listens on port 1: the pass fails and keeps its window.
    env.set("ALERT_WEBHOOK_URL", "http://127.0.0.1:1/hook");
    let refused = alerter(&env).run_once().await.unwrap();
    assert_eq!((refused.sent, refused.failed), (0, 1));

    env.set("ALERT_WEBHOOK_URL", chat.url.clone());
    let back = alerter(&env).run_once().await.unwrap();
    assert_eq!(back.sent, 1);
    assert!(chat.texts()[0].contains("job failed for good"));
}

#[tokio::test]
async fn a_discord_webhook_gets_content_and_a_username() {
    let chat = FakeChat::start(&[]).await;
    let env = env_for(&chat, &[]).await;
    // A local URL cannot have Discord's host; detection is unit-tested.
    let mut settings = AlertSettings::from_settings(&env.settings())
        .unwrap()
        .unwrap();
    assert_eq!(settings.format, WebhookFormat::Slack);
    settings.format = WebhookFormat::Discord;
    let alerter = Alerter::new(env.db.clone(), settings).unwrap();
    fail_jobs(&env, 1, "default", "noop").await;
    settle().await;
    alerter.run_once().await.unwrap();

    let requests = chat.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let body = &requests[0].1;
    assert!(body.get("text").is_none(), "{body}");
    assert_eq!(body["username"], "Roundhouse");
    let content = body["content"].as_str().unwrap();
    assert!(
        content.starts_with("**🚨 Roundhouse: job failed for good**"),
        "{content}"
    );
}

#[tokio::test]
async fn a_webhook_that_never_answers_delays_no_delayed_job_nor_the_shutdown() {
    // Accepts connections and never answers them.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/hook", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mut env = TestEnv::new().await.unwrap();
    env.set("ALERT_WEBHOOK_URL", silent_url)
        .set("ALERT_CHECK_SECONDS", "1");
    fail_jobs(&env, 1, "default", "noop").await;
    settle().await;

    let app = roundhouse_scheduler::Application::build(env.settings())
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    // Let the alerter get stuck on the webhook first.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut delayed = new_job("default", "noop");
    delayed.delay_ms = Some(1000);
    env.db
        .enqueue_jobs(std::slice::from_ref(&delayed))
        .await
        .unwrap();
    let enqueued = Instant::now();
    loop {
        let job = env.db.get_job(delayed.id, None).await.unwrap().unwrap();
        if job.status == "queued" {
            break;
        }
        assert!(
            enqueued.elapsed() < Duration::from_secs(3),
            "the delayed job was not promoted on time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let stopping = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), service)
        .await
        .expect("the scheduler stops without waiting for the webhook")
        .unwrap()
        .unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(5));
}
