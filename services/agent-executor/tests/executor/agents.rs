//! `/api/agents` and `/api/credits`.

use reqwest::StatusCode;
use roundhouse_test_support::SERVICE_TOKEN;
use serde_json::json;

use crate::helpers::{ALICE, BOB, alice, bob, id_of, spawn_app};

#[tokio::test]
async fn an_owner_creates_lists_updates_and_deletes_an_agent() {
    let app = spawn_app().await;
    let created = app
        .post(
            "/api/agents",
            &alice(),
            &json!({
                "name": "Researcher", "systemPrompt": "Cite sources.", "model": "m1",
                "temperature": 0.5, "maxTokens": 2000, "isHeavy": true,
                "railwayUrl": "https://exec.example.com"
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let agent = &created.body;
    assert_eq!(agent["userId"], ALICE);
    assert_eq!(agent["provider"], "dev");
    assert_eq!(agent["systemPrompt"], "Cite sources.");
    assert_eq!(agent["temperature"], 0.5);
    assert_eq!(agent["maxTokens"], 2000);
    assert_eq!(agent["isHeavy"], true);
    assert_eq!(agent["isPublished"], false);
    assert_eq!(agent["railwayUrl"], "https://exec.example.com");
    assert!(agent["createdAt"].is_string() && agent["updatedAt"].is_string());
    let id = id_of(&agent["id"]);

    let listed = app.get("/api/agents", &alice()).await;
    assert_eq!(listed.body["agents"].as_array().unwrap().len(), 1);
    assert_eq!(listed.body["agents"][0]["id"], id.to_string());

    // Partial: absent fields stay, null clears.
    let updated = app
        .put(
            &format!("/api/agents/{id}"),
            &alice(),
            &json!({"name": "Scholar", "temperature": null}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["name"], "Scholar");
    assert!(updated.body["temperature"].is_null());
    assert_eq!(updated.body["maxTokens"], 2000);

    let deleted = app.delete(&format!("/api/agents/{id}"), &alice()).await;
    assert_eq!(deleted.status, StatusCode::OK);
    let gone = app.get(&format!("/api/agents/{id}"), &alice()).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn invalid_agents_are_refused_naming_the_field() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({}), "name"),
        (json!({"name": "  "}), "name"),
        (json!({"name": "x".repeat(201)}), "name"),
        (json!({"name": "A", "provider": "nope"}), "provider"),
        (json!({"name": "A", "temperature": 2.5}), "temperature"),
        (json!({"name": "A", "maxTokens": 0}), "maxTokens"),
        (json!({"name": "A", "maxTokens": 200_001}), "maxTokens"),
        (
            json!({"name": "A", "railwayUrl": "exec.example.com"}),
            "railwayUrl",
        ),
    ] {
        let response = app.post("/api/agents", &alice(), &body).await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            response.body
        );
        assert!(
            response.message().starts_with(field),
            "{body}: {}",
            response.body
        );
    }
    let id = app.create_agent(&alice(), json!({"name": "A"})).await;
    let response = app
        .put(
            &format!("/api/agents/{id}"),
            &alice(),
            &json!({"maxTokens": -1}),
        )
        .await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response.message().starts_with("maxTokens"));
}

#[tokio::test]
async fn another_users_agent_is_hidden_unless_published_and_never_editable() {
    let app = spawn_app().await;
    let id = app
        .create_agent(
            &alice(),
            json!({"name": "Mine", "systemPrompt": "secret sauce"}),
        )
        .await;
    let path = format!("/api/agents/{id}");

    assert_eq!(app.get(&path, &bob()).await.status, StatusCode::NOT_FOUND);
    let edit = json!({"name": "Stolen"});
    assert_eq!(
        app.put(&path, &bob(), &edit).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&path, &bob()).await.status,
        StatusCode::NOT_FOUND
    );

    app.put(&path, &alice(), &json!({"isPublished": true}))
        .await;
    let seen = app.get(&path, &bob()).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(
        seen.body.get("systemPrompt").is_none(),
        "a published agent's prompt stays its owner's: {}",
        seen.body
    );
    assert_eq!(
        app.get(&path, &alice()).await.body["systemPrompt"],
        "secret sauce"
    );
    assert_eq!(
        app.put(&path, &bob(), &edit).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&path, &bob()).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get(&path, &alice()).await.body["name"], "Mine");

    let own = app.get("/api/agents", &bob()).await;
    assert_eq!(own.body["agents"], json!([]));
    let published = app.get("/api/agents?published=true", &bob()).await;
    assert_eq!(published.body["agents"][0]["id"], id.to_string());
    assert!(published.body["agents"][0].get("systemPrompt").is_none());
}

#[tokio::test]
async fn the_service_manages_agents_for_the_users_it_names() {
    let app = spawn_app().await;
    let response = app
        .post("/api/agents", SERVICE_TOKEN, &json!({"name": "A"}))
        .await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response.message().starts_with("userId"));
    let for_alice = app
        .create_agent(SERVICE_TOKEN, json!({"name": "A", "userId": ALICE}))
        .await;
    app.create_agent(&bob(), json!({"name": "B"})).await;

    let all = app.get("/api/agents", SERVICE_TOKEN).await;
    assert_eq!(all.body["agents"].as_array().unwrap().len(), 2);
    let alices = app.get("/api/agents", &alice()).await;
    assert_eq!(alices.body["agents"][0]["id"], for_alice.to_string());
    let edited = app
        .put(
            &format!("/api/agents/{for_alice}"),
            SERVICE_TOKEN,
            &json!({"isHeavy": true}),
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK);
    let forbidden = app
        .post(
            "/api/agents",
            &bob(),
            &json!({"name": "A", "userId": ALICE}),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn credits_are_granted_by_the_service_only_and_read_by_their_owner() {
    let app = spawn_app().await;
    let refused = app
        .post(
            "/api/credits/grant",
            &alice(),
            &json!({"userId": ALICE, "amount": 100}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.code(), "forbidden");

    let granted = app
        .post(
            "/api/credits/grant",
            SERVICE_TOKEN,
            &json!({"userId": ALICE, "amount": 100}),
        )
        .await;
    assert_eq!(granted.body, json!({"userId": ALICE, "balance": 100}));
    let zero = app
        .post(
            "/api/credits/grant",
            SERVICE_TOKEN,
            &json!({"userId": ALICE, "amount": 0}),
        )
        .await;
    assert_eq!(zero.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(zero.message().starts_with("amount"));

    let own = app.get("/api/credits", &alice()).await;
    assert_eq!(own.body, json!({"userId": ALICE, "balance": 100}));
    let bobs = app.get("/api/credits", &bob()).await;
    assert_eq!(bobs.body, json!({"userId": BOB, "balance": 0}));
    let snooping = app
        .get(&format!("/api/credits?userId={ALICE}"), &bob())
        .await;
    assert_eq!(snooping.status, StatusCode::FORBIDDEN);
    let service = app.get("/api/credits", SERVICE_TOKEN).await;
    assert_eq!(service.status, StatusCode::UNPROCESSABLE_ENTITY);
    let service = app
        .get(&format!("/api/credits?userId={ALICE}"), SERVICE_TOKEN)
        .await;
    assert_eq!(service.body["balance"], 100);
}
