use crate::helpers::{Stack, cli};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_exits_2_with_the_apis_message() {
    let stack = Stack::api_only().await;
    let env = [
        ("ROUNDHOUSE_URL", stack.api_url.as_str()),
        ("ROUNDHOUSE_SERVICE_TOKEN", "not-the-token"),
    ];

    let refused = cli(&env, &["queues"]).await;

    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.starts_with("error: "), "{refused:?}");
    assert!(!refused.stderr.contains("not-the-token"), "{refused:?}");
    let json = cli(&env, &["queues", "--json"]).await;
    assert_eq!(json.code, 2);
    let body: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let message = body["error"]["message"].as_str().expect("the API's error");
    assert_eq!(refused.stderr.trim(), format!("error: {message}"));
}

#[tokio::test]
async fn an_unreachable_api_exits_3_with_a_clear_message() {
    // Nothing listens on port 1.
    let env = [("ROUNDHOUSE_URL", "http://127.0.0.1:1")];

    let down = cli(&env, &["status", "0190a000-0000-7000-8000-000000000000"]).await;

    assert_eq!(down.code, 3, "{down:?}");
    assert!(
        down.stderr
            .starts_with("error: cannot reach the Roundhouse API at http://127.0.0.1:1"),
        "{down:?}"
    );
    let json = cli(&env, &["--json", "queues"]).await;
    assert_eq!(json.code, 3);
    let body: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(body["error"]["code"], "unreachable");
}

#[tokio::test]
async fn the_token_is_never_shown_in_help() {
    let help = cli(&[("ROUNDHOUSE_SERVICE_TOKEN", "sekrit-token")], &["--help"]).await;
    assert!(help.ok().contains("ROUNDHOUSE_SERVICE_TOKEN"));
    assert!(!help.stdout.contains("sekrit-token"), "{help:?}");
}
