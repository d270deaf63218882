//! Sales channels: the shop's writes need a channel key, a channel sees only its own orders and
//! holds, a revoked key stops at once on every instance, and one `Idempotency-Key` is one order
//! across both order paths.

use crate::common::*;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

/// A client that sends no credentials.
fn anonymous() -> Client {
    Client::new()
}

async fn new_channel(t: &TestApp, name: &str) -> ShopChannel {
    let (s, c) = json_of(
        t.admin()
            .post("/api/admin/channels", &json!({"name": name}))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!(c["name"], name, "{c}");
    assert_eq!(c["activeKeys"], 0, "{c}");
    let id = c["channelId"].as_u64().unwrap();
    let (s, k) = json_of(
        t.admin()
            .post(
                &format!("/api/admin/channels/{id}/keys"),
                &json!({"label": "tests"}),
            )
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    assert_eq!(k["channelId"], id, "{k}");
    ShopChannel {
        channel_id: id,
        key: k["key"].as_str().unwrap().to_owned(),
    }
}

async fn send(
    client: &Client,
    method: reqwest::Method,
    url: String,
    key: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut r = client.request(method, url);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    if let Some(b) = body {
        r = r.json(b);
    }
    json_of(r.send().await.unwrap()).await
}

/// Without a key, with an unknown key and with a revoked one, every shop write is 401 and changes
/// nothing; the catalogue reads stay public.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shops_writes_need_a_valid_channel_key() {
    let t = TestApp::spawn().await;
    let s = t.store_with(1, 5).await;
    let p = s.products[0];
    let order = pickup_order(&[(p, 1)], s.store);
    let mut held = order.clone();
    held["ttlSeconds"] = json!(60);
    let revoked = new_channel(&t, "revoked-soon").await;
    let (st, b) = send(
        &t.client,
        reqwest::Method::POST,
        format!("{}/api/orders", t.base),
        Some(&revoked.key),
        Some(&order),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "a fresh key works: {b}");
    let keys: Vec<(u64, u64)> =
        sqlx::query_as("SELECT channel_id, id FROM channel_keys WHERE channel_id = ?")
            .bind(revoked.channel_id)
            .fetch_all(&t.db)
            .await
            .unwrap();
    let r = t
        .admin()
        .request(
            reqwest::Method::DELETE,
            &format!("/api/admin/channels/{}/keys/{}", keys[0].0, keys[0].1),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let before = t.stock_states(s.store, p).await;

    let writes: Vec<(reqwest::Method, &str, &Value)> = vec![
        (reqwest::Method::POST, "/api/orders", &order),
        (reqwest::Method::POST, "/api/redis/orders", &order),
        (reqwest::Method::POST, "/api/holds", &held),
    ];
    for credentials in [None, Some("sfc_not_a_key"), Some(revoked.key.as_str())] {
        for (method, path, body) in &writes {
            let (st, b) = send(
                &anonymous(),
                method.clone(),
                format!("{}{path}", t.base),
                credentials,
                Some(body),
            )
            .await;
            assert_eq!(
                st,
                StatusCode::UNAUTHORIZED,
                "{path} with {credentials:?}: {b}"
            );
            assert_eq!(b["type"], "/problems/unauthorized", "{b}");
        }
    }
    assert_eq!(t.stock_states(s.store, p).await, before, "nothing moved");
    assert_eq!(t.count_orders("CONFIRMED").await, 1);
    let (st, _) = send(
        &anonymous(),
        reqwest::Method::GET,
        format!("{}/api/products/{p}", t.base),
        None,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "catalogue reads are public");
    // A revoked key is refused by another instance at once too.
    let second = t.spawn_instance(|_| {}).await;
    let (st, b) = send(
        &anonymous(),
        reqwest::Method::POST,
        format!("{}/api/redis/orders", second.base()),
        Some(&revoked.key),
        Some(&order),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{b}");
    t.assert_ledger_identities().await;
}

/// Orders and holds remember their channel; another channel reads and cancels none of them (404,
/// as for an id that does not exist), and its own it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_sees_and_cancels_only_its_own() {
    let t = TestApp::spawn().await;
    let s = t.store_with(1, 20).await;
    let p = s.products[0];
    let other = new_channel(&t, "app").await;
    let order = pickup_order(&[(p, 1)], s.store);

    let (st, db) = json_of(t.post("/api/orders", &order).await).await;
    assert_eq!(st, StatusCode::CREATED, "{db}");
    let (st, rd) = json_of(t.post("/api/redis/orders", &order).await).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{rd}");
    let mut hold = order.clone();
    hold["ttlSeconds"] = json!(300);
    let (st, h) = json_of(t.post("/api/holds", &hold).await).await;
    assert_eq!(st, StatusCode::CREATED, "{h}");
    let (db_id, rd_id, hold_id) = (
        db["orderId"].as_str().unwrap().to_owned(),
        rd["orderId"].as_str().unwrap().to_owned(),
        h["holdId"].as_str().unwrap().to_owned(),
    );
    t.wait_persisted().await;
    let owners: Vec<(String, Option<u64>)> =
        sqlx::query_as("SELECT id, channel_id FROM orders ORDER BY id")
            .fetch_all(&t.db)
            .await
            .unwrap();
    let mut expected = vec![
        (db_id.clone(), Some(t.shop.channel_id)),
        (rd_id.clone(), Some(t.shop.channel_id)),
    ];
    expected.sort();
    assert_eq!(owners, expected);
    let hold_owner: Option<u64> = sqlx::query_scalar("SELECT channel_id FROM holds WHERE id = ?")
        .bind(&hold_id)
        .fetch_one(&t.db)
        .await
        .unwrap();
    assert_eq!(hold_owner, Some(t.shop.channel_id));

    let before = t.stock_states(s.store, p).await;
    let as_other = |m: reqwest::Method, path: String| {
        let key = other.key.clone();
        let base = t.base.clone();
        async move {
            send(
                &anonymous(),
                m,
                format!("{base}{path}"),
                Some(&key),
                Some(&json!({})),
            )
            .await
        }
    };
    let (_, no_order) = as_other(
        reqwest::Method::GET,
        format!("/api/orders/{}-01936f0c2b7e7c3a9d1e5f2a3b4c5d6e", s.store),
    )
    .await;
    let (_, no_hold) = as_other(reqwest::Method::GET, "/api/holds/nosuchhold".into()).await;
    for (m, path, kind) in [
        (
            reqwest::Method::GET,
            format!("/api/orders/{db_id}"),
            "order",
        ),
        (
            reqwest::Method::GET,
            format!("/api/orders/{rd_id}"),
            "order",
        ),
        (
            reqwest::Method::PATCH,
            format!("/api/orders/{db_id}/cancel"),
            "order",
        ),
        (
            reqwest::Method::PATCH,
            format!("/api/redis/orders/{rd_id}/cancel"),
            "order",
        ),
        (
            reqwest::Method::GET,
            format!("/api/holds/{hold_id}"),
            "hold",
        ),
        (
            reqwest::Method::POST,
            format!("/api/holds/{hold_id}/release"),
            "hold",
        ),
        (
            reqwest::Method::POST,
            format!("/api/holds/{hold_id}/order"),
            "hold",
        ),
    ] {
        let (st, b) = as_other(m, path.clone()).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {b}");
        let missing = if kind == "order" { &no_order } else { &no_hold };
        assert_eq!(b["type"], missing["type"], "{path}: {b} vs {missing}");
    }
    assert_eq!(t.stock_states(s.store, p).await, before, "nothing moved");
    assert_eq!(t.order_status(&db_id).await, "CONFIRMED");
    assert_eq!(t.order_status(&rd_id).await, "CONFIRMED");

    // The owner can.
    let (st, b) = json_of(t.patch(&format!("/api/redis/orders/{rd_id}/cancel")).await).await;
    assert_eq!(
        (st, b["status"].as_str()),
        (StatusCode::OK, Some("CANCELLED")),
        "{b}"
    );
    let (st, b) = json_of(t.get(&format!("/api/holds/{hold_id}")).await).await;
    assert_eq!(
        (st, b["status"].as_str()),
        (StatusCode::OK, Some("ACTIVE")),
        "{b}"
    );
    let (st, b) = json_of(
        t.post(&format!("/api/holds/{hold_id}/order"), &json!({}))
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let converted: Option<u64> = sqlx::query_scalar("SELECT channel_id FROM orders WHERE id = ?")
        .bind(b["orderId"].as_str().unwrap())
        .fetch_one(&t.db)
        .await
        .unwrap();
    assert_eq!(
        converted,
        Some(t.shop.channel_id),
        "the order keeps its hold's channel"
    );
    t.wait_persisted().await;
    t.assert_ledger_identities().await;
    t.assert_converged(InRedis::All).await;
}

/// One channel's `Idempotency-Key` is one order whichever path each attempt takes: in turn
/// (before and after the consumer persisted the first), and 16 at once over both paths. Another
/// channel's same key is its own order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_is_one_order_across_both_paths() {
    let t = TestApp::spawn().await;
    let s = t.store_with(1, 100).await;
    let p = s.products[0];
    let order = pickup_order(&[(p, 2)], s.store);
    let paths = ["/api/orders", "/api/redis/orders"];

    // In turn: each first path, the other second; then again after the consumer persisted.
    let mut ids = Vec::new();
    for (n, first) in [0usize, 1].into_iter().enumerate() {
        let key = format!("turn-{n}");
        let (st, a) = json_of(t.post_idempotent(paths[first], &key, &order).await).await;
        assert!(st.is_success(), "{a}");
        let (st, b) = json_of(t.post_idempotent(paths[1 - first], &key, &order).await).await;
        assert!(st.is_success(), "{b}");
        assert_eq!(a["orderId"], b["orderId"], "one order for {key}");
        t.wait_persisted().await;
        let r = t.post_idempotent(paths[1 - first], &key, &order).await;
        assert_eq!(r.headers()["idempotent-replayed"], "true");
        let (_, c) = json_of(r).await;
        assert_eq!(
            a["orderId"], c["orderId"],
            "one order for {key} once persisted"
        );
        ids.push(a["orderId"].as_str().unwrap().to_owned());
    }

    // At once: 16 tasks, alternating paths, one key.
    let t = Arc::new(t);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let t = t.clone();
            let order = order.clone();
            tokio::spawn(async move {
                let (st, b, _) = until_final(|| {
                    t.request(Method::POST, paths[i % 2])
                        .header("Idempotency-Key", "at-once")
                        .json(&order)
                })
                .await;
                assert!(st.is_success(), "{b}");
                b["orderId"].as_str().unwrap().to_owned()
            })
        })
        .collect();
    let mut at_once = BTreeSet::new();
    for task in tasks {
        at_once.insert(task.await.unwrap());
    }
    assert_eq!(at_once.len(), 1, "{at_once:?}");
    ids.extend(at_once);

    // Another channel: the same key is its own order.
    let other = new_channel(&t, "kiosk").await;
    let (st, b) = send(
        &anonymous(),
        reqwest::Method::POST,
        format!("{}/api/orders", t.base),
        Some(&other.key),
        Some(&order),
    )
    .await;
    assert!(st.is_success(), "{b}");
    let r = anonymous()
        .post(format!("{}/api/redis/orders", t.base))
        .bearer_auth(&other.key)
        .header("Idempotency-Key", "at-once")
        .json(&order)
        .send()
        .await
        .unwrap();
    let (st, b) = json_of(r).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    assert!(!ids.contains(&b["orderId"].as_str().unwrap().to_owned()));
    t.wait_persisted().await;
    // 3 keyed orders of the test shop, one unkeyed and one keyed of the kiosk: 5 orders, 10 units.
    assert_eq!(t.count_orders("CONFIRMED").await, 5);
    assert_eq!(t.count_orders("REJECTED").await, 0);
    assert_eq!(t.stock_states(s.store, p).await, (90, 10, 100));
    t.assert_ledger_identities().await;
    t.assert_converged(InRedis::All).await;
}

/// With `SHOP_AUTH=off` a request without a key acts for no channel; a key sent is still checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_shop_auth_off_a_request_without_a_key_acts_for_no_channel() {
    let t = TestApp::spawn_with(|c| c.shop_auth = stock_flow::config::ShopAuth::Off).await;
    let s = t.store_with(1, 5).await;
    let p = s.products[0];
    let order = pickup_order(&[(p, 1)], s.store);
    let (st, b) = send(
        &anonymous(),
        reqwest::Method::POST,
        format!("{}/api/orders", t.base),
        None,
        Some(&order),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let channel: Option<u64> = sqlx::query_scalar("SELECT channel_id FROM orders WHERE id = ?")
        .bind(b["orderId"].as_str().unwrap())
        .fetch_one(&t.db)
        .await
        .unwrap();
    assert_eq!(channel, None);
    let (st, b) = send(
        &anonymous(),
        reqwest::Method::POST,
        format!("{}/api/orders", t.base),
        Some("sfc_not_a_key"),
        Some(&order),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{b}");
    let (st, b) = json_of(t.get("/health/ready").await).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["shopAuth"], "off", "{b}");
}
