//! The scheduler binary's `/metrics`: valid Prometheus text with the queue
//! gauges (waiting, scheduled, running, oldest waiting age) at the job
//! table's values, a queue that empties reported as 0, and the counters of
//! what the sweeps did.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use roundhouse_db::NewJob;
use roundhouse_test_support::TestEnv;
use roundhouse_test_support::metrics::Metrics;

use crate::job;

/// A port nothing listens on (the scheduler binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn scheduler_process(env: &TestEnv, port: u16) -> tokio::process::Child {
    let mut vars: HashMap<String, String> = env.env();
    vars.insert("PORT".into(), port.to_string());
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_roundhouse-scheduler"));
    command
        .env_clear()
        .envs(vars)
        .kill_on_drop(true)
        .stdin(Stdio::null());
    if std::env::var_os("TEST_LOG").is_none() {
        command.stdout(Stdio::null()).stderr(Stdio::null());
    }
    command.spawn().expect("start roundhouse-scheduler")
}

/// Scrapes `port` until `ready` holds (20 s at most: the gauges are set
/// every 5 s), then returns that scrape.
async fn scrape_until(port: u16, ready: impl Fn(&Metrics) -> bool) -> Metrics {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(response) = reqwest::get(&url).await
            && response.status().is_success()
        {
            let metrics = Metrics::parse(&response.text().await.expect("a body"));
            if ready(&metrics) {
                return metrics;
            }
            last = Some(metrics);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the expected values never showed up; last scrape:\n{}",
        last.as_ref().map_or("(none)", Metrics::text)
    );
}

fn depth(metrics: &Metrics, queue: &str, state: &str) -> Option<f64> {
    metrics.value(
        "roundhouse_queue_depth",
        &[("queue", queue), ("state", state)],
    )
}

#[tokio::test]
async fn the_scheduler_reports_queue_depths_oldest_waiting_age_and_its_sweeps() {
    let env = TestEnv::new().await.unwrap();
    let (waiting, due, delayed, running, lost) = (
        [job(None), job(None)],
        job(Some(1)),
        job(Some(600_000)),
        job(None),
        job(None),
    );
    let mut all: Vec<NewJob> = waiting.to_vec();
    all.extend([due.clone(), delayed, running.clone(), lost.clone()]);
    env.db.enqueue_jobs(&all).await.unwrap();
    env.db
        .claim_jobs(&[running.id], "worker-alive", 600.0)
        .await
        .unwrap();
    env.db
        .claim_jobs(&[lost.id], "worker-dead", 0.1)
        .await
        .unwrap();
    // The lost lease expires and the delayed-by-1-ms job is due.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let port = free_port();
    let _scheduler = scheduler_process(&env, port);
    // Two waiting from the start, the reaped and the promoted one join them;
    // every one's dispatch is confirmed once.
    let metrics = scrape_until(port, |m| {
        depth(m, "default", "waiting") == Some(4.0)
            && m.value("roundhouse_publish_confirmed_total", &[]) >= Some(4.0)
    })
    .await;

    assert_eq!(depth(&metrics, "default", "scheduled"), Some(1.0));
    assert_eq!(depth(&metrics, "default", "running"), Some(1.0));
    let oldest = metrics.expect_value(
        "roundhouse_queue_oldest_waiting_seconds",
        &[("queue", "default")],
    );
    assert!(oldest > 0.3 && oldest < 60.0, "{oldest}");
    // Configured queues without jobs are reported, at 0.
    for state in ["waiting", "scheduled", "running"] {
        assert_eq!(
            depth(&metrics, "notifications", state),
            Some(0.0),
            "{state}"
        );
    }
    assert_eq!(
        metrics.value(
            "roundhouse_queue_oldest_waiting_seconds",
            &[("queue", "notifications")]
        ),
        Some(0.0)
    );
    assert_eq!(
        metrics.value("roundhouse_leases_reaped_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        metrics.value("roundhouse_scheduler_promoted_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        metrics.value("roundhouse_agent_runs_reaped_total", &[]),
        Some(0.0)
    );
    // Reaped and promoted jobs are published at once; the sweep resends the
    // two inserted without a dispatch (the api's crash window), and any
    // publish the broker did not confirm (as one tried before the
    // scheduler's connection was up, `reason="unavailable"`).
    assert_eq!(
        metrics.value("roundhouse_publish_confirmed_total", &[]),
        Some(4.0)
    );
    let unconfirmed = metrics
        .value("roundhouse_publish_failed_total", &[])
        .unwrap_or(0.0);
    assert_eq!(
        metrics.value("roundhouse_redispatched_total", &[]),
        Some(2.0 + unconfirmed),
        "{}",
        metrics.text()
    );

    // A queue nobody configured: reported while it has a job, then 0.
    let mut other = job(None);
    other.queue = "custom0".into();
    env.db
        .enqueue_jobs(std::slice::from_ref(&other))
        .await
        .unwrap();
    scrape_until(port, |m| depth(m, "custom0", "waiting") == Some(1.0)).await;
    sqlx::query("UPDATE jobs SET status = 'cancelled', completed_at = now() WHERE id = $1")
        .bind(other.id)
        .execute(env.db.pool())
        .await
        .unwrap();
    let metrics = scrape_until(port, |m| depth(m, "custom0", "waiting") == Some(0.0)).await;
    assert_eq!(
        metrics.value(
            "roundhouse_queue_oldest_waiting_seconds",
            &[("queue", "custom0")]
        ),
        Some(0.0)
    );
}
