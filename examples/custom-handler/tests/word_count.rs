//! The example worker, with the real api, PostgreSQL and RabbitMQ: the
//! custom type is registered, accepted, and run.

use std::time::{Duration, Instant};

use roundhouse_test_support::{SERVICE_TOKEN, TestEnv};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_word_count_job_runs_in_the_example_worker() {
    let env = TestEnv::new().await.expect("test environment");
    let api = roundhouse_api::Application::build(env.settings())
        .await
        .unwrap();
    let api_url = format!("http://127.0.0.1:{}", api.port());
    // A job accepted before the api reaches RabbitMQ waits for the
    // scheduler's sweep to dispatch it, and no scheduler runs here.
    let broker = api.state().broker.clone();
    let stop = CancellationToken::new();
    tokio::spawn(api.run_until_stopped(stop.clone().cancelled_owned()));
    let deadline = Instant::now() + Duration::from_secs(15);
    while !broker.is_connected() {
        assert!(Instant::now() < deadline, "the api never reached RabbitMQ");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let worker = roundhouse_worker::Application::build_with_handlers(
        env.settings(),
        roundhouse_example_custom_handler::handlers(),
    )
    .await
    .unwrap();
    tokio::spawn(worker.run_until_stopped(stop.clone().cancelled_owned()));

    let http = reqwest::Client::new();
    let enqueue = || {
        http.post(format!("{api_url}/api/jobs"))
            .bearer_auth(SERVICE_TOKEN)
            .json(&json!({"jobType": "word_count", "payload": {"text": "the quick brown fox"}}))
            .send()
    };
    // Accepted as soon as the worker has registered the type.
    let deadline = Instant::now() + Duration::from_secs(15);
    let job: Value = loop {
        match enqueue().await {
            Ok(response) if response.status() == 202 => break response.json().await.unwrap(),
            Ok(response) => assert_eq!(
                response.status(),
                422,
                "only unknown-type refusals are expected"
            ),
            Err(error) => panic!("api unreachable: {error}"),
        }
        assert!(Instant::now() < deadline, "word_count was never accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let id = job["jobId"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    let done: Value = loop {
        let job: Value = http
            .get(format!("{api_url}/api/jobs/{id}"))
            .bearer_auth(SERVICE_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if job["status"] == "completed" {
            break job;
        }
        assert!(Instant::now() < deadline, "job stuck: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["result"], json!({"words": 4}));
    assert_eq!(done["queue"], "default");
    stop.cancel();
}
