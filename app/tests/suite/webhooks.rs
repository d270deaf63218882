//! Webhooks end to end: a receiver inside the test process records every call; each delivery
//! is checked with a signature verification written here from the specification (not the
//! service's own function). The invariants: every event reaches its endpoints, signed; an
//! order's events arrive in the order they happened; a receiver that is down loses nothing and a
//! slow one does not slow orders; a rotated-out secret signs for its window only; an endpoint
//! that fails for its window is disabled; two instances deliver each event once.

use crate::common::webhooks::*;
use crate::common::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Places a DB-lock order of one unit of `p`: answers its id.
async fn order(t: &TestApp, p: u64) -> String {
    let (s, b) = json_of(
        t.post("/api/orders", &normal_order(&[(p, 1)], SEOUL.0, SEOUL.1))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["orderId"].as_str().unwrap().to_owned()
}

async fn cancel(t: &TestApp, id: &str) {
    let (s, b) = json_of(t.patch(&format!("/api/orders/{id}/cancel")).await).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

/// Per order, the types of its events as delivered (first delivery of each event, in the order
/// the receiver got them).
fn types_per_order(calls: &[Received]) -> BTreeMap<String, Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut per: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in calls {
        if !seen.insert(c.id.clone()) {
            continue;
        }
        let v = c.json();
        if let Some(order) = v["data"]["orderId"].as_str() {
            per.entry(order.to_owned())
                .or_default()
                .push(v["type"].as_str().unwrap().to_owned());
        }
    }
    per
}

async fn webhook(t: &TestApp, id: u64) -> Value {
    let (s, b) = json_of(t.admin().get(&format!("/api/admin/webhooks/{id}")).await).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

async fn deliveries(t: &TestApp, id: u64, query: &str) -> Vec<Value> {
    let (s, b) = json_of(
        t.admin()
            .get(&format!("/api/admin/webhooks/{id}/deliveries{query}"))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["deliveries"].as_array().unwrap().clone()
}

async fn count(t: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&t.db).await.unwrap()
}

// ---- the tests ----

/// Registration shows the secret once; reads never show it; only http(s) URLs with known event
/// types are taken, with a useful detail; a change, a disable and a delete do what they say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_is_registered_with_its_secret_shown_once() {
    let t = TestApp::spawn().await;
    let (s, created) = json_of(
        t.admin()
            .post(
                "/api/admin/webhooks",
                &json!({"url": "https://shop.example.com/hooks", "events": ["order.confirmed", "stock.out"]}),
            )
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap();
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    assert!(key.len() >= 24, "{} key bytes", key.len());
    let shown = &created["webhook"];
    assert_eq!(shown["enabled"], true);
    assert_eq!(shown["events"], json!(["order.confirmed", "stock.out"]));
    let id = shown["webhookId"].as_u64().unwrap();

    let read = webhook(&t, id).await;
    assert!(read.get("secret").is_none(), "{read}");
    let (_, list) = json_of(t.admin().get("/api/admin/webhooks").await).await;
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(secret), "{list}");
    assert!(!list.to_string().contains("whsec_"), "{list}");

    for (body, status, detail) in [
        (
            json!({"url": "ftp://shop.example.com/h", "events": ["order.confirmed"]}),
            422,
            "http or https",
        ),
        (
            json!({"url": "not a url", "events": ["order.confirmed"]}),
            422,
            "absolute URL",
        ),
        (
            json!({"url": "https://shop.example.com/h", "events": ["order.shipped"]}),
            400,
            "order.shipped",
        ),
        (
            json!({"url": "https://shop.example.com/h", "events": []}),
            400,
            "",
        ),
        (json!({"url": "https://shop.example.com/h"}), 400, ""),
    ] {
        let (s, b) = json_of(t.admin().post("/api/admin/webhooks", &body).await).await;
        assert_eq!(s.as_u16(), status, "{body} → {b}");
        assert!(b["detail"].as_str().unwrap_or("").contains(detail), "{b}");
    }

    let (s, b) = json_of(
        t.admin()
            .patch(
                &format!("/api/admin/webhooks/{id}"),
                &json!({"enabled": false, "description": "paused"}),
            )
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["enabled"].clone(), b["description"].clone()),
        (json!(false), json!("paused"))
    );
    assert_eq!(b["disabledReason"], "disabled by an operator");
    let (_, b) = json_of(
        t.admin()
            .patch(
                &format!("/api/admin/webhooks/{id}"),
                &json!({"enabled": true}),
            )
            .await,
    )
    .await;
    assert_eq!(b["enabled"], true);
    assert!(b.get("disabledReason").is_none_or(Value::is_null), "{b}");

    let r = t.admin().delete(&format!("/api/admin/webhooks/{id}")).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = t.admin().get(&format!("/api/admin/webhooks/{id}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// With `WEBHOOK_ALLOWED_HOSTS`, only those hosts are endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_list_refuses_other_hosts() {
    let t =
        TestApp::spawn_with(|c| c.webhook_allowed_hosts = vec!["hooks.example.com".into()]).await;
    let (s, b) = json_of(
        t.admin()
            .post(
                "/api/admin/webhooks",
                &json!({"url": "http://169.254.169.254/latest", "events": ["order.confirmed"]}),
            )
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["detail"].as_str().unwrap().contains("169.254.169.254"),
        "{b}"
    );
    register(&t, "https://hooks.example.com/x", &["order.confirmed"]).await;
}

/// 64 clients place and cancel orders at once: every event reaches the receiver once, signed,
/// and each order's `order.confirmed` arrives before its `order.cancelled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_arrives_signed_and_in_order_per_order_under_64_clients() {
    let t = TestApp::spawn_with(quick).await;
    let (_, p) = t.warehouse_with_product(1_000, 100_000).await;
    let rx = Receiver::start().await;
    let (_, secret) = register(&t, &rx.url, &ALL_TYPES).await;

    let t = Arc::new(t);
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let t = t.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..3 {
                    let id = order(&t, p).await;
                    cancel(&t, &id).await;
                    ids.push(id);
                }
                ids
            })
        })
        .collect();
    let mut orders = Vec::new();
    for c in join_all(clients).await {
        orders.extend(c.unwrap());
    }
    assert_eq!(orders.len(), 192);

    rx.wait_for_events(384, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = rx.delivered();
    assert_eq!(calls.len(), 384, "each event delivered once, none twice");
    for c in &calls {
        assert_signed(&secret, c);
    }
    let per = types_per_order(&calls);
    assert_eq!(per.len(), 192);
    for id in &orders {
        assert_eq!(
            per[id],
            ["order.confirmed", "order.cancelled"],
            "order {id}'s events out of order"
        );
    }
    let events = count(&t, "SELECT COUNT(*) FROM events").await;
    assert_eq!(events, 384);
    let delivered = count(
        &t,
        "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'DELIVERED'",
    )
    .await;
    assert_eq!(delivered, 384);
}

/// A receiver answering 500 for a while, then back: every event arrives after, each order's in
/// order; meanwhile the operators see the failed attempts and the endpoint failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_down_for_a_while_gets_everything_in_order_after() {
    let t = TestApp::spawn_with(quick).await;
    let (_, p) = t.warehouse_with_product(1_000, 10_000).await;
    let rx = Receiver::start().await;
    rx.set(Mode::Status(500));
    let (hook, secret) = register(&t, &rx.url, &["order.confirmed", "order.cancelled"]).await;

    let mut orders = Vec::new();
    for _ in 0..20 {
        let id = order(&t, p).await;
        cancel(&t, &id).await;
        orders.push(id);
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(rx.delivered().is_empty());
    assert!(!rx.calls().is_empty(), "nothing was tried");
    let pending = deliveries(&t, hook, "?status=pending&limit=500").await;
    assert_eq!(pending.len(), 40, "every event owed");
    let tried = pending
        .iter()
        .find(|d| d["attempts"].as_u64() > Some(0))
        .expect("an attempt");
    assert_eq!(tried["lastStatusCode"], 500, "{tried}");
    assert!(
        tried["lastError"].as_str().unwrap().contains("500"),
        "{tried}"
    );
    assert_eq!(tried["attemptLog"][0]["statusCode"], 500, "{tried}");
    assert!(tried["nextAttemptAt"].is_string(), "{tried}");
    assert!(webhook(&t, hook).await["failingSince"].is_string());
    t.wait_for_metrics(&["stockflow_cluster_webhook_deliveries_pending 40"])
        .await;

    rx.set(Mode::Ok);
    rx.wait_for_events(40, Duration::from_secs(30)).await;
    let calls = rx.delivered();
    for c in &calls {
        assert_signed(&secret, c);
    }
    let per = types_per_order(&calls);
    for id in &orders {
        assert_eq!(
            per[id],
            ["order.confirmed", "order.cancelled"],
            "order {id}"
        );
    }
    // Nothing was given up: every delivery is delivered, once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.delivered().len(), 40);
    assert!(deliveries(&t, hook, "?status=pending").await.is_empty());
    assert_eq!(
        deliveries(&t, hook, "?status=delivered&limit=500")
            .await
            .len(),
        40
    );
    assert!(webhook(&t, hook)
        .await
        .get("failingSince")
        .is_none_or(Value::is_null));
    let scrape = t.get("/metrics").await.text().await.unwrap();
    let figure = |outcome: &str| -> u64 {
        let prefix = format!("stockflow_webhook_deliveries_total{{outcome=\"{outcome}\"}} ");
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {prefix} in the scrape"))
            .parse()
            .unwrap()
    };
    assert_eq!(figure("delivered"), 40);
    assert!(figure("retried") >= 1);
    assert_eq!(figure("given_up"), 0);
}

/// A receiver slower than the timeout: its calls fail by the timeout, and orders are answered
/// as fast as without it (loosely: within three times, or 100 ms, of the median without).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_receiver_does_not_slow_orders() {
    let t = TestApp::spawn_with(|c| {
        quick(c);
        c.webhook_timeout_ms = 300;
    })
    .await;
    let (_, p) = t.warehouse_with_product(1_000, 10_000).await;
    async fn median_order_ms(t: &TestApp, p: u64) -> f64 {
        let mut took = Vec::new();
        for _ in 0..40 {
            let start = Instant::now();
            order(t, p).await;
            took.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        took.sort_by(f64::total_cmp);
        took[took.len() / 2]
    }
    let without = median_order_ms(&t, p).await;

    let rx = Receiver::start().await;
    rx.set(Mode::Sleep(Duration::from_secs(5)));
    let (hook, _) = register(&t, &rx.url, &ALL_TYPES).await;
    let with = median_order_ms(&t, p).await;
    assert!(
        with <= (without * 3.0).max(without + 100.0),
        "median order took {with:.1} ms with a slow receiver, {without:.1} ms without"
    );
    // It was called, and each call was cut at the timeout.
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let d = deliveries(&t, hook, "?limit=500").await;
        if let Some(f) = d.iter().find(|d| d["attempts"].as_u64() > Some(0)) {
            break f.clone();
        }
        assert!(Instant::now() < deadline, "no attempt was made");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(failed["lastStatusCode"].is_null(), "{failed}");
    assert!(
        failed["lastError"]
            .as_str()
            .unwrap()
            .contains("within 300 ms"),
        "{failed}"
    );
    assert!(failed["attemptLog"][0]["durationMs"].as_u64().unwrap() < 2_000);
}

/// After a rotation, deliveries carry two signatures, one per secret, for the overlap; then
/// only the new secret's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_keeps_signing_for_its_window_only() {
    let t = TestApp::spawn_with(|c| {
        quick(c);
        c.webhook_secret_overlap_secs = 2;
    })
    .await;
    let (_, p) = t.warehouse_with_product(1_000, 1_000).await;
    let rx = Receiver::start().await;
    let (hook, old) = register(&t, &rx.url, &["order.confirmed"]).await;

    order(&t, p).await;
    rx.wait_for_events(1, Duration::from_secs(10)).await;
    let first = &rx.delivered()[0];
    assert_signed(&old, first);
    assert_eq!(first.signature.split(' ').count(), 1);

    let (s, rotated) = json_of(
        t.admin()
            .post_empty(&format!("/api/admin/webhooks/{hook}/rotate-secret"))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(
        rotated["webhook"]["previousSecretUntil"].is_string(),
        "{rotated}"
    );
    order(&t, p).await;
    rx.wait_for_events(2, Duration::from_secs(10)).await;
    let second = &rx.delivered()[1];
    assert_eq!(
        second.signature.split(' ').count(),
        2,
        "{}",
        second.signature
    );
    assert_signed(&old, second);
    assert_signed(&new, second);

    tokio::time::sleep(Duration::from_millis(2_200)).await;
    order(&t, p).await;
    rx.wait_for_events(3, Duration::from_secs(10)).await;
    let third = &rx.delivered()[2];
    assert_eq!(third.signature.split(' ').count(), 1, "{}", third.signature);
    assert_signed(&new, third);
    assert!(!verifies(
        &old,
        &third.id,
        &third.timestamp,
        &third.body,
        &third.signature
    ));
    assert!(webhook(&t, hook)
        .await
        .get("previousSecretUntil")
        .is_none_or(Value::is_null));
}

/// An endpoint whose every attempt fails for its window is disabled, with the reason; enabled
/// again, it gets what was pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_for_its_window_is_disabled_with_the_reason() {
    let t = TestApp::spawn_with(|c| {
        quick(c);
        c.webhook_disable_after_secs = 1;
    })
    .await;
    let (_, p) = t.warehouse_with_product(1_000, 1_000).await;
    let rx = Receiver::start().await;
    rx.set(Mode::Status(500));
    let (hook, secret) = register(&t, &rx.url, &["order.confirmed"]).await;
    let id = order(&t, p).await;

    let deadline = Instant::now() + Duration::from_secs(15);
    let disabled = loop {
        let w = webhook(&t, hook).await;
        if w["enabled"] == false {
            break w;
        }
        assert!(Instant::now() < deadline, "never disabled: {w}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = disabled["disabledReason"].as_str().unwrap();
    assert!(reason.contains("every delivery failed for 1 s"), "{reason}");
    assert!(reason.contains("HTTP 500"), "{reason}");
    assert!(disabled["disabledAt"].is_string());
    t.wait_for_metrics(&["stockflow_cluster_webhook_endpoints_disabled 1"])
        .await;
    // Disabled: no more calls.
    let tried = rx.calls().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.calls().len(), tried);

    rx.set(Mode::Ok);
    let (s, b) = json_of(
        t.admin()
            .patch(
                &format!("/api/admin/webhooks/{hook}"),
                &json!({"enabled": true}),
            )
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b.get("disabledReason").is_none_or(Value::is_null), "{b}");
    assert!(b.get("failingSince").is_none_or(Value::is_null), "{b}");
    rx.wait_for_events(1, Duration::from_secs(10)).await;
    let got = &rx.delivered()[0];
    assert_signed(&secret, got);
    assert_eq!(got.json()["data"]["orderId"], id.as_str());
}

/// An operator redelivers one event (the same `webhook-id` again), then everything since a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_redelivers_one_event_or_everything_since_a_time() {
    let t = TestApp::spawn_with(quick).await;
    let (_, p) = t.warehouse_with_product(1_000, 1_000).await;
    let rx = Receiver::start().await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    let (hook, secret) = register(&t, &rx.url, &["order.confirmed", "order.cancelled"]).await;
    let id = order(&t, p).await;
    cancel(&t, &id).await;
    rx.wait_for_events(2, Duration::from_secs(10)).await;
    let first = rx.delivered();
    assert_eq!(first.len(), 2);

    let confirmed = first[0].id.clone();
    let (s, b) = json_of(
        t.admin()
            .post_empty(&format!(
                "/api/admin/webhooks/{hook}/deliveries/{confirmed}/redeliver"
            ))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.delivered().len() < 3 {
        assert!(Instant::now() < deadline, "never redelivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = &rx.delivered()[2];
    assert_eq!(again.id, confirmed);
    assert_eq!(again.body, first[0].body, "the same body");
    assert_signed(&secret, again);

    let r = t
        .admin()
        .post_empty(&format!(
            "/api/admin/webhooks/{hook}/deliveries/msg_nope/redeliver"
        ))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let (s, b) = json_of(
        t.admin()
            .post(
                &format!("/api/admin/webhooks/{hook}/redeliver"),
                &json!({"since": since.to_rfc3339()}),
            )
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["queued"], 2, "{b}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.delivered().len() < 5 {
        assert!(Instant::now() < deadline, "never redelivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids: Vec<String> = rx.delivered().iter().map(|c| c.id.clone()).collect();
    assert_eq!(
        ids[3..],
        [first[0].id.clone(), first[1].id.clone()],
        "in order"
    );

    let (s, b) = json_of(
        t.admin()
            .post(
                &format!("/api/admin/webhooks/{hook}/redeliver"),
                &json!({"since": "yesterday"}),
            )
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    // A time before the Unix epoch (which MySQL cannot hold) picks every event, as any time
    // before the first does.
    let (s, b) = json_of(
        t.admin()
            .post(
                &format!("/api/admin/webhooks/{hook}/redeliver"),
                &json!({"since": "0221-12-26T14:32:03-19:05"}),
            )
            .await,
    )
    .await;
    assert_eq!((s, &b["queued"]), (StatusCode::ACCEPTED, &json!(2)), "{b}");
    // A time past any MySQL holds picks nothing.
    let (s, b) = json_of(
        t.admin()
            .post(
                &format!("/api/admin/webhooks/{hook}/redeliver"),
                &json!({"since": "2647-11-10T14:12:56.991-22:10"}),
            )
            .await,
    )
    .await;
    assert_eq!((s, &b["queued"]), (StatusCode::ACCEPTED, &json!(0)), "{b}");
}

/// Two instances on one database, both running the dispatcher: each event is delivered once;
/// when the lease holder stops, the other takes over and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_deliver_each_event_once() {
    // The test's own app only serves; the two instances deliver.
    let t = TestApp::spawn_with(|c| {
        quick(c);
        c.webhook_lease_ms = 500;
        c.webhook_dispatcher = false;
    })
    .await;
    // Made before the instances start, so that they know the warehouse.
    let (_, p) = t.warehouse_with_product(1_000, 10_000).await;
    let a = t.spawn_instance(|c| c.webhook_dispatcher = true).await;
    let b = t.spawn_instance(|c| c.webhook_dispatcher = true).await;
    let rx = Receiver::start().await;
    let (_, secret) = register(&t, &rx.url, &["order.confirmed", "order.cancelled"]).await;

    let place = |base: String| {
        let client = t.client.clone();
        let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
        async move {
            let r = client
                .post(format!("{base}/api/orders"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let (s, b) = json_of(r).await;
            assert_eq!(s, StatusCode::CREATED, "order on {base}: {b}");
            let id = b["orderId"].as_str().unwrap().to_owned();
            let r = client
                .patch(format!("{base}/api/orders/{id}/cancel"))
                .send()
                .await
                .unwrap();
            let (s, b) = json_of(r).await;
            assert_eq!(s, StatusCode::OK, "cancel {id} on {base}: {b}");
        }
    };
    let bases = [t.base.clone(), a.base(), b.base()];
    join_all((0..60).map(|i| place(bases[i % 3].clone()))).await;
    rx.wait_for_events(120, Duration::from_secs(30)).await;

    // The holder stops; the other takes over once the lease lapses.
    let holder: String =
        sqlx::query_scalar("SELECT holder FROM leases WHERE name = 'webhook-dispatcher'")
            .fetch_one(&t.db)
            .await
            .unwrap();
    let (stopped, survivor) = if holder == a.app().instance {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(
        holder,
        stopped.app().instance,
        "one of the two holds the lease"
    );
    stopped.stop().await;
    let bases = [t.base.clone(), survivor.base()];
    join_all((0..30).map(|i| place(bases[i % 2].clone()))).await;
    rx.wait_for_events(180, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let holder: String =
        sqlx::query_scalar("SELECT holder FROM leases WHERE name = 'webhook-dispatcher'")
            .fetch_one(&t.db)
            .await
            .unwrap();
    assert_eq!(holder, survivor.app().instance);

    let calls = rx.delivered();
    let mut per_id: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &calls {
        assert_signed(&secret, c);
        *per_id.entry(c.id.as_str()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 180);
    let twice: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    for (order, types) in types_per_order(&calls) {
        assert_eq!(
            types,
            ["order.confirmed", "order.cancelled"],
            "order {order}"
        );
    }
}

/// `kill -9` of the delivering process mid-call loses nothing: another process delivers every
/// event, each order's in order, and a repeat is only ever the same `webhook-id` with the same
/// body.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_deliverer_loses_nothing() {
    // The test's own app only takes the orders; the processes deliver.
    let t = TestApp::spawn_with(|c| c.webhook_dispatcher = false).await;
    let (_, p) = t.warehouse_with_product(1_000, 10_000).await;
    let rx = Receiver::start().await;
    rx.set(Mode::Sleep(Duration::from_millis(150)));
    let (_, secret) = register(&t, &rx.url, &["order.confirmed", "order.cancelled"]).await;
    let mut orders = Vec::new();
    for _ in 0..40 {
        let id = order(&t, p).await;
        cancel(&t, &id).await;
        orders.push(id);
    }

    let env = [
        ("WEBHOOK_TICK_MS", "50"),
        ("WEBHOOK_LEASE_MS", "1000"),
        ("WEBHOOK_TIMEOUT_MS", "2000"),
        ("WEBHOOK_RETRY_FIRST_MS", "50"),
        ("WEBHOOK_RETRY_MAX_MS", "400"),
        ("JOBS_ENABLED", "false"),
    ];
    let mut first = t.spawn_process(&env);
    first
        .wait_for(&t.client, "/health/ready", Duration::from_secs(20))
        .await;
    rx.wait_for_events(10, Duration::from_secs(20)).await;
    first.kill();
    let before = rx.delivered().len();
    assert!(before < 80, "everything was delivered before the kill");

    let second = t.spawn_process(&env);
    second
        .wait_for(&t.client, "/health/ready", Duration::from_secs(20))
        .await;
    rx.wait_for_events(80, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let calls = rx.delivered();
    let mut bodies: BTreeMap<&str, &str> = BTreeMap::new();
    for c in &calls {
        assert_signed(&secret, c);
        let body = bodies.entry(c.id.as_str()).or_insert(c.body.as_str());
        assert_eq!(*body, c.body, "a repeat of {} with another body", c.id);
    }
    let written: Vec<String> = sqlx::query_scalar("SELECT event_id FROM events")
        .fetch_all(&t.db)
        .await
        .unwrap();
    assert_eq!(written.len(), 80);
    for id in &written {
        assert!(bodies.contains_key(id.as_str()), "event {id} never arrived");
    }
    // Only calls cut by the kill are made again: at most one per call slot.
    assert!(
        calls.len() - bodies.len() <= 4,
        "{} repeats",
        calls.len() - bodies.len()
    );
    let per = types_per_order(&calls);
    for id in &orders {
        assert_eq!(
            per[id],
            ["order.confirmed", "order.cancelled"],
            "order {id}"
        );
    }
    drop(second);
}

/// With the default tick, a backlog drains at the receiver's pace, not a few calls per tick:
/// 300 events owed to a fast receiver arrive within a few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_drains_at_the_receivers_pace() {
    let t = TestApp::spawn().await;
    let (_, p) = t.warehouse_with_product(1_000, 10_000).await;
    let rx = Receiver::start().await;
    rx.set(Mode::Status(503));
    let (hook, _) = register(&t, &rx.url, &["order.confirmed"]).await;
    let t = Arc::new(t);
    join_all((0..300).map(|_| {
        let t = t.clone();
        async move { order(&t, p).await }
    }))
    .await;
    // Owed while the receiver refuses; then it answers, and everything is due at once.
    rx.set(Mode::Ok);
    let (s, b) = json_of(
        t.admin()
            .post(
                &format!("/api/admin/webhooks/{hook}/redeliver"),
                &json!({"since": "2000-01-01T00:00:00Z"}),
            )
            .await,
    )
    .await;
    assert_eq!(
        (s, b["queued"].as_u64()),
        (StatusCode::ACCEPTED, Some(300)),
        "{b}"
    );
    let start = Instant::now();
    rx.wait_for_events(300, Duration::from_secs(30)).await;
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "300 deliveries took {took:?} (at 4 per 200 ms tick they would take 15 s)"
    );
}

/// Deliveries need MySQL only: with Redis cut off, what is owed still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_go_on_while_redis_is_down() {
    let (redis, t) = behind_redis_proxy(|c| {
        quick(c);
        c.jobs_enabled = false;
    })
    .await;
    let (_, p) = t.warehouse_with_product(1_000, 1_000).await;
    let rx = Receiver::start().await;
    rx.set(Mode::Status(500));
    let (_, secret) = register(&t, &rx.url, &["order.confirmed", "order.cancelled"]).await;
    let mut orders = Vec::new();
    for _ in 0..10 {
        let id = order(&t, p).await;
        cancel(&t, &id).await;
        orders.push(id);
    }
    redis.refuse(true);
    redis.cut_all();
    rx.set(Mode::Ok);
    rx.wait_for_events(20, Duration::from_secs(30)).await;
    let calls = rx.delivered();
    for c in &calls {
        assert_signed(&secret, c);
    }
    let per = types_per_order(&calls);
    for id in &orders {
        assert_eq!(
            per[id],
            ["order.confirmed", "order.cancelled"],
            "order {id}"
        );
    }
    redis.refuse(false);
}

/// The event types the suite can cause (all but `order.rejected` and `order.lost`) reach an
/// endpoint that takes every type, each signed and each once: orders on both paths, a cancel,
/// a pickup made ready and collected, a hold that expires, and stock crossing its low mark,
/// running out and coming back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_type_reaches_the_endpoint_signed_once() {
    let t = TestApp::spawn_with(quick).await;
    let s = t.store_with(1, 4).await;
    let p = s.products[0];
    sqlx::query("UPDATE locations SET low_stock_threshold = 2 WHERE id = ?")
        .bind(s.store)
        .execute(&t.db)
        .await
        .unwrap();
    let rx = Receiver::start().await;
    let (_, secret) = register(&t, &rx.url, &ALL_TYPES).await;

    // A pickup: confirmed (4 → 3 sellable), made ready, collected.
    let (st, b) = json_of(
        t.post("/api/orders", &pickup_order(&[(p, 1)], s.store))
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let pickup = b["orderId"].as_str().unwrap().to_owned();
    let code = b["fulfillment"]["pickupCode"].as_str().unwrap().to_owned();
    for (what, body) in [
        ("ready", None),
        ("collect", Some(json!({"pickupCode": code}))),
    ] {
        let mut req = t
            .client
            .post(format!(
                "{}/api/stores/{}/orders/{pickup}/{what}",
                t.base, s.store
            ))
            .bearer_auth(&s.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{what}");
    }
    // Another, cancelled: 3 → 2 sellable (low), then back to 3.
    let (st, b) = json_of(
        t.post("/api/orders", &pickup_order(&[(p, 1)], s.store))
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let cancelled = b["orderId"].as_str().unwrap().to_owned();
    cancel(&t, &cancelled).await;
    // A Redis-path order: accepted, then confirmed by the consumer (3 → 2: low again).
    let redis_order = t.place_redis(&pickup_order(&[(p, 1)], s.store)).await;
    t.wait_persisted().await;
    // The rest of the stock held, then expired: out, then back.
    let (st, hold) = json_of(
        t.post("/api/holds", &{
            let mut b = pickup_order(&[(p, 2)], s.store);
            b["ttlSeconds"] = json!(60);
            b
        })
        .await,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{hold}");
    let hold_id = hold["holdId"].as_str().unwrap().to_owned();
    sqlx::query("UPDATE holds SET expires_at = NOW(3) - INTERVAL 1 SECOND WHERE id = ?")
        .bind(&hold_id)
        .execute(&t.db)
        .await
        .unwrap();

    let expected = [
        "order.confirmed",
        "order.fulfillment_changed",
        "order.cancelled",
        "order.accepted",
        "hold.expired",
        "stock.low",
        "stock.out",
        "stock.back",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen: BTreeSet<String> = rx
            .delivered()
            .iter()
            .map(|c| c.json()["type"].as_str().unwrap().to_owned())
            .collect();
        if expected.iter().all(|e| seen.contains(*e)) {
            break;
        }
        assert!(Instant::now() < deadline, "only {seen:?} arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let written = count(&t, "SELECT COUNT(*) FROM events").await as usize;
    rx.wait_for_events(written, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = rx.delivered();
    assert_eq!(calls.len(), written, "each event once");
    for c in &calls {
        assert_signed(&secret, c);
    }
    let per = types_per_order(&calls);
    assert_eq!(
        per[&pickup],
        [
            "order.confirmed",
            "order.fulfillment_changed",
            "order.fulfillment_changed"
        ]
    );
    assert_eq!(per[&cancelled], ["order.confirmed", "order.cancelled"]);
    assert_eq!(per[&redis_order], ["order.accepted", "order.confirmed"]);
    let expired: Vec<Value> = calls
        .iter()
        .map(Received::json)
        .filter(|v| v["type"] == "hold.expired")
        .collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["data"]["holdId"], hold_id.as_str());
}

/// A delivery failing past its retry window is given up (`FAILED`, with its attempts), and no
/// longer holds back the later events of its order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_failing_past_its_window_is_given_up_and_blocks_nothing() {
    let t = TestApp::spawn_with(|c| {
        quick(c);
        c.webhook_retry_for_secs = 1;
    })
    .await;
    let (_, p) = t.warehouse_with_product(1_000, 1_000).await;
    let rx = Receiver::start().await;
    rx.set(Mode::Status(500));
    let (hook, _) = register(&t, &rx.url, &["order.confirmed", "order.cancelled"]).await;
    let id = order(&t, p).await;

    let deadline = Instant::now() + Duration::from_secs(15);
    let failed = loop {
        if let Some(d) = deliveries(&t, hook, "?status=failed").await.pop() {
            break d;
        }
        assert!(Instant::now() < deadline, "never given up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed["type"], "order.confirmed", "{failed}");
    assert_eq!(failed["status"], "failed", "{failed}");
    let attempts = failed["attempts"].as_u64().unwrap();
    assert!(attempts >= 2, "{failed}");
    assert_eq!(
        failed["attemptLog"].as_array().unwrap().len() as u64,
        attempts
    );
    assert!(failed["nextAttemptAt"].is_null(), "{failed}");

    rx.set(Mode::Ok);
    cancel(&t, &id).await;
    rx.wait_for_events(1, Duration::from_secs(10)).await;
    let got = rx.delivered();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["type"], "order.cancelled");
    assert_eq!(got[0].json()["data"]["orderId"], id.as_str());
}

/// An endpoint deleted while a call to it is in flight: the call ends quietly, nothing of the
/// endpoint is left, and the dispatcher goes on serving the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_deleted_mid_call_leaves_nothing_behind() {
    let t = TestApp::spawn_with(quick).await;
    let (_, p) = t.warehouse_with_product(1_000, 1_000).await;
    let slow = Receiver::start().await;
    slow.set(Mode::Sleep(Duration::from_millis(500)));
    let (gone, _) = register(&t, &slow.url, &["order.confirmed"]).await;
    let rx = Receiver::start().await;
    let (_, secret) = register(&t, &rx.url, &["order.confirmed"]).await;

    order(&t, p).await;
    rx.wait_for_events(1, Duration::from_secs(10)).await;
    let r = t
        .admin()
        .delete(&format!("/api/admin/webhooks/{gone}"))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(700)).await;
    for table in ["webhook_deliveries", "webhook_attempts"] {
        let left = count(
            &t,
            &format!("SELECT COUNT(*) FROM {table} WHERE endpoint_id = {gone}"),
        )
        .await;
        assert_eq!(left, 0, "{table}");
    }
    order(&t, p).await;
    rx.wait_for_events(2, Duration::from_secs(10)).await;
    for c in rx.delivered() {
        assert_signed(&secret, &c);
    }
}
