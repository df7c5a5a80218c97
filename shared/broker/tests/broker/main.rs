//! The broker crate against the real RabbitMQ.

use std::time::{Duration, Instant};

use futures::StreamExt;
use roundhouse_broker::{BasicAckOptions, Broker, BrokerSettings};
use roundhouse_core::{ControlMessage, Dispatch, DispatchMessage};
use uuid::Uuid;

fn settings(prefix: &str, url: &str) -> BrokerSettings {
    BrokerSettings {
        url: url.to_owned(),
        prefix: prefix.to_owned(),
        connection_name: "broker-test".to_owned(),
        confirm_timeout: Duration::from_secs(5),
    }
}

fn prefix() -> String {
    format!("rhtest_{}", &Uuid::new_v4().simple().to_string()[..12])
}

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

async fn connected(prefix: &str) -> Broker {
    roundhouse_test_support::init();
    let broker = Broker::start(settings(prefix, URL));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !broker.is_connected() {
        assert!(Instant::now() < deadline, "no connection to RabbitMQ");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker
}

fn dispatch(queue: &str) -> Dispatch {
    Dispatch {
        job_id: Uuid::now_v7(),
        queue: queue.to_owned(),
        priority: 0,
        traceparent: None,
    }
}

async fn delete_queue(prefix: &str, queue: &str) {
    let connection = lapin::Connection::connect(URL, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_delete(
            roundhouse_broker::Topology::new(prefix)
                .job_queue(queue)
                .into(),
            Default::default(),
        )
        .await
        .unwrap();
    connection.close(200, "done".into()).await.unwrap();
}

#[tokio::test]
async fn a_confirmed_dispatch_is_delivered_to_its_queue_consumer() {
    let prefix = prefix();
    let broker = connected(&prefix).await;
    let message = dispatch("custom1");
    let report = broker
        .publish_dispatches(std::slice::from_ref(&message))
        .await;
    assert_eq!(report.confirmed, [message.job_id]);
    assert!(report.failed.is_empty());

    let session = broker.session().await.unwrap();
    let mut consumer = session
        .consume_job_queue("custom1", 10, "test")
        .await
        .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("a delivery")
        .unwrap()
        .unwrap();
    let body: DispatchMessage = serde_json::from_slice(&delivery.data).unwrap();
    assert_eq!(body.job_id, message.job_id);
    assert_eq!(delivery.properties.delivery_mode(), &Some(2), "persistent");
    delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    delete_queue(&prefix, "custom1").await;
    broker.close().await;
}

#[tokio::test]
async fn a_publish_to_a_deleted_queue_is_reported_unsent_and_the_queue_is_declared_again() {
    let prefix = prefix();
    let broker = connected(&prefix).await;
    let first = dispatch("custom2");
    assert_eq!(
        broker
            .publish_dispatches(std::slice::from_ref(&first))
            .await
            .confirmed
            .len(),
        1
    );

    // An operator deletes the queue: the broker returns the next message as unroutable.
    delete_queue(&prefix, "custom2").await;
    let lost = dispatch("custom2");
    let report = broker.publish_dispatches(std::slice::from_ref(&lost)).await;
    assert_eq!(
        report.failed,
        [lost.job_id],
        "a returned message is not sent"
    );
    assert!(report.confirmed.is_empty());

    // The next publish declares the queue again and is confirmed.
    let retry = broker.publish_dispatches(std::slice::from_ref(&lost)).await;
    assert_eq!(retry.confirmed, [lost.job_id]);
    delete_queue(&prefix, "custom2").await;
    broker.close().await;
}

#[tokio::test]
async fn publishing_without_a_broker_fails_fast_instead_of_buffering() {
    roundhouse_test_support::init();
    let broker = Broker::start(settings(&prefix(), "amqp://guest:guest@127.0.0.1:1/%2f"));
    let started = Instant::now();
    let message = dispatch("default");
    let report = broker
        .publish_dispatches(std::slice::from_ref(&message))
        .await;
    assert_eq!(report.failed, [message.job_id]);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(!broker.is_connected());
    assert!(
        broker
            .publish_control(&ControlMessage::Cancel {
                job_id: message.job_id
            })
            .await
            .is_err()
    );
    broker.close().await;
}

#[tokio::test]
async fn control_broadcasts_reach_every_subscriber() {
    let prefix = prefix();
    let broker = connected(&prefix).await;
    let session = broker.session().await.unwrap();
    let mut first = session.consume_control("a").await.unwrap();
    let mut second = session.consume_control("b").await.unwrap();
    let job_id = Uuid::now_v7();
    broker
        .publish_control(&ControlMessage::Cancel { job_id })
        .await
        .unwrap();
    for consumer in [&mut first, &mut second] {
        let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .expect("broadcast arrives")
            .unwrap()
            .unwrap();
        let message: ControlMessage = serde_json::from_slice(&delivery.data).unwrap();
        assert_eq!(message, ControlMessage::Cancel { job_id });
    }
    broker.close().await;
}
