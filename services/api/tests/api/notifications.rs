//! `notifications` payloads are checked at enqueue: a malformed one is
//! refused with 422 naming the field, before any worker sees it.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ALICE, assert_error, service, spawn_app, user};

const P256DH: &str =
    "BLn9b-VR0ca83knDNZ32dCHGyjJp-1riX9ZTN40MqV8K_LpQmLqxC_DoHvqvFXO_nGdAB4W9dogZb_sM-uV4JbY";
const AUTH: &str = "_ordMnz7uTCmrpBTeUV4Bw";

fn job(payload: Value) -> Value {
    json!({"jobType": "notifications", "payload": payload})
}

#[tokio::test]
async fn notifications_of_every_channel_are_accepted_in_their_queue() {
    let app = spawn_app().await;
    let subscription =
        json!({"endpoint": "https://push.example/sub/1", "keys": {"p256dh": P256DH, "auth": AUTH}});
    for payload in [
        json!({"type": "email", "recipients": ["ada@example.com", "Grace <grace@example.com>"],
               "subject": "Hi {{ name }}", "message": "Hello", "html": "<p>Hello</p>",
               "variables": {"name": "Ada"}}),
        json!({"type": "webhook", "recipient": "https://hooks.example/x", "data": {"id": 1}}),
        json!({"type": "slack", "recipient": "https://hooks.slack.com/services/T/B/x", "message": "hi"}),
        json!({"type": "discord", "recipient": "https://discord.com/api/webhooks/1/x", "message": "hi"}),
        json!({"type": "sms", "recipient": "+14155550100", "message": "hi"}),
        json!({"type": "push", "recipient": subscription, "subject": "New", "message": "hi"}),
    ] {
        let (status, body) = app.enqueue(&user(ALICE), job(payload.clone())).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{payload} → {body}");
        assert_eq!(body["queue"], "notifications");
    }
}

#[tokio::test]
async fn a_malformed_notification_is_refused_naming_the_field() {
    let app = spawn_app().await;
    for (payload, field) in [
        (
            json!({"recipient": "ada@example.com", "message": "x"}),
            "payload.type",
        ),
        (
            json!({"type": "fax", "recipient": "x", "message": "x"}),
            "payload.type",
        ),
        (json!({"type": "sms", "message": "x"}), "payload.recipient"),
        (
            json!({"type": "email", "recipient": "ada at example", "subject": "s", "message": "x"}),
            "payload.recipient",
        ),
        (
            json!({"type": "email", "recipients": ["ada@example.com", 7], "subject": "s", "message": "x"}),
            "payload.recipients[1]",
        ),
        (
            json!({"type": "email", "recipient": "ada@example.com", "message": "x"}),
            "payload.subject",
        ),
        (
            json!({"type": "slack", "recipient": "file:///etc/passwd", "message": "x"}),
            "payload.recipient",
        ),
        (
            json!({"type": "discord", "recipient": "https://discord.com/api/webhooks/1/x"}),
            "payload.message",
        ),
        (
            json!({"type": "sms", "recipient": "4155550100", "message": "x"}),
            "payload.recipient",
        ),
        (
            json!({"type": "slack", "recipient": "https://x.example/", "message": "x", "html": "<b>x</b>"}),
            "payload.html",
        ),
        (
            json!({"type": "push", "recipient": {"endpoint": "https://push.example/1", "keys": {"p256dh": P256DH}}, "message": "x"}),
            "payload.recipient.keys.auth",
        ),
        (
            json!({"type": "webhook", "recipient": "https://x.example/", "message": "x", "variables": "name=Ada"}),
            "payload.variables",
        ),
        (
            json!({"type": "webhook", "recipient": "https://x.example/", "message": "x", "to": "y"}),
            "payload.to",
        ),
    ] {
        let (status, body) = app.enqueue(service(), job(payload.clone())).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{payload} → {body}"
        );
        assert_error(&body, "validation_error");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{field}:")),
            "the message of {payload} does not name `{field}`: {message}"
        );
    }
}
