//! The order's way out of the building: pickups made ready and collected with their code,
//! same-day orders dispatched, warehouse orders shipped, and pickups nobody came for. Each test
//! ends on the committed identity: for every stock row, `committed` = Σ `committed_delta` = the
//! units of the location's persisted, not cancelled, not handed-over online orders.

use crate::common::*;
use futures::future::join_all;
use reqwest::{Response, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// A store step (`ready`, `collect`, `dispatch`) with the store's key.
async fn step(
    t: &TestApp,
    key: &str,
    store: u64,
    id: &str,
    what: &str,
    body: Option<&Value>,
) -> Response {
    let req = t
        .client
        .post(format!("{}/api/stores/{store}/orders/{id}/{what}", t.base))
        .bearer_auth(key);
    match body {
        Some(b) => req.json(b),
        None => req,
    }
    .send()
    .await
    .unwrap()
}

fn code(c: &str) -> Value {
    serde_json::json!({"pickupCode": c})
}

/// A DB-lock order that must be created (201); answers its body.
async fn place_db_lock(t: &TestApp, body: &Value) -> Value {
    let (s, b) = json_of(t.post("/api/orders", body).await).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b
}

/// The ledger rows of an order: (reason, available delta, committed delta), in order.
async fn ledger_of(t: &TestApp, id: &str) -> Vec<(String, i64, i64)> {
    sqlx::query_as(
        "SELECT CAST(reason AS CHAR), available_delta, committed_delta FROM stock_movements \
         WHERE ref_id = ? ORDER BY id",
    )
    .bind(id)
    .fetch_all(&t.db)
    .await
    .unwrap()
}

/// A pickup placed on the DB-lock path carries a code, is made ready, collected with its code,
/// and its units leave committed and onHand exactly once, with their ledger rows; the store's
/// answers never show the code, the shop's do, and a cancel after the hand-over is a 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pickup_is_made_ready_then_collected_and_leaves_committed_once() {
    let t = TestApp::spawn().await;
    let s = t.store_with(1, 10).await;
    let p = s.products[0];
    let b = place_db_lock(&t, &pickup_order(&[(p, 3)], s.store)).await;
    let id = b["orderId"].as_str().unwrap().to_owned();
    assert_eq!(b["fulfillment"]["status"], "UNFULFILLED", "{b}");
    let pickup_code = b["fulfillment"]["pickupCode"].as_str().unwrap().to_owned();
    assert!(
        pickup_code.len() == 6 && pickup_code.chars().all(|c| c.is_ascii_digit()),
        "{b}"
    );
    assert_eq!(t.stock_states(s.store, p).await, (7, 3, 10));

    // Work list: the order to prepare, without its code.
    let list = t
        .client
        .get(format!(
            "{}/api/stores/{}/orders?fulfillment=UNFULFILLED",
            t.base, s.store
        ))
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    let (st, list) = json_of(list).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    assert_eq!(list["orders"][0]["orderId"], id.as_str(), "{list}");
    assert!(
        list["orders"][0]["fulfillment"].get("pickupCode").is_none(),
        "{list}"
    );

    // Collecting before it is ready is refused, and changes nothing.
    let (st, _) = json_of(
        step(
            &t,
            &s.key,
            s.store,
            &id,
            "collect",
            Some(&code(&pickup_code)),
        )
        .await,
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT);

    let (st, r) = json_of(step(&t, &s.key, s.store, &id, "ready", None).await).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["fulfillment"]["status"], "READY_FOR_PICKUP", "{r}");
    assert!(r["fulfillment"]["readyAt"].is_string(), "{r}");
    assert!(
        r["fulfillment"].get("pickupCode").is_none(),
        "the store never sees the code: {r}"
    );
    // Again: the same answer, nothing more.
    let (st, again) = json_of(step(&t, &s.key, s.store, &id, "ready", None).await).await;
    assert_eq!(
        (st, &again["fulfillment"]),
        (StatusCode::OK, &r["fulfillment"])
    );
    assert_eq!(
        t.stock_states(s.store, p).await,
        (7, 3, 10),
        "ready moves no stock"
    );

    // The shop sees the step and the code.
    let (_, shop) = json_of(t.get(&format!("/api/orders/{id}")).await).await;
    assert_eq!(shop["fulfillment"]["status"], "READY_FOR_PICKUP", "{shop}");
    assert_eq!(
        shop["fulfillment"]["pickupCode"],
        pickup_code.as_str(),
        "{shop}"
    );

    let (st, r) = json_of(
        step(
            &t,
            &s.key,
            s.store,
            &id,
            "collect",
            Some(&code(&pickup_code)),
        )
        .await,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["fulfillment"]["status"], "COLLECTED", "{r}");
    assert!(r["fulfillment"]["handedOverAt"].is_string(), "{r}");
    assert_eq!(t.stock_states(s.store, p).await, (7, 0, 7));
    assert_eq!(
        ledger_of(&t, &id).await,
        vec![("ORDER".into(), -3, 3), ("FULFILLED".into(), 0, -3)]
    );
    // A step backwards, and a cancel after the hand-over: 409, nothing changes.
    let (st, _) = json_of(step(&t, &s.key, s.store, &id, "ready", None).await).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, b) = json_of(t.patch(&format!("/api/orders/{id}/cancel")).await).await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("handed over"), "{b}");
    assert_eq!(t.stock_states(s.store, p).await, (7, 0, 7));
    assert_eq!(t.redis_stock(s.store, p).await, Some(7));
    t.assert_ledger_identities().await;
}

/// A Redis-path pickup's code travels in its Redis record and reaches MySQL with the order; 50
/// collects of one order at once hand it over exactly once (one set of FULFILLED rows), and every
/// answer is the collected order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_collects_of_one_order_hand_it_over_once() {
    let t = TestApp::spawn().await;
    let s = t.store_with(2, 10).await;
    let (p, q) = (s.products[0], s.products[1]);
    let id = t
        .place_redis(&pickup_order(&[(p, 2), (q, 1)], s.store))
        .await;
    let (_, shop) = json_of(t.get(&format!("/api/orders/{id}")).await).await;
    assert_eq!(shop["fulfillment"]["status"], "UNFULFILLED", "{shop}");
    let pickup_code = shop["fulfillment"]["pickupCode"]
        .as_str()
        .unwrap()
        .to_owned();
    t.wait_persisted().await;
    let kept: Option<String> = sqlx::query_scalar("SELECT pickup_code FROM orders WHERE id = ?")
        .bind(&id)
        .fetch_one(&t.db)
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some(pickup_code.as_str()));
    assert_eq!(t.stock_states(s.store, p).await, (8, 2, 10));

    let (st, _) = json_of(step(&t, &s.key, s.store, &id, "ready", None).await).await;
    assert_eq!(st, StatusCode::OK);
    let body = code(&pickup_code);
    let answers =
        join_all((0..50).map(|_| step(&t, &s.key, s.store, &id, "collect", Some(&body)))).await;
    for r in answers {
        let (st, b) = json_of(r).await;
        assert_eq!(
            (st, b["fulfillment"]["status"].as_str()),
            (StatusCode::OK, Some("COLLECTED")),
            "{b}"
        );
    }
    let fulfilled: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM stock_movements WHERE ref_id = ? AND reason = 'FULFILLED'",
    )
    .bind(&id)
    .fetch_one(&t.db)
    .await
    .unwrap();
    assert_eq!(fulfilled, 2, "one FULFILLED row per line, once");
    assert_eq!(t.stock_states(s.store, p).await, (8, 0, 8));
    assert_eq!(t.stock_states(s.store, q).await, (9, 0, 9));
    t.assert_ledger_identities().await;
}

/// A cancel and a collect of one ready pickup sent at once: exactly one wins (the other is a
/// 409), and the stock states are those of the winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_racing_a_collect_has_exactly_one_winner() {
    let t = TestApp::spawn().await;
    let s = t.store_with(1, 100).await;
    let p = s.products[0];
    let (mut cancels, mut collects) = (0, 0);
    for _ in 0..6 {
        let b = place_db_lock(&t, &pickup_order(&[(p, 2)], s.store)).await;
        let id = b["orderId"].as_str().unwrap().to_owned();
        let pickup_code = b["fulfillment"]["pickupCode"].as_str().unwrap().to_owned();
        let (st, _) = json_of(step(&t, &s.key, s.store, &id, "ready", None).await).await;
        assert_eq!(st, StatusCode::OK);
        let before = t.stock_states(s.store, p).await;
        let cancel_path = format!("/api/orders/{id}/cancel");
        let body = code(&pickup_code);
        let (cancel, collect) = tokio::join!(
            t.patch(&cancel_path),
            step(&t, &s.key, s.store, &id, "collect", Some(&body))
        );
        let (cs, cb) = json_of(cancel).await;
        let (ls, lb) = json_of(collect).await;
        match (cs, ls) {
            (StatusCode::OK, StatusCode::CONFLICT) => {
                cancels += 1;
                assert_eq!(cb["status"], "CANCELLED", "{cb}");
                assert_eq!(
                    t.stock_states(s.store, p).await,
                    (before.0 + 2, before.1 - 2, before.2)
                );
            }
            (StatusCode::CONFLICT, StatusCode::OK) => {
                collects += 1;
                assert_eq!(lb["fulfillment"]["status"], "COLLECTED", "{lb}");
                assert_eq!(
                    t.stock_states(s.store, p).await,
                    (before.0, before.1 - 2, before.2 - 2)
                );
            }
            other => panic!("not exactly one winner: {other:?} {cb} {lb}"),
        }
        assert_eq!(
            t.redis_stock(s.store, p).await,
            Some(t.stock_states(s.store, p).await.0)
        );
    }
    assert_eq!(cancels + collects, 6);
    t.assert_ledger_identities().await;
}

/// Operators read a stock row's ledger newest first, page by page: each row with its reason, its
/// cause and what it moved of each state; the rows sum to the states.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_reads_newest_first_in_pages() {
    let t = TestApp::spawn().await;
    let s = t.store_with(1, 10).await;
    let p = s.products[0];
    let b = place_db_lock(&t, &pickup_order(&[(p, 3)], s.store)).await;
    let id = b["orderId"].as_str().unwrap().to_owned();
    let pickup_code = b["fulfillment"]["pickupCode"].as_str().unwrap().to_owned();
    assert_eq!(t.admin_adjust(s.store, p, 5).await.status(), StatusCode::OK);
    for (what, body) in [("ready", None), ("collect", Some(code(&pickup_code)))] {
        let (st, b) = json_of(step(&t, &s.key, s.store, &id, what, body.as_ref()).await).await;
        assert_eq!(st, StatusCode::OK, "{what}: {b}");
    }
    let page = |after: Option<u64>| {
        let t = &t;
        async move {
            let mut path = format!(
                "/api/admin/locations/{}/products/{p}/movements?limit=2",
                s.store
            );
            if let Some(a) = after {
                path.push_str(&format!("&after={a}"));
            }
            let (st, b) = json_of(t.admin().get(&path).await).await;
            assert_eq!(st, StatusCode::OK, "{b}");
            b
        }
    };
    let row = |m: &Value| {
        (
            m["reason"].as_str().unwrap().to_owned(),
            m["refId"].as_str().unwrap().to_owned(),
            m["availableDelta"].as_i64().unwrap(),
            m["committedDelta"].as_i64().unwrap(),
            m["onHandDelta"].as_i64().unwrap(),
        )
    };
    let first = page(None).await;
    let rows: Vec<_> = first["movements"]
        .as_array()
        .unwrap()
        .iter()
        .map(row)
        .collect();
    assert_eq!(rows[0], ("FULFILLED".to_owned(), id.clone(), 0, -3, -3));
    assert_eq!(
        (rows[1].0.as_str(), rows[1].2, rows[1].3, rows[1].4),
        ("ADJUST", 5, 0, 5)
    );
    let next = first["next"].as_u64().unwrap();
    assert_eq!(Some(next), first["movements"][1]["id"].as_u64());
    let second = page(Some(next)).await;
    let rows: Vec<_> = second["movements"]
        .as_array()
        .unwrap()
        .iter()
        .map(row)
        .collect();
    assert_eq!(rows, [("ORDER".to_owned(), id.clone(), -3, 3, 0)]);
    assert!(second.get("next").is_none(), "{second}");
    assert_eq!(t.stock_states(s.store, p).await, (12, 0, 12));
    // Unknown location or product: 404.
    let (st, _) = json_of(
        t.admin()
            .get(&format!(
                "/api/admin/locations/{}/products/999999/movements",
                s.store
            ))
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

/// A Redis-path cancel whose script ran but whose MySQL commit failed reaches MySQL through the
/// consumer, later. When the store handed the order over before that, the hand-over stands: the
/// consumer does not apply the late cancel (the units left the building), `committed` falls once,
/// and the units the script gave back in Redis are taken back — by the consumer, and by a
/// reconciliation that runs before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_that_reaches_mysql_after_the_hand_over_changes_nothing() {
    let mut t = TestApp::spawn_with(|c| c.jobs_enabled = false).await;
    let s = t.store_with(1, 10).await;
    let p = s.products[0];
    let id = t.place_redis(&pickup_order(&[(p, 3)], s.store)).await;
    t.wait_persisted().await;
    let (_, shop) = json_of(t.get(&format!("/api/orders/{id}")).await).await;
    let pickup_code = shop["fulfillment"]["pickupCode"]
        .as_str()
        .unwrap()
        .to_owned();
    t.app().stop_consumer_now();

    // The cancel's script ran in Redis (its event is in the stream); its MySQL commit failed.
    let loc = sf_routing::LocationId::new_unchecked(s.store);
    let cancelled: Vec<i64> = redis::Script::new(sf_persistence::scripts::cancel::SOURCE)
        .key(t.keys().order(loc, &id))
        .key(t.keys().stream(loc))
        .key(t.stock_key(s.store, p))
        .arg(&id)
        .arg(format!("{p}:3"))
        .arg(3)
        .invoke_async(&mut t.redis().await)
        .await
        .unwrap();
    assert_eq!(cancelled, [1]);
    assert_eq!(t.redis_stock(s.store, p).await, Some(10));

    // MySQL still holds the order as sold: the store hands it over.
    for (what, body) in [("ready", None), ("collect", Some(code(&pickup_code)))] {
        let (st, b) = json_of(step(&t, &s.key, s.store, &id, what, body.as_ref()).await).await;
        assert_eq!(st, StatusCode::OK, "{what}: {b}");
    }
    assert_eq!(t.stock_states(s.store, p).await, (7, 0, 7));

    // Reconciliation counts the late cancel as giving nothing back.
    t.run_reconcile().await;
    assert_eq!(t.redis_stock(s.store, p).await, Some(7));

    // So does the consumer: it acknowledges the cancel without applying it.
    t.set_redis_stock(s.store, p, 10).await;
    t.app().start_consumer();
    settle(&t).await;
    let (_, shop) = json_of(t.get(&format!("/api/orders/{id}")).await).await;
    assert_eq!(shop["status"], "CONFIRMED", "{shop}");
    assert_eq!(shop["fulfillment"]["status"], "COLLECTED", "{shop}");
    assert_eq!(t.stock_states(s.store, p).await, (7, 0, 7));
    assert_eq!(
        ledger_of(&t, &id).await,
        [("ORDER".to_owned(), -3, 3), ("FULFILLED".to_owned(), 0, -3)]
    );
    assert_eq!(t.redis_stock(s.store, p).await, Some(7));
    t.assert_ledger_identities().await;
    t.assert_converged(InRedis::All).await;
}

/// A wrong code is a 403 that changes nothing but the count; after 5 even the right code is
/// refused at the store, and an operator collects the order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_are_refused_counted_and_lock_the_store_out_after_five() {
    let t = TestApp::spawn().await;
    let s = t.store_with(1, 10).await;
    let p = s.products[0];
    let b = place_db_lock(&t, &pickup_order(&[(p, 4)], s.store)).await;
    let id = b["orderId"].as_str().unwrap().to_owned();
    let right = b["fulfillment"]["pickupCode"].as_str().unwrap().to_owned();
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);
    json_of(step(&t, &s.key, s.store, &id, "ready", None).await).await;
    for n in 1..=5 {
        let (st, b) =
            json_of(step(&t, &s.key, s.store, &id, "collect", Some(&code(&wrong))).await).await;
        assert_eq!(
            (st, b["type"].as_str()),
            (StatusCode::FORBIDDEN, Some("/problems/wrong-pickup-code")),
            "try {n}: {b}"
        );
    }
    let counted: i32 = sqlx::query_scalar("SELECT wrong_codes FROM orders WHERE id = ?")
        .bind(&id)
        .fetch_one(&t.db)
        .await
        .unwrap();
    assert_eq!(counted, 5);
    let (st, b) =
        json_of(step(&t, &s.key, s.store, &id, "collect", Some(&code(&right))).await).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    assert!(b["detail"].as_str().unwrap().contains("operator"), "{b}");
    assert_eq!(
        t.stock_states(s.store, p).await,
        (6, 4, 10),
        "nothing handed over"
    );
    // A malformed code is a 400/422 before it is even counted.
    let (st, _) =
        json_of(step(&t, &s.key, s.store, &id, "collect", Some(&code("12ab"))).await).await;
    assert!(st.is_client_error() && st != StatusCode::FORBIDDEN, "{st}");

    let (st, b) = json_of(
        t.admin()
            .post_empty(&format!("/api/admin/orders/{id}/collect"))
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["fulfillment"]["status"], "COLLECTED", "{b}");
    assert_eq!(
        b["fulfillment"]["pickupCode"],
        right.as_str(),
        "the operator's answer is the shop's view"
    );
    assert_eq!(t.stock_states(s.store, p).await, (6, 0, 6));
    t.assert_ledger_identities().await;
}

/// A same-day order is dispatched by its store, a warehouse order shipped by an operator; each
/// step is for one delivery type and one store, and repeats answer the current state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_and_ship_hand_over_their_orders_once() {
    let t = TestApp::spawn().await;
    let s = t.store_with(1, 10).await;
    let p = s.products[0];
    let other = t.add_location("STORE", "Other", 37.60, 126.97).await;
    let other_key = t.issue_key(other).await;
    let (wh, wp) = t.warehouse_with_product(1_000, 10).await;

    let b = place_db_lock(&t, &same_day_order(&[(p, 2)])).await;
    let id = b["orderId"].as_str().unwrap().to_owned();
    assert!(
        b["fulfillment"].get("pickupCode").is_none(),
        "only pickups have a code: {b}"
    );
    // Not a pickup; and not the other store's order.
    let (st, _) = json_of(step(&t, &s.key, s.store, &id, "ready", None).await).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, _) = json_of(step(&t, &other_key, other, &id, "dispatch", None).await).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    for _ in 0..2 {
        let (st, r) = json_of(step(&t, &s.key, s.store, &id, "dispatch", None).await).await;
        assert_eq!(
            (st, r["fulfillment"]["status"].as_str()),
            (StatusCode::OK, Some("DISPATCHED")),
            "{r}"
        );
    }
    assert_eq!(t.stock_states(s.store, p).await, (8, 0, 8));

    let b = place_db_lock(&t, &normal_order(&[(wp, 3)], SEOUL.0, SEOUL.1)).await;
    let wid = b["orderId"].as_str().unwrap().to_owned();
    assert_eq!(t.stock_states(wh, wp).await, (7, 3, 10));
    // A store cannot ship, and an operator cannot dispatch a warehouse order as shipped twice.
    for _ in 0..2 {
        let (st, r) = json_of(
            t.admin()
                .post_empty(&format!("/api/admin/orders/{wid}/ship"))
                .await,
        )
        .await;
        assert_eq!(
            (st, r["fulfillment"]["status"].as_str()),
            (StatusCode::OK, Some("SHIPPED")),
            "{r}"
        );
    }
    let (st, _) = json_of(
        t.admin()
            .post_empty(&format!("/api/admin/orders/{id}/ship"))
            .await,
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "a same-day order is not shipped");
    assert_eq!(t.stock_states(wh, wp).await, (7, 0, 7));
    assert_eq!(
        ledger_of(&t, &wid).await,
        vec![("ORDER".into(), -3, 3), ("FULFILLED".into(), 0, -3)]
    );
    let (st, _) = json_of(t.admin().post_empty("/api/admin/orders/1-nope/ship").await).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    t.assert_ledger_identities().await;
}

/// A Redis-path order MySQL does not hold yet takes no step: a 409 that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_on_an_order_not_yet_persisted_is_a_conflict() {
    let t = TestApp::spawn_with(|c| c.consumer_enabled = false).await;
    let s = t.store_with(1, 10).await;
    let p = s.products[0];
    let id = t.place_redis(&pickup_order(&[(p, 1)], s.store)).await;
    let (st, b) = json_of(step(&t, &s.key, s.store, &id, "ready", None).await).await;
    assert_eq!(st, StatusCode::CONFLICT, "{b}");
    assert!(
        b["detail"].as_str().unwrap().contains("not yet persisted"),
        "{b}"
    );
    let (_, shop) = json_of(t.get(&format!("/api/orders/{id}")).await).await;
    assert_eq!(shop["fulfillment"]["status"], "UNFULFILLED", "{shop}");
}

/// Pickups left ready longer than PICKUP_EXPIRY are cancelled as NOT_COLLECTED exactly once,
/// with two instances running the job every second: their units are available again in MySQL
/// and Redis, one NOT_COLLECTED ledger row per line.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pickups_not_collected_in_time_are_cancelled_once_across_two_instances() {
    let every_second = |c: &mut stock_flow::config::Config| {
        c.pickup_expiry = Duration::from_secs(1);
        c.not_collected_schedule = "* * * * * *".into();
        c.jobs_enabled = true;
    };
    let t = TestApp::spawn_with(every_second).await;
    let second = t.spawn_instance(every_second).await;
    let s = t.store_with(1, 10).await;
    let p = s.products[0];
    let mut ids = Vec::new();
    for _ in 0..3 {
        let b = place_db_lock(&t, &pickup_order(&[(p, 2)], s.store)).await;
        let id = b["orderId"].as_str().unwrap().to_owned();
        let (st, _) = json_of(step(&t, &s.key, s.store, &id, "ready", None).await).await;
        assert_eq!(st, StatusCode::OK);
        ids.push(id);
    }
    // One left unfulfilled: never expired.
    let waiting = place_db_lock(&t, &pickup_order(&[(p, 1)], s.store)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while t.count_orders("CANCELLED").await < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job did not cancel the pickups"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Two more rounds of both instances: nothing happens twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in &ids {
        let (_, b) = json_of(t.get(&format!("/api/orders/{id}")).await).await;
        assert_eq!(
            (b["status"].as_str(), b["cancelReason"].as_str()),
            (Some("CANCELLED"), Some("NOT_COLLECTED")),
            "{b}"
        );
        assert_eq!(
            ledger_of(&t, id).await,
            vec![("ORDER".into(), -2, 2), ("NOT_COLLECTED".into(), 2, -2)]
        );
    }
    assert_eq!(
        t.order_status(waiting["orderId"].as_str().unwrap()).await,
        "CONFIRMED"
    );
    assert_eq!(t.stock_states(s.store, p).await, (9, 1, 10));
    assert_eq!(t.redis_stock(s.store, p).await, Some(9));
    let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_runs WHERE job = 'not-collected'")
        .fetch_one(&t.db)
        .await
        .unwrap();
    assert!(runs >= 2, "the job ran on its schedule ({runs} runs)");
    second.stop().await;
    t.assert_ledger_identities().await;
}

/// The work list: a store's orders at one step, oldest first, page after page; an order made
/// ready moves to the other list, and another store's key sees nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_work_list_pages_oldest_first_without_codes() {
    let t = TestApp::spawn().await;
    let s = t.store_with(1, 100).await;
    let p = s.products[0];
    let mut ids = Vec::new();
    for _ in 0..5 {
        let b = place_db_lock(&t, &pickup_order(&[(p, 1)], s.store)).await;
        ids.push(b["orderId"].as_str().unwrap().to_owned());
        // Distinct acceptance times, so that oldest first is the order of placing.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let list = |fulfillment: &'static str, after: Option<String>| {
        let t = &t;
        let key = s.key.clone();
        async move {
            let mut url = format!(
                "{}/api/stores/{}/orders?fulfillment={fulfillment}&limit=2",
                t.base, s.store
            );
            if let Some(a) = after {
                url.push_str(&format!("&after={a}"));
            }
            let (st, b) = json_of(t.client.get(url).bearer_auth(key).send().await.unwrap()).await;
            assert_eq!(st, StatusCode::OK, "{b}");
            b
        }
    };
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = list("UNFULFILLED", after).await;
        for o in page["orders"].as_array().unwrap() {
            assert!(o["fulfillment"].get("pickupCode").is_none(), "{o}");
            seen.push(o["orderId"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    json_of(step(&t, &s.key, s.store, &ids[2], "ready", None).await).await;
    let ready = list("READY_FOR_PICKUP", None).await;
    assert_eq!(ready["orders"].as_array().unwrap().len(), 1, "{ready}");
    assert_eq!(ready["orders"][0]["orderId"], ids[2].as_str());
    assert!(ready.get("next").is_none(), "{ready}");
    let unfulfilled = list("UNFULFILLED", None).await;
    assert_eq!(unfulfilled["orders"][1]["orderId"], ids[1].as_str());

    let other = t.add_location("STORE", "Other", 37.60, 126.97).await;
    let other_key = t.issue_key(other).await;
    let r = t
        .client
        .get(format!(
            "{}/api/stores/{}/orders?fulfillment=UNFULFILLED",
            t.base, s.store
        ))
        .bearer_auth(&other_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    t.assert_ledger_identities().await;
}
