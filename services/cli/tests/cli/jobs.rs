use crate::helpers::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_job_is_cancelled_and_retried() {
    // No worker: the job waits.
    let stack = Stack::api_only().await;
    let id = stack
        .cli(&[
            "enqueue",
            "sleep",
            "--payload",
            r#"{"ms": 10}"#,
            "--delay",
            "60",
        ])
        .await
        .ok()
        .to_owned();

    let cancelled = stack.cli(&["cancel", &id]).await;
    assert_eq!(cancelled.ok(), format!("job {id} cancelled"));
    let again = stack.cli(&["cancel", &id]).await;
    assert_eq!(
        again.code, 2,
        "cancelling a cancelled job is a 409: {again:?}"
    );
    assert!(again.stderr.starts_with("error: "), "{again:?}");

    let retried = stack.cli(&["--json", "retry", &id]).await.json();
    assert_eq!(retried["status"], "queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_with_the_reason() {
    let stack = Stack::api_only().await;

    let not_json = stack
        .cli(&["enqueue", "sleep", "--payload", "{ms: 1}"])
        .await;
    assert_eq!(not_json.code, 2, "{not_json:?}");
    assert!(not_json.stderr.contains("not valid JSON"), "{not_json:?}");

    let unknown = stack.cli(&["enqueue", "no_such_type"]).await;
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(
        unknown
            .stderr
            .starts_with("error: jobType: unknown job type `no_such_type`"),
        "{unknown:?}"
    );

    let json = stack.cli(&["--json", "enqueue", "no_such_type"]).await;
    assert_eq!(json.code, 2);
    let body: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(body["error"]["code"], "validation_error", "{json:?}");

    let missing = stack
        .cli(&["status", &uuid::Uuid::now_v7().to_string()])
        .await;
    assert_eq!(missing.code, 2, "{missing:?}");
}
