//! Checkout holds over the HTTP API: held units are sold to no one else, come back on release
//! and on expiry (once, across instances), and a hold becomes exactly one order — never both an
//! order and expired.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// The hold-expiry job every second (the default), on this instance.
fn expiring(c: &mut stock_flow::config::Config) {
    c.jobs_enabled = true;
    c.hold_expiry_schedule = "* * * * * *".into();
}

fn with_ttl(mut order: Value, ttl: i64) -> Value {
    order["ttlSeconds"] = json!(ttl);
    order
}

async fn hold(t: &TestApp, body: &Value) -> Value {
    let (s, b) = json_of(t.post("/api/holds", body).await).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["status"], "ACTIVE", "{b}");
    b
}

fn id(b: &Value) -> String {
    b["holdId"].as_str().expect("a holdId").to_owned()
}

/// Moves a hold's `expiresAt` to `ms` from now (negative: in the past), straight in MySQL: the
/// API's shortest TTL is 10 s.
async fn expire_in(t: &TestApp, hold_id: &str, ms: i64) {
    sqlx::query("UPDATE holds SET expires_at = NOW(3) + INTERVAL ? MICROSECOND WHERE id = ?")
        .bind(ms * 1000)
        .bind(hold_id)
        .execute(&t.db)
        .await
        .unwrap();
}

async fn hold_status(t: &TestApp, hold_id: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT CAST(status AS CHAR), order_id FROM holds WHERE id = ?")
        .bind(hold_id)
        .fetch_one(&t.db)
        .await
        .unwrap()
}

async fn reserved(t: &TestApp, loc: u64, p: u64) -> i64 {
    sqlx::query_scalar("SELECT reserved FROM stock WHERE location_id = ? AND product_id = ?")
        .bind(loc)
        .bind(p)
        .fetch_one(&t.db)
        .await
        .unwrap()
}

/// No held unit is sold: with the last 3 units held, online orders on both paths and the till
/// are refused; the stock view shows them reserved; once released, each sells again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_units_are_sold_to_no_one_until_released() {
    let t = TestApp::spawn().await;
    let s = t.store_with(1, 3).await;
    let p = s.products[0];
    let h = hold(&t, &with_ttl(pickup_order(&[(p, 3)], s.store), 600)).await;
    assert_eq!(h["fulfillmentLocationId"], s.store);
    assert_eq!(
        h["items"],
        json!([{"productId": p, "quantity": 3, "unitPrice": 1000}])
    );
    assert_eq!(h["totalAmount"], 3000);
    assert_eq!(t.stock_states(s.store, p).await, (0, 0, 3));
    assert_eq!(reserved(&t, s.store, p).await, 3);
    assert_eq!(t.redis_stock(s.store, p).await, Some(0));

    for path in ["/api/orders", "/api/redis/orders"] {
        let (st, b) = json_of(t.post(path, &pickup_order(&[(p, 1)], s.store)).await).await;
        assert_eq!(st, StatusCode::CONFLICT, "{path}: {b}");
        assert_eq!(b["type"], "/problems/out-of-stock", "{b}");
    }
    let till = format!("/api/stores/{}/orders", s.store);
    let (st, b) = json_of(t.post_with_key(&till, &s.key, &pos_sale(&[(p, 1)])).await).await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    let (st, b) = json_of(
        t.get(&format!("/api/stores/{}/products/{p}/stock", s.store))
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(
        (
            b["onHand"].as_i64(),
            b["reserved"].as_i64(),
            b["available"].as_i64()
        ),
        (Some(3), Some(3), Some(0)),
        "{b}"
    );
    t.assert_converged(InRedis::All).await;

    let (st, b) = json_of(
        t.post(&format!("/api/holds/{}/release", id(&h)), &json!({}))
            .await,
    )
    .await;
    assert_eq!(
        (st, b["status"].as_str()),
        (StatusCode::OK, Some("RELEASED")),
        "{b}"
    );
    // Released again: the same answer, nothing moves twice.
    let (st, b) = json_of(
        t.post(&format!("/api/holds/{}/release", id(&h)), &json!({}))
            .await,
    )
    .await;
    assert_eq!(
        (st, b["status"].as_str()),
        (StatusCode::OK, Some("RELEASED")),
        "{b}"
    );
    assert_eq!(t.stock_states(s.store, p).await, (3, 0, 3));
    // Converting a released hold creates nothing.
    let (st, b) = json_of(
        t.post(&format!("/api/holds/{}/order", id(&h)), &json!({}))
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["type"], "/problems/hold-released", "{b}");

    let (st, b) = json_of(
        t.post("/api/orders", &pickup_order(&[(p, 1)], s.store))
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let (st, b) = json_of(
        t.post("/api/redis/orders", &pickup_order(&[(p, 1)], s.store))
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let (st, b) = json_of(t.post_with_key(&till, &s.key, &pos_sale(&[(p, 1)])).await).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    t.wait_persisted().await;
    assert_eq!(t.stock_states(s.store, p).await, (0, 2, 2));
    assert_eq!(t.count_orders("CONFIRMED").await, 3);
    t.assert_converged(InRedis::All).await;
}

/// A hold becomes one order: fifty concurrent converts answer the same CONFIRMED order, made
/// from the hold's lines and prices; its units move from reserved to committed, available
/// stays, and Redis does not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_converts_make_one_order() {
    let t = Arc::new(TestApp::spawn().await);
    let (wh, ps) = t.warehouse_with(2, 10).await;
    let h = hold(
        &t,
        &normal_order(&[(ps[0], 2), (ps[1], 1)], SEOUL.0, SEOUL.1),
    )
    .await;
    let hid = id(&h);
    // The price the hold was given stands, whatever the catalogue says now.
    sqlx::query("UPDATE products SET price = 9999 WHERE id = ?")
        .bind(ps[0])
        .execute(&t.db)
        .await
        .unwrap();
    t.storage().catalog().refresh_catalog().await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let t = t.clone();
        let hid = hid.clone();
        tasks.push(tokio::spawn(async move {
            json_of(t.post(&format!("/api/holds/{hid}/order"), &json!({})).await).await
        }));
    }
    let mut orders = BTreeSet::new();
    for task in tasks {
        let (st, b) = task.await.unwrap();
        assert_eq!(st, StatusCode::CREATED, "{b}");
        assert_eq!(b["status"], "CONFIRMED", "{b}");
        orders.insert(b["orderId"].as_str().unwrap().to_owned());
    }
    assert_eq!(orders.len(), 1, "{orders:?}");
    let order_id = orders.into_iter().next().unwrap();
    assert_eq!(t.count_orders("CONFIRMED").await, 1);
    let (st, o) = json_of(t.get(&format!("/api/orders/{order_id}")).await).await;
    assert_eq!(st, StatusCode::OK, "{o}");
    assert_eq!(
        (
            o["path"].as_str(),
            o["fulfillmentLocationId"].as_u64(),
            o["totalAmount"].as_i64()
        ),
        (Some("DB_LOCK"), Some(wh), Some(3000)),
        "{o}"
    );
    assert_eq!(o["fulfillment"]["status"], "UNFULFILLED", "{o}");
    let (st, b) = json_of(t.get(&format!("/api/holds/{hid}")).await).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(
        (b["status"].as_str(), b["orderId"].as_str()),
        (Some("CONVERTED"), Some(order_id.as_str()))
    );
    assert_eq!(t.stock_states(wh, ps[0]).await, (8, 2, 10));
    assert_eq!(t.stock_states(wh, ps[1]).await, (9, 1, 10));
    assert_eq!(reserved(&t, wh, ps[0]).await, 0);
    // Releasing or extending it now is refused: its units are the order's.
    let (st, b) = json_of(
        t.post(&format!("/api/holds/{hid}/release"), &json!({}))
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    let r = t
        .client
        .patch(format!("{}/api/holds/{hid}", t.base))
        .json(&json!({"ttlSeconds": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    t.assert_converged(InRedis::All).await;
    // The metrics count it once, from MySQL.
    t.wait_for_metrics(&[
        "stockflow_cluster_holds_active 0",
        "stockflow_cluster_holds_total{outcome=\"placed\"} 1",
        "stockflow_cluster_holds_total{outcome=\"converted\"} 1",
        "stockflow_cluster_holds_total{outcome=\"expired\"} 0",
    ])
    .await;
}

/// A hold past expiresAt reads EXPIRED at once, its units are available again within 5 s
/// without anyone reading it, and converting it is refused and creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_hold_gives_its_units_back_within_five_seconds() {
    let t = TestApp::spawn_with(expiring).await;
    let (wh, p) = t.warehouse_with_product(1_000, 4).await;
    let h = hold(&t, &with_ttl(normal_order(&[(p, 4)], SEOUL.0, SEOUL.1), 10)).await;
    let hid = id(&h);
    assert_eq!(t.stock_states(wh, p).await, (0, 0, 4));
    expire_in(&t, &hid, 0).await;
    let expired_at = std::time::Instant::now();
    let (_, b) = json_of(t.get(&format!("/api/holds/{hid}")).await).await;
    assert_eq!(b["status"], "EXPIRED", "{b}");
    while t.available(wh, p).await != 4 {
        assert!(
            expired_at.elapsed() < Duration::from_secs(5),
            "the units did not come back within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hold_status(&t, &hid).await, ("EXPIRED".into(), None));
    let (st, b) = json_of(t.post(&format!("/api/holds/{hid}/order"), &json!({})).await).await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["type"], "/problems/hold-expired", "{b}");
    assert_eq!(t.count_orders("CONFIRMED").await, 0);
    let movements: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM stock_movements WHERE reason = 'HOLD_EXPIRED' AND ref_id = ?",
    )
    .bind(&hid)
    .fetch_one(&t.db)
    .await
    .unwrap();
    assert_eq!(movements, 1);
    t.assert_converged(InRedis::All).await;
}

/// An extension sets expiresAt from now, only while the hold is active and never past 2 h in
/// all; a TTL outside 10–3600 is refused with a detail that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_stay_within_the_rules() {
    let t = TestApp::spawn().await;
    let (_, p) = t.warehouse_with_product(1_000, 10).await;
    let order = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    for ttl in [9, 3601] {
        let (st, b) = json_of(t.post("/api/holds", &with_ttl(order.clone(), ttl)).await).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
        assert!(b["detail"].as_str().unwrap().contains("ttlSeconds"), "{b}");
        let (st, b) = json_of(
            t.client
                .patch(format!("{}/api/holds/1-any", t.base))
                .json(&json!({ "ttlSeconds": ttl }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
        assert!(b["detail"].as_str().unwrap().contains("ttlSeconds"), "{b}");
    }
    let h = hold(&t, &order).await;
    let hid = id(&h);
    let patch = |ttl: i64| {
        t.client
            .patch(format!("{}/api/holds/{hid}", t.base))
            .json(&json!({"ttlSeconds": ttl}))
            .send()
    };
    let (st, b) = json_of(patch(3600).await.unwrap()).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert!(
        b["expiresAt"].as_str().unwrap() > h["expiresAt"].as_str().unwrap(),
        "{b}"
    );
    // Placed 1 h 30 min ago: 30 min are left of its 2 h.
    sqlx::query("UPDATE holds SET created_at = NOW(3) - INTERVAL 90 MINUTE WHERE id = ?")
        .bind(&hid)
        .execute(&t.db)
        .await
        .unwrap();
    let (st, b) = json_of(patch(3600).await.unwrap()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("2 h"), "{b}");
    let (st, _) = json_of(patch(1200).await.unwrap()).await;
    assert_eq!(st, StatusCode::OK);
    expire_in(&t, &hid, -1).await;
    let (st, b) = json_of(patch(60).await.unwrap()).await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["type"], "/problems/hold-expired", "{b}");
    let (st, b) = json_of(t.get("/api/holds/1-nosuchhold").await).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
    assert_eq!(b["type"], "/problems/unknown-hold", "{b}");
}

/// A repeated Idempotency-Key places one hold and answers it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_key_places_one_hold() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let body = normal_order(&[(p, 2)], SEOUL.0, SEOUL.1);
    let first = t.post_idempotent("/api/holds", "checkout-1", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let (_, a) = json_of(first).await;
    let again = t.post_idempotent("/api/holds", "checkout-1", &body).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["Idempotent-Replayed"], "true");
    let (_, b) = json_of(again).await;
    assert_eq!(a["holdId"], b["holdId"]);
    assert_eq!(t.stock_states(wh, p).await, (8, 0, 10));
    t.assert_converged(InRedis::All).await;
}

/// Conversion racing expiry at the boundary, many times: each hold ends either converted (its
/// convert answered the order) or expired (its convert answered 409), never both, and the
/// ledger and Redis agree with every outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conversion_racing_expiry_has_one_winner() {
    let t = Arc::new(TestApp::spawn_with(expiring).await);
    let (wh, p) = t.warehouse_with_product(1_000, 200).await;
    let mut outcomes = BTreeMap::new();
    for round in 0..40 {
        let h = hold(&t, &normal_order(&[(p, 1)], SEOUL.0, SEOUL.1)).await;
        let hid = id(&h);
        expire_in(&t, &hid, (round % 8) * 3).await;
        let convert = {
            let (t, hid) = (t.clone(), hid.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis((round % 5) as u64 * 5)).await;
                json_of(t.post(&format!("/api/holds/{hid}/order"), &json!({})).await).await
            })
        };
        // The job's pass, run by hand as well, so that it meets the convert at the boundary.
        let expire = {
            let t = t.clone();
            tokio::spawn(async move {
                for _ in 0..6 {
                    t.storage().holds().expire_due().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(4)).await;
                }
            })
        };
        let (st, b) = convert.await.unwrap();
        expire.await.unwrap();
        let (status, order) = hold_status(&t, &hid).await;
        match st {
            StatusCode::CREATED => {
                assert_eq!(status, "CONVERTED", "{b}");
                assert_eq!(order.as_deref(), b["orderId"].as_str());
            }
            StatusCode::CONFLICT => {
                assert_eq!(b["type"], "/problems/hold-expired", "{b}");
                assert_eq!((status.as_str(), order), ("EXPIRED", None));
            }
            other => panic!("convert answered {other}: {b}"),
        }
        *outcomes.entry(status).or_insert(0) += 1;
    }
    let converted = outcomes.get("CONVERTED").copied().unwrap_or(0);
    assert_eq!(t.count_orders("CONFIRMED").await, converted);
    assert_eq!(
        t.stock_states(wh, p).await,
        (200 - converted, converted, 200)
    );
    let both: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM stock_movements m JOIN holds h ON h.id = m.ref_id \
         WHERE m.reason = 'HOLD_EXPIRED' AND h.order_id IS NOT NULL",
    )
    .fetch_one(&t.db)
    .await
    .unwrap();
    assert_eq!(both, 0, "a converted hold also expired");
    t.assert_converged(InRedis::All).await;
}

/// Two instances running the expiry job every second: each expired hold gives its units back
/// once (one HOLD_EXPIRED row per line), within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_expire_each_hold_once() {
    let t = TestApp::spawn_with(expiring).await;
    let _second = t.spawn_instance(expiring).await;
    let (wh, ps) = t.warehouse_with(2, 50).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        let h = hold(
            &t,
            &normal_order(&[(ps[0], 1), (ps[1], 2)], SEOUL.0, SEOUL.1),
        )
        .await;
        ids.push(id(&h));
    }
    assert_eq!(t.stock_states(wh, ps[1]).await, (10, 0, 50));
    for hid in &ids {
        expire_in(&t, hid, 0).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let active: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM holds WHERE status = 'ACTIVE'")
            .fetch_one(&t.db)
            .await
            .unwrap();
        if active == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{active} holds still active"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM stock_movements WHERE reason = 'HOLD_EXPIRED'")
            .fetch_one(&t.db)
            .await
            .unwrap();
    assert_eq!(rows, 40, "one HOLD_EXPIRED row per line of each hold");
    assert_eq!(t.stock_states(wh, ps[0]).await, (50, 0, 50));
    assert_eq!(t.stock_states(wh, ps[1]).await, (50, 0, 50));
    t.assert_converged(InRedis::All).await;
}

/// 64 clients mixing holds (some expiring within a second), conversions, releases, online
/// orders on both paths and till sales against a store's few units: no unit is sold twice or
/// lost, every hold ends in one state, the ledger identities hold and Redis equals MySQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_mixing_holds_orders_and_sales_sell_each_unit_once() {
    let t = Arc::new(TestApp::spawn_with(expiring).await);
    let s = Arc::new(t.store_with(3, 40).await);
    let mut tasks = Vec::new();
    for client in 0..64u64 {
        let (t, s) = (t.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            let mut held: Vec<String> = Vec::new();
            for step in 0..12u64 {
                let n = client * 31 + step * 7;
                let p = s.products[(n % 3) as usize];
                let q = (n % 2 + 1) as i64;
                match n % 6 {
                    0 | 1 => {
                        let (st, b) = json_of(
                            t.post(
                                "/api/holds",
                                &with_ttl(pickup_order(&[(p, q)], s.store), 10),
                            )
                            .await,
                        )
                        .await;
                        if st == StatusCode::CREATED {
                            let hid = id(&b);
                            if n % 4 == 0 {
                                // Expires within a second, whoever gets to it first.
                                expire_in(&t, &hid, (n % 900) as i64).await;
                            }
                            held.push(hid);
                        } else {
                            assert_eq!(st, StatusCode::CONFLICT, "{b}");
                        }
                    }
                    2 => {
                        if let Some(hid) = held.pop() {
                            let (st, b) = json_of(
                                t.post(&format!("/api/holds/{hid}/order"), &json!({})).await,
                            )
                            .await;
                            assert!(
                                st == StatusCode::CREATED || b["type"] == "/problems/hold-expired",
                                "{st} {b}"
                            );
                        }
                    }
                    3 => {
                        if let Some(hid) = held.pop() {
                            let (st, b) = json_of(
                                t.post(&format!("/api/holds/{hid}/release"), &json!({}))
                                    .await,
                            )
                            .await;
                            assert_eq!(st, StatusCode::OK, "{b}");
                        }
                    }
                    4 => {
                        let path = if n % 12 == 4 {
                            "/api/orders"
                        } else {
                            "/api/redis/orders"
                        };
                        let (st, b) =
                            json_of(t.post(path, &pickup_order(&[(p, q)], s.store)).await).await;
                        assert!(st.is_success() || st == StatusCode::CONFLICT, "{st} {b}");
                    }
                    _ => {
                        let till = format!("/api/stores/{}/orders", s.store);
                        let (st, b) =
                            json_of(t.post_with_key(&till, &s.key, &pos_sale(&[(p, q)])).await)
                                .await;
                        assert!(
                            st == StatusCode::CREATED || st == StatusCode::CONFLICT,
                            "{st} {b}"
                        );
                    }
                }
            }
            held
        }));
    }
    let mut left = Vec::new();
    for task in tasks {
        left.extend(task.await.unwrap());
    }
    // The holds nobody converted or released: let them all expire.
    for hid in &left {
        expire_in(&t, hid, -1).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let active: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM holds WHERE status = 'ACTIVE'")
            .fetch_one(&t.db)
            .await
            .unwrap();
        if active == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{active} holds still active"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t.wait_persisted().await;
    // Every hold in one state: converted ones name their order, the others none.
    let odd: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM holds h LEFT JOIN orders o ON o.id = h.order_id \
         WHERE (h.status = 'CONVERTED') <> (o.id IS NOT NULL AND o.status = 'CONFIRMED')",
    )
    .fetch_one(&t.db)
    .await
    .unwrap();
    assert_eq!(odd, 0, "a hold whose state and order disagree");
    let placed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM holds")
        .fetch_one(&t.db)
        .await
        .unwrap();
    assert!(placed > 0);
    for &p in &s.products {
        // Nothing held any more: every unit is on the shelf or sold, once.
        let (available, committed, on_hand) = t.stock_states(s.store, p).await;
        assert_eq!(reserved(&t, s.store, p).await, 0);
        assert!(available >= 0, "{p}: oversold, available {available}");
        assert_eq!(40 - t.sold(s.store, p).await, available, "{p}: units sold");
        assert_eq!(on_hand, available + committed);
    }
    t.assert_converged(InRedis::All).await;
}

/// While Redis is down, holds are placed, converted and released on MySQL alone, at once, and no
/// held unit is sold to anyone; once Redis is back its figures equal MySQL's and the Redis path
/// sells exactly what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_go_on_through_a_redis_outage_and_sell_nothing_twice() {
    let (proxy, t) = behind_redis_proxy(expiring).await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let first = hold(&t, &normal_order(&[(p, 3)], SEOUL.0, SEOUL.1)).await;
    assert_eq!(t.redis_stock(wh, p).await, Some(7));

    proxy.refuse(true);
    proxy.cut_all();
    let started = std::time::Instant::now();
    let second = hold(&t, &normal_order(&[(p, 4)], SEOUL.0, SEOUL.1)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // 3 left: an order for 4 is refused on MySQL, the Redis path refuses at once.
    let (st, b) = json_of(
        t.post("/api/orders", &normal_order(&[(p, 4)], SEOUL.0, SEOUL.1))
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    let (st, b) = json_of(
        t.post(
            "/api/redis/orders",
            &normal_order(&[(p, 1)], SEOUL.0, SEOUL.1),
        )
        .await,
    )
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    let (st, b) = json_of(
        t.post(&format!("/api/holds/{}/order", id(&first)), &json!({}))
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let (st, b) = json_of(
        t.post(&format!("/api/holds/{}/release", id(&second)), &json!({}))
            .await,
    )
    .await;
    assert_eq!(
        (st, b["status"].as_str()),
        (StatusCode::OK, Some("RELEASED")),
        "{b}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(t.stock_states(wh, p).await, (7, 3, 10));

    proxy.refuse(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t.redis_stock(wh, p).await != Some(7) || !t.storage().health().circuit().trusted() {
        assert!(
            std::time::Instant::now() < deadline,
            "redis never came back in step"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (st, b) = json_of(
        t.post(
            "/api/redis/orders",
            &normal_order(&[(p, 7)], SEOUL.0, SEOUL.1),
        )
        .await,
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{b}");
    let (st, b) = json_of(
        t.post(
            "/api/redis/orders",
            &normal_order(&[(p, 1)], SEOUL.0, SEOUL.1),
        )
        .await,
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "sold twice? {b}");
    t.wait_persisted().await;
    assert_eq!(t.stock_states(wh, p).await, (0, 10, 10));
    t.assert_converged(InRedis::All).await;
}

/// A hold answered 201 survives a `kill -9` of the service: after the kill every answered hold
/// is in MySQL, still ACTIVE with its units reserved; a new process converts some and expires
/// the rest on time, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_survive_kill_9_of_the_service_and_expire_after() {
    // The in-process app runs no jobs: the processes do the work.
    let t = TestApp::spawn_with(|c| c.jobs_enabled = false).await;
    let (wh, p) = t.warehouse_with_product(1_000, 2_000).await;
    let env = [("JOB_LEASE_SECS", "2"), ("JOBS_ENABLED", "true")];
    let mut first = t.spawn_process(&env);
    first
        .wait_for(&t.client, "/health/ready", Duration::from_secs(20))
        .await;
    let answered = Arc::new(std::sync::Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let client = t.client.clone();
            let url = format!("{}/api/holds", first.base);
            let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
            let answered = answered.clone();
            tokio::spawn(async move {
                for _ in 0..100 {
                    match client.post(&url).json(&body).send().await {
                        Ok(r) if r.status() == StatusCode::CREATED => {
                            let b: Value = r.json().await.unwrap();
                            answered.lock().unwrap().push(id(&b));
                        }
                        Ok(r) => panic!("hold answered {}", r.status()),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    first.kill();
    for w in workers {
        w.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(!answered.is_empty(), "no hold was answered before the kill");
    assert!(answered.len() < 1600, "the run ended before the kill");
    for hid in &answered {
        assert_eq!(hold_status(&t, hid).await, ("ACTIVE".into(), None), "{hid}");
    }
    let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM holds")
        .fetch_one(&t.db)
        .await
        .unwrap();
    assert_eq!(
        reserved(&t, wh, p).await,
        held,
        "every hold in MySQL holds its unit"
    );

    // A new process: half the answered holds are converted through it, the others expire.
    let second = t.spawn_process(&env);
    second
        .wait_for(&t.client, "/health/ready", Duration::from_secs(20))
        .await;
    let (convert, expire) = answered.split_at(answered.len() / 2);
    sqlx::query("UPDATE holds SET expires_at = NOW(3) WHERE status = 'ACTIVE'")
        .execute(&t.db)
        .await
        .unwrap();
    for hid in convert {
        sqlx::query("UPDATE holds SET expires_at = NOW(3) + INTERVAL 10 MINUTE WHERE id = ?")
            .bind(hid)
            .execute(&t.db)
            .await
            .unwrap();
    }
    for hid in convert {
        let r = t
            .client
            .post(format!("{}/api/holds/{hid}/order", second.base))
            .send()
            .await
            .unwrap();
        let (st, b) = json_of(r).await;
        assert_eq!(st, StatusCode::CREATED, "{b}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let active: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM holds WHERE status = 'ACTIVE'")
            .fetch_one(&t.db)
            .await
            .unwrap();
        if active == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{active} holds still active"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for hid in expire {
        assert_eq!(
            hold_status(&t, hid).await,
            ("EXPIRED".into(), None),
            "{hid}"
        );
    }
    let converted = convert.len() as i64;
    assert_eq!(t.count_orders("CONFIRMED").await, converted);
    assert_eq!(
        t.stock_states(wh, p).await,
        (2_000 - converted, converted, 2_000)
    );
    // A write cut by the kill between its Redis step and its commit left Redis short; a
    // reconciliation pass sets it from MySQL.
    t.run_reconcile().await;
    t.assert_converged(InRedis::All).await;
}

/// Reconciliation checks `reserved` against the ledger too: units held that no hold row explains
/// are reported, not rewritten; the held units themselves are no mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_reports_a_reserved_figure_the_ledger_does_not_explain() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    hold(&t, &normal_order(&[(p, 2)], SEOUL.0, SEOUL.1)).await;
    assert_eq!(t.run_reconcile().await["ledgerMismatches"], 0);
    sqlx::query(
        "UPDATE stock SET reserved = reserved + 1 WHERE location_id = ? AND product_id = ?",
    )
    .bind(wh)
    .bind(p)
    .execute(&t.db)
    .await
    .unwrap();
    let run = t.run_reconcile().await;
    assert_eq!(run["ledgerMismatches"], 1, "{run}");
    assert_eq!(
        run["details"]["mismatches"],
        json!([{"locationId": wh, "productId": p, "available": 8, "expected": 8,
                "reserved": 3, "expectedReserved": 2}])
    );
    assert_eq!(reserved(&t, wh, p).await, 3);
}
