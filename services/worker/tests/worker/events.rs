//! Live job events end to end: a real worker writes the timeline and
//! publishes its notes; the api streams it.

use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use roundhouse_test_support::SERVICE_TOKEN;
use serde_json::{Value, json};

use crate::helpers::Stack;

#[tokio::test]
async fn a_running_jobs_events_stream_live_from_the_worker_through_the_api() {
    let stack = Stack::api_only().await;
    let _worker = stack.worker().await;
    let id = stack
        .enqueue_ok(json!({"jobType": "sleep", "payload": {"ms": 1000}}))
        .await;
    let body = tokio::time::timeout(Duration::from_secs(20), async {
        stack
            .http
            .get(format!("{}/api/jobs/{id}/events", stack.api_url))
            .bearer_auth(SERVICE_TOKEN)
            .send()
            .await
            .expect("open the stream")
            .text()
            .await
            .expect("read the stream to its end")
    })
    .await
    .expect("the stream ends once the job completes");
    let mut ids = Vec::new();
    let mut events = Vec::new();
    for line in body.lines() {
        if let Some(id) = line.strip_prefix("id:") {
            ids.push(id.trim().parse::<i64>().unwrap());
        } else if let Some(data) = line.strip_prefix("data:") {
            events.push(serde_json::from_str::<Value>(data.trim()).unwrap());
        }
    }
    let stored: Vec<i64> = stack
        .env
        .db
        .job_events(id, 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, stored, "every event once, in order");
    assert_eq!(events[0]["data"]["status"], "processing");
    let progress: Vec<i64> = events
        .iter()
        .filter(|e| e["kind"] == "progress")
        .map(|e| e["data"]["progress"].as_i64().unwrap())
        .collect();
    assert_eq!(progress, (1..=10).map(|step| step * 10).collect::<Vec<_>>());
    assert_eq!(events.last().unwrap()["data"]["status"], "completed");
}

#[tokio::test]
async fn the_worker_announces_new_events_on_the_events_exchange() {
    let stack = Stack::api_only().await;
    // A replica's queue, as the api declares it (after the api declared the exchange).
    let connection = lapin::Connection::connect(
        &stack.env.env()["RABBITMQ_URL"],
        lapin::ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.name().clone(),
            format!("{}.events", stack.env.prefix).into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut notes = channel
        .basic_consume(
            queue.name().clone(),
            "test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _worker = stack.worker().await;
    let id = stack
        .enqueue_ok(json!({"jobType": "noop", "payload": {}}))
        .await;
    let job = stack
        .wait_for_status(id, "completed", Duration::from_secs(10))
        .await;
    // The claim's note and the completion's.
    for _ in 0..2 {
        let delivery = tokio::time::timeout(Duration::from_secs(5), notes.next())
            .await
            .expect("a note within 5 s")
            .expect("the consumer is open")
            .expect("a delivery");
        assert_eq!(
            delivery.routing_key.as_str(),
            format!("{}.{id}", job.queue),
            "routing key {{queue}}.{{jobId}}"
        );
        let note: Value = serde_json::from_slice(&delivery.data).unwrap();
        assert_eq!(note, json!({"jobId": id, "queue": job.queue}));
    }
    let _ = connection.close(200, "done".into()).await;
}
