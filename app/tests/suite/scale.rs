//! A national chain's catalogue, at a reduced size (`seed --profile retail --stores 200
//! --products 500`: 210 locations, 105,000 stock rows); the full size (1,310 locations, 13.1
//! million rows) is `ops/bench --scale retail`'s.
//!
//! - The seed lays out the chain and always yields the same rows.
//! - Redis, emptied while orders flow, is warmed up whole while every order is answered; a
//!   reconciliation pass checks every key and repairs exactly the ones that drifted.
//! - A product page is bounded: paged by location id, or only the locations near a point.
//! - An idle consumer reads all 210 streams with one waiting read, not one read per stream.

use crate::common::*;
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sf_persistence::RedisConn;
use sf_routing::{Coordinates, LocationId};
use std::collections::HashMap;
use std::time::Duration;

const STORES: u32 = 200;
const WAREHOUSES: u32 = 10;
const PRODUCTS: u32 = 500;
const LOCATIONS: u64 = (STORES + WAREHOUSES) as u64;
const ROWS: u64 = LOCATIONS * PRODUCTS as u64;

/// Runs `stock-flow seed --profile retail` at the reduced size into `database_url`; answers what
/// it printed.
fn seed_retail(database_url: &str, redis_url: &str, prefix: &str) -> String {
    let (stores, warehouses, products) = (
        STORES.to_string(),
        WAREHOUSES.to_string(),
        PRODUCTS.to_string(),
    );
    run_seed(
        &[
            "--profile",
            "retail",
            "--stores",
            &stores,
            "--warehouses",
            &warehouses,
            "--products",
            &products,
        ],
        database_url,
        redis_url,
        prefix,
    )
}

/// A digest of every stock row and location, to compare two seeds.
async fn digest(db: &sqlx::MySqlPool) -> (i64, i64, String) {
    let rows: (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(SUM(CRC32(CONCAT_WS(',', location_id, product_id, available, \
         initial_quantity))) AS SIGNED) FROM stock",
    )
    .fetch_one(db)
    .await
    .unwrap();
    let locations: String = sqlx::query_scalar(
        "SELECT GROUP_CONCAT(CONCAT_WS(',', id, kind, name, latitude, longitude) ORDER BY id \
         SEPARATOR ';') FROM locations",
    )
    .fetch_one(db)
    .await
    .unwrap();
    (rows.0, rows.1, locations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retail_seed_lays_out_a_national_chain_the_same_way_every_time() {
    let t = TestApp::spawn().await;
    let printed = seed_retail(&t.database_url, &t.redis_url, &t.prefix);
    assert!(
        printed.contains(&format!(
            "seeded {LOCATIONS} locations, {PRODUCTS} products, {ROWS} stock rows"
        )),
        "{printed}"
    );
    assert!(printed.contains("==> seeding stock: building the (location, product) key"));

    let kinds: Vec<(String, i64, f64, f64, f64, f64)> = sqlx::query_as(
        "SELECT CAST(kind AS CHAR), COUNT(*), MIN(latitude), MAX(latitude), MIN(longitude), \
         MAX(longitude) FROM locations GROUP BY kind ORDER BY kind",
    )
    .fetch_all(&t.db)
    .await
    .unwrap();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert_eq!((kinds[0].0.as_str(), kinds[0].1), ("WAREHOUSE", 10));
    assert_eq!((kinds[1].0.as_str(), kinds[1].1), ("STORE", STORES as i64));
    for (kind, _, lat_lo, lat_hi, lon_lo, lon_hi) in &kinds {
        // South Korea, Jeju included.
        assert!(
            *lat_lo > 33.0 && *lat_hi < 38.7 && *lon_lo > 126.0 && *lon_hi < 129.7,
            "{kind}: {kinds:?}"
        );
    }
    // The demo's 30 Seoul stores first, then branches around cities far from Seoul too.
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM locations WHERE kind = 'STORE' ORDER BY id")
            .fetch_all(&t.db)
            .await
            .unwrap();
    assert_eq!(names[0], "Gangnam Station");
    assert_eq!(names[29], "Bundang Seohyeon");
    assert!(names.iter().any(|n| n.starts_with("Busan ")), "{names:?}");
    let south: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM locations WHERE kind = 'STORE' AND latitude < 36")
            .fetch_one(&t.db)
            .await
            .unwrap();
    assert!(south >= 20, "only {south} stores south of 36°N");

    let (rows, bad): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(SUM(s.available <> s.initial_quantity \
           OR (l.kind = 'WAREHOUSE' AND s.available NOT BETWEEN 200 AND 1000) \
           OR (l.kind = 'STORE' AND s.available NOT BETWEEN 0 AND 40)) AS SIGNED) \
         FROM stock s JOIN locations l ON l.id = s.location_id",
    )
    .fetch_one(&t.db)
    .await
    .unwrap();
    assert_eq!((rows, bad), (ROWS as i64, 0));
    let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM store_keys WHERE label = 'demo'")
        .fetch_one(&t.db)
        .await
        .unwrap();
    assert_eq!(keys, STORES as i64);
    // The key the load drops and builds again is there, unique.
    let unique: Vec<String> = sqlx::query_scalar(
        "SELECT column_name FROM information_schema.statistics WHERE table_schema = DATABASE() \
         AND table_name = 'stock' AND index_name = 'uq_stock_location_product' AND non_unique = 0 \
         ORDER BY seq_in_index",
    )
    .fetch_all(&t.db)
    .await
    .unwrap();
    assert_eq!(unique, ["location_id", "product_id"]);

    // A second seed into a database of its own yields the same rows.
    let second = format!("{}_again", t.database_url.rsplit('/').next().unwrap());
    let server = t.database_url.rsplit_once('/').unwrap().0.to_owned();
    sqlx::query(&format!("CREATE DATABASE `{second}`"))
        .execute(&t.db)
        .await
        .unwrap();
    let second_url = format!("{server}/{second}");
    seed_retail(&second_url, &t.redis_url, &format!("{}again:", t.prefix));
    let other = sqlx::MySqlPool::connect(&second_url).await.unwrap();
    let (a, b) = (digest(&t.db).await, digest(&other).await);
    other.close().await;
    sqlx::query(&format!("DROP DATABASE `{second}`"))
        .execute(&t.db)
        .await
        .unwrap();
    assert_eq!(a, b);
}

/// Every stock key's Redis figure and MySQL's `available`, by (location, product); `None` where
/// Redis lacks the key.
async fn redis_and_mysql(t: &TestApp) -> Vec<((u64, u64), Option<i64>, i64)> {
    let rows: Vec<(u64, u64, i64)> = sqlx::query_as(
        "SELECT location_id, product_id, available FROM stock ORDER BY location_id, product_id",
    )
    .fetch_all(&t.db)
    .await
    .unwrap();
    let mut redis = t.redis().await;
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(1000) {
        let keys: Vec<String> = chunk.iter().map(|(l, p, _)| t.stock_key(*l, *p)).collect();
        let values: Vec<Option<i64>> = redis.mget(&keys).await.unwrap();
        out.extend(
            chunk
                .iter()
                .zip(values)
                .map(|((l, p, a), v)| ((*l, *p), v, *a)),
        );
    }
    out
}

async fn xreadgroup_calls(redis: &mut RedisConn) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_xreadgroup:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retail_catalogue_warms_up_under_orders_reconciles_and_pages_its_products() {
    // A Redis of its own: its command counts are this service's alone.
    let server = PrivateRedis::start();
    let url = server.url();
    let t = TestApp::spawn_with(|c| {
        c.storage.redis_url = url.clone().into();
        // The service checks Redis every second: it must notice the loss below once.
        c.health_check_ms = 1_000;
        // No scheduled pass: the test's own must find the drift it made.
        c.reconcile_schedule = "0 0 3 1 1 *".into();
    })
    .await;
    seed_retail(&t.database_url, &t.redis_url, &t.prefix);
    t.storage().catalog().refresh_locations().await.unwrap();
    t.storage().catalog().refresh_catalog().await.unwrap();
    let locations: Vec<LocationId> = t.storage().catalog().all_location_ids();
    assert_eq!(locations.len() as u64, LOCATIONS);
    t.storage().recovery().warm_up(&locations).await.unwrap();
    // The service's own check, every second, finds Redis warm (or finishes a warm-up it began
    // before the one above was done).
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Redis loses everything; 8 clients order meanwhile, each at stores of its own (one unit of a
    // product the store has), while the warm-up refills Redis.
    // (A Redis of the test's own: everything goes at once, as in a restart without data.)
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut t.redis().await)
        .await
        .unwrap();
    let stocked: Vec<(u64, u64)> = sqlx::query_as(
        "SELECT s.location_id, MIN(s.product_id) FROM stock s JOIN locations l \
         ON l.id = s.location_id AND l.kind = 'STORE' WHERE s.available > 0 \
         GROUP BY s.location_id ORDER BY s.location_id",
    )
    .fetch_all(&t.db)
    .await
    .unwrap();
    assert_eq!(stocked.len() as u32, STORES);
    let ordering = async {
        let clients = (0..8).map(|c| {
            let t = &t;
            let mine: Vec<(u64, u64)> = stocked.iter().copied().skip(c).step_by(8).collect();
            async move {
                let mut answers = Vec::new();
                for (store, product) in mine {
                    let body = json!({
                        "items": [{"productId": product, "quantity": 1}],
                        "deliveryType": "PICKUP",
                        "storeId": store,
                    });
                    let (s, b) = json_of(t.post("/api/redis/orders", &body).await).await;
                    answers.push((s, b));
                }
                answers
            }
        });
        futures::future::join_all(clients).await
    };
    let recovery = t.storage().recovery();
    let (answers, warmed) = tokio::join!(ordering, recovery.warm_up(&locations));
    let warmed = warmed.unwrap();
    let answers: Vec<(StatusCode, Value)> = answers.into_iter().flatten().collect();
    assert_eq!(answers.len() as u32, STORES);
    for (s, b) in &answers {
        assert_eq!(*s, StatusCode::ACCEPTED, "{b}");
    }
    assert_eq!(warmed.keys_checked, ROWS);
    // Orders (and the consumer, re-syncing their keys) loaded some keys themselves.
    assert!(warmed.keys_loaded <= ROWS, "{warmed:?}");
    assert_eq!(warmed.keys_repaired, 0, "{warmed:?}");
    t.wait_persisted().await;

    // The service noticed the loss: one record and one `order.lost` naming all 210 locations
    // (each location's data was loaded at a moment of its own, but it is one loss).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM redis_data_losses")
        .fetch_one(&t.db)
        .await
        .unwrap()
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no data loss recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let losses: Vec<String> = sqlx::query_scalar("SELECT locations FROM redis_data_losses")
        .fetch_all(&t.db)
        .await
        .unwrap();
    let all: Vec<String> = locations.iter().map(|l| l.get().to_string()).collect();
    assert_eq!(losses, [all.join(",")]);
    let lost: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE type = 'order.lost'")
        .fetch_one(&t.db)
        .await
        .unwrap();
    assert_eq!(lost, 1);
    for (key, redis, mysql) in redis_and_mysql(&t).await {
        assert_eq!(redis, Some(mysql), "redis vs mysql at {key:?}");
    }

    // Three keys drift at three locations; one pass checks every key and repairs those three.
    let drifted = [
        (locations[3].get(), 17),
        (locations[100].get(), 250),
        (locations[209].get(), 500),
    ];
    let mut before = Vec::new();
    for (l, p) in drifted {
        let right = t.redis_stock(l, p).await.unwrap();
        t.set_redis_stock(l, p, right + 7).await;
        before.push((l, p, right));
    }
    let report = t.run_reconcile().await;
    let r = &report;
    assert_eq!(r["keysChecked"], ROWS, "{report}");
    assert_eq!(r["keysRepaired"], 3, "{report}");
    assert_eq!(r["ledgerMismatches"], 0, "{report}");
    let repairs: Vec<(u64, u64, i64, i64)> = r["details"]["repairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["locationId"].as_u64().unwrap(),
                x["productId"].as_u64().unwrap(),
                x["before"].as_i64().unwrap(),
                x["after"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<_> = before.iter().map(|(l, p, v)| (*l, *p, v + 7, *v)).collect();
    assert_eq!(repairs, expected);

    // Product pages: by location id, 100 at a time, on both reads.
    let ids: Vec<u64> = locations.iter().map(|l| l.get()).collect();
    for route in ["/api/products/7", "/api/redis/products/7"] {
        let mut seen = Vec::new();
        let mut total = 0;
        let mut after: Option<u64> = None;
        loop {
            let path = match after {
                None => route.to_owned(),
                Some(a) => format!("{route}?after={a}"),
            };
            let (s, page) = json_of(t.get(&path).await).await;
            assert_eq!(s, StatusCode::OK, "{page}");
            let stock = page["stock"].as_array().unwrap();
            assert!(stock.len() <= 100, "{route}: {} entries", stock.len());
            seen.extend(stock.iter().map(|e| e["locationId"].as_u64().unwrap()));
            assert!(stock.iter().all(|e| e.get("distanceKm").is_none()));
            total += page["totalQuantity"].as_i64().unwrap();
            match page["next"].as_u64() {
                Some(n) => {
                    assert_eq!(Some(n), seen.last().copied());
                    after = Some(n);
                }
                None => break,
            }
        }
        assert_eq!(seen, ids, "{route}");
        let (_, list) = json_of(
            t.get(&format!("{}?after=6&limit=1", route.trim_end_matches("/7")))
                .await,
        )
        .await;
        assert_eq!(list["products"][0]["productId"], 7, "{list}");
        assert_eq!(
            list["products"][0]["totalQuantity"], total,
            "{route}: {list}"
        );
    }

    // Near Seoul City Hall: exactly the locations within 5 km, nearest first, with distances.
    let city_hall = Coordinates::new(37.5665, 126.9780).unwrap();
    let (_, all) = json_of(t.get("/api/locations").await).await;
    let mut near: Vec<(f64, u64)> = all["locations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| {
            let at = Coordinates::new(
                l["latitude"].as_f64().unwrap(),
                l["longitude"].as_f64().unwrap(),
            )
            .unwrap();
            let d = sf_routing::index::distance_km(city_hall, at);
            (d <= 5.0).then(|| (d, l["locationId"].as_u64().unwrap()))
        })
        .collect();
    near.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    assert!(near.len() >= 5, "{near:?}");
    for route in ["/api/products/7", "/api/redis/products/7"] {
        let (s, page) = json_of(
            t.get(&format!("{route}?near=37.5665,126.9780&radiusKm=5"))
                .await,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let got: Vec<(f64, u64)> = page["stock"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["distanceKm"].as_f64().unwrap(),
                    e["locationId"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got.iter().map(|g| g.1).collect::<Vec<_>>(),
            near.iter().map(|n| n.1).collect::<Vec<_>>(),
            "{route}"
        );
        for (g, n) in got.iter().zip(&near) {
            assert!((g.0 - n.0).abs() < 0.001, "{route}: {g:?} vs {n:?}");
        }
        assert!(page.get("next").is_none(), "{page}");
        let (_, first) = json_of(
            t.get(&format!("{route}?near=37.5665,126.9780&radiusKm=5&limit=2"))
                .await,
        )
        .await;
        let two: Vec<u64> = first["stock"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["locationId"].as_u64().unwrap())
            .collect();
        assert_eq!(two, [near[0].1, near[1].1]);
    }
    // Off the schema (400), and rules across parameters or past the schema (422).
    let bad = [
        ("near=abc", 400, "near"),
        ("near=37.5,126.9&radiusKm=0", 400, "radiusKm"),
        ("near=37.5,126.9&radiusKm=501", 400, "radiusKm"),
        ("limit=0", 400, "limit"),
        ("limit=501", 400, "limit"),
        ("near=91,0", 422, "near must be latitude,longitude"),
        ("radiusKm=3", 422, "radiusKm goes with near"),
        (
            "near=37.5,126.9&after=3",
            422,
            "after pages the locations by id",
        ),
    ];
    for route in ["/api/products/7", "/api/redis/products/7"] {
        for (query, status, says) in bad {
            let (s, b) = json_of(t.get(&format!("{route}?{query}")).await).await;
            assert_eq!(s.as_u16(), status, "{route}?{query}: {b}");
            assert!(
                b["detail"].as_str().unwrap().contains(says),
                "{route}?{query}: {b}"
            );
        }
    }

    // Idle, the consumer waits on one read of all 210 streams (500 ms each) instead of polling
    // each stream: over 3 s, a handful of reads, where polling every stream every 50 ms would
    // make over 12,000.
    t.wait_persisted().await;
    let mut redis = t.redis().await;
    let before = xreadgroup_calls(&mut redis).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reads = xreadgroup_calls(&mut redis).await - before;
    assert!((4..=10).contains(&reads), "{reads} stream reads in 3 s");

    // An order at the last location still reaches MySQL.
    let (store, product) = *stocked.last().unwrap();
    let id = t
        .place_redis(&json!({
            "items": [{"productId": product, "quantity": 1}],
            "deliveryType": "PICKUP",
            "storeId": store,
        }))
        .await;
    t.wait_persisted().await;
    assert_eq!(t.order_status(&id).await, "CONFIRMED");
    let counts: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT CAST(status AS CHAR), COUNT(*) FROM orders GROUP BY status",
    )
    .fetch_all(&t.db)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(counts.get("CONFIRMED"), Some(&(i64::from(STORES) + 1)));
}
