//! The Redis order path: atomic decisions in Lua, durable events, the consumer, and the
//! invariants under concurrency and failures, against real MariaDB and Redis.

use crate::common::*;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;
use sf_routing::{LocationId, ProductId};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// I1 no oversell and I2 nothing lost: 500 concurrent 1-unit orders for 100 units: exactly 100
/// accepted; once the consumer caught up MySQL has exactly those 100 confirmed, stock 0, ledger -100.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_oversell_on_the_redis_path() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(9_900, 100).await;
    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    let results = join_all((0..500).map(|_| t.post("/api/redis/orders", &body))).await;
    let mut accepted = HashSet::new();
    let mut conflicts = 0;
    for r in results {
        let (status, body) = json_of(r).await;
        match status {
            StatusCode::ACCEPTED => {
                assert_eq!(body["status"], "ACCEPTED");
                assert_eq!(body["path"], "REDIS");
                accepted.insert(body["orderId"].as_str().unwrap().to_owned());
            }
            StatusCode::CONFLICT => {
                assert_eq!(body["type"], "/problems/out-of-stock");
                conflicts += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((accepted.len(), conflicts), (100, 400));
    t.wait_persisted().await;
    let in_mysql: HashSet<String> = t.order_ids().await.into_iter().collect();
    assert!(
        in_mysql == accepted,
        "MySQL orders differ from the accepted ones"
    );
    assert_eq!(t.count_orders("CONFIRMED").await, 100);
    assert_eq!(t.available(wh, p).await, 0);
    assert_eq!(t.ledger_sum(wh, p).await, -100);
    assert_eq!(t.redis_stock(wh, p).await, Some(0));
    let id = accepted.iter().next().unwrap();
    let (_, order) = json_of(t.get(&format!("/api/orders/{id}")).await).await;
    assert_eq!(order["status"], "CONFIRMED");
    t.assert_converged(InRedis::All).await;
}

/// All or nothing: an order whose second line is short takes nothing from the first line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_line_orders_are_all_or_nothing() {
    let t = TestApp::spawn().await;
    let (wh, a) = t.warehouse_with_product(9_900, 10).await;
    let b = t.add_stocked_product(wh, 500, 1).await;
    let (s, body) = json_of(
        t.post(
            "/api/redis/orders",
            &normal_order(&[(a, 3), (b, 2)], SEOUL.0, SEOUL.1),
        )
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["productId"], b);
    assert_eq!(t.redis_stock(wh, a).await, Some(10));
    assert_eq!(t.redis_stock(wh, b).await, Some(1));
    t.wait_persisted().await;
    assert_eq!(t.available(wh, a).await, 10);
    assert_eq!(t.order_ids().await.len(), 0);
}

/// Cancel of a Redis order, before and after it reached MySQL, sent 50 times at once: the units
/// come back once in Redis and once in MySQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cancel_storm_restores_once() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(9_900, 10).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (s, b) = json_of(
            t.post(
                "/api/redis/orders",
                &normal_order(&[(p, 3)], SEOUL.0, SEOUL.1),
            )
            .await,
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        ids.push(b["orderId"].as_str().unwrap().to_owned());
    }
    // The first is cancelled once it is CONFIRMED, the second possibly before.
    t.wait_persisted().await;
    for id in &ids {
        let path = format!("/api/redis/orders/{id}/cancel");
        let results = join_all((0..50).map(|_| t.patch(&path))).await;
        for r in results {
            let (s, b) = json_of(r).await;
            assert_eq!(
                (s, b["status"].as_str()),
                (StatusCode::OK, Some("CANCELLED")),
                "{b}"
            );
        }
    }
    assert_eq!(t.redis_stock(wh, p).await, Some(10));
    t.wait_persisted().await;
    assert_eq!(t.available(wh, p).await, 10);
    assert_eq!(t.ledger_sum(wh, p).await, 0);
    assert_eq!(t.count_orders("CANCELLED").await, 2);
    t.assert_converged(InRedis::All).await;
}

/// A cancel that arrives before the consumer persisted the order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_persisted() {
    let mut t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(9_900, 10).await;
    t.app().stop_consumer_now();
    let (_, b) = json_of(
        t.post(
            "/api/redis/orders",
            &normal_order(&[(p, 4)], SEOUL.0, SEOUL.1),
        )
        .await,
    )
    .await;
    let id = b["orderId"].as_str().unwrap().to_owned();
    let (_, b) = json_of(t.get(&format!("/api/orders/{id}")).await).await;
    assert_eq!(b["status"], "ACCEPTED");
    let path = format!("/api/redis/orders/{id}/cancel");
    let results = join_all((0..20).map(|_| t.patch(&path))).await;
    for r in results {
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(t.redis_stock(wh, p).await, Some(10));
    assert_eq!(t.available(wh, p).await, 10);
    t.app().start_consumer();
    t.wait_persisted().await;
    let (_, b) = json_of(t.get(&format!("/api/orders/{id}")).await).await;
    assert_eq!(b["status"], "CANCELLED");
    assert_eq!(t.available(wh, p).await, 10);
    assert_eq!(t.ledger_sum(wh, p).await, 0);
    t.assert_converged(InRedis::All).await;
}

/// I5 on the Redis path: 20 concurrent requests with one key make one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_idempotency_key_creates_one_order() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(9_900, 100).await;
    let body = normal_order(&[(p, 2)], SEOUL.0, SEOUL.1);
    let results = join_all((0..20).map(|_| {
        t.client
            .post(format!("{}/api/redis/orders", t.base))
            .header("Idempotency-Key", "k-1")
            .json(&body)
            .send()
    }))
    .await;
    let mut ids = HashSet::new();
    for r in results {
        let (s, b) = json_of(r.unwrap()).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        ids.insert(b["orderId"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    let r = t
        .client
        .post(format!("{}/api/redis/orders", t.base))
        .header("Idempotency-Key", "k-1")
        .json(&normal_order(&[(p, 3)], SEOUL.0, SEOUL.1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    t.wait_persisted().await;
    assert_eq!(t.available(wh, p).await, 98);
    assert_eq!(t.order_ids().await.len(), 1);
}

/// `reserve.lua` answers "duplicate" for an order id it has decided before, whatever the stock
/// says now: a retry of an order that took the last unit is that order, not an out-of-stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_decided_before_is_a_duplicate_once_its_stock_is_gone() {
    let t = TestApp::spawn().await;
    let (loc, product) = (LocationId::new_unchecked(7), ProductId::new_unchecked(11));
    let keys = t.keys();
    let script = redis::Script::new(sf_persistence::scripts::reserve::SOURCE);
    let mut redis = t.redis().await;
    let _: () = redis::cmd("SET")
        .arg(keys.stock(loc, product))
        .arg(1)
        .query_async(&mut redis)
        .await
        .unwrap();
    let reserve = |id: &'static str| {
        let mut call = script.prepare_invoke();
        call.key(keys.order(loc, id))
            .key(keys.stream(loc))
            .key(keys.stock(loc, product))
            .arg(id)
            .arg("{}")
            .arg("11:1")
            .arg(1);
        call
    };
    let first: Vec<i64> = reserve("7-a").invoke_async(&mut redis).await.unwrap();
    let again: Vec<i64> = reserve("7-a").invoke_async(&mut redis).await.unwrap();
    let other: Vec<i64> = reserve("7-b").invoke_async(&mut redis).await.unwrap();
    assert_eq!((first, again, other), (vec![1], vec![2], vec![0, 1, 0]));
    assert_eq!(t.redis_stock(7, 11).await, Some(0));
}

/// I5 under a race for the key: 60 keys, each sent 4 times at once through two instances, for
/// 40 units. A key's copies get one answer (the same order, or the same refusal), whichever copy
/// claims the key and whichever takes a claim over; 40 keys are sold, 20 refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_copies_of_a_key_get_one_answer() {
    let t = TestApp::spawn().await;
    let shop = t.store_with(1, 40).await;
    let (store, p) = (shop.store, shop.products[0]);
    let second = t.spawn_instance(|_| {}).await;
    let bases = [
        t.base.clone(),
        format!("http://127.0.0.1:{}", second.app().port()),
    ];
    let body = pickup_order(&[(p, 1)], store);
    let mut tasks = Vec::new();
    for k in 0..60 {
        for copy in 0..4 {
            let request = t
                .client
                .post(format!("{}/api/redis/orders", bases[copy % 2]))
                .header("Idempotency-Key", format!("race-{k}"))
                .json(&body);
            tasks.push(async move { (k, json_of(request.send().await.unwrap()).await) });
        }
    }
    let mut answers: std::collections::BTreeMap<usize, Vec<(StatusCode, Value)>> =
        Default::default();
    for (k, answer) in join_all(tasks).await {
        answers.entry(k).or_default().push(answer);
    }
    let (mut sold, mut refused) = (HashSet::new(), 0);
    for (k, copies) in &answers {
        let (first, _) = &copies[0];
        for (s, b) in copies {
            assert_eq!(s, first, "key race-{k}: {copies:?}");
            match *s {
                StatusCode::ACCEPTED => {
                    assert_eq!(b["orderId"], copies[0].1["orderId"], "key race-{k}")
                }
                StatusCode::CONFLICT => assert_eq!(b["type"], "/problems/out-of-stock"),
                other => panic!("key race-{k}: {other} {b}"),
            }
        }
        match *first {
            StatusCode::ACCEPTED => {
                sold.insert(copies[0].1["orderId"].as_str().unwrap().to_owned());
            }
            _ => refused += 1,
        }
    }
    assert_eq!((sold.len(), refused), (40, 20));
    t.wait_persisted().await;
    let in_mysql: HashSet<String> = t.order_ids().await.into_iter().collect();
    assert_eq!(in_mysql, sold);
    assert_eq!(t.available(store, p).await, 0);
    assert_eq!(t.ledger_sum(store, p).await, -40);
    t.assert_converged(InRedis::All).await;
}

/// Fires `n` one-unit Redis orders from 32 concurrent workers, optionally with something else
/// happening halfway; returns the accepted order ids.
fn burst(
    t: &TestApp,
    p: u64,
    n: usize,
    expect_errors: bool,
) -> tokio::task::JoinHandle<(HashSet<String>, usize)> {
    let client = t.client.clone();
    let url = format!("{}/api/redis/orders", t.base);
    tokio::spawn(burst_run(client, url, p, n, expect_errors))
}

async fn burst_run(
    client: reqwest::Client,
    url: String,
    p: u64,
    n: usize,
    expect_errors: bool,
) -> (HashSet<String>, usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let body = Arc::new(normal_order(&[(p, 1)], SEOUL.0, SEOUL.1));
    let workers = (0..32).map(|_| {
        let next = next.clone();
        let body = body.clone();
        let client = client.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut failed = 0;
            while next.fetch_add(1, Ordering::Relaxed) < n {
                match client.post(&url).json(&*body).send().await {
                    Ok(r) if r.status() == StatusCode::ACCEPTED => {
                        let b: Value = r.json().await.unwrap();
                        ids.push(b["orderId"].as_str().unwrap().to_owned());
                    }
                    Ok(r) if r.status() == StatusCode::CONFLICT => {}
                    Ok(r) => {
                        assert!(expect_errors, "unexpected {}", r.status());
                        failed += 1;
                    }
                    Err(e) => {
                        assert!(expect_errors, "request failed: {e}");
                        failed += 1;
                    }
                }
            }
            (ids, failed)
        })
    });
    let mut all = HashSet::new();
    let mut failed = 0;
    for w in join_all(workers).await {
        let (ids, f) = w.unwrap();
        failed += f;
        for id in ids {
            assert!(all.insert(id), "an order id was answered twice");
        }
    }
    (all, failed)
}

/// I2 with a consumer that dies mid-run: its task is aborted while a 5,000-order run goes on,
/// then a new consumer starts; every accepted order is in MySQL exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_aborted_mid_run_loses_nothing() {
    let mut t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(9_900, 4_000).await;
    let run = burst(&t, p, 5_000, false);
    // Let part of the run through, then kill the consumer while orders keep coming.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let persisted_before = t.order_ids().await.len();
    t.app().stop_consumer_now();
    let accepted = run.await.unwrap().0;
    assert!(
        persisted_before < 4_000,
        "the consumer had finished before it was killed"
    );
    assert_eq!(accepted.len(), 4_000);
    t.app().start_consumer();
    t.wait_persisted().await;
    let ids = t.order_ids().await;
    assert_eq!(ids.len(), 4_000);
    assert!(
        ids.into_iter().collect::<HashSet<_>>() == accepted,
        "MySQL orders differ from the accepted ones"
    );
    assert_eq!(t.available(wh, p).await, 0);
    assert_eq!(t.ledger_sum(wh, p).await, -4_000);
    t.assert_converged(InRedis::All).await;
    t.assert_outbox().await;
}

/// I2 with the whole app process killed (`kill -9`) mid-run: a new process comes up on the same
/// database and Redis, serves orders again, and its consumer takes over the events the dead one
/// held; every order either process answered is in MySQL exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn app_process_killed_mid_run_loses_nothing() {
    // The in-process app persists nothing and runs no jobs: the new process must do the work.
    let t = TestApp::spawn_with(|c| {
        c.consumer_enabled = false;
        c.jobs_enabled = false;
    })
    .await;
    let (wh, p) = t.warehouse_with_product(9_900, 3_000).await;
    let q = t.add_stocked_product(wh, 9_900, 100).await;
    let mut first = t.spawn_process(&[("CONSUMER_BATCH", "50")]);
    first
        .wait_for(&t.client, "/health/live", Duration::from_secs(20))
        .await;
    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    let accepted = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let client = t.client.clone();
            let url = format!("{}/api/redis/orders", first.base);
            let body = body.clone();
            let (accepted, answered) = (accepted.clone(), answered.clone());
            tokio::spawn(async move {
                for _ in 0..200 {
                    match client.post(&url).json(&body).send().await {
                        Ok(r) => {
                            answered.fetch_add(1, Ordering::Relaxed);
                            if r.status() == StatusCode::ACCEPTED {
                                let b: Value = r.json().await.unwrap();
                                accepted
                                    .lock()
                                    .unwrap()
                                    .insert(b["orderId"].as_str().unwrap().to_owned());
                            }
                        }
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    first.kill();
    join_all(workers).await;
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        !accepted.is_empty(),
        "no order was accepted before the kill"
    );
    assert!(
        answered.load(Ordering::Relaxed) < 16 * 200,
        "the run ended before the process was killed"
    );

    // A new instance comes up, serves orders, and persists the dead one's events with its own.
    let second = t.spawn_process(&[
        ("CONSUMER_BATCH", "50"),
        ("CONSUMER_RECLAIM_IDLE_MS", "2000"),
    ]);
    second
        .wait_for(&t.client, "/health/ready", Duration::from_secs(20))
        .await;
    let mut placed = HashSet::new();
    for _ in 0..20 {
        let r = t
            .client
            .post(format!("{}/api/redis/orders", second.base))
            .json(&normal_order(&[(q, 1)], SEOUL.0, SEOUL.1))
            .send()
            .await
            .unwrap();
        let (s, b) = json_of(r).await;
        assert_eq!(s, StatusCode::ACCEPTED, "the new instance: {b}");
        placed.insert(b["orderId"].as_str().unwrap().to_owned());
    }
    t.wait_persisted().await;
    let ids = t.order_ids().await;
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "an order was persisted twice");
    // Every answered order is persisted; orders decided just before the kill whose answer never
    // left the process are persisted too (they took stock), so MySQL may hold a few more.
    let lost = accepted.difference(&unique).count();
    assert_eq!(lost, 0, "{lost} accepted orders are missing from MySQL");
    assert!(
        placed.is_subset(&unique),
        "the new instance's orders are missing"
    );
    assert_eq!(t.count_orders("CONFIRMED").await, ids.len() as i64);
    assert_eq!(t.available(wh, q).await, 100 - 20);
    assert_eq!(t.available(wh, p).await, 3_000 - (unique.len() - 20) as i64);
    t.assert_converged(InRedis::All).await;
    t.assert_outbox().await;
}

/// I2 with Redis killed: `kill -9` a private append-only Redis mid-run and restart it; every
/// order answered ACCEPTED ends up in MySQL exactly once and no unit is sold twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_mid_run_loses_nothing() {
    let mut redis = PrivateRedis::start();
    let url = redis.url();
    let t = TestApp::spawn_with(|c| c.storage.redis_url = url.into()).await;
    let (wh, p) = t.warehouse_with_product(9_900, 1_500).await;
    let run = burst(&t, p, 3_000, true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    let (accepted, failed) = run.await.unwrap();
    assert!(accepted.len() <= 1_500, "oversold: {}", accepted.len());
    // Orders refused while Redis was down are retried by clients; none was accepted twice.
    t.wait_persisted().await;
    let ids = t.order_ids().await;
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "an order was persisted twice");
    let lost = accepted.difference(&unique).count();
    assert_eq!(
        lost, 0,
        "{lost} accepted orders are missing ({failed} requests failed while Redis was down)"
    );
    assert!(unique.len() <= 1_500, "oversold: {}", unique.len());
    assert_eq!(t.available(wh, p).await, 1_500 - unique.len() as i64);
    t.assert_converged(InRedis::All).await;
    t.assert_outbox().await;
}

/// `SCRIPT FLUSH` during a run causes no failed order: scripts are reloaded on NOSCRIPT.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn script_flush_causes_no_failed_order() {
    let t = TestApp::spawn().await;
    let (wh, p) = t.warehouse_with_product(9_900, 1_000).await;
    let stop = Arc::new(AtomicBool::new(false));
    let flusher = {
        let stop = stop.clone();
        let client = redis::Client::open(t.redis_url.as_str()).unwrap();
        tokio::spawn(async move {
            let mut c = client.get_multiplexed_async_connection().await.unwrap();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let _: () = redis::cmd("SCRIPT")
                    .arg("FLUSH")
                    .query_async(&mut c)
                    .await
                    .unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    };
    let (accepted, failed) = burst(&t, p, 1_200, false).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(flusher.await.unwrap() > 5);
    assert_eq!((accepted.len(), failed), (1_000, 0));
    t.wait_persisted().await;
    assert_eq!(t.available(wh, p).await, 0);
    t.assert_converged(InRedis::All).await;
}

/// Orders that miss keys while every load turn is taken wait in a bounded line; one beyond it is
/// refused at once (503 with `Retry-After`, nothing changed) instead of waiting out its deadline,
/// and those in line are served once the turn is free. (A pool of 8: one turn, four in line. The
/// turn is held by an order whose key load waits for a stock row the test keeps locked.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_beyond_the_line_for_a_key_load_is_refused_at_once() {
    let t = Arc::new(
        TestApp::spawn_with(|c| {
            c.storage.db_max_connections = 8;
            c.storage.db_command_timeout_ms = 15_000;
        })
        .await,
    );
    let s = t.store_with(6, 10).await;
    let mut redis = t.redis().await;
    for p in &s.products {
        let _: () = redis::cmd("DEL")
            .arg(t.stock_key(s.store, *p))
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    let order = |p: u64| {
        let t = t.clone();
        let body = serde_json::json!({
            "items": [{"productId": p, "quantity": 1}],
            "deliveryType": "PICKUP",
            "storeId": s.store,
        });
        async move { t.post("/api/redis/orders", &body).await }
    };
    let mut lock = sf_persistence::infra::mysql::begin(&t.db).await.unwrap();
    sqlx::query("SELECT available FROM stock WHERE location_id = ? AND product_id = ? FOR UPDATE")
        .bind(s.store)
        .bind(s.products[0])
        .execute(&mut *lock)
        .await
        .unwrap();
    // The first takes the turn and waits for the row; four more take the places in line.
    let holder = tokio::spawn(order(s.products[0]));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let in_line: Vec<_> = s.products[1..5]
        .iter()
        .map(|p| tokio::spawn(order(*p)))
        .collect();
    tokio::time::sleep(Duration::from_millis(1_000)).await;

    let beyond = tokio::select! {
        r = order(s.products[5]) => r,
        _ = tokio::time::sleep(Duration::from_secs(5)) => panic!("the sixth order waited for a turn"),
    };
    assert!(beyond.headers().get("retry-after").is_some());
    let (status, body) = json_of(beyond).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("not loaded into redis yet"),
        "{body}"
    );
    assert!(
        !holder.is_finished(),
        "the first order did not wait for the locked row"
    );

    lock.rollback().await.unwrap();
    for r in std::iter::once(holder).chain(in_line) {
        let (status, body) = json_of(r.await.unwrap()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    t.wait_persisted().await;
    for (i, p) in s.products.iter().enumerate() {
        assert_eq!(t.available(s.store, *p).await, if i < 5 { 9 } else { 10 });
    }
    assert_eq!(t.count_orders("CONFIRMED").await, 5);
}

/// One stock, several writers: DB-lock orders, Redis orders, Redis cancels and admin adjustments
/// on one product at once. No oversell; after quiescence Redis equals MySQL and the ledger sums.
/// (150 MySQL-first writes queue on one row lock: on a loaded machine the last ones wait longer
/// than the default 3 s deadline, which is not what this test is about.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_writers_converge() {
    let t = TestApp::spawn_with(|c| c.storage.db_command_timeout_ms = 15_000).await;
    let (wh, p) = t.warehouse_with_product(9_900, 200).await;
    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    let t = Arc::new(t);
    let mut tasks = Vec::new();
    for i in 0..400 {
        let t = t.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            match i % 8 {
                0..=2 => {
                    let r = t.post("/api/orders", &body).await;
                    (r.status(), 0)
                }
                3 => {
                    let delta = if i % 16 == 3 { 5 } else { -3 };
                    let r = t.admin_adjust(wh, p, delta).await;
                    let s = r.status();
                    (s, if s == StatusCode::OK { delta } else { 0 })
                }
                4 => {
                    let r = t.post("/api/redis/orders", &body).await;
                    let s = r.status();
                    if s == StatusCode::ACCEPTED {
                        let b: Value = r.json().await.unwrap();
                        let id = b["orderId"].as_str().unwrap();
                        let c = t.patch(&format!("/api/redis/orders/{id}/cancel")).await;
                        assert_eq!(c.status(), StatusCode::OK);
                        return (StatusCode::RESET_CONTENT, 0);
                    }
                    (s, 0)
                }
                _ => {
                    let r = t.post("/api/redis/orders", &body).await;
                    (r.status(), 0)
                }
            }
        }));
    }
    let mut restocked = 0i64;
    for task in join_all(tasks).await {
        let (status, delta) = task.unwrap();
        match status {
            StatusCode::CREATED | StatusCode::ACCEPTED => {}
            StatusCode::OK => restocked += delta,
            // Refused: out of stock, or an adjustment that would take on-hand below zero.
            StatusCode::RESET_CONTENT | StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => {
            }
            other => panic!("unexpected {other}"),
        }
    }
    t.wait_persisted().await;
    // An adjustment is a fact about the shelf: it may find fewer units than online orders hold
    // (available below zero), and an order accepted in Redis that MySQL then cannot cover ends
    // REJECTED. What was sold is what MySQL confirmed.
    let sold = t.count_orders("CONFIRMED").await;
    let available = t.available(wh, p).await;
    let committed: i64 =
        sqlx::query_scalar("SELECT committed FROM stock WHERE location_id = ? AND product_id = ?")
            .bind(wh)
            .bind(p)
            .fetch_one(&t.db)
            .await
            .unwrap();
    assert!(available + committed >= 0, "on-hand below zero");
    assert_eq!(available + committed, 200 + restocked, "on-hand");
    assert_eq!(committed, sold, "every confirmed order holds its unit");
    assert_eq!(t.redis_stock(wh, p).await, Some(available));
    t.assert_converged(InRedis::All).await;
}

/// A batch larger than one `ack.lua` call (its acknowledgement goes in calls of
/// `ACK_CHUNK` events): once persisted, every event is acknowledged and deleted, nothing is left
/// pending, and every order's record expires after the record TTL — none is left without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_larger_than_one_acknowledgement_is_acknowledged_whole() {
    use sf_persistence::scripts::ack::ACK_CHUNK;
    let mut t = TestApp::spawn_with(|c| c.order_record_ttl_secs = 600).await;
    let (wh, p) = t.warehouse_with_product(9_900, 1_000).await;
    let n = 3 * ACK_CHUNK + 7;
    // The consumer waits, so that it reads every event in one batch.
    t.app().stop_consumer_now();
    let body = normal_order(&[(p, 1)], SEOUL.0, SEOUL.1);
    let results = join_all((0..n).map(|_| t.post("/api/redis/orders", &body))).await;
    let mut accepted = Vec::new();
    for r in results {
        let (status, b) = json_of(r).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{b}");
        accepted.push(b["orderId"].as_str().unwrap().to_owned());
    }
    let keys = t.keys();
    let loc = LocationId::new_unchecked(wh);
    let mut redis = t.redis().await;
    let before: usize = redis::cmd("XLEN")
        .arg(keys.stream(loc))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(before, n);
    t.app().start_consumer();
    t.wait_persisted().await;
    assert_eq!(t.order_ids().await.len(), n);
    assert_eq!(t.available(wh, p).await, (1_000 - n) as i64);
    let left: usize = redis::cmd("XLEN")
        .arg(keys.stream(loc))
        .query_async(&mut redis)
        .await
        .unwrap();
    let (pending, ..): (usize, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(keys.stream(loc))
        .arg(sf_persistence::consumer::GROUP)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!((left, pending), (0, 0));
    for id in &accepted {
        let ttl: i64 = redis::cmd("TTL")
            .arg(keys.order(loc, id))
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!((1..=600).contains(&ttl), "record of {id}: TTL {ttl}");
    }
    t.assert_converged(InRedis::All).await;
}
