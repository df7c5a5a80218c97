use std::time::Duration;

use roundhouse_db::Completion;
use serde_json::json;

use crate::helpers::Stack;

fn signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("child is running").to_string();
    let status = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[tokio::test]
async fn a_job_whose_worker_is_killed_completes_exactly_once_on_another_worker() {
    let stack = Stack::api_only().await;
    let scheduler = stack.scheduler().await;
    let mut first = stack.worker_process(&[]);
    let id = stack
        .enqueue_ok(json!({"jobType": "sleep", "payload": {"ms": 2500}}))
        .await;
    let running = stack
        .wait_for_status(id, "processing", Duration::from_secs(15))
        .await;
    assert_eq!(running.attempts, 1);
    let dead_worker = running.worker_id.clone().unwrap();

    signal(&first, "-KILL");
    first.wait().await.unwrap();

    let mut second = stack.worker_process(&[]);
    // Lease (3 s in tests) expires, the scheduler reaps it, the second worker runs it.
    let job = stack
        .wait_for_status(id, "completed", Duration::from_secs(30))
        .await;
    assert_eq!(
        job.attempts, 2,
        "the lost attempt plus the one that finished"
    );
    assert_ne!(job.worker_id.as_deref(), Some(dead_worker.as_str()));

    // The dead attempt's completion, arriving late, is refused...
    let accepted = stack
        .env
        .db
        .complete_jobs(&[Completion {
            job_id: id,
            attempt: 1,
            result: json!({"from": "the dead worker"}),
        }])
        .await
        .unwrap();
    assert!(accepted.is_empty());
    // ...and so is its failure report.
    let outcome = stack
        .env
        .db
        .fail_job(id, 1, "late", true, 0.0)
        .await
        .unwrap();
    assert_eq!(outcome, roundhouse_db::FailOutcome::Superseded);
    let job = stack.job(id).await;
    assert_eq!(job.status, "completed");
    assert_eq!(job.result, Some(json!({"sleptMs": 2500})));

    let completions = stack
        .events(id)
        .await
        .into_iter()
        .filter(|(_, data)| data["status"] == "completed")
        .count();
    assert_eq!(completions, 1, "exactly one completion is recorded");
    let reaped = stack
        .events(id)
        .await
        .into_iter()
        .any(|(_, data)| data["reason"] == "lease expired");
    assert!(reaped, "the timeline shows the lost attempt");

    signal(&second, "-TERM");
    let status = second.wait().await.unwrap();
    assert!(status.success(), "SIGTERM is a clean exit: {status}");
    scheduler.stop().await.unwrap();
}

#[tokio::test]
async fn sigterm_lets_running_jobs_finish_before_the_worker_exits() {
    let stack = Stack::api_only().await;
    let mut worker = stack.worker_process(&[]);
    let id = stack
        .enqueue_ok(json!({"jobType": "sleep", "payload": {"ms": 1500}}))
        .await;
    stack
        .wait_for_status(id, "processing", Duration::from_secs(15))
        .await;

    signal(&worker, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), worker.wait())
        .await
        .expect("worker exits within its drain timeout")
        .unwrap();
    assert!(status.success(), "{status}");
    let job = stack.job(id).await;
    assert_eq!(
        job.status, "completed",
        "the running job finished during the drain"
    );
    assert_eq!(job.attempts, 1);
}

#[tokio::test]
async fn a_job_longer_than_the_drain_timeout_is_handed_back_and_finished_elsewhere() {
    let stack = Stack::api_only().await;
    let scheduler = stack.scheduler().await;
    let mut worker = stack.worker_process(&[("WORKER_DRAIN_SECONDS", "1")]);
    let id = stack
        .enqueue_ok(json!({"jobType": "sleep", "payload": {"ms": 4000}, "maxRetries": 0}))
        .await;
    stack
        .wait_for_status(id, "processing", Duration::from_secs(15))
        .await;

    signal(&worker, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), worker.wait())
        .await
        .expect("worker exits")
        .unwrap();
    assert!(status.success(), "{status}");
    let job = stack.job(id).await;
    assert_eq!(job.status, "queued", "handed back, not lost and not failed");

    // maxRetries 0, yet the hand-back did not use up the retry budget.
    let other = stack.worker().await;
    let job = stack
        .wait_for_status(id, "completed", Duration::from_secs(20))
        .await;
    assert_eq!(job.attempts, 2);
    other.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}

#[tokio::test]
async fn a_job_outliving_two_leases_is_kept_alive_by_heartbeats_and_never_reaped() {
    let stack = Stack::api_only().await;
    let scheduler = stack.scheduler().await;
    let worker = stack.worker().await;
    // Lease is 3 s in tests: this job outlives it twice over.
    let id = stack
        .enqueue_ok(json!({"jobType": "sleep", "payload": {"ms": 7000}}))
        .await;
    let job = stack
        .wait_for_status(id, "completed", Duration::from_secs(20))
        .await;
    assert_eq!(job.attempts, 1, "never reaped while its worker was alive");
    worker.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}

#[tokio::test]
async fn a_bad_setting_stops_the_worker_with_one_line_naming_it() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_roundhouse-worker"))
        .env_clear()
        .env("WORKER_CONCURRENCY", "lots")
        .env("ROUNDHOUSE_CONFIG", "/nonexistent.toml")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("WORKER_CONCURRENCY"), "{stderr}");
}

#[tokio::test]
async fn a_sigterm_during_startup_is_a_clean_exit() {
    let stack = Stack::api_only().await;
    let mut worker = stack.worker_process(&[]);
    // Early, while it connects: the handler is installed before anything else.
    tokio::time::sleep(Duration::from_millis(150)).await;
    signal(&worker, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(15), worker.wait())
        .await
        .expect("worker exits")
        .unwrap();
    assert!(status.success(), "not killed by the signal: {status}");
}
