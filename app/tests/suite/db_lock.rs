//! The DB-lock order path: invariants under real concurrency against real MariaDB and Redis.

use crate::common::*;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// I1 no oversell: 200 concurrent 1-unit orders for 50 units give exactly 50 created, 150
/// out-of-stock, stock 0, and a ledger that sums to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_oversell_on_the_db_lock_path() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(12_000, 50).await;

    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    let results = join_all((0..200).map(|_| t.post("/api/orders", &body))).await;
    let mut created = 0;
    let mut conflicts = 0;
    for r in results {
        let (status, body) = json_of(r).await;
        match status {
            StatusCode::CREATED => {
                created += 1;
                assert_eq!(body["status"], "CONFIRMED");
                assert_eq!(body["path"], "DB_LOCK");
                assert_eq!(body["items"][0]["unitPrice"], 12_000);
            }
            StatusCode::CONFLICT => {
                conflicts += 1;
                assert_eq!(body["type"], "/problems/out-of-stock");
                assert_eq!(body["productId"], p);
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((created, conflicts), (50, 150));
    assert_eq!(t.available(wh, p).await, 0);
    assert_eq!(t.ledger_sum(wh, p).await, -50);
    assert_eq!(t.count_orders("CONFIRMED").await, 50);
    assert_eq!(t.redis_stock(wh, p).await, Some(0));
    t.assert_converged(InRedis::All).await;
}

/// The group commit: 60 orders at once for one product with 30 units — 30 that fit (1 unit;
/// 10 of them with an `Idempotency-Key`) and 30 that never fit (31 units; 5 keyed) — are decided
/// in groups, and each is answered on its own: exactly the 30 that fit are created, the 30 that
/// do not are refused, and no refusal takes its group with it. Each created order has its own
/// ledger row and idempotency record; a refused key stays free.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_places_the_orders_that_fit_and_refuses_the_others_alone() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(1_000, 30).await;
    let small = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    let big = normal_order(&[(p, 31)], SEOUL.0, SEOUL.1);
    let send = |i: usize| {
        let (body, key) = if i % 2 == 0 {
            (&small, (i < 20).then(|| format!("small-{i}")))
        } else {
            (&big, (i < 10).then(|| format!("big-{i}")))
        };
        let mut r = t.client.post(format!("{}/api/orders", t.base)).json(body);
        if let Some(key) = &key {
            r = r.header("Idempotency-Key", key);
        }
        async move { (i, key, json_of(r.send().await.unwrap()).await) }
    };
    let mut created = std::collections::HashMap::new();
    let mut refused = 0;
    for (i, key, (status, body)) in join_all((0..60).map(send)).await {
        match (i % 2, status) {
            (0, StatusCode::CREATED) => {
                assert_eq!(body["status"], "CONFIRMED");
                created.insert(body["orderId"].as_str().unwrap().to_owned(), key);
            }
            (1, StatusCode::CONFLICT) => {
                assert_eq!(body["type"], "/problems/out-of-stock");
                assert_eq!(body["productId"], p);
                refused += 1;
            }
            other => panic!("order {i}: {other:?} {body}"),
        }
    }
    assert_eq!((created.len(), refused), (30, 30));
    assert_eq!(t.available(wh, p).await, 0);
    assert_eq!(t.ledger_sum(wh, p).await, -30);
    let ledger_rows: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT ref_id) FROM stock_movements WHERE product_id = ? AND available_delta = -1",
    )
    .bind(p)
    .fetch_one(&t.db)
    .await
    .unwrap();
    assert_eq!(ledger_rows, 30);
    assert_eq!(t.count_orders("CONFIRMED").await, 30);
    t.assert_converged(InRedis::All).await;

    // Grouped: 60 orders decided, in fewer groups than orders.
    let metrics = t
        .wait_for_metrics(&["stockflow_db_lock_grouped_orders_total 60"])
        .await;
    let groups = metric(&metrics, "stockflow_db_lock_group_commits_total").unwrap();
    assert!(groups < 60, "60 orders in {groups} groups");

    // A created keyed order replays; a refused key is free for a new request.
    for (id, key) in &created {
        let Some(key) = key else { continue };
        let r = t
            .client
            .post(format!("{}/api/orders", t.base))
            .header("Idempotency-Key", key)
            .json(&small)
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("idempotent-replayed").is_some());
        let (status, body) = json_of(r).await;
        assert_eq!(
            (status, body["orderId"].as_str().unwrap()),
            (StatusCode::CREATED, id.as_str())
        );
    }
    assert_eq!(t.admin_adjust(wh, p, 31).await.status(), StatusCode::OK);
    let r = t
        .client
        .post(format!("{}/api/orders", t.base))
        .header("Idempotency-Key", "big-1")
        .json(&big)
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("idempotent-replayed").is_none());
    assert_eq!(json_of(r).await.0, StatusCode::CREATED);
    assert_eq!(t.available(wh, p).await, 0);
    assert_eq!(t.count_orders("CONFIRMED").await, 31);
    t.assert_converged(InRedis::All).await;
}

/// When Redis holds fewer units than MySQL (online orders MySQL has not seen yet), a group is
/// decided again with Redis's figure: MySQL has 30, Redis 20, and of 40 one-unit orders at once
/// exactly 20 are created; both stores lose exactly those 20.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_never_sells_units_redis_holds_for_online_orders() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(1_000, 30).await;
    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    // Stands for 10 units reserved online and not yet persisted.
    t.set_redis_stock(wh, p, 20).await;
    let mut created = 0;
    for r in join_all((0..40).map(|_| t.post("/api/orders", &body))).await {
        match json_of(r).await {
            (StatusCode::CREATED, _) => created += 1,
            (StatusCode::CONFLICT, b) => assert_eq!(b["type"], "/problems/out-of-stock"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(created, 20);
    assert_eq!(t.available(wh, p).await, 10);
    assert_eq!(t.ledger_sum(wh, p).await, -20);
    assert_eq!(t.redis_stock(wh, p).await, Some(0));
}

/// Orders locking (A, B) and (B, A) at high concurrency never deadlock into a 5xx: rows are
/// locked in one fixed order and MySQL deadlocks are retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crossed_multi_line_orders_finish_without_server_errors() {
    let t = TestApp::spawn().await;
    let wh = t.add_warehouse().await;
    let a = t.add_stocked_product(wh, 1_000, 1_000).await;
    let b = t.add_stocked_product(wh, 2_000, 1_000).await;

    let ab = normal_order(&[(a, 1), (b, 2)], SEOUL.0, SEOUL.1);
    let ba = normal_order(&[(b, 2), (a, 1)], SEOUL.0, SEOUL.1);
    let results = join_all((0..200).map(|i| {
        let body = if i % 2 == 0 { &ab } else { &ba };
        t.post("/api/orders", body)
    }))
    .await;
    for r in results {
        let (status, body) = json_of(r).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["totalAmount"], 5_000);
    }
    assert_eq!(t.available(wh, a).await, 800);
    assert_eq!(t.available(wh, b).await, 600);
    t.assert_converged(InRedis::All).await;
}

/// Two lines of one product are summed, never under-counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_lines_are_summed() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(1_000, 5).await;

    let (status, body) = json_of(
        t.post(
            "/api/orders",
            &normal_order(&[(p, 3), (p, 3)], SEOUL.0, SEOUL.1),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(t.available(wh, p).await, 5);

    let (status, body) = json_of(
        t.post(
            "/api/orders",
            &normal_order(&[(p, 2), (p, 3)], SEOUL.0, SEOUL.1),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        body["items"],
        json!([{"productId": p, "quantity": 5, "unitPrice": 1000}])
    );
    assert_eq!(t.available(wh, p).await, 0);
}

/// I3 exactly-once restock: 50 concurrent cancels of one order restore its stock once, and all
/// answer the cancelled order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_storm_restores_stock_once() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let (_, order) = json_of(
        t.post("/api/orders", &normal_order(&[(p, 4)], SEOUL.0, SEOUL.1))
            .await,
    )
    .await;
    let id = order["orderId"].as_str().unwrap().to_owned();
    assert_eq!(t.available(wh, p).await, 6);

    let path = format!("/api/orders/{id}/cancel");
    let results = join_all((0..50).map(|_| t.patch(&path))).await;
    for r in results {
        let (status, body) = json_of(r).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "CANCELLED");
    }
    assert_eq!(t.available(wh, p).await, 10);
    assert_eq!(t.ledger_sum(wh, p).await, 0);
    assert_eq!(t.redis_stock(wh, p).await, Some(10));
    let (status, body) = json_of(t.get(&format!("/api/orders/{id}")).await).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("CANCELLED"))
    );
    t.assert_converged(InRedis::All).await;
}

/// A cancel burst on one hot row, with new orders arriving at once: 120 cancels of 120 orders
/// of one product and 60 new orders, all sent together. Every cancel answers `CANCELLED` and
/// every new order is created; the cancels are done in groups (fewer transactions than cancels),
/// each order's units come back once, with one ledger row and one `order.cancelled` event each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_burst_on_a_hot_row_is_done_in_groups_beside_new_orders() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(1_000, 500).await;
    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    let mut ids = Vec::new();
    for r in join_all((0..120).map(|_| t.post("/api/orders", &body))).await {
        let (status, b) = json_of(r).await;
        assert_eq!(status, StatusCode::CREATED, "{b}");
        ids.push(b["orderId"].as_str().unwrap().to_owned());
    }
    assert_eq!(t.available(wh, p).await, 380);

    let paths: Vec<String> = ids
        .iter()
        .map(|id| format!("/api/orders/{id}/cancel"))
        .collect();
    let cancels = join_all(paths.iter().map(|path| t.patch(path)));
    let orders = join_all((0..60).map(|_| t.post("/api/orders", &body)));
    let (cancels, orders) = tokio::join!(cancels, orders);
    for (id, r) in ids.iter().zip(cancels) {
        let (status, b) = json_of(r).await;
        assert_eq!(
            (status, b["status"].as_str()),
            (StatusCode::OK, Some("CANCELLED")),
            "{b}"
        );
        assert_eq!(b["orderId"], id.as_str());
    }
    for r in orders {
        let (status, b) = json_of(r).await;
        assert_eq!(status, StatusCode::CREATED, "{b}");
    }
    assert_eq!(t.available(wh, p).await, 440);
    assert_eq!(t.ledger_sum(wh, p).await, -60);
    assert_eq!(t.count_orders("CANCELLED").await, 120);
    assert_eq!(t.count_orders("CONFIRMED").await, 60);
    let (back, cancelled): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(DISTINCT ref_id) FROM stock_movements WHERE product_id = ? \
         AND reason = 'CANCEL' AND available_delta = 1), \
         (SELECT COUNT(DISTINCT subject) FROM events WHERE type = 'order.cancelled')",
    )
    .bind(p)
    .fetch_one(&t.db)
    .await
    .unwrap();
    assert_eq!((back, cancelled), (120, 120));
    t.assert_converged(InRedis::All).await;

    let metrics = t
        .wait_for_metrics(&["stockflow_db_lock_grouped_cancels_total 120"])
        .await;
    let groups = metric(&metrics, "stockflow_db_lock_cancel_groups_total").unwrap();
    assert!(groups < 120, "120 cancels in {groups} groups");
}

/// I5 idempotent creation: 20 concurrent requests with one key create one order; all get the same
/// answer. The same key with another body is refused with 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_key_creates_one_order() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(1_000, 100).await;
    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);

    let results = join_all((0..20).map(|_| {
        t.client
            .post(format!("{}/api/orders", t.base))
            .header("Idempotency-Key", "order-abc-1")
            .json(&body)
            .send()
    }))
    .await;
    let mut ids = std::collections::HashSet::new();
    let mut replayed = 0;
    for r in results {
        let r = r.unwrap();
        if r.headers().get("idempotent-replayed").is_some() {
            replayed += 1;
        }
        let (status, body) = json_of(r).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.insert(body["orderId"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(replayed, 19);
    assert_eq!(t.count_orders("CONFIRMED").await, 1);
    assert_eq!(t.available(wh, p).await, 99);

    let other = normal_order(&[(p, 2)], SEOUL.0, SEOUL.1);
    let r = t
        .client
        .post(format!("{}/api/orders", t.base))
        .header("Idempotency-Key", "order-abc-1")
        .json(&other)
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(r).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["type"], "/problems/idempotency-key-reused");
    assert_eq!(t.available(wh, p).await, 99);
}

/// An `Idempotency-Key` that is empty, too long or has a character outside visible ASCII is
/// refused (400, naming the header) on both order paths, and no order is placed; the longest and
/// oddest key that is allowed places its order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_off_its_pattern_is_refused() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(1_000, 100).await;
    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    let too_long = "k".repeat(129);
    for route in ["/api/orders", "/api/redis/orders"] {
        for bad in ["", "has space", "tab\there", "caf\u{e9}", too_long.as_str()] {
            let r = t
                .client
                .post(format!("{}{route}", t.base))
                .header("Idempotency-Key", bad)
                .json(&body)
                .send()
                .await
                .unwrap();
            let (status, problem) = json_of(r).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{route} {bad:?}: {problem}"
            );
            assert!(
                problem["detail"]
                    .as_str()
                    .unwrap()
                    .contains("Idempotency-Key"),
                "{route} {bad:?}: {problem}"
            );
        }
    }
    assert_eq!(t.available(wh, p).await, 100);
    for route in ["/api/orders", "/api/redis/orders"] {
        // 128 characters, from `!` to `~`.
        let longest = format!("!{route}{}", "~".repeat(127 - route.len()));
        let r = t
            .client
            .post(format!("{}{route}", t.base))
            .header("Idempotency-Key", longest)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{route}: {}", r.status());
    }
    t.wait_persisted().await;
    assert_eq!(t.available(wh, p).await, 98);
}

/// I6 bad input changes nothing: each malformed or out-of-range request gets its problem and the
/// stock stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_problem_and_changes_nothing() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let addr = json!({"latitude": SEOUL.0, "longitude": SEOUL.1});

    let raw = |body: &'static str| {
        t.client
            .post(format!("{}/api/orders", t.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: Vec<(reqwest::Response, StatusCode, &str, &str)> = vec![
        (raw("{\"items\": [").await.unwrap(), StatusCode::BAD_REQUEST, "/problems/bad-request", "malformed JSON"),
        (t.post("/api/orders", &json!({"items": [{"productId": "one", "quantity": 1}], "deliveryType": "NORMAL", "deliveryAddress": addr})).await,
            StatusCode::BAD_REQUEST, "/problems/bad-request", "string product id"),
        (t.post("/api/orders", &json!({"items": [{"productId": p, "quantity": 1}], "deliveryType": "TOMORROW", "deliveryAddress": addr})).await,
            StatusCode::BAD_REQUEST, "/problems/bad-request", "unknown delivery type"),
        (t.post("/api/orders", &json!({"items": [{"productId": p, "quantity": 1, "unitPrice": 1}], "deliveryType": "NORMAL", "deliveryAddress": addr})).await,
            StatusCode::BAD_REQUEST, "/problems/bad-request", "client-sent price"),
        (raw(r#"{"items": [{"productId": 1, "quantity": 100000000000000000000}], "deliveryType": "NORMAL", "deliveryAddress": {"latitude": 37.5, "longitude": 127.0}}"#).await.unwrap(),
            StatusCode::BAD_REQUEST, "/problems/bad-request", "quantity beyond 64 bits"),
        (t.post("/api/orders", &json!({"items": [{"productId": p, "quantity": -1}], "deliveryType": "NORMAL", "deliveryAddress": addr})).await,
            StatusCode::BAD_REQUEST, "/problems/bad-request", "negative quantity"),
        (t.post("/api/orders", &json!({"items": [{"productId": p, "quantity": 0}], "deliveryType": "NORMAL", "deliveryAddress": addr})).await,
            StatusCode::BAD_REQUEST, "/problems/bad-request", "zero quantity"),
        (t.post("/api/orders", &json!({"items": [{"productId": p, "quantity": 5000}], "deliveryType": "NORMAL", "deliveryAddress": addr})).await,
            StatusCode::BAD_REQUEST, "/problems/bad-request", "absurd quantity"),
        (t.post("/api/orders", &json!({"items": [], "deliveryType": "NORMAL", "deliveryAddress": addr})).await,
            StatusCode::BAD_REQUEST, "/problems/bad-request", "empty order"),
        (t.post("/api/orders", &json!({"items": [{"productId": p, "quantity": 1}], "deliveryType": "NORMAL"})).await,
            StatusCode::BAD_REQUEST, "/problems/bad-request", "missing address"),
        (t.post("/api/orders", &json!({"items": [{"productId": p, "quantity": 600}, {"productId": p, "quantity": 600}], "deliveryType": "NORMAL", "deliveryAddress": addr})).await,
            StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation-error", "two lines of one product over 1000"),
        (t.post("/api/orders", &json!({"items": [{"productId": p, "quantity": 1}], "deliveryType": "NORMAL", "deliveryAddress": {"latitude": 95.0, "longitude": 10.0}})).await,
            StatusCode::BAD_REQUEST, "/problems/bad-request", "latitude out of range"),
        (t.post("/api/orders", &json!({"items": [{"productId": 999999, "quantity": 1}], "deliveryType": "NORMAL", "deliveryAddress": addr})).await,
            StatusCode::NOT_FOUND, "/problems/unknown-product", "unknown product"),
        (t.post("/api/orders", &json!({"items": [{"productId": p, "quantity": 1}, {"productId": 999999, "quantity": 1}], "deliveryType": "NORMAL", "deliveryAddress": addr})).await,
            StatusCode::NOT_FOUND, "/problems/unknown-product", "unknown second product"),
    ];
    for (r, status, kind, what) in cases {
        let (got, body) = json_of(r).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["type"], kind, "{what}: {body}");
        assert_eq!(body["status"], status.as_u16(), "{what}");
        assert!(
            !body["detail"].as_str().unwrap_or("").is_empty(),
            "{what}: no detail"
        );
    }
    assert_eq!(t.available(wh, p).await, 10);
    assert_eq!(t.ledger_sum(wh, p).await, 0);
    assert_eq!(t.count_orders("CONFIRMED").await, 0);

    // Bad page parameters, unknown routes and missing admin credentials are problems too.
    let (s, b) = json_of(t.get("/api/products?after=-1").await).await;
    assert_eq!(
        (s, b["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("/problems/bad-request"))
    );
    let (s, b) = json_of(t.get("/api/products?limit=1000").await).await;
    assert_eq!(
        (s, b["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("/problems/bad-request"))
    );
    let (s, _) = json_of(t.get("/api/nothing-here").await).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = json_of(
        t.client
            .put(format!(
                "{}/api/admin/locations/{wh}/products/{p}/stock",
                t.base
            ))
            .json(&json!({"quantity": 1, "reason": "RESTOCK"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, b["type"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("/problems/unauthorized"))
    );
    assert_eq!(t.available(wh, p).await, 10);
}

/// Orders ship from the nearest warehouse that can fill every line; the next one is tried when
/// the nearest is short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_orders_ship_from_the_nearest_warehouse_that_can_fill_them() {
    let t = TestApp::spawn().await;
    let near = t.add_location("WAREHOUSE", "Near", 37.55, 126.95).await;
    let far = t.add_location("WAREHOUSE", "Far", 37.20, 127.40).await;
    let p = t.add_stocked_product(near, 1_000, 2).await;
    t.stock_row(far, p, 10).await;

    for (qty, expect) in [(2, near), (2, far)] {
        let (s, b) = json_of(
            t.post("/api/orders", &normal_order(&[(p, qty)], SEOUL.0, SEOUL.1))
                .await,
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        assert_eq!(b["fulfillmentLocationId"], expect);
        assert!(b["distanceKm"].as_f64().unwrap() > 0.0);
    }
}

/// Operators set and adjust stock; both go to the ledger and reach Redis as a change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_stock_changes_are_in_the_ledger() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;

    let (s, b) = json_of(t.admin_set_stock(wh, p, 25).await).await;
    assert_eq!(
        (s, b["before"].as_i64(), b["after"].as_i64()),
        (StatusCode::OK, Some(10), Some(25))
    );
    let (s, b) = json_of(t.admin_adjust(wh, p, -5).await).await;
    assert_eq!((s, b["after"].as_i64()), (StatusCode::OK, Some(20)));
    let (s, b) = json_of(t.admin_adjust(wh, p, -50).await).await;
    assert_eq!(
        (s, b["type"].as_str()),
        (StatusCode::CONFLICT, Some("/problems/conflict"))
    );
    assert_eq!(t.available(wh, p).await, 20);
    assert_eq!(t.ledger_sum(wh, p).await, 10);
    assert_eq!(t.redis_stock(wh, p).await, Some(20));
    t.assert_converged(InRedis::All).await;
}

/// I6 bad input changes nothing, for the rules that tie fields to the delivery type: the spec
/// states them (one schema per `deliveryType`), so breaking one is a schema violation — `400`
/// `/problems/bad-request`, like a wrong type — whose `detail` names the rule, on both online
/// paths. `null` still means absent, so a `NORMAL` order with `"storeId": null` is taken, and its
/// `Idempotency-Key` fingerprint is the one of the same order without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_type_rules_are_schema_violations_that_name_the_rule() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let addr = json!({"latitude": SEOUL.0, "longitude": SEOUL.1});
    let items = json!([{"productId": p, "quantity": 1}]);
    let cases = [
        (
            json!({"items": items, "deliveryType": "NORMAL", "deliveryAddress": addr, "storeId": 3}),
            "storeId is only for PICKUP orders",
        ),
        (
            json!({"items": items, "deliveryType": "SAME_DAY", "deliveryAddress": addr, "storeId": 3}),
            "storeId is only for PICKUP orders",
        ),
        (
            json!({"items": items, "deliveryType": "SAME_DAY"}),
            "deliveryAddress is required for SAME_DAY delivery",
        ),
        (
            json!({"items": items, "deliveryType": "NORMAL", "deliveryAddress": null}),
            "deliveryAddress is required for NORMAL delivery",
        ),
        (
            json!({"items": items, "deliveryType": "PICKUP", "deliveryAddress": addr}),
            "storeId is required for PICKUP orders",
        ),
        (
            json!({"items": items, "deliveryAddress": addr}),
            "deliveryType is required",
        ),
        (
            json!({"items": items, "deliveryType": "TOMORROW", "deliveryAddress": addr}),
            "deliveryType must be NORMAL, SAME_DAY or PICKUP",
        ),
        (
            json!({"items": items, "deliveryType": "PICKUP", "storeId": 3, "unitPrice": 1}),
            "unknown field `unitPrice`",
        ),
    ];
    for path in ["/api/orders", "/api/redis/orders"] {
        for (body, rule) in &cases {
            let (s, b) = json_of(t.post(path, body).await).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{path} {body}: {b}");
            assert_eq!(b["type"], "/problems/bad-request", "{path} {body}");
            assert!(
                b["detail"].as_str().unwrap().contains(rule),
                "{path} {body}: {b} does not say {rule:?}"
            );
        }
    }
    assert_eq!(t.available(wh, p).await, 10);
    assert_eq!(t.ledger_sum(wh, p).await, 0);

    // The wire format of a valid order is unchanged: `null` is absent.
    let keyed = |body: Value| {
        t.client
            .post(format!("{}/api/orders", t.base))
            .header("Idempotency-Key", "same-order")
            .json(&body)
            .send()
    };
    let plain = normal_order(&[(p, 2)], SEOUL.0, SEOUL.1);
    let mut with_null = plain.clone();
    with_null["storeId"] = Value::Null;
    let (s, first) = json_of(keyed(with_null).await.unwrap()).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let r = keyed(plain).await.unwrap();
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let (s, again) = json_of(r).await;
    assert_eq!(
        (s, &again["orderId"]),
        (StatusCode::CREATED, &first["orderId"])
    );
    assert_eq!(t.available(wh, p).await, 8);
}
