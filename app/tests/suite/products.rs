//! The shop's product pages, from MySQL (`/api/products…`) and from Redis
//! (`/api/redis/products…`): lean list items with their stock total, keyset pages, the stock per
//! location on the product page, and HTTP validation (`ETag`, `If-None-Match`, `304`).

use crate::common::*;
use futures::future::join_all;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const LISTS: [&str; 2] = ["/api/products", "/api/redis/products"];

/// Status, headers and JSON body (`Null` when there is none).
async fn read(
    t: &TestApp,
    path: &str,
    if_none_match: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let mut req = t.client.get(format!("{}{}", t.base, path));
    if let Some(tag) = if_none_match {
        req = req.header("if-none-match", tag);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, headers, body)
}

/// Deactivates a product or a location through the admin API (`what` is `products` or
/// `locations`); the change must succeed.
async fn deactivate(t: &TestApp, what: &str, id: u64) {
    let (s, b) = json_of(
        t.admin()
            .patch(
                &format!("/api/admin/{what}/{id}"),
                &json!({"active": false}),
            )
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

fn fields(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

/// The page's products as (id, totalQuantity).
fn totals(page: &Value) -> Vec<(u64, i64)> {
    page["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["productId"].as_u64().unwrap(),
                p["totalQuantity"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// A product page's stock entries as (locationId, quantity), in the page's order.
fn quantities(page: &Value) -> Vec<(u64, i64)> {
    page["stock"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["locationId"].as_u64().unwrap(),
                s["quantity"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Which figures each page shows: MySQL's on-hand, or Redis's sellable stock.
fn source_of(path: &str) -> &'static str {
    if path.starts_with("/api/redis/") {
        "redis"
    } else {
        "mysql"
    }
}

/// A list item is the product's id, name, price and stock summed over the active locations —
/// no stock per location, no SKU — on both lists, and a location that is closed does not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_items_carry_the_stock_total_over_active_locations_and_nothing_per_location() {
    let t = TestApp::spawn().await;
    let (wh, a) = t.warehouse_with_product(12_000, 10).await;
    let store = t.add_location("STORE", "S", SEOUL.0, SEOUL.1).await;
    t.stock_row(store, a, 5).await;
    let b = t.add_stocked_product(wh, 3_000, 7).await;
    let unstocked = t.add_product(500).await;
    // A closed store's units are not for sale: they count nowhere.
    let closed = t.add_location("STORE", "Closed", SEOUL.0, SEOUL.1).await;
    t.stock_row(closed, a, 100).await;
    deactivate(&t, "locations", closed).await;
    // An inactive product is not listed.
    deactivate(&t, "products", unstocked).await;
    let c = t.add_product(800).await;

    for path in LISTS {
        let (s, h, page) = read(&t, path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {page}");
        // One page holds them all: it has no `next`.
        assert_eq!(fields(&page), ["limit", "products"], "{path}");
        assert_eq!(page["limit"].as_u64(), Some(20));
        assert_eq!(totals(&page), [(a, 15), (b, 7), (c, 0)], "{path}");
        for item in page["products"].as_array().unwrap() {
            assert_eq!(
                fields(item),
                ["name", "price", "productId", "totalQuantity"],
                "{path}"
            );
        }
        assert_eq!(page["products"][0]["price"], 12_000);
        assert!(page["products"][0]["name"]
            .as_str()
            .unwrap()
            .starts_with("Test product"));
        assert_eq!(header(&h, "stock-source"), source_of(path));
        assert_eq!(header(&h, "cache-control"), "no-cache");
        assert!(header(&h, "content-type").starts_with("application/json"));
        let tag = header(&h, "etag");
        assert!(
            tag.len() > 2 && tag.starts_with('"') && tag.ends_with('"'),
            "{tag}"
        );
    }
}

/// Following `next` from the first page walks every active product exactly once, in id order, on
/// both lists; a cursor past the end is an empty last page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_walks_every_product_exactly_once() {
    let t = TestApp::spawn().await;
    let (_, products) = t.warehouse_with(11, 4).await;
    // One product in the middle stops being sold: the walk skips it, and its id still works as
    // a cursor.
    let gone = products[5];
    deactivate(&t, "products", gone).await;
    let expected: Vec<u64> = products.iter().copied().filter(|p| *p != gone).collect();

    for list in LISTS {
        for limit in [1, 3, 10, 100] {
            let mut seen: Vec<u64> = Vec::new();
            let mut sizes = Vec::new();
            let mut after: Option<u64> = None;
            loop {
                let path = match after {
                    None => format!("{list}?limit={limit}"),
                    Some(a) => format!("{list}?limit={limit}&after={a}"),
                };
                let (s, _, page) = read(&t, &path, None).await;
                assert_eq!(s, StatusCode::OK, "{path}: {page}");
                assert_eq!(page["limit"], limit, "{path}");
                let ids: Vec<u64> = totals(&page)
                    .iter()
                    .map(|(id, q)| {
                        assert_eq!(*q, 4, "{path}");
                        *id
                    })
                    .collect();
                sizes.push(ids.len());
                seen.extend(&ids);
                assert!(page.get("next").is_none_or(Value::is_u64), "{path}: {page}");
                match page["next"].as_u64() {
                    Some(next) => {
                        assert_eq!(Some(&next), ids.last(), "{path}: next is the last id shown");
                        after = Some(next);
                    }
                    None => break,
                }
                assert!(
                    seen.len() <= expected.len(),
                    "{list}: the walk does not end"
                );
            }
            assert_eq!(seen, expected, "{list} limit {limit}");
            // Full pages until the last; no empty page at the end when the count divides evenly.
            assert!(
                sizes[..sizes.len() - 1].iter().all(|n| *n == limit),
                "{list}: {sizes:?}"
            );
            assert!(*sizes.last().unwrap() >= 1, "{list}: {sizes:?}");
        }
        // The deactivated product's id as a cursor: the products after it.
        let (_, _, page) = read(&t, &format!("{list}?after={gone}&limit=2"), None).await;
        let ids: Vec<u64> = totals(&page).iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, products[6..8], "{list}");
        // Past the last product: an empty last page.
        let last = products.last().unwrap();
        let (s, _, page) = read(&t, &format!("{list}?after={last}"), None).await;
        assert_eq!(
            (s, fields(&page)),
            (StatusCode::OK, vec!["limit", "products"])
        );
        assert_eq!(page["products"], json!([]));
        let (s, _, page) = read(&t, &format!("{list}?after=9223372036854775807"), None).await;
        assert_eq!((s, &page["products"]), (StatusCode::OK, &json!([])));
    }
}

/// A location opened after the Redis page first read Redis: the page shows its stock, and follows
/// an order there at once (its changes reach the instance's copy of the stock keys as any
/// location's do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_page_follows_a_location_opened_after_it_first_read() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(4_500, 9).await;
    let path = format!("/api/redis/products/{p}");
    let (s, _, body) = read(&t, &path, None).await;
    assert_eq!((s, quantities(&body)), (StatusCode::OK, vec![(wh, 9)]));

    let store = t.add_location("STORE", "S", SEOUL.0, SEOUL.1).await;
    t.stock_row(store, p, 3).await;
    let (_, _, body) = read(&t, &path, None).await;
    assert_eq!(quantities(&body), [(wh, 9), (store, 3)]);
    for left in [2, 1, 0] {
        let (s, b) = json_of(
            t.post("/api/redis/orders", &same_day_order(&[(p, 1)]))
                .await,
        )
        .await;
        assert_eq!(
            (s, b["fulfillmentLocationId"].as_u64()),
            (StatusCode::ACCEPTED, Some(store))
        );
        let (_, _, body) = read(&t, &path, None).await;
        assert_eq!(quantities(&body), [(wh, 9), (store, left)]);
    }
}

/// The product page shows the stock at every active location (by location id, with its type) and
/// its sum: MySQL's on-hand on `/api/products/{id}`, Redis's sellable figure on
/// `/api/redis/products/{id}`, which already counts a Redis-path order MySQL has not seen yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_product_page_shows_stock_per_active_location_and_its_total() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(4_500, 9).await;
    let store = t.add_location("STORE", "S", SEOUL.0, SEOUL.1).await;
    t.stock_row(store, p, 3).await;

    let expect = |wh_qty: i64, store_qty: i64| {
        json!({
            "productId": p, "sku": "T-1", "name": "Test product 1", "price": 4_500,
            "totalQuantity": wh_qty + store_qty,
            "stock": [
                {"locationId": wh, "locationType": "WAREHOUSE", "quantity": wh_qty},
                {"locationId": store, "locationType": "STORE", "quantity": store_qty},
            ],
        })
    };
    for path in [
        format!("/api/products/{p}"),
        format!("/api/redis/products/{p}"),
    ] {
        let (s, h, body) = read(&t, &path, None).await;
        assert_eq!((s, &body), (StatusCode::OK, &expect(9, 3)), "{path}");
        assert_eq!(header(&h, "stock-source"), source_of(&path));
        assert_eq!(header(&h, "cache-control"), "no-cache");
    }

    // A same-day order takes 2 units at the store.
    let (s, b) = json_of(
        t.post("/api/redis/orders", &same_day_order(&[(p, 2)]))
            .await,
    )
    .await;
    assert_eq!(
        (s, b["fulfillmentLocationId"].as_u64()),
        (StatusCode::ACCEPTED, Some(store))
    );
    let (_, _, body) = read(&t, &format!("/api/redis/products/{p}"), None).await;
    assert_eq!(body, expect(9, 1));
    t.wait_persisted().await;
    let (_, _, body) = read(&t, &format!("/api/products/{p}"), None).await;
    assert_eq!(body, expect(9, 1));

    // Unknown and inactive products are 404 problems on both.
    deactivate(&t, "products", p).await;
    for path in [
        format!("/api/products/{p}"),
        format!("/api/redis/products/{p}"),
        "/api/products/999999".into(),
        "/api/redis/products/999999".into(),
    ] {
        let (s, b) = json_of(t.get(&path).await).await;
        assert_eq!(
            (s, b["type"].as_str()),
            (StatusCode::NOT_FOUND, Some("/problems/unknown-product")),
            "{path}"
        );
    }
}

/// `If-None-Match` with the current `ETag` (also weak, in a list, or `*`) is a `304` without a
/// body, carrying the same `ETag`; any other tag gets the whole answer. On all four pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_etag_is_answered_304_without_a_body() {
    let t = TestApp::spawn().await;
    let (_, p) = t.warehouse_with_product(1_000, 5).await;
    for path in [
        "/api/products".to_owned(),
        "/api/redis/products".into(),
        format!("/api/products/{p}"),
        format!("/api/redis/products/{p}"),
        "/api/products?limit=1".into(),
    ] {
        let (s, h, body) = read(&t, &path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        let tag = header(&h, "etag").to_owned();
        // The same answer has the same tag.
        let (_, h2, body2) = read(&t, &path, None).await;
        assert_eq!(
            (header(&h2, "etag"), &body2),
            (tag.as_str(), &body),
            "{path}"
        );

        for current in [
            tag.clone(),
            format!("W/{tag}"),
            format!("\"other\", {tag}"),
            "*".into(),
        ] {
            let r = t
                .client
                .get(format!("{}{}", t.base, path))
                .header("if-none-match", &current)
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                StatusCode::NOT_MODIFIED,
                "{path} with {current}"
            );
            assert_eq!(header(r.headers(), "etag"), tag, "{path}");
            assert_eq!(header(r.headers(), "cache-control"), "no-cache", "{path}");
            assert_eq!(
                header(r.headers(), "stock-source"),
                source_of(&path),
                "{path}"
            );
            assert!(
                r.bytes().await.unwrap().is_empty(),
                "{path}: a 304 has no body"
            );
        }
        for other in ["\"other\"", tag.trim_matches('"'), ""] {
            let (s, h, again) = read(&t, &path, Some(other)).await;
            assert_eq!(
                (s, header(&h, "etag"), &again),
                (StatusCode::OK, tag.as_str(), &body),
                "{path} with {other:?}"
            );
        }
    }
}

/// After an order changes a product's stock, its old `ETag` gets a fresh `200` with a new `ETag`
/// and the new figures on every page that shows them: at once on the Redis pages for a
/// Redis-path order (and on all four for a DB-lock order, committed before its answer); on the
/// MySQL pages once the order reached MySQL. A price change does the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_or_price_change_gets_the_old_etag_a_fresh_answer() {
    let t = TestApp::spawn().await;
    let (_, p) = t.warehouse_with_product(2_000, 20).await;
    let pages = [
        "/api/products".to_owned(),
        "/api/redis/products".into(),
        format!("/api/products/{p}"),
        format!("/api/redis/products/{p}"),
    ];
    let total_of = |path: &str, body: &Value| -> i64 {
        if path.ends_with("/products") {
            body["products"][0]["totalQuantity"].as_i64().unwrap()
        } else {
            body["totalQuantity"].as_i64().unwrap()
        }
    };
    let mut tags = Vec::new();
    for path in &pages {
        let (_, h, body) = read(&t, path, None).await;
        assert_eq!(total_of(path, &body), 20, "{path}");
        tags.push(header(&h, "etag").to_owned());
    }
    // Fresh tags for the same figures are still current.
    for (path, tag) in pages.iter().zip(&tags) {
        assert_eq!(
            read(&t, path, Some(tag)).await.0,
            StatusCode::NOT_MODIFIED,
            "{path}"
        );
    }

    // A Redis-path order: the Redis pages change at once.
    let order = normal_order(&[(p, 3)], SEOUL.0, SEOUL.1);
    let (s, _) = json_of(t.post("/api/redis/orders", &order).await).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    for (i, path) in pages
        .iter()
        .enumerate()
        .filter(|(_, p)| p.contains("/redis/"))
    {
        let (s, h, body) = read(&t, path, Some(&tags[i])).await;
        assert_eq!((s, total_of(path, &body)), (StatusCode::OK, 17), "{path}");
        assert_ne!(header(&h, "etag"), tags[i], "{path}");
        tags[i] = header(&h, "etag").to_owned();
    }
    // The MySQL pages once the consumer wrote it.
    t.wait_persisted().await;
    for (i, path) in pages
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.contains("/redis/"))
    {
        let (s, h, body) = read(&t, path, Some(&tags[i])).await;
        assert_eq!((s, total_of(path, &body)), (StatusCode::OK, 17), "{path}");
        assert_ne!(header(&h, "etag"), tags[i], "{path}");
        tags[i] = header(&h, "etag").to_owned();
    }

    // A DB-lock order is in both stores once answered: every page changes at once.
    let (s, _) = json_of(t.post("/api/orders", &order).await).await;
    assert_eq!(s, StatusCode::CREATED);
    for (path, tag) in pages.iter().zip(tags.iter_mut()) {
        let (s, h, body) = read(&t, path, Some(tag)).await;
        assert_eq!((s, total_of(path, &body)), (StatusCode::OK, 14), "{path}");
        assert_ne!(header(&h, "etag"), tag.as_str(), "{path}");
        *tag = header(&h, "etag").to_owned();
        assert_eq!(
            read(&t, path, Some(tag)).await.0,
            StatusCode::NOT_MODIFIED,
            "{path}"
        );
    }

    // A new price shows everywhere, with new tags.
    let (s, _) = json_of(
        t.admin()
            .patch(
                &format!("/api/admin/products/{p}"),
                &json!({"price": 2_500}),
            )
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for (path, tag) in pages.iter().zip(&tags) {
        let (s, h, body) = read(&t, path, Some(tag)).await;
        let price = if path.ends_with("/products") {
            &body["products"][0]["price"]
        } else {
            &body["price"]
        };
        assert_eq!((s, price), (StatusCode::OK, &json!(2_500)), "{path}");
        assert_ne!(header(&h, "etag"), tag.as_str(), "{path}");
    }
}

/// Readers that arrive together share one read, yet a read never misses an order answered before
/// it was sent: with 16 clients reading the same page without pause, each order's units are gone
/// from the next read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_under_load_never_misses_an_order_answered_before_it() {
    let t = Arc::new(TestApp::spawn().await);
    let (_, p) = t.warehouse_with_product(1_000, 50).await;
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..16)
        .map(|i| {
            let (t, stop) = (t.clone(), stop.clone());
            let path = match i % 4 {
                0 => "/api/redis/products".to_owned(),
                1 => format!("/api/redis/products/{p}"),
                2 => "/api/products".to_owned(),
                _ => format!("/api/products/{p}"),
            };
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (s, _, _) = read(&t, &path, None).await;
                    assert_eq!(s, StatusCode::OK, "{path}");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let order = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    for sold in 1..=10 {
        let (s, _) = json_of(t.post("/api/orders", &order).await).await;
        assert_eq!(s, StatusCode::CREATED);
        for path in LISTS {
            let (_, _, page) = read(&t, path, None).await;
            assert_eq!(
                totals(&page),
                [(p, 50 - sold)],
                "{path} after {sold} orders"
            );
        }
        for path in [
            format!("/api/products/{p}"),
            format!("/api/redis/products/{p}"),
        ] {
            let (_, _, body) = read(&t, &path, None).await;
            assert_eq!(
                body["totalQuantity"],
                50 - sold,
                "{path} after {sold} orders"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let reads: Vec<i32> = join_all(readers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(reads.iter().all(|n| *n > 0), "{reads:?}");
}

/// Bad page parameters are `400` problems that name the parameter, on both lists and product
/// pages; they load nothing into Redis and change nothing (the page's `ETag` stays).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_problems_and_change_nothing() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(1_000, 5).await;
    let before: Vec<String> = {
        let mut tags = Vec::new();
        for path in LISTS {
            tags.push(header(&read(&t, path, None).await.1, "etag").to_owned());
        }
        tags
    };
    let keys_before = t.redis_stock(wh, p).await;
    for list in LISTS {
        for (query, param) in [
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=-5", "limit"),
            ("limit=ten", "limit"),
            ("limit=99999999999999999999", "limit"),
            ("after=-1", "after"),
            ("after=abc", "after"),
            ("after=1.5", "after"),
            ("after=99999999999999999999", "after"),
        ] {
            let path = format!("{list}?{query}");
            let (s, b) = json_of(t.get(&path).await).await;
            assert_eq!(
                (s, b["type"].as_str(), b["status"].as_u64()),
                (
                    StatusCode::BAD_REQUEST,
                    Some("/problems/bad-request"),
                    Some(400)
                ),
                "{path}: {b}"
            );
            let detail = b["detail"].as_str().unwrap();
            assert!(
                detail.contains(param),
                "{path}: the detail names {param}: {detail}"
            );
        }
    }
    for path in [
        "/api/products/0",
        "/api/redis/products/-1",
        "/api/products/x",
    ] {
        let (s, b) = json_of(t.get(path).await).await;
        assert_eq!(
            (s, b["type"].as_str()),
            (StatusCode::BAD_REQUEST, Some("/problems/bad-request")),
            "{path}"
        );
    }
    assert_eq!(t.redis_stock(wh, p).await, keys_before);
    assert_eq!(t.available(wh, p).await, 5);
    for (path, tag) in LISTS.iter().zip(&before) {
        assert_eq!(
            read(&t, path, Some(tag)).await.0,
            StatusCode::NOT_MODIFIED,
            "{path}"
        );
    }
}

/// While Redis cannot be reached, the Redis pages answer MySQL's on-hand figures and say so
/// (`Stock-Source: mysql`, and another `ETag`: a copy of the Redis answer is not current); once
/// Redis is back they answer from it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_pages_fall_back_to_mysql_while_redis_is_down_and_say_so() {
    let (proxy, t) = behind_redis_proxy(|_| {}).await;
    let (_, p) = t.warehouse_with_product(1_000, 10).await;
    let pages = [
        "/api/redis/products".to_owned(),
        format!("/api/redis/products/{p}"),
    ];
    let mut tags = Vec::new();
    for path in &pages {
        let (s, h, _) = read(&t, path, None).await;
        assert_eq!((s, header(&h, "stock-source")), (StatusCode::OK, "redis"));
        tags.push(header(&h, "etag").to_owned());
    }

    proxy.refuse(true);
    proxy.cut_all();
    // The first write to need Redis finds it gone and commits on MySQL alone.
    let (s, _) = json_of(
        t.post("/api/orders", &normal_order(&[(p, 1)], SEOUL.0, SEOUL.1))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    for (path, tag) in pages.iter().zip(&tags) {
        let (s, h, body) = read(&t, path, Some(tag)).await;
        assert_eq!(
            (s, header(&h, "stock-source")),
            (StatusCode::OK, "mysql"),
            "{path}"
        );
        let total = body["totalQuantity"]
            .as_i64()
            .or(body["products"][0]["totalQuantity"].as_i64());
        assert_eq!(total, Some(9), "{path}: {body}");
        assert_ne!(header(&h, "etag"), tag.as_str(), "{path}");
    }

    proxy.refuse(false);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    for path in &pages {
        loop {
            let (s, h, body) = read(&t, path, None).await;
            assert_eq!(s, StatusCode::OK, "{path}");
            if header(&h, "stock-source") == "redis" {
                let total = body["totalQuantity"]
                    .as_i64()
                    .or(body["products"][0]["totalQuantity"].as_i64());
                assert_eq!(total, Some(9), "{path}: {body}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path} never read Redis again"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// The Redis pages answer from a copy of the stock keys that Redis keeps exact (it tells the
/// service of every change to a key the service read): a change made by any writer — here one
/// straight in Redis, not through the service — shows on the very next read, and so does a key
/// that disappears (it is loaded from MySQL again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_pages_see_every_change_redis_holds_at_once() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let detail = format!("/api/redis/products/{p}");
    let total = |body: &Value| body["totalQuantity"].as_i64();
    for _ in 0..3 {
        assert_eq!(total(&read(&t, &detail, None).await.2), Some(10));
    }
    for value in [7, 3, 12] {
        t.set_redis_stock(wh, p, value).await;
        assert_eq!(total(&read(&t, &detail, None).await.2), Some(value));
        let (_, _, page) = read(&t, "/api/redis/products", None).await;
        assert_eq!(totals(&page), [(p, value)]);
    }
    // Gone from Redis: loaded again from MySQL's on-hand.
    let _: () = redis::cmd("DEL")
        .arg(t.stock_key(wh, p))
        .query_async(&mut t.redis().await)
        .await
        .unwrap();
    assert_eq!(total(&read(&t, &detail, None).await.2), Some(10));
    assert_eq!(t.redis_stock(wh, p).await, Some(10));

    // A store opened since: its stock shows, and so does every change to it.
    let store = t.add_location("STORE", "New", SEOUL.0, SEOUL.1).await;
    t.stock_row(store, p, 4).await;
    assert_eq!(total(&read(&t, &detail, None).await.2), Some(14));
    for value in [1, 8] {
        t.set_redis_stock(store, p, value).await;
        assert_eq!(total(&read(&t, &detail, None).await.2), Some(10 + value));
    }
}

/// When the service's connections to Redis are cut, what its copy of the stock keys held is
/// forgotten: a change made while they were down shows on the next read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_its_connections_are_cut_a_redis_page_still_shows_redis_figures() {
    let (proxy, t) = behind_redis_proxy(|_| {}).await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let detail = format!("/api/redis/products/{p}");
    let total = |body: &Value| body["totalQuantity"].as_i64();
    assert_eq!(total(&read(&t, &detail, None).await.2), Some(10));
    for value in [6, 2] {
        proxy.cut_all();
        // Straight to Redis, past the proxy: the service hears of it only by asking again.
        t.set_redis_stock(wh, p, value).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (s, h, body) = read(&t, &detail, None).await;
            // A read that found its connection cut may be answered from MySQL (and says so);
            // a Redis answer always has Redis's figure.
            if s == StatusCode::OK && header(&h, "stock-source") == "redis" {
                assert_eq!(total(&body), Some(value), "{body}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{s} {body}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// A change Redis holds before a Redis page is asked for is on the page even when Redis's word
/// of it is still on its way to the service: the page asks Redis once more (a `PING` on the same
/// connection, answered after that word) before it answers from its copy. Here every message
/// from Redis takes 200 ms more, and the change is made straight in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_page_shows_a_change_whose_notice_is_still_on_its_way() {
    let (proxy, t) = behind_redis_proxy(|_| {}).await;
    let (wh, p) = t.warehouse_with_product(1_000, 10).await;
    let detail = format!("/api/redis/products/{p}");
    let total = |body: &Value| body["totalQuantity"].as_i64();
    assert_eq!(total(&read(&t, &detail, None).await.2), Some(10));
    assert_eq!(total(&read(&t, &detail, None).await.2), Some(10));
    proxy.set_latency(std::time::Duration::from_millis(200));
    for value in [4, 9] {
        t.set_redis_stock(wh, p, value).await;
        let (s, h, body) = read(&t, &detail, None).await;
        assert_eq!(
            (s, header(&h, "stock-source"), total(&body)),
            (StatusCode::OK, "redis", Some(value)),
            "{body}"
        );
    }
    proxy.set_latency(std::time::Duration::ZERO);
}

/// A slow Redis does not hold the Redis pages beyond their deadline: with every Redis reply late,
/// a page answers MySQL's figures (and says so) within about one Redis command deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_slow_a_redis_page_answers_from_mysql_in_time() {
    let (proxy, t) = behind_redis_proxy(|c| c.storage.redis_command_timeout_ms = 300).await;
    let (_, p) = t.warehouse_with_product(1_000, 10).await;
    let detail = format!("/api/redis/products/{p}");
    assert_eq!(read(&t, &detail, None).await.2["totalQuantity"], 10);
    proxy.set_latency(std::time::Duration::from_millis(500));
    for path in [detail.as_str(), "/api/redis/products", detail.as_str()] {
        let started = std::time::Instant::now();
        let (s, h, body) = read(&t, path, None).await;
        let took = started.elapsed();
        assert_eq!(
            (s, header(&h, "stock-source")),
            (StatusCode::OK, "mysql"),
            "{path}: {body}"
        );
        assert!(
            took < std::time::Duration::from_millis(1_500),
            "{path} took {took:?}"
        );
    }
    proxy.set_latency(std::time::Duration::ZERO);
}

/// The locations near a point are kept between pages (a shopper reads many products from one
/// point), and a change of the locations shows at once: a store closed is gone from the next
/// page near the same point, and one opened there appears, on both routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_page_follows_the_locations_opened_and_closed_near_its_point() {
    let t = TestApp::spawn().await;
    let p = t.add_product(1_000).await;
    let a = t.add_location("STORE", "A", 35.1000, 129.0400).await;
    let b = t.add_location("STORE", "B", 35.1100, 129.0400).await;
    t.stock_row(a, p, 5).await;
    t.stock_row(b, p, 7).await;
    t.storage().catalog().refresh_locations().await.unwrap();
    let near = |route: &'static str| {
        let t = &t;
        async move {
            let url = format!("{route}/{p}?near=35.1000,129.0400&radiusKm=3");
            let (s, page) = json_of(t.get(&url).await).await;
            assert_eq!(s, StatusCode::OK, "{page}");
            quantities(&page)
        }
    };
    for route in ["/api/products", "/api/redis/products"] {
        assert_eq!(near(route).await, [(a, 5), (b, 7)], "{route}");
        assert_eq!(near(route).await, [(a, 5), (b, 7)], "{route}, again");
    }
    deactivate(&t, "locations", a).await;
    let c = t.add_location("STORE", "C", 35.1050, 129.0400).await;
    t.stock_row(c, p, 9).await;
    for route in ["/api/products", "/api/redis/products"] {
        assert_eq!(near(route).await, [(c, 9), (b, 7)], "{route}");
    }
}

/// The refresh every few seconds keeps the locations in place when nothing changed (with the
/// points the pages measured around them), and replaces them when a location or a product's own
/// safety stock did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_that_finds_nothing_changed_keeps_the_locations_in_place() {
    let t = TestApp::spawn().await;
    let p = t.add_product(1_000).await;
    let a = t.add_location("STORE", "A", 35.2000, 129.1400).await;
    t.stock_row(a, p, 5).await;
    let catalog = t.storage().catalog();
    catalog.refresh_locations().await.unwrap();
    let before = catalog.locations();
    catalog.refresh_locations().await.unwrap();
    assert!(
        Arc::ptr_eq(&before, &catalog.locations()),
        "an unchanged refresh replaced the locations"
    );
    sqlx::query("UPDATE stock SET safety_stock = 2 WHERE location_id = ? AND product_id = ?")
        .bind(a)
        .bind(p)
        .execute(&t.db)
        .await
        .unwrap();
    catalog.refresh_locations().await.unwrap();
    let after = catalog.locations();
    assert!(!Arc::ptr_eq(&before, &after));
    assert_eq!(
        after.sellable_online(
            sf_routing::LocationId::new_unchecked(a),
            sf_routing::ProductId::new_unchecked(p),
            5
        ),
        3
    );
    sqlx::query("UPDATE locations SET name = 'A2' WHERE id = ?")
        .bind(a)
        .execute(&t.db)
        .await
        .unwrap();
    catalog.refresh_locations().await.unwrap();
    assert!(!Arc::ptr_eq(&after, &catalog.locations()));
}
