//! The service on a private Redis Cluster (3 masters, 3 replicas) with several instances: the
//! invariants hold with writers on every shard, a master killed with `kill -9` is followed to
//! its promoted replica without losing an order answered 202, an instance killed with `kill -9`
//! has its events applied by another, and a shard that loses its data is reloaded alone.

use crate::common::cluster::PrivateCluster;
use crate::common::*;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;
use sf_routing::LocationId;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The test's settings for `cluster`: the cluster client, a small pool (each pooled connection
/// holds a socket per node), quick reclaims and data checks.
fn on_cluster(c: &mut stock_flow::Config, cluster: &PrivateCluster, replica_acks: u32) {
    c.storage.redis_cluster_nodes = cluster.seeds().split(',').map(str::to_owned).collect();
    c.storage.redis_pool_size = 4;
    c.storage.redis_min_replica_acks = replica_acks;
    c.storage.redis_wait_timeout_ms = 500;
    c.consumer_reclaim_idle_ms = 2_000;
    c.health_check_ms = 200;
}

/// One store per master (each with its own products and a POS key), found by adding stores
/// until every master serves one of them: `(master port, store)`.
async fn a_store_on_each_shard(
    t: &TestApp,
    cluster: &PrivateCluster,
    products: usize,
    qty: i64,
) -> Vec<(u16, StockedStore)> {
    let mut by_master: BTreeMap<u16, StockedStore> = BTreeMap::new();
    for _ in 0..40 {
        let store = t.store_with(products, qty).await;
        let master = cluster.master_of(&t.keys().stream(LocationId::new_unchecked(store.store)));
        by_master.entry(master).or_insert(store);
        if by_master.len() == cluster.masters().len() {
            return by_master.into_iter().collect();
        }
    }
    panic!(
        "40 stores did not cover every master: {:?}",
        by_master.keys()
    );
}

fn base_of(instance: &Instance) -> String {
    format!("http://127.0.0.1:{}", instance.app().port())
}

async fn send(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut r = client.post(format!("{base}{path}")).json(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    json_of(r.send().await.unwrap()).await
}

/// Redis-path, DB-lock and POS writers on every shard at once, through two instances; repeated
/// `Idempotency-Key`s sent to both instances; a cancel storm. No unit is sold twice, every answer
/// is exact, MySQL equals Redis, the ledger sums, and a reconcile repairs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_on_every_shard_through_two_instances_keep_the_invariants() {
    let cluster = PrivateCluster::start();
    let t = TestApp::spawn_with(|c| on_cluster(c, &cluster, 0)).await;
    let shops = a_store_on_each_shard(&t, &cluster, 2, 40).await;
    let second = t.spawn_instance(|_| {}).await;
    let bases = [t.base.clone(), base_of(&second)];
    assert_eq!(shops.len(), 3);

    // Per store, on its product `a` (40 units): 24 keyed Redis-path orders (each key sent to
    // both instances), 14 DB-lock orders and 14 POS sales: 52 wanted, 40 sold. On product `b`
    // (40 units): 20 Redis-path orders, each then cancelled by 6 requests at once.
    let mut tasks = Vec::new();
    for (_, shop) in &shops {
        let (store, a) = (shop.store, shop.products[0]);
        for i in 0..24 {
            let key = format!("k-{store}-{i}");
            for base in &bases {
                let (client, base, key) = (t.client.clone(), base.clone(), key.clone());
                tasks.push(tokio::spawn(async move {
                    let (s, b) = send(
                        &client,
                        &base,
                        "/api/redis/orders",
                        &pickup_order(&[(a, 1)], store),
                        &[("Idempotency-Key", &key)],
                    )
                    .await;
                    ("redis", store, Some(key), s, b)
                }));
            }
        }
        for i in 0..14 {
            let (client, base) = (t.client.clone(), bases[i % 2].clone());
            tasks.push(tokio::spawn(async move {
                let (s, b) = send(
                    &client,
                    &base,
                    "/api/orders",
                    &pickup_order(&[(a, 1)], store),
                    &[],
                )
                .await;
                ("db-lock", store, None, s, b)
            }));
            let (client, base, auth) = (
                t.client.clone(),
                bases[(i + 1) % 2].clone(),
                format!("Bearer {}", shop.key),
            );
            tasks.push(tokio::spawn(async move {
                let (s, b) = send(
                    &client,
                    &base,
                    &format!("/api/stores/{store}/orders"),
                    &pos_sale(&[(a, 1)]),
                    &[("Authorization", &auth)],
                )
                .await;
                ("pos", store, None, s, b)
            }));
        }
    }
    // Per store: orders sold, and orders refused (a key's two requests are one order).
    let mut sold: HashMap<u64, i64> = HashMap::new();
    let mut refused: HashMap<u64, i64> = HashMap::new();
    let mut by_key: HashMap<String, Vec<(StatusCode, Value)>> = HashMap::new();
    for task in join_all(tasks).await {
        let (path, store, key, s, b) = task.unwrap();
        match (path, s) {
            ("redis", _) => by_key.entry(key.unwrap()).or_default().push((s, b)),
            ("db-lock", StatusCode::CREATED) | ("pos", StatusCode::CREATED) => {
                *sold.entry(store).or_default() += 1
            }
            (_, StatusCode::CONFLICT) => *refused.entry(store).or_default() += 1,
            other => panic!("{other:?}: {b}"),
        }
    }
    // Both requests of a key get one answer: the same order, or the same refusal.
    for (key, answers) in &by_key {
        assert_eq!(answers.len(), 2);
        let store: u64 = key.split('-').nth(1).unwrap().parse().unwrap();
        match (answers[0].0, answers[1].0) {
            (StatusCode::ACCEPTED, StatusCode::ACCEPTED) => {
                assert_eq!(
                    answers[0].1["orderId"], answers[1].1["orderId"],
                    "key {key} placed two orders"
                );
                *sold.entry(store).or_default() += 1;
            }
            (StatusCode::CONFLICT, StatusCode::CONFLICT) => *refused.entry(store).or_default() += 1,
            other => panic!("key {key}: {other:?} {answers:?}"),
        }
    }
    for (_, shop) in &shops {
        let store = shop.store;
        assert_eq!(
            (sold[&store], refused[&store]),
            (40, 52 - 40),
            "store {store}: sold, refused"
        );
    }

    // The cancel storm, through both instances.
    let mut cancels = Vec::new();
    for (_, shop) in &shops {
        let (store, b) = (shop.store, shop.products[1]);
        for i in 0..20 {
            let (s, o) = send(
                &t.client,
                &bases[i % 2],
                "/api/redis/orders",
                &pickup_order(&[(b, 2)], store),
                &[],
            )
            .await;
            assert_eq!(s, StatusCode::ACCEPTED, "{o}");
            let id = o["orderId"].as_str().unwrap().to_owned();
            for j in 0..6 {
                let (client, base, id) = (t.client.clone(), bases[j % 2].clone(), id.clone());
                cancels.push(tokio::spawn(async move {
                    let r = client
                        .patch(format!("{base}/api/redis/orders/{id}/cancel"))
                        .send()
                        .await
                        .unwrap();
                    json_of(r).await
                }));
            }
        }
    }
    for c in join_all(cancels).await {
        let (s, b) = c.unwrap();
        assert_eq!(
            (s, b["status"].as_str()),
            (StatusCode::OK, Some("CANCELLED")),
            "{b}"
        );
    }

    settle(&t).await;
    let ids = t.order_ids().await;
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an order was persisted twice");
    for (_, shop) in &shops {
        assert_eq!(t.sold(shop.store, shop.products[0]).await, 40);
        assert_eq!(t.available(shop.store, shop.products[0]).await, 0);
        assert_eq!(t.sold(shop.store, shop.products[1]).await, 0);
        assert_eq!(t.available(shop.store, shop.products[1]).await, 40);
    }
    assert_eq!(t.count_orders("CONFIRMED").await, 3 * 40);
    assert_eq!(t.count_orders("REJECTED").await, 0);
    t.assert_converged(InRedis::All).await;
    let run = t.run_reconcile().await;
    assert_eq!(
        (
            run["keysRepaired"].as_i64(),
            run["ledgerMismatches"].as_i64()
        ),
        (Some(0), Some(0)),
        "{run}"
    );
    drop(second);
}

/// Redis-path (and some DB-lock) orders from many clients on every shard; the master of one
/// shard is killed with `kill -9` mid-run and its replica promoted. With
/// `REDIS_MIN_REPLICA_ACKS=1` every order answered 202 was held by a replica: each ends CONFIRMED
/// exactly once, no unit is sold twice, MySQL equals Redis and the ledger sums. The service
/// follows the new topology by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_killed_under_load_loses_no_order_answered_202() {
    let mut cluster = PrivateCluster::start();
    let t = TestApp::spawn_with(|c| on_cluster(c, &cluster, 1)).await;
    let shops = a_store_on_each_shard(&t, &cluster, 1, 3_000).await;
    let second = t.spawn_instance(|_| {}).await;
    let bases = [t.base.clone(), base_of(&second)];
    let (victim, victim_store) = (shops[0].0, shops[0].1.store);

    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(Mutex::new(Vec::<(u64, String)>::new()));
    // Orders answered 504: held by their master, by too few replicas.
    let unreplicated = Arc::new(Mutex::new(Vec::<(u64, String)>::new()));
    let statuses = Arc::new(Mutex::new(BTreeMap::<u16, usize>::new()));
    let workers: Vec<_> = (0..24)
        .map(|w| {
            let (client, base) = (t.client.clone(), bases[w % 2].clone());
            let (stop, accepted, statuses) = (stop.clone(), accepted.clone(), statuses.clone());
            let unreplicated = unreplicated.clone();
            let (store, p) = (shops[w % 3].1.store, shops[w % 3].1.products[0]);
            // Every sixth client orders on the DB-lock path: its Redis change is replicated too,
            // or its keys are set from MySQL again.
            let path = if w % 6 == 5 { "orders" } else { "redis/orders" };
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = client
                        .post(format!("{base}/api/{path}"))
                        .json(&pickup_order(&[(p, 1)], store))
                        .send()
                        .await
                        .unwrap();
                    let s = r.status();
                    *statuses.lock().unwrap().entry(s.as_u16()).or_default() += 1;
                    match s {
                        StatusCode::ACCEPTED | StatusCode::CREATED => {
                            let b: Value = r.json().await.unwrap();
                            let id = b["orderId"].as_str().unwrap().to_owned();
                            accepted.lock().unwrap().push((store, id));
                        }
                        // Held by its master, by too few replicas (the race before the service
                        // knows the promoted master has none): it stands unless it dies too.
                        StatusCode::GATEWAY_TIMEOUT => {
                            let b: Value = r.json().await.unwrap();
                            let id = b["orderId"].as_str().unwrap().to_owned();
                            unreplicated.lock().unwrap().push((store, id));
                            tokio::time::sleep(Duration::from_millis(20)).await
                        }
                        // Refused while the failover runs or the shard lacks its replica
                        // (nothing changed), or sold out.
                        StatusCode::SERVICE_UNAVAILABLE | StatusCode::CONFLICT => {
                            tokio::time::sleep(Duration::from_millis(20)).await
                        }
                        other => panic!("unexpected {other}"),
                    }
                }
            })
        })
        .collect();
    while accepted.lock().unwrap().len() < 150 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.kill9(victim);
    let killed_at = Instant::now();
    let promoted = cluster.wait_for_promotion(victim, Duration::from_secs(30));
    // While the promoted master has no replica, the shard's orders are refused before they take
    // stock (503, nothing changed); once the old master is back as its replica, they are taken
    // again.
    cluster.restart(victim);
    let on_victim = |v: &Mutex<Vec<(u64, String)>>| {
        v.lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| *s == victim_store)
            .count()
    };
    let (a0, u0) = (on_victim(&accepted), on_victim(&unreplicated));
    let taken_again = loop {
        if on_victim(&accepted) + on_victim(&unreplicated) > a0 + u0 + 40 {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "orders were not taken again on the shard after its failover"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    join_all(workers).await;

    settle(&t).await;
    let accepted = accepted.lock().unwrap().clone();
    let ids = t.order_ids().await;
    let persisted: HashSet<&String> = ids.iter().collect();
    assert_eq!(persisted.len(), ids.len(), "an order was persisted twice");
    let lost: Vec<&String> = accepted
        .iter()
        .map(|(_, id)| id)
        .filter(|id| !persisted.contains(id))
        .collect();
    let unreplicated = unreplicated.lock().unwrap().clone();
    let mut oversold = 0;
    for (_, shop) in &shops {
        let sold = t.sold(shop.store, shop.products[0]).await;
        let available = t.available(shop.store, shop.products[0]).await;
        oversold += (sold - 3_000).max(0);
        assert_eq!(available, 3_000 - sold);
        assert!(available >= 0);
    }
    eprintln!(
        "failover: master :{victim} killed, :{promoted} promoted; orders taken again on its shard after {taken_again:?}; answers {:?}; {} answered 202 or 201, {} lost, {oversold} units oversold; {} answered 504, all confirmed",
        statuses.lock().unwrap(),
        accepted.len(),
        lost.len(),
        unreplicated.len()
    );
    assert!(lost.is_empty(), "orders answered 202 and lost: {lost:?}");
    assert_eq!(oversold, 0);
    // Orders answered 504 stood too: their master did not die.
    for (_, id) in accepted.iter().chain(&unreplicated) {
        assert_eq!(t.order_status(id).await, "CONFIRMED", "{id}");
    }
    t.assert_converged(InRedis::All).await;
    drop(second);
}

/// An instance (a process of its own) killed with `kill -9` while it persists events: another
/// instance takes over the events it held and applies each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_killed_under_load_has_its_events_applied_by_another() {
    let cluster = PrivateCluster::start();
    let t = TestApp::spawn_with(|c| on_cluster(c, &cluster, 0)).await;
    let shops = a_store_on_each_shard(&t, &cluster, 1, 5_000).await;
    let seeds = cluster.seeds();
    let mut doomed = t.spawn_process(&[
        ("REDIS_CLUSTER_NODES", seeds.as_str()),
        ("REDIS_POOL_SIZE", "4"),
        ("CONSUMER_BATCH", "20"),
    ]);
    doomed
        .wait_for(&t.client, "/health/ready", Duration::from_secs(30))
        .await;
    let accepted = Arc::new(Mutex::new(HashSet::<String>::new()));
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let client = t.client.clone();
            let url = format!("{}/api/redis/orders", doomed.base);
            let (store, p) = (shops[w % 3].1.store, shops[w % 3].1.products[0]);
            let accepted = accepted.clone();
            tokio::spawn(async move {
                for _ in 0..400 {
                    match client
                        .post(&url)
                        .json(&pickup_order(&[(p, 1)], store))
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == StatusCode::ACCEPTED => {
                            let b: Value = r.json().await.unwrap();
                            accepted
                                .lock()
                                .unwrap()
                                .insert(b["orderId"].as_str().unwrap().to_owned());
                        }
                        Ok(r) => panic!("unexpected {}", r.status()),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    while accepted.lock().unwrap().len() < 600 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    doomed.kill();
    join_all(workers).await;
    let accepted = accepted.lock().unwrap().clone();

    settle(&t).await;
    let ids = t.order_ids().await;
    let persisted: HashSet<&String> = ids.iter().collect();
    assert_eq!(persisted.len(), ids.len(), "an order was persisted twice");
    let lost = accepted.iter().filter(|id| !persisted.contains(id)).count();
    assert_eq!(lost, 0, "{lost} orders answered 202 are missing from MySQL");
    // Orders decided just before the kill whose answer never left the process took stock too.
    let mut sold = 0;
    for (_, shop) in &shops {
        let s = t.sold(shop.store, shop.products[0]).await;
        assert_eq!(t.available(shop.store, shop.products[0]).await, 5_000 - s);
        sold += s;
    }
    assert_eq!(sold, ids.len() as i64);
    assert!(ids.len() >= accepted.len());
    assert_eq!(t.count_orders("CONFIRMED").await, ids.len() as i64);
    t.assert_converged(InRedis::All).await;
}

/// One shard loses its data (its master is flushed; the replica follows): only that shard's
/// locations are recorded as lost and reloaded from MySQL; the other shards' data is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shard_that_loses_its_data_is_reloaded_alone() {
    let cluster = PrivateCluster::start();
    let t = TestApp::spawn_with(|c| on_cluster(c, &cluster, 0)).await;
    let shops = a_store_on_each_shard(&t, &cluster, 1, 50).await;
    for (_, shop) in &shops {
        for _ in 0..5 {
            let (s, b) = json_of(
                t.post(
                    "/api/redis/orders",
                    &pickup_order(&[(shop.products[0], 1)], shop.store),
                )
                .await,
            )
            .await;
            assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        }
    }
    settle(&t).await;
    // The check has seen every location loaded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while shops.iter().any(|(_, s)| {
        t.storage()
            .recovery()
            .known_epoch(LocationId::new_unchecked(s.store))
            .is_none()
    }) {
        assert!(Instant::now() < deadline, "locations never seen loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (flushed_master, flushed) = (shops[0].0, &shops[0].1);
    let other = &shops[1].1;
    let epoch_other = t
        .storage()
        .recovery()
        .known_epoch(LocationId::new_unchecked(other.store))
        .unwrap();
    cluster.flush_master(flushed_master);
    assert_eq!(
        t.redis_stock(flushed.store, flushed.products[0]).await,
        None
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let losses = loop {
        let (s, b) = json_of(t.admin().get("/api/admin/redis-data-losses").await).await;
        assert_eq!(s, StatusCode::OK);
        if b["losses"].as_array().is_some_and(|l| !l.is_empty()) {
            break b;
        }
        assert!(Instant::now() < deadline, "the loss was never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let lost: Vec<u64> = losses["losses"][0]["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_u64().unwrap())
        .collect();
    let on_flushed: Vec<u64> = {
        let mut all = vec![flushed.store];
        // Other stores the search added may live on the same shard.
        for loc in t.storage().catalog().all_location_ids() {
            let m = cluster.master_of(&t.keys().stream(loc));
            if m == flushed_master && loc.get() != flushed.store {
                all.push(loc.get());
            }
        }
        all
    };
    for loc in &lost {
        assert!(
            on_flushed.contains(loc),
            "location {loc} lost, but its shard was not flushed"
        );
    }
    assert!(lost.contains(&flushed.store), "{losses}");
    assert_eq!(losses["losses"].as_array().unwrap().len(), 1, "{losses}");
    // The flushed shard's stock is back, from MySQL; the other shard's marker never changed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.redis_stock(flushed.store, flushed.products[0]).await != Some(45) {
        assert!(
            Instant::now() < deadline,
            "the flushed shard was not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        t.storage()
            .recovery()
            .known_epoch(LocationId::new_unchecked(other.store)),
        Some(epoch_other)
    );
    let (s, _) = json_of(
        t.post(
            "/api/redis/orders",
            &pickup_order(&[(flushed.products[0], 45)], flushed.store),
        )
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    settle(&t).await;
    assert_eq!(t.available(flushed.store, flushed.products[0]).await, 0);
    t.assert_converged(InRedis::All).await;
}

/// `REDIS_MIN_REPLICA_ACKS=1` while the replica of an order's shard hangs: the order is answered
/// 504 `/problems/order-not-replicated` with its id and `Retry-After` — it stands, held by its
/// master — and further orders on that shard are refused at once (503, nothing changed), without
/// a `WAIT` holding their connection. Once the replica answers again, a retry with the same `Idempotency-Key` gets
/// 202 with the same order; every order is CONFIRMED once. (The keys' claims live on other
/// shards: a claim on the hanging shard would refuse its order before anything is decided.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_its_replica_did_not_confirm_is_answered_504_and_stands() {
    let cluster = PrivateCluster::start();
    let t = TestApp::spawn_with(|c| on_cluster(c, &cluster, 1)).await;
    let shops = a_store_on_each_shard(&t, &cluster, 1, 10).await;
    let (master, shop) = (shops[0].0, &shops[0].1);
    let body = pickup_order(&[(shop.products[0], 2)], shop.store);
    let elsewhere = |name: &str| -> &'static str {
        let key = (0..)
            .map(|i| format!("{name}-{i}"))
            .find(|k| cluster.master_of(&t.keys().idempotency("REDIS", k)) != master)
            .unwrap();
        Box::leak(key.into_boxed_str())
    };
    let (second_key, third_key) = (elsewhere("second"), elsewhere("third"));
    let order = |key: &'static str| {
        let r = t
            .client
            .post(format!("{}/api/redis/orders", t.base))
            .header("Idempotency-Key", key)
            .json(&body)
            .send();
        async move {
            let r = r.await.unwrap();
            let retry_after = r.headers().get("retry-after").cloned();
            let (s, b) = json_of(r).await;
            (s, b, retry_after)
        }
    };
    // On a loaded machine a replica can lag past the 500 ms `WAIT`: the shard then refuses
    // orders for a second (503, nothing changed), and the first order is asked again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let placed = loop {
        let (s, placed, _) = order("first").await;
        if s == StatusCode::ACCEPTED {
            break placed;
        }
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{placed}");
        assert_eq!(
            placed["type"], "/problems/stock-cache-unavailable",
            "{placed}"
        );
        assert!(Instant::now() < deadline, "{placed}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let replica = cluster.replica_of(master);
    cluster.pause(replica);
    let (s, b, retry_after) = order(second_key).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{b}");
    assert_eq!(b["type"], "/problems/order-not-replicated");
    assert_eq!(b["status"], 504);
    assert_eq!(retry_after.unwrap(), "1");
    let second = b["orderId"].as_str().unwrap().to_owned();
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("0 of the 1 replicas"),
        "{b}"
    );
    // The shard's next order is refused at once, before it takes stock (the service knows the
    // shard is short of replicas: no WAIT holds its connection, nothing changed).
    let (s, b, retry_after) = order(third_key).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert_eq!(b["type"], "/problems/stock-cache-unavailable", "{b}");
    assert_eq!(retry_after.unwrap(), "1");
    // The retry while the replica still hangs: the same order, still not replicated.
    let (s, b, _) = order(second_key).await;
    assert_eq!(
        (s, b["orderId"].as_str()),
        (StatusCode::GATEWAY_TIMEOUT, Some(second.as_str()))
    );

    cluster.resume(replica);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, b, _) = order(second_key).await;
        if s == StatusCode::ACCEPTED {
            assert_eq!(b["orderId"].as_str(), Some(second.as_str()));
            break;
        }
        assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{b}");
        assert!(
            Instant::now() < deadline,
            "never replicated after the replica came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    settle(&t).await;
    let mut ids = t.order_ids().await;
    ids.sort();
    let mut expected = vec![placed["orderId"].as_str().unwrap().to_owned(), second];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(t.count_orders("CONFIRMED").await, 2);
    assert_eq!(t.available(shop.store, shop.products[0]).await, 10 - 4);
    t.assert_converged(InRedis::All).await;
}

/// `REDIS_MIN_REPLICA_ACKS=1`: a POS sale whose Redis change its shard's replica did not confirm
/// marks its key stale; the re-syncs that follow while the replica still lags are not replicated
/// either, so they keep the mark (a failover to that replica would otherwise leave the units of
/// the sale in Redis with nothing to say so). Once the replica holds a re-sync, the mark goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreplicated_resync_keeps_the_stale_mark() {
    let cluster = PrivateCluster::start();
    let t = TestApp::spawn_with(|c| {
        on_cluster(c, &cluster, 1);
        c.jobs_enabled = false;
    })
    .await;
    let shops = a_store_on_each_shard(&t, &cluster, 1, 10).await;
    let (master, shop) = (shops[0].0, &shops[0].1);
    let (store, p) = (shop.store, shop.products[0]);
    let (s, _) = json_of(
        t.get(&format!("/api/stores/{store}/products/{p}/stock"))
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let replica = cluster.replica_of(master);
    cluster.pause(replica);
    let r = t
        .post_with_key(
            &format!("/api/stores/{store}/orders"),
            &shop.key,
            &pos_sale(&[(p, 3)]),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let marks = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM redis_stale_keys")
            .fetch_one(&t.db)
            .await
            .unwrap()
    };
    // Several checks (every 200 ms) re-sync the marked key meanwhile, none of them replicated.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(marks().await, 1, "an unreplicated re-sync cleared the mark");
    cluster.resume(replica);
    let deadline = Instant::now() + Duration::from_secs(20);
    while marks().await > 0 {
        assert!(Instant::now() < deadline, "the mark was never cleared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(t.redis_stock(store, p).await, Some(7));
    assert_eq!(t.available(store, p).await, 7);
}
