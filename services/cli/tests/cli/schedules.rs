use serde_json::Value;

use crate::helpers::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_is_added_listed_disabled_and_triggered() {
    let stack = Stack::api_only().await;

    let id = stack
        .cli(&[
            "schedules",
            "add",
            "--name",
            "nightly nap",
            "--cron",
            "30 2 * * *",
            "--timezone",
            "Europe/Paris",
            "--job-type",
            "sleep",
            "--payload",
            r#"{"ms": 5}"#,
        ])
        .await
        .ok()
        .to_owned();

    let listed = |page: Value| -> Value {
        page["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("{id} not listed in {page}"))
    };
    let schedule = listed(stack.cli(&["schedules", "list", "--json"]).await.json());
    assert_eq!(schedule["name"], "nightly nap");
    assert_eq!(schedule["timezone"], "Europe/Paris");
    assert_eq!(schedule["enabled"], true);
    let table = stack.cli(&["schedules", "list"]).await;
    assert!(table.ok().contains("nightly nap"), "{table:?}");

    let disabled = stack.cli(&["schedules", "disable", &id]).await;
    assert_eq!(disabled.ok(), format!("schedule {id} disabled"));
    let schedule = listed(stack.cli(&["schedules", "list", "--json"]).await.json());
    assert_eq!(schedule["enabled"], false);

    // A disabled schedule can still be triggered by hand.
    let job_id = stack
        .cli(&["schedules", "trigger", &id])
        .await
        .ok()
        .to_owned();
    let job = stack.cli(&["status", &job_id, "--json"]).await.json();
    assert_eq!(job["scheduleId"], id.as_str());
    assert_eq!(job["payload"]["ms"], 5);

    let enabled = stack
        .cli(&["--json", "schedules", "enable", &id])
        .await
        .json();
    assert_eq!(enabled["enabled"], true);

    let bad = stack
        .cli(&[
            "schedules",
            "add",
            "--name",
            "x",
            "--cron",
            "not a cron",
            "--job-type",
            "sleep",
        ])
        .await;
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.starts_with("error: cron"), "{bad:?}");
}
