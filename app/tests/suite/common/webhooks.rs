//! A webhook receiver inside the test process, a signature check written from the Standard
//! Webhooks specification (not the service's own), and the helpers that register endpoints: for
//! the webhook tests and the randomized fault schedule.

use super::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stock_flow::Config;

// ---- the receiver ----

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Ok,
    Status(u16),
    /// Answers 200 after this long.
    Sleep(Duration),
}

/// A call the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub content_type: String,
    pub body: String,
    /// What it answered.
    pub answered: u16,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

pub struct Inbox {
    calls: Mutex<Vec<Received>>,
    mode: Mutex<Mode>,
}

pub struct Receiver {
    inbox: Arc<Inbox>,
    pub url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Self {
        use poem::listener::{Acceptor, Listener};
        let inbox = Arc::new(Inbox {
            calls: Mutex::new(Vec::new()),
            mode: Mutex::new(Mode::Ok),
        });
        let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
        let seen = inbox.clone();
        let endpoint = poem::endpoint::make(move |req: poem::Request| {
            let seen = seen.clone();
            async move {
                let header = |n: &str| {
                    req.headers()
                        .get(n)
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default()
                };
                let (id, timestamp, signature, content_type) = (
                    header("webhook-id"),
                    header("webhook-timestamp"),
                    header("webhook-signature"),
                    header("content-type"),
                );
                let body = req.into_body().into_string().await.unwrap_or_default();
                let mode = *seen.mode.lock().unwrap();
                let answered = match mode {
                    Mode::Ok => 200,
                    Mode::Status(s) => s,
                    Mode::Sleep(d) => {
                        tokio::time::sleep(d).await;
                        200
                    }
                };
                seen.calls.lock().unwrap().push(Received {
                    id,
                    timestamp,
                    signature,
                    content_type,
                    body,
                    answered,
                });
                poem::http::StatusCode::from_u16(answered).unwrap()
            }
        });
        let server = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor)
                .run(endpoint)
                .await;
        });
        Self {
            inbox,
            url: format!("http://127.0.0.1:{port}/hooks"),
            server,
        }
    }

    pub fn set(&self, mode: Mode) {
        *self.inbox.mode.lock().unwrap() = mode;
    }

    pub fn calls(&self) -> Vec<Received> {
        self.inbox.calls.lock().unwrap().clone()
    }

    /// The calls it answered with a 2xx, in the order they came.
    pub fn delivered(&self) -> Vec<Received> {
        self.calls()
            .into_iter()
            .filter(|c| (200..300).contains(&c.answered))
            .collect()
    }

    /// Waits until it has answered `n` distinct events with a 2xx.
    pub async fn wait_for_events(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got: BTreeSet<String> = self.delivered().into_iter().map(|c| c.id).collect();
            if got.len() >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver got {} of {n} events",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// ---- verification, from the Standard Webhooks specification ----

/// Whether one of the space-separated `v1,<base64>` signatures of `header` is the HMAC-SHA256
/// of `{id}.{timestamp}.{body}` under the secret's key.
pub fn verifies(secret: &str, id: &str, timestamp: &str, body: &str, header: &str) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .expect("base64 after whsec_");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    header
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == expected)
}

pub fn assert_signed(secret: &str, c: &Received) {
    assert!(
        verifies(secret, &c.id, &c.timestamp, &c.body, &c.signature),
        "bad signature on {}: {}",
        c.id,
        c.signature
    );
    assert_eq!(c.content_type, "application/json");
    let ts: i64 = c.timestamp.parse().expect("a Unix timestamp");
    let now = chrono::Utc::now().timestamp();
    assert!((now - ts).abs() < 300, "timestamp {ts} is not now ({now})");
    assert!(c.id.starts_with("msg_"), "{}", c.id);
}

// ---- helpers ----

/// Short waits, for tests that cannot wait seconds: retries from 50 ms, at most 400 ms apart.
pub fn quick(c: &mut Config) {
    c.webhook_tick_ms = 50;
    c.webhook_retry_first_ms = 50;
    c.webhook_retry_max_ms = 400;
    c.webhook_lease_ms = 2_000;
}

pub const ALL_TYPES: [&str; 10] = [
    "order.accepted",
    "order.confirmed",
    "order.rejected",
    "order.cancelled",
    "order.lost",
    "order.fulfillment_changed",
    "hold.expired",
    "stock.low",
    "stock.out",
    "stock.back",
];

/// Registers an endpoint for `types` at `url`: answers its id and its secret.
pub async fn register(t: &TestApp, url: &str, types: &[&str]) -> (u64, String) {
    let (s, b) = json_of(
        t.admin()
            .post(
                "/api/admin/webhooks",
                &json!({"url": url, "events": types, "description": "test receiver"}),
            )
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    (
        b["webhook"]["webhookId"].as_u64().unwrap(),
        b["secret"].as_str().unwrap().to_owned(),
    )
}

/// Where endpoint `webhook`'s events start: the feed position it was created at (events placed
/// after it are its own).
pub async fn endpoint_start(t: &TestApp, webhook: u64) -> u64 {
    sqlx::query_scalar("SELECT fanned_to_seq FROM webhook_endpoints WHERE id = ?")
        .bind(webhook)
        .fetch_one(&t.db)
        .await
        .unwrap()
}

/// Every violation of the delivery guarantees for endpoint `webhook` (subscribed to every type,
/// its events those after `from_seq`), once its deliveries are done (waiting up to 60 s): each
/// event reached `receiver` with a 2xx, signed with `secret`, its body the payload the outbox
/// holds; the first receipts of each subject's events came in the order of the feed; no
/// delivery was given up.
pub async fn delivery_violations(
    t: &TestApp,
    receiver: &Receiver,
    webhook: u64,
    from_seq: u64,
    secret: &str,
) -> Vec<String> {
    let mut v = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        while t.storage().events().sequence().await.unwrap() > 0 {}
        let (pending, behind): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = ? \
             AND status = 'PENDING'), \
             CAST((SELECT fanned_to_seq FROM webhook_endpoints WHERE id = ?) < \
             (SELECT COALESCE(MAX(seq), 0) FROM events) AS SIGNED)",
        )
        .bind(webhook)
        .bind(webhook)
        .fetch_one(&t.db)
        .await
        .unwrap();
        if pending == 0 && behind == 0 {
            break;
        }
        if Instant::now() > deadline {
            v.push(format!(
                "deliveries: {pending} still pending 60 s after the run (fanned out: {})",
                behind == 0
            ));
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let events: Vec<(u64, String, String, String)> = sqlx::query_as(
        "SELECT seq, event_id, subject, payload FROM events WHERE seq > ? ORDER BY seq",
    )
    .bind(from_seq)
    .fetch_all(&t.db)
    .await
    .unwrap();
    let failed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM webhook_deliveries WHERE endpoint_id = ? AND status = 'FAILED'",
    )
    .bind(webhook)
    .fetch_one(&t.db)
    .await
    .unwrap();
    if failed > 0 {
        v.push(format!("deliveries: {failed} given up"));
    }
    // The first 2xx receipt of each event, in the order they came.
    let mut first: std::collections::HashMap<String, (usize, Received)> = Default::default();
    for (i, c) in receiver.delivered().into_iter().enumerate() {
        if !verifies(secret, &c.id, &c.timestamp, &c.body, &c.signature) {
            v.push(format!("deliveries: {} has a bad signature", c.id));
        }
        first.entry(c.id.clone()).or_insert((i, c));
    }
    let mut last_of: std::collections::HashMap<&str, (usize, u64)> = Default::default();
    for (seq, id, subject, payload) in &events {
        let Some((at, c)) = first.get(id) else {
            v.push(format!(
                "deliveries: event {seq} ({id}, {subject}) never arrived"
            ));
            continue;
        };
        if &c.body != payload {
            v.push(format!("deliveries: event {id} arrived as {}", c.body));
        }
        if let Some((before, prev)) = last_of.get(subject.as_str()) {
            if at < before {
                v.push(format!(
                    "deliveries: {subject}: event {seq} arrived before event {prev}"
                ));
            }
        }
        last_of.insert(subject, (*at, *seq));
    }
    if v.is_empty() {
        eprintln!(
            "deliveries: {} events reached the endpoint, signed and in order ({} calls)",
            events.len(),
            receiver.calls().len()
        );
    }
    v
}
