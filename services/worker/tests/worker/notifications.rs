//! `notifications` jobs end to end, against local fakes of every provider:
//! an SMTP sink speaking just enough SMTP, an HTTP receiver standing in for
//! webhooks, Slack, Discord and a push service, and a fake Twilio.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use roundhouse_db::{JobRow, NewJob};
use roundhouse_outbound::WebhookSigner;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;
use web_push_native::jwt_simple::algorithms::{ES256KeyPair, ES256PublicKey};
use web_push_native::jwt_simple::prelude::{ECDSAP256PublicKeyLike, NoCustomClaims};
use web_push_native::p256;
use web_push_native::p256::elliptic_curve::sec1::ToEncodedPoint;

use crate::helpers::Stack;

const WAIT: Duration = Duration::from_secs(20);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A request the fake HTTP receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    at: Instant,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// An HTTP server on 127.0.0.1 that records every request and answers what
/// `reply(path, earlier requests to that path)` says.
struct Receiver {
    base: String,
    port: u16,
    requests: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(reply: impl Fn(&str, usize) -> Response + Send + Sync + 'static) -> Self {
        let requests: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = requests.clone();
        let reply = Arc::new(reply);
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (log, reply) = (log.clone(), reply.clone());
            async move {
                let path = uri.path().to_owned();
                let mut log = log.lock().unwrap();
                let earlier = log.iter().filter(|r| r.path == path).count();
                log.push(Received {
                    path: path.clone(),
                    at: Instant::now(),
                    headers,
                    body,
                });
                reply(&path, earlier)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base: format!("http://127.0.0.1:{port}"),
            port,
            requests,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn to(&self, path: &str) -> Vec<Received> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    fn total(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

fn ok() -> Response {
    StatusCode::OK.into_response()
}

/// Enqueues a `notifications` job and waits until it has finished.
async fn notify(stack: &Stack, payload: Value) -> JobRow {
    let id = stack
        .enqueue_ok(json!({"jobType": "notifications", "payload": payload}))
        .await;
    finished(stack, id).await
}

async fn finished(stack: &Stack, id: Uuid) -> JobRow {
    stack
        .wait_for(id, WAIT, |job| {
            matches!(job.status.as_str(), "completed" | "failed")
        })
        .await
}

fn assert_failed_at_once(job: &JobRow, needle: &str) {
    assert_eq!(job.status, "failed", "{job:?}");
    assert_eq!(job.attempts, 1, "a permanent error is not retried");
    let error = job.error.as_deref().unwrap_or_default();
    assert!(
        error.contains(needle),
        "error `{error}` does not say `{needle}`"
    );
}

// ---------------------------------------------------------------- e-mail

/// A message the SMTP sink accepted.
#[derive(Debug, Clone, Default)]
struct Mail {
    from: String,
    to: Vec<String>,
    data: String,
}

/// A plain-text SMTP server on 127.0.0.1 (EHLO, MAIL, RCPT, DATA, RSET,
/// NOOP, QUIT) that keeps every message.
async fn smtp_sink() -> (u16, Arc<Mutex<Vec<Mail>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
    let store = mails.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(smtp_session(socket, store.clone()));
        }
    });
    (port, mails)
}

async fn smtp_session(
    socket: tokio::net::TcpStream,
    mails: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP\r\n").await?;
    let mut mail = Mail::default();
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            write.write_all(b"250 sink.test\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            mail = Mail {
                from: command["MAIL FROM:".len()..].trim().to_owned(),
                ..Mail::default()
            };
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(command["RCPT TO:".len()..].trim().to_owned());
            write.write_all(b"250 OK\r\n").await?;
        } else if upper == "DATA" {
            write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            loop {
                line.clear();
                if read.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                mail.data.push_str(unstuffed);
            }
            mails.lock().unwrap().push(std::mem::take(&mut mail));
            write.write_all(b"250 OK: queued\r\n").await?;
        } else if upper == "QUIT" {
            write.write_all(b"221 Bye\r\n").await?;
            return Ok(());
        } else {
            write.write_all(b"250 OK\r\n").await?;
        }
    }
}

#[tokio::test]
async fn an_email_reaches_each_recipient_with_its_templated_subject_and_body() {
    let (port, mails) = smtp_sink().await;
    let stack = Stack::api_only().await;
    let port = port.to_string();
    let worker = stack
        .worker_with(&[
            ("SMTP_HOST", "127.0.0.1"),
            ("SMTP_PORT", &port),
            ("SMTP_TLS", "none"),
            ("SMTP_FROM", "Roundhouse <noreply@roundhouse.test>"),
        ])
        .await;
    let job = notify(
        &stack,
        json!({
            "type": "email",
            "recipients": ["ada@example.com", "Grace Hopper <grace@example.com>"],
            "subject": "Hello {{ name }}",
            "message": "Your code is {{ code }}.",
            "html": "<p>{{ name }}: <b>{{ code }}</b></p>",
            "variables": {"name": "Ada & co", "code": 1234}
        }),
    )
    .await;
    assert_eq!(job.status, "completed", "{:?}", job.error);
    let result = job.result.unwrap();
    assert_eq!(result["type"], "email");
    assert_eq!(result["sent"], 2);
    // Recipients are served concurrently: order the messages for the checks.
    let mut mails = mails.lock().unwrap().clone();
    mails.sort_by(|a, b| a.to.cmp(&b.to));
    assert_eq!(mails.len(), 2, "one message per recipient");
    for (mail, (to, header)) in mails.iter().zip([
        ("<ada@example.com>", "To: ada@example.com"),
        (
            "<grace@example.com>",
            "To: \"Grace Hopper\" <grace@example.com>",
        ),
    ]) {
        assert_eq!(mail.from, "<noreply@roundhouse.test>");
        assert_eq!(mail.to, vec![to.to_owned()]);
        for expected in [
            "From: Roundhouse <noreply@roundhouse.test>\r\n",
            &format!("{header}\r\n"),
            "Subject: Hello Ada & co\r\n",
            "Content-Type: multipart/alternative",
            "Your code is 1234.",
            "<p>Ada &amp; co: <b>1234</b></p>",
        ] {
            assert!(
                mail.data.contains(expected),
                "no `{expected}` in\n{}",
                mail.data
            );
        }
    }
    let outcome = &result["recipients"][0];
    assert_eq!(outcome["recipient"], "ada@example.com");
    assert_eq!(outcome["status"], "sent");
    let message_id = outcome["providerId"].as_str().unwrap();
    assert!(message_id.ends_with("@roundhouse.test>"), "{message_id}");
    assert!(
        mails[0].data.contains(&format!("Message-ID: {message_id}")),
        "{}",
        mails[0].data
    );
    worker.stop().await.unwrap();
}

// ------------------------------------------------- webhooks, Slack, Discord

#[tokio::test]
async fn slack_discord_and_signed_webhooks_get_their_own_body_shapes() {
    let receiver = Receiver::start(|path, _| match path {
        "/discord" => StatusCode::NO_CONTENT.into_response(),
        "/slack" => (StatusCode::OK, "ok").into_response(),
        _ => ok(),
    })
    .await;
    let stack = Stack::api_only().await;
    let worker = stack
        .worker_with(&[
            ("ROUNDHOUSE_OUTBOUND_ALLOWLIST", "127.0.0.1"),
            ("NOTIFICATION_WEBHOOK_SECRET", SECRET),
        ])
        .await;
    let common = json!({
        "subject": "Deploy",
        "message": "v{{ version }} is live",
        "variables": {"version": "1.2"}
    });
    let payload = |channel: &str, path: &str| {
        let mut payload = common.clone();
        payload["type"] = json!(channel);
        payload["recipient"] = json!(receiver.url(path));
        payload
    };

    let slack = notify(&stack, payload("slack", "/slack")).await;
    assert_eq!(slack.status, "completed", "{:?}", slack.error);
    let [request] = receiver.to("/slack").try_into().unwrap();
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(request.json(), json!({"text": "*Deploy*\nv1.2 is live"}));

    let discord = notify(&stack, payload("discord", "/discord")).await;
    assert_eq!(discord.status, "completed", "{:?}", discord.error);
    let [request] = receiver.to("/discord").try_into().unwrap();
    assert_eq!(
        request.json(),
        json!({"content": "**Deploy**\nv1.2 is live"})
    );

    let mut generic = payload("webhook", "/hook");
    generic["data"] = json!({"release": {"id": 7}});
    let webhook = notify(&stack, generic).await;
    assert_eq!(webhook.status, "completed", "{:?}", webhook.error);
    let [request] = receiver.to("/hook").try_into().unwrap();
    let body = request.json();
    assert_eq!(body["type"], "notification");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        body["data"],
        json!({
            "jobId": webhook.id.to_string(),
            "subject": "Deploy",
            "message": "v1.2 is live",
            "data": {"release": {"id": 7}},
        })
    );
    let id = request.header("webhook-id");
    assert!(id.starts_with("msg_"), "{id}");
    WebhookSigner::from_secret(SECRET)
        .unwrap()
        .verify(
            id,
            request.header("webhook-timestamp"),
            request.header("webhook-signature"),
            &request.body,
            chrono::Utc::now().timestamp(),
            300,
        )
        .expect("the Standard Webhooks signature verifies");
    let result = webhook.result.unwrap();
    assert_eq!(
        result["recipients"],
        json!([{"recipient": receiver.url("/hook"), "status": "sent"}])
    );
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn internal_addresses_are_refused_without_an_allowlist_and_nothing_is_sent() {
    let receiver = Receiver::start(|_, _| ok()).await;
    let stack = Stack::api_only().await;
    // No ROUNDHOUSE_OUTBOUND_ALLOWLIST: only public addresses may be reached.
    let (vapid, _) = vapid_key();
    let worker = stack
        .worker_with(&[
            ("NOTIFICATION_WEBHOOK_SECRET", SECRET),
            ("VAPID_PRIVATE_KEY", &vapid),
            ("VAPID_SUBJECT", "mailto:ops@roundhouse.test"),
        ])
        .await;
    let (subscription, _) = subscription(&receiver.url("/push"));
    let loopback = receiver.url("/hook");
    let localhost = format!("http://localhost:{}/hook", receiver.port);
    for (channel, recipient, refusal) in [
        (
            "webhook",
            json!(loopback),
            "127.0.0.1 is not a public address",
        ),
        (
            "slack",
            json!("http://10.0.0.1/"),
            "10.0.0.1 is not a public address",
        ),
        (
            "discord",
            json!("http://169.254.169.254/latest/meta-data"),
            "169.254.169.254 is not a public address",
        ),
        (
            "webhook",
            json!(localhost),
            "refused to connect to localhost",
        ),
        ("push", subscription, "127.0.0.1 is not a public address"),
    ] {
        let job = notify(
            &stack,
            json!({"type": channel, "recipient": recipient, "message": "hi"}),
        )
        .await;
        assert_failed_at_once(&job, refusal);
        assert_failed_at_once(&job, "refused by the outbound guard");
    }
    // One refused recipient among others: nobody is sent anything.
    let job = notify(
        &stack,
        json!({"type": "webhook", "recipients": ["http://93.184.215.14/", loopback], "message": "hi"}),
    )
    .await;
    assert_failed_at_once(&job, "nothing was sent");
    assert_eq!(receiver.total(), 0, "the local server received nothing");
    worker.stop().await.unwrap();
}

#[tokio::test]
async fn server_errors_are_retried_client_errors_fail_at_once_and_429_waits() {
    let receiver = Receiver::start(|path, earlier| match (path, earlier) {
        ("/flaky", 0) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        ("/bad", _) => (StatusCode::BAD_REQUEST, "invalid_payload").into_response(),
        ("/limited", 0) => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "2")]).into_response(),
        _ => ok(),
    })
    .await;
    let stack = Stack::api_only().await;
    let worker = stack
        .worker_with(&[("ROUNDHOUSE_OUTBOUND_ALLOWLIST", "127.0.0.1")])
        .await;
    let scheduler = stack.scheduler().await;
    let slack =
        |path: &str| json!({"type": "slack", "recipient": receiver.url(path), "message": "hi"});

    let flaky = notify(&stack, slack("/flaky")).await;
    assert_eq!(flaky.status, "completed", "{:?}", flaky.error);
    assert_eq!(flaky.attempts, 2);
    assert_eq!(receiver.to("/flaky").len(), 2);

    let bad = notify(&stack, slack("/bad")).await;
    assert_failed_at_once(&bad, "HTTP 400 Bad Request: invalid_payload");
    assert_eq!(receiver.to("/bad").len(), 1);

    // The test retry backoff is at most 200 ms: a gap of two seconds is
    // the provider's Retry-After.
    let limited = notify(&stack, slack("/limited")).await;
    assert_eq!(limited.status, "completed", "{:?}", limited.error);
    assert_eq!(limited.attempts, 2);
    let requests = receiver.to("/limited");
    let gap = requests[1].at - requests[0].at;
    assert!(gap >= Duration::from_millis(1900), "retried after {gap:?}");
    worker.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}

#[tokio::test]
async fn a_retry_does_not_notify_the_recipients_already_served_nor_does_a_repeated_key() {
    let receiver = Receiver::start(|path, earlier| match (path, earlier) {
        ("/second", 0) => StatusCode::BAD_GATEWAY.into_response(),
        _ => ok(),
    })
    .await;
    let stack = Stack::api_only().await;
    let worker = stack
        .worker_with(&[
            ("ROUNDHOUSE_OUTBOUND_ALLOWLIST", "127.0.0.1"),
            ("NOTIFICATION_WEBHOOK_SECRET", SECRET),
        ])
        .await;
    let scheduler = stack.scheduler().await;
    let enqueue = json!({
        "jobType": "notifications",
        "idempotencyKey": "welcome-42",
        "userId": "user-42",
        "payload": {
            "type": "webhook",
            "recipients": [receiver.url("/first"), receiver.url("/second"), receiver.url("/first")],
            "message": "welcome"
        }
    });
    let id = stack.enqueue_ok(enqueue.clone()).await;
    let job = finished(&stack, id).await;
    assert_eq!(job.status, "completed", "{:?}", job.error);
    assert_eq!(job.attempts, 2, "the failed recipient was retried");
    assert_eq!(receiver.to("/first").len(), 1, "exactly one message");
    assert_eq!(receiver.to("/second").len(), 2);
    let statuses: Vec<_> = job.result.unwrap()["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["sent", "sent", "skipped_duplicate"]);
    // The second recipient's two attempts carry the same webhook-id, so a
    // receiver could drop a repeat.
    let second = receiver.to("/second");
    assert_eq!(
        second[0].header("webhook-id"),
        second[1].header("webhook-id")
    );

    // Retention deletes the job; the same key enqueued again sends nothing.
    sqlx::query("DELETE FROM jobs WHERE id = $1")
        .bind(id)
        .execute(stack.env.db.pool())
        .await
        .unwrap();
    let again = stack.enqueue_ok(enqueue).await;
    assert_ne!(again, id);
    let job = finished(&stack, again).await;
    assert_eq!(job.status, "completed", "{:?}", job.error);
    assert_eq!(job.result.unwrap()["skippedDuplicate"], 3);
    assert_eq!(receiver.to("/first").len(), 1);
    assert_eq!(receiver.to("/second").len(), 2);
    worker.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}

// -------------------------------------------------------------------- SMS

#[tokio::test]
async fn an_sms_goes_through_a_twilio_compatible_api() {
    let receiver = Receiver::start(|path, _| match path {
        "/2010-04-01/Accounts/AC0123/Messages.json" => (
            StatusCode::CREATED,
            axum::Json(json!({"sid": "SM0042", "status": "queued"})),
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    })
    .await;
    let stack = Stack::api_only().await;
    // The Twilio base URL is the operator's, not user input: no allowlist needed.
    let worker = stack
        .worker_with(&[
            ("TWILIO_ACCOUNT_SID", "AC0123"),
            ("TWILIO_AUTH_TOKEN", "twilio-token"),
            ("TWILIO_FROM_NUMBER", "+15005550006"),
            ("TWILIO_BASE_URL", &receiver.base),
        ])
        .await;
    let job = notify(
        &stack,
        json!({"type": "sms", "recipient": "+14155550100", "message": "Your code is {{ code }}",
               "variables": {"code": "9876"}}),
    )
    .await;
    assert_eq!(job.status, "completed", "{:?}", job.error);
    assert_eq!(
        job.result.unwrap()["recipients"],
        json!([{"recipient": "+14155550100", "status": "sent", "providerId": "SM0042"}])
    );
    let [request] = receiver
        .to("/2010-04-01/Accounts/AC0123/Messages.json")
        .try_into()
        .unwrap();
    assert_eq!(
        request.header("authorization"),
        format!("Basic {}", STANDARD.encode("AC0123:twilio-token"))
    );
    assert_eq!(
        request.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect();
    assert_eq!(
        form,
        [
            ("To".to_owned(), "+14155550100".to_owned()),
            ("From".to_owned(), "+15005550006".to_owned()),
            ("Body".to_owned(), "Your code is 9876".to_owned()),
        ]
    );
    worker.stop().await.unwrap();
}

// ------------------------------------------------------------------- push

/// A VAPID key pair: the private key as `VAPID_PRIVATE_KEY` wants it, and
/// the public key.
fn vapid_key() -> (String, ES256PublicKey) {
    let pair = ES256KeyPair::from_bytes(&[3u8; 32]).unwrap();
    (URL_SAFE_NO_PAD.encode(pair.to_bytes()), pair.public_key())
}

/// A browser's subscription to `endpoint`, and its private key and auth
/// secret for decrypting what is pushed to it.
fn subscription(endpoint: &str) -> (Value, (p256::SecretKey, [u8; 16])) {
    let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
    let public = secret.public_key().to_encoded_point(false);
    let auth = [9u8; 16];
    let json = json!({
        "endpoint": endpoint,
        "keys": {
            "p256dh": URL_SAFE_NO_PAD.encode(public.as_bytes()),
            "auth": URL_SAFE_NO_PAD.encode(auth),
        }
    });
    (json, (secret, auth))
}

#[tokio::test]
async fn a_push_message_is_encrypted_for_the_subscription_and_signed_with_vapid() {
    let receiver = Receiver::start(|path, _| match path {
        "/gone" => StatusCode::GONE.into_response(),
        _ => (StatusCode::CREATED, [("location", "/messages/m1")]).into_response(),
    })
    .await;
    let stack = Stack::api_only().await;
    let (vapid, vapid_public) = vapid_key();
    let worker = stack
        .worker_with(&[
            ("ROUNDHOUSE_OUTBOUND_ALLOWLIST", "127.0.0.1"),
            ("VAPID_PRIVATE_KEY", &vapid),
            ("VAPID_SUBJECT", "mailto:ops@roundhouse.test"),
        ])
        .await;
    let (browser, (browser_secret, auth)) = subscription(&receiver.url("/push/abc"));
    let job = notify(
        &stack,
        json!({"type": "push", "recipient": browser, "subject": "New message",
               "message": "From {{ sender }}", "data": {"url": "/inbox/7"},
               "variables": {"sender": "Ada"}}),
    )
    .await;
    assert_eq!(job.status, "completed", "{:?}", job.error);
    assert_eq!(
        job.result.unwrap()["recipients"][0]["providerId"],
        "/messages/m1"
    );

    let [request] = receiver.to("/push/abc").try_into().unwrap();
    assert_eq!(request.header("content-encoding"), "aes128gcm");
    assert_eq!(request.header("ttl"), "43200");
    let authorization = request.header("authorization");
    let (token, key) = authorization
        .strip_prefix("vapid t=")
        .and_then(|rest| rest.split_once(", k="))
        .unwrap_or_else(|| panic!("not a VAPID authorization: {authorization}"));
    assert_eq!(
        URL_SAFE_NO_PAD.decode(key).unwrap(),
        vapid_public.public_key().to_bytes_uncompressed(),
        "k is the operator's VAPID public key"
    );
    let claims = vapid_public
        .verify_token::<NoCustomClaims>(token, None)
        .expect("the VAPID JWT verifies with the public key");
    assert_eq!(
        claims.subject.as_deref(),
        Some("mailto:ops@roundhouse.test")
    );
    let audience = claims.audiences.expect("the JWT names its audience");
    assert_eq!(
        audience.into_string().unwrap(),
        receiver.base,
        "the push service's origin, port included"
    );

    let plaintext = web_push_native::decrypt(request.body.to_vec(), &browser_secret, &auth.into())
        .expect("the body decrypts with the subscription's keys");
    assert_eq!(
        serde_json::from_slice::<Value>(&plaintext).unwrap(),
        json!({"title": "New message", "body": "From Ada", "data": {"url": "/inbox/7"}})
    );

    let (gone, _) = subscription(&receiver.url("/gone"));
    let job = notify(
        &stack,
        json!({"type": "push", "recipient": gone, "message": "hi"}),
    )
    .await;
    assert_failed_at_once(&job, "the subscription has expired or was unsubscribed");
    worker.stop().await.unwrap();
}

// ------------------------------------------------------ what cannot be sent

#[tokio::test]
async fn jobs_that_cannot_be_sent_fail_at_once_saying_why() {
    let receiver = Receiver::start(|_, _| ok()).await;
    let stack = Stack::api_only().await;
    let worker = stack
        .worker_with(&[("ROUNDHOUSE_OUTBOUND_ALLOWLIST", "127.0.0.1")])
        .await;
    let scheduler = stack.scheduler().await;

    let job = notify(
        &stack,
        json!({"type": "slack", "recipient": receiver.url("/slack"),
               "message": "Hi {{ name }}, your order {{ order.id }} shipped",
               "variables": {"order": {"total": 3}}}),
    )
    .await;
    assert_failed_at_once(
        &job,
        "payload.message: undefined variable `name`, `order.id`",
    );

    // No SMTP settings on this worker.
    let job = notify(
        &stack,
        json!({"type": "email", "recipient": "ada@example.com", "subject": "s", "message": "m"}),
    )
    .await;
    assert_failed_at_once(&job, "email needs SMTP_HOST");
    let job = notify(
        &stack,
        json!({"type": "webhook", "recipient": receiver.url("/hook"), "message": "m"}),
    )
    .await;
    assert_failed_at_once(&job, "webhook needs NOTIFICATION_WEBHOOK_SECRET");

    // A payload that never went through the API (stored directly, as an
    // older release or a hand-written row might): refused by the worker.
    let id = Uuid::now_v7();
    stack
        .env
        .db
        .enqueue_jobs(&[NewJob {
            id,
            queue: "notifications".to_owned(),
            job_type: "notifications".to_owned(),
            user_id: None,
            payload: json!({"type": "pager", "recipient": "x", "message": "m"}),
            priority: 0,
            max_retries: 3,
            timeout_seconds: 60,
            idempotency_key: None,
            run_at: None,
            delay_ms: None,
            traceparent: None,
        }])
        .await
        .unwrap();
    let job = finished(&stack, id).await;
    assert_failed_at_once(&job, "payload.type: unknown channel `pager`");
    assert_eq!(receiver.total(), 0);
    worker.stop().await.unwrap();
    scheduler.stop().await.unwrap();
}
