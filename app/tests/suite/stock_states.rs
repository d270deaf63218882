//! Stock states: onHand, committed, available and the safety stock, on both order paths and the
//! till, with the ledger identities after each step.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;

async fn set_safety(t: &TestApp, loc: u64, p: u64, quantity: Value) -> Value {
    let (s, b) = json_of(
        t.admin()
            .put(
                &format!("/api/admin/locations/{loc}/products/{p}/safety-stock"),
                &json!({ "quantity": quantity }),
            )
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

/// The buffer is for the till, not for the shop: online orders on both paths stop at the safety
/// stock, while the till sells it; every state and the ledger follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safety_stock_refuses_online_orders_while_the_till_sells() {
    let t = TestApp::spawn().await;
    let w = t.town().await;
    t.stock_row(w.near, w.product, 5).await;
    let key = t.issue_key(w.near).await;
    let b = set_safety(&t, w.near, w.product, json!(3)).await;
    assert_eq!(
        (b["onHand"].as_i64(), b["safetyStock"].as_i64()),
        (Some(5), Some(3))
    );
    assert_eq!(b["sellableOnline"], 2, "{b}");
    let pickup = |q: i64| pickup_order(&[(w.product, q)], w.near);

    // 3 online: 5 on the shelf, 3 kept back, 2 sellable — refused on both paths.
    for path in ["/api/orders", "/api/redis/orders"] {
        let (s, b) = json_of(t.post(path, &pickup(3)).await).await;
        assert_eq!(s, StatusCode::CONFLICT, "{path}: {b}");
        assert_eq!(b["type"], "/problems/out-of-stock");
    }
    // 2 online through Redis: taken; then nothing is left for the shop.
    let (s, b) = json_of(t.post("/api/redis/orders", &pickup(2)).await).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let (s, b) = json_of(t.post("/api/orders", &pickup(1)).await).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    // The till sells the buffer.
    let sale = pos_sale(&[(w.product, 3)]);
    let path = format!("/api/stores/{}/orders", w.near);
    let (s, b) = json_of(t.post_with_key(&path, &key, &sale).await).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    t.wait_persisted().await;
    // 2 committed to the pickup, 3 gone through the till.
    assert_eq!(t.stock_states(w.near, w.product).await, (0, 2, 2));
    t.assert_ledger_identities().await;
    let (s, b) = json_of(
        t.get(&format!(
            "/api/stores/{}/products/{}/stock",
            w.near, w.product
        ))
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (
            b["onHand"].as_i64(),
            b["committed"].as_i64(),
            b["available"].as_i64(),
            b["sellableOnline"].as_i64(),
            b["quantity"].as_i64(),
        ),
        (Some(2), Some(2), Some(0), Some(0), Some(0)),
        "{b}"
    );
    t.assert_converged(InRedis::All).await;

    // Back to the location's default (0): the shop sees nothing, since nothing is available.
    let b = set_safety(&t, w.near, w.product, Value::Null).await;
    assert_eq!(
        (b["safetyStock"].as_i64(), b["sellableOnline"].as_i64()),
        (Some(0), Some(0))
    );
}

/// A count while orders are committed sets onHand to what was counted and keeps the orders
/// committed: available falls with it, below zero when fewer units are found than promised —
/// a real shortage that refuses new orders — and the stock comes back with the next delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_during_committed_orders_keeps_them_committed() {
    let t = TestApp::spawn().await;
    let w = t.town().await;
    t.stock_row(w.near, w.product, 10).await;
    let pickup = |q: i64| pickup_order(&[(w.product, q)], w.near);
    let (s, four) = json_of(t.post("/api/orders", &pickup(4)).await).await;
    assert_eq!(s, StatusCode::CREATED, "{four}");
    let (s, b) = json_of(t.post("/api/redis/orders", &pickup(1)).await).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    t.wait_persisted().await;
    assert_eq!(t.stock_states(w.near, w.product).await, (5, 5, 10));
    let key = t.issue_key(w.near).await;
    let order = four["orderId"].as_str().unwrap().to_owned();
    let code = four["fulfillment"]["pickupCode"]
        .as_str()
        .unwrap()
        .to_owned();
    let step = |what: &'static str, body: Value| {
        let url = format!("{}/api/stores/{}/orders/{order}/{what}", t.base, w.near);
        t.client.post(url).bearer_auth(&key).json(&body).send()
    };
    let (s, b) = json_of(step("ready", json!({})).await.unwrap()).await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let count = |q: i64| json!({"quantity": q, "reason": "COUNT"});
    let stock = format!(
        "/api/admin/locations/{}/products/{}/stock",
        w.near, w.product
    );
    let (s, b) = json_of(t.admin().put(&stock, &count(7)).await).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["before"].as_i64(), b["after"].as_i64()),
        (Some(10), Some(7))
    );
    assert_eq!(t.stock_states(w.near, w.product).await, (2, 5, 7));

    // Fewer found than promised: accepted, available negative, online and till orders refused.
    let (s, b) = json_of(t.admin().put(&stock, &count(3)).await).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(t.stock_states(w.near, w.product).await, (-2, 5, 3));
    assert_eq!(t.redis_stock(w.near, w.product).await, Some(-2));
    for path in ["/api/orders", "/api/redis/orders"] {
        let (s, b) = json_of(t.post(path, &pickup(1)).await).await;
        assert_eq!(s, StatusCode::CONFLICT, "{path}: {b}");
    }
    // Handing over 4 with 3 counted on the shelf would take onHand below zero: the count must
    // be corrected first, and nothing changes.
    let (s, b) = json_of(step("collect", json!({"pickupCode": code})).await.unwrap()).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("count the shelf again"),
        "{b}"
    );
    assert_eq!(t.stock_states(w.near, w.product).await, (-2, 5, 3));
    let (s, b) = json_of(
        t.get(&format!(
            "/api/admin/locations/{}/products/{}/stock",
            w.near, w.product
        ))
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, b) = json_of(
        t.admin()
            .get(&format!(
                "/api/admin/locations/{}/products/{}/stock",
                w.near, w.product
            ))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (
            b["onHand"].as_i64(),
            b["committed"].as_i64(),
            b["available"].as_i64()
        ),
        (Some(3), Some(5), Some(-2)),
        "{b}"
    );
    // A delivery of 4: available 2 again, and the shop sells it.
    let (s, b) = json_of(
        t.admin()
            .post(
                &format!("{stock}/adjustments"),
                &json!({"delta": 4, "reason": "RESTOCK"}),
            )
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(t.stock_states(w.near, w.product).await, (2, 5, 7));
    let (s, b) = json_of(t.post("/api/redis/orders", &pickup(2)).await).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    // Damaged units leave the shelf; onHand may not go below zero.
    let damaged = |d: i64| json!({"delta": d, "reason": "DAMAGED"});
    let (s, b) = json_of(
        t.admin()
            .post(&format!("{stock}/adjustments"), &damaged(-8))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    t.wait_persisted().await;
    assert_eq!(t.stock_states(w.near, w.product).await, (0, 7, 7));
    // With the delivery in, the pickup is handed over: 4 units leave committed and the shelf.
    let (s, b) = json_of(step("collect", json!({"pickupCode": code})).await.unwrap()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(t.stock_states(w.near, w.product).await, (0, 3, 3));
    t.assert_ledger_identities().await;
    t.assert_converged(InRedis::All).await;
}

/// Redis loses its data with committed orders in flight: the orders MySQL holds stay committed
/// and can be handed over, the ones Redis alone held are gone with it (nothing committed for
/// them), and the safety stock comes back with the keys, so the reloaded Redis path still keeps
/// the buffer; every identity holds after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_data_loss_keeps_committed_orders_and_the_buffer() {
    let mut t = TestApp::spawn_with(|c| c.health_check_ms = 100).await;
    let w = t.town().await;
    t.stock_row(w.near, w.product, 10).await;
    let key = t.issue_key(w.near).await;
    set_safety(&t, w.near, w.product, json!(2)).await;
    let pickup = |q: i64| pickup_order(&[(w.product, q)], w.near);
    // Three units committed in MySQL.
    let (s, kept) = json_of(t.post("/api/redis/orders", &pickup(3)).await).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{kept}");
    t.wait_persisted().await;
    // Two more accepted in Redis alone, then Redis loses everything.
    t.app().stop_consumer_now();
    let (s, lost) = json_of(t.post("/api/redis/orders", &pickup(2)).await).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{lost}");
    t.lose_redis_data().await;
    t.app().start_consumer();
    t.run_reconcile().await;
    settle(&t).await;
    // The order Redis alone held never reached MySQL: nothing is committed for it.
    let lost_id = lost["orderId"].as_str().unwrap();
    assert!(!t.order_ids().await.iter().any(|id| id == lost_id));
    assert_eq!(t.stock_states(w.near, w.product).await, (7, 3, 10));
    // Reloaded with its buffer: 7 available, 2 kept back, 5 sellable online.
    let (s, b) = json_of(t.post("/api/redis/orders", &pickup(6)).await).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, b) = json_of(t.post("/api/redis/orders", &pickup(5)).await).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    t.wait_persisted().await;
    assert_eq!(t.stock_states(w.near, w.product).await, (2, 8, 10));
    // The order MySQL kept is handed over as usual.
    let id = kept["orderId"].as_str().unwrap();
    let code = kept["fulfillment"]["pickupCode"].as_str().unwrap();
    for (what, body) in [
        ("ready", json!({})),
        ("collect", json!({"pickupCode": code})),
    ] {
        let r = t
            .client
            .post(format!(
                "{}/api/stores/{}/orders/{id}/{what}",
                t.base, w.near
            ))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (s, b) = json_of(r).await;
        assert_eq!(s, StatusCode::OK, "{what}: {b}");
    }
    assert_eq!(t.stock_states(w.near, w.product).await, (2, 5, 7));
    t.assert_converged(InRedis::All).await;
}

/// A reconciliation pass that finds the safety stock's copy in Redis right writes nothing to it
/// (under `appendfsync always` each write is an fsync, and every batch of a pass wrote one); a
/// buffer changed in MySQL alone is set by the next pass, that field alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_writes_the_safety_copy_only_where_it_differs() {
    let redis = PrivateRedis::start();
    let t = TestApp::spawn_with(|c| {
        c.storage.redis_url = redis.url().into();
        c.reconcile_schedule = "0 0 3 1 1 *".into();
    })
    .await;
    let wh = t.add_warehouse().await;
    let kept = t.add_stocked_product(wh, 1_000, 10).await;
    // A product without a buffer of its own: no field, whatever the passes do.
    t.add_stocked_product(wh, 1_000, 10).await;
    set_safety(&t, wh, kept, json!(3)).await;
    t.run_reconcile().await;
    let hash = t.keys().safety(sf_routing::LocationId::new_unchecked(wh));
    let expected = |own: &str| {
        [("*", "0"), ("v", "1"), (&*kept.to_string(), own)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<BTreeMap<_, _>>()
    };
    let mut conn = t.redis().await;
    assert_eq!(safety_copy(&mut conn, &hash).await, expected("3"));

    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    let run = t.run_reconcile().await;
    assert_eq!(run["keysChecked"], 2, "{run}");
    assert_eq!(
        hset_calls(&mut conn).await,
        0,
        "a pass over a right copy wrote"
    );
    assert_eq!(safety_copy(&mut conn, &hash).await, expected("3"));

    // Changed in MySQL alone (not through the API, which pushes it): the next pass sets it.
    sqlx::query("UPDATE stock SET safety_stock = 4 WHERE location_id = ? AND product_id = ?")
        .bind(wh)
        .bind(kept)
        .execute(&t.db)
        .await
        .unwrap();
    t.run_reconcile().await;
    assert_eq!(hset_calls(&mut conn).await, 1);
    assert_eq!(safety_copy(&mut conn, &hash).await, expected("4"));
}

/// A location's safety-stock hash, field by field.
async fn safety_copy(conn: &mut sf_persistence::RedisConn, hash: &str) -> BTreeMap<String, String> {
    redis::cmd("HGETALL")
        .arg(hash)
        .query_async(conn)
        .await
        .unwrap()
}

/// How many `HSET`s Redis ran since its statistics were reset (scripts' calls included).
async fn hset_calls(conn: &mut sf_persistence::RedisConn) -> u64 {
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_hset:calls="))
        .map_or(0, |v| v.split(',').next().unwrap().parse().unwrap())
}
