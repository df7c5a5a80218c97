//! Database-level guarantees that no single service owns, against the real
//! PostgreSQL: credits never overdraw, settling happens once.

mod data_sync;
mod pool;
mod queues;
mod rag;

use roundhouse_db::{AgentSpec, NewRun, RunStart};
use roundhouse_test_support::TestEnv;
use serde_json::json;
use uuid::Uuid;

async fn agent(env: &TestEnv) -> Uuid {
    env.db
        .create_agent(
            Uuid::now_v7(),
            "owner",
            &AgentSpec {
                name: "helper".into(),
                system_prompt: "Be brief.".into(),
                provider: "dev".into(),
                model: "dev".into(),
                temperature: None,
                max_tokens: Some(100),
                is_heavy: true,
                is_published: false,
                railway_url: None,
            },
        )
        .await
        .unwrap()
        .id
}

fn run(agent_id: Uuid, user: &str, reserve: i64) -> NewRun {
    NewRun {
        id: Uuid::now_v7(),
        agent_id,
        user_id: user.into(),
        mode: "sync".into(),
        messages: json!([{"role": "user", "content": "hi"}]),
        reserve,
        job: None,
    }
}

#[tokio::test]
async fn fifty_concurrent_runs_against_credits_for_ten_start_exactly_ten() {
    let env = TestEnv::new().await.unwrap();
    let agent_id = agent(&env).await;
    assert_eq!(env.db.grant_credits("alice", 100).await.unwrap(), 100);
    let starts = futures::future::join_all((0..50).map(|_| {
        let db = env.db.clone();
        async move { db.start_run(&run(agent_id, "alice", 10)).await.unwrap() }
    }))
    .await;
    let started = starts
        .iter()
        .filter(|s| matches!(s, RunStart::Started(_)))
        .count();
    assert_eq!(started, 10);
    for start in &starts {
        if let RunStart::InsufficientCredits { balance, needed } = start {
            assert_eq!(*needed, 10);
            assert!(*balance < 10, "refused with {balance} left");
        }
    }
    assert_eq!(env.db.credit_balance("alice").await.unwrap(), 0);
    let (runs,): (i64,) = sqlx::query_as("SELECT count(*) FROM agent_runs")
        .fetch_one(env.db.pool())
        .await
        .unwrap();
    assert_eq!(runs, 10, "a refused run leaves no record");
}

#[tokio::test]
async fn completing_refunds_the_unused_reservation_and_failing_refunds_it_all_once() {
    let env = TestEnv::new().await.unwrap();
    let agent_id = agent(&env).await;
    env.db.grant_credits("bob", 50).await.unwrap();

    let RunStart::Started(done) = env.db.start_run(&run(agent_id, "bob", 20)).await.unwrap() else {
        panic!("covered");
    };
    assert_eq!(done.status, "running");
    assert_eq!(env.db.credit_balance("bob").await.unwrap(), 30);
    let settled = env
        .db
        .complete_run(done.id, "hello", &json!({"promptTokens": 3}), 7)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(settled.credits_used, Some(7));
    assert_eq!(env.db.credit_balance("bob").await.unwrap(), 43);
    // Settling twice changes nothing.
    assert!(
        env.db
            .complete_run(done.id, "again", &json!({}), 0)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        env.db
            .fail_run(done.id, "late", "")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(env.db.credit_balance("bob").await.unwrap(), 43);

    let RunStart::Started(failed) = env.db.start_run(&run(agent_id, "bob", 40)).await.unwrap()
    else {
        panic!("covered");
    };
    assert_eq!(env.db.credit_balance("bob").await.unwrap(), 3);
    let row = env
        .db
        .fail_run(failed.id, "provider down", "partial")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, "failed");
    assert_eq!(row.credits_used, Some(0));
    assert_eq!(env.db.credit_balance("bob").await.unwrap(), 43);

    // A run never charges more than it reserved.
    let RunStart::Started(greedy) = env.db.start_run(&run(agent_id, "bob", 5)).await.unwrap()
    else {
        panic!("covered");
    };
    let row = env
        .db
        .complete_run(greedy.id, "long", &json!({}), 500)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.credits_used, Some(5));
    assert_eq!(env.db.credit_balance("bob").await.unwrap(), 38);

    let (ledger,): (i64,) =
        sqlx::query_as("SELECT sum(delta)::bigint FROM credit_ledger WHERE user_id = 'bob'")
            .fetch_one(env.db.pool())
            .await
            .unwrap();
    assert_eq!(ledger, 38, "the ledger adds up to the balance");
}

#[tokio::test]
async fn the_deduct_credits_function_takes_only_what_the_balance_covers() {
    let env = TestEnv::new().await.unwrap();
    env.db.grant_credits("carol", 10).await.unwrap();
    let deduct = |amount: i64| {
        let pool = env.db.pool().clone();
        async move {
            sqlx::query_scalar::<_, bool>("SELECT deduct_credits('carol', $1)")
                .bind(amount)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert!(deduct(4).await);
    assert!(!deduct(7).await);
    assert!(deduct(6).await);
    assert!(!deduct(1).await);
    assert_eq!(env.db.credit_balance("carol").await.unwrap(), 0);
    assert_eq!(env.db.credit_balance("nobody").await.unwrap(), 0);
}

#[tokio::test]
async fn streamed_chunks_are_kept_in_order_for_re_attaching() {
    let env = TestEnv::new().await.unwrap();
    let agent_id = agent(&env).await;
    let RunStart::Started(row) = env.db.start_run(&run(agent_id, "dave", 0)).await.unwrap() else {
        panic!("free runs need no credits");
    };
    env.db
        .append_run_chunks(row.id, 0, &["Hel".into(), "lo".into()])
        .await
        .unwrap();
    env.db
        .append_run_chunks(row.id, 2, &[", ".into(), "world".into()])
        .await
        .unwrap();
    // A retried append does not duplicate.
    env.db
        .append_run_chunks(row.id, 2, &[", ".into()])
        .await
        .unwrap();
    let all = env.db.run_chunks(row.id, 0).await.unwrap();
    assert_eq!(
        all.iter().map(|(_, c)| c.as_str()).collect::<String>(),
        "Hello, world"
    );
    let rest = env.db.run_chunks(row.id, 2).await.unwrap();
    assert_eq!(rest, [(2, ", ".to_owned()), (3, "world".to_owned())]);
}

#[tokio::test]
async fn runs_whose_executor_stopped_heartbeating_are_failed_and_refunded_once() {
    let env = TestEnv::new().await.unwrap();
    let agent_id = agent(&env).await;
    env.db.grant_credits("erin", 100).await.unwrap();
    let start = |reserve| {
        let db = env.db.clone();
        async move {
            match db.start_run(&run(agent_id, "erin", reserve)).await.unwrap() {
                RunStart::Started(row) => row,
                other => panic!("{other:?}"),
            }
        }
    };
    let (lost, alive) = (start(30).await, start(20).await);
    env.db
        .append_run_chunks(lost.id, 0, &["half ".into(), "an answer".into()])
        .await
        .unwrap();
    assert_eq!(env.db.credit_balance("erin").await.unwrap(), 50);
    sqlx::query("UPDATE agent_runs SET heartbeat_at = now() - interval '10 minutes'")
        .execute(env.db.pool())
        .await
        .unwrap();
    env.db.heartbeat_runs(&[alive.id]).await.unwrap();

    let reaped = env.db.reap_stale_runs(60.0, 100).await.unwrap();
    assert_eq!(reaped, [lost.id]);
    let row = env.db.get_run(lost.id, None).await.unwrap().unwrap();
    assert_eq!(row.status, "failed");
    assert_eq!(row.output, "half an answer", "what was streamed is kept");
    assert_eq!(env.db.credit_balance("erin").await.unwrap(), 80);
    assert!(env.db.reap_stale_runs(60.0, 100).await.unwrap().is_empty());
    assert!(
        env.db
            .complete_run(lost.id, "late", &json!({}), 1)
            .await
            .unwrap()
            .is_none(),
        "a reaped run cannot be settled again"
    );
    assert_eq!(env.db.credit_balance("erin").await.unwrap(), 80);
    let row = env.db.get_run(alive.id, None).await.unwrap().unwrap();
    assert_eq!(row.status, "running");
}
