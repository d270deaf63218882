//! Store-aware fulfillment: same-day and pickup routing, the POS API, and per-store keys.

use crate::common::*;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;

fn same_day(p: u64, qty: i64) -> Value {
    same_day_order(&[(p, qty)])
}

fn pickup(p: u64, qty: i64, store: u64) -> Value {
    pickup_order(&[(p, qty)], store)
}

/// Same-day picks the nearest store with stock, skips a nearer one without, respects the radius,
/// and is a 409 when nothing in range has it; on both order paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_day_routing_picks_the_nearest_store_with_stock() {
    let t = TestApp::spawn().await;
    let w = t.town().await;
    t.stock_row(w.near, w.product, 0).await;
    t.stock_row(w.middle, w.product, 1).await;
    t.stock_row(w.far, w.product, 2).await;
    t.stock_row(w.out_of_range, w.product, 100).await;

    for (path, ok) in [
        ("/api/orders", StatusCode::CREATED),
        ("/api/redis/orders", StatusCode::ACCEPTED),
    ] {
        let (s, b) = json_of(t.post(path, &same_day(w.product, 1)).await).await;
        assert_eq!(s, ok, "{b}");
        assert_eq!(b["deliveryType"], "SAME_DAY");
        let expect = if path == "/api/orders" {
            w.middle
        } else {
            w.far
        };
        assert_eq!(b["fulfillmentLocationId"], expect, "{path}");
        let d = b["distanceKm"].as_f64().unwrap();
        assert!(d > 3.0 && d < 9.0, "{d}");
    }
    // Only the far store has a unit left (1 of 2); 2 units are nowhere in range.
    let (s, b) = json_of(t.post("/api/redis/orders", &same_day(w.product, 2)).await).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["type"], "/problems/out-of-stock");
    assert!(b["detail"].as_str().unwrap().contains("in range"), "{b}");
    // The store 14.8 km away is never used, although it has 100.
    t.wait_persisted().await;
    assert_eq!(t.available(w.out_of_range, w.product).await, 100);
}

/// Nothing within the radius at all: 409 with a clear detail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_day_with_no_store_in_range_is_a_conflict() {
    let t = TestApp::spawn().await;
    let store = t.add_location("STORE", "Busan", 35.1796, 129.0756).await;
    let p = t.add_product(1_000).await;
    t.stock_row(store, p, 10).await;
    let (s, b) = json_of(t.post("/api/orders", &same_day(p, 1)).await).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("no active store within"),
        "{b}"
    );
}

/// Pickup at a store without stock: 409 whose alternatives really have the stock, nearest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pickup_without_stock_lists_nearby_stores_that_have_it() {
    let t = TestApp::spawn().await;
    let w = t.town().await;
    t.stock_row(w.near, w.product, 0).await;
    t.stock_row(w.middle, w.product, 1).await;
    t.stock_row(w.far, w.product, 5).await;
    t.stock_row(w.out_of_range, w.product, 5).await;

    for path in ["/api/orders", "/api/redis/orders"] {
        let (s, b) = json_of(t.post(path, &pickup(w.product, 2, w.near)).await).await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");
        let alts: Vec<u64> = b["alternatives"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["storeId"].as_u64().unwrap())
            .collect();
        // Middle has only 1; the far store within 10 km of the chosen one has 5; the one
        // 14 km from the chosen store is outside the radius.
        assert_eq!(alts, vec![w.far], "{b}");
    }
    // Taking the suggestion works.
    let (s, b) = json_of(
        t.post("/api/redis/orders", &pickup(w.product, 2, w.far))
            .await,
    )
    .await;
    assert_eq!(
        (s, b["fulfillmentLocationId"].as_u64()),
        (StatusCode::ACCEPTED, Some(w.far))
    );
    // A pickup at a warehouse or an unknown store is a 404.
    let (s, _) = json_of(t.post("/api/orders", &pickup(w.product, 1, 1)).await).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = json_of(t.post("/api/orders", &pickup(w.product, 1, 9_999)).await).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// A closed store is never chosen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_store_is_never_chosen() {
    let t = TestApp::spawn().await;
    let w = t.town().await;
    t.stock_row(w.near, w.product, 10).await;
    t.stock_row(w.middle, w.product, 10).await;
    let r = t
        .admin()
        .patch(
            &format!("/api/admin/locations/{}", w.near),
            &json!({"active": false}),
        )
        .await;
    let (s, b) = json_of(r).await;
    assert_eq!((s, b["active"].as_bool()), (StatusCode::OK, Some(false)));
    let (s, b) = json_of(t.post("/api/redis/orders", &same_day(w.product, 1)).await).await;
    assert_eq!(
        (s, b["fulfillmentLocationId"].as_u64()),
        (StatusCode::ACCEPTED, Some(w.middle))
    );
    let (s, _) = json_of(t.post("/api/orders", &pickup(w.product, 1, w.near)).await).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// Cross-channel no oversell: 20 units in a store; concurrent Redis-path same-day and pickup
/// orders and POS sales, 120 in all: exactly 20 units are sold across channels, and after
/// quiescence Redis and MySQL agree and the ledger sums.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cross_channel_no_oversell() {
    let t = TestApp::spawn().await;
    let w = t.town().await;
    t.stock_row(w.near, w.product, 20).await;
    let key = t.issue_key(w.near).await;
    let t = Arc::new(t);
    let tasks = (0..120).map(|i| {
        let t = t.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let r = match i % 3 {
                0 => t.post("/api/redis/orders", &same_day(w.product, 1)).await,
                1 => {
                    t.post("/api/redis/orders", &pickup(w.product, 1, w.near))
                        .await
                }
                _ => {
                    t.post_with_key(
                        &format!("/api/stores/{}/orders", w.near),
                        &key,
                        &pos_sale(&[(w.product, 1)]),
                    )
                    .await
                }
            };
            r.status()
        })
    });
    let mut sold = 0;
    for s in join_all(tasks).await {
        match s.unwrap() {
            StatusCode::CREATED | StatusCode::ACCEPTED => sold += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(sold, 20);
    t.wait_persisted().await;
    assert_eq!(t.available(w.near, w.product).await, 0);
    assert_eq!(t.ledger_sum(w.near, w.product).await, -20);
    assert_eq!(t.redis_stock(w.near, w.product).await, Some(0));
    t.assert_converged(InRedis::All).await;
}

/// A POS sale is committed in MySQL before the answer and never sells what an online order took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pos_sale_respects_online_reservations() {
    let mut t = TestApp::spawn().await;
    let w = t.town().await;
    t.stock_row(w.near, w.product, 3).await;
    let key = t.issue_key(w.near).await;
    // An online order takes 2 units; the consumer is held so MySQL has not seen it yet.
    t.app().stop_consumer_now();
    let (s, _) = json_of(
        t.post("/api/redis/orders", &pickup(w.product, 2, w.near))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(t.available(w.near, w.product).await, 3);
    let sale = |q: i64| pos_sale(&[(w.product, q)]);
    let path = format!("/api/stores/{}/orders", w.near);
    let (s, b) = json_of(t.post_with_key(&path, &key, &sale(2)).await).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, b) = json_of(t.post_with_key(&path, &key, &sale(1)).await).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        (b["path"].as_str(), b["deliveryType"].as_str()),
        (Some("POS"), Some("IN_STORE"))
    );
    // A sale has no delivery: the optional fields are left out, never `null` (the schema does
    // not allow null).
    assert!(
        b.get("distanceKm").is_none() && b.get("deliveryAddress").is_none(),
        "{b}"
    );
    assert_eq!(t.available(w.near, w.product).await, 2);
    assert_eq!(t.redis_stock(w.near, w.product).await, Some(0));
    t.app().start_consumer();
    t.wait_persisted().await;
    assert_eq!(t.available(w.near, w.product).await, 0);
    t.assert_converged(InRedis::All).await;

    // The store's view.
    let (s, b) = json_of(
        t.get(&format!(
            "/api/stores/{}/products/{}/stock",
            w.near, w.product
        ))
        .await,
    )
    .await;
    assert_eq!((s, b["quantity"].as_i64()), (StatusCode::OK, Some(0)));
}

/// POS cancel storm restores once; store isolation (401/403, nothing changed); a revoked key
/// stops working at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pos_keys_isolate_stores_and_cancel_restores_once() {
    let t = TestApp::spawn().await;
    let w = t.town().await;
    t.stock_row(w.near, w.product, 10).await;
    t.stock_row(w.middle, w.product, 10).await;
    let key_a = t.issue_key(w.near).await;
    let key_b = t.issue_key(w.middle).await;
    let sale = pos_sale(&[(w.product, 3)]);
    let path_a = format!("/api/stores/{}/orders", w.near);

    // No key, a bad key, another store's key: nothing happens.
    let r = t.post(&path_a, &sale).await;
    assert_eq!(json_of(r).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        json_of(t.post_with_key(&path_a, "sfk_nope", &sale).await)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (s, b) = json_of(t.post_with_key(&path_a, &key_b, &sale).await).await;
    assert_eq!(
        (s, b["type"].as_str()),
        (StatusCode::FORBIDDEN, Some("/problems/forbidden"))
    );
    assert_eq!(t.available(w.near, w.product).await, 10);

    let (s, b) = json_of(t.post_with_key(&path_a, &key_a, &sale).await).await;
    assert_eq!(s, StatusCode::CREATED);
    let id = b["orderId"].as_str().unwrap().to_owned();
    assert_eq!(t.available(w.near, w.product).await, 7);

    // Store B cannot cancel store A's sale, even with its own route.
    let cancel_b = t
        .client
        .patch(format!(
            "{}/api/stores/{}/orders/{id}/cancel",
            t.base, w.middle
        ))
        .bearer_auth(&key_b)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(cancel_b).await.0, StatusCode::NOT_FOUND);

    let url = format!("{}/api/stores/{}/orders/{id}/cancel", t.base, w.near);
    let results = join_all((0..50).map(|_| t.client.patch(&url).bearer_auth(&key_a).send())).await;
    for r in results {
        let (s, b) = json_of(r.unwrap()).await;
        assert_eq!(
            (s, b["status"].as_str()),
            (StatusCode::OK, Some("CANCELLED"))
        );
    }
    assert_eq!(t.available(w.near, w.product).await, 10);
    assert_eq!(t.redis_stock(w.near, w.product).await, Some(10));
    let reasons: Vec<(String, i64)> = sqlx::query_as(
        "SELECT CAST(reason AS CHAR), available_delta FROM stock_movements WHERE ref_id = ? ORDER BY id",
    )
    .bind(&id)
    .fetch_all(&t.db)
    .await
    .unwrap();
    assert_eq!(
        reasons,
        vec![("POS_SALE".into(), -3), ("POS_RETURN".into(), 3)]
    );

    // Revoke: the key stops working at once.
    let keys: Vec<u64> = sqlx::query_scalar("SELECT id FROM store_keys WHERE store_id = ?")
        .bind(w.near)
        .fetch_all(&t.db)
        .await
        .unwrap();
    let r = t
        .admin()
        .delete(&format!("/api/admin/stores/{}/keys/{}", w.near, keys[0]))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        json_of(t.post_with_key(&path_a, &key_a, &sale).await)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(t.available(w.near, w.product).await, 10);
    // The middle store sold nothing: Redis need not hold its stock.
    t.assert_converged(InRedis::Keys(&[(w.near, w.product)]))
        .await;
}

/// The store reads: products with quantities, nearby stores nearest first, bounds checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_reads_and_nearby_stores() {
    let t = TestApp::spawn().await;
    let w = t.town().await;
    t.stock_row(w.near, w.product, 4).await;
    t.stock_row(w.middle, w.product, 0).await;
    t.stock_row(w.far, w.product, 6).await;
    t.stock_row(w.out_of_range, w.product, 9).await;

    let (s, b) = json_of(
        t.get(&format!(
            "/api/stores/{}/products/{}/nearby",
            w.near, w.product
        ))
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let ids: Vec<u64> = b["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["storeId"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![w.far]);
    assert_eq!(b["stores"][0]["quantity"], 6);
    let (s, b) = json_of(
        t.get(&format!(
            "/api/stores/{}/products/{}/nearby?radiusKm=20",
            w.near, w.product
        ))
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<u64> = b["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["storeId"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![w.far, w.out_of_range]);
    for bad in [
        "radiusKm=0",
        "radiusKm=500",
        "limit=0",
        "limit=99",
        "radiusKm=abc",
    ] {
        let (s, _) = json_of(
            t.get(&format!(
                "/api/stores/{}/products/{}/nearby?{bad}",
                w.near, w.product
            ))
            .await,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (s, b) = json_of(t.get(&format!("/api/stores/{}/products", w.near)).await).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["products"][0]["quantity"], 4);
    let (s, _) = json_of(t.get("/api/stores/1/products").await).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a warehouse is not a store");
}

/// Operators open stores and products without SQL; a new price applies to new orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_manage_locations_and_products() {
    let t = TestApp::spawn().await;
    let admin = t.admin();
    let (s, store) = json_of(
        admin.post("/api/admin/locations", &json!({"locationType": "STORE", "name": "Euljiro", "latitude": 37.566, "longitude": 126.991})).await,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{store}");
    let sid = store["locationId"].as_u64().unwrap();
    let (s, prod) = json_of(
        admin
            .post(
                "/api/admin/products",
                &json!({"sku": "NEW-1", "name": "New thing", "price": 5000}),
            )
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{prod}");
    let pid = prod["productId"].as_u64().unwrap();
    let (s, b) = json_of(
        admin
            .post(
                "/api/admin/products",
                &json!({"sku": "NEW-1", "name": "Again", "price": 1}),
            )
            .await,
    )
    .await;
    assert_eq!(
        (s, b["type"].as_str()),
        (StatusCode::CONFLICT, Some("/problems/conflict"))
    );
    let (s, _) = json_of(
        admin
            .post(
                "/api/admin/locations",
                &json!({"locationType": "STORE", "name": "Bad", "latitude": 91, "longitude": 0}),
            )
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    assert_eq!(
        t.admin_set_stock(sid, pid, 5).await.status(),
        StatusCode::OK
    );
    let (s, b) = json_of(t.post("/api/redis/orders", &pickup(pid, 1, sid)).await).await;
    assert_eq!(
        (s, b["items"][0]["unitPrice"].as_i64()),
        (StatusCode::ACCEPTED, Some(5000))
    );
    let (s, _) = json_of(
        admin
            .patch(
                &format!("/api/admin/products/{pid}"),
                &json!({"price": 6000}),
            )
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, b) = json_of(t.post("/api/orders", &pickup(pid, 1, sid)).await).await;
    assert_eq!(b["items"][0]["unitPrice"], 6000);
    let (s, _) = json_of(
        admin
            .patch(
                &format!("/api/admin/products/{pid}"),
                &json!({"active": false}),
            )
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = json_of(t.post("/api/orders", &pickup(pid, 1, sid)).await).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    t.wait_persisted().await;
    t.assert_converged(InRedis::All).await;
}

/// Stopping a product's sale or closing a location is a `PATCH` with `active: false` (there is no
/// `DELETE`): the shop's and the stores' routes answer 404 for it at once, the operators' routes
/// show it as inactive and list it with `active=false`, and it comes back with `active: true`.
/// Nothing that refers to it is removed: an order placed before keeps its line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_product_or_closed_location_is_gone_from_the_shop_and_listed_for_operators() {
    let t = TestApp::spawn().await;
    let admin = t.admin();
    let w = t.town().await;
    let (pid, sid) = (w.product, w.near);
    t.stock_row(sid, pid, 10).await;
    let (s, order) = json_of(t.post("/api/orders", &pickup(pid, 1, sid)).await).await;
    assert_eq!(s, StatusCode::CREATED, "{order}");

    for (what, id) in [("products", pid), ("locations", sid)] {
        let path = format!("/api/admin/{what}/{id}");
        let (s, b) = json_of(admin.patch(&path, &json!({"active": false})).await).await;
        assert_eq!(
            (s, b["active"].as_bool()),
            (StatusCode::OK, Some(false)),
            "{b}"
        );
        assert_eq!(
            admin.delete(&path).await.status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        let (s, b) = json_of(admin.get(&path).await).await;
        assert_eq!(
            (s, b["active"].as_bool()),
            (StatusCode::OK, Some(false)),
            "{b}"
        );
        let id_field = if what == "products" {
            "productId"
        } else {
            "locationId"
        };
        let listed = |b: &Value| {
            b[what]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x[id_field] == id)
        };
        let (s, b) = json_of(admin.get(&format!("/api/admin/{what}?active=false")).await).await;
        assert_eq!(s, StatusCode::OK);
        assert!(listed(&b), "{what} {id} not listed as inactive: {b}");
        assert!(b[what]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["active"] == false));
        let (_, b) = json_of(admin.get(&format!("/api/admin/{what}?active=true")).await).await;
        assert!(!listed(&b), "{what} {id} listed as active: {b}");
    }
    let store_stock = format!("/api/stores/{sid}/products/{pid}/stock");
    for gone in [
        format!("/api/products/{pid}"),
        format!("/api/redis/products/{pid}"),
        format!("/api/stores/{sid}/products"),
        store_stock.clone(),
    ] {
        assert_eq!(t.get(&gone).await.status(), StatusCode::NOT_FOUND, "{gone}");
    }
    let (s, _) = json_of(t.post("/api/orders", &pickup(pid, 1, w.middle)).await).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "a stopped product cannot be ordered"
    );
    let (s, b) = json_of(
        t.get(&format!(
            "/api/orders/{}",
            order["orderId"].as_str().unwrap()
        ))
        .await,
    )
    .await;
    assert_eq!(
        (s, &b["items"][0]["productId"]),
        (StatusCode::OK, &json!(pid))
    );

    for (what, id) in [("products", pid), ("locations", sid)] {
        let (s, b) = json_of(
            admin
                .patch(&format!("/api/admin/{what}/{id}"), &json!({"active": true}))
                .await,
        )
        .await;
        assert_eq!(
            (s, b["active"].as_bool()),
            (StatusCode::OK, Some(true)),
            "{b}"
        );
    }
    let (s, b) = json_of(t.get(&store_stock).await).await;
    assert_eq!(
        (s, b["quantity"].as_i64()),
        (StatusCode::OK, Some(9)),
        "{b}"
    );
    assert_eq!(
        t.get(&format!("/api/products/{pid}")).await.status(),
        StatusCode::OK
    );
}
