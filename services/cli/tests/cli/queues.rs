use crate::helpers::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_is_paused_and_resumed() {
    let stack = Stack::api_only().await;

    let paused = stack.cli(&["pause", "default"]).await;
    assert!(
        paused.ok().starts_with("queue default paused"),
        "{paused:?}"
    );
    let stats = stack.cli(&["queues", "--json"]).await.json();
    let default = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "default")
        .cloned()
        .unwrap_or_else(|| panic!("no default queue in {stats}"));
    assert_eq!(default["paused"], true);

    let resumed = stack.cli(&["--json", "resume", "default"]).await.json();
    assert_eq!(resumed["paused"], false);
    let table = stack.cli(&["queues"]).await;
    assert!(table.ok().contains("default"), "{table:?}");
    assert!(table.ok().contains("WAITING"), "{table:?}");
}
