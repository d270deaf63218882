//! The service on a private Redis Cluster (3 masters, 3 replicas) with several instances: the
//! invariants hold with writers on every shard, a master killed with `kill -9` is followed to
//! its promoted replica without losing an order answered 202 — also with orders committed, in
//! flight, handed over and cancelled around it, each ending in the state its answers gave it — an
//! instance killed with `kill -9` has its events applied by another, and a shard that loses its
//! data is reloaded alone.

use crate::common::cluster::PrivateCluster;
use crate::common::*;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sf_routing::LocationId;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The test's settings for `cluster`: the cluster client, a small pool (each pooled connection
/// holds a socket per node), quick reclaims and data checks.
fn on_cluster(c: &mut stock_flow::Config, cluster: &PrivateCluster, replica_acks: u32) {
    c.storage.redis_cluster_nodes = cluster.seeds().split(',').map(Into::into).collect();
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
    assert_converged_and_reconciled(&t).await;
    drop(second);
}

/// Redis equals MySQL for every stock key, and a reconciliation run repairs nothing and finds the
/// ledger right.
async fn assert_converged_and_reconciled(t: &TestApp) {
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

/// What the failover test does with an order answered 202: its store hands it over, its
/// customer cancels it, or it stays open (committed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    HandOver,
    Cancel,
    Open,
}

/// An order answered 202, at once or to a retry with its `Idempotency-Key`.
#[derive(Clone, Debug)]
struct Placed {
    id: String,
    store: u64,
    /// The store's POS key, for its fulfilment steps.
    store_key: String,
    qty: i64,
    /// A pickup's code; `None` for a same-day order (dispatched, not collected).
    pickup_code: Option<String>,
    fate: Fate,
}

type Queue = Arc<Mutex<VecDeque<Placed>>>;

/// What the clients of the failover test were told.
#[derive(Default)]
struct Told {
    accepted: Mutex<Vec<Placed>>,
    /// Orders answered 504 (or 503 with their id) whose key's retry then answered 410: lost with
    /// their master before a replica held them, never answered 202.
    lost_unanswered: Mutex<Vec<String>>,
    /// `(store, order)` of the orders handed over and of those cancelled (answered 200).
    handed_over: Mutex<Vec<(u64, String)>>,
    cancelled: Mutex<Vec<(u64, String)>>,
    /// Orders answered 202 whose cancel answered 410 (lost after all).
    lost_after_202: Mutex<Vec<String>>,
    /// Every answer, by request, status and problem type.
    answers: Mutex<BTreeMap<String, usize>>,
}

impl Told {
    fn tally(&self, what: &str, s: StatusCode, b: &Value) {
        let kind = format!("{what} {} {}", s.as_u16(), b["type"].as_str().unwrap_or(""));
        *self.answers.lock().unwrap().entry(kind).or_default() += 1;
    }

    /// Orders of `store` answered 202, handed over and cancelled so far.
    fn at(&self, store: u64) -> (usize, usize, usize) {
        let of = |v: &Mutex<Vec<(u64, String)>>| {
            v.lock()
                .unwrap()
                .iter()
                .filter(|(s, _)| *s == store)
                .count()
        };
        let accepted = self.accepted.lock().unwrap();
        (
            accepted.iter().filter(|o| o.store == store).count(),
            of(&self.handed_over),
            of(&self.cancelled),
        )
    }
}

/// Places one Redis-path order and asks again with its `Idempotency-Key` until the answer is
/// final: `Ok` with the 202's body, or `Err` with the id of an order answered 504 (or 503 with
/// its id) that a retry then found lost (410). A key names one order throughout.
async fn place_keyed(
    client: &reqwest::Client,
    base: &str,
    body: &Value,
    key: &str,
    told: &Told,
) -> Result<Value, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut named: Option<String> = None;
    loop {
        let (s, b) = send(
            client,
            base,
            "/api/redis/orders",
            body,
            &[("Idempotency-Key", key)],
        )
        .await;
        told.tally("order", s, &b);
        if let Some(id) = b["orderId"].as_str() {
            let first = named.get_or_insert_with(|| id.to_owned());
            assert_eq!(first, id, "key {key} named two orders");
        }
        match s {
            StatusCode::ACCEPTED => return Ok(b),
            StatusCode::GONE => {
                return Err(
                    named.unwrap_or_else(|| panic!("key {key}: 410 for an order never named: {b}"))
                )
            }
            // Not held by a replica yet (504); refused while the shard fails over or lacks its
            // replica, or the script's reply lost (503): the key's retry tells.
            StatusCode::GATEWAY_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => {}
            StatusCode::CONFLICT if b["type"] == "/problems/idempotency-key-in-flight" => {}
            other => panic!("key {key}: {other} {b}"),
        }
        assert!(
            Instant::now() < deadline,
            "key {key}: no final answer within 60 s; the last was {s} {b}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One try at handing `o` over: made ready and collected with its code (a pickup), or
/// dispatched (same-day). `false` when it must be tried again: not persisted yet (409), or a
/// dependency briefly unavailable (503).
async fn try_hand_over(client: &reqwest::Client, base: &str, o: &Placed, told: &Told) -> bool {
    let steps = match &o.pickup_code {
        Some(code) => vec![
            ("ready", None, "READY_FOR_PICKUP"),
            ("collect", Some(json!({ "pickupCode": code })), "COLLECTED"),
        ],
        None => vec![("dispatch", None, "DISPATCHED")],
    };
    for (what, body, then) in steps {
        let mut r = client
            .post(format!(
                "{base}/api/stores/{}/orders/{}/{what}",
                o.store, o.id
            ))
            .bearer_auth(&o.store_key);
        if let Some(body) = &body {
            r = r.json(body);
        }
        let (s, b) = json_of(r.send().await.unwrap()).await;
        told.tally(what, s, &b);
        match s {
            StatusCode::OK => assert_eq!(b["fulfillment"]["status"], then, "{what} {}: {b}", o.id),
            StatusCode::CONFLICT
                if b["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("not yet persisted")) =>
            {
                return false
            }
            StatusCode::SERVICE_UNAVAILABLE => return false,
            other => panic!("{what} {}: {other} {b}", o.id),
        }
    }
    told.handed_over
        .lock()
        .unwrap()
        .push((o.store, o.id.clone()));
    true
}

/// One try at cancelling `o` through the shop's route: `false` when it must be tried again (503).
async fn try_cancel(client: &reqwest::Client, base: &str, o: &Placed, told: &Told) -> bool {
    let r = client
        .patch(format!("{base}/api/redis/orders/{}/cancel", o.id))
        .send()
        .await
        .unwrap();
    let (s, b) = json_of(r).await;
    told.tally("cancel", s, &b);
    match s {
        StatusCode::OK => {
            assert_eq!(b["status"], "CANCELLED", "{}: {b}", o.id);
            told.cancelled.lock().unwrap().push((o.store, o.id.clone()));
        }
        StatusCode::GONE => told.lost_after_202.lock().unwrap().push(o.id.clone()),
        StatusCode::SERVICE_UNAVAILABLE => return false,
        other => panic!("cancel {}: {other} {b}", o.id),
    }
    true
}

/// Works through `queue` with `attempt` until it is empty and no more orders come
/// (`placed_all`): an order `attempt` could not finish yet goes to the back and is tried again.
async fn work_through<Fut>(
    queue: Queue,
    placed_all: Arc<AtomicBool>,
    attempt: impl Fn(Placed) -> Fut,
) where
    Fut: std::future::Future<Output = bool>,
{
    loop {
        let next = queue.lock().unwrap().pop_front();
        match next {
            Some(o) => {
                if !attempt(o.clone()).await {
                    queue.lock().unwrap().push_back(o);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            None if placed_all.load(Ordering::Relaxed) => return,
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Pickups and same-day orders on the Redis path from many clients on every shard, each with an
/// `Idempotency-Key` asked again until its answer is final; the stores hand a quarter of them
/// over (ready and collect, or dispatch), the customers cancel another quarter, and the rest stay
/// committed. The consumers stop for a moment, so that the victim's shard holds orders accepted
/// and not yet persisted beside orders committed, handed over and cancelled; then its master is
/// killed with `kill -9` and its replica promoted, the steps and cancels going on throughout.
/// With `REDIS_MIN_REPLICA_ACKS=1`, nothing answered is lost: MySQL holds exactly the orders
/// answered 202, each once and in the state its answers gave it; every stock row's available,
/// committed and onHand are the sums of those answers; the ledger identities hold, Redis equals
/// MySQL, and a reconcile repairs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_with_committed_orders_in_flight_keeps_every_answer() {
    const STOCK: i64 = 10_000;
    let mut cluster = PrivateCluster::start();
    let mut t = TestApp::spawn_with(|c| {
        on_cluster(c, &cluster, 1);
        // A scheduled reconcile would repair a divergence before the test could see it.
        c.reconcile_schedule = "0 0 0 1 1 *".into();
    })
    .await;
    let shops = a_store_on_each_shard(&t, &cluster, 1, STOCK).await;
    let mut second = t.spawn_instance(|_| {}).await;
    let bases = [t.base.clone(), base_of(&second)];
    let (victim, victim_store) = (shops[0].0, shops[0].1.store);

    let told = Arc::new(Told::default());
    let (to_hand_over, to_cancel) = (Queue::default(), Queue::default());
    let stop = Arc::new(AtomicBool::new(false));
    let placed_all = Arc::new(AtomicBool::new(false));
    let fates = Arc::new(AtomicUsize::new(0));
    let placers: Vec<_> = (0..18)
        .map(|w| {
            let (client, base) = (t.client.clone(), bases[w % 2].clone());
            let (told, stop, fates) = (told.clone(), stop.clone(), fates.clone());
            let (to_hand_over, to_cancel) = (to_hand_over.clone(), to_cancel.clone());
            let shop = &shops[w % 3].1;
            let (store, product, store_key) = (shop.store, shop.products[0], shop.key.clone());
            tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    // Pickups and same-day orders, of one unit and of two.
                    let (pickup, qty) = ((n / 2) % 2 == 0, 1 + (n % 2) as i64);
                    let body = if pickup {
                        pickup_order(&[(product, qty)], store)
                    } else {
                        same_day_order(&[(product, qty)])
                    };
                    let key = format!("failover-{w}-{n}");
                    let b = match place_keyed(&client, &base, &body, &key, &told).await {
                        Ok(b) => b,
                        Err(id) => {
                            told.lost_unanswered.lock().unwrap().push(id);
                            continue;
                        }
                    };
                    let fate = match fates.fetch_add(1, Ordering::Relaxed) % 4 {
                        0 => Fate::HandOver,
                        1 => Fate::Cancel,
                        _ => Fate::Open,
                    };
                    let pickup_code = pickup.then(|| {
                        b["fulfillment"]["pickupCode"]
                            .as_str()
                            .unwrap_or_else(|| panic!("a pickup without its code: {b}"))
                            .to_owned()
                    });
                    let o = Placed {
                        id: b["orderId"].as_str().unwrap().to_owned(),
                        store,
                        store_key: store_key.clone(),
                        qty,
                        pickup_code,
                        fate,
                    };
                    told.accepted.lock().unwrap().push(o.clone());
                    match fate {
                        Fate::HandOver => to_hand_over.lock().unwrap().push_back(o),
                        Fate::Cancel => to_cancel.lock().unwrap().push_back(o),
                        Fate::Open => {}
                    }
                }
            })
        })
        .collect();
    // Three stores' hands and two cancelling customers, through both instances.
    let mut fulfilers = Vec::new();
    for i in 0..5 {
        let (client, base, told) = (t.client.clone(), bases[i % 2].clone(), told.clone());
        let placed_all = placed_all.clone();
        fulfilers.push(if i < 3 {
            tokio::spawn(work_through(to_hand_over.clone(), placed_all, move |o| {
                let (client, base, told) = (client.clone(), base.clone(), told.clone());
                async move { try_hand_over(&client, &base, &o, &told).await }
            }))
        } else {
            tokio::spawn(work_through(to_cancel.clone(), placed_all, move |o| {
                let (client, base, told) = (client.clone(), base.clone(), told.clone());
                async move { try_cancel(&client, &base, &o, &told).await }
            }))
        });
    }

    // Before the kill, the victim's store has orders committed, handed over and cancelled.
    let deadline = Instant::now() + Duration::from_secs(60);
    while {
        let (accepted, handed_over, cancelled) = told.at(victim_store);
        accepted < 120 || handed_over < 10 || cancelled < 10
    } {
        assert!(
            Instant::now() < deadline,
            "too few orders before the kill: {:?}",
            told.at(victim_store)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The consumers stop (as a crash would): what is accepted from now on stays in Redis alone.
    t.app().stop_consumer_now();
    second.app_mut().stop_consumer_now();
    let (before, _, _) = told.at(victim_store);
    while told.at(victim_store).0 < before + 30 {
        assert!(Instant::now() < deadline, "orders stopped coming");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let in_mysql: HashSet<String> =
        sqlx::query_scalar::<_, String>("SELECT id FROM orders WHERE location_id = ?")
            .bind(victim_store)
            .fetch_all(&t.db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let committed_at_kill: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM orders WHERE location_id = ? AND status = 'CONFIRMED' \
         AND fulfillment IN ('UNFULFILLED', 'READY_FOR_PICKUP')",
    )
    .bind(victim_store)
    .fetch_one(&t.db)
    .await
    .unwrap();
    let in_flight: Vec<Placed> = told
        .accepted
        .lock()
        .unwrap()
        .iter()
        .filter(|o| o.store == victim_store && !in_mysql.contains(&o.id))
        .cloned()
        .collect();
    let (_, handed_at_kill, cancelled_at_kill) = told.at(victim_store);
    cluster.kill9(victim);
    let killed_at = Instant::now();
    t.app().start_consumer();
    second.app_mut().start_consumer();
    assert!(
        !in_flight.is_empty() && committed_at_kill > 0,
        "at the kill: {} orders in flight, {committed_at_kill} committed",
        in_flight.len()
    );

    let promoted = cluster.wait_for_promotion(victim, Duration::from_secs(30));
    cluster.restart(victim);
    let (again, _, _) = told.at(victim_store);
    let taken_again = loop {
        if told.at(victim_store).0 > again + 40 {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(40),
            "orders were not taken again on the shard after its failover"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for p in join_all(placers).await {
        p.unwrap();
    }
    placed_all.store(true, Ordering::Relaxed);
    let finished = tokio::time::timeout(Duration::from_secs(90), join_all(fulfilers))
        .await
        .expect("the hand-overs and cancels did not end within 90 s");
    for f in finished {
        f.unwrap();
    }
    settle(&t).await;

    let accepted = told.accepted.lock().unwrap().clone();
    let lost_unanswered = told.lost_unanswered.lock().unwrap().clone();
    let lost_after_202 = told.lost_after_202.lock().unwrap().clone();
    eprintln!(
        "failover: master :{victim} killed, :{promoted} promoted; on its store at the kill: {} \
         orders in flight, {committed_at_kill} committed, {handed_at_kill} handed over, \
         {cancelled_at_kill} cancelled; orders taken again after {taken_again:?}; {} answered \
         202, {} lost unanswered; answers {:?}",
        in_flight.len(),
        accepted.len(),
        lost_unanswered.len(),
        told.answers.lock().unwrap()
    );
    assert!(
        lost_after_202.is_empty(),
        "orders answered 202 and lost: {lost_after_202:?}"
    );

    // MySQL holds exactly the orders answered 202, each once, in the state their answers gave.
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT id, CAST(status AS CHAR), CAST(fulfillment AS CHAR) FROM orders")
            .fetch_all(&t.db)
            .await
            .unwrap();
    let held: HashMap<String, (String, String)> = rows
        .iter()
        .map(|(id, s, f)| (id.clone(), (s.clone(), f.clone())))
        .collect();
    assert_eq!(held.len(), rows.len(), "an order was persisted twice");
    let answered: HashSet<&String> = accepted.iter().map(|o| &o.id).collect();
    let missing: Vec<&&String> = answered
        .iter()
        .filter(|id| !held.contains_key(**id))
        .collect();
    let unanswered: Vec<&String> = held.keys().filter(|id| !answered.contains(id)).collect();
    assert!(
        missing.is_empty() && unanswered.is_empty(),
        "answered 202 but not in MySQL: {missing:?}; in MySQL but never answered 202: {unanswered:?}"
    );
    for o in &accepted {
        let want = match (o.fate, &o.pickup_code) {
            (Fate::Open, _) => ("CONFIRMED", "UNFULFILLED"),
            (Fate::Cancel, _) => ("CANCELLED", "UNFULFILLED"),
            (Fate::HandOver, Some(_)) => ("CONFIRMED", "COLLECTED"),
            (Fate::HandOver, None) => ("CONFIRMED", "DISPATCHED"),
        };
        let (status, fulfillment) = &held[&o.id];
        assert_eq!(
            (status.as_str(), fulfillment.as_str()),
            want,
            "order {} ({:?})",
            o.id,
            o.fate
        );
    }
    // The shop's view of the orders in flight at the kill says the same.
    for o in &in_flight {
        let (s, b) = json_of(t.get(&format!("/api/orders/{}", o.id)).await).await;
        assert_eq!(
            (s, b["status"].as_str()),
            (StatusCode::OK, Some(held[&o.id].0.as_str())),
            "{b}"
        );
    }
    for id in &lost_unanswered {
        let (s, b) = json_of(t.get(&format!("/api/orders/{id}")).await).await;
        assert_ne!(s, StatusCode::OK, "order {id} was answered lost: {b}");
    }
    assert_eq!(t.count_orders("REJECTED").await, 0);
    let fulfilled: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM stock_movements WHERE reason = 'FULFILLED'")
            .fetch_one(&t.db)
            .await
            .unwrap();
    assert_eq!(
        fulfilled,
        told.handed_over.lock().unwrap().len() as i64,
        "one FULFILLED row per order handed over (one line each)"
    );

    // Per stock row: committed holds the open orders, onHand lost what was handed over.
    for (_, shop) in &shops {
        let (store, p) = (shop.store, shop.products[0]);
        let units = |fate: Fate| -> i64 {
            accepted
                .iter()
                .filter(|o| o.store == store && o.fate == fate)
                .map(|o| o.qty)
                .sum()
        };
        let (open, handed) = (units(Fate::Open), units(Fate::HandOver));
        assert_eq!(
            t.stock_states(store, p).await,
            (STOCK - open - handed, open, STOCK - handed),
            "store {store}: available, committed, onHand"
        );
    }
    assert_converged_and_reconciled(&t).await;
    drop(second);
}

/// `REDIS_MIN_REPLICA_ACKS=1`: a Redis-path order its replica holds, not yet persisted, is
/// cancelled (200) after the replica was cut off its master's stream, and the master is then
/// killed with `kill -9`: the promoted replica never saw the cancel. The order stays CANCELLED,
/// and its units are sellable again in Redis as they are in MySQL — a cancel answered 200 gives
/// its units back in both stores, whatever fails afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_the_promoted_replica_never_saw_still_gives_the_units_back() {
    let mut cluster = PrivateCluster::start();
    let mut t = TestApp::spawn_with(|c| {
        on_cluster(c, &cluster, 1);
        // The order must still be in Redis alone when it is cancelled.
        c.consumer_enabled = false;
        // A scheduled reconcile would repair a divergence before the test could see it.
        c.reconcile_schedule = "0 0 0 1 1 *".into();
    })
    .await;
    let shops = a_store_on_each_shard(&t, &cluster, 1, 10).await;
    let (master, shop) = (shops[0].0, &shops[0].1);
    let (store, p) = (shop.store, shop.products[0]);
    // On a loaded machine a replica can lag past the 500 ms `WAIT`: the shard then refuses
    // orders for a second (503, nothing changed), and the order is asked again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        let (s, b) = json_of(
            t.post_idempotent("/api/redis/orders", "cut", &pickup_order(&[(p, 3)], store))
                .await,
        )
        .await;
        if s == StatusCode::ACCEPTED {
            break b["orderId"].as_str().unwrap().to_owned();
        }
        assert!(
            s == StatusCode::SERVICE_UNAVAILABLE || s == StatusCode::GATEWAY_TIMEOUT,
            "{s} {b}"
        );
        assert!(Instant::now() < deadline, "{b}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(t.redis_stock(store, p).await, Some(7));

    let replica = cluster.replica_of(master);
    cluster.cut_replication(replica);
    let (s, b) = json_of(t.patch(&format!("/api/redis/orders/{id}/cancel")).await).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("CANCELLED")),
        "{b}"
    );
    assert_eq!(t.redis_stock(store, p).await, Some(10), "on the master");
    cluster.kill9(master);
    let promoted = cluster.wait_for_promotion(master, Duration::from_secs(30));
    assert_eq!(promoted, replica);
    cluster.let_replicate(replica);
    cluster.restart(master);
    // The promoted replica holds the reservation and not the cancel.
    let record = t.keys().order(LocationId::new_unchecked(store), &id);
    let st: Option<String> = redis::cmd("HGET")
        .arg(&record)
        .arg("st")
        .query_async(&mut t.redis().await)
        .await
        .unwrap();
    assert_eq!(
        st.as_deref(),
        Some("A"),
        "the replica saw the cancel after all"
    );

    t.app().start_consumer();
    settle(&t).await;
    assert_eq!(t.order_status(&id).await, "CANCELLED");
    assert_eq!(t.stock_states(store, p).await, (10, 0, 10));
    // Once the service has recovered from the failover, Redis sells the 10 units again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.redis_stock(store, p).await != Some(10) {
        assert!(
            Instant::now() < deadline,
            "Redis still holds {:?} units of ({store},{p}) after the failover; MySQL holds 10",
            t.redis_stock(store, p).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t.assert_converged(InRedis::All).await;
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
    // A key's claim lives under the channel's scope, one for both order paths.
    let scope = format!("ORDER:CHANNEL:{}", t.shop.channel_id);
    let elsewhere = |name: &str| -> &'static str {
        let key = (0..)
            .map(|i| format!("{name}-{i}"))
            .find(|k| cluster.master_of(&t.keys().idempotency(&scope, k)) != master)
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
